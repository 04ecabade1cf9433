"""CSR dataset -> training batches, through `inference.encoding` (the encoder serving uses too).

A batch is built in whole-batch array operations, with no Python loop per sample. Each
interaction's own tokens (item, score, status, progress: `encoding.entry_tokens`) are encoded once
per dataset into an 8-byte record, and its time into a second 8-byte table (a float64, so that
the time deltas of a batch are one subtraction); a batch gathers [batch, width] records,
right-aligned with zero records (exactly the padding `encode` writes) before them, and unpacks each
field in one pass. Timed data draws runs of consecutive training entries, copied as one slice per
sample through a sliding-window view; shuffled draws (`Drawn`, dataset rows laid end to end) gather
one record per token. Whatever depends on a row's length alone (padding cells, positions, the
next-entries queries) is a row of a shared table, and operations run over whole contiguous arrays:
numpy takes two to three times as long over part of each row or over a broadcast operand. The
token tables are files in the dataset's `cache/` folder, built once per dataset by the first
process that needs them (16 bytes per interaction on disk, 8 without times) and memory-mapped
read-only by every training process of the machine (DDP ranks, loader workers), which share their
pages in the page cache instead of each holding a copy (`_cached_table`; in memory, with a log
line, where no cache folder is writable).
`tests/training/rowwise_batches.py` keeps the row-by-row builders this replaced, through the
serving `encode`: the reference the tests compare every builder against, array by array, and the
benchmark's baseline.

Every random choice about a sample (its window, masked tokens, cut point, shuffled order) is a
counter-based hash of its own seed, drawn from (seed, epoch, step): a batch is a pure function of
those, so a resumed run rebuilds exactly the batches it skipped, and a rank building its slice of a
global batch draws exactly what a single process draws for the same samples.

Only the training part of the split (label TRAIN) ever reaches a batch; validation items are the
per-epoch check and test items the final evaluation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from inference.encoding import (
    ENTRY_TOKENS,
    FIELDS,
    ITEM_OFFSET,
    MASK_ITEM,
    PROGRESS_UNKNOWN,
    SCORE_MASK,
    STATUS_MASK,
    TIME_NOW,
    TIME_UNKNOWN,
    entry_times,
    entry_tokens,
    time_buckets_shifted,
)
from training.dataset import CACHE, TRAIN, VALIDATION, Dataset, History
from training.errors import TrainingError

Batch = dict[str, np.ndarray]
log = logging.getLogger(__name__)


class UserParts:
    """Each user's interactions of one split part (train, validation...), read lazily from memmaps."""

    def __init__(
        self, dataset: Dataset, split: str, *, cache: bool = True, with_validation: bool = False
    ) -> None:
        self.dataset = dataset
        self.cache = cache  # the token tables in shared files (`_cached_table`), else in memory
        self.labels = dataset.split(split)
        if with_validation:  # the test-time refit: validation entries are training entries too
            self.labels = np.where(self.labels == VALIDATION, TRAIN, self.labels).astype(
                self.labels.dtype
            )
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
        self._tokens: tuple[np.ndarray | None, str, np.ndarray] | None = None  # episodes, key
        self._times: np.ndarray | None = None
        self._margin = 0  # of both tables
        self._windows: dict[tuple[str, int], np.ndarray] = {}  # sliding-window views of them
        self._index: np.ndarray | None = None

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

    def tokens(self, episodes: np.ndarray | None, margin: int = 0) -> tuple[np.ndarray, int]:
        """Every interaction's own tokens (`encoding.entry_tokens`) between at least `margin` + 1
        padding records each side, and that margin: row r's record is at index margin + r, index
        0 padding. 8 bytes per interaction, for these `episodes`: a memory-mapped file of the
        dataset's `cache/` shared by every process (`_cached_table`), built by the first that asks;
        reopened, with a wider margin, if a batch asks for more."""
        self._widen(margin)
        held = self._tokens
        if held is None or held[0] is not episodes:
            key = _episodes_key(episodes)
            if held is None or held[1] != key:
                margin_now = self._margin

                def build(out: np.ndarray | None) -> np.ndarray:
                    return entry_tokens(self.columns, episodes, margin=margin_now, out=out)

                table = self._table(f"tokens-{key}", ENTRY_TOKENS, build)
                self._windows = {k: v for k, v in self._windows.items() if k[0] != "tokens"}
                held = (episodes, key, table)
            self._tokens = held = (episodes, held[1], held[2])
        return held[2], self._margin

    def times(self, margin: int) -> np.ndarray:
        """Every interaction's time as `encoding.entry_times`, laid out as `tokens` with the same
        margin (either call widens both): 8 bytes per interaction, a shared file as `tokens`."""
        self._widen(margin)
        if self._times is None:
            margin_now = self._margin

            def build(out: np.ndarray | None) -> np.ndarray:
                return entry_times(self.columns.times, margin=margin_now, out=out)

            self._times = self._table("times-f8", np.dtype(np.float64), build)
        return self._times

    def _widen(self, margin: int) -> None:
        """Make both tables' margin exceed `margin`: a power of two, at least 256, so that processes
        asking for different widths mostly share one file."""
        if self._margin <= margin:
            self._margin = max(256, 1 << int(margin).bit_length())
            self._tokens = self._times = None
            self._windows = {}

    def _table(
        self, name: str, dtype: np.dtype, build: Callable[[np.ndarray | None], np.ndarray]
    ) -> np.ndarray:
        """A table of the current margin: the shared cache file, or built in memory without one."""
        length = self.dataset.n_interactions + 2 * self._margin
        table = None
        if self.cache:
            table = _cached_table(self.dataset, f"{name}-m{self._margin}", dtype, length, build)
        return build(None) if table is None else table

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a spawned loader worker) without the tables: the worker reopens the files."""
        state = self.__dict__.copy()
        state.update(_tokens=None, _times=None, _windows={}, _columns=None)
        return state

    def run_cells(
        self,
        users: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        width: int,
        *,
        right: bool = True,
        margin: int = 0,
    ) -> np.ndarray:
        """[len(users), width] int64: entries starts[b] .. starts[b] + lengths[b] - 1 of user b's
        training part in row b, right- or left-aligned, as indices into a `tokens` table of this
        `margin` (index 0, padding, in every other cell)."""
        first, index = self._train_layout()
        lengths = np.asarray(lengths, dtype=np.int64)
        lo = (width - lengths) if right else np.zeros_like(lengths)
        cells = np.subtract(np.arange(width), lo[:, None])  # the entry in each cell
        outside = cells.view(np.uint64) >= lengths.astype(np.uint64)[:, None]  # < 0 or past
        cells += (first[np.asarray(users, dtype=np.int64)] + starts)[:, None]
        if index is not None:
            if self._index is None:
                self._index = np.concatenate([index, [0]])
            np.putmask(cells, outside, len(index))
            cells = np.take(self._index, cells, mode="clip")
        cells += margin
        np.putmask(cells, outside, 0)
        return cells

    def run_records(
        self,
        users: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        width: int,
        episodes: np.ndarray | None,
        *,
        right: bool = True,
        times: bool = False,
        pad: np.int64 | int = 0,
        padding: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The `tokens` records of `run_cells` ([batch, width] `ENTRY_TOKENS`, the record `pad`
        (as an int64 word; default zero) in padding), and with `times` their `times` (0 in
        padding). `padding`: `_padding(width, lengths, right=right)`, where the caller has it.

        Where every user's training part is one run of rows, each row is a slice of the tables:
        one copy per row through a sliding-window view, then one mask for the padding."""
        first, index = self._train_layout()
        table, margin = self.tokens(episodes, width)
        time_table = self.times(width) if times else None
        if index is not None:
            cells = self.run_cells(users, starts, lengths, width, right=right, margin=margin)
            records = np.take(table.view(np.int64), cells, mode="clip").view(ENTRY_TOKENS)
            if pad:
                np.copyto(records.view(np.int64), pad, where=_padding(width, lengths, right=right))
            if time_table is None:
                return records, None
            return records, np.take(time_table, cells, mode="clip")
        lengths = np.asarray(lengths, dtype=np.int64)
        begin = first[np.asarray(users, dtype=np.int64)] + starts + margin
        if right:
            begin -= width - lengths
        if padding is None:
            padding = _padding(width, lengths, right=right)
        words = self._window(table.view(np.int64), "tokens", width)[begin]
        np.copyto(words, pad, where=padding)
        if time_table is None:
            return words.view(ENTRY_TOKENS), None
        entry_times = self._window(time_table, "times", width)[begin]
        np.copyto(entry_times, 0, where=padding)
        return words.view(ENTRY_TOKENS), entry_times

    def _window(self, table: np.ndarray, name: str, width: int) -> np.ndarray:
        """A read-only [len - width + 1, width] sliding-window view of an 8-byte table."""
        view = self._windows.get((name, width))
        if view is None:
            view = np.lib.stride_tricks.as_strided(
                table, (len(table) - width + 1, width), (8, 8), writeable=False
            )
            self._windows[(name, width)] = view
        return view

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


# ------------------------------------------------------------------------ shared token tables
#
# `UserParts.tokens` and `times` are files in the dataset folder's `cache/`, named by what their
# content depends on, opened read-only as memory maps: every process on a machine (DDP ranks,
# loader workers) shares one copy in the page cache. The first process to ask builds a file in
# chunks into a temporary memory-mapped file and renames it into place, holding a lock on the name
# meanwhile so that the others wait for it instead of building their own. `training build` and
# `write_dataset` delete `cache/`; the dataset's identity in every name (`_dataset_identity`) keeps
# a dataset rewritten any other way from reading a stale table.

CACHE_DIR_ENV = "ANIMEREC_CACHE_DIR"  # where tables go when a dataset folder is not writable
_TABLE_ARRAYS = ("items", "scores", "statuses", "progress", "times", "offsets")
_reported: set[Path] = set()  # dataset folders whose cache fallback was logged


def _episodes_key(episodes: np.ndarray | None) -> str:
    if episodes is None:
        return "none"
    values = np.ascontiguousarray(episodes, dtype=np.int64)
    return hashlib.blake2b(values.tobytes(), digest_size=8).hexdigest()


def _dataset_identity(dataset: Dataset) -> str:
    """A hash of the size, modification time and inode of each array the tables are made from."""
    digest = hashlib.blake2b(digest_size=8)
    for name in _TABLE_ARRAYS:
        stat = (dataset.path / f"{name}.npy").stat()
        digest.update(f"{name} {stat.st_size} {stat.st_mtime_ns} {stat.st_ino};".encode())
    return digest.hexdigest()


def _cache_folders(dataset: Dataset) -> list[Path]:
    """The dataset's own `cache/`, then one under $ANIMEREC_CACHE_DIR (else the temp directory)."""
    root = Path(os.environ.get(CACHE_DIR_ENV) or Path(tempfile.gettempdir()) / "animerec-cache")
    where = hashlib.blake2b(str(dataset.path.resolve()).encode(), digest_size=8).hexdigest()
    return [dataset.path / CACHE, root / f"{dataset.path.name}-{where}"]


def _cached_table(
    dataset: Dataset,
    stem: str,
    dtype: np.dtype,
    length: int,
    build: Callable[[np.ndarray | None], np.ndarray],
) -> np.ndarray | None:
    """The table `stem` (`length` records of `dtype`) of this dataset as a read-only memory map,
    built by `build(out)` if no process has yet; None where no cache folder can be written."""
    identity = _dataset_identity(dataset)
    name = f"{stem}-{identity}.npy"
    failures = []
    for folder in _cache_folders(dataset):
        path = folder / name
        table = _open_table(path, dtype, length)
        if table is None:
            try:
                table = _build_table(path, dtype, length, build, identity)
            except OSError as exc:
                failures.append(f"{folder}: {exc.strerror or exc}")
                continue
        if failures and dataset.path not in _reported:
            _reported.add(dataset.path)
            log.warning("token tables cached in %s (%s)", folder, "; ".join(failures))
        return table
    if dataset.path not in _reported:
        _reported.add(dataset.path)
        log.warning(
            "token tables kept in memory, 16 bytes per interaction in each process (%s)",
            "; ".join(failures),
        )
    return None


def _open_table(path: Path, dtype: np.dtype, length: int) -> np.ndarray | None:
    """The finished table at `path` as a plain read-only array over its memory map, or None."""
    try:
        table = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if table.dtype != dtype or table.shape != (length,):
        return None
    return np.asarray(table)  # fancy indexing on an np.memmap costs Python-level wrapping


def _build_table(
    path: Path,
    dtype: np.dtype,
    length: int,
    build: Callable[[np.ndarray | None], np.ndarray],
    identity: str,
) -> np.ndarray:
    """Build the table at `path` (unless another process finished it while this one waited for
    the lock), atomically: a temporary file renamed into place. Raises OSError where the folder
    cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "ab") as lock:
        # (Without locks on this file system, every waiting process builds; the renames race.)
        with contextlib.suppress(OSError):
            fcntl.flock(lock, fcntl.LOCK_EX)
        table = _open_table(path, dtype, length)
        if table is not None:
            return table
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(length,))
            build(out)
            out.flush()
            del out
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        for stale in path.parent.glob("*.npy"):  # tables of an earlier dataset in this folder
            if not stale.stem.endswith(identity):
                stale.unlink(missing_ok=True)
    table = _open_table(path, dtype, length)
    if table is None:
        raise OSError(f"{path} unreadable after it was written")
    return table


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


def _padding(width: int, lengths: np.ndarray, *, right: bool = True) -> np.ndarray:
    """bool [batch, width]: the padding cells of rows of `lengths` entries, right- or
    left-aligned: rows of a shared table (a comparison over the batch costs three times as much)."""
    before = _before_table(max(256, 1 << int(width).bit_length()))  # few distinct tables
    return before[width - lengths, :width] if right else ~before[lengths, :width]


@cache
def _before_table(width: int) -> np.ndarray:
    """bool [width + 1, width]: row k is true in columns before k (the padding of a right-aligned
    row of width - k entries; its complement, that of a left-aligned row of k). Read-only,
    shared."""
    out = np.arange(width) < np.arange(width + 1)[:, None]
    out.flags.writeable = False
    return out


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


def _u64(value: int) -> np.ndarray:
    """A 0-d uint64 array: as an operand, a ufunc converts it in half the time of a numpy scalar,
    which counts on the 128-element arrays of per-sample draws (a few dozen calls a batch)."""
    return np.array(value & _MASK64, dtype=np.uint64)


_GOLDEN_U = _u64(_GOLDEN)
_MIX_A, _MIX_B = _u64(0xBF58476D1CE4E5B9), _u64(0x94D049BB133111EB)
_SHIFT_A, _SHIFT_B, _SHIFT_C, _SHIFT_UNIFORM = _u64(30), _u64(27), _u64(31), _u64(11)


def _mix(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser, in place (uint64 arithmetic wraps, as the algorithm wants)."""
    shifted = np.right_shift(x, _SHIFT_A)  # one scratch array for the three shifts
    x ^= shifted
    x *= _MIX_A
    np.right_shift(x, _SHIFT_B, out=shifted)
    x ^= shifted
    x *= _MIX_B
    np.right_shift(x, _SHIFT_C, out=shifted)
    x ^= shifted
    return x


def _stream(seeds: np.ndarray, stream: int) -> np.ndarray:
    """One uint64 state per sample for one kind of draw (windows, masks...): the hash of
    seed + stream * GOLDEN."""
    return _mix(np.asarray(seeds, dtype=np.uint64) + _u64(stream * _GOLDEN))


def _bits(states: np.ndarray, counters: np.ndarray | None = None) -> np.ndarray:
    """uint64 draw number `counters` (default 0) of each state; `states` already per element."""
    if counters is None:
        return _mix(states + _GOLDEN_U)
    x = counters.astype(np.uint64)  # a copy, worked on in place: this runs once per token
    x += np.uint64(1)
    x *= _GOLDEN_U
    x += states
    return _mix(x)


def _uniform(bits: np.ndarray) -> np.ndarray:
    """Floats in [0, 1) from the top 53 bits."""
    return (bits >> _SHIFT_UNIFORM).astype(np.float64) * 2.0**-53


def _below(bits: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Integers in [0, n) (n >= 1) from uniform draws."""
    n = np.asarray(n, dtype=np.int64)
    return np.minimum((_uniform(bits) * n).astype(np.int64), n - 1)


def _uniform_below(bits: np.ndarray, p: float) -> np.ndarray:
    """bool: `_uniform(bits)` < p, in one comparison instead of four operations over the samples:
    _uniform is (bits >> 11) * 2^-53, exact, so it is below p where bits >> 11 < C = ceil(p 2^53),
    that is bits <= C 2^11 - 1 (every bits where p >= 1)."""
    if p <= 0:
        return np.zeros(np.shape(bits), dtype=bool)
    c = min(math.ceil(math.ldexp(p, 53)), 1 << 53)
    return np.less_equal(bits, _u64((c << 11) - 1))


def _mix_int(x: int) -> int:
    """`_mix` of one Python int: for the rare single draws, where a dozen numpy calls on an array
    of one element cost more than the arithmetic."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _below_int(seed: int, stream: int, n: int) -> int:
    """`_below(_bits(_stream(seed, stream)), n)` of one sample, in Python ints and floats (the same
    IEEE operations: a float64 product, truncated)."""
    bits = _mix_int((_mix_int((seed + stream * _GOLDEN) & _MASK64) + _GOLDEN) & _MASK64)
    return min(int((bits >> 11) * 2.0**-53 * n), n - 1)


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
    within = full.within
    keys = _bits(_stream(seeds, _ORDER)[row_of], within) >> np.uint64(24)  # 40 random bits
    # Sample first (each run stays together), then its 40 random bits, ties by the place in the
    # run. Where the sample and the place fit in the 24 spare bits, all three are one key, sorted
    # by value (about half the time of an index sort) and read back: the same order.
    row_bits = int(len(n) - 1).bit_length()
    within_bits = int(max(int(n.max(initial=0)) - 1, 0)).bit_length()
    if row_bits + within_bits <= 24:
        shift = np.uint64(within_bits)
        packed = keys << shift
        packed |= within.astype(np.uint64)
        packed |= row_of.astype(np.uint64) << np.uint64(40 + within_bits)
        packed.sort()
        sample = (packed >> np.uint64(40 + within_bits)).astype(np.int64)
        place = (packed & np.uint64((1 << within_bits) - 1)).astype(np.int64)
        order = full.starts[sample] + place
    else:  # a stable index sort keeps ties in place order
        order = np.argsort(keys | (row_of.astype(np.uint64) << np.uint64(40)), kind="stable")
    return Drawn(full.rows[order], n)


def _window_runs(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    length: int,
    bits: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Where each user's random run of `length` consecutive training entries starts, and its length
    (all of them if fewer): `draw_windows` without shuffling, as runs. `bits`: the samples' draw
    of the _WINDOW stream, where the caller drew it along with others."""
    n = parts.counts[TRAIN][users]
    take = np.minimum(n, length)
    if bits is None:
        bits = _bits(_stream(seeds, _WINDOW))
    ends = take + _below(bits, n - take + 1)
    return ends - take, take


def draw_windows(
    parts: UserParts, users: np.ndarray, seeds: np.ndarray, length: int, *, shuffle: bool
) -> Drawn:
    """A random run of `length` consecutive training entries per user (all of them if fewer).

    With `shuffle` (data without times, where the row order is arbitrary and nothing must be learnt
    from it), a random `length` of them in a random order instead.
    """
    users = np.asarray(users, dtype=np.int64)
    if shuffle:
        n = parts.counts[TRAIN][users]
        return _shuffled(parts, users, seeds).first(np.minimum(n, length))
    starts, take = _window_runs(parts, users, seeds, length)
    return _train_runs(parts, users, starts, take)


# ----------------------------------------------------------------------------- token records
#
# A batch is laid out as [batch, width] token records (`UserParts.tokens`), an all-zero record
# (which encodes to exactly the padding `encode` writes) where a row has no entry. Timed data
# draws runs of consecutive training entries, copied as slices (`UserParts.run_records`);
# shuffled draws gather their flat rows (`_flat_records`). Each field is then one strided copy.


def _flat_records(
    parts: UserParts,
    drawn: Drawn,
    width: int,
    episodes: np.ndarray | None,
    *,
    right: bool = True,
    times: bool = False,
    query: bool = False,
    pad: np.int64 | int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`run_records` for drawn rows in any order: row b holds sample b's entries in drawn order
    (with `query`, ending one column early: the last is left for the query), the record `pad`
    in padding."""
    table, margin = parts.tokens(episodes, width)
    time_table = parts.times(width) if times else None
    cols = np.arange(width)
    lo = width - int(query) - drawn.lengths if right else np.zeros_like(drawn.lengths)
    used = (cols >= lo[:, None]) & (cols < (lo + drawn.lengths)[:, None])
    cells = np.zeros((len(drawn.lengths), width), dtype=np.int64)
    cells[used] = drawn.rows + margin  # row-major order of the cells is the drawn order
    records = np.take(table.view(np.int64), cells, mode="clip").view(ENTRY_TOKENS)
    if pad:
        np.copyto(records.view(np.int64), pad, where=~used)
    return records, None if time_table is None else np.take(time_table, cells, mode="clip")


def _encode_records(
    parts: UserParts,
    records: np.ndarray,
    entry_times: np.ndarray | None,
    lengths: np.ndarray,
    *,
    query: bool = False,
    use_times: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """[6 fields (FIELDS order), batch, width] int64: right-aligned rows of token `records`
    ([batch, width], lengths[b] entries in row b) encoded as `encoding.encode` encodes them (with
    their `entry_times`, None where times are not used), "now" the time of each row's last entry.
    With `query`, the last column is the MASK query stamped "now" instead, whatever record it
    holds, and the entries end one column before it. Written into out[:, :, :width] if given."""
    batch, width = records.shape
    block = np.empty((len(FIELDS), batch, width), dtype=np.int64) if out is None else out
    items, scores, statuses, times, progress, positions = block[:, :, :width]
    _copy_items(records, items)
    np.copyto(scores, records["score"])
    np.copyto(statuses, records["status"])
    np.copyto(progress, records["progress"])
    if parts.has_times and use_times and width > int(query):
        assert entry_times is not None
        time_buckets_shifted(times, entry_times, entry_times[:, width - 1 - int(query)])
    else:
        times.fill(TIME_UNKNOWN)
    if parts.has_times:  # counted back from the last column, 0 in padding
        first = width - int(query) - np.asarray(lengths, dtype=np.int64)  # first entry's column
        table = _positions_table(width)
        if positions.flags.c_contiguous:
            np.take(table, first, axis=0, out=positions, mode="clip")
        else:  # (np.take would copy the result through a buffer)
            positions[...] = table[first]
    else:
        positions.fill(0)
    if query:
        items[:, -1] = MASK_ITEM
        scores[:, -1] = SCORE_MASK
        statuses[:, -1] = STATUS_MASK
        times[:, -1] = TIME_NOW
        progress[:, -1] = PROGRESS_UNKNOWN
        positions[:, -1] = 0
    return block


@lru_cache(maxsize=8)
def _positions_table(width: int) -> np.ndarray:
    """int64 [width + 1, width]: row k holds the positions of a right-aligned row whose first
    entry is in column k (width - 1 - column from there on, 0 before). Read-only, shared: a batch
    gathers its rows rather than multiplying each record's `entry` by its column (three times as
    long: a broadcast over mixed types)."""
    cols = np.arange(width)
    out = np.where(cols >= np.arange(width + 1)[:, None], width - 1 - cols, 0).astype(np.int64)
    out.flags.writeable = False
    return out


def _mask_word() -> np.int64:
    """The first 8 bytes of a hidden entry's record: MASK item, score and status, progress unknown."""
    record = np.zeros(1, dtype=ENTRY_TOKENS)
    record["item"], record["score"], record["status"] = MASK_ITEM, SCORE_MASK, STATUS_MASK
    record["progress"], record["entry"] = PROGRESS_UNKNOWN, 1
    return record.view(np.int64)[0]


_MASK_WORD = _mask_word()


def _no_target_word() -> np.int64:
    """The first 8 bytes of a record whose `_targets` are those of no target: item -1, no score,
    status -1."""
    record = np.zeros(1, dtype=ENTRY_TOKENS)
    record["item"] = ITEM_OFFSET - 1
    return record.view(np.int64)[0]


_NO_TARGET = _no_target_word()


def _item_word_mask() -> int | None:
    """The int64 mask that keeps a record's item when the record is read as one int64 word: its
    low 32 bits on little-endian machines (None elsewhere)."""
    probe = np.zeros(1, dtype=ENTRY_TOKENS)
    probe["item"], probe["score"] = 0x12345678, 0x9A
    return 0xFFFFFFFF if int(probe.view(np.int64)[0]) == 0x9A_12345678 else None


_ITEM_WORD_MASK = _item_word_mask()


def _copy_items(records: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The records' items as int64, into `out` if given. Where each record is a whole int64 word
    (a row-major [batch, width] array), the item is one AND away: twice as fast as copying a
    field, which numpy converts element by element. (Record items are never negative.)"""
    words = records.view(np.int64)
    if _ITEM_WORD_MASK is not None and words.flags.c_contiguous:
        return np.bitwise_and(words, _ITEM_WORD_MASK, out=out)
    if out is None:
        return records["item"].astype(np.int64)
    np.copyto(out, records["item"])
    return out


def _targets(records: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw items, scores and statuses of token `records` as int64; where no target, the
    records are `_NO_TARGET` (-1, 0, -1). A copy, then an operation over the contiguous result:
    numpy takes twice as long to convert and compute in one pass."""
    items = _copy_items(records)
    items -= ITEM_OFFSET
    scores = records["score"].astype(np.int64)
    statuses = records["status"].astype(np.int64)
    statuses -= 1
    return items, scores, statuses


def _first_items(parts: UserParts, users: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The items of the first counts[b] training entries of each user b, laid end to end (int64)."""
    first, index = parts._train_layout()
    rows = _runs(first[users], np.asarray(counts, dtype=np.int64))
    if index is not None:
        rows = index[rows]
    return np.take(parts.columns.items, rows).astype(np.int64)


def _row_of_each(counts: np.ndarray) -> np.ndarray:
    """int64: b repeated counts[b] times, for b = 0..len(counts) - 1."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _width(lengths: np.ndarray) -> int:
    # (`max` without `initial`: half the time on a batch's lengths)
    return max(int(lengths.max()), 1) if len(lengths) else 1


# -------------------------------------------------------------------------------------- batches


# `_stream`'s offsets of the window's, query's and mask's streams, for one call for the three.
_PRETRAIN_OFFSETS = np.array([[_WINDOW], [_QUERY], [_MASK]], dtype=np.uint64) * _GOLDEN_U


@dataclass(frozen=True)
class _PretrainDraws:
    lengths: np.ndarray  # entries per sample, right-aligned in `width` columns
    width: int
    starts: np.ndarray | None  # timed data: each sample's run of training entries
    drawn: Drawn | None  # data without times: each sample's shuffled entries
    padding: np.ndarray  # bool [batch, width]: `_padding(width, lengths)`
    chosen: np.ndarray  # bool [batch, width]: the hidden cells
    hidden: np.ndarray  # their flat indices, in row-major order
    rows: np.ndarray  # and their rows
    query: np.ndarray  # bool per sample: its last entry hidden as the "now" query


def _pretrain_draws(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    *,
    max_len: int,
    mask_prob: float,
    query_prob: float,
) -> _PretrainDraws:
    """Pretraining's windows and hidden entries.

    Each entry is hidden with probability mask_prob (to 2^-16), from 16 random bits: the entry r
    places before the newest of its row takes bits 16 (3 - r mod 4) .. 16 (3 - r mod 4) + 15 of
    hash r div 4 of the row's _MASK stream (`_bits`, counter r div 4). Four entries per hash make
    the mask a quarter of the arithmetic of a hash per entry. Counting from the newest entry (each
    row's last column), with the hashes in descending order, lays the draws out as the cells
    whatever the batch's width: one view of the hashes, as 16-bit numbers, is the [batch, width]
    grid (after the 0-3 draws past the oldest cell). With probability query_prob (timed data), a
    row hides its last entry as the "now" query.
    """
    seeds = np.asarray(seeds, dtype=np.uint64)
    # The window's, query's and mask's streams in one call (a dozen array operations each).
    states = _mix(seeds[None, :] + _PRETRAIN_OFFSETS)
    batch = len(seeds)
    # Then their draws in one call too: the window's and the query's draw 0 in columns 0 and 1,
    # and the mask's hashes for max_len cells behind them (those of the batch's width are the
    # last ones, as the draws count from the newest cell). Hash j of row b, in column
    # 2 + n_hashes - 1 - j, is that of (j + 1) * GOLDEN + state_b: each row's state, then each
    # column's counter (a row-wise copy and a flat addition: numpy takes three times as long over
    # a broadcast operand).
    n_hashes = (max(max_len, 1) + 3) // 4
    hashes = np.empty((batch, 2 + n_hashes), dtype=np.uint64)
    np.copyto(hashes[:, :2], states[:2].T)
    np.copyto(hashes[:, 2:], states[2][:, None])
    hashes += _hash_counters(batch, n_hashes)
    _mix(hashes)
    window_bits, query_bits = hashes[:, 0], hashes[:, 1]
    starts: np.ndarray | None = None
    drawn: Drawn | None = None
    if parts.has_times:
        starts, n = _window_runs(parts, users, seeds, max_len, window_bits)
    else:
        drawn = draw_windows(parts, users, seeds, max_len, shuffle=True)
        n = drawn.lengths
    width = _width(n)
    # Little-endian 16-bit numbers: draw r in column 4 (2 + n_hashes) - 1 - r (on any machine).
    draws = hashes.astype("<u8", copy=False).view("<u2")
    chosen = draws[:, 4 * (2 + n_hashes) - width :] < _threshold16(mask_prob)
    padding = _padding(width, n)
    np.greater(chosen, padding, out=chosen)  # chosen and not padding, in one operation
    if parts.has_times:
        query = _uniform_below(query_bits, query_prob) & (n > 0)
    else:
        query = np.zeros(batch, dtype=bool)
    chosen[query, width - 1] = True
    hidden = chosen.ravel().nonzero()[0]  # (np.flatnonzero, without its Python wrapper)
    rows = hidden // width
    # At least one hidden entry per sample (rarely needed: the draw waits for it). The rows are
    # sorted: a sample with entries and none hidden shows as one distinct row too few.
    if np.count_nonzero(rows[1:] != rows[:-1]) + (len(rows) > 0) < np.count_nonzero(n):
        # Usually one or two samples: their draws in Python ints (a dozen numpy calls on arrays of
        # one element cost more), their cells inserted into the sorted `hidden` (another nonzero
        # over the grid costs more than the insertion).
        none = np.flatnonzero((np.bincount(rows, minlength=batch) == 0) & (n > 0)).tolist()
        lengths = n.tolist()
        picks = [
            b * width + width - lengths[b] + _below_int(int(seeds[b]), _PICK, lengths[b])
            for b in none
        ]
        chosen.ravel()[picks] = True
        hidden = np.insert(hidden, np.searchsorted(hidden, picks), picks)
        rows = hidden // width
    return _PretrainDraws(n, width, starts, drawn, padding, chosen, hidden, rows, query)


@lru_cache(maxsize=4)
def _hash_counters(batch: int, width: int) -> np.ndarray:
    """uint64 [batch, 2 + width]: GOLDEN in columns 0 and 1 (draw 0 of `_bits`), then
    (j + 1) * GOLDEN in column 2 + width - 1 - j (wrapping), in every row: the counters of draws
    width - 1 .. 0. Read-only, shared."""
    out = np.empty((batch, 2 + width), dtype=np.uint64)
    np.copyto(out[:, :2], _GOLDEN_U)
    np.copyto(out[:, 2:], np.arange(width, 0, -1, dtype=np.uint64) * _GOLDEN_U)
    out.flags.writeable = False
    return out


def _threshold16(p: float) -> np.uint16:
    """16-bit draws below this are true with probability p (to 2^-16; p >= 1 as near 1 as
    that)."""
    return np.uint16(min(max(int(p * 2**16), 0), 2**16 - 1))


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
    users = np.asarray(users, dtype=np.int64)
    d = _pretrain_draws(
        parts, users, seeds, max_len=max_len, mask_prob=mask_prob, query_prob=query_prob
    )
    drawn = d.drawn
    if drawn is None:
        assert d.starts is not None
        drawn = _train_runs(parts, users, d.starts, d.lengths)
    used = ~d.padding
    return drawn, d.chosen[used], d.query


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
    users = np.asarray(users, dtype=np.int64)
    d = _pretrain_draws(
        parts, users, seeds, max_len=max_len, mask_prob=mask_prob, query_prob=query_prob
    )
    width = d.width
    if d.drawn is None:
        assert d.starts is not None
        records, times = parts.run_records(
            users, d.starts, d.lengths, width, episodes, times=parts.has_times, padding=d.padding
        )
    else:
        records, times = _flat_records(parts, d.drawn, width, episodes, times=parts.has_times)
    words = records.view(np.int64)
    # The hidden tokens in row-major order (np.nonzero's), read before they are hidden.
    target_items, target_scores, target_statuses = _targets(
        np.take(words, d.hidden).view(ENTRY_TOKENS)
    )
    # Hiding keeps the time (and the position); the rest of the record becomes the MASK token.
    words.reshape(-1)[d.hidden] = _MASK_WORD  # (a masked copy mispredicts on a random mask)
    block = _encode_records(parts, records, times, d.lengths)
    block[3][d.query, width - 1] = TIME_NOW  # hidden, by `_pretrain_draws`
    return {
        **dict(zip(FIELDS, block, strict=True)),
        "target_rows": d.rows,
        "target_cols": d.hidden - d.rows * width,
        "target_items": target_items,
        "target_scores": target_scores,
        "target_statuses": target_statuses,
    }


def _cuts(parts: UserParts, users: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Timed fine-tuning's cut per sample (1..n-1: history before it) and training entry count."""
    n = parts.counts[TRAIN][users]
    return 1 + _below(_bits(_stream(seeds, _CUT)), np.maximum(n - 1, 1)), n


def finetune_draw(
    parts: UserParts, users: np.ndarray, seeds: np.ndarray, *, holdout_share: float, n_next: int
) -> tuple[Drawn, Drawn]:
    """Fine-tuning's draws: each sample's whole history (in encoding order) and its targets."""
    users = np.asarray(users, dtype=np.int64)
    if parts.has_times:
        cut, n = _cuts(parts, users, seeds)
        history = _train_runs(parts, users, np.zeros(len(users), dtype=np.int64), cut)
        target = _train_runs(parts, users, cut, np.minimum(n, cut + n_next) - cut)
        return history, target
    n = parts.counts[TRAIN][users]
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
    targets and the rest, shuffled, the history. Users need >= 2 training entries. `seen_items`
    (flat, sample `seen_rows`) are the whole history's items, which the loss keeps out of the
    softmax.
    """
    if max_len < 2:
        raise ValueError(f"max_len {max_len} leaves no room for a history")
    users = np.asarray(users, dtype=np.int64)
    # Only the newest max_len - 1 history entries are encoded; `seen_items` holds them all, laid
    # end to end (sample `seen_rows`): a padded [batch, longest history] array would be mostly
    # padding, as one long list sets the width of all.
    if parts.has_times:
        cut, n = _cuts(parts, users, seeds)
        kept = np.minimum(cut, max_len - 1)
        n_targets = np.minimum(n, cut + n_next) - cut
        # The newest `kept` entries before the cut and, in the query's column, the entry at it.
        records, times = parts.run_records(
            users, cut - kept, kept + 1, _width(kept + 1), episodes, times=True
        )
        if (n_targets == 1).all():  # n_next = 1: the entry at the cut, in the last column
            target = records[:, -1:]
        else:
            target, _ = parts.run_records(
                users, cut, n_targets, _width(n_targets), episodes, right=False, pad=_NO_TARGET
            )
        seen = _first_items(parts, users, cut)
        seen_rows = _row_of_each(cut)
    else:
        history, drawn = finetune_draw(
            parts, users, seeds, holdout_share=holdout_share, n_next=n_next
        )
        newest = history.last(np.minimum(history.lengths, max_len - 1))
        records, times = _flat_records(
            parts, newest, _width(newest.lengths + 1), episodes, query=True
        )
        target, _ = _flat_records(
            parts, drawn, _width(drawn.lengths), episodes, right=False, pad=_NO_TARGET
        )
        kept = newest.lengths
        seen = np.take(parts.columns.items, history.rows).astype(np.int64)
        seen_rows = _row_of_each(history.lengths)
    block = _encode_records(parts, records, times, kept, query=True)
    target_items, target_scores, target_statuses = _targets(target)
    return {
        **dict(zip(FIELDS, block, strict=True)),
        "target_items": target_items,
        "target_scores": target_scores,
        "target_statuses": target_statuses,
        "seen_rows": seen_rows,
        "seen_items": seen,
    }


def next_entries_batch(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    *,
    max_len: int,
    use_times: bool,
    episodes: np.ndarray | None = None,
    queries: bool = True,
) -> Batch:
    """ "What next?" after every prefix of a window, in one pass (timed data only).

    A window of up to `max_len` consecutive entries e_0..e_n is encoded exactly as serving encodes
    e_0..e_{n-1} followed by the MASK query stamped "now" (which predicts e_n). Behind that row
    come one more query token per earlier entry e_k (k = 1..n-1), each allowed to see only
    e_0..e_{k-1} (`query_sees`, used by the causal model) and placed at e_k's position. Every
    entry of the window is thus a target, as in SASRec, while each question keeps the serving
    form. Targets: `target_items` (-1 where none), with their scores and statuses.

    `queries=False` (models with the "entry" readout) asks each entry e_k itself for e_{k+1}:
    no query tokens behind the row and no `query_sees`; the targets sit in the entries' columns
    (none in the MASK column, which no entry sees and which keeps the positions of serving).
    """
    if max_len < 2:
        raise ValueError(f"max_len {max_len} leaves no room for a history")
    users = np.asarray(users, dtype=np.int64)
    starts, lengths = _window_runs(parts, users, seeds, max_len)
    if (lengths < 1).any():
        raise TrainingError("next-entries batches need users with training entries")
    n = lengths - 1  # e_0..e_{n-1} are encoded
    width = _width(n + 1)
    batch = len(users)
    extra = max(width - 2, 1)  # queries for e_1..e_{n-1}: at most width - 2 of them
    total = width + extra if queries else width
    # Every token of a row as a record, so that each field is then encoded in one pass over whole
    # rows (numpy takes two to three times as long over part of each row): the window e_0..e_n
    # right-aligned in the first `width` columns, the MASK record in the last of them (e_n's, which
    # the query takes), then a MASK record per query for e_k (k = 1..n-1), then padding.
    window, times = parts.run_records(users, starts, lengths, width, episodes, times=use_times)
    template = _query_template(width, parts.has_times)
    # (`width` words before the rows, for the targets' copy below.)
    buffer = np.empty(width + batch * total, dtype=np.int64)
    row_words = buffer[width:].reshape(batch, total)
    if queries:  # each row's queries as one copy of a whole row of the template (no temporary)
        np.take(template["words"], n, axis=0, out=row_words, mode="clip")
    row_words[:, :width] = window.view(np.int64)
    row_words[:, width - 1] = _MASK_WORD
    records = row_words.view(ENTRY_TOKENS)
    block = np.empty((len(FIELDS), batch, total), dtype=np.int64)  # one allocation for all
    items, scores, statuses, times_out, progress, positions = block
    _copy_items(records, items)
    np.copyto(scores, records["score"])
    np.copyto(statuses, records["status"])
    np.copyto(progress, records["progress"])  # unknown in every query, as in the padding
    # Entry e_k (k = 1..n-1) -> a query in column width + k - 1 at e_k's position (n - k, counted
    # back from the last column) that sees columns up to e_{k-1}'s (e_0 sits in column
    # width - 1 - n). Positions and what each token sees depend on n alone: each row is a copy of
    # its n's row of a template.
    np.take(template["positions"][:, :total], n, axis=0, out=positions, mode="clip")
    # Times: the entries' before "now" (the time of e_{n-1}), then "now" from the first query on.
    if parts.has_times and use_times and width > 1:
        assert times is not None
        times_out[:, width - 1 :] = TIME_NOW
        time_buckets_shifted(times_out[:, : width - 1], times[:, : width - 1], times[:, width - 2])
    else:
        np.copyto(times_out, template["times"][:, :total])
    if not queries:
        # e_{k+1} behind e_k: the window shifted one column left, none in the padding and the
        # MASK column.
        target_words = np.full((batch, width), _NO_TARGET, dtype=np.int64)
        target_words[:, :-1] = window.view(np.int64)[:, 1:]
        np.copyto(target_words, _NO_TARGET, where=_padding(width, n + 1))
        target_words[:, -1] = _NO_TARGET
        target_items, target_scores, target_statuses = _targets(target_words.view(ENTRY_TOKENS))
        return {
            **dict(zip(FIELDS, block, strict=True)),
            "target_items": target_items,
            "target_scores": target_scores,
            "target_statuses": target_statuses,
        }
    query_sees = np.take(template["query_sees"], n, axis=0, mode="clip")
    # Targets, as records too: e_n behind the first query, e_1..e_{n-1} behind the others, and
    # elsewhere the record whose fields are those of no target. Behind the query for e_k is e_k's
    # record shifted n columns right: each row of them is one slice of the rows' words laid end to
    # end (a copy per row through a sliding-window view, from memory just written).
    # (`np.ndarray` over the buffer: a quarter of the time of `as_strided`, which builds the view
    # through Python-level wrappers; only read, by the fancy index.)
    shifted = np.ndarray((len(buffer) - total + 1, total), np.int64, buffer, 0, (8, 8))
    target_words = shifted[np.arange(width, width + batch * total, total) - n]
    np.copyto(target_words, _NO_TARGET, where=template["no_target"][n])
    target_words[:, width - 1] = window.view(np.int64)[:, width - 1]
    target_items, target_scores, target_statuses = _targets(target_words.view(ENTRY_TOKENS))
    return {
        **dict(zip(FIELDS, block, strict=True)),
        "query_sees": query_sees,
        "target_items": target_items,
        "target_scores": target_scores,
        "target_statuses": target_statuses,
    }


@lru_cache(maxsize=4)
def _query_template(width: int, has_times: bool) -> dict[str, np.ndarray]:
    """`next_entries_batch`'s rows for n = 0..width - 1 encoded entries, as functions of n alone:
    over the whole row ([width, total]) "words", the records of the queries behind the first
    (zero before column width), "positions", "query_sees", "times" (without entry times)
    and "no_target" (bool: no query for an earlier entry). Read-only, shared."""
    extra = max(width - 2, 1)
    total = width + extra
    n = np.arange(width)[:, None]
    cols = np.arange(total)
    k = cols - width + 1  # the query for e_k in column width + k - 1
    query = (k >= 1) & (k < n)  # a query for e_k, k = 1..n-1
    entry = (cols < width) & (cols >= width - 1 - n)  # e_0..e_{n-1}, and the first query (0)
    out = {
        "words": np.where(query, _MASK_WORD, 0),
        "positions": np.where(entry, width - 1 - cols, np.where(query, n - k, 0)),
        "query_sees": np.where(
            query, width - 2 - n + k, np.where(cols == width - 1, width - 2, -1)
        ),
        "times": np.where(cols >= width - 1, TIME_NOW, TIME_UNKNOWN)[None, :],
    }
    if not has_times:
        out["positions"] = np.zeros_like(out["positions"])
    for name, array in out.items():
        out[name] = np.ascontiguousarray(array, dtype=np.int64)
    out["no_target"] = ~query
    for array in out.values():
        array.flags.writeable = False
    return out


def sasrec_batch(parts: UserParts, users: np.ndarray, seeds: np.ndarray, *, max_len: int) -> Batch:
    """Next-item batch: a window of max_len + 1 entries; position t predicts entry t + 1."""
    users = np.asarray(users, dtype=np.int64)
    # The window e_0..e_n right-aligned in width + 1 columns: the inputs e_0..e_{n-1} are its
    # first width columns, and the targets e_1..e_n, right-aligned like the inputs they follow,
    # its last width columns, but for e_0 in the column before the inputs.
    if parts.has_times:
        starts, lengths = _window_runs(parts, users, seeds, max_len + 1)
        n = np.maximum(lengths - 1, 0)
        width = _width(n)
        window, times = parts.run_records(users, starts, lengths, width + 1, None, times=True)
    else:
        drawn = draw_windows(parts, users, seeds, max_len + 1, shuffle=True)
        n = np.maximum(drawn.lengths - 1, 0)
        width = _width(n)
        window, times = _flat_records(parts, drawn, width + 1, None)
    block = _encode_records(
        parts, window[:, :width], None if times is None else times[:, :width], n
    )
    # Each target's item, then -1 wherever the input is padding: the padding of the targets, and
    # e_0 (the target of the padding just before the inputs).
    target = np.subtract(window[:, 1:]["item"], ITEM_OFFSET, dtype=np.int64)
    np.copyto(target, -1, where=_padding(width, n))
    return {**dict(zip(FIELDS, block, strict=True)), "target_items": target}


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
