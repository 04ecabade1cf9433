"""`python -m inference recommend`: annotated picks for one list, as text or JSON (docs/architecture.md#request-path).

Text: each pick is one line `N. Title`; under it, indented, the facts (type · episodes · season),
genres, the predicted score and the link, then its `why:` lines; notes follow the picks.
`--json`: {"recommendations": [{"mal_id", "title", "predicted_score", "why", ...}], "notes": [...],
"model": {...}}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TextIO

from inference.catalog import MEDIA_TYPES
from inference.config import EngineSettings
from inference.engine import Engine, RecommendationResult
from inference.explain import Recommendation
from inference.options import MAX_COUNT, RecommendOptions

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = PROJECT_ROOT / "exports" / "default"


def configure_recommend(parser: argparse.ArgumentParser) -> None:
    from inference.cli import add_list_source_arguments

    add_list_source_arguments(parser)
    parser.add_argument("--count", default="10", help=f"how many picks, 1-{MAX_COUNT} (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="TYPE",
        help=f"only these media types (repeat or comma-separate): {', '.join(MEDIA_TYPES)}",
    )
    parser.add_argument(
        "--genre", action="append", default=[], metavar="G", help="only titles with a genre G"
    )
    parser.add_argument(
        "--exclude-genre", action="append", default=[], metavar="G", help="no titles of genre G"
    )
    parser.add_argument(
        "--no-plan-to-watch",
        action="store_true",
        help="leave out titles already on your plan-to-watch list",
    )
    parser.add_argument("--unaired", action="store_true", help="allow titles not aired yet")
    parser.add_argument("--adult", action="store_true", help="allow adult titles")
    parser.add_argument(
        "--adventurous",
        default="0",
        metavar="X",
        help="0 = familiar (the model's order) .. 1 = adventurous (less popular titles first)",
    )
    parser.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help=f"model bundle folder (default: [engine] bundle in config.toml, {DEFAULT_BUNDLE})",
    )
    parser.add_argument(
        "--providers",
        default=None,
        help="onnxruntime providers: auto, cpu, cuda (default: [engine] providers in config.toml)",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="use the bundle's quantized encoder (default: [engine] precision in config.toml)",
    )


def options_from_args(args: argparse.Namespace) -> RecommendOptions:
    """Checked options; ValueError with a message a user can act on."""
    try:
        count = int(args.count)
    except ValueError:
        raise ValueError(f"--count must be a whole number, not {args.count!r}") from None
    try:
        adventurous = float(args.adventurous)
    except ValueError:
        raise ValueError(
            f"--adventurous must be a number from 0 to 1, not {args.adventurous!r}"
        ) from None
    types = [t.strip() for value in args.type for t in value.split(",") if t.strip()]
    return RecommendOptions(
        count=count,
        media_types=frozenset(types) if types else None,
        include_genres=tuple(args.genre),
        exclude_genres=tuple(args.exclude_genre),
        plan_to_watch=not args.no_plan_to_watch,
        unaired=args.unaired,
        adult=args.adult,
        adventurous=adventurous,
    )


def _engine_settings(args: argparse.Namespace) -> tuple[Path, EngineSettings]:
    """The bundle and [engine] of config.toml (checked as the bot checks it); the flags win."""
    from inference.config import engine_settings, load_toml

    settings = engine_settings(load_toml())
    if args.providers:
        settings = dataclasses.replace(settings, providers=args.providers)
    if args.int8:
        settings = dataclasses.replace(settings, precision="int8")
    bundle = args.bundle if args.bundle is not None else settings.bundle_path()
    return bundle, settings


def run_recommend(args: argparse.Namespace, out: TextIO) -> int:
    import sys

    from inference.cli import load_list

    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bundle, settings = _engine_settings(args)
    # One request: nothing to gather, so no batching wait.
    engine = Engine.from_bundle(bundle, settings=settings, micro_batching=False)
    if args.anilist is not None and args.catalog is None:
        # AniList ids map to MyAnimeList ids through the bundle's own catalogue.
        args.catalog = bundle / "catalog.json.gz"
    anime_list = load_list(args)
    try:
        result = engine.recommend_sync(anime_list, options)
    except ValueError as exc:  # an unknown genre, named with the closest known ones
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.close()
    if args.json:
        json.dump(result.as_json(), out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        for line in render_result(result):
            print(line, file=out)
    return 0


def pick_lines(position: int, rec: Recommendation) -> list[str]:
    lines = [f"{position}. {rec.title}"]
    if rec.title_other:
        lines.append(f"   ({rec.title_other})")
    facts = rec.facts_line()
    if facts:
        lines.append(f"   {facts}")
    if rec.genres:
        lines.append(f"   {', '.join(rec.genres)}")
    if rec.predicted_score is not None:
        lines.append(f"   predicted score {rec.predicted_score:.1f}")
    lines.append(f"   {rec.url}")
    lines.extend(f"   why: {why}" for why in rec.why)
    return lines


def render_result(result: RecommendationResult) -> list[str]:
    lines: list[str] = []
    for position, rec in enumerate(result.recommendations, start=1):
        lines.extend(pick_lines(position, rec))
    lines.extend(f"note: {note}" for note in result.notes)
    return lines
