"""MovieLens ratings: RecBole `.inter` files and GroupLens `ratings.dat`.

A rating r (0.5–5 stars) becomes score 2r on the 0–10 scale and status completed. RecBole's ML-1M
`.inter` names movies by title instead of id, so when any item token is not an integer every title
gets an integer id: 1.. in sorted title order (deterministic, independent of row order), and the
mapping is saved beside the output as `<out>.items.json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from inference.animelist import STATUS_CODES, Status
from training.errors import TrainingError
from training.importers.report import ImportReport
from training.parquet_schema import InteractionWriter

COMPLETED = STATUS_CODES[Status.COMPLETED]
INTER_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


class MovieLensFormatError(TrainingError):
    """The file is not a MovieLens ratings file at all (as opposed to a few bad rows)."""


def _inter_rows(path: Path) -> Iterator[tuple[int, list[str] | None, str]]:
    """(row number, [user, item, rating, timestamp] or None, raw line) for each data line."""
    with path.open(encoding="utf-8", newline="") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        names = [h.split(":", 1)[0] for h in header]
        missing = [c for c in INTER_COLUMNS if c not in names]
        if missing:
            raise MovieLensFormatError(
                f"{path}: not a RecBole .inter file (header lacks {', '.join(missing)})"
            )
        index = [names.index(c) for c in INTER_COLUMNS]
        for row, line in enumerate(f):
            parts = line.rstrip("\r\n").split("\t")
            yield row, ([parts[i] for i in index] if len(parts) == len(names) else None), line


def _dat_rows(path: Path) -> Iterator[tuple[int, list[str] | None, str]]:
    # GroupLens files are Latin-1 (movie titles); ratings hold only digits but stay consistent.
    with path.open(encoding="latin-1", newline="") as f:
        for row, line in enumerate(f):
            parts = line.rstrip("\r\n").split("::")
            yield row, (parts if len(parts) == 4 else None), line


def import_movielens(path: Path, out: Path) -> ImportReport:
    path = Path(path)
    if not path.is_file():
        raise MovieLensFormatError(f"{path}: no such file")
    rows = _inter_rows if path.suffix == ".inter" else _dat_rows
    report = ImportReport()

    item_ids: dict[str, int] | None = None
    tokens = {fields[1] for _, fields, _ in rows(path) if fields is not None}
    if any(not t.strip().isdigit() for t in tokens):
        item_ids = {title: i for i, title in enumerate(sorted(tokens), start=1)}

    writer = InteractionWriter(out, source=f"movielens:{path.name}")
    try:
        for row, fields, _line in rows(path):
            report.rows_read += 1
            if fields is None:
                report.refuse("wrong number of fields", f"row {row}")
                continue
            user, item_token, rating_text, time_text = fields
            if not user:
                report.refuse("empty user", f"row {row}")
                continue
            try:
                rating = float(rating_text)
            except ValueError:
                report.refuse("rating is not a number", f"row {row}")
                continue
            if not 0.5 <= rating <= 5:
                report.refuse("rating outside 0.5-5", f"row {row}")
                continue
            try:
                time = int(float(time_text))
            except ValueError:
                report.refuse("timestamp is not a number", f"row {row}")
                continue
            item = item_ids[item_token] if item_ids is not None else int(item_token)
            writer.add(user, item, rating * 2, COMPLETED, 0, time, row)
            report.rows_kept += 1
    except BaseException:
        writer.abort()
        raise
    if item_ids is not None:
        mapping_path = out.with_name(out.name + ".items.json")
        mapping_path.write_text(
            json.dumps({str(i): t for t, i in item_ids.items()}, ensure_ascii=False)
        )
        report.extra["item_titles_file"] = mapping_path.name
    report.extra["items_named_by_title"] = item_ids is not None
    writer.close(report.as_dict())
    return report
