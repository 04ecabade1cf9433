"""The row-by-row batch builders that `training.batches` replaced: one numpy Generator and one
Python pass per sample, through `inference.encoding.encode`.

Two uses: the benchmark's "before" (`bench/bench_train.py batches`), and the reference the
vectorised builders are checked against. Their random draws differ (a Generator per sample against
a counter-based hash), so the checks split each builder in two: the `assemble_*` functions turn
already drawn histories into a batch exactly as the old builders did, and the tests feed them the
draws of the new ones.
"""

from __future__ import annotations

import numpy as np

from inference.encoding import (
    ITEM_OFFSET,
    MASK_ITEM,
    PAD_ITEM,
    PROGRESS_UNKNOWN,
    SCORE_MASK,
    STATUS_MASK,
    TIME_NOW,
    encode,
    mask_tokens,
)
from training.batches import Batch, UserParts
from training.dataset import History


def _window(history: History, length: int, rng: np.random.Generator) -> History:
    if len(history) <= length:
        return history
    end = int(rng.integers(length, len(history) + 1))
    return history.select(np.arange(end - length, end))


def _order(history: History, has_times: bool, rng: np.random.Generator) -> History:
    return history if has_times else history.select(rng.permutation(len(history)))


def _padded(rows: list[np.ndarray], fill: int = -1) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), fill, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def assemble_pretrain(
    histories: list[History],
    mask_rows: list[np.ndarray],
    stamp_rows: np.ndarray,
    *,
    max_len: int,
    has_times: bool,
    episodes: np.ndarray | None = None,
) -> Batch:
    """Drawn windows, each row's hidden entries and whether its last entry is the "now" query."""
    enc = encode(histories, max_len, has_times=has_times, episodes=episodes)
    width = enc.items.shape[1]
    mask = np.zeros(enc.items.shape, dtype=bool)
    stamp = np.zeros(enc.items.shape, dtype=bool)
    for row, chosen in enumerate(mask_rows):
        n = int(enc.lengths[row])
        mask[row, width - n :] = chosen
        stamp[row, width - 1] = stamp_rows[row]
    rows, cols = np.nonzero(mask)
    masked = mask_tokens(enc, mask, stamp_now=stamp)
    return {
        **masked.as_dict(),
        "target_rows": rows,
        "target_cols": cols,
        "target_items": enc.items[rows, cols] - ITEM_OFFSET,
        "target_scores": enc.scores[rows, cols],
        "target_statuses": enc.statuses[rows, cols] - 1,
    }


def pretrain_batch(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    *,
    max_len: int,
    mask_prob: float,
    query_prob: float,
    episodes: np.ndarray | None = None,
) -> Batch:
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    histories = [
        _window(_order(parts.part(int(u)), parts.has_times, rng), max_len, rng)
        for u, rng in zip(users, rngs, strict=True)
    ]
    mask_rows, stamps = [], np.zeros(len(users), dtype=bool)
    for row, rng in enumerate(rngs):
        n = min(len(histories[row]), max_len)
        chosen = rng.random(n) < mask_prob
        if rng.random() < query_prob and parts.has_times:
            chosen[-1] = True
            stamps[row] = True
        if not chosen.any():
            chosen[rng.integers(n)] = True
        mask_rows.append(chosen)
    return assemble_pretrain(
        histories,
        mask_rows,
        stamps,
        max_len=max_len,
        has_times=parts.has_times,
        episodes=episodes,
    )


def assemble_finetune(
    histories: list[History],
    targets: list[History],
    *,
    max_len: int,
    has_times: bool,
    episodes: np.ndarray | None = None,
) -> Batch:
    enc = encode(histories, max_len, has_times=has_times, episodes=episodes, append_query=True)
    return {
        **enc.as_dict(),
        "target_items": _padded([t.items for t in targets]),
        "target_scores": _padded([t.scores for t in targets], fill=0),
        "target_statuses": _padded([t.statuses for t in targets]),
        "seen_rows": np.repeat(np.arange(len(histories)), [len(h.items) for h in histories]),
        "seen_items": np.concatenate([h.items for h in histories]).astype(np.int64),
    }


def finetune_batch(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    *,
    max_len: int,
    holdout_share: float,
    n_next: int,
    episodes: np.ndarray | None = None,
) -> Batch:
    histories, targets = [], []
    for user, seed in zip(users, seeds, strict=True):
        rng = np.random.default_rng(int(seed))
        full = parts.part(int(user))
        n = len(full)
        if parts.has_times:
            cut = int(rng.integers(1, n))
            history = full.select(np.arange(cut))
            target = full.select(np.arange(cut, min(n, cut + n_next)))
        else:
            order = rng.permutation(n)
            k = min(n - 1, max(1, round(holdout_share * n)))
            history, target = full.select(order[k:]), full.select(order[:k])
        histories.append(history)
        targets.append(target)
    return assemble_finetune(
        histories, targets, max_len=max_len, has_times=parts.has_times, episodes=episodes
    )


def assemble_next_entries(
    windows: list[History],
    *,
    max_len: int,
    has_times: bool,
    use_times: bool,
    episodes: np.ndarray | None = None,
    queries: bool = True,
) -> Batch:
    heads = [w.select(np.arange(len(w) - 1)) for w in windows]
    enc = encode(
        heads,
        max_len,
        has_times=has_times,
        episodes=episodes,
        append_query=True,
        use_times=use_times,
    )
    batch, width = enc.items.shape
    if not queries:  # each entry e_k asks for e_{k+1}; nothing behind the row
        targets = {
            "target_items": np.full((batch, width), -1, dtype=np.int64),
            "target_scores": np.zeros((batch, width), dtype=np.int64),
            "target_statuses": np.full((batch, width), -1, dtype=np.int64),
        }
        for row, window in enumerate(windows):
            n = len(window) - 1
            cols = np.arange(width - 1 - n, width - 1)
            targets["target_items"][row, cols] = window.items[1:]
            targets["target_scores"][row, cols] = window.scores[1:]
            targets["target_statuses"][row, cols] = window.statuses[1:]
        return {**enc.as_dict(), **targets}
    extra = max(width - 2, 1)
    total = width + extra
    out = {name: np.zeros((batch, total), dtype=np.int64) for name in enc.as_dict()}
    for name, array in enc.as_dict().items():
        out[name][:, :width] = array
    out["items"][:, width:] = PAD_ITEM
    query_sees = np.full((batch, total), -1, dtype=np.int64)
    query_sees[:, width - 1] = width - 2
    target_items = np.full((batch, total), -1, dtype=np.int64)
    target_scores = np.zeros((batch, total), dtype=np.int64)
    target_statuses = np.full((batch, total), -1, dtype=np.int64)
    for row, window in enumerate(windows):
        n = len(window) - 1
        target_items[row, width - 1] = window.items[-1]
        target_scores[row, width - 1] = window.scores[-1]
        target_statuses[row, width - 1] = window.statuses[-1]
        if n < 2:
            continue
        first = width - 1 - n
        k = np.arange(1, n)
        cols = width + k - 1
        out["items"][row, cols] = MASK_ITEM
        out["scores"][row, cols] = SCORE_MASK
        out["statuses"][row, cols] = STATUS_MASK
        out["times"][row, cols] = TIME_NOW
        out["progress"][row, cols] = PROGRESS_UNKNOWN
        out["positions"][row, cols] = enc.positions[row, first + k]
        query_sees[row, cols] = first + k - 1
        target_items[row, cols] = window.items[k]
        target_scores[row, cols] = window.scores[k]
        target_statuses[row, cols] = window.statuses[k]
    return {
        **out,
        "query_sees": query_sees,
        "target_items": target_items,
        "target_scores": target_scores,
        "target_statuses": target_statuses,
    }


def next_entries_batch(
    parts: UserParts,
    users: np.ndarray,
    seeds: np.ndarray,
    *,
    max_len: int,
    use_times: bool,
    episodes: np.ndarray | None = None,
    queries: bool = True,
) -> Batch:
    windows = [
        _window(parts.part(int(u)), max_len, np.random.default_rng(int(s)))
        for u, s in zip(users, seeds, strict=True)
    ]
    return assemble_next_entries(
        windows,
        max_len=max_len,
        has_times=parts.has_times,
        use_times=use_times,
        episodes=episodes,
        queries=queries,
    )


def assemble_sasrec(windows: list[History], *, max_len: int, has_times: bool) -> Batch:
    inputs = [w.select(np.arange(len(w) - 1)) for w in windows]
    enc = encode(inputs, max_len, has_times=has_times)
    width = enc.items.shape[1]
    target = np.full((len(windows), width), -1, dtype=np.int64)
    for row, window in enumerate(windows):
        items = window.items[1:]
        target[row, width - len(items) :] = items
    return {**enc.as_dict(), "target_items": target}


def sasrec_batch(parts: UserParts, users: np.ndarray, seeds: np.ndarray, *, max_len: int) -> Batch:
    windows = []
    for user, seed in zip(users, seeds, strict=True):
        rng = np.random.default_rng(int(seed))
        windows.append(
            _window(_order(parts.part(int(user)), parts.has_times, rng), max_len + 1, rng)
        )
    return assemble_sasrec(windows, max_len=max_len, has_times=parts.has_times)
