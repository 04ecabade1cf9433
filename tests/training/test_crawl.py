from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from inference.config import SourceSettings
from inference.http import make_http_client
from inference.sources.fetch import ListSources
from tests.inference.fakes import (
    FakeAniList,
    FakeClock,
    FakeMal,
    mal_row,
    many_anilist_rows,
    many_mal_rows,
)
from training.crawl import crawl, read_usernames
from training.crawl_store import CrawlStore, import_crawl_store
from training.parquet_schema import read_meta

USERS = [f"user{i:02d}" for i in range(12)]


class CountingMal(FakeMal):
    """FakeMal that counts list requests per user and can announce when N users were served."""

    def __init__(self) -> None:
        super().__init__()
        self.served: Counter[str] = Counter()
        self.after: tuple[int, asyncio.Event] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.split("/")[3].lower() if request.url.path.count("/") == 4 else ""
        self.served[name] += 1
        if self.after and len(self.served) >= self.after[0]:
            self.after[1].set()
        return super().__call__(request)


def make_fake() -> CountingMal:
    fake = CountingMal()
    for i, name in enumerate(USERS):
        fake.add_user(name, many_mal_rows(3 + i, seed=i))
    return fake


def sources_for(
    transport: httpx.MockTransport, clock: FakeClock
) -> tuple[httpx.AsyncClient, ListSources]:
    settings = SourceSettings()
    http = make_http_client(settings, transport=transport)
    sources = ListSources(
        http, settings, mal_client_id="test-client-id", sleep=clock.sleep, clock=clock
    )
    return http, sources


async def test_killed_crawl_resumes_without_refetching(tmp_path: Path) -> None:
    clock = FakeClock()
    store = CrawlStore(tmp_path / "crawl.sqlite")
    store.add_users("mal", USERS, clock())

    first = make_fake()
    reached = asyncio.Event()
    first.after = (5, reached)
    http, sources = sources_for(httpx.MockTransport(first), clock)
    async with http:
        task = asyncio.create_task(
            crawl(store, "mal", sources.fetch_mal_list, workers=3, clock=clock, progress=False)
        )
        await reached.wait()
        task.cancel()  # the kill: workers stop wherever they are
        with pytest.raises(asyncio.CancelledError):
            await task
    stored_after_kill = {name for _, name, _ in store.lists("mal")}
    assert 0 < len(stored_after_kill) < len(USERS)

    # "Restart": a new store connection, new client, new service counters.
    store.close()
    store = CrawlStore(tmp_path / "crawl.sqlite")
    second = make_fake()
    http, sources = sources_for(httpx.MockTransport(second), clock)
    async with http:
        result = await crawl(
            store, "mal", sources.fetch_mal_list, workers=3, clock=clock, progress=False
        )

    assert not set(second.served) & stored_after_kill  # nothing stored was fetched again
    assert result.fetched == len(USERS) - len(stored_after_kill)
    stored = {name: lst for _, name, lst in store.lists("mal")}
    assert set(stored) == set(USERS)
    assert [len(stored[name]) for name in USERS] == [3 + i for i in range(len(USERS))]
    assert all(store.state("mal", name).failures == 0 for name in USERS)  # type: ignore[union-attr]
    # A third run finds nothing due: every list is fresh.
    assert (await crawl(store, "mal", sources.fetch_mal_list, clock=clock, progress=False)).due == 0
    store.close()


async def test_typed_failures_are_recorded_and_repeated_ones_skipped(tmp_path: Path) -> None:
    clock = FakeClock()
    fake = make_fake()
    fake.add_user("hidden", [mal_row(1)], private=True)
    store = CrawlStore(tmp_path / "crawl.sqlite")
    store.add_users("mal", ["user00", "hidden", "ghost"], clock())
    http, sources = sources_for(httpx.MockTransport(fake), clock)
    async with http:
        for _ in range(2):
            result = await crawl(
                store,
                "mal",
                sources.fetch_mal_list,
                max_failures=2,
                fresh_seconds=1e9,
                clock=clock,
                progress=False,
            )
            clock.now += 3600
        assert result.failed == Counter({"private": 1, "not_found": 1})
        ghost = store.state("mal", "ghost")
        assert ghost is not None and ghost.failures == 2 and ghost.error_kind == "not_found"
        hidden = store.state("mal", "hidden")
        assert hidden is not None and hidden.error_kind == "private" and hidden.last_fetched is None
        # Two failures in a row reach --max-failures 2: the next crawl leaves both alone.
        before = sum(fake.served.values())
        third = await crawl(
            store,
            "mal",
            sources.fetch_mal_list,
            max_failures=2,
            fresh_seconds=1e9,
            clock=clock,
            progress=False,
        )
        assert third.due == 0 and sum(fake.served.values()) == before
    store.close()


async def test_least_recently_fetched_refreshed_first(tmp_path: Path) -> None:
    clock = FakeClock()
    store = CrawlStore(tmp_path / "crawl.sqlite")
    names = ["user00", "user01", "user02"]
    store.add_users("mal", names, clock())
    fake = make_fake()
    http, sources = sources_for(httpx.MockTransport(fake), clock)
    order: list[str] = []

    async def fetch(name: str):  # type: ignore[no-untyped-def]
        order.append(name)
        return await sources.fetch_mal_list(name)

    async with http:
        for name in ["user02", "user00", "user01"]:  # fetched at increasing times
            clock.now += 10
            store.record_success("mal", name, await sources.fetch_mal_list(name), clock())
        clock.now += 10
        await crawl(store, "mal", fetch, workers=1, fresh_seconds=0, clock=clock, progress=False)
    assert order == ["user02", "user00", "user01"]
    store.close()


async def test_crawl_store_imports_to_parquet_with_anilist(tmp_path: Path) -> None:
    clock = FakeClock()
    anilist = FakeAniList()
    rows = many_anilist_rows(8)
    rows[0]["media"]["idMal"] = None  # no MAL id anywhere: dropped and counted
    anilist.add_user("Alice", rows)
    store = CrawlStore(tmp_path / "crawl.sqlite")
    store.add_users("anilist", ["Alice", "Nobody"], clock())
    settings = SourceSettings()
    async with make_http_client(settings, transport=httpx.MockTransport(anilist)) as http:
        sources = ListSources(http, settings, sleep=clock.sleep, clock=clock)
        await crawl(store, "anilist", sources.fetch_anilist_list, clock=clock, progress=False)
    store.close()

    out = tmp_path / "crawl.parquet"
    report = import_crawl_store(tmp_path / "crawl.sqlite", out)
    table = pq.read_table(out)
    assert report.rows_kept == table.num_rows == 7
    assert set(table.column("user").to_pylist()) == {"anilist:Alice"}
    assert table.column("row").to_pylist() == list(range(7))
    meta = read_meta(out)
    assert meta["report"]["users_failed_by_kind"] == {"not_found": 1}
    assert meta["report"]["entries_without_mal_id"] == 1
    assert meta["has_times"] is True


def test_read_usernames_skips_blanks_comments_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_text("alice\n\n# a comment\nbob  # trailing\nalice\n")
    assert read_usernames(path) == ["alice", "bob"]
