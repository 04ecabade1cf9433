"""CSR dataset -> training batches, through `inference.encoding` (the encoder serving uses too).

A batch is built in whole-batch array operations, with no Python loop per sample: the samples'
entries are drawn as dataset row indices laid end to end (`Drawn`), gathered from the memory-mapped
arrays with one index per field, and encoded by `encoding.encode_flat`, which a test pins to the
serving `encode` row by row. `tests/training/rowwise_batches.py` keeps the row-by-row builders
this replaced, as the reference the tests compare against and the benchmark's baseline.

Every random choice about a sample (its window, masked tokens, cut point, shuffled order) is a
counter-based hash of its own seed, drawn from (seed, epoch, step): a batch is a pure function of
those, so a resumed run rebuilds exactly the batches it skipped, and a rank building its slice of a
global batch draws exactly what a single process draws for the same samples.

Only the training part of the split (label TRAIN) ever reaches a batch; validation items are the
per-epoch check and test items the final evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from inference.encoding import (
    FIELDS,
    ITEM_OFFSET,
    MASK_ITEM,
    PAD_ITEM,
    PROGRESS_UNKNOWN,
    SCORE_MASK,
    STATUS_MASK,
    TIME_NOW,
    encode_flat,
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
        self._layout: tuple[np.ndarray, np.ndarray | None] | None = None
        self._columns: History | None = None

    @property
    def has_times(self) -> bool:
        return self.dataset.has_times

    @property
    def columns(self) -> History:
        """Every interaction's fields as plain arrays over the memory maps: a fancy index on a
        `np.memmap` goes through Python-level wrapping that costs more than the gather itself."""
        if self._columns is None:
            d = self.dataset
            self._columns = History(
                *(np.asarray(a) for a in (d.items, d.scores, d.statuses, d.progress, d.times))
            )
        return self._columns

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    def part(self, user: int, labels: tuple[int, ...] = (TRAIN,)) -> History:
        lo, hi = int(self.dataset.offsets[user]), int(self.dataset.offsets[user + 1])
        own = self.labels[lo:hi]
        # One label (the usual case, once per sample per batch): == is ~10x cheaper than isin.
        keep = own == labels[0] if len(labels) == 1 else np.isin(own, labels)
        return self.dataset.history(user).select(keep)

    def train_rows(self, users: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Dataset rows of entries starts[b] .. starts[b] + lengths[b] - 1 of user b's training
        part, laid end to end (the batch builders' one gather index)."""
        first, index = self._train_layout()
        rows = _runs(first[np.asarray(users, dtype=np.int64)] + starts, lengths)
        return rows if index is None else index[rows]

    def _train_layout(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Where each user's training part starts; the row of every training entry only when some
        user's part is not one run (a random split), since that index costs 8 bytes per entry."""
        if self._layout is None:
            train = np.asarray(self.labels == TRAIN)
            offsets = np.asarray(self.dataset.offsets, dtype=np.int64)
            starts = train.copy()
            starts[1:] &= ~train[:-1]
            user_starts = offsets[:-1][offsets[:-1] < len(train)]
            starts[user_starts] = train[user_starts]  # a run cannot continue across users
            heads = np.flatnonzero(starts)
            if len(heads) == np.count_nonzero(self.counts[TRAIN]):  # one run per user who has one
                first = np.zeros(self.dataset.n_users, dtype=np.int64)
                first[np.searchsorted(offsets, heads, side="right") - 1] = heads
                self._layout = (first, None)
            else:
                counts = self.counts[TRAIN]
                self._layout = (np.cumsum(counts) - counts, np.flatnonzero(train))
        return self._layout

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


def keep_freed_memory() -> None:
    """Let this process reuse freed batch-sized blocks instead of handing them back to the kernel.

    A batch is a few MB of int64 arrays. By default glibc returns blocks that large to the kernel
    when they are freed, and the next batch faults every page in afresh: allocating and filling
    six int64 arrays of 128 x 200 took 5x longer that way on the development machine. Raising
    the thresholds keeps up to 256 MB of freed blocks in the heap. Called by the training jobs
    before they build batches; a no-op where libc has no `mallopt`.
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_trim_threshold, 256 << 20)
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value


# ---------------------------------------------------------------------------- per-sample draws
#
# A counter-based generator (SplitMix64): draw `counter` of stream `stream` for a sample is a hash
# of (its seed, stream, counter). Whole batches draw in a few array operations (a numpy Generator
# per sample costs more than building the batch), and a sample's draws depend on its seed alone,
# never on which rows share its batch: the reproducibility contract of the module docstring.

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_WINDOW, _ORDER, _MASK, _QUERY, _PICK, _CUT = 1, 2, 3, 4, 5, 6


def _mix(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser, in place (uint64 arithmetic wraps, as the algorithm wants)."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _stream(seeds: np.ndarray, stream: int) -> np.ndarray:
    """One uint64 state per sample for one kind of draw (windows, masks...)."""
    offset = np.uint64((stream * _GOLDEN) & _MASK64)
    return _mix(np.asarray(seeds, dtype=np.uint64) + offset)


def _bits(states: np.ndarray, counters: np.ndarray | None = None) -> np.ndarray:
    """uint64 draw number `counters` (default 0) of each state; `states` already per element."""
    if counters is None:
        return _mix(states + np.uint64(_GOLDEN))
    x = counters.astype(np.uint64)  # a copy, worked on in place: this runs once per token
    x += np.uint64(1)
    x *= np.uint64(_GOLDEN)
    x += states
    return _mix(x)


def _uniform(bits: np.ndarray) -> np.ndarray:
    """Floats in [0, 1) from the top 53 bits."""
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _threshold(p: float) -> np.uint64:
    """Draws below this are true with probability p (to 2^-64; p >= 1 as near 1 as that)."""
    return np.uint64(min(max(p, 0.0), 1.0 - 2.0**-53) * 2.0**64)


def _below(bits: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Integers in [0, n) (n >= 1) from uniform draws."""
    n = np.asarray(n, dtype=np.int64)
    return np.minimum((_uniform(bits) * n).astype(np.int64), n - 1)


# ------------------------------------------------------------------------------ flat row sets


@dataclass(frozen=True)
class Drawn:
    """Entries chosen for each sample: `rows[starts[b] : starts[b] + lengths[b]]` are sample b's
    dataset rows, in the order they are encoded."""

    rows: np.ndarray  # int64 dataset row indices, samples laid end to end
    lengths: np.ndarray  # int64 per sample

    @cached_property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.lengths) - self.lengths

    @cached_property
    def row_of(self) -> np.ndarray:
        """Each entry's sample."""
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    @cached_property
    def within(self) -> np.ndarray:
        """Each entry's place in its sample's run."""
        return np.arange(len(self.rows)) - np.repeat(self.starts, self.lengths)

    def first(self, counts: np.ndarray) -> Drawn:
        """The first counts[b] (<= lengths[b]) entries of each sample."""
        counts = np.asarray(counts, dtype=np.int64)
        return Drawn(self.rows[self.within < np.repeat(counts, self.lengths)], counts)

    def last(self, counts: np.ndarray) -> Drawn:
        """The last counts[b] (<= lengths[b]) entries of each sample."""
        counts = np.asarray(counts, dtype=np.int64)
        keep = self.within >= np.repeat(self.lengths - counts, self.lengths)
        return Drawn(self.rows[keep], counts)

    def gather(self, parts: UserParts) -> History:
        c = parts.columns
        # The rows are valid by construction: "clip" skips numpy's bounds check (2x faster).
        return History(
            *(
                np.take(a, self.rows, mode="clip")
                for a in (c.items, c.scores, c.statuses, c.progress, c.times)
            )
        )


def _runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """starts[b], starts[b] + 1, ... (lengths[b] of them) for every b, laid end to end."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, dtype=np.int64) - offsets, lengths) + np.arange(
        int(lengths.sum())
    )


def _train_runs(
    parts: UserParts, users: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> Drawn:
    """Entries starts[b] .. starts[b] + lengths[b] - 1 of each user's training part."""
    return Drawn(parts.train_rows(users, starts, lengths), np.asarray(lengths, dtype=np.int64))


def _shuffled(parts: UserParts, users: np.ndarray, seeds: np.ndarray) -> Drawn:
    """Each user's whole training part in a random order (stream _ORDER, one draw per entry)."""
    n = parts.counts[TRAIN][users]
    full = _train_runs(parts, users, np.zeros(len(users), dtype=np.int64), n)
    row_of = full.row_of
    keys = _bits(_stream(seeds, _ORDER)[row_of], full.within) >> np.uint64(24)
    # The sample in the high bits (up to 2^24 per batch) keeps each run together, and its 40
    # random bits order it inside; a stable sort, so that ties cannot depend on the other samples.
    order = np.argsort(keys | (row_of.astype(np.uint64) << np.uint64(40)), kind="stable")
    return Drawn(full.rows[order], n)


def draw_windows(
    parts: UserParts, users: np.ndarray, seeds: np.ndarray, length: int, *, shuffle: bool
) -> Drawn:
    """A random run of `length` consecutive training entries per user (all of them if fewer).

    With `shuffle` (data without times, where the row order is arbitrary and nothing must be learnt
    from it), a random `length` of them in a random order instead.
    """
    users = np.asarray(users, dtype=np.int64)
    n = parts.counts[TRAIN][users]
    take = np.minimum(n, length)
    if shuffle:
        full = _shuffled(parts, users, seeds)
        return full.first(take)
    ends = take + _below(_bits(_stream(seeds, _WINDOW)), n - take + 1)
    return _train_runs(parts, users, ends - take, take)


def _padded(values: np.ndarray, lengths: np.ndarray, fill: int = -1) -> np.ndarray:
    """Rows laid end to end -> [batch, longest] int64, left-aligned, `fill` after each row."""
    lengths = np.asarray(lengths, dtype=np.int64)
    width = max(int(lengths.max(initial=0)), 1)
    out = np.full((len(lengths), width), fill, dtype=np.int64)
    out[np.arange(width) < lengths[:, None]] = values  # row-major: the rows in order
    return out


# -------------------------------------------------------------------------------------- batches


def pretrain_draw(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    *,
    max_len: int,
    mask_prob: float,
    query_prob: float,
) -> tuple[Drawn, np.ndarray, np.ndarray]:
    """Pretraining's draws: each sample's entries, which of them are hidden (flat, in the entries'
    order) and which samples hide their last entry as the "now" query."""
    drawn = draw_windows(parts, users, seeds, max_len, shuffle=not parts.has_times)
    row_of, n = drawn.row_of, drawn.lengths
    chosen = _bits(_stream(seeds, _MASK)[row_of], drawn.within) < _threshold(mask_prob)
    last = drawn.starts + n - 1
    query = (_uniform(_bits(_stream(seeds, _QUERY))) < query_prob) & (n > 0) & parts.has_times
    chosen[last[query]] = True
    # At least one hidden entry per sample.
    none = (np.bincount(row_of[chosen], minlength=len(n)) == 0) & (n > 0)
    pick = _below(_bits(_stream(seeds, _PICK)), np.maximum(n, 1))
    chosen[(drawn.starts + pick)[none]] = True
    return drawn, chosen, query


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
    drawn, chosen, query = pretrain_draw(
        parts, users, seeds, max_len=max_len, mask_prob=mask_prob, query_prob=query_prob
    )
    enc = encode_flat(
        drawn.gather(parts),
        drawn.lengths,
        max_len,
        has_times=parts.has_times,
        episodes=episodes,
    )
    width = enc.items.shape[1]
    mask = np.zeros(enc.items.shape, dtype=bool)
    # Entries are right-aligned, and row-major order over them is the order they were drawn in.
    mask[np.arange(width) >= (width - drawn.lengths)[:, None]] = chosen
    stamp = np.zeros(enc.items.shape, dtype=bool)
    stamp[query, width - 1] = True
    # The hidden tokens in row-major order (np.nonzero's), read from the flat draw.
    rows = drawn.row_of[chosen]
    cols = (width - drawn.lengths)[rows] + drawn.within[chosen]
    target_items = enc.items[rows, cols] - ITEM_OFFSET
    target_scores = enc.scores[rows, cols]
    target_statuses = enc.statuses[rows, cols] - 1
    masked = mask_tokens(enc, mask, stamp_now=stamp, in_place=True)
    return {
        **masked.as_dict(),
        "target_rows": rows,
        "target_cols": cols,
        "target_items": target_items,
        "target_scores": target_scores,
        "target_statuses": target_statuses,
    }


def finetune_draw(
    parts: UserParts, users: np.ndarray, seeds: np.ndarray, *, holdout_share: float, n_next: int
) -> tuple[Drawn, Drawn]:
    """Fine-tuning's draws: each sample's whole history (in encoding order) and its targets."""
    users = np.asarray(users, dtype=np.int64)
    n = parts.counts[TRAIN][users]
    if parts.has_times:
        cut = 1 + _below(_bits(_stream(seeds, _CUT)), np.maximum(n - 1, 1))
        history = _train_runs(parts, users, np.zeros(len(users), dtype=np.int64), cut)
        target = _train_runs(parts, users, cut, np.minimum(n, cut + n_next) - cut)
        return history, target
    full = _shuffled(parts, users, seeds)
    k = np.clip(np.rint(holdout_share * n).astype(np.int64), 1, np.maximum(n - 1, 0))
    return full.last(n - k), full.first(k)


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
    history, target = finetune_draw(parts, users, seeds, holdout_share=holdout_share, n_next=n_next)
    # Only the newest max_len - 1 history entries are encoded; `seen_items` holds them all.
    newest = history.last(np.minimum(history.lengths, max_len - 1))
    enc = encode_flat(
        newest.gather(parts),
        newest.lengths,
        max_len,
        has_times=parts.has_times,
        episodes=episodes,
        append_query=True,
    )
    columns = parts.columns
    return {
        **enc.as_dict(),
        "target_items": _padded(columns.items[target.rows], target.lengths),
        "target_scores": _padded(columns.scores[target.rows], target.lengths, fill=0),
        "target_statuses": _padded(columns.statuses[target.rows], target.lengths),
        "seen_items": _padded(columns.items[history.rows], history.lengths),
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
    window = draw_windows(parts, users, seeds, max_len, shuffle=False)
    if (window.lengths < 1).any():
        raise TrainingError("next-entries batches need users with training entries")
    lengths = window.lengths
    head = window.first(lengths - 1)  # e_0..e_{n-1}
    enc = encode_flat(
        head.gather(parts),
        head.lengths,
        max_len,
        has_times=parts.has_times,
        episodes=episodes,
        append_query=True,
        use_times=use_times,
    )
    batch, width = enc.items.shape
    extra = max(width - 2, 1)  # queries for e_1..e_{n-1}: at most width - 2 of them
    total = width + extra
    # Entry e_k (k = 1..n-1, n = entries before the last) -> a query in column width + k - 1 at
    # e_k's position (n - k, counted back from the last column) that sees columns up to e_{k-1}'s
    # (e_0 sits in column width - 1 - n).
    n = head.lengths[:, None]
    k = 1 + np.arange(extra)
    query = k < n
    block = np.zeros((len(FIELDS), batch, total), dtype=np.int64)  # one allocation for all
    out: Batch = dict(zip(FIELDS, block, strict=True))
    for name, array in enc.as_dict().items():
        out[name][:, :width] = array
    # Behind the queries, padding: as encode pads, except time "now" (what the old code left).
    out["items"][:, width:] = PAD_ITEM
    out["items"][:, width:][query] = MASK_ITEM
    np.multiply(query, SCORE_MASK, out=out["scores"][:, width:])  # 0: padding
    np.multiply(query, STATUS_MASK, out=out["statuses"][:, width:])
    out["times"][:, width:] = TIME_NOW
    out["progress"][:, width:] = PROGRESS_UNKNOWN
    if parts.has_times:
        np.multiply(query, n - k, out=out["positions"][:, width:])
    query_sees = np.full((batch, total), -1, dtype=np.int64)
    query_sees[:, width - 1] = width - 2
    query_sees[:, width:][query] = (width - 2 - n + k)[query]
    last = window.rows[window.starts + lengths - 1]
    # e_1..e_{n-1}, in the row-major order of `query`.
    rows = window.rows[(window.within >= 1) & (window.within < np.repeat(lengths - 1, lengths))]
    columns = parts.columns
    targets: Batch = {}
    for name, fill in (("items", -1), ("scores", 0), ("statuses", -1)):
        values = getattr(columns, name)
        target = np.full((batch, total), fill, dtype=np.int64)
        target[:, width - 1] = values[last]
        target[:, width:][query] = values[rows]
        targets[name] = target
    return {
        **out,
        "query_sees": query_sees,
        "target_items": targets["items"],
        "target_scores": targets["scores"],
        "target_statuses": targets["statuses"],
    }


def sasrec_batch(parts: UserParts, users: np.ndarray, seeds: np.ndarray, *, max_len: int) -> Batch:
    """Next-item batch: a window of max_len + 1 entries; position t predicts entry t + 1."""
    window = draw_windows(parts, users, seeds, max_len + 1, shuffle=not parts.has_times)
    lengths = window.lengths
    within = window.within
    inputs = window.first(np.maximum(lengths - 1, 0))
    enc = encode_flat(inputs.gather(parts), inputs.lengths, max_len, has_times=parts.has_times)
    batch, width = enc.items.shape
    target = np.full((batch, width), -1, dtype=np.int64)
    # Entries 1..n-1, right-aligned like the inputs they follow (row-major: drawn order).
    target[np.arange(width) >= (width - inputs.lengths)[:, None]] = parts.columns.items[
        window.rows[within > 0]
    ]
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
