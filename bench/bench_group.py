"""Group picks on a hold-out: each rule for choosing a group's titles, on the same member scores.

    python bench/bench_group.py --bundle exports/default --data data/anime-cu --split random \
        --groups 300 --neighbours-cache data/ease-train-random.npz --out bench/results/group.json

`--seed` draws other groups (the served rule was chosen on `--groups 800 --seed 1`,
bench/results/group_selection.json); `--scores-cache FILE` keeps the members' utilities so that a
change to the methods alone re-runs in seconds.

Groups of 3 test users drawn at random (seeded). Each member's list is their training and
validation entries; their test entries are what they went on to watch. Every member's list goes
through the engine once (`Engine.score_members`: encoder, ranker, franchise redirects, filters),
and every method picks 10 titles from the same pool (titles every member may be offered, extras
left out, one title per franchise) with the same per-member utilities:

- max-min per title (`inference.group.choose`): the largest minimum of the members' rank
  percentiles, mean as tiebreak;
- max-min over the list (`inference.group.choose_set`) with each gain of `rank_gains`: greedily,
  the title that leaves the least served member's total gain largest;
- round-robin (`inference.group.round_robin`): each member's own best titles taken in turn;
- turns with a veto and a shortlist (`inference.group.take_turns`): in rotation, or with the least
  served member choosing next, each chooser weighs their own best n open titles that no member
  ranks in the bottom 20% (or 0%, 50%) of the pool and takes the one with the largest gain summed
  over the members; what `/recommend A B C` serves is its defaults.

Reported per method, averaged over groups: the share of the 10 picks in at least one member's
test entries; each member's hits, averaged over the members; and the hits of the member with the
fewest.

The default bundle's EASE neighbours are refitted on every interaction, test entries included, so
the run replaces them with neighbours fitted on the training part (λ = 100, 64 per row, as the
ranker's). Its other item facts (popularity, item mean scores) still count every interaction; all
methods read the same utilities, so the comparison stands, but the absolute figures lean high.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_rerank_quality import as_list  # noqa: E402
from inference.engine import Engine  # noqa: E402
from inference.group import (  # noqa: E402
    GroupPick,
    choose,
    choose_set,
    round_robin,
    take_turns,
)
from inference.options import RecommendOptions  # noqa: E402
from training.batches import UserParts  # noqa: E402
from training.dataset import TEST, TRAIN, VALIDATION, Dataset  # noqa: E402
from training.neighbours import fit_neighbours, interaction_matrix  # noqa: E402

K = 10
MEMBERS = 3
METRICS = ("any_member_share", "mean_member_hits", "min_member_hits")
Group = tuple[np.ndarray, np.ndarray, list[set[int]]]  # utilities, pool, each member's targets


def _indices(picks: list[GroupPick]) -> list[int]:
    return [p.index for p in picks]


METHODS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], list[int]]] = {
    "max-min per title": lambda u, p, f: _indices(choose(u, p, K, f)),
    "max-min over the list, dcg gain": lambda u, p, f: _indices(choose_set(u, p, K, f, "dcg")),
    "max-min over the list, reciprocal gain": lambda u, p, f: _indices(choose_set(u, p, K, f)),
    "round-robin": lambda u, p, f: round_robin(u, p, K, f),
    **{
        f"round-robin, veto 0.2, best of {n}": (
            lambda u, p, f, n=n: _indices(take_turns(u, p, K, f, veto=0.2, shortlist=n))
        )
        for n in (1, 3, 4, 5)
    },
    **{
        f"least served first, veto {v:g}, best of 1": (
            lambda u, p, f, v=v: _indices(
                take_turns(u, p, K, f, veto=v, shortlist=1, least_served=True)
            )
        )
        for v in (0.0, 0.2, 0.5)
    },
    **{
        f"least served first, veto 0.2, best of {n}": (
            lambda u, p, f, n=n: _indices(
                take_turns(u, p, K, f, veto=0.2, shortlist=n, least_served=True)
            )
        )
        for n in (2, 3, 4, 5, 8)
    },
    "least served first, veto 0.2, best of 4, dcg gain": lambda u, p, f: _indices(
        take_turns(u, p, K, f, veto=0.2, shortlist=4, gain="dcg", least_served=True)
    ),
}


def _relative(path: Path) -> str:
    """A path as the command line would give it from the project root."""
    try:
        return str(path.absolute().relative_to(ROOT))
    except ValueError:
        return str(path)


def score_groups(
    engine: Engine,
    parts: UserParts,
    keys: list[int],
    n_groups: int,
    cache: Path | None,
    seed: int = 0,
) -> list[Group]:
    """Each kept group's member utilities (one engine run per group), pool and test targets;
    kept in `cache` (an .npz) when given, read from it when it exists."""
    if cache is not None and cache.exists():
        with np.load(cache) as saved:
            utilities, pools = saved["utilities"], saved["pools"]  # each read once
            return [
                (
                    utilities[g],
                    pools[g],
                    [set(saved[f"targets_{g}_{m}"].tolist()) for m in range(MEMBERS)],
                )
                for g in range(len(pools))
            ]
    rng = np.random.default_rng(seed)
    users = parts.users_with(min_train=1, label=TEST)
    draws = rng.choice(users, size=(n_groups, MEMBERS), replace=True)
    extras = np.array(
        [engine._extra_kind(i) is not None for i in range(len(engine.catalog))], dtype=bool
    )
    options = RecommendOptions(count=K)
    groups: list[Group] = []
    for row in draws:
        members = [int(u) for u in row]
        if len(set(members)) < MEMBERS:
            continue
        lists = [as_list(parts.part(u, (TRAIN, VALIDATION)), keys, f"u{u}") for u in members]
        targets = [set(parts.part(u, (TEST,)).items.tolist()) for u in members]
        scored = engine.score_members(lists, options)
        if any(s is None for s in scored):
            continue
        pool = np.logical_and.reduce([s.eligible for s in scored if s is not None]) & ~extras
        utilities = np.stack([s.utilities for s in scored if s is not None])
        groups.append((utilities, pool, targets))
    if cache is not None:
        arrays = {
            f"targets_{g}_{m}": np.array(sorted(t), dtype=np.int64)
            for g, (_, _, targets) in enumerate(groups)
            for m, t in enumerate(targets)
        }
        np.savez(
            cache,
            utilities=np.stack([u for u, _, _ in groups]),
            pools=np.stack([p for _, p, _ in groups]),
            **arrays,
        )
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "exports" / "default")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "anime-cu")
    parser.add_argument("--split", default="random")
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="of the draw of the groups")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--neighbours-cache",
        type=Path,
        default=None,
        help="an .npz to keep the training-part EASE fit in (written when absent)",
    )
    parser.add_argument(
        "--scores-cache",
        type=Path,
        default=None,
        help="an .npz to keep the members' utilities in (written when absent), so that a change "
        "to the methods alone re-runs in seconds",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    engine = Engine.from_bundle(args.bundle, "cpu", micro_batching=False)
    model = engine.model
    assert model is not None
    dataset = Dataset(args.data)
    keys = [int(k) for k in dataset.item_keys()]
    if [item.mal_id for item in engine.catalog] != keys:
        print(f"error: {args.bundle}'s vocabulary is not {args.data}'s", file=sys.stderr)
        return 2
    parts = UserParts(dataset, args.split)
    if args.neighbours_cache is not None and args.neighbours_cache.exists():
        cached = np.load(args.neighbours_cache)
        near, weights = cached["near"], cached["w"]
    else:
        print("fitting EASE on the training part...", file=sys.stderr, flush=True)
        near, weights = fit_neighbours(interaction_matrix(parts), 100.0, 64)
        if args.neighbours_cache is not None:
            np.savez(args.neighbours_cache, near=near, w=weights)
    model.facts = dataclasses.replace(model.facts, neighbour_items=near, neighbour_weights=weights)

    groups = score_groups(engine, parts, keys, args.groups, args.scores_cache, args.seed)
    franchise = np.array(
        [-1 if i.franchise_id is None else i.franchise_id for i in engine.catalog], dtype=np.int64
    )
    totals = {name: {metric: 0.0 for metric in METRICS} for name in METHODS}
    for utilities, pool, targets in groups:
        for name, method in METHODS.items():
            chosen = method(utilities, pool, franchise)
            hits = [sum(1 for i in chosen if i in t) for t in targets]
            anyone = sum(1 for i in chosen if any(i in t for t in targets))
            totals[name]["any_member_share"] += anyone / K
            totals[name]["mean_member_hits"] += float(np.mean(hits))
            totals[name]["min_member_hits"] += float(min(hits))
    n_groups = len(groups)
    result = {
        "command": "python bench/bench_group.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "bundle": _relative(args.bundle),
        "data": _relative(args.data),
        "split": args.split,
        "members_per_group": MEMBERS,
        "picks": K,
        "groups": n_groups,
        "methods": {
            name: {metric: value / max(n_groups, 1) for metric, value in values.items()}
            for name, values in totals.items()
        },
        "neighbours": "EASE refitted on the training part (λ=100, k=64)",
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
