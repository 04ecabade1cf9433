"""Score prediction baselines (RMSE on scored held-out entries, docs/evaluation.md#metrics).

bias      r ≈ μ + b_u + b_i, regularized, fitted by alternating closed-form updates.
mf        r ≈ μ + b_u + b_i + p_u·q_i, biased matrix factorization by ALS with weighted-λ
          regularization (each row's penalty scales with its number of ratings, Zhou et al. 2008).
Both fold a user in from the history handed to `predict` (its scored entries) with the item side
fixed, and clip predictions to the 1–10 scale.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from tqdm import tqdm

from training.baselines.interface import (
    TrainData,
    parse_params,
    reject_leftovers,
    take_float,
    take_int,
)
from training.dataset import History
from training.errors import TrainingError

BIAS_GRID = ("1", "3", "10", "30")
MF_GRID = ("factors=16+reg=0.05", "factors=16+reg=0.1", "factors=32+reg=0.1", "factors=32+reg=0.2")
MIN_SCORE, MAX_SCORE = 1.0, 10.0
BIAS_ITERATIONS = 15


def _ratings_matrix(
    users: np.ndarray, items: np.ndarray, scores: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    matrix = sp.csr_matrix((scores.astype(np.float64), (users, items)), shape=shape)
    # A user scoring the same item twice keeps the mean, not the sum.
    counts = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=shape)
    matrix.data /= counts.data
    return matrix


def _scored_rows(histories: list[History], n_items: int) -> sp.csr_matrix:
    users, items, scores = [], [], []
    for row, history in enumerate(histories):
        has_score = history.scores > 0
        items.append(history.items[has_score])
        scores.append(history.scores[has_score])
        users.append(np.full(int(has_score.sum()), row))
    return _ratings_matrix(
        np.concatenate(users).astype(np.int64),
        np.concatenate(items).astype(np.int64),
        np.concatenate(scores).astype(np.float64),
        (len(histories), n_items),
    )


def _row_bias(ratings: sp.csr_matrix, offsets: np.ndarray, reg: float) -> np.ndarray:
    """Per row: Σ (r − offset of the column) / (reg + n); 0 for rows without ratings."""
    residual = ratings.copy()
    residual.data = residual.data - offsets[residual.indices]
    totals = np.asarray(residual.sum(axis=1)).ravel()
    counts = np.diff(ratings.indptr)
    return totals / (reg + counts)


def _unique_histories(
    users: np.ndarray, histories: list[History]
) -> tuple[np.ndarray, list[History]]:
    """The inverse index of each pair into one history per distinct user."""
    _, first, inverse = np.unique(users, return_index=True, return_inverse=True)
    return inverse, [histories[i] for i in first]


class BiasModel:
    kind = "baseline"

    def __init__(self, reg: float) -> None:
        if reg < 0:
            raise TrainingError("bias regularization must be >= 0")
        self.reg = reg
        self.name = f"bias(reg={reg:g})"
        self.mean = 0.0
        self.item_bias = np.zeros(0)

    def fit(self, data: TrainData) -> None:
        users, items, scores = data.scored()
        if len(scores) == 0:
            raise TrainingError("the training part has no scored entries")
        shape = (data.n_users, data.n_items)
        by_user = _ratings_matrix(users, items, scores, shape)
        by_item = by_user.T.tocsr()
        self.mean = float(by_user.data.mean())
        user_bias = np.zeros(data.n_users)
        item_bias = np.zeros(data.n_items)
        for _ in range(BIAS_ITERATIONS):
            item_bias = _row_bias(by_item, self.mean + user_bias, self.reg)
            user_bias = _row_bias(by_user, self.mean + item_bias, self.reg)
        self.item_bias = item_bias
        self.user_bias = user_bias  # kept for inspection; `predict` folds users in

    def predict(self, users: np.ndarray, items: np.ndarray, histories: list[History]) -> np.ndarray:
        inverse, distinct = _unique_histories(users, histories)
        rows = _scored_rows(distinct, len(self.item_bias))
        user_bias = _row_bias(rows, self.mean + self.item_bias, self.reg)
        predicted = self.mean + user_bias[inverse] + self.item_bias[items]
        return np.clip(predicted, MIN_SCORE, MAX_SCORE).astype(np.float32)


def _solve_biased(
    ratings: sp.csr_matrix,
    fixed_factors: np.ndarray,
    fixed_bias: np.ndarray,
    mean: float,
    reg: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Factors and biases of every row of `ratings` given the other side (weighted-λ ALS)."""
    n_factors = fixed_factors.shape[1]
    design_all = np.hstack([fixed_factors, np.ones((fixed_factors.shape[0], 1))])
    factors = np.zeros((ratings.shape[0], n_factors))
    bias = np.zeros(ratings.shape[0])
    eye = np.eye(n_factors + 1)
    for row in range(ratings.shape[0]):
        lo, hi = ratings.indptr[row], ratings.indptr[row + 1]
        if lo == hi:
            continue
        idx = ratings.indices[lo:hi]
        design = design_all[idx]
        target = ratings.data[lo:hi] - mean - fixed_bias[idx]
        lhs = design.T @ design + reg * (hi - lo) * eye
        solution = scipy.linalg.solve(lhs, design.T @ target, assume_a="pos", check_finite=False)
        factors[row], bias[row] = solution[:-1], solution[-1]
    return factors, bias


class BiasedMf:
    kind = "baseline"

    def __init__(self, factors: int, reg: float, iterations: int, seed: int = 0) -> None:
        if factors < 1 or reg <= 0 or iterations < 1:
            raise TrainingError("biased MF needs factors >= 1, reg > 0, iterations >= 1")
        self.factors, self.reg, self.iterations, self.seed = factors, reg, iterations, seed
        self.name = f"mf(f={factors},reg={reg:g})"
        self.mean = 0.0
        self.item_factors = np.zeros((0, factors))
        self.item_bias = np.zeros(0)

    def fit(self, data: TrainData) -> None:
        users, items, scores = data.scored()
        if len(scores) == 0:
            raise TrainingError("the training part has no scored entries")
        by_user = _ratings_matrix(users, items, scores, (data.n_users, data.n_items))
        by_item = by_user.T.tocsr()
        self.mean = float(by_user.data.mean())
        rng = np.random.default_rng(self.seed)
        item_factors = rng.normal(0.0, 0.1, size=(data.n_items, self.factors))
        item_bias = np.zeros(data.n_items)
        for _ in tqdm(range(self.iterations), desc=f"{self.name} fit", leave=False):
            user_factors, user_bias = _solve_biased(
                by_user, item_factors, item_bias, self.mean, self.reg
            )
            item_factors, item_bias = _solve_biased(
                by_item, user_factors, user_bias, self.mean, self.reg
            )
        self.item_factors, self.item_bias = item_factors, item_bias

    def predict(self, users: np.ndarray, items: np.ndarray, histories: list[History]) -> np.ndarray:
        inverse, distinct = _unique_histories(users, histories)
        rows = _scored_rows(distinct, len(self.item_bias))
        user_factors, user_bias = _solve_biased(
            rows, self.item_factors, self.item_bias, self.mean, self.reg
        )
        predicted = (
            self.mean
            + user_bias[inverse]
            + self.item_bias[items]
            + np.einsum("ij,ij->i", user_factors[inverse], self.item_factors[items])
        )
        return np.clip(predicted, MIN_SCORE, MAX_SCORE).astype(np.float32)


def make_bias(arg: str | None) -> BiasModel:
    params = parse_params(arg, "reg")
    reg = take_float(params, "reg", 10.0)
    reject_leftovers("bias", params)
    return BiasModel(reg)


def make_mf(arg: str | None) -> BiasedMf:
    params = parse_params(arg, "factors")
    model = BiasedMf(
        factors=take_int(params, "factors", 16),
        reg=take_float(params, "reg", 0.1),
        iterations=take_int(params, "iterations", 10),
        seed=take_int(params, "seed", 0),
    )
    reject_leftovers("mf", params)
    return model
