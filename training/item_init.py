"""Item embeddings that start from the co-occurrence structure (`model.item_init = "svd"`).

A transformer trained from random item vectors first sits on a plateau where it predicts
popularity. This starts the ID embeddings from PureSVD factors of the training part (Cremonesi et
al., 2010: a truncated SVD of the user x item matrix) and the output bias from log popularity, so
titles watched together start close. On the anime sample it did not beat masked pretraining from
the random start (BENCHMARKS.md "Transformer experiments (anime)"); the default stays "random".

Only the training part (label TRAIN) is read, so validation and test items never shape the start.
Items without training interactions get a zero ID vector (their content part carries them).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg
import torch

from inference.encoding import ITEM_OFFSET
from training.dataset import TRAIN
from training.errors import ConfigError
from training.model import ListTransformer

ITEM_INITS = ("random", "svd")
# Mean row norm of the initial ID vectors: near the random start's rows (std 0.02 over d = 64 gives
# a norm of 0.16). A unit norm (logits of several units against the
# hidden state's norm of sqrt(d)) started the anime pretraining at a masked-item loss of 11.8
# against the random start's 7.8.
ROW_NORM = 0.25


def training_matrix(
    items: np.ndarray, labels: np.ndarray, offsets: np.ndarray, n_items: int
) -> sp.csr_matrix:
    """Binary user x item CSR of the training part, rows scaled by 1/sqrt(length) so heavy users do
    not set every factor."""
    n_users = len(offsets) - 1
    users = np.repeat(np.arange(n_users), np.diff(offsets))
    keep = labels == TRAIN
    rows, cols = users[keep], items[keep].astype(np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items)
    )
    matrix.data[:] = 1.0  # a repeated (user, item) pair counts once
    lengths = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.where(lengths > 0, 1.0 / np.sqrt(np.maximum(lengths, 1.0)), 0.0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix)


def svd_item_factors(matrix: sp.csr_matrix, dim: int, seed: int = 0) -> np.ndarray:
    """[n_items, dim] PureSVD item factors V·sqrt(S), rescaled to a mean row norm of ROW_NORM."""
    n_users, n_items = matrix.shape
    rank = min(dim, n_users - 1, n_items - 1)
    factors = np.zeros((n_items, dim), dtype=np.float32)
    if rank < 1 or matrix.nnz == 0:
        return factors
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(matrix.shape)).astype(np.float32)
    _, singular, vt = scipy.sparse.linalg.svds(matrix.astype(np.float64), k=rank, v0=v0)
    order = np.argsort(-singular)
    factors[:, :rank] = (vt[order].T * np.sqrt(singular[order])).astype(np.float32)
    norms = np.linalg.norm(factors, axis=1)
    used = norms > 0
    if used.any():
        factors *= ROW_NORM / norms[used].mean()
    return factors


def log_popularity_bias(items: np.ndarray, labels: np.ndarray, n_items: int) -> np.ndarray:
    """Centred log(1 + training count) per item: the popularity prior of the output softmax."""
    counts = np.bincount(items[labels == TRAIN].astype(np.int64), minlength=n_items)
    bias = np.log1p(counts).astype(np.float32)
    return bias - bias[counts > 0].mean() if (counts > 0).any() else bias


def init_item_embeddings(
    model: ListTransformer,
    method: str,
    items: np.ndarray,
    labels: np.ndarray,
    offsets: np.ndarray,
    seed: int = 0,
) -> None:
    """Overwrite a fresh model's item ID embeddings and output bias (`method` "svd"); "random"
    keeps the default init."""
    if method not in ITEM_INITS:
        raise ConfigError(f"model.item_init must be one of {', '.join(ITEM_INITS)}, not {method!r}")
    if method == "random":
        return
    n_items, dim = model.cfg.n_items, model.cfg.d_model
    matrix = training_matrix(items, labels, offsets, n_items)
    factors = svd_item_factors(matrix, dim, seed)
    bias = log_popularity_bias(items, labels, n_items)
    with torch.no_grad():
        model.item_emb.weight[ITEM_OFFSET:] = torch.from_numpy(factors)
        model.item_bias.copy_(torch.from_numpy(bias))
