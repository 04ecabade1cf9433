"""CSR dataset -> training batches, through `inference.encoding` (the encoder serving uses too).

Every random choice about a sample (its window, masked tokens, cut point, shuffled order) comes
from a generator seeded per sample from (seed, epoch, step): a batch is a pure function of those,
so a resumed run rebuilds exactly the batches it skipped, and a rank building its slice of a global
batch draws exactly what a single process draws for the same samples.

Only the training part of the split (label TRAIN) ever reaches a batch; validation items are the
per-epoch check and test items the final evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.encoding import (
    ITEM_OFFSET,
    MASK_ITEM,
    PAD_ITEM,
    PROGRESS_UNKNOWN,
    SCORE_MASK,
    STATUS_MASK,
    TIME_NOW,
    encode,
    mask_tokens,
)
from training.dataset import TRAIN, VALIDATION, Dataset, History
from training.errors import TrainingError

Batch = dict[str, np.ndarray]


class UserParts:
    """Each user's interactions of one split part (train, validation...), read lazily from memmaps."""

    def __init__(self, dataset: Dataset, split: str) -> None:
        self.dataset = dataset
        self.labels = dataset.split(split)
        if len(self.labels) != dataset.n_interactions:
            raise TrainingError(
                f"split {split!r} has {len(self.labels)} labels for "
                f"{dataset.n_interactions} interactions"
            )
        offsets = np.asarray(dataset.offsets)
        counts = np.zeros((3, dataset.n_users), dtype=np.int64)
        for label in (0, 1, 2):
            cumulative = np.concatenate([[0], np.cumsum(self.labels == label)])
            counts[label] = cumulative[offsets[1:]] - cumulative[offsets[:-1]]
        self.counts = counts

    @property
    def has_times(self) -> bool:
        return self.dataset.has_times

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def part(self, user: int, labels: tuple[int, ...] = (TRAIN,)) -> History:
        lo, hi = int(self.dataset.offsets[user]), int(self.dataset.offsets[user + 1])
        own = self.labels[lo:hi]
        # One label (the usual case, once per sample per batch): == is ~10x cheaper than isin.
        keep = own == labels[0] if len(labels) == 1 else np.isin(own, labels)
        return self.dataset.history(user).select(keep)

    def users_with(self, min_train: int, label: int | None = None) -> np.ndarray:
        ok = self.counts[TRAIN] >= min_train
        if label is not None:
            ok &= self.counts[label] > 0
        return np.flatnonzero(ok)


def load_episodes(catalog_path: str, n_items: int) -> np.ndarray | None:
    """Episode count per vocabulary item (0 = unknown) from a catalogue, or None without one."""
    if not catalog_path:
        return None
    from inference.catalog import load_catalog

    catalog = load_catalog(Path(catalog_path))
    if len(catalog.items) != n_items:
        raise TrainingError(
            f"catalogue {catalog_path} has {len(catalog.items)} items, the dataset {n_items}"
        )
    return np.array([item.episodes or 0 for item in catalog], dtype=np.int64)


@dataclass(frozen=True)
class GlobalBatch:
    samples: np.ndarray  # sample indices (into a job's sample list)
    seeds: np.ndarray  # one uint64 seed per sample


def global_batches(
    n_samples: int,
    batch_size: int,
    seed: int,
    epoch: int,
    max_steps: int = 0,
    *,
    lengths: np.ndarray | None = None,
    bucket_batches: int = 0,
) -> Iterator[GlobalBatch]:
    """The epoch's global batches (a permutation of the samples; the last partial one is dropped).

    With `lengths` and `bucket_batches` = k > 0, each run of k batches' samples is sorted by length
    before it is cut into batches, and the batches are then shuffled: a batch pads to the length of
    similar samples instead of the longest of a random draw (the attention cost is quadratic in it),
    while every sample is still seen once per epoch in a random batch order.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_samples)
    steps = n_samples // batch_size
    if max_steps:
        steps = min(steps, max_steps)
    seeds = rng.integers(0, 2**63, size=(steps, batch_size), dtype=np.uint64)
    if lengths is not None and bucket_batches > 0:
        if len(lengths) != n_samples:
            raise ValueError(f"{len(lengths)} lengths for {n_samples} samples")
        order = order[: (n_samples // batch_size) * batch_size]
        chunk = bucket_batches * batch_size
        runs = [order[i : i + chunk] for i in range(0, len(order), chunk)]
        order = np.concatenate([run[np.argsort(lengths[run], kind="stable")] for run in runs])
        batch_order = rng.permutation(len(order) // batch_size)
        order = order.reshape(-1, batch_size)[batch_order].reshape(-1)
    for step in range(steps):
        yield GlobalBatch(order[step * batch_size : (step + 1) * batch_size], seeds[step])


def n_steps(n_samples: int, batch_size: int, max_steps: int = 0) -> int:
    steps = n_samples // batch_size
    return min(steps, max_steps) if max_steps else steps


def _window(history: History, length: int, rng: np.random.Generator) -> History:
    """A random run of `length` consecutive entries (all of them when the history is shorter)."""
    if len(history) <= length:
        return history
    end = int(rng.integers(length, len(history) + 1))
    return history.select(np.arange(end - length, end))


def _order(history: History, has_times: bool, rng: np.random.Generator) -> History:
    """Without times the row order is arbitrary: shuffle it so nothing can be learnt from it."""
    return history if has_times else history.select(rng.permutation(len(history)))


def _padded(rows: list[np.ndarray], fill: int = -1) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), fill, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def pretrain_batch(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    *,
    max_len: int,
    mask_prob: float,
    query_prob: float,
    episodes: np.ndarray | None = None,
) -> Batch:
    """Masked-entry batch: ~mask_prob of each row's tokens hidden (at least one).

    With probability `query_prob` a row's last entry is also hidden and stamped "now", the exact
    form of the fine-tuning query, so pretraining already answers "what comes next?".
    """
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    histories = [
        _window(_order(parts.part(int(u)), parts.has_times, rng), max_len, rng)
        for u, rng in zip(users, rngs, strict=True)
    ]
    enc = encode(histories, max_len, has_times=parts.has_times, episodes=episodes)
    width = enc.items.shape[1]
    mask = np.zeros(enc.items.shape, dtype=bool)
    stamp = np.zeros(enc.items.shape, dtype=bool)
    for row, rng in enumerate(rngs):
        n = int(enc.lengths[row])
        chosen = rng.random(n) < mask_prob
        if rng.random() < query_prob and parts.has_times:
            chosen[-1] = True
            stamp[row, width - 1] = True
        if not chosen.any():
            chosen[rng.integers(n)] = True
        mask[row, width - n :] = chosen
    rows, cols = np.nonzero(mask)
    target_items = enc.items[rows, cols] - ITEM_OFFSET
    target_scores = enc.scores[rows, cols]
    target_statuses = enc.statuses[rows, cols] - 1
    masked = mask_tokens(enc, mask, stamp_now=stamp)
    return {
        **masked.as_dict(),
        "target_rows": rows,
        "target_cols": cols,
        "target_items": target_items,
        "target_scores": target_scores,
        "target_statuses": target_statuses,
    }


def finetune_batch(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    *,
    max_len: int,
    holdout_share: float,
    n_next: int,
    episodes: np.ndarray | None = None,
) -> Batch:
    """ "What next?" batch: a history, a MASK query stamped "now" after it, and the items to predict.

    Timed data: a random cut point; the history is what came before it and the targets are the next
    `n_next` entries. Untimed data: a random `holdout_share` of the entries (at least one) are the
    targets and the rest, shuffled, the history. Users need >= 2 training entries.
    """
    histories, targets, seen = [], [], []
    for user, seed in zip(users, seeds, strict=True):
        rng = np.random.default_rng(int(seed))
        full = parts.part(int(user))
        n = len(full)
        if parts.has_times:
            cut = int(rng.integers(1, n))
            history = full.select(np.arange(cut))
            target = full.select(np.arange(cut, min(n, cut + n_next)))
        else:
            order = rng.permutation(n)
            k = min(n - 1, max(1, round(holdout_share * n)))
            history, target = full.select(order[k:]), full.select(order[:k])
        histories.append(history)
        targets.append(target)
        seen.append(history.items)
    enc = encode(
        histories, max_len, has_times=parts.has_times, episodes=episodes, append_query=True
    )
    return {
        **enc.as_dict(),
        "target_items": _padded([t.items for t in targets]),
        "target_scores": _padded([t.scores for t in targets], fill=0),
        "target_statuses": _padded([t.statuses for t in targets]),
        "seen_items": _padded(seen),
    }


def next_entries_batch(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    *,
    max_len: int,
    use_times: bool,
    episodes: np.ndarray | None = None,
) -> Batch:
    """ "What next?" after every prefix of a window, in one pass (timed data only).

    A window of up to `max_len` consecutive entries e_0..e_n is encoded exactly as serving encodes
    e_0..e_{n-1} followed by the MASK query stamped "now" (which predicts e_n). Behind that row
    come one more query token per earlier entry e_k (k = 1..n-1), each allowed to see only
    e_0..e_{k-1} (`query_sees`, used by the causal model) and placed at e_k's position. Every
    entry of the window is thus a target, as in SASRec, while each question keeps the serving
    form. Targets: `target_items` (-1 where none), with their scores and statuses.
    """
    windows = []
    for user, seed in zip(users, seeds, strict=True):
        rng = np.random.default_rng(int(seed))
        windows.append(_window(parts.part(int(user)), max_len, rng))
    heads = [w.select(np.arange(len(w) - 1)) for w in windows]
    enc = encode(
        heads,
        max_len,
        has_times=parts.has_times,
        episodes=episodes,
        append_query=True,
        use_times=use_times,
    )
    batch, width = enc.items.shape
    extra = max(width - 2, 1)  # queries for e_1..e_{n-1}: at most width - 2 of them
    total = width + extra
    out = {name: np.zeros((batch, total), dtype=np.int64) for name in enc.as_dict()}
    for name, array in enc.as_dict().items():
        out[name][:, :width] = array
    out["items"][:, width:] = PAD_ITEM
    query_sees = np.full((batch, total), -1, dtype=np.int64)
    query_sees[:, width - 1] = width - 2
    target_items = np.full((batch, total), -1, dtype=np.int64)
    target_scores = np.zeros((batch, total), dtype=np.int64)
    target_statuses = np.full((batch, total), -1, dtype=np.int64)
    for row, window in enumerate(windows):
        n = len(window) - 1  # entries before the last one
        target_items[row, width - 1] = window.items[-1]
        target_scores[row, width - 1] = window.scores[-1]
        target_statuses[row, width - 1] = window.statuses[-1]
        if n < 2:
            continue
        first = width - 1 - n  # column of e_0
        k = np.arange(1, n)  # targets e_1..e_{n-1}
        cols = width + k - 1
        out["items"][row, cols] = MASK_ITEM
        out["scores"][row, cols] = SCORE_MASK
        out["statuses"][row, cols] = STATUS_MASK
        out["times"][row, cols] = TIME_NOW
        out["progress"][row, cols] = PROGRESS_UNKNOWN
        out["positions"][row, cols] = enc.positions[row, first + k]
        query_sees[row, cols] = first + k - 1
        target_items[row, cols] = window.items[k]
        target_scores[row, cols] = window.scores[k]
        target_statuses[row, cols] = window.statuses[k]
    return {
        **out,
        "query_sees": query_sees,
        "target_items": target_items,
        "target_scores": target_scores,
        "target_statuses": target_statuses,
    }


def sasrec_batch(parts: UserParts, users: np.ndarray, seeds: np.ndarray, *, max_len: int) -> Batch:
    """Next-item batch: a window of max_len + 1 entries; position t predicts entry t + 1."""
    inputs, targets = [], []
    for user, seed in zip(users, seeds, strict=True):
        rng = np.random.default_rng(int(seed))
        window = _window(_order(parts.part(int(user)), parts.has_times, rng), max_len + 1, rng)
        inputs.append(window.select(np.arange(len(window) - 1)))
        targets.append(window.items[1:])
    enc = encode(inputs, max_len, has_times=parts.has_times)
    width = enc.items.shape[1]
    target = np.full((len(users), width), -1, dtype=np.int64)
    for row, items in enumerate(targets):
        target[row, width - len(items) :] = items
    return {**enc.as_dict(), "target_items": target}


@dataclass(frozen=True)
class ValidationSet:
    histories: list[History]  # the training part
    targets: list[np.ndarray]  # the validation items


def validation_set(parts: UserParts, n_users: int, seed: int) -> ValidationSet:
    """Up to n_users users with validation items, a fixed sample (same users every epoch)."""
    users = parts.users_with(min_train=1, label=VALIDATION)
    if len(users) > n_users:
        users = np.sort(np.random.default_rng([seed, 7]).choice(users, n_users, replace=False))
    histories = [parts.part(int(u)) for u in users]
    targets = [parts.part(int(u), (VALIDATION,)).items.astype(np.int64) for u in users]
    return ValidationSet(histories, targets)
