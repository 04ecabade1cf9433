"""Serving benchmarks of a model bundle (docs/evaluation.md#benchmarks).

    python bench/bench_engine.py --bundle exports/default --out bench/results/engine.json

- latency: a parsed list (50, 200, 500, 2,000 entries) to the finished annotated reply of 10 picks,
  one request at a time: p50/p99, beside the floor in the same run (the encoder's FLOPs for that
  list over a matrix-multiply rate measured with numpy here and now);
- throughput: 32 concurrent `await engine.recommend(...)`, finished replies per second, with and
  without micro-batching;
- bundle load time (verify hashes, open both sessions, build indexes), median of 3;
- resident memory of a fresh process after loading and serving 100 requests.

Lists are drawn from the bundle's own catalogue, popular titles more often (as real lists are),
with random statuses and scores; every size gets different lists.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.animelist import AnimeList, ListEntry, Status  # noqa: E402
from inference.catalog import Catalog  # noqa: E402
from inference.engine import Engine  # noqa: E402
from inference.options import RecommendOptions  # noqa: E402

STATUSES = (
    [Status.COMPLETED] * 6
    + [Status.WATCHING, Status.DROPPED, Status.ON_HOLD]
    + [Status.PLAN_TO_WATCH] * 2
)


def random_lists(catalog: Catalog, size: int, n: int, seed: int) -> list[AnimeList]:
    rng = np.random.default_rng(seed)
    pop = np.array([max(item.popularity or 1, 1) for item in catalog], dtype=np.float64)
    weights = np.sqrt(pop) / np.sqrt(pop).sum()
    size = min(size, len(catalog))
    lists = []
    for u in range(n):
        items = rng.choice(len(catalog), size=size, replace=False, p=weights)
        entries = []
        for i in items.tolist():
            status = STATUSES[int(rng.integers(len(STATUSES)))]
            scored = status != Status.PLAN_TO_WATCH and rng.random() < 0.7
            entries.append(
                ListEntry(
                    mal_id=catalog[i].mal_id,
                    status=status,
                    score=float(rng.integers(3, 11)) if scored else None,
                    episodes_watched=int(rng.integers(0, 13)),
                    updated_at=1_600_000_000 + int(rng.integers(0, 10**8)),
                )
            )
        lists.append(AnimeList(source="mal", username=f"bench{size}-{u}", entries=entries))
    return lists


def matmul_rate(d: int = 512, repeats: int = 20) -> float:
    """float32 FLOP/s of numpy matmul on this machine, now (best of `repeats`)."""
    a = np.random.default_rng(0).standard_normal((d, d), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((d, d), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * d**3 / best


def encoder_flops(length: int, d: int, layers: int, n_items: int) -> float:
    """Forward FLOPs of one list: the blocks (qkv, projection, MLP: 12·d² per token, plus
    attention scores and values 4·L·d per token), the watch logits over every item and the entry
    head over every item (its item half is precomputed: d·d for the user half, 2·d·7 per item)."""
    blocks = layers * (2 * 12 * d * d * length + 4 * length * length * d)
    logits = 2 * d * n_items
    entry_head = 2 * d * d + n_items * (d + 2 * d * 7)
    return float(blocks + logits + entry_head)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def latency(engine: Engine, sizes: list[int], requests: int, rate: float) -> list[dict[str, Any]]:
    model = engine.model
    assert model is not None
    d = int(model.item_embeddings.shape[1])
    layers = int(model.encoding.get("n_layers", 2))
    rows = []
    options = RecommendOptions(count=10)
    for size in sizes:
        lists = random_lists(engine.catalog, size, requests, seed=size)
        for warm in lists[:3]:
            engine.recommend_sync(warm, options)
        times = []
        for lst in tqdm(lists, desc=f"latency {size}", file=sys.stderr, leave=False):
            start = time.perf_counter()
            result = engine.recommend_sync(lst, options)
            times.append(time.perf_counter() - start)
            assert len(result.recommendations) == 10
        length = min(size, model.max_len - 1) + 1
        floor = encoder_flops(length, d, layers, model.n_items) / rate
        rows.append(
            {
                "entries": size,
                "tokens": length,
                "requests": requests,
                "p50_ms": 1e3 * percentile(times, 50),
                "p99_ms": 1e3 * percentile(times, 99),
                "mean_ms": 1e3 * statistics.fmean(times),
                "floor_ms": 1e3 * floor,
            }
        )
    return rows


async def _throughput(engine: Engine, lists: list[AnimeList], concurrency: int) -> dict[str, Any]:
    options = RecommendOptions(count=10)
    queue = list(lists)
    done = 0

    async def client() -> None:
        nonlocal done
        while queue:
            lst = queue.pop()
            result = await engine.recommend(lst, options)
            assert len(result.recommendations) == 10
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    return {"requests": done, "seconds": seconds, "replies_per_s": done / seconds}


def throughput(bundle: Path, providers: str, size: int, n: int, concurrency: int) -> list[dict]:
    rows = []
    for batching in (True, False):
        engine = Engine.from_bundle(bundle, providers, micro_batching=batching, workers=2)
        lists = random_lists(engine.catalog, size, n, seed=7)
        asyncio.run(_throughput(engine, lists[:concurrency], concurrency))  # warm-up
        row = asyncio.run(_throughput(engine, lists, concurrency))
        row.update({"micro_batching": batching, "concurrency": concurrency, "entries": size})
        if batching:
            row["batches"] = engine._batcher.batches_run
            row["largest_batch"] = engine._batcher.largest_batch
        engine.close()
        rows.append(row)
    return rows


def load_time(bundle: Path, providers: str) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        engine = Engine.from_bundle(bundle, providers)
        times.append(time.perf_counter() - start)
        engine.close()
    return statistics.median(times)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_child(bundle: Path, providers: str) -> None:
    """Run in a fresh process: load, serve 100 requests of 500 entries, print resident memory."""
    engine = Engine.from_bundle(bundle, providers)
    after_load = rss_mb()
    options = RecommendOptions(count=10)
    for lst in random_lists(engine.catalog, 500, 100, seed=3):
        engine.recommend_sync(lst, options)
    print(json.dumps({"rss_after_load_mb": after_load, "rss_after_100_requests_mb": rss_mb()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "exports" / "default")
    parser.add_argument("--providers", default="cpu")
    parser.add_argument("--sizes", default="50,200,500,2000")
    parser.add_argument("--requests", type=int, default=200, help="per size, for latency")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--throughput-requests", type=int, default=640)
    parser.add_argument("--throughput-entries", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.bundle, args.providers)
        return 0

    rate = matmul_rate()
    engine = Engine.from_bundle(args.bundle, args.providers, micro_batching=False)
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {
        "bundle": str(args.bundle),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "matmul_gflops": rate / 1e9,
        "latency": latency(engine, sizes, args.requests, rate),
    }
    engine.close()
    results["throughput"] = throughput(
        args.bundle,
        args.providers,
        args.throughput_entries,
        args.throughput_requests,
        args.concurrency,
    )
    results["load_s"] = load_time(args.bundle, args.providers)
    child = subprocess.run(
        [sys.executable, __file__, "--bundle", str(args.bundle), "--rss-child"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    results["memory"] = json.loads(child.stdout.strip().splitlines()[-1])
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
