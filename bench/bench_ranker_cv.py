"""The ranker's feature sets under cross-validation: NDCG@10 on every validation list, paired.

    python bench/bench_ranker_cv.py --config training/configs/anime-ranker.toml \
        --set ranker.finetuned=runs/anime-finetune/ckpt.pt --folds 5 --out bench/results/ranker-cv.json

The ranker's own per-epoch check keeps 10% of the users out (about 450 on the anime sample), too
few to tell two feature sets apart. Here the users with validation items are split into `--folds`
folds; each fold's lists are scored by a ranker trained (`training.train.fit`, the config's epochs
and settings, `--set` overrides applied) on the other folds, so every list is scored once by a
ranker that never saw it, and each variant is compared with the first per user on the same folds
and seeds. A variant zeroes the list-relative columns it does not use (a zero input adds nothing
to the MLP), so all variants share one feature table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.encoding import LIST_RELATIVE, N_ABSOLUTE_FEATURES, N_SCORE_FEATURES
from training.metrics import ndcg_at_k
from training.ranker import (
    NEIGHBOUR_SCORE,
    RankerConfig,
    RankerJob,
    RankerList,
    RankerNet,
    RankerNetConfig,
    load_finetuned,
    ranker_lists,
)
from training.train import Dist, fit, load_config

# variant -> the list-relative columns it keeps
VARIANTS: dict[str, tuple[str, ...]] = {
    "absolute": (),
    "log-prob and neighbour score": ("log_prob", "neighbour_score"),
    "list-relative (all ten)": LIST_RELATIVE,
}


def keep_relative(lists: list[RankerList], names: tuple[str, ...]) -> list[RankerList]:
    drop = [N_ABSOLUTE_FEATURES + i for i, n in enumerate(LIST_RELATIVE) if n not in names]
    out = []
    for lst in lists:
        features = lst.features.copy()
        features[:, drop] = 0.0
        out.append(replace(lst, features=features))
    return out


def scores_by_fold(
    cfg: RankerConfig, lists: list[RankerList], fold: np.ndarray, dist: Dist, out_dir: str
) -> np.ndarray:
    """NDCG@10 of each list, scored by the ranker trained without its fold."""
    ndcg = np.zeros(len(lists))
    for f in np.unique(fold).tolist():
        train = [lst for lst, k in zip(lists, fold, strict=True) if k != f]
        run = replace(cfg, name=f"fold{f}", out_dir=out_dir)
        torch.manual_seed(cfg.train.seed)
        net = RankerNet(RankerNetConfig(hidden=cfg.ranker.hidden))
        fit(run, net, RankerJob(run, train, []), dist)  # type: ignore[arg-type]
        net.eval()
        for i in np.flatnonzero(fold == f).tolist():
            lst = lists[i]
            with torch.no_grad():
                utilities, _ = net(
                    torch.from_numpy(lst.features), torch.zeros((0, N_SCORE_FEATURES))
                )
            order = lst.items[np.argsort(-utilities.numpy(), kind="stable")]
            ndcg[i] = ndcg_at_k(order, lst.targets, cfg.train.val_k)
    return ndcg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cfg = load_config(RankerConfig, args.config, args.overrides)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    dist = Dist(0, 1, torch.device("cpu"))
    model, payload = load_finetuned(cfg.ranker.finetuned, dist.device)
    started = time.perf_counter()
    lists, _ = ranker_lists(cfg, model, payload, dist)
    fold = np.random.default_rng([cfg.train.seed, 23]).integers(0, args.folds, len(lists))
    neighbour = np.array(
        [
            ndcg_at_k(
                lst.items[np.argsort(-lst.features[:, NEIGHBOUR_SCORE], kind="stable")],
                lst.targets,
                cfg.train.val_k,
            )
            for lst in lists
        ]
    )
    rows: list[dict[str, object]] = []
    first: np.ndarray | None = None
    with tempfile.TemporaryDirectory() as out_dir:
        for name in names:
            ndcg = scores_by_fold(cfg, keep_relative(lists, VARIANTS[name]), fold, dist, out_dir)
            first = ndcg if first is None else first
            gain = ndcg - first
            rows.append(
                {
                    "variant": name,
                    "NDCG@10": round(float(ndcg.mean()), 4),
                    "paired gain": round(float(gain.mean()), 4),
                    "its standard error": round(float(gain.std() / np.sqrt(len(gain))), 4),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "config": args.config,
        "overrides": args.overrides,
        "folds": args.folds,
        "lists": len(lists),
        "item-item neighbour score alone": round(float(neighbour.mean()), 4),
        "rows": rows,
        "seconds": round(time.perf_counter() - started),
    }
    print(f"| variant | NDCG@10 | paired gain vs {names[0]} |\n|---|---:|---:|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['NDCG@10']:.4f} | "
            f"{row['paired gain']:+.4f} ± {row['its standard error']:.4f} |"
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
