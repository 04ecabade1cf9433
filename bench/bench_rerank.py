"""How long picking 10 diverse items takes with MMR and fast greedy DPP, against a floor.

For M = 200 and 1,000 candidates with d = 64 clustered random item embeddings (L2-normalized) and
random utilities, each method picks N = 10 with a franchise constraint (groups of about 3). Two similarity
sources: embeddings alone, and embeddings blended with genre Jaccard (43 genres, weight 0.3). Floors
in the same run: one matrix–vector product over the candidates (E·q, M×d), and N of them (the
similarity rows either greedy method must compute at least). Also printed, to show the methods do
different things: intra-list diversity (mean pairwise 1 − cosine) and the share of the top-10 utility
sum kept, against plain top-10 by utility.

Run: .venv/bin/python bench/bench_rerank.py [--repeats 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.rerank import ItemSimilarity, dpp, intra_list_diversity, mmr  # noqa: E402

N_PICKS = 10
DIM = 64
N_GENRES = 43


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-call allocations and BLAS thread start-up are not the steady state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run_case(
    rng: np.random.Generator, m: int, genre_weight: float, repeats: int
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    # Clustered like real item embeddings (genres, studios...): 20 centres plus noise, so
    # near-duplicates exist and diversity has something to do.
    centres = rng.normal(size=(20, DIM))
    emb = centres[rng.integers(0, 20, size=m)] + 0.6 * rng.normal(size=(m, DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    genres = rng.random((m, N_GENRES)) < 0.08
    utilities = rng.normal(size=m)
    franchises = rng.integers(0, m // 3, size=m)
    sim = ItemSimilarity(emb, genres if genre_weight else None, genre_weight)
    pick_mmr = functools.partial(mmr, utilities, sim, N_PICKS, lam=0.7, franchises=franchises)
    pick_dpp = functools.partial(dpp, utilities, sim, N_PICKS, theta=0.7, franchises=franchises)
    timings = {
        "MMR λ=0.7": median_ms(pick_mmr, repeats),
        "DPP θ=0.7": median_ms(pick_dpp, repeats),
        "floor: 1 mat-vec": median_ms(functools.partial(np.matmul, emb, emb[0]), repeats),
        "floor: 10 mat-vecs": median_ms(
            functools.partial(lambda e: [e @ e[j] for j in range(N_PICKS)], emb), repeats
        ),
    }
    cosine = ItemSimilarity(emb)
    top = np.argsort(-utilities)[:N_PICKS]
    quality = {}
    for name, picks in (("top-10", top), ("MMR", pick_mmr()), ("DPP", pick_dpp())):
        kept = float(utilities[picks].sum() / utilities[top].sum())
        quality[name] = (intra_list_diversity(cosine, picks.tolist()), kept)
    return timings, quality


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    cases = [(m, w) for m in (200, 1000) for w in (0.0, 0.3)]
    for m, genre_weight in tqdm(cases, desc="cases", file=sys.stderr):
        timings, quality = run_case(rng, m, genre_weight, args.repeats)
        rows.append((m, genre_weight, timings, quality))

    print(f"pick {N_PICKS} of M candidates, d={DIM}, median of {args.repeats} runs (ms)")
    header = ["M", "genre w", *rows[0][2].keys()]
    print(" | ".join(header))
    for m, w, timings, _ in rows:
        print(" | ".join([str(m), f"{w:.1f}", *(f"{t:.3f}" for t in timings.values())]))
    print("\nintra-list diversity (1 − cos) / share of top-10 utility kept")
    for m, w, _, quality in rows:
        cells = [f"{name} {ild:.3f}/{kept:.2f}" for name, (ild, kept) in quality.items()]
        print(f"M={m} w={w:.1f}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
