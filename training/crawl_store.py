"""The crawl store: an SQLite file of users to fetch, their fetch state, and their fetched lists.

Each user's outcome is committed on its own, so a crawl killed at any point resumes where it
stopped. `import_crawl_store` turns the stored lists into the interaction Parquet schema.

Tables:
    users(service, name, added_at, last_fetched, last_attempt, failures, error_kind, last_error, entries)
    lists(service, name, fetched_at, body)   body = the normalized AnimeList as JSON
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.animelist import AnimeList
from training.importers.lists import write_list
from training.importers.report import ImportReport
from training.parquet_schema import InteractionWriter

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    added_at REAL NOT NULL,
    last_fetched REAL,
    last_attempt REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    error_kind TEXT,
    last_error TEXT,
    entries INTEGER,
    PRIMARY KEY (service, name)
);
CREATE TABLE IF NOT EXISTS lists (
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    fetched_at REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (service, name)
);
"""


@dataclass(frozen=True)
class UserState:
    service: str
    name: str
    last_fetched: float | None
    last_attempt: float | None
    failures: int
    error_kind: str | None
    last_error: str | None
    entries: int | None


class CrawlStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CrawlStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def add_users(self, service: str, names: Iterable[str], now: float) -> int:
        """Register names (already known ones keep their state); returns how many were new."""
        before = self._db.total_changes
        self._db.executemany(
            "INSERT OR IGNORE INTO users (service, name, added_at) VALUES (?, ?, ?)",
            ((service, name, now) for name in names),
        )
        self._db.commit()
        return self._db.total_changes - before

    def due(self, service: str, *, max_failures: int, fresh_after: float) -> list[str]:
        """Users to fetch now, never-tried first, then least recently tried.

        Skipped: users with `max_failures` or more failures in a row, and users whose list was
        fetched at or after `fresh_after` (already fresh, e.g. earlier in a resumed crawl).
        """
        rows = self._db.execute(
            """SELECT name FROM users
               WHERE service = ? AND failures < ? AND (last_fetched IS NULL OR last_fetched < ?)
               ORDER BY last_attempt IS NOT NULL, last_attempt, last_fetched, name""",
            (service, max_failures, fresh_after),
        ).fetchall()
        return [name for (name,) in rows]

    def record_success(self, service: str, name: str, anime_list: AnimeList, now: float) -> None:
        with self._db:  # one transaction: the list and the state land together or not at all
            self._db.execute(
                "INSERT OR REPLACE INTO lists (service, name, fetched_at, body) VALUES (?, ?, ?, ?)",
                (service, name, now, anime_list.to_json()),
            )
            self._db.execute(
                """UPDATE users SET last_fetched = ?, last_attempt = ?, failures = 0,
                   error_kind = NULL, last_error = NULL, entries = ? WHERE service = ? AND name = ?""",
                (now, now, len(anime_list.entries), service, name),
            )

    def record_failure(self, service: str, name: str, kind: str, message: str, now: float) -> None:
        with self._db:
            self._db.execute(
                """UPDATE users SET last_attempt = ?, failures = failures + 1, error_kind = ?,
                   last_error = ? WHERE service = ? AND name = ?""",
                (now, kind, message[:500], service, name),
            )

    def state(self, service: str, name: str) -> UserState | None:
        row = self._db.execute(
            """SELECT service, name, last_fetched, last_attempt, failures, error_kind, last_error, entries
               FROM users WHERE service = ? AND name = ?""",
            (service, name),
        ).fetchone()
        return UserState(*row) if row else None

    def lists(self, service: str | None = None) -> Iterator[tuple[str, str, AnimeList]]:
        """(service, name, list) for every stored list, in (service, name) order."""
        query = "SELECT service, name, body FROM lists"
        params: tuple[Any, ...] = ()
        if service is not None:
            query += " WHERE service = ?"
            params = (service,)
        for svc, name, body in self._db.execute(query + " ORDER BY service, name", params):
            yield svc, name, AnimeList.from_json(body)

    def error_counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT error_kind, count(*) FROM users WHERE error_kind IS NOT NULL GROUP BY error_kind"
        ).fetchall()
        return dict(sorted(rows))


def import_crawl_store(
    path: Path | str, out: Path | str, service: str | None = None
) -> ImportReport:
    """Stored lists -> interaction Parquet; the user is "service:name", rows in (user, entry) order."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no crawl store at {path}")
    report = ImportReport()
    statuses: Counter[str] = Counter()
    with CrawlStore(path) as store:
        writer = InteractionWriter(out, source=f"crawl:{Path(path).name}")
        try:
            row = 0
            users = 0
            unmapped = 0
            for svc, name, anime_list in store.lists(service):
                users += 1
                unmapped += anime_list.unmapped_entries
                report.rows_read += len(anime_list.entries)
                row = write_list(writer, f"{svc}:{name}", anime_list, row)
                report.rows_kept += len(anime_list.entries)
                statuses.update(e.status.value for e in anime_list.entries)
        except BaseException:
            writer.abort()
            raise
        report.extra.update(
            {
                "users": users,
                "entries_without_mal_id": unmapped,
                "users_failed_by_kind": store.error_counts(),
                "statuses": dict(statuses),
            }
        )
        writer.close(report.as_dict())
    return report
