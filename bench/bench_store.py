"""The store under the command layer: SQLite against PostgreSQL, one process against two.

Each configuration answers the same burst: N concurrent `/recommend` (lists of 30 entries from 20
distinct users, list cache warm), then the same N users' `/more` at once; with two processes the
burst is spread over both and each `/more` goes to the process that did not make the reply. Also
timed: one request-budget reservation (`reserve_slot`) and one session save with a 150-entry list.
Real parts throughout (command layer, list sources over the fake services at the network edge,
SQLite file, PostgreSQL on a throwaway local cluster from tests/postgres.py); the engine is the
no-model mode over the 60-title test catalogue, so that the store's share of the time shows, or
with `--bundle` a real model bundle (the served path end to end). After each burst, `--sequential`
`/recommend`s one at a time give the latency a single user sees (p50 / p95).

    python bench/bench_store.py [--requests 200] [--repeats 3] [--bundle exports/default]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import open_runtime  # noqa: E402
from bot.commands import UserRef  # noqa: E402
from bot.settings import DATABASE_URL_ENV, StorageSection  # noqa: E402
from bot.storage import open_storage  # noqa: E402
from inference.animelist import AnimeList, ListEntry, Status  # noqa: E402
from inference.engine import Engine  # noqa: E402
from tests.bot.conftest import (  # noqa: E402
    MAL_CLIENT_ID,
    Services,
    bot_catalog,
    fast_sources,
    make_settings,
)
from tests.inference.fakes import FakeAniList, FakeMal, mal_row  # noqa: E402
from tests.postgres import start_cluster  # noqa: E402

LISTS = 20


def services(ids: list[int]) -> Services:
    mal = FakeMal(client_id=MAL_CLIENT_ID)
    for k in range(LISTS):
        rows = [ids[(k * 3 + j) % len(ids)] for j in range(30)]
        mal.add_user(f"maluser{k}", [mal_row(m, "completed", score=7 + m % 4) for m in rows])
    return Services(mal, FakeAniList(), [])


async def burst(
    storage: StorageSection,
    processes: int,
    requests: int,
    engine: Engine,
    tmp: Path,
    sequential: int = 0,
) -> tuple[float, float, list[float]]:
    """(seconds for the /recommend burst, seconds for the /more burst, the seconds of each of
    `sequential` lone /recommends)."""
    ids = [item.mal_id for item in engine.catalog]
    fake = services(ids)
    settings = dataclasses.replace(make_settings(tmp), storage=storage)
    async with contextlib.AsyncExitStack() as stack:
        runtimes = [
            await stack.enter_async_context(
                open_runtime(
                    settings,
                    engine,
                    sources_settings=fast_sources(),
                    mal_client_id=MAL_CLIENT_ID,
                    transport=fake.transport,
                )
            )
            for _ in range(processes)
        ]
        users = [UserRef("bench", str(i), str(i)) for i in range(requests)]
        for k in range(LISTS):  # a warm list cache, as a running bot has it
            await runtimes[0].service.handle_line(users[0], f"/recommend maluser{k} --source mal")

        async def ask(i: int, line: str, proc: int) -> None:
            reply = await runtimes[proc % processes].service.handle_line(users[i], line)
            assert not reply.error and reply.cards, reply.lines

        start = time.perf_counter()
        await asyncio.gather(
            *(ask(i, f"/recommend maluser{i % LISTS} --source mal", i) for i in range(requests))
        )
        first = time.perf_counter() - start
        start = time.perf_counter()
        await asyncio.gather(*(ask(i, "/more", i + 1) for i in range(requests)))
        more = time.perf_counter() - start
        lone = []
        for i in range(sequential):  # fresh users: no cooldown, the list cache warm
            user = UserRef("bench-seq", str(i), str(i))
            start = time.perf_counter()
            reply = await runtimes[i % processes].service.handle_line(
                user, f"/recommend maluser{i % LISTS} --source mal"
            )
            lone.append(time.perf_counter() - start)
            assert not reply.error and reply.cards, reply.lines
    return first, more, lone


async def per_operation(storage: StorageSection, count: int = 300) -> tuple[float, float]:
    """(ms per reserve_slot, ms per session save with a 150-entry list), one after another."""
    body = AnimeList(
        "mal", "x", [ListEntry(1000 + i, Status.COMPLETED, score=7.0) for i in range(150)]
    ).to_json()
    async with await open_storage(storage) as store:
        start = time.perf_counter()
        for _ in range(count):
            await store.reserve_slot("bench", 0.001, time.time())
        reserve = (time.perf_counter() - start) / count
        start = time.perf_counter()
        for i in range(count):
            await store.save_session(
                "bench", str(i % 50), "{}", body, 150, max_sessions=10_000, max_entries=2_000_000
            )
        save = (time.perf_counter() - start) / count
    return reserve * 1000.0, save * 1000.0


async def run(requests: int, repeats: int, bundle: Path | None, sequential: int) -> None:
    cluster = start_cluster()
    if isinstance(cluster, str):
        sys.exit(f"cannot run: {cluster}")
    engine = (
        Engine.without_model(bot_catalog())
        if bundle is None
        else Engine.from_bundle(bundle, providers="cpu")
    )
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            results: dict[str, list[tuple[float, float]]] = {}
            lone: dict[str, list[float]] = {}
            ops: dict[str, tuple[float, float]] = {}
            for r in range(repeats):
                for name, processes in (("sqlite", 1), ("postgresql", 1), ("postgresql", 2)):
                    if name == "sqlite":
                        section = StorageSection(path=str(tmp / f"bench{r}{processes}.sqlite3"))
                    else:
                        os.environ[DATABASE_URL_ENV] = cluster.new_database()
                        section = StorageSection(url="env")
                    label = f"{name}, {processes} process{'es' if processes > 1 else ''}"
                    first, more, alone = await burst(
                        section, processes, requests, engine, tmp, sequential
                    )
                    results.setdefault(label, []).append((first, more))
                    lone.setdefault(label, []).extend(alone)
                    if r == 0 and processes == 1:
                        ops[name] = await per_operation(section)
    finally:
        cluster.stop()
    base = statistics.median(a + b for a, b in results["sqlite, 1 process"])
    print(f"engine: {'no model' if bundle is None else bundle}")
    print(f"{requests} concurrent /recommend, then {requests} /more; median of {repeats} runs")
    for label, timings in results.items():
        first = statistics.median(t[0] for t in timings)
        more = statistics.median(t[1] for t in timings)
        total = statistics.median(a + b for a, b in timings)
        print(
            f"{label:24s} recommend {requests / first:6.0f}/s  more {requests / more:6.0f}/s  "
            f"time x{total / base:.2f} of SQLite"
        )
    if sequential:
        base_p50 = statistics.median(lone["sqlite, 1 process"])
        print(f"one /recommend at a time ({sequential} per run, {repeats} runs)")
        for label, times in lone.items():
            p50 = statistics.median(times)
            p95 = statistics.quantiles(times, n=20)[-1]
            print(
                f"{label:24s} p50 {p50 * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms  "
                f"p50 x{p50 / base_p50:.2f} of SQLite"
            )
    for name, (reserve, save) in ops.items():
        print(
            f"{name:10s} reserve_slot {reserve:.2f} ms   save_session (150 entries) {save:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bundle", type=Path, default=None, help="a model bundle (default: none)")
    parser.add_argument("--sequential", type=int, default=50, help="lone /recommends per run")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.repeats, args.bundle, args.sequential))


if __name__ == "__main__":
    main()
