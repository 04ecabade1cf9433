"""`python -m inference similar TITLE`: titles like one title, as text or JSON (`inference.similar`).

Text: the matched title first (`More like X`), then each pick as `recommend` prints it (`N. Title`,
indented facts, link and `why:` lines), then notes. `--json`: the shape of `recommend --json` with
a "query" object ({"mal_id", "title"}) beside it. With `--user NAME` (and `--source`) or
`--export FILE`, the titles on that list (plan-to-watch aside) are left out. An unknown title
exits 2 with one line naming the closest catalogue titles.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from inference.animelist import AnimeList
from inference.options import MAX_COUNT


def configure_similar(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("title", nargs="+", help="a title, in romaji or English (quotes optional)")
    parser.add_argument(
        "-n", "--count", default="10", help=f"how many picks, 1-{MAX_COUNT} (default 10)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--franchise",
        action="store_true",
        help="allow titles of the same franchise (sequels, side stories) too",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--user", metavar="NAME", help="leave out the titles on this user's list")
    who.add_argument(
        "--export", metavar="FILE", type=Path, help="a MyAnimeList XML export to leave out"
    )
    parser.add_argument(
        "--source",
        choices=("mal", "anilist"),
        default="anilist",
        help="where --user's list is (default: anilist, which needs no client id)",
    )
    parser.add_argument("--adult", action="store_true", help="allow adult titles")
    parser.add_argument("--unaired", action="store_true", help="allow titles not aired yet")
    parser.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="model bundle folder (default: [engine] bundle in config.toml)",
    )
    parser.add_argument("--providers", default=None, help="onnxruntime providers: auto, cpu, cuda")


def _list_for(args: argparse.Namespace, bundle: Path) -> AnimeList | None:
    from inference.cli import load_list

    if args.export is not None:
        return load_list(argparse.Namespace(file=args.export, mal=None, anilist=None))
    if args.user is None:
        return None
    mal = args.user if args.source == "mal" else None
    anilist = args.user if args.source == "anilist" else None
    return load_list(
        argparse.Namespace(file=None, mal=mal, anilist=anilist, catalog=bundle / "catalog.json.gz")
    )


def run_similar(args: argparse.Namespace, out: TextIO) -> int:
    from inference.cli_recommend import _engine_settings, pick_lines
    from inference.engine import Engine
    from inference.similar import SimilarOptions

    try:
        options = SimilarOptions(
            count=int(args.count), franchise=args.franchise, adult=args.adult, unaired=args.unaired
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.int8 = False
    bundle, settings = _engine_settings(args)
    anime_list = _list_for(args, bundle)
    engine = Engine.from_bundle(bundle, settings=settings, micro_batching=False)
    try:
        result = engine.similar_sync(" ".join(args.title), options, anime_list)
    finally:
        engine.close()
    if args.json:
        json.dump(result.as_json(), out, ensure_ascii=False, indent=2)
        out.write("\n")
        return 0
    print(result.heading, file=out)
    for position, rec in enumerate(result.recommendations, start=1):
        for line in pick_lines(position, rec):
            print(line, file=out)
    for note in result.notes:
        print(f"note: {note}", file=out)
    return 0
