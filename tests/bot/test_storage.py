"""SQLite storage: schema versions, WAL, claims, cache TTL, parameterized queries."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from bot.storage import SCHEMA_VERSION, Storage
from inference.animelist import AnimeList, ListEntry, PartialDate, Status


async def test_new_file_is_migrated_in_wal_mode_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with await Storage.open(path) as storage:
        assert await storage.schema_version() == SCHEMA_VERSION
        await storage.link("telegram", "1", "anilist", "someone")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"accounts", "subscriptions", "deliveries", "list_cache", "feedback"} <= tables
    async with await Storage.open(path) as storage:  # reopening runs no migration twice
        account = await storage.account("telegram", "1")
        assert account is not None and account.username == "someone"


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    try:
        await Storage.open(path)
    except RuntimeError as exc:
        assert "newer" in str(exc)
    else:
        raise AssertionError("a newer schema was accepted")


async def test_user_text_is_stored_verbatim(tmp_path: Path) -> None:
    hostile = "x'); DROP TABLE accounts; --"
    async with await Storage.open(tmp_path / "db.sqlite3") as storage:
        await storage.link("discord", hostile, "mal", hostile)
        account = await storage.account("discord", hostile)
        assert account is not None and account.username == hostile
        await storage.add_feedback("discord", hostile, 5, "seen")
        assert await storage.feedback("discord", hostile) == {5: "seen"}


async def test_a_week_is_claimed_once(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "db.sqlite3") as storage:
        sub = await storage.subscribe("telegram", "1", "1", "friday", 18, "UTC")
        assert await storage.claim_delivery(sub.id, "2026-W48")
        assert not await storage.claim_delivery(sub.id, "2026-W48")
        assert await storage.claim_delivery(sub.id, "2026-W49")
        await storage.finish_delivery(sub.id, "2026-W48", ok=True)
        await storage.finish_delivery(sub.id, "2026-W48", ok=False, error="late")  # no effect
        rows = {(w, state) for _, w, state, _ in await storage.deliveries()}
        assert rows == {("2026-W48", "sent"), ("2026-W49", "sending")}
        assert await storage.delivered_weeks(["2026-W48"]) == {(sub.id, "2026-W48")}


async def test_resubscribing_unpauses(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "db.sqlite3") as storage:
        sub = await storage.subscribe("discord", "7", "7", "monday", 9, "UTC")
        await storage.pause_subscription(sub.id, "DMs closed")
        paused = await storage.subscription("discord", "7")
        assert paused is not None and not paused.active and paused.paused_reason == "DMs closed"
        assert await storage.active_subscriptions() == []
        again = await storage.subscribe("discord", "7", "7", "tuesday", 9, "UTC")
        assert again.active and again.paused_reason is None and again.id == sub.id


async def test_list_cache_round_trip_and_ttl(tmp_path: Path) -> None:
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
    async with await Storage.open(tmp_path / "db.sqlite3") as storage:
        await storage.cache_list("anilist", "Someone", anime_list, now=1000.0)
        assert await storage.cached_list("anilist", "someone", 60.0, now=1059.0) == anime_list
        assert await storage.cached_list("anilist", "someone", 60.0, now=1061.0) is None
        assert await storage.cached_list("mal", "someone", 60.0, now=1001.0) is None


async def test_the_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "db.sqlite3"
    async with await Storage.open(path) as storage:
        await storage.link("telegram", "1", "anilist", "someone")
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()  # open while the WAL is there
        for file in (path, wal):
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    # A file left world-readable by an older version is narrowed on open.
    old = tmp_path / "old.sqlite3"
    sqlite3.connect(old).close()
    old.chmod(0o644)
    async with await Storage.open(old):
        pass
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


async def test_meta_values_are_replaced_and_a_version_1_file_gains_the_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as raw:  # a file as the first schema left it
        raw.execute("CREATE TABLE accounts (platform TEXT, user_id TEXT)")
        raw.execute("PRAGMA user_version = 1")
    async with await Storage.open(path) as storage:
        assert await storage.schema_version() == SCHEMA_VERSION
        assert await storage.meta("commands_hash") is None
        await storage.set_meta("commands_hash", "a")
        await storage.set_meta("commands_hash", "b")
        assert await storage.meta("commands_hash") == "b"
