"""MyAnimeList list rows as CSV (the Kaggle "MyAnimeList dataset" `animelists_cleaned.csv` schema).

Columns used: username, anime_id, my_watched_episodes, my_score (0 = unscored), my_status (1
watching, 2 completed, 3 on hold, 4 dropped, 6 plan to watch), my_rewatching, my_last_updated
("YYYY-MM-DD HH:MM:SS" UTC; the `1970-01-01 00:00:00` placeholder means unknown). A row that cannot
be read is counted with its reason and skipped; the others are kept.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from inference.animelist import Status, status_code
from training.errors import TrainingError
from training.importers.report import ImportReport
from training.parquet_schema import InteractionWriter

MAL_STATUS = {
    1: Status.WATCHING,
    2: Status.COMPLETED,
    3: Status.ON_HOLD,
    4: Status.DROPPED,
    6: Status.PLAN_TO_WATCH,
}
REQUIRED = (
    "username",
    "anime_id",
    "my_watched_episodes",
    "my_score",
    "my_status",
    "my_last_updated",
)


class MalCsvFormatError(TrainingError):
    """The file lacks the MyAnimeList list columns."""


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _time(text: str) -> int | str | None:
    """Unix seconds, None for the missing-time placeholder, or "bad" for unreadable text."""
    text = text.strip()
    if not text or text.startswith("1970-01-01") or text.startswith("0000-00-00"):
        return None
    try:
        parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return "bad"
    return int(parsed.timestamp())


def import_mal_csv(path: Path, out: Path) -> ImportReport:
    report = ImportReport()
    if not Path(path).is_file():
        raise MalCsvFormatError(f"{path}: no such file")
    with Path(path).open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise MalCsvFormatError(
                f"{path}: not a MyAnimeList list CSV (missing {', '.join(missing)})"
            )
        writer = InteractionWriter(out, source=f"mal-csv:{Path(path).name}")
        try:
            rows_without_time = 0
            for row, record in enumerate(reader):
                report.rows_read += 1
                where = f"row {row}"
                if None in record or any(record[c] is None for c in REQUIRED):
                    report.refuse("wrong number of fields", where)
                    continue
                user = record["username"].strip()
                anime = _number(record["anime_id"])
                episodes = _number(record["my_watched_episodes"])
                score = _number(record["my_score"])
                code = _number(record["my_status"])
                rewatching = _number(record.get("my_rewatching")) or 0.0
                time = _time(record["my_last_updated"])
                if not user:
                    report.refuse("empty username", where)
                elif anime is None or anime <= 0 or anime != int(anime):
                    report.refuse("anime_id is not a positive integer", where)
                elif code is None or int(code) not in MAL_STATUS or code != int(code):
                    report.refuse("unknown my_status code", where)
                elif score is None or not 0 <= score <= 10:
                    report.refuse("my_score outside 0-10", where)
                elif episodes is None or episodes < 0:
                    report.refuse("my_watched_episodes is not a count", where)
                elif time == "bad":
                    report.refuse("my_last_updated unreadable", where)
                else:
                    assert not isinstance(time, str)
                    rows_without_time += time is None
                    status = status_code(MAL_STATUS[int(code)], rewatching >= 1)
                    writer.add(user, int(anime), score or None, status, int(episodes), time, row)
                    report.rows_kept += 1
        except BaseException:
            writer.abort()
            raise
        report.extra["rows_without_time"] = rows_without_time
        writer.close(report.as_dict())
    return report
