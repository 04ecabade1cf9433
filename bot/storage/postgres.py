"""The shared store: PostgreSQL through asyncpg, for several bot processes on one database.

The URL (credentials included) comes from the environment only (`bot.storage.database_url`). The
schema version lives in a one-row table `schema_version`; migrations run under a transaction-scoped
advisory lock, so processes started together migrate once and the others wait for it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bot.storage.base import Storage, StorageUnavailable
from bot.storage.schema import POSTGRESQL, SCHEMA_VERSION

# Any fixed number names the advisory lock; this one spells "animerec" in hex-ish.
MIGRATION_LOCK = 0x616E696D_65726563 & 0x7FFF_FFFF_FFFF_FFFF

_MARK = re.compile(r"\?")


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """`?` placeholders as asyncpg's `$1, $2, ...` (no query here has a `?` in a literal)."""
    counter = iter(range(1, 10_000))
    return _MARK.sub(lambda _: f"${next(counter)}", sql)


def describe(url: str) -> str:
    """Where the URL points, without user or password: what an error message may show."""
    parts = urlsplit(url)
    host = parts.hostname or "the local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


class PostgresStorage(Storage):
    """A small connection pool; each query takes a connection for itself."""

    dialect = POSTGRESQL

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, *, pool_size: int = 10) -> PostgresStorage:
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # asyncpg's messages name the user and database, never the password.
            raise StorageUnavailable(
                f"cannot open the PostgreSQL store at {describe(url)}: {exc}"
            ) from None
        assert pool is not None
        storage = cls(pool)
        try:
            await storage._migrate()
        except BaseException:
            await pool.close()
            raise
        return storage

    async def close(self) -> None:
        await self._pool.close()

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        status = await self._pool.execute(numbered(sql), *params)
        # "INSERT 0 1", "UPDATE 3", "DELETE 0": the last word is the row count.
        tail = str(status).rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return list(await self._pool.fetch(numbered(sql), *params))

    async def schema_version(self) -> int:
        async with self._pool.acquire() as conn:
            return await _version(conn)

    async def _migrate(self) -> None:
        migrations = self.dialect.migrations()
        async with self._pool.acquire() as conn:
            while True:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                    )
                    version = await _version(conn)
                    if version > SCHEMA_VERSION:
                        raise RuntimeError(
                            f"database schema {version} is newer than this bot understands "
                            f"({SCHEMA_VERSION})"
                        )
                    if version == SCHEMA_VERSION:
                        return
                    for statement in migrations[version]:
                        await conn.execute(statement)
                    await conn.execute("DELETE FROM schema_version")
                    await conn.execute(
                        "INSERT INTO schema_version (version) VALUES ($1)", version + 1
                    )


async def _version(conn: Any) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    value = await conn.fetchval("SELECT max(version) FROM schema_version")
    return int(value or 0)
