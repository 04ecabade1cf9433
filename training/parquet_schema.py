"""The one interaction Parquet schema every source is imported into (and `build` reads).

Columns: user (string), item (int64), score (float32, 0–10, null = no score), status (int8,
`inference.STATUS_CODES` or `REWATCHING_CODE`), progress (int16 episodes watched, 0 unknown),
time (int64 unix seconds, null = unknown), row (int64 original row number in the source: the last
tie-breaker of the order, so it must be unique within a file).

What the file is (source, synthetic or not, whether it has times, the import report) travels in the
Parquet key-value metadata under `META_KEY` as JSON. Files are written in row groups so that an
import or a synthetic generator never holds more than one group in memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"animerec.meta"
SCHEMA = pa.schema(
    [
        pa.field("user", pa.string(), nullable=False),
        pa.field("item", pa.int64(), nullable=False),
        pa.field("score", pa.float32()),
        pa.field("status", pa.int8(), nullable=False),
        pa.field("progress", pa.int16(), nullable=False),
        pa.field("time", pa.int64()),
        pa.field("row", pa.int64(), nullable=False),
    ]
)
COLUMNS = tuple(SCHEMA.names)
DEFAULT_ROW_GROUP = 1 << 20


class InteractionWriter:
    """Streams interactions into a Parquet file in row groups of bounded size.

    Rows come one at a time (`add`, for parsers) or as whole columns (`write_columns`, for
    vectorized generators). `close(report=...)` stores the metadata; `has_times` is derived from
    what was written, so it cannot disagree with the data.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        source: str,
        synthetic: bool = False,
        row_group_size: int = DEFAULT_ROW_GROUP,
        extra_meta: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.meta: dict[str, Any] = {"source": source, "synthetic": synthetic, **(extra_meta or {})}
        self.row_group_size = row_group_size
        self.rows_written = 0
        self.rows_with_time = 0
        self._buffer: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        self._writer = pq.ParquetWriter(self.path, SCHEMA, compression="zstd")

    def add(
        self,
        user: str,
        item: int,
        score: float | None,
        status: int,
        progress: int,
        time: int | None,
        row: int,
    ) -> None:
        buf = self._buffer
        buf["user"].append(user)
        buf["item"].append(item)
        buf["score"].append(score)
        buf["status"].append(status)
        buf["progress"].append(min(max(progress, 0), np.iinfo(np.int16).max))
        buf["time"].append(time)
        buf["row"].append(row)
        if len(buf["row"]) >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer["row"]:
            return
        table = pa.table(
            {name: pa.array(self._buffer[name], SCHEMA.field(name).type) for name in COLUMNS},
            schema=SCHEMA,
        )
        self._write_table(table)
        self._buffer = {name: [] for name in COLUMNS}

    def write_columns(self, columns: dict[str, Any]) -> None:
        """Write whole columns (numpy or Arrow arrays); `score`/`time` may hold nulls via Arrow."""
        self._flush()
        table = pa.table(
            {name: pa.array(columns[name], SCHEMA.field(name).type) for name in COLUMNS},
            schema=SCHEMA,
        )
        for start in range(0, table.num_rows, self.row_group_size):
            self._write_table(table.slice(start, self.row_group_size))

    def _write_table(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self.rows_written += table.num_rows
        self.rows_with_time += table.num_rows - table.column("time").null_count

    def close(self, report: dict[str, Any] | None = None) -> dict[str, Any]:
        self._flush()
        meta = {
            **self.meta,
            "has_times": self.rows_with_time > 0,
            "rows": self.rows_written,
            "rows_with_time": self.rows_with_time,
            "report": report or {},
        }
        self._writer.add_key_value_metadata({META_KEY: json.dumps(meta).encode()})
        self._writer.close()
        return meta

    def abort(self) -> None:
        """Close and delete a half-written file (the import failed)."""
        self._writer.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> InteractionWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()


def read_meta(path: Path | str) -> dict[str, Any]:
    """The metadata an `InteractionWriter` stored; `{}` for a foreign file in the same schema."""
    metadata = pq.read_metadata(path).metadata or {}
    raw = metadata.get(META_KEY)
    return dict(json.loads(raw)) if raw else {}


def check_schema(path: Path | str) -> None:
    """Raise ValueError naming what differs when `path` is not in the interaction schema."""
    schema = pq.read_schema(path)
    missing = [name for name in COLUMNS if name not in schema.names]
    if missing:
        raise ValueError(
            f"{path} is not an interaction file: missing column(s) {', '.join(missing)}"
        )
    for name in COLUMNS:
        actual = schema.field(name).type
        if actual != SCHEMA.field(name).type:
            raise ValueError(
                f"{path}: column {name!r} is {actual}, expected {SCHEMA.field(name).type}"
            )
