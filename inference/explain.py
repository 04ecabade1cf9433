"""Annotated recommendations (docs/architecture.md#annotations): what a pick is, where to open it, and why it was picked.

"Because you liked X and Y" names the entries of the user's list whose removal lowers the pick's
utility most: the model's own answer to "what made it pick this?". The engine asks it by leave-one-
out (`BundleModel.leave_one_out`): for each pick, up to `MAX_CANDIDATE_CAUSES` liked entries most
similar to it in the model's item-embedding space (cos(pick, entry) × how much the user liked it)
are each taken off the list, and the pick's utility without them is compared with its utility with
them. `choose_causes` then names the one or two whose removal cost the most, only when the cost is
positive (an entry whose removal *raises* the utility did not drive the pick), and names one title
for at most `MAX_CITATIONS_PER_TITLE` picks of a reply, so one favourite does not explain them all.

Only entries the user liked can be named: scored at or above the user's own mean score, or, for a
user who scores nothing, completed (or rewatched); never a dropped or planned entry, and never one
from the pick's own franchise (the franchise line covers it).

"Sequel to Z that you completed" is a fact when the catalogue has relations; offline, franchises are
title-stem groups and the line says only "from the same franchise as Z, which you completed".

Titles are named one way everywhere, from the catalogue (`Titles`, set by [engine]
title_language): the romaji title, or the English one where the catalogue has a usable one, with
the other shown beside the pick where it helps.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from inference.animelist import AnimeList, ListEntry, Status
from inference.catalog import Catalog, CatalogItem
from inference.franchise import FranchiseIndex, older_version_line
from inference.order import best_first

TitleLanguage = Literal["romaji", "english"]
UNSCORED_COMPLETED_WEIGHT = 0.7  # how much an unscored completed entry counts, against score / 10
MAX_ANCHORS = 2
# Liked entries whose removal the engine tries for each pick: the most similar ones. Each is one more
# list through the encoder, so few.
MAX_CANDIDATE_CAUSES = 4
# A second "because you liked" title is named only when its removal costs at least this share of
# what the first one's does; a weak second reason reads as noise.
SECOND_ANCHOR_SHARE = 0.5
MAX_CITATIONS_PER_TITLE = 3  # picks of one reply that may name the same title
# A smaller drop in utility is within the models' float32 noise (the leave-one-out features agree
# with a full run to ~2e-6): it says nothing about what drove the pick.
MIN_CAUSE_DROP = 1e-3

MEDIA_TYPE_NAMES = {
    "tv": "TV",
    "movie": "Movie",
    "ova": "OVA",
    "ona": "ONA",
    "special": "Special",
    "music": "Music",
    "tv_special": "TV Special",
}


@dataclass(frozen=True, slots=True)
class Recommendation:
    mal_id: int
    title: str  # in the configured title language (see `Titles`)
    url: str
    picture_url: str | None
    media_type: str | None
    episodes: int | None
    season: str | None
    year: int | None
    genres: tuple[str, ...]
    predicted_score: float | None  # 0–10, one decimal
    why: list[str] = field(default_factory=list)
    utility: float = 0.0
    # The title in the other language, when the catalogue has one that tells the reader more
    # (romaji mode: the English title; English mode: the romaji one); None otherwise.
    title_other: str | None = None
    # No interactions with it in the model's training data: judged from its content alone.
    new_to_model: bool = False

    def facts_line(self) -> str:
        """ "TV · 26 episodes · Fall 1998" with whatever is known."""
        parts: list[str] = []
        if self.media_type:
            parts.append(MEDIA_TYPE_NAMES.get(self.media_type, self.media_type))
        if self.episodes:
            parts.append(f"{self.episodes} episode{'s' if self.episodes != 1 else ''}")
        if self.year:
            parts.append(
                f"{self.season.capitalize()} {self.year}" if self.season else str(self.year)
            )
        return " · ".join(parts)

    def as_json(self) -> dict[str, object]:
        return {
            "mal_id": self.mal_id,
            "title": self.title,
            "title_other": self.title_other,
            "url": self.url,
            "picture_url": self.picture_url,
            "media_type": self.media_type,
            "episodes": self.episodes,
            "season": self.season,
            "year": self.year,
            "genres": list(self.genres),
            "predicted_score": self.predicted_score,
            "why": list(self.why),
            "utility": self.utility,
            "new_to_model": self.new_to_model,
        }


def item_url(item: CatalogItem, source: str) -> str:
    """The title's page on the user's own site: AniList users get AniList when its id is known."""
    if source == "anilist" and item.anilist_id is not None:
        return f"https://anilist.co/anime/{item.anilist_id}"
    return f"https://myanimelist.net/anime/{item.mal_id}"


# ----- titles ---------------------------------------------------------------------------------

_NOT_ALNUM = re.compile(r"[\W_]+")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_ROMAN = re.compile(r"(?i)^(?:X{0,3})(?:IX|IV|V?I{0,3})$")
_SMALL_WORDS = frozenset(
    {"a", "an", "and", "as", "at", "but", "by", "for", "in", "of", "on", "or", "the", "to", "vs"}
)


def _title_key(text: str) -> str:
    return _NOT_ALNUM.sub("", text.casefold())


def _single_case(text: str) -> bool:
    cased = [c for c in text if c.isupper() or c.islower()]
    return bool(cased) and (all(c.isupper() for c in cased) or all(c.islower() for c in cased))


def _title_case(text: str) -> str:
    """ "GUYVER THE BIOBOOSTED ARMOR" -> "Guyver the Bioboosted Armor"; Roman numerals stay."""
    first = True

    def fix(match: re.Match[str]) -> str:
        nonlocal first
        word = match.group(0)
        was_first, first = first, False
        if _ROMAN.match(word) and word.upper() != word.lower():
            return word.upper()
        if not was_first and word.lower() in _SMALL_WORDS:
            return word.lower()
        return word[0].upper() + word[1:].lower()

    return _WORD.sub(fix, text)


def _tells_more(name: str, other: str) -> bool:
    """Whether `other` adds to `name`: not the same words, and not one inside the other
    ("Ushio to Tora (TV)" / "Ushio to Tora")."""
    a, b = _title_key(name), _title_key(other)
    return bool(a) and bool(b) and a not in b and b not in a


class Titles:
    """One naming of catalogue titles, for picks, why lines and franchise lines alike.

    "romaji" names a title by the catalogue's `title` (MyAnimeList's romanized main title);
    "english" by its English title where the catalogue has a usable one, else by `title`. Offline
    English titles come from bangumi-data and are often in one case ("DRAGON BALL Z", "attack on
    titan"): one that is the romaji title's words gets the romaji spelling; other Latin-script
    ones are title-cased; others (Greek capitals...) are not used. An English title that several
    catalogue items share ("Bakuman" for two seasons) names none of them.
    """

    def __init__(self, catalog: Catalog, language: TitleLanguage = "romaji") -> None:
        if language not in ("romaji", "english"):
            raise ValueError(f"title language must be 'romaji' or 'english', not {language!r}")
        self.catalog = catalog
        self.language: TitleLanguage = language
        self._shared = Counter(
            _title_key(item.title_english) for item in catalog if item.title_english
        )
        self._english: dict[int, str | None] = {}

    def english(self, index: int) -> str | None:
        """The item's usable English title (see the class doc), or None."""
        if index not in self._english:
            self._english[index] = self._usable_english(self.catalog[index])
        return self._english[index]

    def _usable_english(self, item: CatalogItem) -> str | None:
        english = (item.title_english or "").strip()
        if not english or self._shared[_title_key(english)] > 1:
            return None
        if not _single_case(english):
            return english
        if _title_key(english) == _title_key(item.title):
            return item.title
        if all(c.isascii() for c in english if c.isalpha()):
            return _title_case(english)
        return None

    def name(self, index: int) -> str:
        """The item's name in the configured language."""
        if self.language == "english":
            return self.english(index) or self.catalog[index].title
        return self.catalog[index].title

    def other(self, index: int) -> str | None:
        """The name in the other language, where it tells the reader something the name does not."""
        english = self.english(index)
        if english is None:
            return None
        romaji = self.catalog[index].title
        name, other = (english, romaji) if self.language == "english" else (romaji, english)
        return other if _tells_more(name, other) else None


# ----- the user -------------------------------------------------------------------------------


def list_scores(animelist: AnimeList) -> list[float]:
    """Every score the user gave (titles outside the catalogue included)."""
    return [e.score for e in animelist.entries if e.score is not None and e.score > 0]


def mean_score(animelist: AnimeList) -> float | None:
    """The user's own mean score over every scored entry (MyAnimeList's "mean score"), or None."""
    scores = list_scores(animelist)
    return statistics.fmean(scores) if scores else None


def is_liked(entry: ListEntry, user_mean: float | None) -> bool:
    """Liked: scored at or above the user's mean; for a user who scores nothing, completed (or
    rewatched). Never a dropped or planned entry."""
    if entry.status in (Status.DROPPED, Status.PLAN_TO_WATCH):
        return False
    if user_mean is None:
        return entry.status == Status.COMPLETED or entry.rewatching
    return entry.score is not None and entry.score >= user_mean


class UserContext:
    """One user's list, indexed for explaining many picks."""

    def __init__(self, animelist: AnimeList, catalog: Catalog) -> None:
        self.source = animelist.source
        scores = list_scores(animelist)
        self.n_scores = len(scores)
        self.mean_score = statistics.fmean(scores) if scores else None
        self.entries: dict[int, ListEntry] = {}
        for entry in animelist.entries:
            index = catalog.index_of(entry.mal_id)
            if index is not None:
                self.entries[index] = entry
        anchors = [i for i, e in self.entries.items() if is_liked(e, self.mean_score)]
        self.anchor_indices = np.array(anchors, dtype=np.int64)
        # How much each liked entry counts when choosing which to try as a cause.
        self.anchor_weights = np.array(
            [
                UNSCORED_COMPLETED_WEIGHT
                if self.entries[i].score is None
                else float(self.entries[i].score or 0) / 10.0
                for i in anchors
            ],
            dtype=np.float64,
        )
        # Liked and finished: whose extras (specials...) the user may well want.
        self.completed_liked = np.array([i for i in anchors if self.completed(i)], dtype=np.int64)

    def status(self, index: int) -> Status | None:
        entry = self.entries.get(index)
        return None if entry is None else entry.status

    def completed(self, index: int) -> bool:
        entry = self.entries.get(index)
        return entry is not None and (entry.status == Status.COMPLETED or entry.rewatching)

    def liked(self, index: int) -> bool:
        entry = self.entries.get(index)
        return entry is not None and is_liked(entry, self.mean_score)


# ----- causes ---------------------------------------------------------------------------------


def choose_causes(
    picks: Sequence[int],
    drops: Mapping[int, Mapping[int, float]],
    catalog: Catalog,
    *,
    cap: int = MAX_CITATIONS_PER_TITLE,
) -> dict[int, list[int]]:
    """For each pick, in pick order, the one or two entries to name as "because you liked".

    `drops[pick][entry]` is how much the pick's utility fell without that entry (+inf when the pick
    fell out of the model's candidates). Named: the largest drops of at least `MIN_CAUSE_DROP`
    (never an entry whose removal raised the utility), a second only when it is
    at least `SECOND_ANCHOR_SHARE` of the first, never two from one franchise, and no entry for more
    than `cap` picks (the next best is taken instead). Equal drops keep the order of `drops[pick]`.
    """
    named: Counter[int] = Counter()
    out: dict[int, list[int]] = {}
    for pick in picks:
        tried = drops.get(pick, {})
        order = sorted(tried, key=lambda entry: -tried[entry])
        chosen: list[int] = []
        franchises: set[int] = set()
        for entry in order:
            drop = tried[entry]
            if not drop >= MIN_CAUSE_DROP or len(chosen) == MAX_ANCHORS:
                break
            if chosen and drop < SECOND_ANCHOR_SHARE * tried[chosen[0]]:
                break
            if named[entry] >= cap:
                continue
            fid = catalog[entry].franchise_id
            if fid is not None and fid in franchises:
                continue
            if fid is not None:
                franchises.add(fid)
            chosen.append(entry)
        named.update(chosen)
        out[pick] = chosen
    return out


class Explainer:
    """Builds `Recommendation`s for one catalogue (and, when given, the model's item embeddings)."""

    def __init__(
        self,
        catalog: Catalog,
        item_embeddings: np.ndarray | None = None,
        franchises: FranchiseIndex | None = None,
        title_language: TitleLanguage = "romaji",
    ) -> None:
        self.catalog = catalog
        self.franchises = franchises or FranchiseIndex.build(catalog)
        self.titles = Titles(catalog, title_language)
        self._franchise = np.array(
            [-1 if item.franchise_id is None else item.franchise_id for item in catalog],
            dtype=np.int64,
        )
        self._emb: np.ndarray | None = None
        if item_embeddings is not None:
            emb = np.asarray(item_embeddings, dtype=np.float64)
            if emb.ndim != 2 or len(emb) != len(catalog):
                raise ValueError("item embeddings need one row per catalogue item")
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            self._emb = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)

    def candidate_causes(
        self, index: int, user: UserContext, k: int = MAX_CANDIDATE_CAUSES
    ) -> list[int]:
        """The liked entries (vocabulary indices) to try as causes of pick `index`: up to `k`, the
        most similar to it first (cos × liked weight, positive only), none from its own
        franchise."""
        if self._emb is None or len(user.anchor_indices) == 0 or k <= 0:
            return []
        anchors, weights = user.anchor_indices, user.anchor_weights
        fid = self._franchise[index]
        if fid >= 0:
            other = self._franchise[anchors] != fid
            anchors, weights = anchors[other], weights[other]
        if len(anchors) == 0:
            return []
        contributions = (self._emb[anchors] @ self._emb[index]) * weights
        order = best_first(contributions)[:k]
        # An entry pointing away from the pick is not worth a run through the model.
        order = order[contributions[order] > 0]
        return [int(a) for a in anchors[order]]

    def franchise_line(self, index: int, user: UserContext) -> str | None:
        """ "Sequel to Z that you completed", or its honest offline approximation."""
        if self.franchises.exact:
            prequels = self.franchises.prequels.get(index, ())
            done = [p for p in prequels if user.completed(p)]
            if done:
                return f"Sequel to {self.titles.name(done[0])}, which you completed"
            return None
        done = [
            m for m in self.franchises.earlier_members(self.catalog, index) if user.completed(m)
        ]
        if not done:
            return None
        # The latest completed earlier entry is the one this most plausibly continues.
        return f"From the same franchise as {self.titles.name(done[-1])}, which you completed"

    def explain(
        self,
        index: int,
        user: UserContext,
        *,
        because: Sequence[int] = (),
        predicted_score: float | None = None,
        utility: float = 0.0,
        extra_why: Sequence[str] = (),
    ) -> Recommendation:
        """The annotated pick; `because` are the entries to name as "because you liked" (chosen
        by the caller, see `choose_causes`)."""
        item = self.catalog[index]
        why: list[str] = []
        if because:
            why.append("Because you liked " + " and ".join(self.titles.name(a) for a in because))
        line = self.franchise_line(index, user)
        if line:
            why.append(line)
        older = older_version_line(self.catalog, self.franchises, index, self.titles.name)
        if older:
            why.append(older)
        if user.status(index) == Status.PLAN_TO_WATCH:
            why.append("On your plan-to-watch list")
        why.extend(extra_why)
        year = item.season_year or (item.start_date.year if item.start_date else None)
        return Recommendation(
            mal_id=item.mal_id,
            title=self.titles.name(index),
            url=item_url(item, user.source),
            picture_url=item.picture_url,
            media_type=item.media_type,
            episodes=item.episodes,
            season=item.season if item.season_year else None,
            year=year,
            genres=item.genres,
            predicted_score=None
            if predicted_score is None
            else round(float(min(10.0, max(0.0, predicted_score))), 1),
            why=why,
            utility=float(utility),
            title_other=self.titles.other(index),
        )
