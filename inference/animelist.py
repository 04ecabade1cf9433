"""The one normalized list type every source produces (docs/data-formats.md#user-lists).

MyAnimeList API, AniList GraphQL and MyAnimeList XML exports all become an `AnimeList` of
`ListEntry` rows. The small integer codes defined here (status codes, `NO_TIME`) are the ones the
training CSR arrays and the model encoder use too, so there is one definition of each.
"""

from __future__ import annotations

import enum
import json
import math
from collections import Counter
from dataclasses import dataclass, field


class Status(enum.StrEnum):
    WATCHING = "watching"
    COMPLETED = "completed"
    ON_HOLD = "on_hold"
    DROPPED = "dropped"
    PLAN_TO_WATCH = "plan_to_watch"

    @property
    def code(self) -> int:
        return STATUS_CODES[self]


# Stable small integers for arrays and model inputs. Never renumber: bundles and datasets store them.
STATUS_CODES: dict[Status, int] = {
    Status.WATCHING: 0,
    Status.COMPLETED: 1,
    Status.ON_HOLD: 2,
    Status.DROPPED: 3,
    Status.PLAN_TO_WATCH: 4,
}
STATUS_BY_CODE: dict[int, Status] = {code: status for status, code in STATUS_CODES.items()}
# "watching" while rewatching is its own token status: it says much more about taste than watching.
REWATCHING_CODE = 5
N_STATUS_CODES = 6
# Unknown time in int32 time arrays (every real time in this domain is after 1970).
NO_TIME = -1
# The last second (9999-12-31 23:59:59 UTC) `datetime` can show: a later "time" is not a real one.
MAX_TIME = 253_402_300_799
# The largest real lists have about 20k entries. A list source stops reading beyond this many, so a
# crafted export or a runaway paging cannot make one request hold millions of rows.
MAX_LIST_ENTRIES = 30_000
LARGEST_REAL_LIST = 20_000  # quoted in the messages that refuse a longer list
# What `PartialDate` accepts as a year: the range `datetime.date` can represent.
MIN_YEAR, MAX_YEAR = 1, 9999


def status_code(status: Status, rewatching: bool = False) -> int:
    """The status code stored in arrays: the status, or `REWATCHING_CODE` for a rewatch."""
    return REWATCHING_CODE if rewatching else STATUS_CODES[status]


def unix_time(value: int | None) -> int | None:
    """A unix time in seconds as a list entry stores it: None unless it is in (0, MAX_TIME]."""
    return value if value is not None and 0 < value <= MAX_TIME else None


def score_to_int(score: float | None) -> int:
    """A 0–10 score as the integer the arrays store (0 = no score).

    Rounds half up, and a nonzero score never becomes 0 (AniList 1–14/100 -> 1).
    """
    if score is None or score <= 0:
        return 0
    return max(1, min(10, math.floor(score + 0.5)))


@dataclass(frozen=True, slots=True)
class PartialDate:
    """A date that may know only its year, or its year and month."""

    year: int
    month: int | None = None
    day: int | None = None

    def __str__(self) -> str:
        if self.month is None:
            return f"{self.year:04d}"
        if self.day is None:
            return f"{self.year:04d}-{self.month:02d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"

    @classmethod
    def parse(cls, text: str | None) -> PartialDate | None:
        """Parse "2017-10-23", "2017-10" or "2017"; zeros and blanks ("0000-00-00") mean unknown.

        So does a year outside 1-9999: no real date has one, and callers may build `datetime`s.
        """
        if not text:
            return None
        parts = text.strip().split("-")
        try:
            numbers = [int(p) for p in parts[:3]]
        except ValueError:
            return None
        if not numbers or not MIN_YEAR <= numbers[0] <= MAX_YEAR:
            return None
        month = numbers[1] if len(numbers) > 1 and 1 <= numbers[1] <= 12 else None
        day = (
            numbers[2] if month is not None and len(numbers) > 2 and 1 <= numbers[2] <= 31 else None
        )
        return cls(numbers[0], month, day)

    @classmethod
    def from_parts(
        cls, year: int | None, month: int | None = None, day: int | None = None
    ) -> PartialDate | None:
        """From AniList's FuzzyDate parts, any of which may be null (a year outside 1-9999 is)."""
        if year is None or not MIN_YEAR <= year <= MAX_YEAR:
            return None
        month = month if month and 1 <= month <= 12 else None
        day = day if month is not None and day and 1 <= day <= 31 else None
        return cls(year, month, day)


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One anime on a user's list, keyed by its MyAnimeList id."""

    mal_id: int
    status: Status
    rewatching: bool = False
    score: float | None = None  # 0–10; None = unscored (MAL integers as they are, AniList /10)
    episodes_watched: int = 0
    updated_at: int | None = None  # unix seconds
    started: PartialDate | None = None
    finished: PartialDate | None = None
    title: str | None = None  # as the source named it, when it did

    @property
    def status_code(self) -> int:
        return status_code(self.status, self.rewatching)


@dataclass(slots=True)
class AnimeList:
    """A user's whole list, normalized. `entries` keep the source's row order."""

    source: str  # "mal", "anilist" or "mal-export"
    username: str | None
    entries: list[ListEntry] = field(default_factory=list)
    # AniList entries whose anime has no MyAnimeList id anywhere we can look: dropped and counted.
    unmapped_entries: int = 0

    def __len__(self) -> int:
        return len(self.entries)

    def status_counts(self) -> dict[Status, int]:
        counts = Counter(e.status for e in self.entries)
        return {status: counts.get(status, 0) for status in Status}

    def to_json(self) -> str:
        """Compact JSON (one array per entry), for list caches and crawl stores."""
        entries = [
            [
                e.mal_id,
                e.status.value,
                e.rewatching,
                e.score,
                e.episodes_watched,
                e.updated_at,
                None if e.started is None else str(e.started),
                None if e.finished is None else str(e.finished),
                e.title,
            ]
            for e in self.entries
        ]
        body = {
            "source": self.source,
            "username": self.username,
            "unmapped_entries": self.unmapped_entries,
            "entries": entries,
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: str) -> AnimeList:
        """The inverse of `to_json` (also reads rows written without the title column)."""
        data = json.loads(body)
        entries = [
            ListEntry(
                mal_id=int(row[0]),
                status=Status(row[1]),
                rewatching=bool(row[2]),
                score=row[3],
                episodes_watched=int(row[4]),
                updated_at=row[5],
                started=PartialDate.parse(row[6]),
                finished=PartialDate.parse(row[7]),
                title=row[8] if len(row) > 8 else None,
            )
            for row in data["entries"]
        ]
        return cls(data["source"], data["username"], entries, int(data.get("unmapped_entries", 0)))

    def scored_share(self) -> float:
        if not self.entries:
            return 0.0
        return sum(1 for e in self.entries if e.score is not None) / len(self.entries)
