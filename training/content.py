"""Content-only baselines for `evaluate` (`--models content:data/anime-cu/catalog.json.gz`): they
read the catalogue, never the interactions, so they rank a title nobody has watched as readily as
any other. The reference the cold-title protocol compares our model against.

    content:PATH                  cosine between each item's genre + media-type vector and the
                                  mean vector of the user's liked titles
    content:catalog=PATH+rank=members   the catalogue's member count (popularity that does not
                                  depend on the training interactions)

"Liked" = scored at or above the user's mean score; every entry when nothing is scored (the rule
the engine's explanations use). PATH is the catalogue in the dataset's vocabulary order
(`python -m training vocab-catalog`).
"""

from __future__ import annotations

import numpy as np

from inference.catalog import load_catalog
from inference.content import ContentLayout, genre_type_vectors, genre_vocabulary
from training.baselines.interface import (
    TrainData,
    parse_params,
    register_model,
    reject_leftovers,
)
from training.dataset import History
from training.errors import TrainingError

RANKINGS = ("cosine", "members")


def liked_mask(scores: np.ndarray) -> np.ndarray:
    """Entries scored at or above the list's mean score; all of them when nothing is scored."""
    scores = np.asarray(scores, dtype=np.float64)
    scored = scores > 0
    if not scored.any():
        return np.ones(len(scores), dtype=bool)
    return scored & (scores >= scores[scored].mean())


class ContentBaseline:
    kind = "baseline"

    def __init__(self, catalog_path: str, ranking: str) -> None:
        if not catalog_path:
            raise TrainingError(
                "content needs the vocabulary-order catalogue: --models content:PATH"
            )
        if ranking not in RANKINGS:
            raise TrainingError(f"content rank={ranking!r}: choose from {', '.join(RANKINGS)}")
        self.catalog_path = catalog_path
        self.ranking = ranking
        self.name = "content" if ranking == "cosine" else "content-members"
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.members = np.zeros(0, dtype=np.float32)

    def fit(self, data: TrainData) -> None:
        catalog = load_catalog(self.catalog_path)
        if len(catalog) != data.n_items:
            raise TrainingError(
                f"{self.catalog_path} has {len(catalog)} items, the data {data.n_items}: "
                "give the catalogue in this dataset's vocabulary order"
            )
        layout = ContentLayout(genre_vocabulary(catalog.items))
        vectors = genre_type_vectors(catalog.items, layout)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = vectors / np.maximum(norms, 1e-9)
        self.members = np.log1p(
            np.array([item.popularity or 0 for item in catalog.items], dtype=np.float32)
        )

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        if self.ranking == "members":
            return np.broadcast_to(self.members, (len(users), len(self.members))).copy()
        profiles = np.zeros((len(histories), self.vectors.shape[1]), dtype=np.float32)
        for row, history in enumerate(histories):
            if len(history):
                liked = np.asarray(history.items)[liked_mask(history.scores)]
                profiles[row] = self.vectors[liked].mean(axis=0)
        profiles /= np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-9)
        return profiles @ self.vectors.T


def make(arg: str | None) -> ContentBaseline:
    params = parse_params(arg, "catalog")
    catalog, ranking = params.pop("catalog", ""), params.pop("rank", "cosine")
    reject_leftovers("content", params)
    return ContentBaseline(catalog, ranking)


register_model("content", make)
