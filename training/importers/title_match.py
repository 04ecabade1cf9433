"""Map anime names onto catalogue MAL ids, for data sets that renumbered their anime.

Names are compared after normalization: HTML entities decoded, lower-cased, and everything but
letters and digits removed (spaces too, so "Re:Zero" and "Re: Zero" meet). Several catalogue entries can share a normalized name (a TV series and its
film, remakes): the one with the same media type wins, then the closest episode count, then the
lowest MAL id, and every such tie is counted.
"""

from __future__ import annotations

import csv
import html
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from inference.catalog import load_catalog
from inference.errors import CatalogError

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_title(name: str) -> str:
    # Some sources escape twice ("&amp;#039;"), hence two rounds of unescaping.
    text = unicodedata.normalize("NFKC", html.unescape(html.unescape(name))).lower()
    return _NOT_WORD.sub("", text)


def normalize_type(media_type: str | None) -> str | None:
    if not media_type:
        return None
    return media_type.strip().lower().replace(" ", "_") or None


@dataclass(frozen=True, slots=True)
class TitleCandidate:
    mal_id: int
    title: str
    media_type: str | None
    episodes: int | None


def _int_or_none(text: str | None) -> int | None:
    try:
        value = int(float(text)) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is None or value > 0 else None


def load_candidates(path: Path | str) -> list[TitleCandidate]:
    """Titles from a project catalogue (`.json`/`.json.gz`) or the packaged MAL CSV (`anime_id, Name, Type, Episodes`)."""
    path = Path(path)
    if path.suffix == ".csv":
        try:
            with path.open(encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                missing = {"anime_id", "Name", "Type", "Episodes"} - set(reader.fieldnames or [])
                if missing:
                    raise CatalogError(
                        f"{path}: catalogue CSV lacks column(s) {', '.join(sorted(missing))}"
                    )
                return [
                    TitleCandidate(
                        int(r["anime_id"]),
                        r["Name"],
                        normalize_type(r["Type"]),
                        _int_or_none(r["Episodes"]),
                    )
                    for r in reader
                    if r["anime_id"].strip().isdigit()
                ]
        except FileNotFoundError:
            raise CatalogError(f"catalogue not found: {path}") from None
    catalog = load_catalog(path)
    candidates = []
    for item in catalog:
        for title in {item.title, item.title_english} - {None}:
            assert title is not None
            candidates.append(
                TitleCandidate(item.mal_id, title, normalize_type(item.media_type), item.episodes)
            )
    return candidates


@dataclass
class MatchStats:
    matched: int = 0
    unmatched: list[str] = field(default_factory=list)
    ambiguous: int = 0  # names with several catalogue entries; type/episodes decided
    unresolved_ties: int = 0  # still tied after type and episodes: lowest MAL id taken


class TitleMatcher:
    def __init__(self, candidates: list[TitleCandidate]) -> None:
        by_name: dict[str, dict[int, TitleCandidate]] = defaultdict(dict)
        for c in candidates:
            key = normalize_title(c.title)
            if key:
                by_name[key].setdefault(c.mal_id, c)
        self._by_name = {k: sorted(v.values(), key=lambda c: c.mal_id) for k, v in by_name.items()}
        self.stats = MatchStats()

    def match(self, name: str, media_type: str | None, episodes: int | None) -> int | None:
        found = self._by_name.get(normalize_title(name), [])
        if not found:
            self.stats.unmatched.append(name)
            return None
        self.stats.matched += 1
        if len(found) == 1:
            return found[0].mal_id
        self.stats.ambiguous += 1
        wanted_type = normalize_type(media_type)

        def distance(c: TitleCandidate) -> tuple[int, int, int]:
            type_miss = 0 if wanted_type is not None and c.media_type == wanted_type else 1
            if episodes is None or c.episodes is None:
                episode_miss = 1 << 30
            else:
                episode_miss = abs(c.episodes - episodes)
            return type_miss, episode_miss, c.mal_id

        ranked = sorted(found, key=distance)
        if distance(ranked[0])[:2] == distance(ranked[1])[:2]:
            self.stats.unresolved_ties += 1
        return ranked[0].mal_id
