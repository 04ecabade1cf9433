"""Normalized `AnimeList`s (MAL XML exports, crawled lists) -> interaction rows."""

from __future__ import annotations

from pathlib import Path

from inference.animelist import AnimeList
from inference.errors import BadExportFile
from inference.sources.mal_xml import read_mal_export
from training.importers.report import ImportReport
from training.parquet_schema import InteractionWriter

EXPORT_SUFFIXES = (".xml", ".xml.gz")


def write_list(writer: InteractionWriter, user: str, anime_list: AnimeList, first_row: int) -> int:
    """Append one list's entries in the list's own order; returns the next free row number."""
    row = first_row
    for entry in anime_list.entries:
        writer.add(
            user,
            entry.mal_id,
            entry.score,
            entry.status_code,
            entry.episodes_watched,
            entry.updated_at,
            row,
        )
        row += 1
    return row


def export_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(EXPORT_SUFFIXES)
    )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".xml"):
        name = name.removesuffix(suffix)
    return name


def import_mal_xml_folder(folder: Path, out: Path) -> ImportReport:
    """Every `.xml`/`.xml.gz` export in `folder`; the user is the export's username, else the file stem.

    A file that is not a readable export is counted and reported; the other files are kept. Rows
    are numbered in file name order, then in each file's entry order.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of MyAnimeList XML exports")
    report = ImportReport()
    files = export_files(folder)
    users: dict[str, str] = {}
    empty_lists = 0
    writer = InteractionWriter(out, source=f"mal-xml:{folder.name}")
    try:
        row = 0
        for path in files:
            try:
                anime_list = read_mal_export(path)
            except BadExportFile as exc:
                report.refuse("unreadable export file", f"{path.name} ({exc})")
                continue
            user = (anime_list.username or "").strip() or _stem(path)
            if user in users:
                report.refuse("second export of the same user", f"{path.name} (also {users[user]})")
                continue
            users[user] = path.name
            report.rows_read += len(anime_list.entries)
            empty_lists += not anime_list.entries
            row = write_list(writer, user, anime_list, row)
            report.rows_kept += len(anime_list.entries)
    except BaseException:
        writer.abort()
        raise
    report.extra.update({"files": len(files), "users": len(users), "empty_lists": empty_lists})
    writer.close(report.as_dict())
    return report
