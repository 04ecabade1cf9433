"""Status baseline: how likely a held-out entry is dropped, planned... (status AUCs, docs/evaluation.md#metrics).

statusrate   for each status s, p = the training part's share of entries with status s, and
             r_i = (n_is + m·p) / (n_i + m)   the item's smoothed rate (its n_i training entries),
             r_u = (n_us + m·p) / (n_u + m)   the user's, from the history handed to the model;
             logit P(s | u, i) = logit r_i + logit r_u − logit p.
That is the two rates' odds multiplied, relative to the overall odds (naive Bayes with one user and
one item factor): the status counterpart of the μ + b_u + b_i score baseline. The prior strength m
is tuned on validation (grid `STATUS_GRID`). The outputs are per-status probabilities, not a
distribution over the statuses (each is judged on its own, by ROC AUC).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inference.animelist import N_STATUS_CODES
from training.baselines.interface import TrainData, parse_params, reject_leftovers, take_float
from training.dataset import History
from training.errors import TrainingError

STATUS_GRID = ("3", "10", "30", "100")
EPSILON = 1e-6  # rates are kept in [ε, 1 − ε] so that every logit is finite


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPSILON, 1.0 - EPSILON)
    return np.log(p) - np.log1p(-p)


def _status_counts(rows: np.ndarray, statuses: np.ndarray, n_rows: int) -> np.ndarray:
    """int64 [n_rows, N_STATUS_CODES]: how many entries of each row have each status."""
    codes = np.asarray(statuses, dtype=np.int64)
    if len(codes) and (codes.min() < 0 or codes.max() >= N_STATUS_CODES):
        raise TrainingError(f"status codes must be in 0..{N_STATUS_CODES - 1}")
    flat = np.asarray(rows, dtype=np.int64) * N_STATUS_CODES + codes
    return np.bincount(flat, minlength=n_rows * N_STATUS_CODES).reshape(n_rows, N_STATUS_CODES)


class StatusRate:
    kind = "baseline"

    def __init__(self, prior: float) -> None:
        if prior <= 0:
            raise TrainingError("statusrate prior must be > 0")
        self.prior = prior
        self.name = f"statusrate(m={prior:g})"
        self.overall = np.full(N_STATUS_CODES, 1.0 / N_STATUS_CODES)
        self.item_logits = np.zeros((0, N_STATUS_CODES))

    def _smoothed(self, counts: np.ndarray) -> np.ndarray:
        totals = counts.sum(axis=1, keepdims=True)
        return (counts + self.prior * self.overall) / (totals + self.prior)

    def fit(self, data: TrainData) -> None:
        items = [h.items for h in data.histories]
        statuses = [h.statuses for h in data.histories]
        if not any(len(i) for i in items):
            raise TrainingError("the training part has no entries")
        counts = _status_counts(np.concatenate(items), np.concatenate(statuses), data.n_items)
        self.overall = counts.sum(axis=0) / counts.sum()
        self.item_logits = _logit(self._smoothed(counts))

    def status_probabilities(
        self,
        users: np.ndarray,
        items: np.ndarray,
        histories: list[History],
        codes: Sequence[int],
    ) -> np.ndarray:
        # One fold-in per distinct user, however many of their entries are asked about.
        _, first, inverse = np.unique(users, return_index=True, return_inverse=True)
        distinct = [histories[i] for i in first]
        lengths = np.array([len(h) for h in distinct], dtype=np.int64)
        rows = np.repeat(np.arange(len(distinct)), lengths)
        statuses = np.concatenate([h.statuses for h in distinct]) if len(distinct) else np.zeros(0)
        user_logits = _logit(self._smoothed(_status_counts(rows, statuses, len(distinct))))
        columns = np.asarray(codes, dtype=np.int64)
        logits = (
            self.item_logits[np.asarray(items, dtype=np.int64)][:, columns]
            + user_logits[inverse.reshape(-1)][:, columns]
            - _logit(self.overall)[columns]
        )
        return 1.0 / (1.0 + np.exp(-logits))


def make_statusrate(arg: str | None) -> StatusRate:
    params = parse_params(arg, "m")
    prior = take_float(params, "m", 30.0)
    reject_leftovers("statusrate", params)
    return StatusRate(prior)
