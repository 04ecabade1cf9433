"""EASE (Steck, 2019): a closed-form item-item linear model, as docs/evaluation.md#baselines defines it.

P = (XᵀX + λI)⁻¹, B = I − P·diag(1/diag(P)) with the diagonal of B zeroed; a user's scores are x·B,
where x is the binary row of the items in the history handed to `score`.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from training.baselines.interface import (
    TrainData,
    history_matrix,
    parse_params,
    reject_leftovers,
    take_float,
)
from training.dataset import History
from training.errors import TrainingError

# ML-1M peaks near 200, the denser anime hold-out lower: the grid spans both.
LAMBDA_GRID = ("20", "50", "100", "200", "300", "500", "1000")


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """B from the Gram matrix XᵀX (float64 [n, n])."""
    # An item nobody has (a catalogue title without interactions) has a zero row and column in
    # XᵀX, so its block of XᵀX + λI is λ alone and its weights are exactly zero: solving on the
    # items that occur gives the same B at the cost of those items only (6.9k of a 17.5k catalogue).
    active = np.flatnonzero(np.diag(gram) > 0)
    weights = np.zeros_like(gram)
    if active.size == 0:
        return weights
    regularized = gram[np.ix_(active, active)] + lam * np.eye(active.size)
    # XᵀX + λI is symmetric positive definite: a Cholesky inverse is faster and stabler than inv().
    precision = scipy.linalg.cho_solve(
        scipy.linalg.cho_factor(regularized, overwrite_a=True), np.eye(active.size)
    )
    block = -precision / np.diag(precision)[np.newaxis, :]
    np.fill_diagonal(block, 0.0)
    weights[np.ix_(active, active)] = block
    return weights


class Ease:
    kind = "baseline"

    def __init__(self, lam: float) -> None:
        if lam <= 0:
            raise TrainingError("EASE λ must be positive")
        self.lam = lam
        self.name = f"ease(λ={lam:g})"
        self.weights = np.zeros((0, 0), dtype=np.float32)

    def fit(self, data: TrainData) -> None:
        gram = (data.matrix.T @ data.matrix).toarray().astype(np.float64)
        self.weights = ease_weights(gram, self.lam).astype(np.float32)

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        rows = history_matrix(histories, self.weights.shape[0])
        return np.asarray(rows @ self.weights, dtype=np.float32)


def make(arg: str | None) -> Ease:
    params = parse_params(arg, "lambda")
    lam = take_float(params, "lambda", 300.0)
    reject_leftovers("ease", params)
    return Ease(lam)
