"""Item-kNN: cosine similarity of item columns of the binary user×item matrix, each item keeping its
k most similar items; a user's score for item j is the sum of sim(i, j) over the history items i
that have j among their k neighbours.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.baselines.interface import (
    TrainData,
    history_matrix,
    parse_params,
    reject_leftovers,
    take_int,
)
from training.dataset import History
from training.errors import TrainingError

K_GRID = ("5", "10", "20", "50", "100")
BLOCK_ROWS = 1024  # rows of the dense similarity block held at once (bounded memory at 20k items)


def cosine_top_k(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Sparse [n_items, n_items]: row i holds the k items most cosine-similar to i (not i)."""
    columns = matrix.tocsc().astype(np.float32)
    n_items = columns.shape[1]
    norms = np.sqrt(np.asarray(columns.multiply(columns).sum(axis=0)).ravel())
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    normalized = (columns @ sp.diags(inverse.astype(np.float32))).tocsc()
    normalized_t = normalized.T.tocsr()
    k = min(k, n_items - 1)
    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for start in range(0, n_items, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n_items)
        block = np.asarray((normalized_t[start:stop] @ normalized).toarray(), dtype=np.float32)
        block[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if k <= 0:
            chosen = np.zeros((stop - start, 0), dtype=np.int64)
        else:
            chosen = np.argpartition(-block, k - 1, axis=1)[:, :k]
        for row in range(stop - start):
            picked = chosen[row]
            sims = block[row, picked]
            keep = sims > 0
            indices.append(picked[keep])
            values.append(sims[keep])
            indptr.append(indptr[-1] + int(keep.sum()))
    return sp.csr_matrix(
        (
            np.concatenate(values) if values else np.zeros(0, np.float32),
            np.concatenate(indices) if indices else np.zeros(0, np.int64),
            np.asarray(indptr),
        ),
        shape=(n_items, n_items),
    )


class ItemKnn:
    kind = "baseline"

    def __init__(self, k: int) -> None:
        if k < 1:
            raise TrainingError("item-kNN needs k >= 1")
        self.k = k
        self.name = f"itemknn(k={k})"
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, data: TrainData) -> None:
        self.similarity = cosine_top_k(data.matrix, self.k)

    def score(self, users: np.ndarray, histories: list[History]) -> np.ndarray:
        rows = history_matrix(histories, self.similarity.shape[0])
        return np.asarray((rows @ self.similarity).toarray(), dtype=np.float32)


def make(arg: str | None) -> ItemKnn:
    params = parse_params(arg, "k")
    k = take_int(params, "k", 100)
    reject_leftovers("itemknn", params)
    return ItemKnn(k)
