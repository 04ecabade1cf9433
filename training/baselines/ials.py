"""Implicit ALS (Hu, Koren & Volinsky, 2008) with exact solves, numpy/scipy only.

Preference 1 on every training interaction, confidence 1 + alpha there and 1 elsewhere; user and item
factors alternate closed-form solves of (YᵀY + alpha·Y_uᵀY_u + reg·I) x_u = (1 + alpha) Σ Y_u.
`score` folds a user in from the history it is given (one user solve against the fitted item
factors), so it serves histories that are not the training rows without a user table.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from tqdm import tqdm

from training.baselines.interface import (
    TrainData,
    history_matrix,
    parse_params,
    reject_leftovers,
    take_float,
    take_int,
)
from training.dataset import History
from training.errors import TrainingError

# Kept small (each entry is a full fit on 2 cores); on ML-1M a low confidence weight won clearly.
GRID = (
    "factors=64+alpha=1+reg=10",
    "factors=64+alpha=2+reg=10",
    "factors=64+alpha=2+reg=50",
    "factors=64+alpha=5+reg=50",
)


def solve_side(rows: sp.csr_matrix, fixed: np.ndarray, alpha: float, reg: float) -> np.ndarray:
    """One half-step: the factors of every row of `rows` (binary CSR) given the other side's."""
    n_factors = fixed.shape[1]
    gram = fixed.T @ fixed + reg * np.eye(n_factors)
    result = np.zeros((rows.shape[0], n_factors), dtype=np.float64)
    for row in range(rows.shape[0]):
        idx = rows.indices[rows.indptr[row] : rows.indptr[row + 1]]
        if len(idx) == 0:
            continue
        chosen = fixed[idx]
        lhs = gram + alpha * (chosen.T @ chosen)
        rhs = (1.0 + alpha) * chosen.sum(axis=0)
        result[row] = scipy.linalg.solve(lhs, rhs, assume_a="pos", check_finite=False)
    return result


class Ials:
    kind = "baseline"

    def __init__(
        self, factors: int, alpha: float, reg: float, iterations: int, seed: int = 0
    ) -> None:
        if factors < 1 or alpha < 0 or reg <= 0 or iterations < 1:
            raise TrainingError("iALS needs factors >= 1, alpha >= 0, reg > 0, iterations >= 1")
        self.factors, self.alpha, self.reg, self.iterations = factors, alpha, reg, iterations
        self.seed = seed
        self.name = f"ials(f={factors},α={alpha:g},reg={reg:g})"
        self.item_factors = np.zeros((0, factors))

    def fit(self, data: TrainData) -> None:
        rng = np.random.default_rng(self.seed)
        by_user = data.matrix.tocsr()
        by_item = by_user.T.tocsr()
        items = rng.normal(0.0, 0.01, size=(data.n_items, self.factors))
        for _ in tqdm(range(self.iterations), desc=f"{self.name} fit", leave=False):
            users = solve_side(by_user, items, self.alpha, self.reg)
            items = solve_side(by_item, users, self.alpha, self.reg)
        self.item_factors = items

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        rows = history_matrix(histories, self.item_factors.shape[0])
        user_factors = solve_side(rows, self.item_factors, self.alpha, self.reg)
        return np.asarray(user_factors @ self.item_factors.T, dtype=np.float32)


def make(arg: str | None) -> Ials:
    params = parse_params(arg, "factors")
    model = Ials(
        factors=take_int(params, "factors", 64),
        alpha=take_float(params, "alpha", 10.0),
        reg=take_float(params, "reg", 10.0),
        iterations=take_int(params, "iterations", 10),
        seed=take_int(params, "seed", 0),
    )
    reject_leftovers("ials", params)
    return model
