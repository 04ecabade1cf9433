"""Tiny CSR datasets with a planted pattern, written with the real dataset writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.dataset import TEST, TRAIN, VALIDATION, write_dataset, write_split

N_ITEMS = 24


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
    write_dataset(
        path,
        arrays,
        np.array(offsets),
        item_keys=list(range(1000, 1000 + N_ITEMS)),
        user_keys=np.array([f"u{i}" for i in range(n_users)]),
        meta={"name": "planted", "synthetic": True, "has_times": has_times},
    )
    write_split(path, "loo", np.concatenate(labels))
    return path
