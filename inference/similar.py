"""More like this title: an item-to-item score, the franchise rules, and why-lines (`/similar`).

With the bundle's item-kNN neighbours (`item_facts.npz` `cooc_items` / `cooc_weights`, written by
`training.export`: each title's 64 nearest titles by the cosine of who has them on their list), the
score of item j for query q is

    score(q, j) = knn(q, j) + WEIGHTS.ease * w(q, j) + WEIGHTS.vectors * cos(v_q, v_j)
                  + WEIGHTS.popularity * p(j)

- `knn(q, ·)` are q's item-kNN cosines over its largest (1.0 for its nearest title, 0 off its
  64 neighbours);
- `w(q, ·)` are q's sparse EASE weights (`neighbour_items` / `neighbour_weights`) over their
  largest magnitude: how much having q on a list raises each item;
- `v` are the model's item vectors (`item_embeddings`);
- `p` is the log popularity, 0..1 (`log_popularity`).

WEIGHTS (0.1 EASE, 0 vectors, 0.3 popularity) were chosen on the anime validation split
(`bench/bench_similar.py`, 2026-12-01: for each user, a liked training title as the query and
their liked validation titles as targets, 2,000 queries, a grid of 63 blends): recall@20 0.172
on validation and 0.172 on test against item-kNN's 0.151 and 0.156. Popularity alone scores 0.188
on this random hold-out, so the popularity weight is capped at 0.3: there it only reorders the
query's neighbours (99.7% of the test top 20 are among q's 64 item-kNN neighbours), while a
weight of 3 scores 0.201 with lists drifting to the most popular titles. BENCHMARKS.md has the
table.

Bundles exported before the item-kNN neighbours are served the older blend,

    score(q, j) = BLEND * cos(v_q, v_j) + (1 - BLEND) * w(q, j) / max_k |w(q, k)|

with BLEND = 0.5 (recall@20 0.130 on validation, 0.123 on test); each half alone ranks below it.

What may be offered is the engine's eligibility (`inference.eligibility_index`) for the asking
user's list (an empty one when nobody is linked): nothing the user has on their list except
plan-to-watch, no recaps, no adult or unaired titles unless asked, and later entries of a franchise
stand in for where it starts. On top of that: never the query itself; never music videos, promos,
recaps or other extras; never a sequel or other later entry of a franchise (where it starts is
offered instead, carrying its score); no title of the query's own franchise unless asked
(`--franchise`), and then its sequels and specials are allowed too; at most one title per
franchise otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.errors import AnimerecError
from inference.explain import Recommendation

BLEND = 0.5  # chosen on held-out data: see the module doc
# An EASE weight this share of the query's strongest one says "fans of the query like this".
FANS_SHARE = 0.15
MAX_SHARED_GENRES = 3
NO_MODEL_SIMILAR_NOTE = (
    "No trained model is loaded, so these are titles that share the most genres with it."
)


class UnknownTitle(AnimerecError):
    """No catalogue title is close to what was typed; the message names the closest ones."""


@dataclass(frozen=True, slots=True)
class SimilarOptions:
    count: int = 10
    franchise: bool = False  # titles of the query's own franchise may be offered
    adult: bool = False
    unaired: bool = False
    exclude_mal_ids: frozenset[int] = frozenset()  # "seen" / "not interested" feedback

    def __post_init__(self) -> None:
        from inference.options import MAX_COUNT

        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise ValueError(f"count must be a whole number, not {self.count!r}")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be between 1 and {MAX_COUNT}, not {self.count}")


@dataclass(frozen=True, slots=True)
class SimilarResult:
    query_mal_id: int
    query_title: str  # in the configured title language
    recommendations: list[Recommendation]
    notes: list[str]
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def heading(self) -> str:
        return f"More like {self.query_title}"

    def as_json(self) -> dict[str, Any]:
        """The shape of `recommend --json`, with the matched title beside it."""
        return {
            "query": {"mal_id": self.query_mal_id, "title": self.query_title},
            "recommendations": [r.as_json() for r in self.recommendations],
            "notes": list(self.notes),
            "model": dict(self.model),
        }


@dataclass(frozen=True, slots=True)
class BlendWeights:
    """What each view adds to an item-kNN score of 1.0 (see the module doc)."""

    ease: float
    vectors: float
    popularity: float


WEIGHTS = BlendWeights(ease=0.1, vectors=0.0, popularity=0.3)  # chosen on held-out data: module doc


class ItemSimilarity:
    """Item-to-item scores of one bundle (see the module doc)."""

    def __init__(
        self,
        item_embeddings: np.ndarray,
        neighbour_items: np.ndarray,
        neighbour_weights: np.ndarray,
        blend: float = BLEND,
        *,
        cooc_items: np.ndarray | None = None,
        cooc_weights: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        weights: BlendWeights = WEIGHTS,
    ) -> None:
        emb = np.asarray(item_embeddings, dtype=np.float64)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        self.vectors = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
        self.neighbour_items = np.asarray(neighbour_items, dtype=np.int64)
        self.neighbour_weights = np.asarray(neighbour_weights, dtype=np.float64)
        self.blend = float(blend)
        self.n_items = len(emb)
        self.cooc_items: np.ndarray | None = None
        self.cooc_weights: np.ndarray | None = None
        if cooc_items is not None and cooc_weights is not None and np.shape(cooc_items)[1] > 0:
            self.cooc_items = np.asarray(cooc_items, dtype=np.int64)
            self.cooc_weights = np.asarray(cooc_weights, dtype=np.float64)
        self.popularity = (
            np.zeros(self.n_items)
            if popularity is None
            else np.nan_to_num(np.asarray(popularity, dtype=np.float64), nan=0.0)
        )
        self.weights = weights

    @property
    def has_knn(self) -> bool:
        """Whether the bundle carries item-kNN neighbours (bundles exported before them do not,
        and are served the cosine and EASE blend)."""
        return self.cooc_items is not None

    def cosine(self, query: int) -> np.ndarray:
        return np.asarray(self.vectors @ self.vectors[query], dtype=np.float64)

    def cooccurrence(self, query: int) -> np.ndarray:
        """float64 [n_items]: the query's EASE weights over its largest, 0 off its neighbours."""
        out = np.zeros(self.n_items, dtype=np.float64)
        if self.neighbour_items.shape[1] == 0:
            return out
        weights = self.neighbour_weights[query]
        top = float(np.abs(weights).max())
        if top > 0:
            np.add.at(out, self.neighbour_items[query], weights / top)
        return out

    def knn(self, query: int) -> np.ndarray:
        """float64 [n_items]: the query's item-kNN cosines over its largest, 0 off its
        neighbours (all 0 without item-kNN neighbours)."""
        out = np.zeros(self.n_items, dtype=np.float64)
        if self.cooc_items is None or self.cooc_weights is None:
            return out
        weights = self.cooc_weights[query]
        top = float(weights.max())
        if top > 0:
            np.add.at(out, self.cooc_items[query], weights / top)
        return out

    def scores(self, query: int) -> np.ndarray:
        if self.has_knn:
            w = self.weights
            return (
                self.knn(query)
                + w.ease * self.cooccurrence(query)
                + w.vectors * self.cosine(query)
                + w.popularity * self.popularity
            )
        if self.neighbour_items.shape[1] == 0:
            return self.cosine(query)
        return self.blend * self.cosine(query) + (1.0 - self.blend) * self.cooccurrence(query)


def genre_similarity(genres: Sequence[tuple[str, ...]], query: int) -> np.ndarray:
    """Jaccard similarity of genre sets: the no-model fallback."""
    mine = set(genres[query])
    out = np.zeros(len(genres), dtype=np.float64)
    if not mine:
        return out
    for i, theirs in enumerate(genres):
        if theirs:
            union = len(mine | set(theirs))
            out[i] = len(mine & set(theirs)) / union
    return out


def one_per_franchise(
    order: np.ndarray, franchise: np.ndarray, count: int, *, free: int | None = None
) -> list[int]:
    """The first `count` items of `order` with at most one per franchise (-1: a franchise of
    its own); items of franchise `free` are exempt (the query's own, when asked for)."""
    picks: list[int] = []
    taken: set[int] = set()
    for index in order.tolist():
        fid = int(franchise[index])
        if fid >= 0 and fid != free:
            if fid in taken:
                continue
            taken.add(fid)
        picks.append(index)
        if len(picks) == count:
            break
    return picks


def why_lines(
    query_name: str,
    query_genres: Sequence[str],
    pick_genres: Sequence[str],
    fans_weight: float,
) -> list[str]:
    """One line: the genres the pick shares with the query and/or "liked by fans of" it."""
    shared = [g for g in pick_genres if g in set(query_genres)][:MAX_SHARED_GENRES]
    fans = fans_weight >= FANS_SHARE
    if shared and fans:
        return [f"Liked by fans of {query_name}; shares {_join(shared)}"]
    if fans:
        return [f"Liked by fans of {query_name}"]
    if shared:
        return [f"Shares {_join(shared)} with {query_name}"]
    return [f"Watched by the same kind of viewers as {query_name}"]


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


__all__ = [
    "BLEND",
    "WEIGHTS",
    "BlendWeights",
    "ItemSimilarity",
    "SimilarOptions",
    "SimilarResult",
    "UnknownTitle",
    "genre_similarity",
    "one_per_franchise",
    "why_lines",
]
