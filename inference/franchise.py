"""Franchise facts the filters and explanations share: order, prequels, entry points, recaps.

A catalogue built from AniList has relations, and then "sequel", "prequel" and "summary" are
facts. The offline catalogue has none (see `catalog.info["missing_fields"]`); there franchises are
title-stem groups and everything here is an approximation, flagged by `FranchiseIndex.exact`:
- order inside a franchise is by start date when every member has one, else by MAL id (MyAnimeList
  numbers entries roughly in the order they were added, which mostly follows air order);
- an item is a "later entry" when an earlier member exists, and the entry point is the earliest
  member;
- recaps are found by their titles ("... Recap", "Digest", "Soushuuhen", "Compilation").
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from inference.catalog import Catalog, CatalogItem

# Relation types whose *target* is a recap of the item holding the relation: MyAnimeList's
# "summary" and AniList's "compilation" (lowercased by the catalogue builders).
_RECAP_TARGET_RELATIONS = frozenset({"summary", "compilation"})
# Held by the recap itself, pointing at what it summarizes (MyAnimeList's "full story").
_RECAP_SOURCE_RELATIONS = frozenset({"full_story"})
# A heuristic: these words in a title almost always mean a recap or a digest cut of a series.
RECAP_TITLE = re.compile(r"\b(recaps?|digest|soushuuhen|sōshūhen|compilation)\b", re.IGNORECASE)


def _date_key(item: CatalogItem) -> tuple[int, int, int] | None:
    d = item.start_date
    if d is None:
        return None
    return (d.year, d.month or 0, d.day or 0)


@dataclass(frozen=True, slots=True)
class FranchiseIndex:
    """Per-catalogue franchise facts, in vocabulary indices. Build once with `build`."""

    exact: bool  # True when the catalogue has relations (facts), False for the approximation
    # vocabulary index -> indices of its direct prequels in the catalogue (exact mode only)
    prequels: dict[int, tuple[int, ...]]
    # franchise id -> member indices, earliest first
    members: dict[int, tuple[int, ...]]
    # vocabulary index -> its position inside its franchise's `members` (0 = entry point)
    rank: dict[int, int]
    recap_by_relation: frozenset[int]
    recap_by_title: frozenset[int]

    @classmethod
    def build(cls, catalog: Catalog) -> FranchiseIndex:
        exact = any(item.relations for item in catalog)
        prequels: dict[int, tuple[int, ...]] = {}
        recaps: set[int] = set()
        if exact:
            for i, item in enumerate(catalog):
                found = []
                for kind, target in item.relations:
                    j = catalog.index_of(target)
                    if j is None:
                        continue
                    if kind == "prequel":
                        found.append(j)
                    elif kind in _RECAP_TARGET_RELATIONS:
                        recaps.add(j)
                    elif kind in _RECAP_SOURCE_RELATIONS:
                        recaps.add(i)
                if found:
                    prequels[i] = tuple(sorted(set(found)))
        groups: dict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(catalog):
            if item.franchise_id is not None:
                groups[item.franchise_id].append(i)
        members: dict[int, tuple[int, ...]] = {}
        rank: dict[int, int] = {}
        for fid, indices in groups.items():
            keys = [_date_key(catalog[i]) for i in indices]
            if all(k is not None for k in keys):
                order = sorted(indices, key=lambda i: (_date_key(catalog[i]), catalog[i].mal_id))
            else:
                order = sorted(indices, key=lambda i: catalog[i].mal_id)
            members[fid] = tuple(order)
            for position, i in enumerate(order):
                rank[i] = position
        by_title = frozenset(i for i, item in enumerate(catalog) if RECAP_TITLE.search(item.title))
        return cls(exact, prequels, members, rank, frozenset(recaps), by_title)

    def is_recap(self, index: int) -> bool:
        return index in self.recap_by_relation or index in self.recap_by_title

    def earlier_members(self, catalog: Catalog, index: int) -> tuple[int, ...]:
        """Members of the item's franchise that come before it (approximate order offline)."""
        fid = catalog[index].franchise_id
        if fid is None:
            return ()
        return self.members[fid][: self.rank[index]]


def franchise_array(catalog: Catalog) -> np.ndarray:
    """int64 [n_items]: each item's franchise id, −1 where it has none (the re-ranker's input)."""
    return np.array(
        [-1 if item.franchise_id is None else item.franchise_id for item in catalog], dtype=np.int64
    )
