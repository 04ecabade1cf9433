"""The store on both backends (SQLite and PostgreSQL): schema versions, claims, cache TTL,
parameterized queries, sessions and shared request slots; then what only SQLite has (WAL, file
modes) and how the PostgreSQL store is chosen and refused."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import asyncpg
import pytest

from bot.settings import DATABASE_URL_ENV, StorageSection
from bot.storage import (
    SCHEMA_VERSION,
    SqliteStorage,
    Storage,
    StorageUnavailable,
    database_url,
    open_storage,
)
from bot.storage.schema import POSTGRESQL, SQLITE
from inference.animelist import AnimeList, ListEntry, PartialDate, Status
from inference.errors import ConfigError

TABLES = {"accounts", "subscriptions", "deliveries", "list_cache", "feedback", "meta", "sessions"}


async def tables(storage: Storage) -> set[str]:
    if storage.dialect is SQLITE:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    return {str(r[0]) for r in await storage._fetchall(sql)}


async def set_schema_version(storage: Storage, version: int) -> None:
    if storage.dialect is SQLITE:
        await storage._execute(f"PRAGMA user_version = {int(version)}")
    else:
        await storage._execute("UPDATE schema_version SET version = ?", (version,))


# ----- both backends ------------------------------------------------------------------------


async def test_a_new_store_is_migrated_and_reopens(storage_section: StorageSection) -> None:
    async with await open_storage(storage_section) as storage:
        assert await storage.schema_version() == SCHEMA_VERSION
        assert await tables(storage) >= TABLES
        await storage.link("telegram", "1", "anilist", "someone")
    async with await open_storage(storage_section) as storage:  # no migration runs twice
        assert await storage.schema_version() == SCHEMA_VERSION
        account = await storage.account("telegram", "1")
        assert account is not None and account.username == "someone"


async def test_processes_opening_a_new_store_together_migrate_it_once(
    storage_section: StorageSection,
) -> None:
    stores = await asyncio.gather(*(open_storage(storage_section) for _ in range(4)))
    try:
        assert {await s.schema_version() for s in stores} == {SCHEMA_VERSION}
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(storage_section: StorageSection) -> None:
    async with await open_storage(storage_section) as storage:
        await set_schema_version(storage, SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="newer"):
        await open_storage(storage_section)


async def test_a_version_1_store_gains_the_later_tables(storage_section: StorageSection) -> None:
    """The same migrations bring an old store up to date on either backend."""
    if storage_section.url == "env":
        conn = await asyncpg.connect(database_url())
        try:
            for statement in POSTGRESQL.migrations()[0]:
                await conn.execute(statement)
            await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            await conn.execute("INSERT INTO schema_version VALUES (1)")
        finally:
            await conn.close()
    else:
        with sqlite3.connect(storage_section.resolved_path()) as raw:
            for statement in SQLITE.migrations()[0]:
                raw.execute(statement)
            raw.execute("PRAGMA user_version = 1")
    async with await open_storage(storage_section) as storage:
        assert await storage.schema_version() == SCHEMA_VERSION
        assert await tables(storage) >= TABLES
        assert await storage.meta("commands_hash") is None
        await storage.set_meta("commands_hash", "a")
        await storage.set_meta("commands_hash", "b")
        assert await storage.meta("commands_hash") == "b"


@pytest.mark.parametrize(
    "hostile",
    ["x'); DROP TABLE accounts; --", "what? $1 ?? $2", "名前 ‮ \\ \" '' %s {real}"],
)
async def test_user_text_is_stored_verbatim(storage: Storage, hostile: str) -> None:
    await storage.link("discord", hostile, "mal", hostile)
    account = await storage.account("discord", hostile)
    assert account is not None and account.username == hostile
    await storage.add_feedback("discord", hostile, 5, "seen")
    assert await storage.feedback("discord", hostile) == {5: "seen"}
    assert await storage.unlink("discord", hostile)
    assert not await storage.unlink("discord", hostile)


async def test_a_week_is_claimed_once(storage: Storage) -> None:
    sub = await storage.subscribe("telegram", "1", "1", "friday", 18, "UTC")
    assert await storage.claim_delivery(sub.id, "2026-W48")
    assert not await storage.claim_delivery(sub.id, "2026-W48")
    assert await storage.claim_delivery(sub.id, "2026-W49")
    await storage.finish_delivery(sub.id, "2026-W48", ok=True)
    await storage.finish_delivery(sub.id, "2026-W48", ok=False, error="late")  # no effect
    rows = {(w, state) for _, w, state, _ in await storage.deliveries()}
    assert rows == {("2026-W48", "sent"), ("2026-W49", "sending")}
    assert await storage.delivered_weeks(["2026-W48"]) == {(sub.id, "2026-W48")}


async def test_of_two_processes_claiming_one_week_exactly_one_wins(
    storage_section: StorageSection,
) -> None:
    first = await open_storage(storage_section)
    second = await open_storage(storage_section)
    try:
        sub = await first.subscribe("telegram", "1", "1", "friday", 18, "UTC")
        claims = await asyncio.gather(
            *(s.claim_delivery(sub.id, "2026-W48") for s in [first, second] * 5)
        )
        assert sorted(claims) == [False] * 9 + [True]
    finally:
        await first.close()
        await second.close()


async def test_resubscribing_unpauses(storage: Storage) -> None:
    sub = await storage.subscribe("discord", "7", "7", "monday", 9, "UTC")
    await storage.pause_subscription(sub.id, "DMs closed")
    paused = await storage.subscription("discord", "7")
    assert paused is not None and not paused.active and paused.paused_reason == "DMs closed"
    assert await storage.active_subscriptions() == []
    again = await storage.subscribe("discord", "7", "7", "tuesday", 9, "UTC")
    assert again.active and again.paused_reason is None and again.id == sub.id
    assert await storage.subscription_by_id(sub.id) == again
    assert await storage.unsubscribe("discord", "7")
    assert await storage.subscription("discord", "7") is None


async def test_list_cache_round_trip_and_ttl(storage: Storage) -> None:
    anime_list = AnimeList(
        source="anilist",
        username="Someone",
        entries=[
            ListEntry(1, Status.COMPLETED, score=8.5, started=PartialDate(2020, 3)),
            ListEntry(2, Status.WATCHING, rewatching=True, episodes_watched=3, updated_at=99),
            ListEntry(3, Status.PLAN_TO_WATCH, title="Some <Title>"),
        ],
        unmapped_entries=2,
    )
    await storage.cache_list("anilist", "Someone", anime_list, now=1000.0)
    assert await storage.cached_list("anilist", "someone", 60.0, now=1059.0) == anime_list
    assert await storage.cached_list("anilist", "someone", 60.0, now=1061.0) is None
    assert await storage.cached_list("mal", "someone", 60.0, now=1001.0) is None
    assert await storage.purge_list_cache(60.0) == 1  # fetched "at 1000", long ago
    assert await storage.cached_list("anilist", "someone", 1e12) is None


async def test_sessions_round_trip_and_keep_within_their_bounds(storage: Storage) -> None:
    bounds = {"max_sessions": 3, "max_entries": 25}
    for n in range(1, 5):  # four users, 10 entries each: the entry bound keeps the newest two
        await storage.save_session("t", str(n), f"state{n}", f"list{n}", 10, now=n, **bounds)
    assert await storage.session("t", "1") is None and await storage.session("t", "2") is None
    kept = await storage.session("t", "4")
    assert kept is not None and (kept.state, kept.list_body) == ("state4", "list4")
    assert await storage.session_entries() == 20
    # A /more rewrites the state only; the list stays.
    await storage.save_session("t", "3", "more3", None, 10, now=5, **bounds)
    again = await storage.session("t", "3")
    assert again is not None and (again.state, again.list_body) == ("more3", "list3")
    assert await storage.session_state("t", "3") == "more3"
    # The newest session stays even when it alone is over the bound.
    await storage.save_session("t", "9", "big", "biglist", 100, now=6, **bounds)
    assert await storage.session("t", "9") is not None
    assert await storage.session_entries() == 100
    # By count: three small sessions at most.
    for n in range(10, 15):
        await storage.save_session("t", str(n), "s", "l", 1, now=n, **bounds)
    assert [await storage.session("t", str(n)) is not None for n in range(10, 15)] == [
        False,
        False,
        True,
        True,
        True,
    ]


async def test_request_slots_are_spaced_and_deferred(storage: Storage) -> None:
    slots = [await storage.reserve_slot("mal", 2.0, 100.0) for _ in range(3)]
    assert slots == [100.0, 102.0, 104.0]
    assert await storage.reserve_slot("mal", 2.0, 200.0) == 200.0  # an idle budget starts now
    assert await storage.reserve_slot("anilist", 2.0, 100.0) == 100.0  # budgets are separate
    await storage.defer_slot("mal", 300.0)
    await storage.defer_slot("mal", 250.0)  # an earlier deferral never shortens one
    assert await storage.reserve_slot("mal", 2.0, 201.0) == 300.0


async def test_two_processes_reserving_together_never_share_a_slot(
    storage_section: StorageSection,
) -> None:
    first = await open_storage(storage_section)
    second = await open_storage(storage_section)
    try:
        slots = await asyncio.gather(
            *(s.reserve_slot("mal", 1.0, 1000.0) for s in [first, second] * 20)
        )
        assert sorted(slots) == [1000.0 + i for i in range(40)]
    finally:
        await first.close()
        await second.close()


# ----- SQLite only ----------------------------------------------------------------------------


async def test_connections_opening_one_new_file_together_all_switch_it_to_wal(
    tmp_path: Path,
) -> None:
    """Two connections switching a new file to WAL at the same moment get "database is locked"
    at once, busy timeout or not (SQLite's deadlock rule); each open must wait that out. Eight at
    a time, 25 new files: before the wait, about one file in twelve failed."""
    for round_ in range(25):
        path = tmp_path / f"new-{round_}.db"
        stores = await asyncio.gather(*(SqliteStorage.open(path) for _ in range(8)))
        try:
            assert {await s.schema_version() for s in stores} == {SCHEMA_VERSION}
        finally:
            for store in stores:
                await store.close()
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await SqliteStorage.open(path) as storage:
        await storage.link("telegram", "1", "anilist", "someone")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_the_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "db.sqlite3"
    async with await SqliteStorage.open(path) as storage:
        await storage.link("telegram", "1", "anilist", "someone")
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()  # open while the WAL is there
        for file in (path, wal):
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    # A file left world-readable by an older version is narrowed on open.
    old = tmp_path / "old.sqlite3"
    sqlite3.connect(old).close()
    old.chmod(0o644)
    async with await SqliteStorage.open(old):
        pass
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


# ----- choosing PostgreSQL --------------------------------------------------------------------


def test_a_database_url_in_the_config_file_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        StorageSection(url="postgresql://bot:hunter2@db/animerec")
    message = str(caught.value)
    assert "hunter2" not in message and DATABASE_URL_ENV in message and "\n" not in message


def test_the_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    with pytest.raises(ConfigError, match=DATABASE_URL_ENV):
        database_url()
    monkeypatch.setenv(DATABASE_URL_ENV, "mysql://bot:hunter2@db/x")
    with pytest.raises(ConfigError) as caught:
        database_url()
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv(DATABASE_URL_ENV, " postgresql://bot:pw@db/x ")
    assert database_url() == "postgresql://bot:pw@db/x"


async def test_an_unreachable_server_is_one_line_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        DATABASE_URL_ENV, f"postgresql://bot:hunter2@/animerec?host={tmp_path}&port=5999"
    )
    with pytest.raises(StorageUnavailable) as caught:
        await open_storage(StorageSection(url="env"))
    message = str(caught.value)
    assert "hunter2" not in message and "\n" not in message
    assert message.startswith("cannot open the PostgreSQL store")
