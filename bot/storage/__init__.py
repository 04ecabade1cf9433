"""The bot's store (docs/architecture.md#serving): one interface (`Storage`), two backends.

SQLite (`SqliteStorage`, one file, the default) serves one process, or a few on one machine;
PostgreSQL (`PostgresStorage`, asyncpg) lets several bot processes share accounts, subscriptions,
deliveries, the list cache, feedback, /more sessions and the outside services' request budgets.
`[storage] url` chooses: empty for SQLite at `[storage] path`, "env" for PostgreSQL at the URL in
ANIMEREC_DATABASE_URL, so that credentials never sit in the config file.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from bot.settings import DATABASE_URL_ENV, StorageSection
from bot.storage.base import (
    FEEDBACK_KINDS,
    Account,
    Storage,
    StorageUnavailable,
    StoredSession,
    Subscription,
)
from bot.storage.schema import MIGRATIONS, SCHEMA_VERSION
from bot.storage.sqlite import SqliteStorage
from inference.errors import ConfigError

__all__ = [
    "DATABASE_URL_ENV",
    "FEEDBACK_KINDS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Account",
    "SqliteStorage",
    "Storage",
    "StorageUnavailable",
    "StoredSession",
    "Subscription",
    "database_url",
    "open_storage",
]


def database_url() -> str:
    """The PostgreSQL URL from the environment; a one-line ConfigError when it is missing or is
    not a PostgreSQL URL (the message never repeats the value: it may hold a password)."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if not url:
        raise ConfigError(
            f'[storage] url = "env" needs {DATABASE_URL_ENV} set in the environment '
            "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        )
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{DATABASE_URL_ENV} must be a postgresql:// URL")
    return url


def secret_parts(url: str) -> list[str]:
    """What log redaction must mask for this URL: all of it, and its password alone."""
    password = urlsplit(url).password
    return [url, password] if password else [url]


async def open_storage(settings: StorageSection) -> Storage:
    """The store `[storage]` chooses, migrated and ready."""
    if settings.url == "env":
        from bot.storage.postgres import PostgresStorage  # asyncpg only when it is used

        return await PostgresStorage.connect(database_url(), pool_size=settings.pool_size)
    return await SqliteStorage.open(settings.resolved_path())
