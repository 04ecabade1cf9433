"""`python -m training synthesize --users N --out PATH.parquet --seed S`: anime-like synthetic histories.

For load tests and benchmarks of any size: users are generated in fixed batches with vectorized
numpy and written as Parquet row groups, so memory stays bounded whatever N is. The file says it is
synthetic (`synthetic: true` in its metadata, carried into the built dataset's meta.json).

What is planted, so models have something to find:
- a catalogue of ~20k items with Zipf popularity, a main genre each, and franchises (runs of 2–6
  consecutive ids) whose later entries are less popular and are watched after the earlier ones;
- users with a Dirichlet taste over genres, a popularity-vs-taste mix, a personal score scale
  (mean and spread) and a personal habit of scoring (some never score);
- statuses: completed mostly, drops more likely for poorly matching items, plan-to-watch (unscored,
  no progress), watching, on hold, rare rewatching;
- times: a user's entries spread over their active years, a quarter of users with a bulk import
  (many entries sharing one second), and ~1% of rows with unknown time.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from inference.animelist import REWATCHING_CODE, STATUS_CODES, Status
from training.errors import TrainingError
from training.parquet_schema import InteractionWriter

USERS_PER_BATCH = 8192  # part of the definition: the same seed and N give the same file
N_GENRES = 24
START, END = 1_199_145_600, 1_704_067_200  # 2008-01-01 .. 2024-01-01
S = {status: STATUS_CODES[status] for status in Status}


@dataclass(frozen=True)
class Catalogue:
    popularity_cdf: np.ndarray  # over all items
    genre: np.ndarray  # main genre of each item
    by_genre: np.ndarray  # item indices grouped by genre
    genre_cdf: np.ndarray  # per-genre popularity CDFs, genre g shifted into [g, g+1)
    franchise: np.ndarray  # franchise id of each item (its first item's index)
    position: np.ndarray  # 0 for a franchise's first entry, 1 for its sequel...
    quality: np.ndarray
    episodes: np.ndarray


def make_catalogue(n_items: int, rng: np.random.Generator) -> Catalogue:
    franchise = np.arange(n_items)
    position = np.zeros(n_items, dtype=np.int64)
    i = 0
    while i < n_items:  # ~30% of items sit in franchises of 2–6 entries
        size = int(rng.integers(2, 7)) if rng.random() < 0.12 else 1
        size = min(size, n_items - i)
        franchise[i : i + size] = i
        position[i : i + size] = np.arange(size)
        i += size
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity = popularity[rng.permutation(n_items)]
    popularity[position > 0] = popularity[franchise[position > 0]] * 0.6 ** position[position > 0]
    genre_weights = rng.dirichlet(np.full(N_GENRES, 2.0))
    genre = rng.choice(N_GENRES, size=n_items, p=genre_weights)
    genre = genre[franchise]  # a franchise keeps its genre
    by_genre = np.argsort(genre, kind="stable")
    genre_cdf = np.empty(n_items)
    for g in range(N_GENRES):
        members = by_genre[genre[by_genre] == g]
        start = int(np.searchsorted(genre[by_genre], g))
        weights = popularity[members]
        genre_cdf[start : start + len(members)] = g + np.cumsum(weights) / max(weights.sum(), 1e-12)
    episodes = rng.choice(np.array([1, 1, 2, 6, 12, 12, 13, 24, 26, 50]), size=n_items)
    return Catalogue(
        popularity_cdf=np.cumsum(popularity) / popularity.sum(),
        genre=genre,
        by_genre=by_genre,
        genre_cdf=genre_cdf,
        franchise=franchise,
        position=position,
        quality=rng.normal(0, 1, n_items),
        episodes=episodes,
    )


def generate_batch(
    cat: Catalogue, first_user: int, n_users: int, mean_length: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One batch of users' rows, in file order (each user's rows shuffled, as list files are)."""
    n_items = len(cat.genre)
    taste = rng.dirichlet(np.full(N_GENRES, 0.3), size=n_users)
    taste_cdf = np.cumsum(taste, axis=1)
    pop_share = rng.uniform(0.1, 0.6, n_users)
    score_mean, score_spread = rng.normal(7.0, 0.9, n_users), rng.uniform(0.6, 1.8, n_users)
    score_habit = np.where(rng.random(n_users) < 0.1, 0.0, rng.beta(3, 1, n_users))
    sigma = 1.0
    lengths = np.clip(
        rng.lognormal(np.log(mean_length) - sigma**2 / 2, sigma, n_users), 1, 5000
    ).astype(np.int64)

    user = np.repeat(np.arange(n_users), lengths)
    draws = len(user)
    from_genre = rng.random(draws) >= pop_share[user]
    # Per-user genre draws without a rows x genres matrix: user u's CDF lives in [u, u+1).
    shifted = (taste_cdf + np.arange(n_users)[:, None]).ravel()
    genre = (np.searchsorted(shifted, user + rng.random(draws)) - user * N_GENRES).clip(
        0, N_GENRES - 1
    )
    item = np.searchsorted(cat.popularity_cdf, rng.random(draws)).clip(0, n_items - 1)
    genre_pick = np.searchsorted(cat.genre_cdf, genre + rng.random(draws)).clip(0, n_items - 1)
    item = np.where(from_genre, cat.by_genre[genre_pick], item)
    # Someone who watched a sequel mostly watched where the franchise starts, too.
    sequel = (cat.position[item] > 0) & (rng.random(draws) < 0.8)
    user = np.concatenate([user, user[sequel]])
    item = np.concatenate([item, cat.franchise[item[sequel]]])
    _, first = np.unique(user * n_items + item, return_index=True)
    user, item = user[first], item[first]  # sorted by (user, item), no repeats
    n = len(user)
    counts = np.bincount(user, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    # Watch order: random, except that a franchise's entries keep their order.
    key = rng.random(n)
    by_key = np.lexsort((key, cat.franchise[item], user))
    by_position = np.lexsort((cat.position[item], cat.franchise[item], user))
    key[by_position] = key[by_key]
    order = np.lexsort((key, user))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)

    # Times: entries spread over the user's active period, in watch order.
    begin = rng.integers(START, END - 86400 * 400, n_users)
    gaps = rng.exponential(1.0, n)[order]
    cum = np.cumsum(gaps)
    cum -= np.repeat(cum[starts] - gaps[starts], counts)
    span = rng.uniform(30, 3000, n_users) * 86400 / np.maximum(counts, 1)
    sorted_times = begin[user[order]] + (cum * span[user[order]]).astype(np.int64)
    time = np.empty(n, dtype=np.int64)
    time[order] = np.minimum(sorted_times, END)
    bulk = rng.random(n_users) < 0.25  # a bulk import: the oldest entries share one second
    bulk_cut = (rng.uniform(0.3, 0.9, n_users) * counts).astype(np.int64)
    imported = bulk[user] & (rank < bulk_cut[user])
    time[imported] = begin[user[imported]]

    affinity = (
        np.log(np.maximum(taste[user, cat.genre[item]] * N_GENRES, 1e-3)) / 3
        + 0.5 * cat.quality[item]
    )
    roll = rng.random(n)
    later = rank >= counts[user] * 0.85
    status = np.full(n, S[Status.COMPLETED], dtype=np.int8)
    dropped = roll < 1 / (1 + np.exp(2.5 + 1.5 * affinity))
    status[dropped] = S[Status.DROPPED]
    status[(roll > 0.97) & ~dropped] = S[Status.ON_HOLD]
    status[later & (roll > 0.6)] = S[Status.PLAN_TO_WATCH]
    status[later & (roll > 0.55) & (roll <= 0.6)] = S[Status.WATCHING]
    status[(status == S[Status.COMPLETED]) & (rng.random(n) < 0.005)] = REWATCHING_CODE

    episodes = cat.episodes[item]
    progress = np.where(status == S[Status.PLAN_TO_WATCH], 0, episodes)
    partial = np.isin(status, [S[Status.DROPPED], S[Status.ON_HOLD], S[Status.WATCHING]])
    progress = np.where(partial, (rng.random(n) * episodes).astype(np.int64), progress)

    raw = (
        score_mean[user]
        + score_spread[user] * (0.8 * affinity + rng.normal(0, 0.6, n))
        - 1.5 * dropped
    )
    scored = (status != S[Status.PLAN_TO_WATCH]) & (rng.random(n) < score_habit[user])
    score = np.clip(np.round(raw), 1, 10).astype(np.float32)
    unknown_time = rng.random(n) < 0.01

    # File order: users in order, each user's rows in a random order (as list exports are).
    file_order = np.lexsort((rng.random(n), user))
    return {
        "user_index": first_user + user[file_order],
        "item": item[file_order] + 1,
        "score": score[file_order],
        "scored": scored[file_order],
        "status": status[file_order],
        "progress": progress[file_order],
        "time": time[file_order],
        "time_known": ~unknown_time[file_order],
    }


def synthesize(
    out: Path | str,
    n_users: int,
    *,
    seed: int = 0,
    n_items: int = 20_000,
    mean_length: float = 160.0,
    progress: bool = True,
) -> dict[str, object]:
    """Write `n_users` synthetic users to `out`; returns the stored metadata."""
    if n_users < 1 or n_items < 10 or mean_length < 1:
        raise TrainingError("need --users >= 1, --items >= 10 and --mean-length >= 1")
    cat = make_catalogue(n_items, np.random.default_rng([seed, 0]))
    width = len(str(n_users - 1))
    params = {"users": n_users, "items": n_items, "mean_length": mean_length, "seed": seed}
    writer = InteractionWriter(
        out, source="synthetic", synthetic=True, extra_meta={"generator": params}
    )
    row = 0
    try:
        with tqdm(
            total=n_users,
            desc="synthesize",
            unit="user",
            unit_scale=True,
            disable=not progress,
            file=sys.stderr,
        ) as bar:
            for batch, first_user in enumerate(range(0, n_users, USERS_PER_BATCH)):
                size = min(USERS_PER_BATCH, n_users - first_user)
                rng = np.random.default_rng([seed, 1, batch])
                rows = generate_batch(cat, first_user, size, mean_length, rng)
                names = pa.array(
                    [f"syn{u:0{width}d}" for u in range(first_user, first_user + size)]
                )
                n = len(rows["item"])
                writer.write_columns(
                    {
                        "user": names.take(pa.array(rows["user_index"] - first_user)),
                        "item": rows["item"],
                        "score": pa.array(rows["score"], mask=~rows["scored"]),
                        "status": rows["status"],
                        "progress": rows["progress"].clip(0, np.iinfo(np.int16).max),
                        "time": pa.array(rows["time"], mask=~rows["time_known"]),
                        "row": np.arange(row, row + n, dtype=np.int64),
                    }
                )
                row += n
                bar.update(size)
                bar.set_postfix(rows=f"{row:,}")
    except BaseException:
        writer.abort()
        raise
    return writer.close({"rows_read": row, "rows_kept": row, "rows_malformed": 0})


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, required=True, help="number of users")
    parser.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--items", type=int, default=20_000, help="catalogue size (default 20000)")
    parser.add_argument(
        "--mean-length", type=float, default=160.0, help="mean list length (default 160)"
    )


def main(args: argparse.Namespace) -> int:
    meta = synthesize(
        args.out, args.users, seed=args.seed, n_items=args.items, mean_length=args.mean_length
    )
    print(f"wrote {meta['rows']:,} synthetic interactions to {args.out}", file=sys.stderr)
    return 0
