"""The ranker's item-item neighbours: EASE (Steck, 2019) fitted on the training part, kept sparse.

A dense EASE matrix is n_items² floats (190 MB for 6.9k items, 1.6 GB at 20k); each row keeps only
its `k` weights largest in magnitude. On the anime validation split, 64 per row scores as well as the
dense matrix (NDCG@10 0.298 against 0.296); keeping only positive weights costs about 4 points.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from inference.encoding import ItemFacts
from training.baselines.ease import ease_weights
from training.batches import UserParts
from training.dataset import TRAIN


def interaction_matrix(parts: UserParts, labels: tuple[int, ...] = (TRAIN,)) -> sp.csr_matrix:
    """Binary float32 [n_users, n_items]: who has what in the `labels` parts (from the CSR arrays,
    without a per-user loop)."""
    offsets = np.asarray(parts.dataset.offsets)
    users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    keep = np.isin(parts.labels, labels)
    return binary_matrix(
        users[keep], np.asarray(parts.dataset.items)[keep], len(offsets) - 1, parts.n_items
    )


def binary_matrix(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """Binary float32 [n_users, n_items] from one (user, item) pair per interaction."""
    matrix = sp.csr_matrix(
        (np.ones(len(items), dtype=np.float32), (users, np.asarray(items, dtype=np.int64))),
        shape=(n_users, n_items),
    )
    matrix.data[:] = 1.0  # a repeated (user, item) pair still counts once
    return matrix


def fit_neighbours(matrix: sp.csr_matrix, lam: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(items int32 [n, k], weights float32 [n, k]): each item's k strongest EASE weights."""
    n_items = matrix.shape[1]
    k = min(k, n_items - 1)
    if k <= 0:
        return np.zeros((n_items, 0), dtype=np.int32), np.zeros((n_items, 0), dtype=np.float32)
    gram = (matrix.T @ matrix).toarray().astype(np.float64)
    weights = ease_weights(gram, lam)
    del gram
    top = np.argpartition(-np.abs(weights), k - 1, axis=1)[:, :k]
    return top.astype(np.int32), np.take_along_axis(weights, top, axis=1).astype(np.float32)


def fit_cooccurrence(
    matrix: sp.csr_matrix, k: int, *, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(items int32 [n, k], cosines float32 [n, k]): item-kNN, each item's k nearest items by the
    cosine of their columns of the binary user x item `matrix` (how often two titles share a list,
    over the geometric mean of their counts), best first. `/similar` reads them
    (`inference.similar`). Rows are computed `block` at a time, so memory stays block x n_items
    rather than n_items². Items with no interactions (or fewer than k co-occurring items) pad
    with cosine 0."""
    n_items = matrix.shape[1]
    k = min(k, n_items - 1)
    if k <= 0:
        return np.zeros((n_items, 0), dtype=np.int32), np.zeros((n_items, 0), dtype=np.float32)
    columns = sp.csc_matrix(matrix, dtype=np.float32)
    by_item = columns.T.tocsr()  # [n_items, n_users]
    norms = np.sqrt(np.asarray(columns.multiply(columns).sum(axis=0)).ravel()).astype(np.float32)
    top_items = np.zeros((n_items, k), dtype=np.int32)
    top_cosines = np.zeros((n_items, k), dtype=np.float32)
    for start in range(0, n_items, block):
        rows = np.arange(start, min(start + block, n_items))
        shared = (by_item[rows] @ columns).toarray()  # [rows, n_items]: users in common
        denominator = norms[rows, None] * norms[None, :]
        cosine = np.divide(shared, denominator, out=np.zeros_like(shared), where=denominator > 0)
        cosine[np.arange(len(rows)), rows] = -1.0  # never an item's own neighbour
        top = np.argpartition(-cosine, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(cosine, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        top_items[rows] = np.take_along_axis(top, order, axis=1)
        top_cosines[rows] = np.maximum(np.take_along_axis(values, order, axis=1), 0.0)
    return top_items, top_cosines


def fit_transitions(
    parts: UserParts, k: int, labels: tuple[int, ...] = (TRAIN,)
) -> tuple[np.ndarray, np.ndarray]:
    """(items int32 [n, k], counts float32 [n, k]): for each item, the k items most often added
    right after it in the `labels` parts (consecutive pairs within a user, as the Markov baseline
    counts them)."""
    offsets = np.asarray(parts.dataset.offsets)
    users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    keep = np.isin(parts.labels, labels)
    return top_transitions(users[keep], np.asarray(parts.dataset.items)[keep], parts.n_items, k)


def top_transitions(
    users: np.ndarray, items: np.ndarray, n_items: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse top-k of the pair counts of consecutive `items` of the same user (time order)."""
    items = np.asarray(items, dtype=np.int64)
    same = np.asarray(users[1:]) == np.asarray(users[:-1])
    counts = sp.csr_matrix(
        (np.ones(int(same.sum()), dtype=np.float32), (items[:-1][same], items[1:][same])),
        shape=(n_items, n_items),
    )  # duplicates are summed: the pair counts
    top_items = np.zeros((n_items, k), dtype=np.int32)
    top_counts = np.zeros((n_items, k), dtype=np.float32)  # short rows pad with count 0
    for row in range(n_items):
        lo, hi = counts.indptr[row], counts.indptr[row + 1]
        best = np.argsort(-counts.data[lo:hi], kind="stable")[:k]
        top_items[row, : len(best)] = counts.indices[lo:hi][best]
        top_counts[row, : len(best)] = counts.data[lo:hi][best]
    return top_items, top_counts


def with_neighbours(facts: ItemFacts, parts: UserParts, lam: float, k: int) -> ItemFacts:
    items, weights = fit_neighbours(interaction_matrix(parts), lam, k)
    return replace(facts, neighbour_items=items, neighbour_weights=weights)
