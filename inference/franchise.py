"""Franchise facts the filters and explanations share: viewing order, what must be completed before
what, entry points, older versions, recaps.

Every item may *require* others (`FranchiseIndex.requires`): it is offered only once the user has
completed one of them (`inference.filters` applies that). Two ways to know what requires what,
named by `FranchiseIndex.method`:

- "relations", a catalogue built from AniList (`python -m training catalog --live`). A prequel or
  sequel edge orders two entries; the one that aired first is watched first, so a prequel made
  years later (Kizumonogatari, Fate/Zero) comes after the series it precedes in the story. A side
  story requires its parent. A spin-off requires its parent or anything before it (Railgun needs
  an Index season, not the latest one); spin-offs belong to their parent's franchise (the
  catalogue builder joins them) so only one of the two is picked per list.
- the approximation, for the offline catalogue (no relations; its franchises are title-stem
  groups joined by TMDB series, see `training.catalog_build`). Inside a franchise, TV series are the main line in air order (films and OVAs hang off it): each
  series requires the one before it, anything else the latest series aired before it. A later
  series that is more popular than every earlier one and carries no season marker ("Brotherhood"),
  or whose title says it restarts ("(2011)", "1st Season"), starts a new line (a remake). Air order
  is the start date where bangumi-data has one; undated entries sit after the dated member with
  the next lower MyAnimeList id (ids follow the order entries were added, which mostly follows air
  order).

Both modes then share the rules:
- recaps and summaries (by relation, or by title words) are never picks;
- a requirement that is a promo, music video, special or short extra is skipped over by main-story
  entries (a season never waits for its bonus OVA), and a recap requirement always is;
- a franchise's entry point is its first main-story TV series or film in air order; promos,
  specials, music videos and short OVAs/ONAs (two episodes or fewer) never are, and an extra with
  nothing before it requires the entry point;
- remakes: when the first main entry has a later alternative version (relations) or a remake line
  (approximation) that is more popular, that one is the entry point, the older one requires it,
  and `older_versions` remembers it so the explanation can say an older version exists;
- completing an alternative version counts as completing the entry it stands in for (whoever saw
  Hunter x Hunter (2011) may be offered the 1999 series' OVAs).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from inference.catalog import Catalog, CatalogItem

# Relation types whose *target* is a recap of the item holding the relation: MyAnimeList's
# "summary" and AniList's "compilation" (lowercased by the catalogue builders).
_RECAP_TARGET_RELATIONS = frozenset({"summary", "compilation"})
# Held by the recap itself, pointing at what it summarizes: MyAnimeList's "full story" and
# AniList's "contains" (a compilation contains the works it is cut from).
_RECAP_SOURCE_RELATIONS = frozenset({"full_story", "contains"})
_ALTERNATIVE_RELATIONS = frozenset({"alternative", "alternative_version"})
# Held by a parent, pointing at a child that AniList answers with "parent". AniList also answers
# "summary" and "other" with "parent", so a child's "parent" edge alone says little.
_NOT_A_CHILD = frozenset({"other", "character", "adaptation", "source"})
# A heuristic: these words in a title almost always mean a recap or a digest cut of a series.
RECAP_TITLE = re.compile(r"\b(recaps?|digest|soushuuhen|sōshūhen|compilation)\b", re.IGNORECASE)
# Promotional and bonus material: never where a franchise starts.
PROMO_TITLE = re.compile(
    r"\b(pvs?|cms?|picture\s+drama|trailers?|teasers?|promotion(al)?(\s+videos?)?|pilot|"
    r"music\s+videos?|mvs?)\b",
    re.IGNORECASE,
)
_MINOR_TYPES = frozenset({"special", "music", "tv_special"})
_EXTRA_TYPES = frozenset({"ova", "ona"})
_MAX_EXTRA_EPISODES = 2  # an OVA/ONA this short is a bonus, not a series
_ENTRY_TYPES = frozenset({"tv", "movie"})
# Approximation: words that mark a later instalment rather than a new version.
_SEQUEL_MARK = re.compile(
    r"\d|\b(ii|iii|iv|vi{0,3}|ix|x|season|zoku|shin|final|part|cour|kan|shou|next|after|"
    r"second|third|new|returns?|r2)\b|['’°]|!!",
    re.IGNORECASE,
)
_RESTART_MARK = re.compile(r"\((19|20)\d\d\)|\b(1st|first)\s+season\b|\bseason\s+1\b", re.I)
_MIN_REMAKE_EPISODES = 10
_NON_WORD = re.compile(r"[\W_]+")

OrderKey = tuple[int, int, int, int, int]


def is_minor(item: CatalogItem) -> bool:
    """Promos, music videos, specials and short OVAs/ONAs: extras, never an entry point."""
    if item.media_type in _MINOR_TYPES or PROMO_TITLE.search(item.title):
        return True
    return (
        item.media_type in _EXTRA_TYPES
        and item.episodes is not None
        and item.episodes <= _MAX_EXTRA_EPISODES
    )


def _date_key(item: CatalogItem) -> tuple[int, int, int] | None:
    d = item.start_date
    if d is not None:
        return (d.year, d.month or 0, d.day or 0)
    if item.season_year is not None:
        return (item.season_year, 0, 0)
    return None


def _order_keys(catalog: Catalog, groups: Mapping[int, list[int]]) -> dict[int, OrderKey]:
    """Air order inside each group; undated members sit right after the dated member with the
    next lower MAL id (or before every dated one when none is lower)."""
    keys: dict[int, OrderKey] = {}
    for indices in groups.values():
        dated = sorted(
            (catalog[i].mal_id, d, i) for i in indices if (d := _date_key(catalog[i])) is not None
        )
        first = min((d for _, d, _ in dated), default=(0, 0, 0))
        for i in indices:
            item = catalog[i]
            d = _date_key(item)
            if d is not None:
                keys[i] = (*d, 0, item.mal_id)
                continue
            below = [date for mal_id, date, _ in dated if mal_id < item.mal_id]
            keys[i] = (*below[-1], 1, item.mal_id) if below else (*first, -1, item.mal_id)
    return keys


@dataclass(frozen=True, slots=True)
class FranchiseIndex:
    """Per-catalogue franchise facts, in vocabulary indices. Build once with `build`."""

    exact: bool  # True when the catalogue has relations (facts), False for the approximation
    method: str  # "relations" or "approximate: ..." (what `exact` means, for people)
    # vocabulary index -> its direct prequels in viewing order (exact mode only; "Sequel to Z")
    prequels: dict[int, tuple[int, ...]]
    # vocabulary index -> items, any one of which completed lets it be offered; earliest aired
    # first, the one the walk to a stand-in follows
    requires: dict[int, tuple[int, ...]]
    # franchise id -> member indices in viewing (air) order
    members: dict[int, tuple[int, ...]]
    # vocabulary index -> its position inside its franchise's `members`
    rank: dict[int, int]
    entry_points: dict[int, int]  # franchise id -> its entry point
    older_versions: dict[int, tuple[int, ...]]  # entry point (a remake) -> the versions before it
    recap_by_relation: frozenset[int]
    recap_by_title: frozenset[int]
    minor: frozenset[int]  # promos, music videos, specials, short extras

    @classmethod
    def build(cls, catalog: Catalog) -> FranchiseIndex:
        exact = any(item.relations for item in catalog)
        groups: dict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(catalog):
            # An item without a franchise is a franchise of one (negative ids never collide).
            groups[item.franchise_id if item.franchise_id is not None else -1 - i].append(i)
        keys = _order_keys(catalog, groups)
        by_title = frozenset(i for i, item in enumerate(catalog) if RECAP_TITLE.search(item.title))
        minor = frozenset(i for i, item in enumerate(catalog) if is_minor(item))
        if exact:
            graph = _Graph.read(catalog)
            recaps = frozenset(graph.recaps)
            recap_sources = graph.recaps
            prequels = {i: _sorted(p, keys) for i, p in graph.viewing_prequels(catalog).items()}
            builder = _Requirements(catalog, keys, recaps | by_title, minor)
            builder.add_story(graph.later, graph.earlier, recap_sources)
            builder.add_all(graph.side)
            builder.contract()
            builder.add_spin_offs(graph.spin_parents)
            builder.alternatives = graph.alternatives
            builder.inherit_from_alternatives()
            for indices in groups.values():
                builder.choose_entry_from_roots(indices)
        else:
            recaps = frozenset()
            prequels = {}
            builder = _Requirements(catalog, keys, by_title, minor)
            for indices in groups.values():
                builder.approximate_group(indices)
        builder.finish(groups)
        members: dict[int, tuple[int, ...]] = {}
        rank: dict[int, int] = {}
        entry_points: dict[int, int] = {}
        for fid, indices in groups.items():
            order = tuple(sorted(indices, key=keys.__getitem__))
            if fid >= 0:
                members[fid] = order
                if fid in builder.entry:
                    entry_points[fid] = builder.entry[fid]
            for position, i in enumerate(order):
                rank[i] = position
        method = "relations" if exact else "approximate: title stems"
        stated = str(catalog.info.get("franchise_method") or "")
        if stated.startswith("approximate") and not exact:
            method = stated
        return cls(
            exact=exact,
            method=method,
            prequels=prequels,
            requires={i: _sorted(r, keys) for i, r in builder.requires.items() if r},
            members=members,
            rank=rank,
            entry_points=entry_points,
            older_versions={k: _sorted(v, keys) for k, v in builder.older.items()},
            recap_by_relation=recaps,
            recap_by_title=by_title,
            minor=minor,
        )

    def is_recap(self, index: int) -> bool:
        return index in self.recap_by_relation or index in self.recap_by_title

    def earlier_members(self, catalog: Catalog, index: int) -> tuple[int, ...]:
        """Members of the item's franchise that aired before it."""
        fid = catalog[index].franchise_id
        if fid is None:
            return ()
        return self.members[fid][: self.rank[index]]

    def entry_point(self, catalog: Catalog, index: int) -> int | None:
        """Where the item's franchise starts (None for an item outside every franchise)."""
        fid = catalog[index].franchise_id
        return None if fid is None else self.entry_points.get(fid)

    def older_version(self, index: int) -> int | None:
        """The older version an entry point was preferred over (a remake's original), if any."""
        older = self.older_versions.get(index)
        return older[0] if older else None


def older_version_line(
    catalog: Catalog,
    franchises: FranchiseIndex,
    index: int,
    name: Callable[[int], str] | None = None,
) -> str | None:
    """ "An older version exists (TITLE, YEAR)" for a remake offered as its franchise's start;
    `name` names a catalogue index (the explainer's one naming), else the catalogue's title."""
    older = franchises.older_version(index)
    if older is None:
        return None
    item = catalog[older]
    title = name(older) if name is not None else (item.title_english or item.title)
    year = item.start_date.year if item.start_date else item.season_year
    return (
        f"An older version exists ({title}, {year})"
        if year
        else f"An older version exists ({title})"
    )


def franchise_array(catalog: Catalog) -> np.ndarray:
    """int64 [n_items]: each item's franchise id, −1 where it has none (the re-ranker's input)."""
    return np.array(
        [-1 if item.franchise_id is None else item.franchise_id for item in catalog], dtype=np.int64
    )


def _sorted(indices: Iterable[int], keys: Mapping[int, OrderKey]) -> tuple[int, ...]:
    return tuple(sorted(set(indices), key=keys.__getitem__))


@dataclass
class _Graph:
    """What a catalogue's relations say, as requirement edges (item -> items before it)."""

    later: dict[int, set[int]]  # story order: item -> its direct sequels
    earlier: dict[int, set[int]]  # story order: item -> its direct prequels
    side: dict[int, set[int]]  # side story -> its parent
    spin_parents: dict[int, set[int]]  # spin-off -> its parent
    alternatives: dict[int, set[int]]
    recaps: dict[int, set[int]]  # recap -> what it summarizes

    @classmethod
    def read(cls, catalog: Catalog) -> _Graph:
        later: dict[int, set[int]] = defaultdict(set)
        earlier: dict[int, set[int]] = defaultdict(set)
        side: dict[int, set[int]] = defaultdict(set)
        spin: dict[int, set[int]] = defaultdict(set)
        alternatives: dict[int, set[int]] = defaultdict(set)
        recaps: dict[int, set[int]] = defaultdict(set)
        said: dict[tuple[int, int], set[str]] = defaultdict(set)  # (holder, target) -> kinds
        for i, item in enumerate(catalog):
            for kind, target in item.relations:
                j = catalog.index_of(target)
                if j is not None and j != i:
                    said[(i, j)].add(kind)
        for (i, j), kinds in said.items():
            for kind in kinds:
                if kind in ("prequel", "sequel"):
                    first, then = (j, i) if kind == "prequel" else (i, j)
                    later[first].add(then)
                    earlier[then].add(first)
                elif kind == "side_story":
                    side[j].add(i)
                elif kind == "spin_off":
                    spin[j].add(i)
                elif kind == "parent":
                    back = said.get((j, i), set())
                    if "spin_off" in back:
                        spin[i].add(j)
                    elif not back & (_NOT_A_CHILD | _RECAP_TARGET_RELATIONS):
                        side[i].add(j)
                elif kind in _ALTERNATIVE_RELATIONS:
                    alternatives[i].add(j)
                    alternatives[j].add(i)
                elif kind in _RECAP_TARGET_RELATIONS:
                    recaps[j].add(i)
                elif kind in _RECAP_SOURCE_RELATIONS:
                    recaps[i].add(j)
        for child, parents in spin.items():
            side[child] -= parents  # a spin-off's looser rule replaces the side-story one
        return cls(later, earlier, side, spin, alternatives, recaps)

    def viewing_prequels(self, catalog: Catalog) -> dict[int, set[int]]:
        """Direct story neighbours watched before each item: its prequels, unless they aired
        after it, and its sequels that aired before it."""
        out: dict[int, set[int]] = defaultdict(set)
        for first, thens in self.later.items():
            for then in thens:
                if _aired_before(catalog[then], catalog[first]):
                    out[first].add(then)
                else:
                    out[then].add(first)
        return out


def _aired_before(a: CatalogItem, b: CatalogItem) -> bool:
    """Both have air dates and a's is earlier (an unknown date leaves the story order alone)."""
    da, db = _date_key(a), _date_key(b)
    return da is not None and db is not None and da < db


def _reach(start: int, step: Mapping[int, set[int]]) -> set[int]:
    out: set[int] = set()
    stack = [start]
    while stack:
        for j in step.get(stack.pop(), ()):
            if j not in out:
                out.add(j)
                stack.append(j)
    out.discard(start)
    return out


class _Requirements:
    """Builds `requires`, entry points and older versions for one catalogue."""

    def __init__(
        self,
        catalog: Catalog,
        keys: Mapping[int, OrderKey],
        recaps: frozenset[int],
        minor: frozenset[int],
    ) -> None:
        self.catalog = catalog
        self.keys = keys
        self.recaps = recaps
        self.minor = minor
        self.requires: dict[int, set[int]] = defaultdict(set)
        self.alternatives: dict[int, set[int]] = {}
        self.entry: dict[int, int] = {}
        self.older: dict[int, list[int]] = {}

    def extra(self, i: int) -> bool:
        return i in self.minor or i in self.recaps

    def main_format(self, i: int) -> bool:
        return not self.extra(i)

    def tier(self, i: int) -> int:
        """Entry-point preference: TV series and films, then other main entries, then the rest."""
        if self.main_format(i) and self.catalog[i].media_type in _ENTRY_TYPES:
            return 0
        return 1 if self.main_format(i) else 2

    def add_story(
        self,
        later: Mapping[int, set[int]],
        earlier: Mapping[int, set[int]],
        recap_sources: Mapping[int, set[int]],
    ) -> None:
        """Each item in a prequel/sequel chain requires the entry of its chain (prequels and
        sequels, however far) that aired last before it: chains are watched in air order, so a
        prequel made years later comes after the series it precedes in the story. A recap in
        the chain stands for what it summarizes (a film sequel to a recap film follows the
        series), and a main-story entry looks past extras (a season does not wait for the
        special between it and the last one). Unknown air dates keep the story order."""
        catalog = self.catalog
        for x in set(later) | set(earlier):
            chain = [y for y in _reach(x, earlier) if not _aired_before(catalog[x], catalog[y])] + [
                y for y in _reach(x, later) if _aired_before(catalog[y], catalog[x])
            ]
            before: list[int] = []
            for y in chain:
                if y not in self.recaps:
                    before.append(y)
                    continue
                before += [
                    source
                    for source in recap_sources.get(y, ())
                    if source != x
                    and source not in self.recaps
                    and not _aired_before(catalog[x], catalog[source])
                ]
            if self.main_format(x):
                before = [y for y in before if self.main_format(y)]
            if before:
                self.requires[x].add(max(before, key=self.keys.__getitem__))

    def add_all(self, edges: Mapping[int, set[int]]) -> None:
        for i, before in edges.items():
            self.requires[i] |= before

    def contract(self) -> None:
        """Main-story entries skip requirements that are extras (through to what those require);
        everything skips recaps."""
        for i in list(self.requires):
            skip = self.extra if self.main_format(i) else self.recaps.__contains__
            out: set[int] = set()
            stack, seen = list(self.requires[i]), {i}
            while stack:
                r = stack.pop()
                if r in seen:
                    continue
                seen.add(r)
                if skip(r):
                    stack.extend(self.requires.get(r, ()))
                else:
                    out.add(r)
            self.requires[i] = out

    def ancestors(self, i: int) -> set[int]:
        out: set[int] = set()
        stack = [i]
        while stack:
            for r in self.requires.get(stack.pop(), ()):
                if r not in out:
                    out.add(r)
                    stack.append(r)
        return out

    def add_spin_offs(self, parents: Mapping[int, set[int]]) -> None:
        for child, ps in parents.items():
            for p in ps:
                self.requires[child] |= {p} | self.ancestors(p)
            self.requires[child].discard(child)

    def inherit_from_alternatives(self) -> None:
        """An entry with nothing before it that is another version of a later entry (a TV cut of
        a sequel film) waits for what that entry waits for."""
        for i in range(len(self.catalog)):
            if self.requires.get(i) or i in self.recaps:
                continue
            inherited: set[int] = set()
            for a in self.alternatives.get(i, ()):
                if self.requires.get(a) and i not in self.ancestors(a):
                    inherited |= self.requires[a]
            if inherited:
                self.requires[i] = inherited - {i}

    def choose_entry_from_roots(self, indices: list[int]) -> None:
        """Relations: the entry point is the earliest root (nothing required) of the best tier."""
        members = [i for i in indices if i not in self.recaps]
        if not members:
            return
        roots = [i for i in members if not self.requires.get(i)] or members
        best = min(self.tier(i) for i in roots)
        first = min((i for i in roots if self.tier(i) == best), key=self.keys.__getitem__)
        versions = [first] + [
            r
            for r in roots
            if r in self.alternatives.get(first, ())
            and self.main_format(r)
            and self.keys[r] >= self.keys[first]
        ]
        free = {i for i in indices if self.tier(i) == 0}
        self._settle(indices, first, versions, free=free)

    def approximate_group(self, indices: list[int]) -> None:
        """No relations: TV series (else films, else the rest) in air order are the main line."""
        catalog, keys = self.catalog, self.keys
        order = sorted((i for i in indices if i not in self.recaps), key=keys.__getitem__)
        if not order:
            return
        best = min(self.tier(i) for i in order)
        tv = [i for i in order if self.tier(i) == 0 and catalog[i].media_type == "tv"]
        line = tv or [i for i in order if self.tier(i) == best]
        # "Tensura Nikki: Tensei shitara Slime Datta Ken": a spin-off named after the series in its
        # subtitle is no season of it; it needs the series' start, like a spin-off by relation.
        named = _normal(catalog[line[0]].title)
        spin_offs = [
            i for i in order if i != line[0] and _subtitle(catalog[i].title).startswith(named)
        ]
        line = [i for i in line if i not in spin_offs]
        for i in spin_offs:
            self.requires[i].add(line[0])
        heads = [line[0]]
        head_of: dict[int, int] = {line[0]: line[0]}
        previous: dict[int, int] = {}
        top = catalog[line[0]].popularity or 0
        for i in line[1:]:
            if self._restarts(i, top, bool(tv)):
                heads.append(i)
                head_of[i] = i
            else:
                head = heads[-1]
                previous[i] = max(
                    (m for m in line if head_of.get(m) == head and keys[m] < keys[i]),
                    key=keys.__getitem__,
                )
                head_of[i] = head
            top = max(top, catalog[i].popularity or 0)
        for i, before in previous.items():
            self.requires[i].add(before)
        for i in order:
            if i in head_of or i in spin_offs:
                continue
            earlier = [m for m in line if keys[m] < keys[i]]
            if earlier:
                self.requires[i].add(earlier[-1])
        first = line[0]
        stem = _normal(catalog[first].title)
        versions = [first] + [h for h in heads[1:] if _normal(catalog[h].title).startswith(stem)]
        for v in versions:
            self.alternatives[v] = set(versions) - {v}
        # Heads of unrelated lines (another series sharing the stem) stay free; nothing else does.
        self._settle(indices, first, versions, free=set(heads))

    def _restarts(self, i: int, top: int, tv: bool) -> bool:
        item = self.catalog[i]
        if _RESTART_MARK.search(item.title):
            return True
        return (
            tv
            and (item.popularity or 0) > top
            and not _SEQUEL_MARK.search(item.title)
            and (item.episodes is None or item.episodes >= _MIN_REMAKE_EPISODES)
        )

    def _settle(
        self, indices: list[int], first: int, versions: list[int], *, free: set[int]
    ) -> None:
        """Pick the entry point among `first` and its later versions (the most popular; the
        earliest on a tie). The other versions require it, and so does every member with nothing
        before it, unless it is in `free` (the start of another line)."""
        entry = first
        for v in sorted(versions, key=self.keys.__getitem__):
            if (self.catalog[v].popularity or 0) > (self.catalog[entry].popularity or 0):
                entry = v
        fid = self.catalog[first].franchise_id
        if fid is not None:
            self.entry[fid] = entry
        for v in versions:
            if v != entry:
                self.requires[v] = {entry}
        if entry != first:
            self.older[entry] = [v for v in versions if self.keys[v] < self.keys[entry]]
        for i in indices:
            if i == entry or i in versions or i in self.recaps or self.requires.get(i):
                continue
            if i not in free:
                self.requires[i] = {entry}

    def finish(self, groups: Mapping[int, list[int]]) -> None:
        """Completing an alternative version counts as completing what it stands in for."""
        for i, reqs in list(self.requires.items()):
            more = set()
            for r in reqs:
                more |= {a for a in self.alternatives.get(r, ()) if self.main_format(a)}
            reqs |= more
            reqs.discard(i)


def _normal(title: str) -> str:
    return _NON_WORD.sub(" ", title.casefold()).strip()


def _subtitle(title: str) -> str:
    """The normalized part of a title after its first colon ("" when it has none)."""
    return _normal(title.split(":", 1)[1]) if ":" in title else ""
