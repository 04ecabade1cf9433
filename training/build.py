"""`python -m training build INPUT.parquet --out DIR`: interactions -> sorted CSR arrays + splits.

DuckDB sorts the Parquet file out of core (`ORDER BY user, time NULLS FIRST, row` under a memory
limit, spilling to a temp folder inside DIR), and one pass over the sorted result in Arrow record
batches appends the arrays of `training.dataset` chunk by chunk, so memory stays bounded by the
batch size and DuckDB's limit, not by the data.

Rules, in order:
1. Optional iterative k-core (`--min-count`, or `--min-user-count`/`--min-item-count`): drop users
   and items with fewer distinct partners than the minimum, repeatedly until nothing changes. It is
   done in DuckDB on distinct (user, item) pairs.
2. Order within a user: time ascending with unknown times first, ties by the original `row`.
3. Duplicate (user, item) rows: the last one in that order is kept (counted in stats.json).
4. Items are indexed 0.. in ascending item id; users in ascending user key (DuckDB's byte order).
   `--vocabulary-catalog` adds every title of a catalogue to the items, interactions or not, so
   a model with content vectors can read and rank titles nobody in the data has listed.
The same input, options and seed give byte-identical arrays.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time as clock
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from inference.animelist import N_STATUS_CODES, NO_TIME
from training.dataset import ARRAYS, FORMAT_VERSION, remove_cache, write_split
from training.errors import TrainingError
from training.npy_stream import NpyAppender
from training.parquet_schema import check_schema, read_meta
from training.splits import cold_split, loo_split, random_split, temporal_split

TIE_RULE = "time ascending (unknown first), then original row"
INT32_MAX = np.iinfo(np.int32).max
BATCH_ROWS = 1 << 20


class BuildError(TrainingError):
    """The input cannot become a dataset (wrong schema, out-of-range values, empty after filtering)."""


@dataclass
class BuildOptions:
    min_user_count: int = 0
    min_item_count: int = 0
    memory_limit: str = "4GB"
    holdout_days: float = 30.0
    seed: int = 0
    threads: int | None = None
    batch_rows: int = BATCH_ROWS
    name: str | None = None
    progress: bool = True
    # Item ids in the vocabulary even without interactions (a catalogue's MAL ids).
    extra_items: tuple[int, ...] = ()


def scores_to_int8(scores: np.ndarray) -> np.ndarray:
    """Vectorized `inference.score_to_int` (NaN = no score): round half up, nonzero never 0."""
    values = np.asarray(scores, dtype=np.float64)
    rounded = np.clip(np.floor(values + 0.5), 1, 10)
    return np.where(np.isnan(values) | (values <= 0), 0, rounded).astype(np.int8)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _connect(tmp: Path, options: BuildOptions) -> duckdb.DuckDBPyConnection:
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*[KMGT]i?B\s*", options.memory_limit, re.IGNORECASE):
        raise BuildError(
            f"--memory-limit must look like 4GB or 512MB, not {options.memory_limit!r}"
        )
    tmp.mkdir(parents=True, exist_ok=True)
    # An on-disk database: the k-core's pair table lives there rather than in the memory budget.
    con = duckdb.connect(str(tmp / "build.duckdb"))
    con.execute(f"SET memory_limit = {_sql_string(options.memory_limit)}")
    con.execute(f"SET temp_directory = {_sql_string(str(tmp / 'spill'))}")
    con.execute(f"SET threads = {int(options.threads or os.cpu_count() or 1)}")
    return con


@dataclass
class _Summary:
    rows: int
    rows_with_time: int
    users: int = 0
    items: int = 0
    kcore_rounds: int = 0
    rows_after_kcore: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _check_values(con: duckdb.DuckDBPyConnection) -> _Summary:
    row = con.execute(
        """SELECT count(*), count(time), min(time), max(time), min(status), max(status),
                  min(score), max(score), count(*) - count(user), count(*) - count(item),
                  min(progress), count(*) - count(status)
           FROM src"""
    ).fetchall()[0]
    (
        rows,
        with_time,
        t_min,
        t_max,
        s_min,
        s_max,
        sc_min,
        sc_max,
        null_users,
        null_items,
        p_min,
        null_status,
    ) = row
    if rows == 0:
        raise BuildError("the input holds no interactions")
    if null_users or null_items or null_status:
        raise BuildError(
            f"{null_users} rows without user, {null_items} without item, {null_status} without status"
        )
    if with_time and (t_min < 0 or t_max > INT32_MAX):
        raise BuildError(f"times must be unix seconds in 0..{INT32_MAX}; found {t_min}..{t_max}")
    if not (s_min >= 0 and s_max < N_STATUS_CODES):
        raise BuildError(f"status codes must be 0..{N_STATUS_CODES - 1}; found {s_min}..{s_max}")
    if sc_min is not None and (sc_min < 0 or sc_max > 10):
        raise BuildError(f"scores must be on the 0-10 scale; found {sc_min}..{sc_max}")
    if p_min is not None and p_min < 0:
        raise BuildError(f"progress must be >= 0; found {p_min}")
    return _Summary(rows=rows, rows_with_time=with_time)


def _kcore(con: duckdb.DuckDBPyConnection, min_user: int, min_item: int, progress: bool) -> int:
    """Leave in table `pairs` the distinct (user, item) pairs of the k-core; returns the rounds."""
    # Row order does not matter in the k-core tables; not preserving it lets DuckDB use less memory.
    con.execute("SET preserve_insertion_order = false")
    con.execute("CREATE OR REPLACE TABLE pairs AS SELECT DISTINCT user, item FROM src")
    rounds = 0
    bar = tqdm(desc="k-core", unit="round", disable=not progress, file=sys.stderr)
    while True:
        rounds += 1
        removed = 0
        if min_user > 1:
            result = con.execute(
                "DELETE FROM pairs WHERE user IN (SELECT user FROM pairs GROUP BY user HAVING count(*) < ?)",
                [min_user],
            ).fetchall()
            removed += result[0][0]
        if min_item > 1:
            result = con.execute(
                "DELETE FROM pairs WHERE item IN (SELECT item FROM pairs GROUP BY item HAVING count(*) < ?)",
                [min_item],
            ).fetchall()
            removed += result[0][0]
        bar.update(1)
        bar.set_postfix(removed=removed)
        if removed == 0:
            break
    bar.close()
    con.execute("CREATE OR REPLACE TABLE kept_users AS SELECT DISTINCT user FROM pairs")
    con.execute("CREATE OR REPLACE TABLE kept_items AS SELECT DISTINCT item FROM pairs")
    con.execute("DROP TABLE pairs")
    con.execute("SET preserve_insertion_order = true")
    con.execute(
        """CREATE OR REPLACE VIEW filtered AS SELECT * FROM src
           WHERE user IN (SELECT user FROM kept_users) AND item IN (SELECT item FROM kept_items)"""
    )
    return rounds


class _CsrWriter:
    """Appends whole users' rows to the CSR files, dropping duplicate (user, item) rows."""

    def __init__(self, out: Path, item_ids: np.ndarray) -> None:
        self.item_ids = item_ids
        self.files = {
            name: NpyAppender(out / f"{name}.npy", dtype) for name, dtype in ARRAYS.items()
        }
        self.offsets = NpyAppender(out / "offsets.npy", np.int64)
        self.offsets.append(np.zeros(1, dtype=np.int64))
        self.user_chunks: list[pa.Array] = []
        self.rows = 0
        self.users = 0
        self.duplicates = 0
        self.unknown_time = 0
        self.last_two_tied = 0

    def write(self, table: pa.Table) -> None:
        n = table.num_rows
        users = table.column("user").combine_chunks()
        is_start = np.ones(n, dtype=bool)
        if n > 1:
            is_start[1:] = pc.not_equal(users.slice(1), users.slice(0, n - 1)).to_numpy(
                zero_copy_only=False
            )
        starts = np.flatnonzero(is_start)
        user_local = np.cumsum(is_start) - 1
        item_index = np.searchsorted(self.item_ids, table.column("item").to_numpy())
        # Keep the last row of each (user, item): in a stable sort by key, a row whose successor
        # has the same key is an earlier duplicate.
        key = user_local.astype(np.int64) * len(self.item_ids) + item_index
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        earlier = np.zeros(n, dtype=bool)
        earlier[order[:-1]] = sorted_key[:-1] == sorted_key[1:]
        keep = ~earlier
        n_dupes = int(earlier.sum())
        self.duplicates += n_dupes

        times = pc.fill_null(table.column("time"), NO_TIME).to_numpy().astype(np.int32)
        scores = pc.fill_null(table.column("score"), np.nan).to_numpy()
        columns = {
            "items": item_index.astype(np.int32),
            "scores": scores_to_int8(scores),
            "statuses": table.column("status").to_numpy().astype(np.int8),
            "progress": table.column("progress").to_numpy().astype(np.int16),
            "times": times,
        }
        if n_dupes:
            columns = {name: values[keep] for name, values in columns.items()}
            user_local = user_local[keep]
        lengths = np.bincount(user_local, minlength=len(starts))
        for name, values in columns.items():
            self.files[name].append(values)
        ends = np.cumsum(lengths)
        self.offsets.append(self.rows + ends)
        t = columns["times"]
        self.unknown_time += int((t == NO_TIME).sum())
        two = lengths >= 2
        last, before = t[ends[two] - 1], t[ends[two] - 2]
        self.last_two_tied += int(((last == before) & (last != NO_TIME)).sum())
        self.user_chunks.append(users.take(pa.array(starts)))
        self.rows += int(ends[-1])
        self.users += len(starts)

    def close(self, out: Path) -> None:
        for appender in self.files.values():
            appender.close()
        self.offsets.close()
        keys = pa.chunked_array(self.user_chunks, type=pa.string())
        width = max(1, int(pc.max(pc.utf8_length(keys)).as_py() or 1)) if len(keys) else 1
        user_keys = np.lib.format.open_memmap(
            out / "user_keys.npy", mode="w+", dtype=f"<U{width}", shape=(len(keys),)
        )
        start = 0
        for chunk in keys.chunks:
            user_keys[start : start + len(chunk)] = np.asarray(
                chunk.to_pylist(), dtype=f"<U{width}"
            )
            start += len(chunk)
        user_keys.flush()
        del user_keys


def _stream_sorted(
    con: duckdb.DuckDBPyConnection,
    source: str,
    writer: _CsrWriter,
    total: int,
    options: BuildOptions,
) -> None:
    # preserve_insertion_order must stay on (the default) here: without it DuckDB may hand out the
    # sorted result's batches out of order.
    reader = con.sql(
        f"""SELECT user, item, score, status, progress, time, row FROM {source}
            ORDER BY user, time NULLS FIRST, row"""
    ).to_arrow_reader(options.batch_rows)
    carry: pa.Table | None = None
    previous_last: str | None = None
    with tqdm(
        total=total,
        desc="sort + write CSR",
        unit="row",
        unit_scale=True,
        disable=not options.progress,
        file=sys.stderr,
    ) as bar:
        for batch in reader:
            table = pa.Table.from_batches([batch])
            if carry is not None:
                table = pa.concat_tables([carry, table])
            users = table.column("user")
            first_user = users[0].as_py()
            if previous_last is not None and first_user < previous_last:
                raise BuildError(
                    "DuckDB returned the sorted rows out of order; refusing to write a wrong dataset"
                )
            last_user = users[table.num_rows - 1]
            previous_last = last_user.as_py()
            # The last user of a batch may continue in the next one: hold their rows back.
            tail = int(pc.sum(pc.equal(users, last_user)).as_py())
            complete = table.num_rows - tail
            if complete > 0:
                writer.write(table.slice(0, complete))
                bar.update(complete)
            carry = table.slice(complete)
        if carry is not None and carry.num_rows:
            writer.write(carry)
            bar.update(carry.num_rows)


def _percentiles(lengths: np.ndarray) -> dict[str, int]:
    if not len(lengths):
        return {"p50": 0, "p90": 0, "p99": 0, "max": 0}
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99], method="lower")
    return {"p50": int(p50), "p90": int(p90), "p99": int(p99), "max": int(lengths.max())}


def build(
    input_path: Path | str, out: Path | str, options: BuildOptions | None = None
) -> dict[str, Any]:
    """Build the dataset folder `out` from an interaction Parquet file; returns stats.json's content."""
    options = options or BuildOptions()
    input_path, out = Path(input_path), Path(out)
    if not input_path.is_file():
        raise BuildError(f"no such file: {input_path}")
    try:
        check_schema(input_path)
    except pa.ArrowInvalid as exc:  # a ValueError too: must come first
        raise BuildError(f"{input_path} is not a Parquet file ({exc})") from None
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    source_meta = read_meta(input_path)
    started = clock.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    remove_cache(out)
    for stale in [
        *out.glob("*.npy"),
        *out.glob("splits/*.npy"),
        out / "meta.json",
        out / "stats.json",
    ]:
        stale.unlink(missing_ok=True)
    tmp = out / ".build-tmp"
    con = _connect(tmp, options)
    try:
        con.execute(
            f"CREATE VIEW src AS SELECT * FROM read_parquet({_sql_string(str(input_path))})"
        )
        summary = _check_values(con)
        source = "src"
        if options.min_user_count > 1 or options.min_item_count > 1:
            summary.kcore_rounds = _kcore(
                con, options.min_user_count, options.min_item_count, options.progress
            )
            source = "filtered"
        item_ids = con.execute(f"SELECT DISTINCT item FROM {source} ORDER BY item").fetchnumpy()[
            "item"
        ]
        item_ids = np.asarray(item_ids, dtype=np.int64)
        if not len(item_ids):
            raise BuildError("no interactions left after the k-core filter; lower --min-count")
        with_interactions = len(item_ids)
        if options.extra_items:
            item_ids = np.union1d(item_ids, np.asarray(options.extra_items, dtype=np.int64))
        total = (
            summary.rows
            if source == "src"
            else int(con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0])
        )
        writer = _CsrWriter(out, item_ids)
        _stream_sorted(con, source, writer, total, options)
        writer.close(out)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)

    offsets = np.load(out / "offsets.npy", mmap_mode="r")
    lengths = np.diff(np.asarray(offsets))
    has_times = writer.unknown_time < writer.rows
    splits = ["loo", "random", "cold"]
    write_split(out, "loo", loo_split(offsets))
    write_split(out, "random", random_split(offsets, options.seed))
    write_split(
        out,
        "cold",
        cold_split(np.load(out / "items.npy", mmap_mode="r"), len(item_ids), options.seed),
    )
    if has_times:
        write_split(
            out,
            "temporal",
            temporal_split(np.load(out / "times.npy", mmap_mode="r"), options.holdout_days),
        )
        splits.append("temporal")
    (out / "item_keys.json").write_text(json.dumps([int(i) for i in item_ids]))

    stats = {
        "users": writer.users,
        "items": len(item_ids),
        "items_without_interactions": len(item_ids) - with_interactions,
        "interactions": writer.rows,
        "length_percentiles": _percentiles(lengths),
        "has_times": has_times,
        "rows_unknown_time": writer.unknown_time,
        "users_last_two_same_time": writer.last_two_tied,
        "tie_rule": TIE_RULE,
        "duplicates_dropped": writer.duplicates,
        "duplicate_rule": "keep the last (user, item) row in order",
        "input_rows": summary.rows,
        "kcore": {
            "min_user_count": options.min_user_count,
            "min_item_count": options.min_item_count,
            "rounds": summary.kcore_rounds,
            "rows_after": total,
        },
        "build_seconds": round(clock.monotonic() - started, 1),
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "name": options.name or out.name,
        "n_items": len(item_ids),
        "n_users": writer.users,
        "n_interactions": writer.rows,
        "synthetic": bool(source_meta.get("synthetic", False)),
        "has_times": has_times,
        "source_files": [input_path.name],
        "source": source_meta,
        "build": {
            "min_user_count": options.min_user_count,
            "min_item_count": options.min_item_count,
            "seed": options.seed,
            "holdout_days": options.holdout_days,
            "splits": splits,
            "random_split": "per user with >= 5 entries: 10% (floor, >= 1) test, then the same on the rest for validation",
            "cold_split": "10% of the items with interactions, per popularity decile: all their interactions test",
        },
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    # Build time varies run to run; keep stats.json comparable by putting it last and apart.
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def catalogue_ids(path: Path | None) -> tuple[int, ...]:
    """The MAL ids of a catalogue file (none without one)."""
    if path is None:
        return ()
    from inference.catalog import load_catalog

    return tuple(item.mal_id for item in load_catalog(path))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", type=Path, help="interaction Parquet file (python -m training import/synthesize)"
    )
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    parser.add_argument(
        "--min-count",
        type=int,
        default=0,
        help="k-core: drop users and items with fewer interactions, repeatedly",
    )
    parser.add_argument(
        "--min-user-count",
        type=int,
        default=None,
        help="k-core minimum for users only (overrides --min-count)",
    )
    parser.add_argument(
        "--min-item-count",
        type=int,
        default=None,
        help="k-core minimum for items only (overrides --min-count)",
    )
    parser.add_argument("--memory-limit", default="4GB", help="DuckDB memory limit (default 4GB)")
    parser.add_argument(
        "--holdout-days",
        type=float,
        default=30.0,
        help="temporal split window in days (default 30)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split")
    parser.add_argument(
        "--threads", type=int, default=None, help="DuckDB threads (default: CPU count)"
    )
    parser.add_argument(
        "--name", default=None, help="dataset name in meta.json (default: folder name)"
    )
    parser.add_argument(
        "--vocabulary-catalog",
        type=Path,
        default=None,
        help="also give every title of this catalogue an item index (for content models)",
    )


def main(args: argparse.Namespace) -> int:
    options = BuildOptions(
        min_user_count=args.min_user_count if args.min_user_count is not None else args.min_count,
        min_item_count=args.min_item_count if args.min_item_count is not None else args.min_count,
        memory_limit=args.memory_limit,
        holdout_days=args.holdout_days,
        seed=args.seed,
        threads=args.threads,
        name=args.name,
        extra_items=catalogue_ids(args.vocabulary_catalog),
    )
    stats = build(args.input, args.out, options)
    print(json.dumps(stats, indent=2))
    return 0
