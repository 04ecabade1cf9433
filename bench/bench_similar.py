"""How well "more like this title" finds what the same users liked, against item-kNN (`/similar`).

    python bench/bench_similar.py --bundle exports/default --data data/anime-cu --split random \
        --queries 2000 --neighbours-cache data/ease-train-random.npz --out bench/results/similar.json

Held-out pairs: for each sampled user with liked held-out titles, one title they liked in the
training part (seeded draw) is the query and the titles they liked in the held-out part are the
targets ("liked": scored at or above their own mean training score; for a user who scores nothing,
completed). Validation targets choose the blend; test targets report it. Each method ranks every
title except the query's own franchise (which `/similar` leaves out by default) and the user's
training titles; recall@20 = hits / min(20, |targets|). On test, the share of each method's top 20
among the query's 64 item-kNN neighbours says how much the list is still about the query.

Methods, all fitted on the training part only:
- item-kNN: cosine of the items' co-occurrence columns (binary user x item matrix), in full and
  cut to 64 per title as `training.export` writes them (`training.neighbours.fit_cooccurrence`);
- EASE: the query's row of sparse EASE weights (λ = 100, 64 per row, as the ranker's item facts),
  over its largest magnitude, the cosine of item vectors ordering the rest only as a tie-break;
- popularity: log(1 + count), 0..1;
- item vectors: cosine of the bundle's item embeddings;
- the older blends `b * cos + (1 - b) * EASE` for b in 0.25, 0.5, 0.75 (served for bundles
  without item-kNN neighbours);
- `inference.similar.ItemSimilarity` with item-kNN: kNN + e * EASE + v * vectors + p * popularity
  over a grid; the best on validation with p at most `MAX_POPULARITY` is what should be served
  (`inference.similar.WEIGHTS`), and the best with p unbounded is reported beside it.

The bundle's item vectors must come from a model fine-tuned on this split's training part (the
default bundle's manifest says which split); its own EASE neighbours are not used, since the
default bundle refits them on every interaction, test entries included.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.animelist import STATUS_CODES, Status  # noqa: E402
from inference.bundle import load_bundle  # noqa: E402
from inference.similar import WEIGHTS, BlendWeights, ItemSimilarity  # noqa: E402
from training.batches import UserParts  # noqa: E402
from training.dataset import TEST, TRAIN, VALIDATION, Dataset  # noqa: E402
from training.neighbours import (  # noqa: E402
    fit_cooccurrence,
    fit_neighbours,
    interaction_matrix,
)
from training.ranker import item_statistics  # noqa: E402

K = 20
BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)
EASE_LAMBDA, EASE_K = 100.0, 64
COOC_K = 64  # as `training.export` writes them
GRID_EASE = (0.0, 0.1, 0.25)
GRID_VECTORS = (0.0, 0.02, 0.05)
GRID_POPULARITY = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 3.0)
# Popularity alone finds more of these held-out titles than item-kNN (a random split rewards it):
# above this weight the blend's lists turn into the most popular titles (see the module doc).
MAX_POPULARITY = 0.3
_COMPLETED = STATUS_CODES[Status.COMPLETED]
_DROPPED = STATUS_CODES[Status.DROPPED]
_PLANNED = STATUS_CODES[Status.PLAN_TO_WATCH]


def liked_mask(scores: np.ndarray, statuses: np.ndarray, mean: float | None) -> np.ndarray:
    """`inference.explain.is_liked` on dataset arrays."""
    usable = (statuses != _DROPPED) & (statuses != _PLANNED)
    if mean is None:
        return usable & ((statuses == _COMPLETED) | (statuses == 5))  # 5: rewatching
    return usable & (scores > 0) & (scores >= mean)


def make_queries(
    parts: UserParts, label: int, n: int, franchise: np.ndarray, seed: int
) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(user, query item, target items, the user's training items) for up to `n` users."""
    rng = np.random.default_rng(seed)
    users = parts.users_with(min_train=1, label=label)
    rng.shuffle(users)
    out = []
    for user in users.tolist():
        train = parts.part(user, (TRAIN,))
        held = parts.part(user, (label,))
        scored = train.scores[train.scores > 0]
        mean = float(scored.mean()) if len(scored) else None
        liked_train = train.items[liked_mask(train.scores, train.statuses, mean)]
        liked_held = held.items[liked_mask(held.scores, held.statuses, mean)]
        if len(liked_train) == 0 or len(liked_held) == 0:
            continue
        query = int(rng.choice(liked_train))
        fid = franchise[query]
        targets = np.array(
            [t for t in liked_held.tolist() if fid < 0 or franchise[t] != fid], dtype=np.int64
        )
        if len(targets) == 0:
            continue
        out.append((user, query, targets, np.asarray(train.items, dtype=np.int64)))
        if len(out) == n:
            break
    return out


def top_k(scores: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    ranked = np.array(scores, dtype=np.float64, copy=True)
    ranked[exclude] = -np.inf
    return np.argpartition(-ranked, K)[:K]


def evaluate(
    queries: list[tuple[int, int, np.ndarray, np.ndarray]],
    methods: dict[str, Any],
    franchise: np.ndarray,
    neighbours: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """(recall@K, the share of the top K among the query's item-kNN `neighbours`) per method,
    averaged over the queries; the second is empty without `neighbours`."""
    recall = {name: 0.0 for name in methods}
    near = {name: 0.0 for name in methods}
    for _, query, targets, train in queries:
        fid = franchise[query]
        own = np.flatnonzero(franchise == fid) if fid >= 0 else np.array([query])
        exclude = np.unique(np.concatenate([own, train, [query]]))
        for name, score in methods.items():
            top = top_k(score(query), exclude)
            recall[name] += len(np.intersect1d(top, targets)) / min(K, len(targets))
            if neighbours is not None:
                near[name] += len(np.intersect1d(top, neighbours[query])) / K
    n = max(len(queries), 1)
    shares = {name: v / n for name, v in near.items()} if neighbours is not None else {}
    return {name: v / n for name, v in recall.items()}, shares


def _relative(path: Path) -> str:
    """A path as the command line would give it from the project root."""
    try:
        return str(path.absolute().relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "exports" / "default")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "anime-cu")
    parser.add_argument("--split", default="random")
    parser.add_argument("--queries", type=int, default=2000, help="per part (seeded)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--neighbours-cache",
        type=Path,
        default=None,
        help="an .npz to keep the training-part EASE fit in (written when absent)",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    bundle = load_bundle(args.bundle)
    dataset = Dataset(args.data)
    keys = [int(k) for k in dataset.item_keys()]
    if [item.mal_id for item in bundle.catalog] != keys:
        print(f"error: {args.bundle}'s vocabulary is not {args.data}'s", file=sys.stderr)
        return 2
    trained_on = bundle.manifest.get("training_data", {})
    if trained_on.get("split") != args.split:
        print(
            f"error: {args.bundle} was fine-tuned on the {trained_on.get('split')!r} split, "
            f"not {args.split!r}: its item vectors have seen the held-out part",
            file=sys.stderr,
        )
        return 2
    facts = np.load(bundle.file(str(bundle.encoding.get("item_facts", "item_facts.npz"))))
    embeddings = facts["item_embeddings"]
    franchise = np.array(
        [-1 if item.franchise_id is None else item.franchise_id for item in bundle.catalog],
        dtype=np.int64,
    )
    parts = UserParts(dataset, args.split)
    matrix = interaction_matrix(parts)  # training part only
    if args.neighbours_cache is not None and args.neighbours_cache.exists():
        cached = np.load(args.neighbours_cache)
        near, weights = cached["near"], cached["w"]
    else:
        print("fitting EASE on the training part...", file=sys.stderr, flush=True)
        near, weights = fit_neighbours(matrix, EASE_LAMBDA, EASE_K)
        if args.neighbours_cache is not None:
            np.savez(args.neighbours_cache, near=near, w=weights)
    gram = (matrix.T @ matrix).toarray().astype(np.float32)
    norms = np.sqrt(np.diag(gram)).astype(np.float32)
    cooc_items, cooc_weights = fit_cooccurrence(matrix, COOC_K)
    train = np.asarray(parts.labels) == TRAIN
    popularity, _, _ = item_statistics(
        np.asarray(dataset.items)[train], np.asarray(dataset.scores)[train], parts.n_items
    )
    fitted_s = time.perf_counter() - started

    def knn(query: int) -> np.ndarray:
        denominator = norms * norms[query]
        return np.divide(
            gram[query], denominator, out=np.zeros_like(gram[query]), where=denominator > 0
        )

    similarities = {b: ItemSimilarity(embeddings, near, weights, blend=b) for b in BLENDS}
    served = ItemSimilarity(
        embeddings,
        near,
        weights,
        cooc_items=cooc_items,
        cooc_weights=cooc_weights,
        popularity=popularity,
    )

    def ease(query: int) -> np.ndarray:
        sim = similarities[0.0]
        return sim.cooccurrence(query) + 1e-6 * sim.cosine(query)

    def knn_top(query: int) -> np.ndarray:
        return served.knn(query) + 1e-6 * served.cosine(query)

    # The views of one query, computed once for every blend of the grid.
    views: dict[int, tuple[np.ndarray, ...]] = {}

    def view(query: int) -> tuple[np.ndarray, ...]:
        if query not in views:
            views.clear()
            views[query] = (served.knn(query), served.cooccurrence(query), served.cosine(query))
        return views[query]

    def blended(w: BlendWeights) -> Any:
        def score(query: int) -> np.ndarray:
            k, e, c = view(query)
            return k + w.ease * e + w.vectors * c + w.popularity * served.popularity

        return score

    def label(w: BlendWeights) -> str:
        return f"kNN + {w.ease:g} EASE + {w.vectors:g} vectors + {w.popularity:g} popularity"

    baselines: dict[str, Any] = {
        "item-kNN (cosine co-occurrence)": knn,
        f"item-kNN, {COOC_K} per title": knn_top,
        "EASE only": ease,
        "popularity only": lambda query: served.popularity + 1e-6 * served.knn(query),
    }
    for b in BLENDS[1:]:
        name = "item vectors only" if b == 1.0 else f"blend {b:g}"
        baselines[name] = similarities[b].scores
    grid = {
        label(w): w
        for w in (
            BlendWeights(e, v, p)
            for e, v, p in itertools.product(GRID_EASE, GRID_VECTORS, GRID_POPULARITY)
        )
    }
    validation = make_queries(parts, VALIDATION, args.queries, franchise, seed=1)
    test = make_queries(parts, TEST, args.queries, franchise, seed=2)
    print(f"{len(validation)} validation and {len(test)} test queries", file=sys.stderr, flush=True)
    on_grid, _ = evaluate(validation, {name: blended(w) for name, w in grid.items()}, franchise)
    capped = [name for name, w in grid.items() if w.popularity <= MAX_POPULARITY]
    chosen = max(capped, key=lambda name: on_grid[name])
    unbounded = max(on_grid, key=lambda name: on_grid[name])
    reported = {**baselines, f"served: {label(WEIGHTS)}": blended(WEIGHTS)}
    if chosen != label(WEIGHTS):
        reported[f"best on validation: {chosen}"] = blended(grid[chosen])
    reported[f"best on validation, popularity unbounded: {unbounded}"] = blended(grid[unbounded])
    on_validation, _ = evaluate(validation, reported, franchise)
    on_test, near_share = evaluate(test, reported, franchise, cooc_items)
    blends = {"EASE only": 0.0, **{f"blend {b:g}": b for b in BLENDS[1:-1]}}
    blends["item vectors only"] = 1.0
    fallback = max(blends, key=lambda name: on_validation[name])
    result = {
        "command": "python bench/bench_similar.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "bundle": _relative(args.bundle),
        "item_vectors_from": trained_on.get("finetuned_checkpoint"),
        "data": _relative(args.data),
        "split": args.split,
        "k": K,
        "ease": {"lambda": EASE_LAMBDA, "k": EASE_K, "fitted_on": "training part"},
        "item_knn": {"k": COOC_K, "fitted_on": "training part"},
        "queries": {"validation": len(validation), "test": len(test)},
        "recall@20": {"validation": on_validation, "test": on_test},
        "share_of_top20_among_the_query_knn_neighbours_test": near_share,
        "max_popularity_weight": MAX_POPULARITY,
        "blend_chosen_on_validation": {
            "method": chosen,
            "weights": dataclasses.asdict(grid[chosen]),
            "served": dataclasses.asdict(WEIGHTS),
        },
        "grid_on_validation": dict(sorted(on_grid.items(), key=lambda kv: -kv[1])),
        "without_knn_neighbours": {"method": fallback, "blend": blends[fallback]},
        "seconds": round(time.perf_counter() - started, 1),
        "fit_seconds": round(fitted_s, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
