"""What filters and re-ranking cost and buy on a held-out split (docs/architecture.md#filters-and-re-ranking, docs/evaluation.md#metrics).

    python -m training export --finetuned runs/anime-finetune/ckpt.pt \
        --ranker runs/anime-ranker/ckpt.pt --catalog data/anime-cu/catalog.json.gz \
        --out exports/holdout --checkpoint-facts
    python bench/bench_rerank_quality.py --bundle exports/holdout --data data/anime-cu \
        --split random --users 1000 --out bench/results/rerank-quality.json

The bundle must keep the ranker checkpoint's item facts (`--checkpoint-facts`, fitted on the
training part): a served bundle's facts are refitted on every interaction, test entries included,
and would be scored on what they were fitted on.

For each test user (history = train + validation entries, targets = test entries), through the
bundle's ONNX models:
- "ranker": the ranker's own top 10 among unseen items (no filters, no re-ranking);
- "ranker+filters": its top 10 among the items the filters allow (default options);
- "engine <method>": the engine's finished reply (filters, franchise limit, diversity, redirects).
Reported: NDCG@10 and Recall@10 (binary, normalized by min(10, |targets|)), the NDCG given up
against the ranker's own order, franchise duplicates per list, intra-list diversity (mean pairwise
1 - similarity, the similarity the re-ranker uses) and catalogue coverage over all lists.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.animelist import STATUS_BY_CODE, AnimeList, ListEntry  # noqa: E402
from inference.encoding import entries_from_list  # noqa: E402
from inference.engine import GENRE_WEIGHT, Engine  # noqa: E402
from inference.filters import eligible  # noqa: E402
from inference.options import RecommendOptions  # noqa: E402
from inference.rerank import (  # noqa: E402
    ItemSimilarity,
    catalogue_coverage,
    franchise_duplicates,
    intra_list_diversity,
)
from training.batches import UserParts  # noqa: E402
from training.dataset import TEST, TRAIN, VALIDATION, Dataset, History  # noqa: E402
from training.metrics import ndcg_at_k, recall_at_k  # noqa: E402

K = 10


def as_list(history: History, keys: list[int], name: str) -> AnimeList:
    entries = [
        ListEntry(
            mal_id=int(keys[int(i)]),
            status=STATUS_BY_CODE[int(st)],
            score=float(sc) if sc else None,
            episodes_watched=max(int(p), 0),
        )
        for i, sc, st, p in zip(
            history.items, history.scores, history.statuses, history.progress, strict=True
        )
    ]
    return AnimeList(source="mal", username=name, entries=entries)


def summarize(
    name: str,
    lists: list[np.ndarray],
    targets: list[np.ndarray],
    engine: Engine,
    similarity: ItemSimilarity,
) -> dict[str, Any]:
    franchise = np.array([-1 if i.franchise_id is None else i.franchise_id for i in engine.catalog])
    ndcg = [ndcg_at_k(lst, t, K) for lst, t in zip(lists, targets, strict=True)]
    recall = [recall_at_k(lst, t, K) for lst, t in zip(lists, targets, strict=True)]
    dups = [franchise_duplicates(franchise[lst]) for lst in lists]
    diversity = [intra_list_diversity(similarity, lst.tolist()) for lst in lists]
    return {
        "lists": name,
        f"NDCG@{K}": float(np.mean(ndcg)),
        f"Recall@{K}": float(np.mean(recall)),
        "franchise_duplicates_per_list": float(np.mean(dups)),
        "lists_with_franchise_duplicates": int(sum(d > 0 for d in dups)),
        "intra_list_diversity": float(np.mean(diversity)),
        "coverage": catalogue_coverage((lst.tolist() for lst in lists), len(engine.catalog)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "exports" / "holdout")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "anime-cu")
    parser.add_argument("--split", default="random")
    parser.add_argument("--users", type=int, default=1000, help="test users sampled (seeded)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    manifest = json.loads((args.bundle / "manifest.json").read_text())
    facts_from = manifest["training_data"].get("item_facts_from", "ranker checkpoint")
    if not facts_from.startswith("ranker checkpoint"):
        sys.exit(
            f"error: {args.bundle}'s item facts were fitted on {facts_from}, test entries "
            "included; export a hold-out copy with --checkpoint-facts (see this file's docstring)"
        )
    dataset = Dataset(args.data)
    parts = UserParts(dataset, args.split)
    keys = [int(k) for k in dataset.item_keys()]
    users = parts.users_with(min_train=1, label=TEST)
    rng = np.random.default_rng(0)
    users = np.sort(rng.choice(users, size=min(args.users, len(users)), replace=False))
    engines = {
        "engine dpp θ=0.7": Engine.from_bundle(
            args.bundle, "cpu", micro_batching=False, method="dpp", tradeoff=0.7
        ),
        "engine mmr λ=0.7": Engine.from_bundle(
            args.bundle, "cpu", micro_batching=False, method="mmr", tradeoff=0.7
        ),
        "engine dpp θ=0.9": Engine.from_bundle(
            args.bundle, "cpu", micro_batching=False, method="dpp", tradeoff=0.9
        ),
    }
    base = next(iter(engines.values()))
    model = base.model
    assert model is not None
    if [i.mal_id for i in base.catalog] != keys:
        print("error: the bundle's vocabulary is not this dataset's", file=sys.stderr)
        return 2
    genres = model.facts.genres if model.facts.genres.shape[1] else None
    similarity = ItemSimilarity(
        model.item_embeddings, genres, GENRE_WEIGHT if genres is not None else 0.0
    )
    options = RecommendOptions(count=K)
    lists: dict[str, list[np.ndarray]] = {"ranker": [], "ranker+filters": []}
    lists.update({name: [] for name in engines})
    targets = []
    for user in tqdm(users.tolist(), desc="users", file=sys.stderr):
        history = parts.part(user, (TRAIN, VALIDATION))
        target = parts.part(user, (TEST,)).items.astype(np.int64)
        anime_list = as_list(history, keys, f"u{user}")
        entries, _ = entries_from_list(anime_list.entries, base.item_index)
        (scored,) = model.run([entries])
        utilities = scored.utilities.copy()
        utilities[history.items.astype(np.int64)] = -np.inf
        lists["ranker"].append(np.argsort(-utilities, kind="stable")[:K])
        allowed = eligible(base.catalog, anime_list, options, franchises=base.franchises)
        filtered = np.where(allowed.mask, utilities, -np.inf)
        lists["ranker+filters"].append(np.argsort(-filtered, kind="stable")[:K])
        for name, engine in engines.items():
            result = engine.recommend_sync(anime_list, options)
            picks = [engine.catalog.index_of(r.mal_id) for r in result.recommendations]
            lists[name].append(np.array(picks, dtype=np.int64))
        targets.append(target)
    rows = [summarize(name, lst, targets, base, similarity) for name, lst in lists.items()]
    reference = rows[0][f"NDCG@{K}"]
    for row in rows:
        row["NDCG_given_up_vs_ranker"] = 1.0 - row[f"NDCG@{K}"] / reference if reference else None
    document = {
        "bundle": str(args.bundle),
        "data": str(args.data),
        "split": args.split,
        "users": len(users),
        "k": K,
        "rows": rows,
    }
    text = json.dumps(document, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    for engine in engines.values():
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
