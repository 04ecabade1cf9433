"""How long parsing and normalizing an 11,000-entry list takes, against plain `json.loads`.

Three timings per source, on the same response bytes (MyAnimeList: 11 pages of 1,000 rows; AniList:
22 chunks of 500), served from memory so the network is out of the picture:

- client: `ListSources.fetch_*_list` over httpx.MockTransport (limiter and retries in the path, the
  rate limit itself set out of the way),
- parse: decode + normalize only (the pure step),
- floor: `json.loads` of the same bytes, which no parser of these answers can beat.

Run: .venv/bin/python bench/bench_parse_list.py [--entries 11000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.config import ServiceLimits, SourceSettings  # noqa: E402
from inference.sources.anilist import (  # noqa: E402
    build_anilist_list,
    collection_or_raise,
    merge_rows,
)
from inference.sources.fetch import ListSources  # noqa: E402
from inference.sources.mal import parse_mal_page  # noqa: E402
from tests.inference.fakes import (  # noqa: E402
    FakeAniList,
    FakeMal,
    many_anilist_rows,
    many_mal_rows,
)

USER = "benchuser"
# The rate limit is a wait, not work: set it out of the way so only parsing is timed.
FAST = ServiceLimits(requests_per_minute=1e9, timeout_s=60, max_retries=0)
SETTINGS = SourceSettings(user_agent="animerec-bench", mal=FAST, anilist=FAST)


def recorded_bodies(fake: Callable[[httpx.Request], httpx.Response], fetch: str) -> list[bytes]:
    """Every response body a full fetch receives, in order, captured once from the fake service."""
    bodies: list[bytes] = []

    def capture(request: httpx.Request) -> httpx.Response:
        response = fake(request)
        bodies.append(response.content)
        return response

    asyncio.run(_fetch_once(capture, fetch))
    return bodies


async def _fetch_once(handler: Callable[[httpx.Request], httpx.Response], fetch: str) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        sources = ListSources(http, SETTINGS, mal_client_id="test-client-id")
        return await getattr(sources, fetch)(USER)


def replay(bodies: list[bytes]) -> Callable[[httpx.Request], httpx.Response]:
    """Serve the captured bodies in order, again and again, without building them anew."""
    position = 0

    def handler(_: httpx.Request) -> httpx.Response:
        nonlocal position
        body = bodies[position % len(bodies)]
        position += 1
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    return handler


def parse_mal(bodies: list[bytes]) -> int:
    return sum(len(parse_mal_page(json.loads(body))[0]) for body in bodies)


def parse_anilist(bodies: list[bytes], anilist_to_mal: Mapping[int, int]) -> int:
    rows: dict[int, Mapping[str, Any]] = {}
    for body in bodies:
        merge_rows(rows, collection_or_raise(json.loads(body), 200, USER))
    return len(build_anilist_list(USER, rows.values(), anilist_to_mal))


def floor(bodies: list[bytes]) -> int:
    return len([json.loads(body) for body in bodies])


def timed(work: Callable[[], object], repeats: int, label: str) -> list[float]:
    work()  # warm-up: imports, caches, first-call allocations
    seconds = []
    for _ in tqdm(range(repeats), desc=label, file=sys.stderr, leave=False):
        gc.collect()  # each repeat pays for its own garbage, not the previous step's
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return seconds


def timed_async(
    work: Callable[[], Coroutine[Any, Any, None]], repeats: int, label: str
) -> list[float]:
    return timed(lambda: asyncio.run(work()), repeats, label)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=11_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    mal = FakeMal()
    mal.add_user(USER, many_mal_rows(args.entries))
    mal_bodies = recorded_bodies(mal, "fetch_mal_list")

    anilist = FakeAniList(rate_limit_remaining=10**9)
    anilist.add_user(USER, many_anilist_rows(args.entries))
    anilist_bodies = recorded_bodies(anilist, "fetch_anilist_list")

    # The client runs each fetch in a fresh event loop, as a bot would not; a new loop costs ~0.1 ms.
    async def client_mal() -> None:
        result = await _fetch_once(replay(mal_bodies), "fetch_mal_list")
        assert len(result) == args.entries

    async def client_anilist() -> None:
        result = await _fetch_once(replay(anilist_bodies), "fetch_anilist_list")
        assert len(result) == args.entries

    def parse_mal_bodies() -> None:
        assert parse_mal(mal_bodies) == args.entries

    def parse_anilist_bodies() -> None:
        assert parse_anilist(anilist_bodies, {}) == args.entries

    rows: list[tuple[str, str, int, list[float], list[float]]] = []
    cases: list[
        tuple[str, list[bytes], Callable[[], Coroutine[Any, Any, None]], Callable[[], None]]
    ]
    cases = [
        ("MyAnimeList", mal_bodies, client_mal, parse_mal_bodies),
        ("AniList", anilist_bodies, client_anilist, parse_anilist_bodies),
    ]
    for source, bodies, client, parse in cases:
        floor_s = timed(functools.partial(floor, bodies), args.repeats, f"{source} floor")
        size = sum(map(len, bodies))
        rows.append((source, "json.loads (floor)", size, floor_s, floor_s))
        rows.append((source, "parse+normalize", size, timed(parse, args.repeats, source), floor_s))
        rows.append(
            (
                source,
                "client over MockTransport",
                size,
                timed_async(client, args.repeats, source),
                floor_s,
            )
        )

    print(f"{args.entries} entries, {args.repeats} repeats, Python {sys.version.split()[0]}")
    print(f"{'source':<12} {'step':<26} {'MB':>5} {'median ms':>10} {'p90 ms':>8} {'x floor':>8}")
    for source, step, size, seconds, floor_s in rows:
        ratio = statistics.median(seconds) / statistics.median(floor_s)
        print(
            f"{source:<12} {step:<26} {size / 1e6:>5.1f} {statistics.median(seconds) * 1e3:>10.1f}"
            f" {p90(seconds) * 1e3:>8.1f} {ratio:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
