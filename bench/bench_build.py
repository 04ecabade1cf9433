"""Benchmark `python -m training build` against its floor: a bare DuckDB sort of the same file.

    .venv/bin/python bench/bench_build.py --users 75000 --memory-limit 4GB   # ~10M interactions
    .venv/bin/python bench/bench_build.py --users 750000 --memory-limit 4GB  # ~100M

Generates (or reuses) a synthetic Parquet file under data/bench/, then runs, each in its own child
process measured by /usr/bin/time -v (wall time, peak RSS including DuckDB's memory):
  floor: COPY (SELECT * FROM read_parquet(...) ORDER BY user, time NULLS FIRST, row) TO x.parquet
  build: python -m training build (no k-core), same memory limit and threads.
Prints a JSON line per run and a summary; not a test (no asserts on time).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

FLOOR = """
import duckdb, os, sys
src, dst, limit, tmp = sys.argv[1:5]
con = duckdb.connect()
con.execute(f"SET memory_limit = '{limit}'")
con.execute(f"SET temp_directory = '{tmp}'")
con.execute(f"SET threads = {os.cpu_count()}")
con.execute(f"COPY (SELECT * FROM read_parquet('{src}') ORDER BY user, time NULLS FIRST, row) TO '{dst}' (FORMAT parquet)")
"""


def measured(command: list[str]) -> dict[str, float]:
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, cwd=ROOT
    )
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", result.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    assert wall and rss
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return {"wall_s": round(seconds, 1), "peak_rss_mb": round(int(rss.group(1)) / 1024)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users", type=int, default=75_000, help="synthetic users (~133 interactions each)"
    )
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench")
    parser.add_argument(
        "--keep", action="store_true", help="keep the built dataset and sorted copy"
    )
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / f"synthetic-{args.users}-{args.seed}.parquet"
    if not source.exists():
        generated = measured(
            [
                PY,
                "-m",
                "training",
                "synthesize",
                "--users",
                str(args.users),
                "--out",
                str(source),
                "--seed",
                str(args.seed),
            ]
        )
        print(json.dumps({"step": "synthesize", **generated}), flush=True)
    import pyarrow.parquet as pq

    rows = pq.read_metadata(source).num_rows
    sorted_copy, dataset, tmp = (
        args.workdir / "floor.parquet",
        args.workdir / "dataset",
        args.workdir / "floor-tmp",
    )
    try:
        floor = measured(
            [PY, "-c", FLOOR, str(source), str(sorted_copy), args.memory_limit, str(tmp)]
        )
        print(
            json.dumps({"step": "floor (DuckDB COPY ... ORDER BY)", "rows": rows, **floor}),
            flush=True,
        )
        built = measured(
            [
                PY,
                "-m",
                "training",
                "build",
                str(source),
                "--out",
                str(dataset),
                "--memory-limit",
                args.memory_limit,
            ]
        )
        print(json.dumps({"step": "build", "rows": rows, **built}), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not args.keep:
            sorted_copy.unlink(missing_ok=True)
            shutil.rmtree(dataset, ignore_errors=True)
    summary = {
        "rows": rows,
        "memory_limit": args.memory_limit,
        "cpus": os.cpu_count(),
        "floor": floor,
        "build": built,
        "build_over_floor": round(built["wall_s"] / max(floor["wall_s"], 0.1), 2),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
