"""The embedded store: one SQLite file (WAL) through aiosqlite, the default.

The schema version lives in `PRAGMA user_version`; each migration runs in its own BEGIN IMMEDIATE
transaction, so an old file is brought up to date on open. Several processes may open one file on
one machine (WAL, a busy timeout); across machines use PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from bot.storage.base import Storage
from bot.storage.schema import SCHEMA_VERSION, SQLITE


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


BUSY_TIMEOUT_MS = 5000


async def _switch_to_wal(db: aiosqlite.Connection) -> None:
    """PRAGMA journal_mode=WAL, waiting out other connections that switch the same new file.

    The switch reads the file, then needs it alone; when two connections are at that point
    together, SQLite answers "database is locked" at once instead of calling the busy handler (it
    would deadlock), so the busy timeout does not cover it. The mode is stored in the file: once
    one connection has switched, the others' switch is a no-op.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(pause * (1 + random.random()))  # apart, not in step
        pause = min(pause * 2, 0.1)


class SqliteStorage(Storage):
    """One connection per process; aiosqlite runs it on its own thread, off the event loop."""

    dialect = SQLITE

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path | str) -> SqliteStorage:
        if str(path) != ":memory:":
            _create_private(Path(path))
        db = await aiosqlite.connect(str(path), isolation_level=None)
        storage = cls(db)
        try:
            await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await _switch_to_wal(db)
            await db.execute("PRAGMA foreign_keys=ON")
            await storage._migrate()
        except BaseException:
            await db.close()
            raise
        return storage

    async def close(self) -> None:
        await self._db.close()

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._db.execute(sql, tuple(params))
        return cursor.rowcount

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        async with self._db.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def schema_version(self) -> int:
        row = await self._fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        migrations = self.dialect.migrations()
        while True:
            # The version is read inside the write transaction: of two processes opening one
            # new file together, the second finds the first one's work done.
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                version = await self.schema_version()
                if version > SCHEMA_VERSION:
                    raise RuntimeError(
                        f"database schema {version} is newer than this bot understands "
                        f"({SCHEMA_VERSION})"
                    )
                if version < SCHEMA_VERSION:
                    for statement in migrations[version]:
                        await self._db.execute(statement)
                    # PRAGMA takes no bound parameters; the version is our own integer.
                    await self._db.execute(f"PRAGMA user_version = {int(version) + 1}")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")
            if version >= SCHEMA_VERSION:
                return
