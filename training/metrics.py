"""Ranking and rating metrics of docs/evaluation.md#metrics, over full rankings (no sampled negatives).

Conventions, shared by every model so that the table compares like with like:
- Ranking: higher score first; ties go to the lower item index (a stable sort), so results are
  deterministic and no model gains from how its ties happen to fall.
- Items a user already has are masked with `-inf` by the harness before `top_k` sees the scores.
- Several held-out items: Recall@K = hits in the top K / min(K, |held-out|) and NDCG@K = DCG over
  the top K / ideal DCG of min(K, |held-out|) hits, so both reach 1 for a perfect list. With one
  held-out item they are HR@K and the usual 1/log2(rank + 1).
- Graded NDCG: gain 2^grade − 1, with the ideal list sorting the held-out grades. A user whose
  held-out gains are all 0 has no ideal DCG and is left out of the graded mean (the harness counts them).
- ROC AUC (status heads): the chance that a random entry with the status gets a higher predicted
  probability than a random entry without it, ties counting one half; undefined (None) unless both
  kinds of entry occur.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best items per row, best first; ties broken by the lower item index."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [users, items], got shape {scores.shape}")
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    # argpartition alone would pick arbitrarily among items tied at the k-th score, so take every
    # item at least as good as the k-th and order that (small) set with a stable sort.
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    result = np.empty((scores.shape[0], k), dtype=np.int64)
    for row in range(scores.shape[0]):
        candidates = np.flatnonzero(scores[row] >= kth[row])
        order = np.argsort(-scores[row, candidates], kind="stable")
        result[row] = candidates[order[:k]]
    return result


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def recall_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Hits among the first k of `ranked` / min(k, |targets|); HR@k for one target."""
    if len(targets) == 0:
        raise ValueError("recall needs at least one held-out item")
    hits = np.isin(ranked[:k], targets).sum()
    return float(hits / min(k, len(targets)))


def ndcg_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Binary NDCG@k: DCG of the hits in the top k / ideal DCG of min(k, |targets|) hits."""
    if len(targets) == 0:
        raise ValueError("NDCG needs at least one held-out item")
    discounts = _discounts(k)
    hits = np.isin(ranked[:k], targets)
    dcg = float((discounts[: len(hits)] * hits).sum())
    ideal = float(discounts[: min(k, len(targets))].sum())
    return dcg / ideal


def graded_ndcg_at_k(
    ranked: np.ndarray, targets: np.ndarray, grades: np.ndarray, k: int
) -> float | None:
    """NDCG@k with gain 2^grade − 1 of each held-out item; None when every gain is 0."""
    if len(targets) != len(grades):
        raise ValueError("one grade per held-out item is needed")
    gains = np.exp2(np.asarray(grades, dtype=np.float64)) - 1.0
    ideal_gains = np.sort(gains)[::-1][:k]
    discounts = _discounts(k)
    ideal = float((discounts[: len(ideal_gains)] * ideal_gains).sum())
    if ideal <= 0.0:
        return None
    # A held-out item listed twice keeps its best grade.
    gain_of: dict[int, float] = {}
    for item, gain in zip(targets.tolist(), gains.tolist(), strict=True):
        gain_of[item] = max(gain, gain_of.get(item, 0.0))
    top = ranked[:k].tolist()
    dcg = sum(discounts[rank] * gain_of.get(item, 0.0) for rank, item in enumerate(top))
    return float(dcg / ideal)


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    if len(predicted) != len(actual) or len(actual) == 0:
        raise ValueError("RMSE needs equally long, non-empty arrays")
    diff = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """ROC AUC of `scores` for the boolean labels `positives`: the Mann–Whitney U statistic over
    n_pos · n_neg, a tied (positive, negative) pair counting one half. None when all labels agree."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(positives, dtype=bool).ravel()
    if len(values) != len(labels):
        raise ValueError("AUC needs one label per score")
    if np.isnan(values).any():
        raise ValueError("AUC scores must not be NaN")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # 1-based ranks, tied scores sharing the mean of the ranks they span.
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse.ravel()]
    u = float(ranks[labels].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


class RankingAccumulator:
    """Sums per-user ranking metrics over batches; `means()` gives the table's figures."""

    def __init__(self, ks: Sequence[int], single_target: bool, graded: bool) -> None:
        self.ks = sorted(set(ks))
        self.hit_name = "HR" if single_target else "Recall"
        self.graded = graded
        self.sums: dict[str, float] = {}
        self.n_users = 0
        self.n_graded_users = 0

    @property
    def max_k(self) -> int:
        return self.ks[-1]

    def add(self, ranked: np.ndarray, targets: np.ndarray, grades: np.ndarray | None) -> None:
        self.n_users += 1
        for k in self.ks:
            self._add(f"{self.hit_name}@{k}", recall_at_k(ranked, targets, k))
            self._add(f"NDCG@{k}", ndcg_at_k(ranked, targets, k))
        if self.graded and grades is not None:
            value = graded_ndcg_at_k(ranked, targets, grades, self.ks[0])
            if value is not None:
                self.n_graded_users += 1
                self._add(f"NDCG@{self.ks[0]}-graded", value)

    def _add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value

    def means(self) -> dict[str, float]:
        if self.n_users == 0:
            raise ValueError("no user had a held-out item: nothing to evaluate")
        result: dict[str, float] = {}
        for name, total in self.sums.items():
            count = self.n_graded_users if name.endswith("-graded") else self.n_users
            result[name] = total / count
        return result
