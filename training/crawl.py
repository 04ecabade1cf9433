"""`python -m training crawl --users FILE --service mal|anilist --store DIR`: fetch many lists, resumably.

N async workers share one `ListSources`, so the per-service rate limit is shared by all of them.
Every user's outcome (the list, or a typed error such as private / not found) is committed to the
SQLite store (`training.crawl_store`) as soon as it is known: killing the crawl loses at most the
users in flight, and running the same command again continues with the users not yet fetched.
Users that failed `--max-failures` times in a row are skipped; users fetched within `--fresh-days`
are not fetched again; the rest go least recently tried first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from inference.animelist import AnimeList
from inference.config import MAL_CLIENT_ID_ENV, load_toml, source_settings
from inference.errors import (
    ConfigError,
    InvalidUsername,
    ListSourceError,
    PrivateList,
    RateLimited,
    ServiceUnavailable,
    UserNotFound,
)
from training.crawl_store import CrawlStore
from training.errors import TrainingError

STORE_FILE = "crawl.sqlite"
Fetch = Callable[[str], Awaitable[AnimeList]]

ERROR_KINDS: tuple[tuple[type[ListSourceError], str], ...] = (
    (InvalidUsername, "invalid_username"),
    (UserNotFound, "not_found"),
    (PrivateList, "private"),
    (RateLimited, "rate_limited"),
    (ServiceUnavailable, "unavailable"),
)


def error_kind(exc: ListSourceError) -> str:
    for cls, kind in ERROR_KINDS:
        if isinstance(exc, cls):
            return kind
    return "error"


@dataclass
class CrawlResult:
    due: int = 0
    fetched: int = 0
    failed: Counter[str] = field(default_factory=Counter)


async def crawl(
    store: CrawlStore,
    service: str,
    fetch: Fetch,
    *,
    workers: int = 4,
    max_failures: int = 3,
    fresh_seconds: float = 30 * 86400,
    clock: Callable[[], float] = time.time,
    progress: bool = True,
) -> CrawlResult:
    """Fetch every due user of `service` with `workers` concurrent tasks; commits per user.

    A ConfigError (e.g. a rejected MyAnimeList client id) stops the whole crawl: no user can
    succeed until the operator fixes it.
    """
    due = store.due(service, max_failures=max_failures, fresh_after=clock() - fresh_seconds)
    result = CrawlResult(due=len(due))
    queue: asyncio.Queue[str] = asyncio.Queue()
    for name in due:
        queue.put_nowait(name)
    bar = tqdm(
        total=len(due), desc=f"crawl {service}", unit="user", disable=not progress, file=sys.stderr
    )

    async def worker() -> None:
        while True:
            try:
                name = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                anime_list = await fetch(name)
            except ConfigError:
                raise
            except ListSourceError as exc:
                kind = error_kind(exc)
                store.record_failure(service, name, kind, str(exc), clock())
                result.failed[kind] += 1
            else:
                store.record_success(service, name, anime_list, clock())
                result.fetched += 1
            bar.update(1)
            bar.set_postfix(ok=result.fetched, failed=sum(result.failed.values()))

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, workers))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        bar.close()
    return result


def read_usernames(path: Path) -> list[str]:
    """One name per line; blank lines and `#` comments skipped, duplicates dropped in order."""
    names: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.setdefault(name, None)
    return list(names)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=Path, required=True, help="file of usernames, one a line")
    parser.add_argument("--service", choices=("mal", "anilist"), required=True)
    parser.add_argument(
        "--store", type=Path, required=True, help=f"folder of the store ({STORE_FILE})"
    )
    parser.add_argument("--workers", type=int, default=4, help="concurrent fetches (default 4)")
    parser.add_argument(
        "--max-failures", type=int, default=3, help="skip users that failed this often in a row"
    )
    parser.add_argument(
        "--fresh-days", type=float, default=30.0, help="do not refetch lists younger than this"
    )
    parser.add_argument(
        "--catalog", type=Path, default=None, help="catalogue for AniList -> MAL ids"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="config.toml to read [sources] from"
    )


def _anilist_to_mal(path: Path | None) -> dict[int, int]:
    from inference.catalog import load_catalog
    from training.importers import default_catalog

    catalog_path = path or default_catalog()
    if catalog_path.suffix == ".csv" or not catalog_path.exists():
        return {}
    return load_catalog(catalog_path).anilist_to_mal


async def _run(args: argparse.Namespace) -> CrawlResult:
    from inference.http import make_http_client
    from inference.sources.fetch import ListSources

    settings = source_settings(load_toml(args.config))
    names = read_usernames(args.users)
    with CrawlStore(args.store / STORE_FILE) as store:
        added = store.add_users(args.service, names, time.time())
        print(f"{len(names):,} names read, {added:,} new to the store", file=sys.stderr)
        async with make_http_client(settings) as http:
            sources = ListSources(
                http,
                settings,
                mal_client_id=os.environ.get(MAL_CLIENT_ID_ENV),
                anilist_to_mal=_anilist_to_mal(args.catalog) if args.service == "anilist" else None,
            )
            fetch = sources.fetch_mal_list if args.service == "mal" else sources.fetch_anilist_list
            return await crawl(
                store,
                args.service,
                fetch,
                workers=args.workers,
                max_failures=args.max_failures,
                fresh_seconds=args.fresh_days * 86400,
            )


def main(args: argparse.Namespace) -> int:
    if not args.users.is_file():
        raise TrainingError(f"no such file {args.users}")
    try:
        result = asyncio.run(_run(args))
    except KeyboardInterrupt:
        print("crawl interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    failed = ", ".join(f"{kind} {count}" for kind, count in sorted(result.failed.items())) or "none"
    print(
        f"{result.fetched:,} of {result.due:,} due users fetched; failed: {failed}", file=sys.stderr
    )
    return 0
