"""Paired latency of two source trees: the same lists, requests alternating between them.

    git archive <base> | tar -x -C /tmp/base
    python bench/bench_engine_ab.py /tmp/base . --sizes 50,200,500,2000 --requests 200

On a shared, noisy machine two runs of bench/bench_engine.py minutes apart measure the load as much
as the code. Here each tree serves in its own process (loaded once, the default bundle of the
second tree's exports), both get bench_engine's lists, and request i goes to one process and then
the other (the order swapped every request), so both see the same load. Reported per size: p50 and
p99 of each, and the median of the per-request ratio (second / first).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(tree: Path, bundle: Path, size: int, requests: int) -> None:
    """Serve request numbers read from stdin; answer each with its seconds."""
    sys.path.insert(0, str(tree))
    sys.path.insert(0, str(tree / "bench"))
    from bench_engine import random_lists

    from inference.engine import Engine
    from inference.options import RecommendOptions

    engine = Engine.from_bundle(bundle, "cpu", micro_batching=False)
    lists = random_lists(engine.catalog, size, requests, seed=size)
    options = RecommendOptions(count=10)
    for warm in lists[:3]:
        engine.recommend_sync(warm, options)
    print("ready", flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        engine.recommend_sync(lists[int(line)], options)
        print(time.perf_counter() - start, flush=True)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def compare(trees: list[Path], bundle: Path, size: int, requests: int) -> dict[str, float]:
    args = [str(bundle), str(size), str(requests)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(tree), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for tree in trees
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        times: list[list[float]] = [[], []]
        for i in range(requests):
            for k in (0, 1) if i % 2 == 0 else (1, 0):
                proc = procs[k]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"{i}\n")
                proc.stdin.flush()
                times[k].append(float(proc.stdout.readline()))
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait()
    a, b = times
    return {
        "entries": size,
        "first_p50_ms": 1e3 * quantile(a, 0.5),
        "first_p99_ms": 1e3 * quantile(a, 0.99),
        "second_p50_ms": 1e3 * quantile(b, 0.5),
        "second_p99_ms": 1e3 * quantile(b, 0.99),
        "median_ratio": statistics.median(y / x for x, y in zip(a, b, strict=True)),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        tree, bundle, size, requests = sys.argv[2:6]
        worker(Path(tree), Path(bundle), int(size), int(requests))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="source tree (the baseline)")
    parser.add_argument("second", type=Path, help="source tree compared with it")
    parser.add_argument("--bundle", type=Path, default=None, help="default: second/exports/default")
    parser.add_argument("--sizes", default="50,200,500,2000")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    bundle = args.bundle or args.second / "exports" / "default"
    for size in (int(s) for s in args.sizes.split(",")):
        row = compare(
            [args.first.resolve(), args.second.resolve()], bundle.resolve(), size, args.requests
        )
        print(
            f"{row['entries']:>5} entries: p50 {row['first_p50_ms']:.1f} -> "
            f"{row['second_p50_ms']:.1f} ms, p99 {row['first_p99_ms']:.1f} -> "
            f"{row['second_p99_ms']:.1f} ms, median paired ratio {row['median_ratio']:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
