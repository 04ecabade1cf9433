"""`python -m inference <command>`: look at a user's list, or get recommendations for it.

Each command is one entry in `COMMANDS`: a function that adds its options to a sub-parser and a
function that runs it. Every command that needs a list shares `add_list_source_arguments` and
`load_list`, so `--anilist/--mal/--file` mean the same thing everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from inference.animelist import AnimeList, PartialDate
from inference.errors import AnimerecError

DEFAULT_CATALOG_PATH = Path(__file__).resolve().parent.parent / "data" / "catalog.json.gz"


def add_list_source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--anilist", metavar="NAME", help="an AniList user name")
    group.add_argument("--mal", metavar="NAME", help="a MyAnimeList user name")
    group.add_argument(
        "--file", metavar="PATH", type=Path, help="a MyAnimeList XML export (.xml or .xml.gz)"
    )
    parser.add_argument(
        "--catalog",
        metavar="PATH",
        type=Path,
        default=None,
        help="catalogue used to map AniList ids to MyAnimeList ids "
        f"(default: {DEFAULT_CATALOG_PATH} when it exists)",
    )


def load_list(args: argparse.Namespace) -> AnimeList:
    """The list that `--anilist/--mal/--file` name. Raises AnimerecError subclasses on failure."""
    if args.file is not None:
        from inference.sources.mal_xml import read_mal_export

        return read_mal_export(args.file)
    return asyncio.run(_fetch_list(args))


async def _fetch_list(args: argparse.Namespace) -> AnimeList:
    from inference.config import MAL_CLIENT_ID_ENV, load_toml, require_secret, source_settings

    settings = source_settings(load_toml())
    if args.mal is not None:
        client_id: str | None = require_secret(MAL_CLIENT_ID_ENV, "fetching MyAnimeList lists")
    else:
        client_id = None
    anilist_to_mal = _anilist_to_mal(args.catalog) if args.anilist is not None else {}

    # Imported here so `--file` works without the network stack (and starts faster).
    from inference.http import make_http_client
    from inference.sources.fetch import ListSources

    async with make_http_client(settings) as http:
        sources = ListSources(
            http, settings, mal_client_id=client_id, anilist_to_mal=anilist_to_mal
        )
        if args.mal is not None:
            return await sources.fetch_mal_list(args.mal)
        return await sources.fetch_anilist_list(args.anilist)


def _anilist_to_mal(path: Path | None) -> dict[int, int]:
    """The catalogue's AniList -> MAL map; without a catalogue, only entries AniList maps itself."""
    from inference.catalog import load_catalog

    if path is None:
        if not DEFAULT_CATALOG_PATH.exists():
            return {}
        path = DEFAULT_CATALOG_PATH
    return load_catalog(path).anilist_to_mal


# ----- list ----------------------------------------------------------------------------------


def summarize_list(anime_list: AnimeList) -> list[str]:
    """The lines `list` prints: entries, counts by status, scored share, date range."""
    n = len(anime_list)
    lines = [f"entries: {n}"]
    for status, count in anime_list.status_counts().items():
        lines.append(f"{status.value}: {count}")
    scored = sum(1 for e in anime_list.entries if e.score is not None)
    share = round(100 * scored / n) if n else 0
    lines.append(f"scored: {share}% ({scored} of {n})")
    lines.append(f"dates: {date_range(anime_list)}")
    if anime_list.unmapped_entries:
        lines.append(f"left out (no MyAnimeList id): {anime_list.unmapped_entries}")
    return lines


def date_range(anime_list: AnimeList) -> str:
    """ "FIRST .. LAST" over the entries' dates, or "unknown".

    An entry contributes its last-update time when the source has one (MyAnimeList API, AniList,
    legacy exports), else its start and finish dates (modern exports carry no update time).
    Partial dates print as far as they are known.
    """
    dates: list[PartialDate] = []
    for entry in anime_list.entries:
        if entry.updated_at is not None:
            day = dt.datetime.fromtimestamp(entry.updated_at, dt.UTC).date()
            dates.append(PartialDate(day.year, day.month, day.day))
        else:
            dates.extend(d for d in (entry.started, entry.finished) if d is not None)
    if not dates:
        return "unknown"

    def key(d: PartialDate) -> tuple[int, int, int]:
        return (d.year, d.month or 0, d.day or 0)

    return f"{min(dates, key=key)} .. {max(dates, key=key)}"


def configure_list(parser: argparse.ArgumentParser) -> None:
    add_list_source_arguments(parser)


def run_list(args: argparse.Namespace, out: TextIO) -> int:
    anime_list = load_list(args)
    for line in summarize_list(anime_list):
        print(line, file=out)
    return 0


# ----- dispatch -------------------------------------------------------------------------------

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace, TextIO], int]


def configure_recommend(parser: argparse.ArgumentParser) -> None:
    from inference.cli_recommend import configure_recommend as configure

    configure(parser)


def run_recommend(args: argparse.Namespace, out: TextIO) -> int:
    from inference.cli_recommend import run_recommend as run

    return run(args, out)


def configure_similar(parser: argparse.ArgumentParser) -> None:
    from inference.cli_similar import configure_similar as configure

    configure(parser)


def run_similar(args: argparse.Namespace, out: TextIO) -> int:
    from inference.cli_similar import run_similar as run

    return run(args, out)


COMMANDS: dict[str, tuple[str, Configure, Run]] = {
    "list": ("summarize a user's anime list", configure_list, run_list),
    "recommend": (
        "annotated recommendations for a user's list",
        configure_recommend,
        run_recommend,
    ),
    "similar": ("titles like one title", configure_similar, run_similar),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, configure, run) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        configure(command_parser)
        command_parser.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; a failure the user can act on is one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args, out or sys.stdout))
    except AnimerecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
