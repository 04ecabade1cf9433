"""Catalogue item -> fixed-length content vector: what a model can read about a title it has no
interactions for (training and serving share this one implementation).

Layout, in order (`ContentLayout.names()` spells it out column by column):

    genre:<g>      multi-hot over the layout's genre list (`genre_vocabulary` of a catalogue)
    genre:?        no genres known
    type:<t>       one-hot over `inference.catalog.MEDIA_TYPES`, then type:? when unknown
    episodes       log1p(episodes) / 5, clipped to 0..2; episodes:? when unknown
    year           (start year - 2000) / 20 (start date, else season year); year:? when unknown
    season:<s>     one-hot over `inference.catalog.SEASONS`, then season:? when unknown
    popularity     log1p(members) / 15, clipped to 0..1.2; popularity:? when unknown
    score          (mean score - 7) / 2; score:? when unknown

The scales are fixed constants rather than statistics of one catalogue, so a vector means the same
in every bundle and a title added later is encoded exactly as the ones trained on. The genre list
is the one thing that depends on the catalogue: it is saved with the model (a genre the model was
not trained with is ignored).

numpy only: serving imports this without torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from inference.catalog import MEDIA_TYPES, SEASONS, CatalogItem

YEAR_CENTER, YEAR_SCALE = 2000.0, 20.0
EPISODES_SCALE, EPISODES_MAX = 5.0, 2.0
POPULARITY_SCALE, POPULARITY_MAX = 15.0, 1.2
SCORE_CENTER, SCORE_SCALE = 7.0, 2.0


def genre_vocabulary(items: Iterable[CatalogItem]) -> tuple[str, ...]:
    """Every genre the items carry, sorted (the layout's genre columns)."""
    return tuple(sorted({genre for item in items for genre in item.genres}))


@dataclass(frozen=True, slots=True)
class ContentLayout:
    """Which columns a content vector has; saved with a model so serving encodes alike."""

    genres: tuple[str, ...]

    @property
    def dim(self) -> int:
        return len(self.names())

    def names(self) -> list[str]:
        return [
            *(f"genre:{g}" for g in self.genres),
            "genre:?",
            *(f"type:{t}" for t in MEDIA_TYPES),
            "type:?",
            "episodes",
            "episodes:?",
            "year",
            "year:?",
            *(f"season:{s}" for s in SEASONS),
            "season:?",
            "popularity",
            "popularity:?",
            "score",
            "score:?",
        ]

    def to_json(self) -> dict[str, object]:
        return {"genres": list(self.genres), "columns": self.dim}

    @classmethod
    def from_json(cls, raw: object) -> ContentLayout:
        if not isinstance(raw, dict) or not isinstance(raw.get("genres"), list):
            raise ValueError("a content layout is an object with a list of genres")
        genres = raw["genres"]
        if not all(isinstance(g, str) for g in genres):
            raise ValueError("content layout genres must be strings")
        layout = cls(tuple(genres))
        if raw.get("columns", layout.dim) != layout.dim:
            raise ValueError(
                f"content layout says {raw.get('columns')} columns, its genres give {layout.dim}"
            )
        return layout


def _year(item: CatalogItem) -> int | None:
    if item.start_date is not None:
        return item.start_date.year
    return item.season_year


def content_vectors(items: Sequence[CatalogItem], layout: ContentLayout) -> np.ndarray:
    """float32 [len(items), layout.dim]: each item's content vector (layout in the module doc)."""
    genre_column = {g: i for i, g in enumerate(layout.genres)}
    n_genres = len(layout.genres)
    type_column = {t: i for i, t in enumerate(MEDIA_TYPES)}
    season_column = {s: i for i, s in enumerate(SEASONS)}
    out = np.zeros((len(items), layout.dim), dtype=np.float32)
    types_at = n_genres + 1
    episodes_at = types_at + len(MEDIA_TYPES) + 1
    year_at = episodes_at + 2
    seasons_at = year_at + 2
    popularity_at = seasons_at + len(SEASONS) + 1
    score_at = popularity_at + 2
    for row, item in enumerate(items):
        vector = out[row]
        known = [genre_column[g] for g in item.genres if g in genre_column]
        if known:
            vector[known] = 1.0
        else:
            vector[n_genres] = 1.0
        t = type_column.get(item.media_type or "")
        vector[types_at + (len(MEDIA_TYPES) if t is None else t)] = 1.0
        if item.episodes is not None and item.episodes > 0:
            vector[episodes_at] = min(math.log1p(item.episodes) / EPISODES_SCALE, EPISODES_MAX)
        else:
            vector[episodes_at + 1] = 1.0
        year = _year(item)
        if year is not None:
            vector[year_at] = (year - YEAR_CENTER) / YEAR_SCALE
        else:
            vector[year_at + 1] = 1.0
        s = season_column.get(item.season or "")
        vector[seasons_at + (len(SEASONS) if s is None else s)] = 1.0
        if item.popularity is not None and item.popularity >= 0:
            vector[popularity_at] = min(
                math.log1p(item.popularity) / POPULARITY_SCALE, POPULARITY_MAX
            )
        else:
            vector[popularity_at + 1] = 1.0
        if item.mean_score is not None and item.mean_score > 0:
            vector[score_at] = (item.mean_score - SCORE_CENTER) / SCORE_SCALE
        else:
            vector[score_at + 1] = 1.0
    return out


def genre_type_vectors(items: Sequence[CatalogItem], layout: ContentLayout) -> np.ndarray:
    """The genre and media-type columns only (the content-only baseline's similarity space)."""
    vectors = content_vectors(items, layout)
    return vectors[:, : len(layout.genres) + 1 + len(MEDIA_TYPES) + 1]
