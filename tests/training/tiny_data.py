"""Tiny CSR datasets with a planted pattern, written with the real dataset writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.dataset import TEST, TRAIN, VALIDATION, write_dataset, write_split

N_ITEMS = 24


def write_lists(
    path: Path,
    arrays: dict[str, np.ndarray],
    offsets: list[int] | np.ndarray,
    labels: np.ndarray,
    *,
    name: str,
    has_times: bool,
    split: str = "loo",
    n_items: int = N_ITEMS,
) -> Path:
    """A dataset of users u0, u1... over item keys 1000, 1001... with one split, as `build` writes."""
    write_dataset(
        path,
        arrays,
        np.asarray(offsets),
        item_keys=list(range(1000, 1000 + n_items)),
        user_keys=np.array([f"u{i}" for i in range(len(offsets) - 1)]),
        meta={"name": name, "synthetic": True, "has_times": has_times},
    )
    write_split(path, split, labels)
    return path


def planted_dataset(path: Path, n_users: int = 64, has_times: bool = True, seed: int = 0) -> Path:
    """Each user walks the item cycle i -> i+1 (mod N_ITEMS) from a random start; item i is always
    scored i % 10 + 1. A model that learns the cycle predicts the next item almost surely."""
    rng = np.random.default_rng(seed)
    items, scores, statuses, progress, times, labels = [], [], [], [], [], []
    offsets = [0]
    for _ in range(n_users):
        length = int(rng.integers(6, 14))
        start = int(rng.integers(N_ITEMS))
        seq = (start + np.arange(length)) % N_ITEMS
        items.append(seq)
        scores.append(seq % 10 + 1)
        statuses.append(np.where(seq % 7 == 0, 3, 1))  # items 0, 7, 14, 21 get dropped
        progress.append(np.full(length, 3))
        times.append(1_500_000_000 + np.arange(length) * 3600 if has_times else np.full(length, -1))
        label = np.full(length, TRAIN)
        if has_times:
            label[-1], label[-2] = TEST, VALIDATION
        else:
            held = rng.choice(length, 2, replace=False)
            label[held[0]], label[held[1]] = TEST, VALIDATION
        labels.append(label)
        offsets.append(offsets[-1] + length)
    arrays = {
        "items": np.concatenate(items),
        "scores": np.concatenate(scores),
        "statuses": np.concatenate(statuses),
        "progress": np.concatenate(progress),
        "times": np.concatenate(times),
    }
    return write_lists(
        path, arrays, offsets, np.concatenate(labels), name="planted", has_times=has_times
    )


DROPPED, COMPLETED = 3, 1  # inference.animelist status codes


def drop_taste_dataset(path: Path, n_users: int = 64, seed: int = 0) -> Path:
    """Timed lists walking the item cycle like `planted_dataset`, where what a user drops depends
    on who they are: users of group 0 (even index) drop every item of the first half (0–11), users
    of group 1 every item of the second half, and complete the rest. Each item and each user drops
    about half of what they list, so rates alone say little; a history's own statuses reveal its
    group. No other status occurs. `loo` split (last entry test, second last validation)."""
    rng = np.random.default_rng(seed)
    items, statuses, labels = [], [], []
    offsets = [0]
    for user in range(n_users):
        length = int(rng.integers(8, 14))
        seq = (int(rng.integers(N_ITEMS)) + np.arange(length)) % N_ITEMS
        items.append(seq)
        first_half = seq < N_ITEMS // 2
        statuses.append(np.where(first_half == (user % 2 == 0), DROPPED, COMPLETED))
        label = np.full(length, TRAIN)
        label[-1], label[-2] = TEST, VALIDATION
        labels.append(label)
        offsets.append(offsets[-1] + length)
    n = offsets[-1]
    all_items = np.concatenate(items)
    arrays = {
        "items": all_items,
        "scores": all_items % 10 + 1,
        "statuses": np.concatenate(statuses),
        "progress": np.full(n, 3),
        "times": 1_500_000_000 + np.arange(n) * 3600,
    }
    return write_lists(
        path, arrays, offsets, np.concatenate(labels), name="drop-taste", has_times=True
    )
