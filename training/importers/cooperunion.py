"""The CooperUnion anime sample (Kaggle "Anime Recommendations Database", 5k-user zip).

`anime_history.dat` holds every watched entry and `anime_ratings.dat` the scores (1–10) of some of
them; a history row without a rating is watched but unscored. The zip renumbers anime 1..N, so
`anime_info.dat` names are matched onto catalogue MAL ids (`title_match`); rows of unmatched
anime are dropped and counted. There are no timestamps: every row has time null, status
completed, and `row` is the history file's row number.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

from inference.animelist import STATUS_CODES, Status
from training.errors import TrainingError
from training.importers.report import ImportReport
from training.importers.title_match import TitleMatcher, load_candidates
from training.parquet_schema import InteractionWriter

COMPLETED = STATUS_CODES[Status.COMPLETED]
MEMBERS = {"history": "anime_history.dat", "ratings": "anime_ratings.dat", "info": "anime_info.dat"}


class CooperUnionFormatError(TrainingError):
    """The zip is not the CooperUnion sample (missing members or headers)."""


def _member(archive: zipfile.ZipFile, name: str) -> str:
    for info in archive.infolist():
        if info.filename == name or info.filename.endswith("/" + name):
            return info.filename
    raise CooperUnionFormatError(f"{archive.filename}: no {name} inside")


def _tsv(
    archive: zipfile.ZipFile, name: str, header: tuple[str, ...]
) -> Iterator[tuple[int, list[str]]]:
    with archive.open(_member(archive, name)) as raw:
        reader = csv.reader(
            io.TextIOWrapper(raw, encoding="utf-8", newline=""),
            delimiter="\t",
            quoting=csv.QUOTE_NONE,
        )
        first = next(reader, None)
        if first is None or tuple(c.strip() for c in first[: len(header)]) != header:
            raise CooperUnionFormatError(
                f"{archive.filename}: {name} header is {first}, expected {list(header)}"
            )
        yield from enumerate(reader)


def _parse_int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def import_cooperunion(path: Path, out: Path, catalog_path: Path) -> ImportReport:
    report = ImportReport()
    matcher = TitleMatcher(load_candidates(catalog_path))
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CooperUnionFormatError(f"{path}: not a readable zip ({exc})") from exc
    with archive:
        mal_ids: dict[int, int | None] = {}
        info_header = ("anime_ids", "name", "genre", "type", "episodes")
        for row, fields in _tsv(archive, MEMBERS["info"], info_header):
            anime = _parse_int(fields[0]) if fields else None
            if anime is None or len(fields) < 5:
                report.refuse("anime_info row unreadable", f"{MEMBERS['info']} row {row}")
                continue
            mal_ids[anime] = matcher.match(fields[1], fields[3], _parse_int(fields[4]))

        scores: dict[tuple[int, int], int] = {}
        for row, fields in _tsv(archive, MEMBERS["ratings"], ("User_ID", "Anime_ID", "Feedback")):
            values = [_parse_int(f) for f in fields] if len(fields) == 3 else [None]
            if None in values or not 1 <= values[2] <= 10:  # type: ignore[operator]
                report.refuse(
                    "rating row unreadable or score outside 1-10", f"{MEMBERS['ratings']} row {row}"
                )
                continue
            user, anime, score = values
            assert user is not None and anime is not None and score is not None
            scores[(user, anime)] = score

        unknown_anime = 0
        unmatched_rows = 0
        scored_rows = 0
        in_history: set[tuple[int, int]] = set()
        writer = InteractionWriter(out, source="cooperunion", extra_meta={"zip": Path(path).name})
        try:
            for row, fields in _tsv(
                archive, MEMBERS["history"], ("User_ID", "Anime_ID", "Feedback")
            ):
                report.rows_read += 1
                values = [_parse_int(f) for f in fields[:2]] if len(fields) == 3 else [None]
                if None in values:
                    report.refuse("history row unreadable", f"{MEMBERS['history']} row {row}")
                    continue
                user, anime = values
                assert user is not None and anime is not None
                in_history.add((user, anime))
                if anime not in mal_ids:
                    unknown_anime += 1
                    continue
                mal_id = mal_ids[anime]
                if mal_id is None:
                    unmatched_rows += 1
                    continue
                score = scores.get((user, anime))
                scored_rows += score is not None
                writer.add(
                    str(user),
                    mal_id,
                    None if score is None else float(score),
                    COMPLETED,
                    0,
                    None,
                    row,
                )
                report.rows_kept += 1
        except BaseException:
            writer.abort()
            raise

        stats = matcher.stats
        report.extra.update(
            {
                "titles": len(mal_ids),
                "titles_matched": stats.matched,
                "titles_unmatched": len(stats.unmatched),
                "titles_ambiguous": stats.ambiguous,
                "titles_tied_after_type_and_episodes": stats.unresolved_ties,
                "rows_dropped_unmatched_title": unmatched_rows,
                "rows_dropped_anime_not_in_info": unknown_anime,
                "ratings_without_history_row": sum(1 for key in scores if key not in in_history),
                "scored_rows": scored_rows,
                "unmatched_titles": sorted(stats.unmatched),
                "catalog": Path(catalog_path).name,
            }
        )
        writer.close(report.as_dict())
    return report
