"""Cold-title protocol, two checks `evaluate --protocol cold` does not make.

    python bench/bench_cold.py --data data/anime-cu \
        --model runs/anime-cold-finetune/ckpt.pt --catalog data/anime-cu/catalog.json.gz

On the `cold` split's test phase (history = every training entry, targets = the user's entries of
the hidden titles), for our content model and the content-only baseline:
- the share of hidden titles in each user's top 20 over the full ranking (every title someone in
  the data listed, as `evaluate` ranks; the hidden titles are ~10% of what is left to rank): a
  model that lifted every title it has no ID part for would win the full-ranking figures without
  reading content;
- NDCG@10 and Recall@20 when only the hidden titles are ranked, so the comparison is between
  readings of content alone.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.content import ContentBaseline
from training.dataset import TEST, TRAIN, VALIDATION, Dataset
from training.evaluate import build_phase
from training.metrics import ndcg_at_k, recall_at_k, top_k
from training.models_eval import TransformerRecommender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", required=True, help="a content model's fine-tune checkpoint")
    parser.add_argument("--catalog", required=True, help="vocabulary-order catalogue")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    dataset = Dataset(args.data)
    labels = np.asarray(dataset.split("cold"))
    phase = build_phase(dataset, labels, (TRAIN, VALIDATION), TEST, "test")
    hidden = np.zeros(dataset.n_items, dtype=bool)
    hidden[np.unique(np.asarray(dataset.items)[labels == TEST])] = True
    ours = TransformerRecommender(args.model, "ours", ("finetune", "pretrain"))
    content = ContentBaseline(args.catalog, "cosine")
    report: dict[str, object] = {"users": len(phase.users), "hidden_titles": int(hidden.sum())}
    for name, model in (("ours", ours), ("content", content)):
        model.fit(phase.data)
        shares, full_ndcg, cold_ndcg, cold_recall = [], [], [], []
        for start in range(0, len(phase.users), args.batch_size):
            users = phase.users[start : start + args.batch_size]
            histories = phase.histories(users)
            scores = np.array(model.score(users, histories), dtype=np.float32)
            for row, history in enumerate(histories):
                scores[row, history.items] = -np.inf
            scores[:, phase.unlisted] = -np.inf  # as `evaluate` ranks: titles someone listed
            ranked = top_k(scores, 20)
            scores[:, ~hidden] = -np.inf
            ranked_hidden = top_k(scores, 20)
            for row in range(len(users)):
                targets = phase.targets[start + row]
                shares.append(hidden[ranked[row]].mean())
                full_ndcg.append(ndcg_at_k(ranked[row], targets, 10))
                cold_ndcg.append(ndcg_at_k(ranked_hidden[row], targets, 10))
                cold_recall.append(recall_at_k(ranked_hidden[row], targets, 20))
        report[name] = {
            "full ranking NDCG@10": round(float(np.mean(full_ndcg)), 4),
            "hidden share of top 20": round(float(np.mean(shares)), 4),
            "hidden only NDCG@10": round(float(np.mean(cold_ndcg)), 4),
            "hidden only Recall@20": round(float(np.mean(cold_recall)), 4),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
