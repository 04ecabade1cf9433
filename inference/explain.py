"""Annotated recommendations (DESIGN §5): what a pick is, where to open it, and why it was picked.

"Because you liked X and Y" names the history items most similar to the pick in the model's item
embedding space, weighted by how much the user liked them: contribution = cos(pick, item) × weight,
where weight is score / 10 for a scored entry and 0.7 for an unscored completed one. Only entries the
user liked can be named: scored 7 or more, or completed (or rewatched) without a score; never a
dropped or planned one, and never one from the pick's own franchise (the franchise line covers it).

"Sequel to Z that you completed" is a fact when the catalogue has relations; offline, franchises are
title-stem groups and the line says only "from the same franchise as Z, which you completed".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inference.animelist import AnimeList, ListEntry, Status
from inference.catalog import Catalog, CatalogItem
from inference.franchise import FranchiseIndex

LIKED_SCORE = 7.0  # scores at or above this count as "liked"
UNSCORED_COMPLETED_WEIGHT = 0.7
MAX_ANCHORS = 2
# A second "because you liked" title is named only when it explains at least this share of what the
# first one does; a weak second reason reads as noise.
SECOND_ANCHOR_SHARE = 0.5

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
    title: str
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
        }


def item_url(item: CatalogItem, source: str) -> str:
    """The title's page on the user's own site: AniList users get AniList when its id is known."""
    if source == "anilist" and item.anilist_id is not None:
        return f"https://anilist.co/anime/{item.anilist_id}"
    return f"https://myanimelist.net/anime/{item.mal_id}"


def liked_weight(entry: ListEntry) -> float:
    """How much an entry may explain a pick; 0 for entries that must never be named."""
    if entry.status in (Status.DROPPED, Status.PLAN_TO_WATCH):
        return 0.0
    if entry.score is not None:
        return entry.score / 10.0 if entry.score >= LIKED_SCORE else 0.0
    if entry.status == Status.COMPLETED or entry.rewatching:
        return UNSCORED_COMPLETED_WEIGHT
    return 0.0


class UserContext:
    """One user's list, indexed for explaining many picks."""

    def __init__(self, animelist: AnimeList, catalog: Catalog) -> None:
        self.source = animelist.source
        self.entries: dict[int, ListEntry] = {}
        for entry in animelist.entries:
            index = catalog.index_of(entry.mal_id)
            if index is not None:
                self.entries[index] = entry
        anchors = [(i, liked_weight(e)) for i, e in self.entries.items()]
        anchors = [(i, w) for i, w in anchors if w > 0]
        self.anchor_indices = np.array([i for i, _ in anchors], dtype=np.int64)
        self.anchor_weights = np.array([w for _, w in anchors], dtype=np.float64)

    def status(self, index: int) -> Status | None:
        entry = self.entries.get(index)
        return None if entry is None else entry.status

    def completed(self, index: int) -> bool:
        entry = self.entries.get(index)
        return entry is not None and (entry.status == Status.COMPLETED or entry.rewatching)


class Explainer:
    """Builds `Recommendation`s for one catalogue (and, when given, the model's item embeddings)."""

    def __init__(
        self,
        catalog: Catalog,
        item_embeddings: np.ndarray | None = None,
        franchises: FranchiseIndex | None = None,
    ) -> None:
        self.catalog = catalog
        self.franchises = franchises or FranchiseIndex.build(catalog)
        self._emb: np.ndarray | None = None
        if item_embeddings is not None:
            emb = np.asarray(item_embeddings, dtype=np.float64)
            if emb.ndim != 2 or len(emb) != len(catalog):
                raise ValueError("item embeddings need one row per catalogue item")
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            self._emb = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)

    def because_you_liked(self, index: int, user: UserContext) -> list[int]:
        """Up to two liked history items (vocabulary indices) that best explain pick `index`."""
        if self._emb is None or len(user.anchor_indices) == 0:
            return []
        fid = self.catalog[index].franchise_id
        anchors, weights = user.anchor_indices, user.anchor_weights
        contributions = (self._emb[anchors] @ self._emb[index]) * weights
        chosen: list[int] = []
        franchises_named: set[int] = set() if fid is None else {fid}
        for k in np.argsort(-contributions, kind="stable"):
            if contributions[k] <= 0 or len(chosen) == MAX_ANCHORS:
                break
            if chosen and contributions[k] < SECOND_ANCHOR_SHARE * contributions[0]:
                break
            anchor = int(anchors[k])
            anchor_fid = self.catalog[anchor].franchise_id
            if anchor_fid is not None and anchor_fid in franchises_named:
                continue
            if anchor_fid is not None:
                franchises_named.add(anchor_fid)
            chosen.append(anchor)
        return chosen

    def franchise_line(self, index: int, user: UserContext) -> str | None:
        """ "Sequel to Z that you completed", or its honest offline approximation."""
        if self.franchises.exact:
            prequels = self.franchises.prequels.get(index, ())
            done = [p for p in prequels if user.completed(p)]
            if done:
                return f"Sequel to {self._title(done[0])}, which you completed"
            return None
        done = [
            m for m in self.franchises.earlier_members(self.catalog, index) if user.completed(m)
        ]
        if not done:
            return None
        # The latest completed earlier entry is the one this most plausibly continues.
        return f"From the same franchise as {self._title(done[-1])}, which you completed"

    def explain(
        self,
        index: int,
        user: UserContext,
        *,
        predicted_score: float | None = None,
        utility: float = 0.0,
        extra_why: Sequence[str] = (),
    ) -> Recommendation:
        item = self.catalog[index]
        why: list[str] = []
        anchors = self.because_you_liked(index, user)
        if anchors:
            why.append("Because you liked " + " and ".join(self._title(a) for a in anchors))
        line = self.franchise_line(index, user)
        if line:
            why.append(line)
        if user.status(index) == Status.PLAN_TO_WATCH:
            why.append("On your plan-to-watch list")
        why.extend(extra_why)
        year = item.season_year or (item.start_date.year if item.start_date else None)
        return Recommendation(
            mal_id=item.mal_id,
            title=item.title,
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
        )

    def _title(self, index: int) -> str:
        item = self.catalog[index]
        return item.title_english or item.title
