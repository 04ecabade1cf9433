"""The on-disk training dataset: per-user interaction sequences as CSR arrays read by `np.memmap`.

A dataset folder (written by `python -m training build`) holds:

    meta.json        format version, name, synthetic flag, has_times, counts, source files
    stats.json       users, items, interactions, length percentiles, how ties were broken
    items.npy        int32  item index (0..n_items-1) of each interaction, users' rows contiguous
    scores.npy       int8   0 = no score, else 1..10 (`inference.score_to_int`)
    statuses.npy     int8   `inference.STATUS_CODES`, or `REWATCHING_CODE`
    progress.npy     int16  episodes watched (0 when unknown)
    times.npy        int32  unix seconds, `inference.NO_TIME` when unknown
    offsets.npy      int64  n_users + 1; user u's rows are offsets[u]:offsets[u+1]
    item_keys.json   the original item id of each item index (MAL ids for anime)
    user_keys.npy    the original user id of each user index (strings, pickled-free unicode array)
    splits/<name>.npy  int8 per interaction: 0 train, 1 validation, 2 test
    cache/           tables derived from the arrays by training (`training.batches`), rebuilt on
                     demand; deleted whenever the dataset is written

Within a user, rows are in time order: unknown times first, ties broken by the original row order.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import TrainingError

FORMAT_VERSION = 1
CACHE = "cache"  # the folder of derived tables
TRAIN, VALIDATION, TEST = 0, 1, 2
ARRAYS: dict[str, Any] = {
    "items": np.int32,
    "scores": np.int8,
    "statuses": np.int8,
    "progress": np.int16,
    "times": np.int32,
}


@dataclass(frozen=True, slots=True)
class History:
    """One user's interactions (a slice of the CSR arrays), oldest first."""

    items: np.ndarray
    scores: np.ndarray
    statuses: np.ndarray
    progress: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.items)

    def select(self, mask_or_index: np.ndarray) -> History:
        return History(
            self.items[mask_or_index],
            self.scores[mask_or_index],
            self.statuses[mask_or_index],
            self.progress[mask_or_index],
            self.times[mask_or_index],
        )


class Dataset:
    """Read-only view of a built dataset folder; arrays are memory-mapped, not loaded."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{self.path} is not a built dataset (no meta.json); run `python -m training build`"
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise TrainingError(
                f"{self.path}: dataset format {self.meta.get('format_version')} "
                f"is not the supported {FORMAT_VERSION}; rebuild it"
            )
        self.items = np.load(self.path / "items.npy", mmap_mode="r")
        self.scores = np.load(self.path / "scores.npy", mmap_mode="r")
        self.statuses = np.load(self.path / "statuses.npy", mmap_mode="r")
        self.progress = np.load(self.path / "progress.npy", mmap_mode="r")
        self.times = np.load(self.path / "times.npy", mmap_mode="r")
        self.offsets = np.load(self.path / "offsets.npy", mmap_mode="r")

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return int(self.meta["n_items"])

    @property
    def n_interactions(self) -> int:
        return int(self.offsets[-1])

    @property
    def has_times(self) -> bool:
        return bool(self.meta.get("has_times", True))

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic", False))

    def unlisted_items(self) -> np.ndarray:
        """[n_items] bool: vocabulary items no one in the dataset has (catalogue-only titles).
        They can never be a held-out target, so rankings leave them out."""
        return np.bincount(np.asarray(self.items), minlength=self.n_items) == 0

    def item_keys(self) -> list[Any]:
        return list(json.loads((self.path / "item_keys.json").read_text()))

    def split(self, name: str) -> np.ndarray:
        path = self.path / "splits" / f"{name}.npy"
        if not path.exists():
            available = sorted(p.stem for p in (self.path / "splits").glob("*.npy"))
            raise FileNotFoundError(f"no split {name!r} in {self.path}; available: {available}")
        return np.load(path, mmap_mode="r")

    def history(self, user: int) -> History:
        lo, hi = int(self.offsets[user]), int(self.offsets[user + 1])
        return History(
            np.asarray(self.items[lo:hi]),
            np.asarray(self.scores[lo:hi]),
            np.asarray(self.statuses[lo:hi]),
            np.asarray(self.progress[lo:hi]),
            np.asarray(self.times[lo:hi]),
        )


def write_dataset(
    path: Path | str,
    arrays: dict[str, np.ndarray],
    offsets: np.ndarray,
    item_keys: list[Any],
    user_keys: np.ndarray,
    meta: dict[str, Any],
) -> None:
    """Write a small dataset in one go (tests, small imports). `build` streams large ones itself."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    remove_cache(path)
    for name, dtype in ARRAYS.items():
        np.save(path / f"{name}.npy", np.asarray(arrays[name], dtype=dtype))
    np.save(path / "offsets.npy", np.asarray(offsets, dtype=np.int64))
    np.save(path / "user_keys.npy", np.asarray(user_keys).astype(str))
    (path / "item_keys.json").write_text(json.dumps(list(item_keys)))
    full_meta = {"format_version": FORMAT_VERSION, "n_items": len(item_keys), **meta}
    full_meta["n_users"] = len(offsets) - 1
    full_meta["n_interactions"] = int(offsets[-1])
    (path / "meta.json").write_text(json.dumps(full_meta, indent=2))
    (path / "splits").mkdir(exist_ok=True)


def write_split(path: Path | str, name: str, labels: np.ndarray) -> None:
    split_dir = Path(path) / "splits"
    split_dir.mkdir(parents=True, exist_ok=True)
    np.save(split_dir / f"{name}.npy", np.asarray(labels, dtype=np.int8))


def remove_cache(path: Path | str) -> None:
    """Delete a dataset folder's derived tables: called whenever its arrays are (re)written."""
    shutil.rmtree(Path(path) / CACHE, ignore_errors=True)
