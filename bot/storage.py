"""The bot's SQLite database through aiosqlite (docs/architecture.md#storage): accounts, subscriptions, deliveries,
list cache and feedback.

The schema version lives in `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i + 1, each in
its own transaction, so an old file is brought up to date on open. Every query binds its values as
parameters: nothing a user types is ever spliced into SQL.

Deliveries carry the weekly DM's at-most-once promise: the row (subscription, ISO week) is inserted
as "sending" before the send, and that INSERT is the claim; a second claim for the same week fails
on the primary key. A row left "sending" by a crash is never retried.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from inference.animelist import AnimeList

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE accounts (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            service TEXT NOT NULL CHECK (service IN ('mal', 'anilist')),
            username TEXT NOT NULL,
            linked_at REAL NOT NULL,
            PRIMARY KEY (platform, user_id)
        )""",
        """CREATE TABLE subscriptions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            weekday TEXT NOT NULL,
            hour INTEGER NOT NULL CHECK (hour BETWEEN 0 AND 23),
            tz TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            paused_reason TEXT,
            created_at REAL NOT NULL,
            UNIQUE (platform, user_id)
        )""",
        """CREATE TABLE deliveries (
            subscription_id INTEGER NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
            iso_week TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'failed')),
            error TEXT,
            started_at REAL NOT NULL,
            finished_at REAL,
            PRIMARY KEY (subscription_id, iso_week)
        )""",
        """CREATE TABLE list_cache (
            service TEXT NOT NULL,
            username TEXT NOT NULL,
            fetched_at REAL NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (service, username)
        )""",
        """CREATE TABLE feedback (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            mal_id INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('seen', 'not_interested')),
            created_at REAL NOT NULL,
            PRIMARY KEY (platform, user_id, mal_id)
        )""",
        "CREATE INDEX subscriptions_active ON subscriptions (active)",
    ),
    (
        # Small facts the bot keeps about itself (e.g. the hash of the last synced command set).
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

FEEDBACK_KINDS = ("seen", "not_interested")


@dataclass(frozen=True, slots=True)
class Account:
    service: str
    username: str


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    platform: str
    user_id: str
    chat_id: str
    weekday: str
    hour: int
    tz: str
    active: bool
    paused_reason: str | None
    created_at: float


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (it holds who subscribed and their
    chat ids); SQLite gives the -wal and -shm files the same mode. A file already there is
    narrowed to that mode too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    except PermissionError:  # someone else's file that we may write: leave its mode alone
        pass
    finally:
        os.close(fd)


class Storage:
    """One connection per process; aiosqlite runs it on its own thread, off the event loop."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path | str) -> Storage:
        if str(path) != ":memory:":
            _create_private(Path(path))
        db = await aiosqlite.connect(str(path), isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        storage = cls(db)
        try:
            await storage._migrate()
        except BaseException:
            await db.close()
            raise
        return storage

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        version = await self.schema_version()
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema {version} is newer than this bot understands ({SCHEMA_VERSION})"
            )
        for target, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    await self._db.execute(statement)
                # PRAGMA takes no bound parameters; `target` is our own integer.
                await self._db.execute(f"PRAGMA user_version = {int(target)}")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    # ----- accounts -------------------------------------------------------------------------

    async def link(self, platform: str, user_id: str, service: str, username: str) -> None:
        await self._db.execute(
            "INSERT INTO accounts (platform, user_id, service, username, linked_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, user_id) DO UPDATE SET "
            "service = excluded.service, username = excluded.username, "
            "linked_at = excluded.linked_at",
            (platform, user_id, service, username, time.time()),
        )

    async def unlink(self, platform: str, user_id: str) -> bool:
        cur = await self._db.execute(
            "DELETE FROM accounts WHERE platform = ? AND user_id = ?", (platform, user_id)
        )
        return cur.rowcount > 0

    async def account(self, platform: str, user_id: str) -> Account | None:
        async with self._db.execute(
            "SELECT service, username FROM accounts WHERE platform = ? AND user_id = ?",
            (platform, user_id),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else Account(row[0], row[1])

    # ----- subscriptions --------------------------------------------------------------------

    async def subscribe(
        self,
        platform: str,
        user_id: str,
        chat_id: str,
        weekday: str,
        hour: int,
        tz: str,
        *,
        now: float | None = None,
    ) -> Subscription:
        """Create or replace the user's subscription; resubscribing un-pauses it.

        `created_at` restarts too, so a slot that already passed this week is not sent at once.
        """
        await self._db.execute(
            "INSERT INTO subscriptions (platform, user_id, chat_id, weekday, hour, tz, active, "
            "paused_reason, created_at) VALUES (?, ?, ?, ?, ?, ?, 1, NULL, ?) "
            "ON CONFLICT (platform, user_id) DO UPDATE SET chat_id = excluded.chat_id, "
            "weekday = excluded.weekday, hour = excluded.hour, tz = excluded.tz, active = 1, "
            "paused_reason = NULL, created_at = excluded.created_at",
            (platform, user_id, chat_id, weekday, hour, tz, time.time() if now is None else now),
        )
        sub = await self.subscription(platform, user_id)
        assert sub is not None
        return sub

    async def unsubscribe(self, platform: str, user_id: str) -> bool:
        cur = await self._db.execute(
            "DELETE FROM subscriptions WHERE platform = ? AND user_id = ?", (platform, user_id)
        )
        return cur.rowcount > 0

    async def subscription(self, platform: str, user_id: str) -> Subscription | None:
        rows = await self._subscriptions("WHERE platform = ? AND user_id = ?", (platform, user_id))
        return rows[0] if rows else None

    async def subscription_by_id(self, subscription_id: int) -> Subscription | None:
        rows = await self._subscriptions("WHERE id = ?", (subscription_id,))
        return rows[0] if rows else None

    async def active_subscriptions(self) -> list[Subscription]:
        return await self._subscriptions("WHERE active = 1 ORDER BY id", ())

    async def _subscriptions(self, where: str, params: Sequence[Any]) -> list[Subscription]:
        async with self._db.execute(
            "SELECT id, platform, user_id, chat_id, weekday, hour, tz, active, paused_reason, "
            f"created_at FROM subscriptions {where}",
            tuple(params),
        ) as cur:
            rows = await cur.fetchall()
        return [
            Subscription(
                id=r[0],
                platform=r[1],
                user_id=r[2],
                chat_id=r[3],
                weekday=r[4],
                hour=r[5],
                tz=r[6],
                active=bool(r[7]),
                paused_reason=r[8],
                created_at=r[9],
            )
            for r in rows
        ]

    async def pause_subscription(self, subscription_id: int, reason: str) -> None:
        await self._db.execute(
            "UPDATE subscriptions SET active = 0, paused_reason = ? WHERE id = ?",
            (reason, subscription_id),
        )

    # ----- deliveries -----------------------------------------------------------------------

    async def delivered_weeks(self, iso_weeks: Sequence[str]) -> set[tuple[int, str]]:
        """(subscription id, week) pairs that already have a row, in any state."""
        if not iso_weeks:
            return set()
        marks = ", ".join("?" for _ in iso_weeks)
        async with self._db.execute(
            f"SELECT subscription_id, iso_week FROM deliveries WHERE iso_week IN ({marks})",
            tuple(iso_weeks),
        ) as cur:
            rows = await cur.fetchall()
        return {(int(r[0]), str(r[1])) for r in rows}

    async def claim_delivery(self, subscription_id: int, iso_week: str) -> bool:
        """Insert the "sending" row; False when the week was already claimed (by anyone)."""
        cur = await self._db.execute(
            "INSERT OR IGNORE INTO deliveries (subscription_id, iso_week, state, started_at) "
            "VALUES (?, ?, 'sending', ?)",
            (subscription_id, iso_week, time.time()),
        )
        return cur.rowcount == 1

    async def finish_delivery(
        self, subscription_id: int, iso_week: str, *, ok: bool, error: str | None = None
    ) -> None:
        await self._db.execute(
            "UPDATE deliveries SET state = ?, error = ?, finished_at = ? "
            "WHERE subscription_id = ? AND iso_week = ? AND state = 'sending'",
            ("sent" if ok else "failed", error, time.time(), subscription_id, iso_week),
        )

    async def deliveries(self) -> list[tuple[int, str, str, str | None]]:
        """(subscription id, week, state, error) for every row, oldest first."""
        async with self._db.execute(
            "SELECT subscription_id, iso_week, state, error FROM deliveries "
            "ORDER BY started_at, subscription_id"
        ) as cur:
            rows = await cur.fetchall()
        return [(int(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]

    # ----- list cache -----------------------------------------------------------------------

    async def cached_list(
        self, service: str, username: str, max_age_s: float, *, now: float | None = None
    ) -> AnimeList | None:
        async with self._db.execute(
            "SELECT fetched_at, body FROM list_cache WHERE service = ? AND username = ?",
            (service, username.lower()),
        ) as cur:
            row = await cur.fetchone()
        current = time.time() if now is None else now
        if row is None or current - float(row[0]) > max_age_s:
            return None
        # Decoding a long list takes milliseconds; off the loop, a burst of cache hits cannot
        # stall it (measured by bench/bench_bot.py).
        return await asyncio.to_thread(AnimeList.from_json, row[1])

    async def cache_list(
        self, service: str, username: str, anime_list: AnimeList, *, now: float | None = None
    ) -> None:
        await self._db.execute(
            "INSERT INTO list_cache (service, username, fetched_at, body) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (service, username) DO UPDATE SET fetched_at = excluded.fetched_at, "
            "body = excluded.body",
            (
                service,
                username.lower(),
                time.time() if now is None else now,
                anime_list.to_json(),
            ),
        )

    async def purge_list_cache(self, max_age_s: float) -> int:
        cur = await self._db.execute(
            "DELETE FROM list_cache WHERE fetched_at < ?", (time.time() - max_age_s,)
        )
        return cur.rowcount

    # ----- feedback -------------------------------------------------------------------------

    async def add_feedback(self, platform: str, user_id: str, mal_id: int, kind: str) -> None:
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"feedback kind must be one of {FEEDBACK_KINDS}, not {kind!r}")
        await self._db.execute(
            "INSERT INTO feedback (platform, user_id, mal_id, kind, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, user_id, mal_id) DO UPDATE SET "
            "kind = excluded.kind, created_at = excluded.created_at",
            (platform, user_id, mal_id, kind, time.time()),
        )

    async def feedback(self, platform: str, user_id: str) -> dict[int, str]:
        async with self._db.execute(
            "SELECT mal_id, kind FROM feedback WHERE platform = ? AND user_id = ?",
            (platform, user_id),
        ) as cur:
            rows = await cur.fetchall()
        return {int(r[0]): str(r[1]) for r in rows}

    # ----- meta -----------------------------------------------------------------------------

    async def meta(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, time.time()),
        )
