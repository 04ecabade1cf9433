"""Are the "because you liked" lines true? Faithfulness of the named causes on real lists.

    python bench/bench_why.py --users 200 --out bench/results/why.json

For each real list (a seeded sample of CooperUnion users, whose anime names are matched to MAL ids
as `training.importers.cooperunion` does, and the 18 MyAnimeList users of
`mal-animelists-18-users.csv`, from the `anime/` folder of ANIMEREC_SHARED_DATA), the engine on the default bundle picks 10
titles and names their causes. A pick's named entries are *faithful* when the list without them
(all of them together) gives the pick a lower utility: both models are run again on that list,
and the utility is the one the engine ranks by (a franchise's first entry carrying its later
entries'). Reported for the engine's rule (leave-one-out, `inference.explain`) and, on the same
picks in the same run, for the rule it replaced (the liked entries most similar to the pick in the
item-embedding space, "liked" being a score of 7 or more or completed unscored):
- picks with a "because you liked" line;
- the share of those whose named entries lower the pick's utility when removed (goal >= 90%),
  and the share of named entries that do so one at a time;
- the share of named entries scored below the user's own mean, and the most picks one title
  explains in one reply (mean over lists).
The CooperUnion users are the default bundle's training users: this measures whether the lines
say what the model did, not how good the picks are.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.animelist import AnimeList, ListEntry, Status  # noqa: E402
from inference.encoding import entries_from_list  # noqa: E402
from inference.engine import Engine  # noqa: E402
from inference.explain import mean_score  # noqa: E402
from inference.filters import redirect_utilities  # noqa: E402
from inference.options import RecommendOptions  # noqa: E402
from training.importers import SHARED_DATA  # noqa: E402
from training.importers.title_match import TitleMatcher, load_candidates  # noqa: E402

SHARED = SHARED_DATA / "anime"
MAL_STATUS = {
    "1": Status.WATCHING,
    "2": Status.COMPLETED,
    "3": Status.ON_HOLD,
    "4": Status.DROPPED,
    "6": Status.PLAN_TO_WATCH,
}
COUNT = 10

# ----- the rule the engine used before: similarity to the liked entries ---------------------------

OLD_LIKED_SCORE = 7.0
OLD_UNSCORED_WEIGHT = 0.7


def old_weight(entry: ListEntry) -> float:
    if entry.status in (Status.DROPPED, Status.PLAN_TO_WATCH):
        return 0.0
    if entry.score is not None:
        return entry.score / 10.0 if entry.score >= OLD_LIKED_SCORE else 0.0
    if entry.status == Status.COMPLETED or entry.rewatching:
        return OLD_UNSCORED_WEIGHT
    return 0.0


def old_causes(engine: Engine, emb: np.ndarray, anime_list: AnimeList, pick: int) -> list[int]:
    """Up to two liked entries most similar to the pick (cos × weight), as the engine named them
    before: a second one only at half the first's contribution, one per franchise."""
    entries = {}
    for e in anime_list.entries:
        index = engine.catalog.index_of(e.mal_id)
        if index is not None:
            entries[index] = e
    anchors = [(i, old_weight(e)) for i, e in entries.items()]
    anchors = [(i, w) for i, w in anchors if w > 0]
    if not anchors:
        return []
    indices = np.array([i for i, _ in anchors])
    contributions = (emb[indices] @ emb[pick]) * np.array([w for _, w in anchors])
    fid = engine.catalog[pick].franchise_id
    named: set[int] = set() if fid is None else {fid}
    chosen: list[int] = []
    for k in np.argsort(-contributions, kind="stable"):
        if contributions[k] <= 0 or len(chosen) == 2:
            break
        if chosen and contributions[k] < 0.5 * contributions[0]:
            break
        anchor = int(indices[k])
        anchor_fid = engine.catalog[anchor].franchise_id
        if anchor_fid is not None and anchor_fid in named:
            continue
        if anchor_fid is not None:
            named.add(anchor_fid)
        chosen.append(anchor)
    return chosen


# ----- real lists ----------------------------------------------------------------------------


def _tsv(archive: zipfile.ZipFile, name: str) -> list[list[str]]:
    member = next(i.filename for i in archive.infolist() if i.filename.endswith("/" + name))
    with archive.open(member) as raw:
        rows = list(csv.reader(io.TextIOWrapper(raw, encoding="utf-8"), delimiter="\t"))
    return rows[1:]


def cooperunion_lists(path: Path, catalog_path: Path, users: int, seed: int) -> list[AnimeList]:
    """A seeded sample of the zip's users, names matched to MAL ids (the importer's rule); every
    entry is completed, scored where the ratings file scores it."""
    matcher = TitleMatcher(load_candidates(catalog_path))
    with zipfile.ZipFile(path) as archive:
        mal_ids = {}
        for row in _tsv(archive, "anime_info.dat"):
            episodes = int(row[4]) if len(row) > 4 and row[4].strip().isdigit() else None
            mal_ids[row[0]] = matcher.match(row[1], row[3] if len(row) > 3 else None, episodes)
        scores = {(u, a): float(s) for u, a, s in _tsv(archive, "anime_ratings.dat")}
        history: dict[str, list[ListEntry]] = {}
        for user, anime, _ in _tsv(archive, "anime_history.dat"):
            mal_id = mal_ids.get(anime)
            if mal_id is None:
                continue
            history.setdefault(user, []).append(
                ListEntry(mal_id=mal_id, status=Status.COMPLETED, score=scores.get((user, anime)))
            )
    names = sorted(u for u, entries in history.items() if len(entries) >= 5)
    chosen = np.random.default_rng(seed).choice(
        len(names), size=min(users, len(names)), replace=False
    )
    return [
        AnimeList(source="mal", username=f"cu{names[i]}", entries=history[names[i]])
        for i in sorted(chosen.tolist())
    ]


def mal_lists(path: Path) -> list[AnimeList]:
    lists: dict[str, list[ListEntry]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            status = MAL_STATUS.get(row["my_status"])
            if status is None:
                continue
            score = int(row["my_score"] or 0)
            lists.setdefault(row["username"], []).append(
                ListEntry(
                    mal_id=int(row["anime_id"]),
                    status=status,
                    score=float(score) if score else None,
                    episodes_watched=int(row["my_watched_episodes"] or 0),
                    rewatching=row["my_rewatching"] == "1",
                )
            )
    return [AnimeList(source="mal", username=name, entries=e) for name, e in lists.items()]


# ----- measuring -------------------------------------------------------------------------------


def named_causes(engine: Engine, anime_list: AnimeList, why: list[str]) -> list[int]:
    names = {}
    for e in anime_list.entries:
        index = engine.catalog.index_of(e.mal_id)
        if index is not None:
            names[engine.explainer.titles.name(index)] = index
    for line in why:
        if line.startswith("Because you liked "):
            return split_names(line.removeprefix("Because you liked "), names)
    return []


def split_names(text: str, names: dict[str, int]) -> list[int]:
    """One or two list titles joined by " and ", which a title may itself contain."""
    if text in names:
        return [names[text]]
    parts = text.split(" and ")
    for cut in range(1, len(parts)):
        first, second = " and ".join(parts[:cut]), " and ".join(parts[cut:])
        if first in names and second in names:
            return [names[first], names[second]]
    raise KeyError(f"no list titles make up {text!r}")


def utilities_without(
    engine: Engine, anime_list: AnimeList, allowed: Any, removals: list[list[int]]
) -> list[np.ndarray]:
    """The engine's ranking utilities for the list less each set of entries, in one model run."""
    assert engine.model is not None
    lists = []
    for gone in removals:
        mal_ids = {engine.catalog[i].mal_id for i in gone}
        kept = [e for e in anime_list.entries if e.mal_id not in mal_ids]
        lists.append(entries_from_list(kept, engine.item_index)[0])
    return [redirect_utilities(s.utilities, allowed) for s in engine.model.run(lists)]


def measure(engine: Engine, lists: list[AnimeList], label: str) -> dict[str, Any]:
    assert engine.model is not None
    emb = np.asarray(engine.model.item_embeddings, dtype=np.float64)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
    options = RecommendOptions(count=COUNT)
    tally: dict[str, Counter[str]] = {"engine": Counter(), "similarity (before)": Counter()}
    most_named: dict[str, list[int]] = {name: [] for name in tally}
    for anime_list in tqdm(lists, desc=label, file=sys.stderr):
        if not any(engine.catalog.index_of(e.mal_id) is not None for e in anime_list.entries):
            continue
        result = engine.recommend_sync(anime_list, options)
        allowed = engine.filters.eligible(anime_list, options)
        (full,) = utilities_without(engine, anime_list, allowed, [[]])
        user_mean = mean_score(anime_list)
        by_index = {engine.catalog.index_of(e.mal_id): e for e in anime_list.entries}
        picks = [engine.catalog.index_of(r.mal_id) for r in result.recommendations]
        rules = {
            "engine": [named_causes(engine, anime_list, r.why) for r in result.recommendations],
            "similarity (before)": [old_causes(engine, emb, anime_list, p) for p in picks],  # type: ignore[arg-type]
        }
        for rule, causes in rules.items():
            t = tally[rule]
            t["lists"] += 1
            t["picks"] += len(picks)
            named = [(p, c) for p, c in zip(picks, causes, strict=True) if c]
            t["picks_named"] += len(named)
            if not named:
                most_named[rule].append(0)
                continue
            removals = [c for _, c in named] + [[x] for _, c in named for x in c]
            without = utilities_without(engine, anime_list, allowed, removals)
            together, alone = without[: len(named)], iter(without[len(named) :])
            for (pick, cause), u in zip(named, together, strict=True):
                t["faithful"] += bool(u[pick] < full[pick])
                for entry in cause:
                    t["entries_named"] += 1
                    t["entries_faithful"] += bool(next(alone)[pick] < full[pick])
                    score = by_index[entry].score
                    below = user_mean is not None and (score is None or score < user_mean)
                    t["entries_below_mean_or_unscored"] += below
            most_named[rule].append(max(Counter(x for _, c in named for x in c).values()))
    rows = []
    for rule, t in tally.items():
        rows.append(
            {
                "rule": rule,
                "lists": t["lists"],
                "picks": t["picks"],
                "picks_with_because": t["picks_named"] / max(t["picks"], 1),
                "faithful": t["faithful"] / max(t["picks_named"], 1),
                "entries_faithful_alone": t["entries_faithful"] / max(t["entries_named"], 1),
                "entries_below_mean_or_unscored": t["entries_below_mean_or_unscored"]
                / max(t["entries_named"], 1),
                "most_picks_one_title_explains": float(np.mean(most_named[rule] or [0])),
            }
        )
    return {"lists": label, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "exports" / "default")
    parser.add_argument(
        "--data", type=Path, default=SHARED, help=f"the real lists (default {SHARED})"
    )
    parser.add_argument("--users", type=int, default=200, help="CooperUnion users sampled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    zip_path = args.data / "cooperunion-5k-users.zip"
    csv_path = args.data / "mal-animelists-18-users.csv"
    if not zip_path.is_file() or not csv_path.is_file():
        print(f"error: the real lists are not in {args.data}", file=sys.stderr)
        return 2
    engine = Engine.from_bundle(args.bundle, "cpu", micro_batching=False)
    try:
        samples = [
            measure(
                engine,
                cooperunion_lists(zip_path, args.bundle / "catalog.json.gz", args.users, args.seed),
                f"CooperUnion, {args.users} users (seed {args.seed})",
            ),
            measure(engine, mal_lists(csv_path), "MyAnimeList, 18 users"),
        ]
    finally:
        engine.close()
    document = {"bundle": str(args.bundle), "picks_per_list": COUNT, "samples": samples}
    text = json.dumps(document, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
