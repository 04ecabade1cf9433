"""Hold-out splits over a built dataset: one int8 label per interaction (0 train, 1 validation, 2 test).

- `loo` (leave one out): each user's last entry is test and the second last validation; users with
  fewer than 3 entries keep everything in train. "Last" is the dataset order (time, then row).
- `random` (seeded): for each user with at least 5 entries, a random 10% of the entries (rounded
  down, at least one) is test; the same rule applied to the remaining entries picks validation.
  Users with fewer than 5 entries keep everything in train. The random draws are made user chunk by
  user chunk in dataset order from one `numpy.random.default_rng(seed)` stream with fixed chunk
  boundaries, so the same dataset and seed always give the same labels.
- `temporal` (data with times): entries in the last N days before the latest known time are test,
  the N days before that validation; entries with unknown time stay in train.
- `cold` (titles never seen in training): a seeded 10% of the items, drawn stratum by stratum over
  popularity (items sorted by interaction count, cut into `COLD_STRATA` equal strata, 10% of each
  rounded half up), are hidden: every interaction with them is test, everything else train. No
  validation part (the protocol is for models that must read a title they were never trained on).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from inference.animelist import NO_TIME
from training.dataset import TEST, TRAIN, VALIDATION

RANDOM_MIN_ENTRIES = 5
RANDOM_SHARE = 0.1
LOO_MIN_ENTRIES = 3
# Rows per random-draw chunk; part of the definition of the `random` split (changing it changes labels).
CHUNK_ROWS = 1 << 22
COLD_SHARE = 0.1
COLD_STRATA = 10


def loo_split(offsets: np.ndarray) -> np.ndarray:
    offsets = np.asarray(offsets, dtype=np.int64)
    labels = np.zeros(int(offsets[-1]), dtype=np.int8)
    lengths = np.diff(offsets)
    ends = offsets[1:][lengths >= LOO_MIN_ENTRIES]
    labels[ends - 1] = TEST
    labels[ends - 2] = VALIDATION
    return labels


def holdout_count(n: np.ndarray) -> np.ndarray:
    """How many of n entries a random hold-out takes: 10% rounded down, at least one."""
    return np.maximum(1, np.floor(n * RANDOM_SHARE).astype(np.int64))


def _user_chunks(offsets: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive user ranges [u0, u1) of about CHUNK_ROWS rows each (whole users)."""
    chunks = []
    u0 = 0
    n_users = len(offsets) - 1
    while u0 < n_users:
        target = offsets[u0] + CHUNK_ROWS
        u1 = int(np.searchsorted(offsets, target, side="right")) - 1
        u1 = min(max(u1, u0 + 1), n_users)
        chunks.append((u0, u1))
        u0 = u1
    return chunks


def random_split(offsets: np.ndarray, seed: int) -> np.ndarray:
    offsets = np.asarray(offsets, dtype=np.int64)
    labels = np.zeros(int(offsets[-1]), dtype=np.int8)
    rng = np.random.default_rng(seed)
    for u0, u1 in tqdm(_user_chunks(offsets), desc="random split", unit="chunk", leave=False):
        lo, hi = int(offsets[u0]), int(offsets[u1])
        lengths = np.diff(offsets[u0 : u1 + 1])
        user = np.repeat(np.arange(u1 - u0), lengths)
        draws = rng.random(hi - lo)
        order = np.lexsort((draws, user))  # rows grouped by user, shuffled within each user
        rank = np.empty(hi - lo, dtype=np.int64)
        rank[order] = np.arange(hi - lo) - np.repeat(offsets[u0:u1] - lo, lengths)
        eligible = lengths >= RANDOM_MIN_ENTRIES
        n_test = np.where(eligible, holdout_count(lengths), 0)
        n_val = np.where(eligible, holdout_count(lengths - n_test), 0)
        row_test, row_val = n_test[user], n_val[user]
        chunk = np.full(hi - lo, TRAIN, dtype=np.int8)
        chunk[rank < row_test] = TEST
        chunk[(rank >= row_test) & (rank < row_test + row_val)] = VALIDATION
        labels[lo:hi] = chunk
    return labels


def temporal_split(times: np.ndarray, days: float, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    labels = np.zeros(len(times), dtype=np.int8)
    latest = NO_TIME
    for lo in range(0, len(times), chunk_rows):
        chunk = np.asarray(times[lo : lo + chunk_rows])
        if len(chunk):
            latest = max(latest, int(chunk.max()))
    if latest == NO_TIME:
        return labels
    window = int(days * 86400)
    test_after, validation_after = latest - window, latest - 2 * window
    for lo in range(0, len(times), chunk_rows):
        chunk = np.asarray(times[lo : lo + chunk_rows])
        known = chunk != NO_TIME
        labels[lo : lo + len(chunk)][known & (chunk > validation_after)] = VALIDATION
        labels[lo : lo + len(chunk)][known & (chunk > test_after)] = TEST
    return labels


def cold_items(counts: np.ndarray, seed: int, share: float = COLD_SHARE) -> np.ndarray:
    """Sorted indices of the hidden items: `share` of each popularity stratum (see the module doc).

    `counts[i]` is item i's interaction count; items with none are never drawn (they have nothing
    to hold out). Ties in count are ordered by item index, so the strata are a function of the data.
    """
    counts = np.asarray(counts)
    present = np.flatnonzero(counts > 0)
    order = present[np.argsort(counts[present], kind="stable")]
    rng = np.random.default_rng([seed, 1])
    hidden = []
    for stratum in np.array_split(order, COLD_STRATA):
        take = int(np.floor(len(stratum) * share + 0.5))
        if take:
            hidden.append(rng.choice(stratum, size=take, replace=False))
    if not hidden:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(hidden)).astype(np.int64)


def cold_split(
    items: np.ndarray, n_items: int, seed: int, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """Labels of the `cold` split: TEST for every interaction with a hidden item, else TRAIN."""
    counts = np.zeros(n_items, dtype=np.int64)
    for lo in range(0, len(items), chunk_rows):
        counts += np.bincount(np.asarray(items[lo : lo + chunk_rows]), minlength=n_items)
    hidden = np.zeros(n_items, dtype=bool)
    hidden[cold_items(counts, seed)] = True
    labels = np.zeros(len(items), dtype=np.int8)
    for lo in range(0, len(items), chunk_rows):
        chunk = np.asarray(items[lo : lo + chunk_rows])
        labels[lo : lo + len(chunk)] = np.where(hidden[chunk], TEST, TRAIN)
    return labels
