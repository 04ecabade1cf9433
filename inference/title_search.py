"""Find a catalogue title from what a user typed: "/similar frieren", "Shingeki no Kyojin", "Pokémon".

Every catalogue item is known by its romaji title, its English title and its synonyms. Names are
compared normalised (`normalise`: case folded, diacritics and punctuation dropped, runs of spaces
made one), and each item scores by its best name, in four tiers:

- exact: the whole name (1.0);
- prefix: the name starts with what was typed, at a word boundary (0.9, less a little for each
  word the name has beyond the query, so "Monster" finds "Monster" before "Monster Strike");
- token overlap: the share of the query's words found in the name (up to 0.8, weighted by how
  much of the name they cover);
- edit similarity: difflib's ratio, for typos ("Cowbow Bebop"; up to 0.7).

Ties go to the more popular title. A query matches when the best score is at least `MIN_SCORE`;
`TitleMatch.ambiguous` says whether the runner-up scores within `TIE_MARGIN` of it, so the reply
can list the candidates instead of silently picking one. Nothing here is more than the standard
library: the catalogue is a few thousand to twenty thousand titles, and one query costs one pass.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from inference.catalog import Catalog, CatalogItem

MIN_SCORE = 0.6  # under this, nothing matches: the reply suggests the closest titles
TIE_MARGIN = 0.02  # a runner-up this close to the best is named as a candidate too
SUGGESTIONS = 3
# Scores per tier; the tiers never overlap, so an exact match always beats a prefix.
EXACT, PREFIX, OVERLAP, EDIT = 1.0, 0.9, 0.8, 0.7
_NOT_WORD = re.compile(r"[\W_]+")
# A query longer than any title is a paste; it is cut before any comparison.
MAX_QUERY_CHARS = 200


def normalise(text: str) -> str:
    """Lower case, no diacritics ("Pokémon" -> "pokemon"), punctuation as spaces, one space."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NOT_WORD.sub(" ", plain).split())


def item_names(item: CatalogItem) -> list[str]:
    """Every name a user may know the item by: romaji, English, synonyms (without repeats)."""
    names = [item.title, item.title_english or "", *item.synonyms]
    out: list[str] = []
    for name in names:
        if name and name not in out:
            out.append(name)
    return out


@dataclass(frozen=True, slots=True)
class Candidate:
    index: int  # vocabulary index
    score: float
    matched_name: str  # the name that scored best, as the catalogue spells it


@dataclass(frozen=True, slots=True)
class TitleMatch:
    """The best candidates for one query, best first (at most `SUGGESTIONS`)."""

    query: str
    candidates: tuple[Candidate, ...]

    @property
    def found(self) -> bool:
        return bool(self.candidates) and self.candidates[0].score >= MIN_SCORE

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.found else None

    @property
    def exact(self) -> bool:
        return self.found and self.candidates[0].score >= EXACT

    @property
    def ambiguous(self) -> bool:
        """A runner-up scores (almost) as well as the best: the reply names them all."""
        if not self.found or len(self.candidates) < 2:
            return False
        return self.candidates[1].score >= self.candidates[0].score - TIE_MARGIN

    def tied(self) -> tuple[Candidate, ...]:
        """The candidates that score within `TIE_MARGIN` of the best."""
        if not self.candidates:
            return ()
        top = self.candidates[0].score
        return tuple(c for c in self.candidates if c.score >= top - TIE_MARGIN)


def name_score(query: str, name: str) -> float:
    """How well normalised `name` matches normalised `query` (see the module doc), 0..1."""
    if not query or not name:
        return 0.0
    if name == query:
        return EXACT
    name_words = name.split()
    query_words = query.split()
    if name.startswith(query) and (len(name) == len(query) or name[len(query)] == " "):
        extra = len(name_words) - len(query_words)
        return PREFIX - min(0.09, 0.01 * extra)
    shared = set(query_words) & set(name_words)
    if shared:
        found = sum(1 for w in query_words if w in shared) / len(query_words)
        covered = sum(1 for w in name_words if w in shared) / len(name_words)
        # Both directions count, so "titan" alone does not outscore "attack on titan" for AoT.
        overlap = OVERLAP * (0.75 * found + 0.25 * covered)
    else:
        overlap = 0.0
    edit = EDIT * difflib.SequenceMatcher(None, query, name, autojunk=False).ratio()
    return max(overlap, edit)


class TitleIndex:
    """The catalogue's names, normalised once; `search` answers one query."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._names: list[tuple[int, str, str]] = []  # (index, normalised, as spelled)
        self._exact: dict[str, list[int]] = {}
        for index, item in enumerate(catalog):
            for name in item_names(item):
                key = normalise(name)
                if key:
                    self._names.append((index, key, name))
                    self._exact.setdefault(key, []).append(index)
        self._popularity = [item.popularity or 0 for item in catalog]

    def search(self, query: str, limit: int = SUGGESTIONS) -> TitleMatch:
        key = normalise(query[:MAX_QUERY_CHARS])
        best: dict[int, Candidate] = {}
        if key in self._exact:
            # An exact name needs no fuzzy pass; the other exact holders are the only rivals.
            for index in self._exact[key]:
                best[index] = Candidate(index, EXACT, self._spelled(index, key))
        else:
            quick = difflib.SequenceMatcher(None, autojunk=False)
            quick.set_seq2(key)
            for index, name, spelled in self._names:
                score = self._score(key, name, quick)
                if score > 0 and (index not in best or score > best[index].score):
                    best[index] = Candidate(index, score, spelled)
        if len(best) < limit and not any(c.score >= MIN_SCORE for c in best.values()):
            self._closest_letters(key, best, limit)
        ranked = sorted(best.values(), key=lambda c: (-c.score, -self._popularity[c.index]))
        return TitleMatch(query, tuple(ranked[:limit]))

    def _closest_letters(self, key: str, best: dict[int, Candidate], limit: int) -> None:
        """Fill `best` up to `limit` with the names sharing the most letters with `key` (a
        cheap bound of the edit similarity, kept under `MIN_SCORE`): something to suggest even
        for a query nothing resembles."""
        if not key:
            return
        quick = difflib.SequenceMatcher(None, autojunk=False)
        quick.set_seq2(key)
        scored: dict[int, Candidate] = {}
        for index, name, spelled in self._names:
            if index in best:
                continue
            quick.set_seq1(name)
            score = min(EDIT * quick.quick_ratio(), MIN_SCORE - 0.01) / 2
            if index not in scored or score > scored[index].score:
                scored[index] = Candidate(index, score, spelled)
        ranked = sorted(scored.values(), key=lambda c: (-c.score, -self._popularity[c.index]))
        for candidate in ranked[: limit - len(best)]:
            best[candidate.index] = candidate

    def _spelled(self, index: int, key: str) -> str:
        for name in item_names(self.catalog[index]):
            if normalise(name) == key:
                return name
        return self.catalog[index].title

    @staticmethod
    def _score(key: str, name: str, quick: difflib.SequenceMatcher[str]) -> float:
        """`name_score`, skipping difflib's full ratio wherever its cheap upper bounds show it
        cannot reach `MIN_SCORE` or beat the word overlap (the full ratio is the slow part)."""
        if name.startswith(key) and (len(name) == len(key) or name[len(key)] == " "):
            return name_score(key, name)
        query_words = key.split()
        name_words = name.split()
        shared = set(query_words) & set(name_words)
        overlap = 0.0
        if shared:
            found = sum(1 for w in query_words if w in shared) / len(query_words)
            covered = sum(1 for w in name_words if w in shared) / len(name_words)
            overlap = OVERLAP * (0.75 * found + 0.25 * covered)
        floor = max(overlap, MIN_SCORE)
        quick.set_seq1(name)
        if EDIT * quick.real_quick_ratio() < floor or EDIT * quick.quick_ratio() < floor:
            return overlap
        return max(overlap, EDIT * quick.ratio())


def describe(indices: Iterable[int], catalog: Catalog) -> str:
    """ "A (TV, 2013), B (Movie, 2014)": candidates told apart by type and year."""
    parts = []
    for index in indices:
        item = catalog[index]
        year = item.season_year or (item.start_date.year if item.start_date else None)
        facts = ", ".join(str(x) for x in (_type_name(item.media_type), year) if x)
        parts.append(f"{item.title} ({facts})" if facts else item.title)
    return "; ".join(parts)


def _type_name(media_type: str | None) -> str | None:
    from inference.explain import MEDIA_TYPE_NAMES

    return None if media_type is None else MEDIA_TYPE_NAMES.get(media_type, media_type)
