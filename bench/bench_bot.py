"""200 concurrent /recommend through the command layer: event-loop lag and reply latency.

Real parts: the command layer, ListSources over the fake MyAnimeList/AniList services
(httpx.MockTransport, at the network edge), SQLite (list cache, feedback), the engine: the default
bundle in onnxruntime (exports/default), or with `--no-model` the no-model mode over the project's
catalogue when data/catalog.json.gz exists, else a 60-title test catalogue.
A ticker task sleeps 5 ms at a time and records how late it wakes: that is the event-loop lag.
Goal: no stall over 100 ms.

    python bench/bench_bot.py [--requests 200] [--lists 20] [--cold] [--no-model]

`--cold` starts with an empty list cache (every distinct list fetched once, concurrently).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import open_runtime  # noqa: E402
from bot.commands import UserRef  # noqa: E402
from inference.catalog import load_catalog  # noqa: E402
from inference.engine import Engine  # noqa: E402
from tests.bot.conftest import (  # noqa: E402
    MAL_CLIENT_ID,
    Services,
    bot_catalog,
    fast_sources,
    make_settings,
)
from tests.inference.fakes import FakeAniList, FakeMal, anilist_row, mal_row  # noqa: E402

TICK_S = 0.005


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(TICK_S)
        lags.append(loop.time() - start - TICK_S)


async def run(requests: int, lists: int, cold: bool, no_model: bool) -> None:
    catalog_path = ROOT / "data" / "catalog.json.gz"
    bundle = ROOT / "exports" / "default"
    if bundle.is_dir() and not no_model:
        engine = Engine.from_bundle(bundle, providers="cpu")
        catalog, label = engine.catalog, f"bundle {bundle.name}"
    else:
        catalog = load_catalog(catalog_path) if catalog_path.exists() else bot_catalog()
        engine = Engine.without_model(catalog)
        label = "no model, " + ("project" if catalog_path.exists() else "test")
    ids = [item.mal_id for item in list(catalog)[:400]]
    mal, anilist = FakeMal(client_id=MAL_CLIENT_ID), FakeAniList(rate_limit_remaining=10**9)
    for k in range(lists):
        rows = ids[k * 7 : k * 7 + 150]
        mal.add_user(f"maluser{k}", [mal_row(m, "completed", score=7 + m % 4) for m in rows])
        anilist.add_user(
            f"aluser{k}",
            [anilist_row(900_000 + m, m, "COMPLETED", score=70 + m % 30) for m in rows],
        )
    services = Services(mal, anilist, [])
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp))
        async with open_runtime(
            settings,
            engine,
            sources_settings=fast_sources(),
            mal_client_id=MAL_CLIENT_ID,
            transport=services.transport,
        ) as runtime:

            def line(i: int) -> str:
                k = i // 2 % lists
                if i % 2:
                    return f"/recommend maluser{k} --source mal"
                return f"/recommend aluser{k} --source anilist"

            if not cold:  # warm the list cache, as a running bot has it
                await asyncio.gather(
                    *(
                        runtime.service.handle_line(UserRef("bench", f"w{i}", "w"), line(i))
                        for i in range(2 * lists)
                    )
                )
            latencies: list[float] = []

            async def one(i: int) -> None:
                start = time.perf_counter()
                reply = await runtime.service.handle_line(UserRef("bench", str(i), str(i)), line(i))
                latencies.append(time.perf_counter() - start)
                assert not reply.error, reply.lines

            lags: list[float] = []
            stop = asyncio.Event()
            tick = asyncio.create_task(ticker(lags, stop))
            await asyncio.sleep(0.05)
            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(requests)))
            wall = time.perf_counter() - start
            stop.set()
            await tick
    ms = 1000.0
    print(f"engine: {label}; catalogue: {len(catalog)} titles")
    print(
        f"requests: {requests} concurrent over {lists * 2} lists, cache {'cold' if cold else 'warm'}"
    )
    print(f"wall: {wall:.2f} s ({requests / wall:.0f} replies/s)")
    print(
        f"latency ms: p50 {percentile(latencies, 0.5) * ms:.0f}  "
        f"p99 {percentile(latencies, 0.99) * ms:.0f}  max {max(latencies) * ms:.0f}"
    )
    print(
        f"event-loop lag ms: p50 {statistics.median(lags) * ms:.1f}  "
        f"p99 {percentile(lags, 0.99) * ms:.1f}  max {max(lags) * ms:.1f}  ({len(lags)} ticks)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--lists", type=int, default=10, help="distinct users per site")
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--no-model", action="store_true", help="the no-model engine instead")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.lists, args.cold, args.no_model))


if __name__ == "__main__":
    main()
