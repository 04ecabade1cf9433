"""Popularity: every user gets the items ranked by their interaction count in the training part."""

from __future__ import annotations

import numpy as np

from training.baselines.interface import TrainData, parse_params, reject_leftovers
from training.dataset import History


class Popularity:
    name = "popularity"
    kind = "baseline"

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.float32)

    def fit(self, data: TrainData) -> None:
        items = [h.items for h in data.histories if len(h)]
        all_items = np.concatenate(items) if items else np.zeros(0, dtype=np.int32)
        self.counts = np.bincount(all_items, minlength=data.n_items).astype(np.float32)

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()


def make(arg: str | None) -> Popularity:
    reject_leftovers("popularity", parse_params(arg, "none"))
    return Popularity()
