"""Recommendations for a group: picks none of the members has seen, taking turns fairly.

Each member's utilities (one engine run of their list) are put on one scale by rank over the pool
of titles every member may be offered (`rank_percentiles`: rank 0 and percentile 1.0 are that
member's best title in the pool), so a member whose ranker is confident does not outvote the
others. A member's gain from a title is `rank_gains` of its rank (1 / (rank + 1): 1.0 for their
best).

What is served is `take_turns` with its defaults: round-robin with a veto. The members choose in
turn, each taking their own best open title that no member ranks in the bottom `VETO` (20%) of
the pool, at most one title per franchise. So a title two members love and the third strongly
dislikes is never offered while another title is open, and each pick is its chooser's favourite
of what is left. The rule can also weigh the chooser's `shortlist` best titles by the gain summed
over the members, or let the least served member choose next.

`bench/bench_group.py` compares the rules on the anime hold-out (BENCHMARKS.md, groups of three,
10 picks; bench/results/group.json, and a second draw of 800 groups in group_selection.json).
Rules that look for common ground first (`choose`, max-min per title; `choose_set`, max-min over
the list) find far fewer held-out titles: the members' own top titles are what they go on to
watch. Among the turn-taking rules, the least served member's hits differ from plain round-robin
by a handful of groups either way and no variant beat it on both draws (a shortlist of 4 did on
the 800 groups and lost on the 300); round-robin with the veto matched it on that column on both
draws and on the share of picks some member watched (within one pick in 8,000), and adds the
guarantee above.
`round_robin` is the baseline without the veto.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.errors import AnimerecError
from inference.order import best_first

MAX_MEMBERS = 8
MIN_MEMBERS = 2


@dataclass(frozen=True, slots=True)
class GroupPick:
    index: int  # vocabulary index
    percentiles: tuple[float, ...]  # per member, 0..1 (1 = their best title in the pool)
    ranks: tuple[int, ...]  # per member: 0 = their best title in the pool

    @property
    def minimum(self) -> float:
        return min(self.percentiles)

    @property
    def mean(self) -> float:
        return float(np.mean(self.percentiles))


def rank_percentiles(utilities: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(percentile float64 [n_items], rank int64 [n_items]) of each pool item by `utilities`.

    Rank 0 is the best in the pool; percentile = 1 - rank / (pool size - 1), so the best is 1.0
    and the worst 0.0. Items outside the pool get percentile -1 and rank -1. Equal utilities share
    the better rank.
    """
    utilities = np.asarray(utilities, dtype=np.float64)
    members = np.flatnonzero(pool)
    percentile = np.full(len(utilities), -1.0)
    rank = np.full(len(utilities), -1, dtype=np.int64)
    if len(members) == 0:
        return percentile, rank
    values = utilities[members]
    ordered = np.sort(values)[::-1]
    # The number of pool items strictly better: ties share the better rank.
    better = np.searchsorted(-ordered, -values, side="left")
    rank[members] = better
    span = max(len(members) - 1, 1)
    percentile[members] = 1.0 - better / span
    return percentile, rank


def choose(
    utilities: np.ndarray,
    pool: np.ndarray,
    count: int,
    franchise: np.ndarray | None = None,
) -> list[GroupPick]:
    """The group's picks, best first: max-min of the members' percentiles, mean as tiebreak.

    `utilities` float [members, n_items]; `pool` bool [n_items], the titles every member may be
    offered; `franchise` int [n_items] (-1: none) keeps one title per franchise.
    """
    utilities = np.atleast_2d(np.asarray(utilities, dtype=np.float64))
    pool = np.asarray(pool, dtype=bool)
    ranked = [rank_percentiles(u, pool) for u in utilities]
    percentiles = np.stack([p for p, _ in ranked])
    ranks = np.stack([r for _, r in ranked])
    items = np.flatnonzero(pool)
    if len(items) == 0:
        return []
    low = percentiles[:, items].min(axis=0)
    mean = percentiles[:, items].mean(axis=0)
    # lexsort sorts by its last key first: the minimum, then the mean, then the index (stable).
    order = items[np.lexsort((items, -mean, -low))]
    picks: list[GroupPick] = []
    taken: set[int] = set()
    for index in order.tolist():
        if franchise is not None:
            fid = int(franchise[index])
            if fid >= 0:
                if fid in taken:
                    continue
                taken.add(fid)
        picks.append(
            GroupPick(
                index,
                tuple(float(x) for x in percentiles[:, index]),
                tuple(int(x) for x in ranks[:, index]),
            )
        )
        if len(picks) == count:
            break
    return picks


GAINS = ("top", "reciprocal", "dcg")
TOP_GAIN_RANKS = 20


def rank_gains(ranks: np.ndarray, gain: str = "reciprocal") -> np.ndarray:
    """A member's gain from a title at `ranks` (0 = their best in the pool), 1.0 for their best:
    "reciprocal" 1 / (rank + 1) (0.5 for the second, 0.1 for the tenth); "dcg" 1 / log2(rank + 2),
    DCG's gentler discount (0.63 for the second, 0.29 for the tenth). Outside the pool: 0."""
    r = np.maximum(ranks, 0).astype(np.float64)
    if gain == "top":
        # 1 for a title in the member's own top `TOP_GAIN_RANKS`, and a small reciprocal term
        # so that, among those, the better ranked still count for more.
        values = (r < TOP_GAIN_RANKS) + 0.01 / (r + 1.0)
    elif gain == "reciprocal":
        values = 1.0 / (r + 1.0)
    else:
        values = 1.0 / np.log2(r + 2.0)
    return np.where(ranks >= 0, values, 0.0)


def choose_set(
    utilities: np.ndarray,
    pool: np.ndarray,
    count: int,
    franchise: np.ndarray | None = None,
    gain: str = "reciprocal",
) -> list[GroupPick]:
    """The group's picks, greedily maximising the least served member's total gain.

    Each member's gain from a title is `rank_gains` of its rank in the pool (their utilities
    normalised by rank). Each step takes the title that leaves the smallest member total largest
    (the mean total breaking ties): the first pick is the best consensus title, and later picks
    turn to whoever the list serves least so far.
    """
    utilities = np.atleast_2d(np.asarray(utilities, dtype=np.float64))
    pool = np.asarray(pool, dtype=bool)
    ranked = [rank_percentiles(u, pool) for u in utilities]
    percentiles = np.stack([p for p, _ in ranked])
    ranks = np.stack([r for _, r in ranked])
    items = np.flatnonzero(pool)
    gains = rank_gains(ranks[:, items], gain)  # [members, pool items]
    open_ = np.ones(len(items), dtype=bool)
    totals = np.zeros(len(utilities))
    picks: list[GroupPick] = []
    while len(picks) < count and open_.any():
        after = totals[:, None] + gains
        low = np.where(open_, after.min(axis=0), -np.inf)
        mean = after.mean(axis=0)
        best = np.flatnonzero(low == low.max())
        column = int(best[np.argmax(mean[best])])
        index = int(items[column])
        totals += gains[:, column]
        open_[column] = False
        if franchise is not None and int(franchise[index]) >= 0:
            open_ &= franchise[items] != franchise[index]
        picks.append(
            GroupPick(
                index,
                tuple(float(x) for x in percentiles[:, index]),
                tuple(int(x) for x in ranks[:, index]),
            )
        )
    return picks


VETO = 0.2  # a title below this percentile of any member's pool is "strongly disliked"
SHORTLIST = 1  # how many of their own best titles the choosing member weighs: see the module doc


def take_turns(
    utilities: np.ndarray,
    pool: np.ndarray,
    count: int,
    franchise: np.ndarray | None = None,
    *,
    veto: float = VETO,
    shortlist: int = SHORTLIST,
    gain: str = "reciprocal",
    least_served: bool = False,
) -> list[GroupPick]:
    """The group's picks: the members choose in turn, each weighing the others.

    The members choose in a fixed rotation (the first member first). The choosing member takes,
    among their `shortlist` best open titles that no member ranks below the `veto` percentile of
    the pool, the one with the largest gain summed over the members (`rank_gains` of each
    member's rank: the title that also serves the others most). When the veto leaves nothing,
    the best open titles are weighed regardless. `least_served=True` lets the member with the
    smallest total gain from the picks so far choose instead; members tied on it (all of them
    at the start) each propose a title, and the largest summed gain wins.
    """
    utilities = np.atleast_2d(np.asarray(utilities, dtype=np.float64))
    pool = np.asarray(pool, dtype=bool)
    ranked = [rank_percentiles(u, pool) for u in utilities]
    percentiles = np.stack([p for p, _ in ranked])
    ranks = np.stack([r for _, r in ranked])
    items = np.flatnonzero(pool)
    if len(items) == 0:
        return []
    member_ranks = ranks[:, items]
    gains = rank_gains(member_ranks, gain)  # [members, pool items]
    group_gain = gains.sum(axis=0)
    # The tolerance keeps a title exactly at the veto percentile (1 - 4/5 is 0.19999...) in.
    liked_enough = percentiles[:, items].min(axis=0) >= veto - 1e-9
    open_ = np.ones(len(items), dtype=bool)
    totals = np.zeros(len(utilities))
    picks: list[GroupPick] = []
    while len(picks) < count and open_.any():
        if least_served:
            choosers = np.flatnonzero(totals == totals.min()).tolist()
        else:
            choosers = [len(picks) % len(utilities)]
        allowed = open_ & liked_enough
        candidates = np.flatnonzero(allowed if allowed.any() else open_)
        proposals = []
        for m in choosers:
            # The member's best first; equal ranks go to the larger group gain, then the lower index.
            order = np.lexsort((candidates, -group_gain[candidates], member_ranks[m, candidates]))
            mine = candidates[order[:shortlist]]
            proposals.append(int(mine[np.argmax(group_gain[mine])]))
        column = max(proposals, key=lambda c: (group_gain[c], -c))
        index = int(items[column])
        totals += gains[:, column]
        open_[column] = False
        if franchise is not None and int(franchise[index]) >= 0:
            open_ &= franchise[items] != franchise[index]
        picks.append(
            GroupPick(
                index,
                tuple(float(x) for x in percentiles[:, index]),
                tuple(int(x) for x in ranks[:, index]),
            )
        )
    return picks


def round_robin(
    utilities: np.ndarray, pool: np.ndarray, count: int, franchise: np.ndarray | None = None
) -> list[int]:
    """The baseline: each member's own best pool titles, taken in turn, without repeats (and at
    most one per franchise when `franchise` is given)."""
    utilities = np.atleast_2d(np.asarray(utilities, dtype=np.float64))
    items = np.flatnonzero(np.asarray(pool, dtype=bool))
    orders = [items[best_first(u[items])].tolist() for u in utilities]
    out: list[int] = []
    seen: set[int] = set()
    taken: set[int] = set()
    position = [0] * len(orders)

    def free(index: int) -> bool:
        if index in seen:
            return False
        return franchise is None or int(franchise[index]) < 0 or int(franchise[index]) not in taken

    while len(out) < count and any(p < len(o) for p, o in zip(position, orders, strict=True)):
        for m, order in enumerate(orders):
            while position[m] < len(order) and not free(order[position[m]]):
                position[m] += 1
            if position[m] < len(order) and len(out) < count:
                index = order[position[m]]
                seen.add(index)
                if franchise is not None and int(franchise[index]) >= 0:
                    taken.add(int(franchise[index]))
                out.append(index)
    return out


def top_share(rank: int, pool_size: int) -> str:
    """ "top 3%" for a rank among `pool_size` titles (one decimal under 1%)."""
    share = 100.0 * (rank + 1) / max(pool_size, 1)
    return f"top {share:.1f}%" if share < 1 else f"top {round(share):d}%"


def suits_line(pick: GroupPick, names: Sequence[str], pool_size: int) -> str:
    """ "Suits alice most (top 1%); bob top 4%, carol top 9%": who the pick serves best."""
    order = sorted(range(len(names)), key=lambda m: (pick.ranks[m], m))
    first = order[0]
    rest = ", ".join(f"{names[m]} {top_share(pick.ranks[m], pool_size)}" for m in order[1:])
    line = f"Suits {names[first]} most ({top_share(pick.ranks[first], pool_size)})"
    return f"{line}; {rest}" if rest else line


class GroupTooSmall(AnimerecError):
    """Fewer than `MIN_MEMBERS` members are left to recommend for; `left_out` names the members
    whose lists the model could not read."""

    def __init__(self, message: str, left_out: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.left_out = tuple(left_out)


@dataclass(frozen=True, slots=True)
class MemberScores:
    """One member's run: utilities over the vocabulary (later franchise entries already carried
    to where the franchise starts), what they may be offered, and predicted scores (None
    without a model)."""

    utilities: np.ndarray  # float64 [n_items]
    eligible: np.ndarray  # bool [n_items]
    predicted: np.ndarray | None  # float64 [n_items]
