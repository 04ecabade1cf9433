"""List entries -> model inputs: the one encoder shared by training batches and serving (docs/model.md#encoding).

A history (one user's entries, oldest first) becomes one row of six small-integer token fields,
left-padded so that the most recent entry is always in the last column:

    items      PAD_ITEM, MASK_ITEM, or vocabulary index + ITEM_OFFSET
    scores     0 = no score, 1..10, SCORE_MASK
    statuses   0 = padding, status code + 1 (codes of `inference.animelist`), STATUS_MASK
    times      TIME_NOW (the query token), TIME_UNKNOWN, or 2 + floor(log2(1 + seconds before "now"))
    progress   PROGRESS_UNKNOWN, or 1 + round(10 * episodes watched / episodes)
    positions  distance from the last column (0 = most recent); all 0 when the data has no times

Positions count back from the end so that "most recent" means the same thing at every length, and
the reference "now" is the time of the last history entry (training, evaluation) or the wall clock
(serving) — never a target's own time. Where the data has no times at all, order is meaningless, so
time is always unknown and every position is 0: the model cannot learn from either.

numpy only: serving imports this without torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol

import numpy as np

from inference.animelist import N_STATUS_CODES, NO_TIME, ListEntry, score_to_int
from inference.order import best_first

PAD_ITEM, MASK_ITEM, ITEM_OFFSET = 0, 1, 2
SCORE_MASK = 11
N_SCORE_TOKENS = 12
STATUS_MASK = N_STATUS_CODES + 1
N_STATUS_TOKENS = N_STATUS_CODES + 2
TIME_NOW, TIME_UNKNOWN = 0, 1
N_TIME_LOG_BUCKETS = 32  # 2^31 s is 68 years: every real gap fits
N_TIME_TOKENS = 2 + N_TIME_LOG_BUCKETS
PROGRESS_UNKNOWN = 0
N_PROGRESS_TOKENS = 12

FIELDS = ("items", "scores", "statuses", "times", "progress", "positions")


class EntryArrays(Protocol):
    """One user's entries as parallel arrays, oldest first (`training.dataset.History` is one)."""

    @property
    def items(self) -> np.ndarray: ...
    @property
    def scores(self) -> np.ndarray: ...
    @property
    def statuses(self) -> np.ndarray: ...
    @property
    def progress(self) -> np.ndarray: ...
    @property
    def times(self) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class Entries:
    """A plain `EntryArrays`, for lists that do not come from a training dataset."""

    items: np.ndarray
    scores: np.ndarray
    statuses: np.ndarray
    progress: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class Encoded:
    """Model inputs: int64 arrays [batch, width], left-padded; `lengths` counts real tokens."""

    items: np.ndarray
    scores: np.ndarray
    statuses: np.ndarray
    times: np.ndarray
    progress: np.ndarray
    positions: np.ndarray
    lengths: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in FIELDS}

    def replace(self, **arrays: np.ndarray) -> Encoded:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(arrays)
        return Encoded(**values)


def time_buckets(times: np.ndarray, now: int | None) -> np.ndarray:
    """Log2 buckets of how long before `now` each time is; unknown times (and no `now`) -> unknown.

    A time after `now` (clock skew, or "now" taken from an earlier entry) counts as 0 s before.
    """
    times = np.asarray(times, dtype=np.int64)
    out = np.full(times.shape, TIME_UNKNOWN, dtype=np.int64)
    if now is None or now == NO_TIME:
        return out
    known = times != NO_TIME
    delta = np.maximum(now - times[known], 0).astype(np.float64)
    buckets = np.floor(np.log2(1.0 + delta)).astype(np.int64)
    out[known] = 2 + np.minimum(buckets, N_TIME_LOG_BUCKETS - 1)
    return out


def progress_buckets(
    items: np.ndarray, progress: np.ndarray, episodes: np.ndarray | None
) -> np.ndarray:
    """Tenths of the episodes watched (1..11); unknown without a catalogue episode count."""
    out = np.full(len(items), PROGRESS_UNKNOWN, dtype=np.int64)
    if episodes is None or len(items) == 0:
        return out
    total = np.asarray(episodes, dtype=np.float64)[np.asarray(items, dtype=np.int64)]
    known = total > 0
    fraction = np.clip(np.asarray(progress, dtype=np.float64)[known] / total[known], 0.0, 1.0)
    out[known] = 1 + np.rint(10.0 * fraction).astype(np.int64)
    return out


def reference_now(history: EntryArrays) -> int | None:
    """The evaluation/training "now": the time of the last history entry, if it has one."""
    if len(history.times) == 0 or int(history.times[-1]) == NO_TIME:
        return None
    return int(history.times[-1])


def encode(
    histories: Sequence[EntryArrays],
    max_len: int,
    *,
    has_times: bool,
    episodes: np.ndarray | None = None,
    now: Sequence[int | None] | None = None,
    append_query: bool = False,
    use_times: bool = True,
) -> Encoded:
    """Encode histories into one left-padded batch.

    `max_len` bounds the tokens per row, the query included; longer histories keep their most
    recent entries. `append_query` adds a MASK token stamped "now" after each history (the
    fine-tuned model's question "what next?"). `now` defaults to each history's last entry time.
    `episodes[i]` is item i's episode count (0 unknown) for the progress fraction.
    `use_times=False` keeps the order (positions) but leaves every entry's time unknown: a model
    trained with one query per entry (see `training.batches.next_entries_batch`) cannot give each
    query its own "now", so it is trained and served without entry times.
    """
    if max_len < 1 + int(append_query):
        raise ValueError(f"max_len {max_len} leaves no room for a history")
    keep = max_len - int(append_query)
    lengths = np.array([min(len(h.items), keep) + int(append_query) for h in histories])
    width = max(int(lengths.max(initial=0)), 1)
    batch = len(histories)
    arrays = {name: np.zeros((batch, width), dtype=np.int64) for name in FIELDS}
    arrays["times"][:] = TIME_UNKNOWN
    for row, history in enumerate(histories):
        n = min(len(history.items), keep)
        start = width - lengths[row]
        cols = slice(start, start + n)
        tail = slice(len(history.items) - n, len(history.items))
        items = np.asarray(history.items[tail], dtype=np.int64)
        arrays["items"][row, cols] = items + ITEM_OFFSET
        arrays["scores"][row, cols] = np.asarray(history.scores[tail], dtype=np.int64)
        arrays["statuses"][row, cols] = np.asarray(history.statuses[tail], dtype=np.int64) + 1
        arrays["progress"][row, cols] = progress_buckets(items, history.progress[tail], episodes)
        if has_times:
            if use_times:
                row_now = reference_now(history) if now is None else now[row]
                arrays["times"][row, cols] = time_buckets(history.times[tail], row_now)
            arrays["positions"][row, start:] = np.arange(lengths[row] - 1, -1, -1)
        if append_query:
            arrays["items"][row, -1] = MASK_ITEM
            arrays["scores"][row, -1] = SCORE_MASK
            arrays["statuses"][row, -1] = STATUS_MASK
            arrays["times"][row, -1] = TIME_NOW
    return Encoded(**arrays, lengths=lengths)


TIME_SHIFT = 2**40  # `entry_times` are seconds + TIME_SHIFT, 0 for NO_TIME (and padding)
ENTRY_TOKENS = np.dtype(
    [("item", "<i4"), ("score", "u1"), ("status", "u1"), ("progress", "u1"), ("entry", "u1")]
)


def entry_tokens(
    entries: EntryArrays,
    episodes: np.ndarray | None = None,
    *,
    margin: int = 1,
    chunk: int = 1 << 22,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Each entry's own tokens, as `encode` writes them: item + ITEM_OFFSET, score, status + 1 and
    progress bucket, and `entry` 1: one 8-byte `ENTRY_TOKENS` record per entry, with `margin`
    all-zero records before and after them. An all-zero record is exactly a padding token
    (PAD_ITEM, no score, status 0, progress unknown; `entry` 0).

    Training builds this once per dataset, so that a batch gathers one record per token instead of
    encoding four fields afresh. In chunks of `chunk` entries: the progress buckets go through
    float64 temporaries. With `out` (ENTRY_TOKENS, margin + n + margin long: a memory-mapped file
    being built, say), written there and returned, so that only a chunk is ever in memory.
    """
    n = len(entries.items)
    out = _table_out(out, n, margin, ENTRY_TOKENS)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        records = out[margin + lo : margin + hi]
        items = np.asarray(entries.items[lo:hi], dtype=np.int64)
        records["item"] = items + ITEM_OFFSET
        records["score"] = entries.scores[lo:hi]
        records["status"] = np.asarray(entries.statuses[lo:hi], dtype=np.int64) + 1
        records["entry"] = 1
        if episodes is not None:
            records["progress"] = progress_buckets(items, entries.progress[lo:hi], episodes)
    return out


def entry_times(
    times: np.ndarray, *, margin: int = 1, chunk: int = 1 << 22, out: np.ndarray | None = None
) -> np.ndarray:
    """float64: each time + TIME_SHIFT (exact: below 2^53), 0 for NO_TIME, with `margin` zeros
    (padding) before and after them, as `time_buckets_shifted` reads them (into `out`, as
    `entry_tokens`). Floats, so that a batch's time deltas are one subtraction, already in the
    form whose exponent is read."""
    n = len(times)
    out = _table_out(out, n, margin, np.dtype(np.float64))
    for lo in range(0, n, chunk):
        part = np.asarray(times[lo : lo + chunk], dtype=np.int64)
        out[margin + lo : margin + lo + len(part)] = np.where(part == NO_TIME, 0, part + TIME_SHIFT)
    return out


def _table_out(out: np.ndarray | None, n: int, margin: int, dtype: np.dtype) -> np.ndarray:
    """`entry_tokens`' and `entry_times`' output: a zeroed new table, or `out` checked and its
    margins zeroed."""
    if out is None:
        return np.zeros(margin + n + margin, dtype=dtype)
    if out.dtype != dtype or out.shape != (margin + n + margin,):
        raise ValueError(f"out is {out.dtype} {out.shape}, not {dtype} ({margin + n + margin},)")
    out[:margin] = 0
    out[margin + n :] = 0
    return out


def _time_bucket_table() -> np.ndarray:
    """int64 [4096]: the time token of a float64 delta = 1 + seconds before "now", indexed by its
    top 12 bits (sign and exponent), for `time_buckets_shifted`'s deltas."""
    bits = np.arange(4096)
    exponent, negative = bits & 2047, bits >= 2048
    table = np.minimum(exponent - (1023 - 2), 1 + N_TIME_LOG_BUCKETS)  # 2 + floor(log2(delta))
    table[negative | (exponent < 1023)] = 2  # delta <= 0: a time after "now" counts as 0 s before
    # |delta| >= 2^37 only where a time or "now" is unknown (int32 times differ by under 2^32).
    table[exponent >= 1023 + 37] = TIME_UNKNOWN
    return table


_TIME_BUCKETS = _time_bucket_table()


def time_buckets_shifted(out: np.ndarray, times: np.ndarray, now: np.ndarray) -> None:
    """`time_buckets` of each row of `times` [batch, width] before its own `now[row]`, written
    into the int64 array `out` (a view of any strides): the training batches' version.

    Times and "now" are `entry_times` (float64 seconds + TIME_SHIFT, 0 unknown), so an unknown one
    puts delta beyond 2^39 either way. floor(log2(1 + delta)) is the float64 exponent of 1 + delta
    (exact for integers below 2^53), read with the sign from the top 12 bits through a table: the
    result is `time_buckets`' to the bit.
    """
    now = np.asarray(now, dtype=np.float64)
    # Without "now", each delta is below -2^41 + 1, whether the entry's time is known or not.
    shifted_now = np.where(now == 0, -2.0 * TIME_SHIFT, now + 1.0)
    # delta = 1 + seconds before "now", exact. A row-wise copy then a flat subtraction: numpy
    # takes three times as long over a broadcast operand.
    delta = np.empty(np.shape(times), dtype=np.float64)
    np.copyto(delta, shifted_now[:, None])
    delta -= times
    top = delta.view(np.uint64)
    top >>= np.uint64(52)
    np.take(_TIME_BUCKETS, top.view(np.int64), out=out, mode="clip")


def _time_buckets_per_row(times: np.ndarray, now: np.ndarray) -> np.ndarray:
    """`time_buckets` with each entry's own "now" (NO_TIME: unknown), for whole seconds.

    floor(log2(1 + delta)) is read off the float64 exponent bits, exact for integers below 2^53,
    so it equals `time_buckets`' float logarithm; in place, since this runs once per token.
    """
    delta = now - times  # int64: `now` is
    np.maximum(delta, 0, out=delta)
    delta += 1
    out = delta.astype(np.float64).view(np.int64)
    out >>= 52
    out -= 1023 - 2  # 2 + the unbiased exponent
    np.minimum(out, 1 + N_TIME_LOG_BUCKETS, out=out)
    unknown = times == NO_TIME
    unknown |= now == NO_TIME
    out[unknown] = TIME_UNKNOWN
    return out


def encode_flat(
    entries: EntryArrays,
    lengths: np.ndarray,
    max_len: int,
    *,
    has_times: bool,
    episodes: np.ndarray | None = None,
    append_query: bool = False,
    use_times: bool = True,
) -> Encoded:
    """`encode` for histories laid end to end: row b is the next `lengths[b]` entries of `entries`.

    Equal to `encode` of the same histories (pinned by a test), but in whole-batch array operations
    instead of a Python loop per row. "Now" is each row's last entry time, as `encode` takes it by
    default. (Training batches no longer come through here: they gather `entry_tokens` records,
    see `training.batches`.)
    """
    if max_len < 1 + int(append_query):
        raise ValueError(f"max_len {max_len} leaves no room for a history")
    lengths = np.asarray(lengths, dtype=np.int64)
    keep = max_len - int(append_query)
    n = np.minimum(lengths, keep)
    out_lengths = n + 1 if append_query else n
    batch = len(lengths)
    width = max(int(out_lengths.max(initial=0)), 1)
    ends = np.cumsum(lengths)
    # Longer rows keep their most recent entries: the tail of each run.
    tail = None
    if batch and int(ends[-1]) > int(n.sum()):
        tail = np.arange(int(ends[-1])) >= np.repeat(ends - n, lengths)
    cols = np.arange(width)
    used = cols >= (width - out_lengths)[:, None]  # the right-aligned tokens, the query included
    # Row-major order of the entry cells is the order of the runs laid end to end, so one boolean
    # mask places every field without an index per entry.
    filled = used & (cols < width - 1) if append_query else used

    def take(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        return values if tail is None else values[tail]

    block = np.zeros((len(FIELDS), batch, width), dtype=np.int64)  # one allocation for all
    arrays = dict(zip(FIELDS, block, strict=True))
    items = take(entries.items)
    arrays["items"][filled] = np.add(items, ITEM_OFFSET, dtype=np.int64)
    arrays["scores"][filled] = take(entries.scores)
    arrays["statuses"][filled] = np.add(take(entries.statuses), 1, dtype=np.int64)
    if episodes is not None:  # else every progress is unknown: 0, as allocated
        arrays["progress"][filled] = progress_buckets(items, take(entries.progress), episodes)
    arrays["times"].fill(TIME_UNKNOWN)
    if has_times:
        if use_times and len(items):
            last = np.asarray(entries.times)[np.maximum(ends - 1, 0)].astype(np.int64)
            last[lengths == 0] = NO_TIME
            now = np.repeat(last, n)
            arrays["times"][filled] = _time_buckets_per_row(take(entries.times), now)
        np.multiply(used, width - 1 - cols, out=arrays["positions"])
    if append_query:
        arrays["items"][:, -1] = MASK_ITEM
        arrays["scores"][:, -1] = SCORE_MASK
        arrays["statuses"][:, -1] = STATUS_MASK
        arrays["times"][:, -1] = TIME_NOW
    return Encoded(**arrays, lengths=out_lengths)


def mask_tokens(
    encoded: Encoded,
    mask: np.ndarray,
    *,
    stamp_now: np.ndarray | None = None,
    in_place: bool = False,
) -> Encoded:
    """Hide the entries where `mask` is true: item, score and status become MASK, progress unknown.

    Time and position stay (when an entry was added is the context for guessing it), except where
    `stamp_now` is true: those tokens become the "now" query, exactly as fine-tuning appends it.
    `in_place` overwrites `encoded`'s arrays instead of copying them (a batch builder's own).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != encoded.items.shape:
        raise ValueError(f"mask shape {mask.shape} != batch shape {encoded.items.shape}")
    if (mask & (encoded.items == PAD_ITEM)).any():
        raise ValueError("padding cannot be masked")
    if in_place:
        np.putmask(encoded.items, mask, MASK_ITEM)
        np.putmask(encoded.scores, mask, SCORE_MASK)
        np.putmask(encoded.statuses, mask, STATUS_MASK)
        np.putmask(encoded.progress, mask, PROGRESS_UNKNOWN)
        if stamp_now is not None:
            np.putmask(encoded.times, np.asarray(stamp_now, dtype=bool) & mask, TIME_NOW)
        return encoded
    items = np.where(mask, MASK_ITEM, encoded.items)
    scores = np.where(mask, SCORE_MASK, encoded.scores)
    statuses = np.where(mask, STATUS_MASK, encoded.statuses)
    progress = np.where(mask, PROGRESS_UNKNOWN, encoded.progress)
    times = encoded.times
    if stamp_now is not None:
        times = np.where(np.asarray(stamp_now, dtype=bool) & mask, TIME_NOW, times)
    return encoded.replace(
        items=items, scores=scores, statuses=statuses, progress=progress, times=times
    )


def entries_from_list(
    entries: Sequence[ListEntry], item_index: Mapping[int, int]
) -> tuple[Entries, int]:
    """A normalized list -> arrays in model order (unknown times first, then by time, stable).

    Entries whose MAL id is not in the vocabulary `item_index` are left out; their count is returned.
    """
    known = [e for e in entries if e.mal_id in item_index]
    order = sorted(
        range(len(known)),
        key=lambda i: (known[i].updated_at is not None, known[i].updated_at or 0),
    )
    ordered = [known[i] for i in order]
    arrays = Entries(
        items=np.array([item_index[e.mal_id] for e in ordered], dtype=np.int32),
        scores=np.array([score_to_int(e.score) for e in ordered], dtype=np.int8),
        statuses=np.array([e.status_code for e in ordered], dtype=np.int8),
        progress=np.array([min(e.episodes_watched, 32767) for e in ordered], dtype=np.int16),
        # int64, not the int32 of training arrays: a real time after January 2038 must encode.
        times=np.array(
            [NO_TIME if e.updated_at is None else e.updated_at for e in ordered], dtype=np.int64
        ),
    )
    return arrays, len(entries) - len(known)


# ------------------------------------------------------------------------------ ranker features

RANKER_FEATURES: tuple[str, ...] = (
    "log_prob",  # fine-tuned watch log-probability (log-softmax over the unseen vocabulary)
    "log_rank",  # log(1 + rank) in the fine-tuned ranking
    "score",  # predicted score, centred: (score - 7) / 2
    "drop",  # predicted probability of dropping it
    "popularity",  # log(1 + list count), scaled to 0..1
    "same_franchise",  # shares a franchise with anything on the list
    "franchise_completed",  # shares a franchise with a completed entry (a sequel / side story)
    "plan_to_watch",  # already on the list as plan-to-watch
    "genre_affinity",  # cosine of its genres with the list's score-weighted genre profile
    "log_history",  # log(1 + list length)
    "neighbour_score",  # item-item (EASE) score: sum of its weights from the items on the list
    "neighbour_log_rank",  # log(1 + rank) in the item-item ranking
    "transition_score",  # log(1 + transition counts from the newest 3 entries, weighted 1, ½, ¼)
    "transition_log_rank",  # log(1 + rank) in the transition ranking
)
# The graded columns again, standardised over the list's own candidates: (x - mean) / std. A
# log-probability or a neighbour score means little alone (its scale moves with the list's length
# and how peaked the model is for it); where it stands among this list's candidates carries over
# from list to list, and an MLP that scores each candidate apart cannot work it out. A ranker
# reads them only with `ranker.list_relative` (docs/model.md#list-relative-features); one without
# reads the first N_ABSOLUTE_FEATURES columns.
LIST_RELATIVE = (
    "log_prob",
    "log_rank",
    "score",
    "drop",
    "popularity",
    "genre_affinity",
    "neighbour_score",
    "neighbour_log_rank",
    "transition_score",
    "transition_log_rank",
)
N_ABSOLUTE_FEATURES = len(RANKER_FEATURES)
RELATIVE_COLUMNS = np.array([RANKER_FEATURES.index(name) for name in LIST_RELATIVE])
RANKER_FEATURES = RANKER_FEATURES + tuple(f"{name}_in_list" for name in LIST_RELATIVE)
N_RANKER_FEATURES = len(RANKER_FEATURES)
_COMPLETED, _PLAN_TO_WATCH = 1, 4  # status codes (inference.animelist.STATUS_CODES)
TRANSITION_WEIGHTS = (1.0, 0.5, 0.25)  # newest entry, second newest, third (as the Markov baseline)
_FACT_ARRAYS = (
    "log_popularity",
    "franchise",
    "genres",
    "neighbour_items",
    "neighbour_weights",
    "transition_items",
    "transition_counts",
    "mean_score",
    "score_count",
)


def _no_neighbours() -> np.ndarray:
    return np.zeros((0, 0), dtype=np.int32)


def _no_scores() -> np.ndarray:
    return np.zeros(0, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class ItemFacts:
    """Per-item facts the ranker reads: vocabulary order, saved with the ranker.

    The item-item neighbours are a sparse EASE model (`training.neighbours`): row i holds the k items
    whose weights from i are largest in magnitude. A list's neighbour score for item j is the sum
    of the weights from the list's items to j. Zero columns: no neighbour features (scores all 0).
    Transitions are the same shape for time-ordered data only: row i holds the k items most often
    added right after i, with their counts (none for data without times, where order is arbitrary).
    """

    log_popularity: np.ndarray  # float32 [n_items], 0..1
    franchise: np.ndarray  # int64 [n_items], -1 unknown
    genres: np.ndarray  # float32 [n_items, n_genres] (0 columns without a catalogue)
    neighbour_items: np.ndarray = field(default_factory=_no_neighbours)  # int32 [n_items, k]
    neighbour_weights: np.ndarray = field(default_factory=_no_neighbours)  # float32 [n_items, k]
    transition_items: np.ndarray = field(default_factory=_no_neighbours)  # int32 [n_items, k]
    transition_counts: np.ndarray = field(default_factory=_no_neighbours)  # float32 [n_items, k]
    mean_score: np.ndarray = field(default_factory=_no_scores)  # float32 [n_items], 0 = unknown
    score_count: np.ndarray = field(default_factory=_no_scores)  # float32 [n_items]: times scored

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ItemFacts:
        """From `as_arrays()` output (a checkpoint's dict, an `.npz`); neighbours are optional."""
        present = {name: np.asarray(arrays[name]) for name in _FACT_ARRAYS if name in arrays}
        return cls(**present)

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in _FACT_ARRAYS}

    def transition_scores(self, seen: np.ndarray) -> np.ndarray:
        """float64 [n_items]: log(1 + transition counts from the newest entries of `seen` (oldest
        first), weighted as the first-order Markov baseline weights them)."""
        n_items = len(self.log_popularity)
        if self.transition_items.shape[1] == 0 or len(seen) == 0:
            return np.zeros(n_items, dtype=np.float64)
        newest = np.asarray(seen, dtype=np.int64)[::-1][: len(TRANSITION_WEIGHTS)]
        counts = self.transition_counts[newest].astype(np.float64)
        counts *= np.asarray(TRANSITION_WEIGHTS[: len(newest)])[:, None]
        return np.log1p(
            np.bincount(self.transition_items[newest].ravel(), counts.ravel(), minlength=n_items)
        )

    def neighbour_scores(self, seen: np.ndarray) -> np.ndarray:
        """float64 [n_items]: each item's item-item score from the items `seen`."""
        n_items = len(self.log_popularity)
        if self.neighbour_items.shape[1] == 0 or len(seen) == 0:
            return np.zeros(n_items, dtype=np.float64)
        rows = np.asarray(seen, dtype=np.int64)
        return np.bincount(
            self.neighbour_items[rows].ravel(),
            weights=self.neighbour_weights[rows].ravel().astype(np.float64),
            minlength=n_items,
        )


@dataclass(frozen=True, slots=True)
class Candidates:
    """The items the ranker scores for one list, with where each stands in both first-stage
    rankings (ranks count among the items not on the list, 0 = best)."""

    items: np.ndarray  # int64
    log_probs: np.ndarray  # fine-tuned watch log-probability over the unseen vocabulary
    ranks: np.ndarray
    neighbour_scores: np.ndarray
    neighbour_ranks: np.ndarray
    transition_scores: np.ndarray
    transition_ranks: np.ndarray


def _order_and_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items best first, and each item's place in that order (one sort for both)."""
    order = best_first(values)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return order, ranks


def _rank_among(sorted_desc: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The rank `values` would take among `sorted_desc` (ties: before the equal ones)."""
    return np.searchsorted(-sorted_desc, -values, side="left").astype(np.int64)


def select_candidates(
    history: EntryArrays,
    logits: np.ndarray,
    facts: ItemFacts,
    n_candidates: int,
    *,
    include_planned: bool = False,
) -> Candidates:
    """The ranker's candidates: the best `n_candidates` unseen items by watch logit, joined by the
    best `n_candidates` by neighbour score and by transition score (when the facts have them).

    Training and serving both call this. `include_planned` (serving) adds the list's plan-to-watch
    entries, which stay eligible: they get the log-probability and ranks they would have among the
    unseen. Training never offers them, since they are on the list.
    """
    seen = np.asarray(history.items, dtype=np.int64)
    masked = np.asarray(logits, dtype=np.float64).copy()
    masked[seen] = -np.inf
    unseen = np.isfinite(masked)
    n_unseen = int(unseen.sum())
    if n_unseen == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Candidates(empty, np.zeros(0), empty, np.zeros(0), empty, np.zeros(0), empty)
    finite = masked[unseen]
    top = finite.max()
    log_norm = top + np.log(np.exp(finite - top).sum())
    log_probs = masked - log_norm
    take = min(n_candidates, n_unseen)
    order, ranks = _order_and_ranks(masked)
    items = order[:take]
    near = facts.neighbour_scores(seen)
    after = facts.transition_scores(seen)
    stage_ranks = []
    for scores, present in (
        (near, facts.neighbour_items.shape[1] > 0),
        (after, facts.transition_items.shape[1] > 0),
    ):
        order, stage = _order_and_ranks(np.where(unseen, scores, -np.inf))
        stage_ranks.append(stage)
        if present:
            items = np.concatenate([items, order[:take][~np.isin(order[:take], items)]])
    near_ranks, after_ranks = stage_ranks
    if include_planned:
        planned = seen[np.asarray(history.statuses) == _PLAN_TO_WATCH]
        if len(planned):
            raw = np.asarray(logits, dtype=np.float64)[planned]
            log_probs[planned] = raw - log_norm
            ranks[planned] = _rank_among(np.sort(finite)[::-1], raw)
            near_ranks[planned] = _rank_among(np.sort(near[unseen])[::-1], near[planned])
            after_ranks[planned] = _rank_among(np.sort(after[unseen])[::-1], after[planned])
            items = np.concatenate([items, planned])
    return Candidates(
        items,
        log_probs[items],
        ranks[items],
        near[items],
        near_ranks[items],
        after[items],
        after_ranks[items],
    )


def ranker_features(
    history: EntryArrays,
    candidates: Candidates,
    scores: np.ndarray,
    drops: np.ndarray,
    facts: ItemFacts,
) -> np.ndarray:
    """float32 [len(candidates.items), N_RANKER_FEATURES]; `scores` and `drops` are the score
    head's outputs for those items."""
    items = candidates.items
    seen = np.asarray(history.items, dtype=np.int64)
    statuses = np.asarray(history.statuses, dtype=np.int64)
    out = np.zeros((len(items), N_RANKER_FEATURES), dtype=np.float32)
    out[:, 0] = candidates.log_probs
    out[:, 1] = np.log1p(candidates.ranks)
    out[:, 2] = (np.asarray(scores, dtype=np.float32) - 7.0) / 2.0
    out[:, 3] = drops
    out[:, 4] = facts.log_popularity[items]
    franchise = facts.franchise[items]
    listed = facts.franchise[seen]
    # (Lookup tables over the id range: a sort per call costs more, a request asks thrice.)
    out[:, 5] = (franchise >= 0) & np.isin(franchise, listed[listed >= 0], kind="table")
    done = listed[(statuses == _COMPLETED) & (listed >= 0)]
    out[:, 6] = (franchise >= 0) & np.isin(franchise, done, kind="table")
    out[:, 7] = np.isin(items, seen[statuses == _PLAN_TO_WATCH], kind="table")
    if facts.genres.shape[1] and len(seen):
        user_scores = np.asarray(history.scores, dtype=np.float32)
        weights = np.where(user_scores > 0, user_scores / 10.0, 0.5)
        profile = weights @ facts.genres[seen]
        candidate = facts.genres[items]
        norms = np.linalg.norm(candidate, axis=1) * (np.linalg.norm(profile) + 1e-9)
        out[:, 8] = (candidate @ profile) / np.maximum(norms, 1e-9)
    out[:, 9] = np.log1p(len(seen))
    out[:, 10] = candidates.neighbour_scores
    out[:, 11] = np.log1p(candidates.neighbour_ranks)
    out[:, 12] = candidates.transition_scores
    out[:, 13] = np.log1p(candidates.transition_ranks)
    return with_list_relative(out, candidate_statistics(out))


def candidate_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the `LIST_RELATIVE` columns over one list's candidates (rows of
    `features`, whose absolute columns are filled): what `with_list_relative` standardises by."""
    columns = features[:, RELATIVE_COLUMNS].astype(np.float64)
    if len(columns) == 0:
        return np.zeros(len(RELATIVE_COLUMNS)), np.ones(len(RELATIVE_COLUMNS))
    return columns.mean(axis=0), columns.std(axis=0)


def with_list_relative(
    features: np.ndarray, statistics: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """`features` with the list-relative columns filled from its absolute ones; a column that
    does not vary over the candidates (a lone candidate, no transitions) is 0."""
    mean, std = statistics
    values = features[:, RELATIVE_COLUMNS].astype(np.float64)
    spread = np.where(std > 1e-6, std, np.inf)
    features[:, N_ABSOLUTE_FEATURES:] = (values - mean) / spread
    return features


# ------------------------------------------------------------------------------- score features

SCORE_FEATURES = (
    "predicted",  # the encoder's score head, centred: (score - 7) / 2
    "list_mean",  # the list's mean score, centred; 0 when nothing is scored
    "list_scored",  # log(1 + scored entries)
    "item_mean",  # the item's mean score in the training data, centred; 0 when never scored
    "item_scored",  # log(1 + times it was scored in the training data)
    "neighbour_deviation",  # item-item weighted mean of (score - list mean) / 2 over scored entries
    "neighbour_support",  # log(1 + sum of |weights|) behind that mean
)
N_SCORE_FEATURES = len(SCORE_FEATURES)


def score_features(
    history: EntryArrays, items: np.ndarray, predicted: np.ndarray, facts: ItemFacts
) -> np.ndarray:
    """float32 [len(items), N_SCORE_FEATURES]: what the ranker's score head reads for each item
    (`predicted` is the encoder's score for it). The neighbour deviation is the item-kNN rating
    correction: how far above their own mean the user scored the items most related to this one."""
    items = np.asarray(items, dtype=np.int64)
    out = np.zeros((len(items), N_SCORE_FEATURES), dtype=np.float32)
    out[:, 0] = (np.asarray(predicted, dtype=np.float32) - 7.0) / 2.0
    user_scores = np.asarray(history.scores, dtype=np.float64)
    scored = user_scores > 0
    list_mean = float(user_scores[scored].mean()) if scored.any() else 7.0
    out[:, 1] = (list_mean - 7.0) / 2.0 if scored.any() else 0.0
    out[:, 2] = np.log1p(scored.sum())
    if len(facts.mean_score):
        known = facts.mean_score[items] > 0
        out[:, 3] = np.where(known, (facts.mean_score[items] - 7.0) / 2.0, 0.0)
        out[:, 4] = np.log1p(facts.score_count[items])
    if facts.neighbour_items.shape[1] and scored.any():
        rows = np.asarray(history.items, dtype=np.int64)[scored]
        deviation = (user_scores[scored] - list_mean) / 2.0
        weights = np.abs(facts.neighbour_weights[rows].astype(np.float64))
        columns = facts.neighbour_items[rows].ravel()
        n_items = len(facts.log_popularity)
        support = np.bincount(columns, weights.ravel(), minlength=n_items)
        total = np.bincount(columns, (weights * deviation[:, None]).ravel(), minlength=n_items)
        out[:, 5] = (total / np.maximum(support, 1e-6))[items]
        out[:, 6] = np.log1p(support[items])
    return out
