"""How command parsing scales with the length of a typed line, against the parser it replaced.

A chat user can paste anything, and parsing runs on the event loop, so its cost must grow linearly
with the line. Each size is a `/recommend` line of repeated `--genre Action` options; both parsers
read it whole (the line cap, `[bot] max_line_chars`, is lifted so the parser itself is measured):

- ours: `bot.parsing.parse_command` (one regex pass to words, one pass over the options),
- before: `shlex.split` + argparse with `action="append"`, as the bot parsed lines until it was
  replaced (shlex builds tokens by string concatenation; argparse copies an "append" list on every
  repeat and rescans the option positions for each option).

The ratio "before / ours" at each size, and each parser's growth from one size to the next (2.0
for linear in a size step of x2, 4.0 for quadratic), come from one run.

Run: .venv/bin/python bench/bench_parse_command.py [--sizes 16000,32000,64000,128000]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.parsing import parse_command  # noqa: E402


def before_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="/recommend", add_help=False, allow_abbrev=False)
    p.add_argument("username", nargs="?")
    p.add_argument("--genre", action="append", default=[])
    return p


def parse_before(line: str) -> int:
    tokens = shlex.split(line.partition(" ")[2])
    return len(before_parser().parse_args(tokens).genre)


def parse_ours(line: str) -> int:
    command = parse_command(line, max_chars=len(line))
    return len(command.genres)  # type: ignore[union-attr]


def best_of(fn: Callable[[str], int], line: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(line)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--sizes", default="16000,32000,64000,128000", help="line lengths (chars)")
    cli.add_argument("--repeats", type=int, default=3)
    args = cli.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'chars':>8} {'options':>8} {'ours ms':>9} {'before ms':>10} {'before/ours':>12}")
    previous: tuple[float, float] | None = None
    growth: list[str] = []
    for size in sizes:
        line = "/recommend someone " + " ".join(["--genre Action"] * (size // 15))
        n = size // 15
        assert parse_ours(line) == parse_before(line) == n
        ours = best_of(parse_ours, line, args.repeats)
        before = best_of(parse_before, line, args.repeats)
        print(
            f"{len(line):>8} {n:>8} {ours * 1e3:>9.1f} {before * 1e3:>10.1f} {before / ours:>12.0f}"
        )
        if previous is not None:
            growth.append(f"ours x{ours / previous[0]:.1f}, before x{before / previous[1]:.1f}")
        previous = (ours, before)
    print("growth per size step:", "; ".join(growth))


if __name__ == "__main__":
    main()
