"""First-order Markov chain (docs/evaluation.md#baselines): counts of consecutive pairs a → b in the training
sequences; a user's scores are the transition rows of their last 3 items weighted 1, ½, ¼.

Meaningless on data without times (the order of its rows is arbitrary): it refuses to fit there.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.baselines.interface import NotApplicable, TrainData, parse_params, reject_leftovers
from training.dataset import History

WEIGHTS = (1.0, 0.5, 0.25)  # last item, second last, third last


class Markov:
    name = "markov"
    kind = "baseline"

    def __init__(self) -> None:
        self.transitions = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, data: TrainData) -> None:
        if not data.has_times:
            raise NotApplicable("needs time-ordered histories and this dataset has no times")
        sources = [h.items[:-1] for h in data.histories if len(h) > 1]
        targets = [h.items[1:] for h in data.histories if len(h) > 1]
        src = np.concatenate(sources) if sources else np.zeros(0, dtype=np.int32)
        dst = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int32)
        counts = sp.coo_matrix(
            (np.ones(len(src), dtype=np.float32), (src, dst)), shape=(data.n_items, data.n_items)
        )
        self.transitions = counts.tocsr()  # duplicates are summed: the pair counts

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        n_items = self.transitions.shape[0]
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for row, history in enumerate(histories):
            recent = history.items[::-1][: len(WEIGHTS)]
            rows.extend([row] * len(recent))
            cols.extend(recent.tolist())
            vals.extend(WEIGHTS[: len(recent)])
        weights = sp.csr_matrix(
            (np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(len(histories), n_items)
        )
        return np.asarray((weights @ self.transitions).toarray(), dtype=np.float32)


def make(arg: str | None) -> Markov:
    reject_leftovers("markov", parse_params(arg, "none"))
    return Markov()
