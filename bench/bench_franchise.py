"""How often the franchise rules do what a fan expects, on the franchise fixture.

tests/fixtures/franchises.json holds 65 franchises written from public knowledge (remakes, split
cours, films as sequels, prequels made later, long runners, spin-offs, recaps) with the expected
entry point, main order and side stories. Scored (see tests/inference/franchise_fixture.py):

- entry points: for an empty list the only member offered is the expected entry point, and every
  held-back member that is redirected goes to it;
- "prequel completed?" decisions on constructed lists: the next entry is offered once the ones
  before it are completed and the one after it is not; nothing after a dropped or half-watched
  entry; a planned later entry stays unless its prequel was dropped; side stories once what they
  need is completed and not one step earlier; recaps never.

Two catalogues: "relations" (the fixture's AniList relations through the live catalogue builder)
and "approximation" (the offline catalogue built from ANIMEREC_SHARED_DATA: the real CSV and
bangumi-data rows of those MAL ids among the 17k others, no relations; items it lacks are left
out of the score and counted). `--failures` lists every miss.

Run: .venv/bin/python bench/bench_franchise.py [--failures] [--out bench/results/franchise.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import SHARED_DATA  # noqa: E402
from tests.inference.franchise_fixture import (  # noqa: E402
    Score,
    load_fixture,
    offline_catalog,
    relations_catalog,
    score,
)


def row(name: str, result: Score) -> str:
    return (
        f"| {name} | {result.entry_right}/{result.entry_total} ({result.entry_accuracy:.1%}) "
        f"| {result.decisions_right}/{result.decisions_total} ({result.decision_accuracy:.1%}) "
        f"| {result.skipped_franchises} / {result.skipped_decisions} |"
    )


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--failures", action="store_true", help="list every miss")
    cli.add_argument("--out", type=Path, help="write the figures as JSON")
    args = cli.parse_args()
    franchises = load_fixture()
    results = {"relations": score(relations_catalog(franchises), franchises)}
    folder = SHARED_DATA / "catalog"
    if folder.is_dir():
        results["approximation"] = score(offline_catalog(folder), franchises)
    else:
        print(f"approximation skipped: {folder} is absent", file=sys.stderr)
    print(f"{len(franchises)} franchises, {sum(len(f.items) for f in franchises)} items\n")
    print("| catalogue | entry points | prequel decisions | left out (franchises / decisions) |")
    print("|---|---:|---:|---:|")
    for name, result in results.items():
        print(row(name, result))
    if args.failures:
        for name, result in results.items():
            print(f"\n{name}: {len(result.failures)} misses")
            for failure in result.failures:
                print(f"  {failure}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        document = {
            name: {
                "entry_points": [r.entry_right, r.entry_total],
                "decisions": [r.decisions_right, r.decisions_total],
                "left_out": {"franchises": r.skipped_franchises, "decisions": r.skipped_decisions},
                "misses": r.failures,
            }
            for name, r in results.items()
        }
        args.out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
