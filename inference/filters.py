"""Which catalogue items a user may be recommended (DESIGN §4, step 4: the filter before re-ranking).

`eligible` returns a boolean mask over the vocabulary (= catalogue order) and, for each reason an
item was left out, how many items it removed; each excluded item is counted once, under the first
reason in `REASONS` that applies, so the counts add up to the number of excluded items.

Sequels whose prequel the user has not watched are held back and their franchise's entry point is
offered instead: `Eligibility.redirects` maps each held-back item to that entry point, and
`redirect_utilities` hands the better of the two utilities to the entry point, so a strong signal
for "season 3" still surfaces "season 1". With relations (a live catalogue) prequels are facts;
offline they are approximated from franchise order (see `inference.franchise`).
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
# Statuses that mean the user has seen (some of) a title, enough to be offered what follows it.
WATCHED = frozenset({Status.COMPLETED, Status.WATCHING, Status.ON_HOLD})


@dataclass(frozen=True, slots=True)
class Eligibility:
    mask: np.ndarray  # bool [n_items]: may be recommended
    plan_to_watch: np.ndarray  # bool [n_items]: eligible and already on the plan-to-watch list
    excluded: dict[str, int]  # reason -> items it removed (every reason present, 0 when none)
    redirects: dict[int, int]  # held-back later entry -> entry point offered instead
    approximate_franchises: bool  # prequels came from franchise order, not relations


def list_statuses(animelist: AnimeList, catalog: Catalog) -> dict[int, Status]:
    """Vocabulary index -> the user's status; titles outside the catalogue are skipped."""
    out: dict[int, Status] = {}
    for entry in animelist.entries:
        index = catalog.index_of(entry.mal_id)
        if index is not None:
            out[index] = entry.status
    return out


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
        if franchises.exact:
            held, entry = _exact_prequel_rule(i, statuses, franchises, catalog)
        else:
            held, entry = _approximate_prequel_rule(i, statuses, franchises, catalog)
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


def _exact_prequel_rule(
    i: int, statuses: dict[int, Status], franchises: FranchiseIndex, catalog: Catalog
) -> tuple[bool, int | None]:
    """(held back?, entry point) following prequel relations back from item i."""
    preds = franchises.prequels.get(i)
    if not preds or any(statuses.get(p) in WATCHED for p in preds):
        return False, None
    current, seen = i, {i}
    while True:
        preds = franchises.prequels.get(current)
        if not preds:
            return True, current
        listed = [statuses[p] for p in preds if p in statuses]
        if any(s in WATCHED for s in listed):
            return True, current
        planned = [p for p in preds if statuses.get(p) == Status.PLAN_TO_WATCH]
        if planned:
            return True, planned[0]
        if listed:  # dropped: the user gave up on this franchise; offer nothing in its place
            return True, None
        # Several prequels (a sequel to two series): follow the earliest-numbered one.
        current = min(preds, key=lambda p: catalog[p].mal_id)
        if current in seen:  # relation cycles exist in the wild
            return True, None
        seen.add(current)


def _approximate_prequel_rule(
    i: int, statuses: dict[int, Status], franchises: FranchiseIndex, catalog: Catalog
) -> tuple[bool, int | None]:
    """(held back?, entry point) from franchise order: no relations to follow offline."""
    earlier = franchises.earlier_members(catalog, i)
    if not earlier:
        return False, None
    fid = catalog[i].franchise_id
    assert fid is not None  # earlier members exist only inside a franchise
    if any(statuses.get(m) in WATCHED for m in franchises.members[fid]):
        return False, None
    for m in earlier:
        status = statuses.get(m)
        if status == Status.DROPPED:
            return True, None
        if status is None or status == Status.PLAN_TO_WATCH:
            return True, m
    return True, None


def redirect_utilities(utilities: np.ndarray, eligibility: Eligibility) -> np.ndarray:
    """A copy of vocabulary-wide `utilities` where each entry point gets the best utility of the
    later entries redirected to it (if that beats its own)."""
    out = np.array(utilities, dtype=np.float64, copy=True)
    for later, entry in eligibility.redirects.items():
        out[entry] = max(out[entry], float(utilities[later]))
    return out


def exclusion_notes(eligibility: Eligibility) -> list[str]:
    """Short notes for the reply about filters a user may not expect (empty when none applied)."""
    notes: list[str] = []
    held = eligibility.excluded["unwatched_prequel"]
    if held:
        how = (
            " (which entry comes first is guessed from titles and dates)"
            if eligibility.approximate_franchises
            else ""
        )
        notes.append(
            f"Left out {_count(held, 'later entry', 'later entries')} of franchises you have not "
            f"started; their first entries were considered instead{how}."
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
