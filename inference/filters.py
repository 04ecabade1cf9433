"""Which catalogue items a user may be recommended (docs/architecture.md#filters-and-re-ranking: the filter before re-ranking).

`eligible` returns a boolean mask over the vocabulary (= catalogue order) and, for each reason an
item was left out, how many items it removed; each excluded item is counted once, under the first
reason in `REASONS` that applies, so the counts add up to the number of excluded items.

The franchise rule ("unwatched_prequel"): an item that requires earlier entries
(`FranchiseIndex.requires`: sequels, later seasons, sequel films, side stories, spin-offs, the
older version of a remake) is offered only once the user has completed one of them; watching one
that is still airing counts, since a long runner cannot be completed. It stays eligible when the
user put it on their plan-to-watch list themselves, unless what it requires was dropped: nothing
that follows a dropped entry is offered. A held-back item's place goes to the next entry the user
should watch (`Eligibility.redirects`), found by walking its requirements back to one whose own
requirements are met, and `redirect_utilities` hands the better of the two utilities to it, so a
strong signal for "season 3" still surfaces "season 1". Nothing is offered in its place when the
walk meets a dropped entry or one the user is in the middle of.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

import numpy as np

from inference.animelist import AnimeList, Status
from inference.catalog import Catalog, CatalogItem
from inference.franchise import FranchiseIndex
from inference.options import RecommendOptions

REASONS = (
    "on_list",  # already on the list (plan-to-watch excepted when allowed)
    "not_interested",  # marked "seen" or "not interested" by the user
    "adult",
    "recap",
    "unaired",
    "media_type",
    "excluded_genre",
    "missing_genre",  # has none of the genres asked for
    "unwatched_prequel",  # a later entry of a franchise the user has not started
)
# Statuses of a requirement that stop the walk to what to offer instead: the user gave up on it,
# or is in the middle of it (offering it again would be noise).
# Statuses that end the walk to what to watch first: the user is on it, or gave up.
WALK_STOPS = frozenset({Status.DROPPED, Status.WATCHING, Status.ON_HOLD})


@dataclass(frozen=True, slots=True)
class Eligibility:
    mask: np.ndarray  # bool [n_items]: may be recommended
    plan_to_watch: np.ndarray  # bool [n_items]: eligible and already on the plan-to-watch list
    excluded: dict[str, int]  # reason -> items it removed (every reason present, 0 when none)
    redirects: dict[int, int]  # held-back later entry -> entry point offered instead
    approximate_franchises: bool  # prequels came from franchise order, not relations


def list_statuses(animelist: AnimeList, catalog: Catalog) -> dict[int, Status]:
    """Vocabulary index -> the user's status; titles outside the catalogue are skipped. A rewatch
    counts as completed (AniList's "repeating" is a watching status on something seen through)."""
    out: dict[int, Status] = {}
    for entry in animelist.entries:
        index = catalog.index_of(entry.mal_id)
        if index is not None:
            out[index] = Status.COMPLETED if entry.rewatching else entry.status
    return out


def completes(status: Status | None, item: CatalogItem) -> bool:
    """Whether a list entry lets what follows it be offered: completed, or being watched while it
    is still airing (nobody can complete a series that has not ended)."""
    return status == Status.COMPLETED or (
        status == Status.WATCHING and item.airing_status == "airing"
    )


def is_unaired(item: CatalogItem, today: dt.date) -> bool:
    """Not yet aired: said so, or its start lies after today (unknown dates count as aired)."""
    if item.airing_status == "not_yet_aired":
        return True
    d = item.start_date
    if d is not None:
        if d.year != today.year:
            return d.year > today.year
        if d.month is None or d.month != today.month:
            return (d.month or 0) > today.month
        return (d.day or 0) > today.day
    return item.season_year is not None and item.season_year > today.year


def eligible(
    catalog: Catalog,
    animelist: AnimeList,
    options: RecommendOptions,
    *,
    today: dt.date | None = None,
    franchises: FranchiseIndex | None = None,
) -> Eligibility:
    """The items `options` allow for this user. Genre names are matched to the catalogue's
    spelling first (`RecommendOptions.resolve_genres`: ValueError for an unknown genre)."""
    today = today or dt.date.today()
    options = options.resolve_genres(catalog)
    franchises = franchises or FranchiseIndex.build(catalog)
    statuses = list_statuses(animelist, catalog)
    include = set(options.include_genres)
    exclude = set(options.exclude_genres)
    n = len(catalog)
    mask = np.zeros(n, dtype=bool)
    counts: Counter[str] = Counter()
    for i, item in enumerate(catalog):
        reason = _first_reason(i, item, statuses, options, include, exclude, franchises, today)
        if reason is None:
            mask[i] = True
        else:
            counts[reason] += 1

    redirects: dict[int, int] = {}
    for i in np.flatnonzero(mask).tolist():
        held, entry = prequel_rule(i, statuses, franchises, catalog)
        if not held:
            continue
        mask[i] = False
        counts["unwatched_prequel"] += 1
        if entry is not None:
            redirects[i] = entry
    # An entry point that another filter removed (an adult OVA, a music video...) is no
    # substitute: drop those redirects only now, when the whole mask is known.
    redirects = {i: e for i, e in redirects.items() if mask[e]}
    ptw = np.zeros(n, dtype=bool)
    for i, status in statuses.items():
        if status == Status.PLAN_TO_WATCH and mask[i]:
            ptw[i] = True
    return Eligibility(
        mask=mask,
        plan_to_watch=ptw,
        excluded={reason: counts.get(reason, 0) for reason in REASONS},
        redirects=redirects,
        approximate_franchises=not franchises.exact,
    )


def _first_reason(
    i: int,
    item: CatalogItem,
    statuses: dict[int, Status],
    options: RecommendOptions,
    include: set[str],
    exclude: set[str],
    franchises: FranchiseIndex,
    today: dt.date,
) -> str | None:
    status = statuses.get(i)
    if status is not None and not (status == Status.PLAN_TO_WATCH and options.plan_to_watch):
        return "on_list"
    if item.mal_id in options.exclude_mal_ids:
        return "not_interested"
    if item.adult and not options.adult:
        return "adult"
    if franchises.is_recap(i):
        return "recap"
    if not options.unaired and is_unaired(item, today):
        return "unaired"
    if options.media_types is not None and item.media_type not in options.media_types:
        return "media_type"
    if exclude and exclude.intersection(item.genres):
        return "excluded_genre"
    if include and not include.intersection(item.genres):
        return "missing_genre"
    return None


def prequel_rule(
    i: int, statuses: dict[int, Status], franchises: FranchiseIndex, catalog: Catalog
) -> tuple[bool, int | None]:
    """(held back?, what to offer in its place) for item i; see the module doc."""
    required = franchises.requires.get(i)
    if not required:
        return False, None
    listed = [(r, statuses[r]) for r in required if r in statuses]
    if any(completes(status, catalog[r]) for r, status in listed):
        return False, None
    if any(status == Status.DROPPED for _, status in listed):
        return True, None
    if statuses.get(i) == Status.PLAN_TO_WATCH:
        return False, None
    return True, next_to_watch(i, statuses, franchises, catalog)


def next_to_watch(
    i: int, statuses: dict[int, Status], franchises: FranchiseIndex, catalog: Catalog
) -> int | None:
    """Walk i's requirements back (the preferred one each time) to the first entry whose own
    requirements are met; None when the walk meets an entry the user dropped or is watching."""
    current, seen = i, {i}
    while True:
        required = franchises.requires.get(current, ())
        if not required:
            return None if current == i else current
        listed = [(r, statuses[r]) for r in required if r in statuses]
        if current != i and any(completes(s, catalog[r]) for r, s in listed):
            return current
        if any(s in WALK_STOPS for _, s in listed):
            return None
        current = required[0]
        if current in seen:  # relation cycles exist in the wild
            return None
        seen.add(current)


def redirect_pairs(eligibility: Eligibility) -> tuple[np.ndarray, np.ndarray]:
    """The redirects as two int64 arrays: (held-back later entries, their entry points)."""
    n = len(eligibility.redirects)
    later = np.fromiter(eligibility.redirects.keys(), dtype=np.int64, count=n)
    entry = np.fromiter(eligibility.redirects.values(), dtype=np.int64, count=n)
    return later, entry


def redirect_utilities(utilities: np.ndarray, eligibility: Eligibility) -> np.ndarray:
    """A copy of vocabulary-wide `utilities` where each entry point gets the best utility of the
    later entries redirected to it (if that beats its own)."""
    out = np.array(utilities, dtype=np.float64, copy=True)
    later, entry = redirect_pairs(eligibility)
    # (Thousands of redirects a request on a full catalogue: one ufunc, not a Python loop.)
    np.maximum.at(out, entry, out[later])
    return out


def carried_laters(
    utilities: np.ndarray, eligibility: Eligibility, skip: np.ndarray | None = None
) -> dict[int, int]:
    """Entry point -> the later entry redirected to it whose utility it carries: the best one,
    where it beats the entry point's own (on ties the lowest index). `skip` (bool per item): entry
    points left out."""
    later, entry = redirect_pairs(eligibility)
    if skip is not None:
        keep = ~skip[entry]
        later, entry = later[keep], entry[keep]
    values = np.asarray(utilities, dtype=np.float64)
    above = values[later] > values[entry]
    later, entry = later[above], entry[above]
    # Per entry point, best utility first, then the lowest index: the first row of each run.
    order = np.lexsort((later, -values[later], entry))
    later, entry = later[order], entry[order]
    first = np.ones(len(entry), dtype=bool)
    first[1:] = entry[1:] != entry[:-1]
    return dict(zip(entry[first].tolist(), later[first].tolist(), strict=True))


def exclusion_notes(eligibility: Eligibility) -> list[str]:
    """Short notes for the reply about filters a user may not expect (empty when none applied)."""
    notes: list[str] = []
    held = eligibility.excluded["unwatched_prequel"]
    if held:
        how = (
            " (which entry comes first is guessed from titles, types and air dates)"
            if eligibility.approximate_franchises
            else ""
        )
        notes.append(
            f"Left out {_count(held, 'title that follows', 'titles that follow')} an entry you "
            f"have not completed (sequels, side stories, older versions); what to watch first "
            f"was considered instead{how}."
        )
    for reason, one, many in (
        ("adult", "adult title", "adult titles"),
        ("unaired", "title not aired yet", "titles not aired yet"),
    ):
        if eligibility.excluded[reason]:
            notes.append(f"Left out {_count(eligibility.excluded[reason], one, many)}.")
    return notes


def _count(n: int, one: str, many: str) -> str:
    return f"1 {one}" if n == 1 else f"{n} {many}"
