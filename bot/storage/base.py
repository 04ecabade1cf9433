"""The queries both stores share (docs/architecture.md#serving): accounts, subscriptions, deliveries, list cache,
feedback, meta, the /more sessions and the shared request budgets.

A backend supplies three primitives (`_execute`, `_fetchall`, `schema_version`), its migration
runner and `close`; every query is written once here, with `?` placeholders and SQL that SQLite and
PostgreSQL both accept (`ON CONFLICT ... DO UPDATE`, `RETURNING`, window functions). Every query
binds its values as parameters: nothing a user types is ever spliced into SQL.

Deliveries carry the weekly DM's at-most-once promise: the row (subscription, ISO week) is inserted
as "sending" before the send, and that INSERT is the claim; a second claim for the same week fails
on the primary key, whichever process makes it. A row left "sending" by a crash is never retried.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.storage.schema import Dialect
from inference.animelist import AnimeList
from inference.errors import AnimerecError

FEEDBACK_KINDS = ("seen", "not_interested")


class StorageUnavailable(AnimerecError):
    """The store cannot be opened (the server is down, refuses us, or the database is missing)."""


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


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A user's /more session as stored: its state (JSON) and the list it was made from."""

    state: str
    list_body: str


class Storage(abc.ABC):
    """The store's interface and its shared queries; `bot.storage.open_storage` picks a backend."""

    dialect: Dialect

    @classmethod
    async def open(cls, path: Path | str) -> Storage:
        """The SQLite store at `path`, what `open_storage` gives when `[storage] url` is empty."""
        from bot.storage.sqlite import SqliteStorage

        return await SqliteStorage.open(path)

    # ----- what a backend provides ----------------------------------------------------------

    @abc.abstractmethod
    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abc.abstractmethod
    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Run one statement (a SELECT, or a write with RETURNING); its rows."""

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any] | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    # ----- accounts -------------------------------------------------------------------------

    async def link(self, platform: str, user_id: str, service: str, username: str) -> None:
        await self._execute(
            "INSERT INTO accounts (platform, user_id, service, username, linked_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, user_id) DO UPDATE SET "
            "service = excluded.service, username = excluded.username, "
            "linked_at = excluded.linked_at",
            (platform, user_id, service, username, time.time()),
        )

    async def unlink(self, platform: str, user_id: str) -> bool:
        changed = await self._execute(
            "DELETE FROM accounts WHERE platform = ? AND user_id = ?", (platform, user_id)
        )
        return changed > 0

    async def account(self, platform: str, user_id: str) -> Account | None:
        row = await self._fetchone(
            "SELECT service, username FROM accounts WHERE platform = ? AND user_id = ?",
            (platform, user_id),
        )
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
        await self._execute(
            "INSERT INTO subscriptions (platform, user_id, chat_id, weekday, hour, tz, active, "
            "paused_reason, created_at) VALUES (?, ?, ?, ?, ?, ?, 1, NULL, ?) "
            "ON CONFLICT (platform, user_id) DO UPDATE SET chat_id = excluded.chat_id, "
            "weekday = excluded.weekday, hour = excluded.hour, tz = excluded.tz, active = 1, "
            "paused_reason = NULL, created_at = excluded.created_at",
            (
                platform,
                user_id,
                chat_id,
                weekday,
                hour,
                tz,
                float(time.time() if now is None else now),
            ),
        )
        sub = await self.subscription(platform, user_id)
        assert sub is not None
        return sub

    async def unsubscribe(self, platform: str, user_id: str) -> bool:
        changed = await self._execute(
            "DELETE FROM subscriptions WHERE platform = ? AND user_id = ?", (platform, user_id)
        )
        return changed > 0

    async def subscription(self, platform: str, user_id: str) -> Subscription | None:
        rows = await self._subscriptions("WHERE platform = ? AND user_id = ?", (platform, user_id))
        return rows[0] if rows else None

    async def subscription_by_id(self, subscription_id: int) -> Subscription | None:
        rows = await self._subscriptions("WHERE id = ?", (subscription_id,))
        return rows[0] if rows else None

    async def active_subscriptions(self) -> list[Subscription]:
        return await self._subscriptions("WHERE active = 1 ORDER BY id", ())

    async def _subscriptions(self, where: str, params: Sequence[Any]) -> list[Subscription]:
        rows = await self._fetchall(
            "SELECT id, platform, user_id, chat_id, weekday, hour, tz, active, paused_reason, "
            f"created_at FROM subscriptions {where}",
            tuple(params),
        )
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
        await self._execute(
            "UPDATE subscriptions SET active = 0, paused_reason = ? WHERE id = ?",
            (reason, subscription_id),
        )

    # ----- deliveries -----------------------------------------------------------------------

    async def delivered_weeks(self, iso_weeks: Sequence[str]) -> set[tuple[int, str]]:
        """(subscription id, week) pairs that already have a row, in any state."""
        if not iso_weeks:
            return set()
        marks = ", ".join("?" for _ in iso_weeks)
        rows = await self._fetchall(
            f"SELECT subscription_id, iso_week FROM deliveries WHERE iso_week IN ({marks})",
            tuple(iso_weeks),
        )
        return {(int(r[0]), str(r[1])) for r in rows}

    async def claim_delivery(self, subscription_id: int, iso_week: str) -> bool:
        """Insert the "sending" row; False when the week was already claimed (by anyone)."""
        changed = await self._execute(
            "INSERT INTO deliveries (subscription_id, iso_week, state, started_at) "
            "VALUES (?, ?, 'sending', ?) ON CONFLICT DO NOTHING",
            (subscription_id, iso_week, time.time()),
        )
        return changed == 1

    async def finish_delivery(
        self, subscription_id: int, iso_week: str, *, ok: bool, error: str | None = None
    ) -> None:
        await self._execute(
            "UPDATE deliveries SET state = ?, error = ?, finished_at = ? "
            "WHERE subscription_id = ? AND iso_week = ? AND state = 'sending'",
            ("sent" if ok else "failed", error, time.time(), subscription_id, iso_week),
        )

    async def deliveries(self) -> list[tuple[int, str, str, str | None]]:
        """(subscription id, week, state, error) for every row, oldest first."""
        rows = await self._fetchall(
            "SELECT subscription_id, iso_week, state, error FROM deliveries "
            "ORDER BY started_at, subscription_id"
        )
        return [(int(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]

    # ----- list cache -----------------------------------------------------------------------

    async def cached_list(
        self, service: str, username: str, max_age_s: float, *, now: float | None = None
    ) -> AnimeList | None:
        row = await self._fetchone(
            "SELECT fetched_at, body FROM list_cache WHERE service = ? AND username = ?",
            (service, username.lower()),
        )
        current = time.time() if now is None else now
        if row is None or current - float(row[0]) > max_age_s:
            return None
        # Decoding a long list takes milliseconds; off the loop, a burst of cache hits cannot
        # stall it (measured by bench/bench_bot.py).
        return await asyncio.to_thread(AnimeList.from_json, row[1])

    async def cache_list(
        self, service: str, username: str, anime_list: AnimeList, *, now: float | None = None
    ) -> None:
        await self._execute(
            "INSERT INTO list_cache (service, username, fetched_at, body) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (service, username) DO UPDATE SET fetched_at = excluded.fetched_at, "
            "body = excluded.body",
            (
                service,
                username.lower(),
                float(time.time() if now is None else now),
                anime_list.to_json(),
            ),
        )

    async def purge_list_cache(self, max_age_s: float) -> int:
        return await self._execute(
            "DELETE FROM list_cache WHERE fetched_at < ?", (time.time() - max_age_s,)
        )

    # ----- feedback -------------------------------------------------------------------------

    async def add_feedback(self, platform: str, user_id: str, mal_id: int, kind: str) -> None:
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"feedback kind must be one of {FEEDBACK_KINDS}, not {kind!r}")
        await self._execute(
            "INSERT INTO feedback (platform, user_id, mal_id, kind, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, user_id, mal_id) DO UPDATE SET "
            "kind = excluded.kind, created_at = excluded.created_at",
            (platform, user_id, int(mal_id), kind, time.time()),
        )

    async def feedback(self, platform: str, user_id: str) -> dict[int, str]:
        rows = await self._fetchall(
            "SELECT mal_id, kind FROM feedback WHERE platform = ? AND user_id = ?",
            (platform, user_id),
        )
        return {int(r[0]): str(r[1]) for r in rows}

    # ----- meta -----------------------------------------------------------------------------

    async def meta(self, key: str) -> str | None:
        row = await self._fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        await self._execute(
            "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, time.time()),
        )

    # ----- /more sessions -------------------------------------------------------------------

    async def save_session(
        self,
        platform: str,
        user_id: str,
        state: str,
        list_body: str | None,
        entries: int,
        *,
        max_sessions: int,
        max_entries: int,
        now: float | None = None,
    ) -> None:
        """Keep the user's session; `list_body` None keeps the stored list (a /more changes only
        the state). The oldest sessions of other users are dropped while there are more than
        `max_sessions` or their lists hold more than `max_entries` entries together; the user's
        own stays even when it alone is over the bound, so that /more works."""
        stamp = float(time.time() if now is None else now)
        if list_body is None:
            changed = await self._execute(
                "UPDATE sessions SET state = ?, updated_at = ? WHERE platform = ? AND user_id = ?",
                (state, stamp, platform, user_id),
            )
            if changed:
                return
            list_body = ""  # evicted meanwhile: keep the state, the list is gone with it
        await self._execute(
            "INSERT INTO sessions (platform, user_id, state, list_body, entries, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, user_id) DO UPDATE SET "
            "state = excluded.state, list_body = excluded.list_body, "
            "entries = excluded.entries, updated_at = excluded.updated_at",
            (platform, user_id, state, list_body, int(entries), stamp),
        )
        await self._execute(
            "DELETE FROM sessions WHERE (platform, user_id) IN ("
            " SELECT platform, user_id FROM ("
            "  SELECT platform, user_id,"
            "   ROW_NUMBER() OVER w AS n,"
            "   SUM(entries) OVER (w ROWS UNBOUNDED PRECEDING) AS running"
            "  FROM sessions"
            "  WINDOW w AS (ORDER BY (CASE WHEN platform = ? AND user_id = ? THEN 0 ELSE 1 END),"
            "   updated_at DESC, platform, user_id)"
            " ) ranked WHERE n > 1 AND (n > ? OR running > ?))",
            (platform, user_id, int(max_sessions), int(max_entries)),
        )

    async def session(self, platform: str, user_id: str) -> StoredSession | None:
        row = await self._fetchone(
            "SELECT state, list_body FROM sessions WHERE platform = ? AND user_id = ?",
            (platform, user_id),
        )
        if row is None or not row[1]:
            return None
        return StoredSession(str(row[0]), str(row[1]))

    async def session_state(self, platform: str, user_id: str) -> str | None:
        """The session's state alone, without reading its (possibly long) list."""
        row = await self._fetchone(
            "SELECT state FROM sessions WHERE platform = ? AND user_id = ?", (platform, user_id)
        )
        return None if row is None else str(row[0])

    async def session_entries(self) -> int:
        """List entries held by the sessions of every user together."""
        row = await self._fetchone("SELECT COALESCE(SUM(entries), 0) FROM sessions")
        return int(row[0]) if row else 0

    # ----- shared request budgets -----------------------------------------------------------

    async def reserve_slot(self, name: str, interval_s: float, now: float) -> float:
        """Reserve the next free request slot of budget `name` (at least `now`, unix seconds)
        and move the budget one interval past it; the slot's time. One statement, so two
        processes reserving at once get different slots."""
        row = await self._fetchone(
            "INSERT INTO rate_slots (name, next_slot) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            f"SET next_slot = {self.dialect.greatest}(rate_slots.next_slot + ?, "
            "excluded.next_slot) RETURNING next_slot",
            (name, float(now + interval_s), float(interval_s)),
        )
        assert row is not None
        return float(row[0]) - interval_s

    async def defer_slot(self, name: str, until: float) -> None:
        """Let no request of budget `name` start before `until` (unix seconds)."""
        await self._execute(
            "INSERT INTO rate_slots (name, next_slot) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            f"SET next_slot = {self.dialect.greatest}(rate_slots.next_slot, excluded.next_slot)",
            (name, float(until)),
        )
