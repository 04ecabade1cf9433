"""`python -m training import FORMAT INPUT --out PATH.parquet`: any interaction source -> one Parquet schema.

Formats: `movielens` (RecBole `.inter` or GroupLens `ratings.dat`), `cooperunion` (the Kaggle
sample zip), `mal-csv` (MyAnimeList list rows as CSV), `mal-xml` (a folder of MyAnimeList XML
exports) and `crawl` (a `python -m training crawl` store). The schema is in
`training.parquet_schema`; the import report (rows read, kept, malformed with reasons, unmatched
titles...) is stored in the file's metadata and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from inference.config import PROJECT_ROOT
from training.errors import TrainingError
from training.importers.report import ImportReport

FORMATS = ("movielens", "cooperunion", "mal-csv", "mal-xml", "crawl")
SHARED_DATA = Path(os.environ.get("ANIMEREC_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
PROJECT_CATALOG = PROJECT_ROOT / "data" / "catalog.json.gz"
PACKAGED_CATALOG = SHARED_DATA / "catalog" / "mal-anime-17k.csv"


def default_catalog() -> Path:
    """The project's catalogue once `python -m training catalog` has built it, else the packaged CSV."""
    return PROJECT_CATALOG if PROJECT_CATALOG.exists() else PACKAGED_CATALOG


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="what INPUT is")
    parser.add_argument("input", type=Path, help="file, zip, folder or crawl store to import")
    parser.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    parser.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="catalogue for matching titles (cooperunion): a catalogue .json(.gz) or the packaged "
        "MAL CSV; default data/catalog.json.gz when built, else the packaged CSV",
    )
    parser.add_argument(
        "--service", choices=("mal", "anilist"), help="crawl: only this service's lists"
    )


def run_import(
    fmt: str, source: Path, out: Path, catalog: Path | None = None, service: str | None = None
) -> ImportReport:
    if fmt == "movielens":
        from training.importers.movielens import import_movielens

        return import_movielens(source, out)
    if fmt == "cooperunion":
        from training.importers.cooperunion import import_cooperunion

        return import_cooperunion(source, out, catalog or default_catalog())
    if fmt == "mal-csv":
        from training.importers.mal_csv import import_mal_csv

        return import_mal_csv(source, out)
    if fmt == "mal-xml":
        from training.importers.lists import import_mal_xml_folder

        return import_mal_xml_folder(source, out)
    if fmt == "crawl":
        from training.crawl_store import import_crawl_store

        return import_crawl_store(source, out, service=service)
    raise TrainingError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def main(args: argparse.Namespace) -> int:
    report = run_import(args.format, args.input, args.out, args.catalog, args.service)
    print(report.summary(), file=sys.stderr)
    unmatched = report.extra.get("unmatched_titles")
    if unmatched:
        print(
            f"  first unmatched titles: {json.dumps(unmatched[:10], ensure_ascii=False)}",
            file=sys.stderr,
        )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
