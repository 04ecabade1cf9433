"""`inference.filters.eligible`, with the per-catalogue work done once: same answers, per request
only what depends on the list.

`filters.eligible` looks at every catalogue item in Python for every request (about 25 ms for 7k
items, more than the whole model run). Almost all of it depends only on the catalogue (adult,
recap, media type, genres) or on the day (not yet aired), so `EligibilityIndex` keeps those as
arrays and each request combines them with numpy. The franchise rule is per item, but its answer
depends only on the list entries among the items its requirements connect it to: for the chains
the list does not touch, the answer is the one an empty list gets, worked out once.

The result is the `filters.Eligibility` that `filters.eligible` returns for the same input;
tests/inference/test_eligibility_index.py checks that on many random lists and options.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np

from inference.animelist import STATUS_CODES, AnimeList, Status
from inference.catalog import Catalog
from inference.filters import (
    REASONS,
    WALK_STOPS,
    Eligibility,
    is_unaired,
    list_statuses,
    next_to_watch,
    prequel_rule,
)
from inference.franchise import FranchiseIndex
from inference.options import RecommendOptions, catalog_genres


class EligibilityIndex:
    def __init__(self, catalog: Catalog, franchises: FranchiseIndex | None = None) -> None:
        self.catalog = catalog
        self.franchises = franchises or FranchiseIndex.build(catalog)
        n = len(catalog)
        self.known_genres = catalog_genres(catalog)
        self._genre_column = {g: c for c, g in enumerate(sorted(set(self.known_genres.values())))}
        self._genres = np.zeros((n, len(self._genre_column)), dtype=bool)
        for i, item in enumerate(catalog):
            for g in item.genres:
                self._genres[i, self._genre_column[g]] = True
        self._mal_ids = np.array([item.mal_id for item in catalog], dtype=np.int64)
        self._adult = np.array([item.adult for item in catalog], dtype=bool)
        self._recap = np.zeros(n, dtype=bool)
        recaps = [i for i in range(n) if self.franchises.is_recap(i)]
        self._recap[recaps] = True
        self._media_types = np.array([item.media_type or "" for item in catalog], dtype=object)
        self._airing = np.array([item.airing_status == "airing" for item in catalog], dtype=bool)
        self._stop_codes = np.array(sorted(STATUS_CODES[s] for s in WALK_STOPS), dtype=np.int64)
        # Items the franchise rule may hold back, the chain (connected by requirements) each item
        # sits in, and what an untouched chain offers in each held-back item's place (−1: none).
        self._later = np.zeros(n, dtype=bool)
        self._later[list(self.franchises.requires)] = True
        self._chain = _requirement_chains(n, self.franchises.requires)
        # Every (item, one of its requirements) pair, flattened.
        pairs = [(i, r) for i, required in self.franchises.requires.items() for r in required]
        self._owner = np.array([i for i, _ in pairs], dtype=np.int64)
        self._required = np.array([r for _, r in pairs], dtype=np.int64)
        self._fresh = np.full(n, -1, dtype=np.int64)
        for i in self.franchises.requires:
            held, entry = prequel_rule(i, {}, self.franchises, catalog)
            assert held  # nothing on the list completes anything
            if entry is not None:
                self._fresh[i] = entry
        self._unaired_day: dt.date | None = None
        self._unaired = np.zeros(n, dtype=bool)

    def resolve(self, options: RecommendOptions) -> RecommendOptions:
        """`options.resolve_genres(catalog)` without scanning the catalogue again."""
        return options.resolve_genres(self.catalog, known=self.known_genres)

    def _unaired_on(self, today: dt.date) -> np.ndarray:
        if self._unaired_day != today:
            self._unaired = np.array([is_unaired(item, today) for item in self.catalog], dtype=bool)
            self._unaired_day = today
        return self._unaired

    def eligible(
        self, animelist: AnimeList, options: RecommendOptions, *, today: dt.date | None = None
    ) -> Eligibility:
        today = today or dt.date.today()
        options = self.resolve(options)
        statuses = list_statuses(animelist, self.catalog)
        n = len(self.catalog)
        # The list as arrays: its items and the code of each one's status.
        on_list = np.fromiter(statuses, dtype=np.int64, count=len(statuses))
        codes = np.fromiter(
            (STATUS_CODES[s] for s in statuses.values()), dtype=np.int64, count=len(statuses)
        )
        listed = np.zeros(n, dtype=bool)
        listed[on_list] = True
        planned = np.zeros(n, dtype=bool)
        planned[on_list[codes == STATUS_CODES[Status.PLAN_TO_WATCH]]] = True
        reasons = {
            "on_list": listed & ~(planned & options.plan_to_watch),
            "not_interested": np.isin(self._mal_ids, list(options.exclude_mal_ids)),
            "adult": self._adult if not options.adult else np.zeros(n, dtype=bool),
            "recap": self._recap,
            "unaired": self._unaired_on(today) if not options.unaired else np.zeros(n, bool),
            "media_type": (
                ~np.isin(self._media_types, list(options.media_types))
                if options.media_types is not None
                else np.zeros(n, dtype=bool)
            ),
            "excluded_genre": self._any_genre(options.exclude_genres),
            "missing_genre": (
                ~self._any_genre(options.include_genres)
                if options.include_genres
                else np.zeros(n, dtype=bool)
            ),
        }
        mask = np.ones(n, dtype=bool)
        counts: dict[str, int] = {}
        for reason in REASONS[:-1]:
            hit = reasons[reason] & mask
            counts[reason] = int(hit.sum())
            mask &= ~hit

        later = mask & self._later
        chain_touched = np.zeros(n, dtype=bool)  # (chain labels are item indices)
        chain_touched[self._chain[list(statuses)]] = True
        touched = chain_touched[self._chain]
        quiet = np.flatnonzero(later & ~touched)
        mask[quiet] = False
        held_back = len(quiet)
        offered = quiet[self._fresh[quiet] >= 0]
        # The rest, `prequel_rule` on arrays: free when a requirement is completed, or when the
        # item is planned and no requirement was dropped; held without a stand-in after a drop;
        # only the items left need the walk to what to watch first.
        rest = np.flatnonzero(later & touched)
        # `filters.completes`: completed, or watching while it airs.
        done = np.zeros(n, dtype=bool)
        watching = codes == STATUS_CODES[Status.WATCHING]
        done[
            on_list[(codes == STATUS_CODES[Status.COMPLETED]) | (watching & self._airing[on_list])]
        ] = True
        dropped = np.zeros(n, dtype=bool)
        dropped[on_list[codes == STATUS_CODES[Status.DROPPED]]] = True
        stops = set(on_list[np.isin(codes, self._stop_codes)].tolist())
        met = np.bincount(self._owner, weights=done[self._required], minlength=n)[rest] > 0
        gave_up = np.bincount(self._owner, weights=dropped[self._required], minlength=n)[rest] > 0
        free = met | (planned[rest] & ~gave_up)
        held = rest[~free]
        mask[held] = False
        held_back += len(held)
        walked: list[int] = []
        walks = EntryWalks(
            self.franchises.requires,
            set(np.flatnonzero(done).tolist()),
            stops,
            lambda i: next_to_watch(i, statuses, self.franchises, self.catalog),
        )
        for i in rest[~free & ~gave_up].tolist():
            entry = walks.entry(i)
            if entry is not None and mask[entry]:
                walked += (i, entry)
        counts["unwatched_prequel"] = held_back
        # A stand-in that another filter removed is none: keep only eligible ones, in item order
        # (two sorted runs: the sort only merges them).
        offered = offered[mask[self._fresh[offered]]]
        pairs = np.array(walked, dtype=np.int64).reshape(-1, 2)
        laters = np.concatenate([offered, pairs[:, 0]])
        entries = np.concatenate([self._fresh[offered], pairs[:, 1]])
        order = np.argsort(laters, kind="stable")  # (timsort: it merges the two runs)
        redirects = dict(zip(laters[order].tolist(), entries[order].tolist(), strict=True))
        return Eligibility(
            mask=mask,
            plan_to_watch=planned & mask,
            excluded={reason: counts.get(reason, 0) for reason in REASONS},
            redirects=redirects,
            approximate_franchises=not self.franchises.exact,
        )

    def _any_genre(self, names: tuple[str, ...]) -> np.ndarray:
        columns = [self._genre_column[g] for g in names if g in self._genre_column]
        if not columns:
            return np.zeros(len(self.catalog), dtype=bool)
        return np.asarray(self._genres[:, columns].any(axis=1), dtype=bool)


class EntryWalks:
    """`filters.next_to_watch` for many items of one list, sharing what their walks share.

    Items of one franchise walk back through the same entries, and a walk's outcome from an entry
    on (its tail) does not depend on where the walk began, except through the cycle check: a walk
    that comes back to an entry it passed gives None. So each tail is worked out once, with the
    entries it passes, and a walk takes it whole unless it passes the walk's own start; a tail
    that runs into a cycle is not kept, and walks that meet one, or their own start, are walked
    by `fallback` (`next_to_watch` itself).

    `done`: listed items that let what follows them be offered (`filters.completes`); `stops`:
    listed items that stop a walk (dropped, watching, on hold).
    """

    def __init__(
        self,
        requires: dict[int, tuple[int, ...]],
        done: set[int],
        stops: set[int],
        fallback: Callable[[int], int | None],
    ) -> None:
        self.requires, self.done, self.stops, self.fallback = requires, done, stops, fallback
        self._tails: dict[int, tuple[int | None, frozenset[int]]] = {}

    def entry(self, i: int) -> int | None:
        required = self.requires.get(i)
        if not required or not self.stops.isdisjoint(required):
            return None
        tail = self._tails.get(required[0]) or self._tail(required[0])
        if tail is None or i in tail[1]:
            return self.fallback(i)
        return tail[0]

    def _tail(self, start: int) -> tuple[int | None, frozenset[int]] | None:
        """(outcome, entries passed) of a walk that reaches `start` (not its first item)."""
        pending: list[int] = []
        node = start
        while node not in self._tails:
            required = self.requires.get(node)
            if not required or not self.done.isdisjoint(required):
                self._tails[node] = (node, frozenset((node,)))
            elif not self.stops.isdisjoint(required):
                self._tails[node] = (None, frozenset((node,)))
            else:
                pending.append(node)
                node = required[0]
                if node in pending:
                    return None
        # Every entry a kept tail passes has a kept tail of its own, so none of `pending` is
        # among them: the walks from `pending` have no cycle and end as the kept one does.
        outcome, passed = self._tails[node]
        for node in reversed(pending):
            passed = passed | {node}
            self._tails[node] = (outcome, passed)
        return self._tails[start]


def _requirement_chains(n: int, requires: dict[int, tuple[int, ...]]) -> np.ndarray:
    """int64 [n]: a label per connected component of the requirement graph."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, required in requires.items():
        for r in required:
            a, b = find(i), find(r)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(n)], dtype=np.int64)
