"""Cold start (docs/architecture.md#cold-start): popular and recent picks for a list the model can say nothing about.

A list is "cold" when none of its entries is in the catalogue (empty, or only titles we do not
know). Such users get the catalogue's popular titles, tilted towards recent ones:

    score = log(1 + popularity) + RECENCY_BOOST · 2^(−age in years / RECENCY_HALF_LIFE_YEARS)

with age from the start date (or season year) where the catalogue has one and no boost where it
does not. The same filters as for everyone apply (adult, unaired, genres, types, "not interested",
sequels held back for their entry point), and at most one title per franchise.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from inference.animelist import AnimeList
from inference.catalog import Catalog, CatalogItem
from inference.explain import Explainer, Recommendation, UserContext
from inference.filters import Eligibility, eligible, redirect_utilities
from inference.franchise import FranchiseIndex
from inference.options import RecommendOptions
from inference.order import best_first
from inference.rerank import NO_FRANCHISE

RECENCY_BOOST = 2.0  # a brand-new title counts as e² ≈ 7x as popular as its list count says
RECENCY_HALF_LIFE_YEARS = 3.0
COLD_START_NOTE = "Your list is empty or has no titles we know, so these are popular recent picks."


def is_cold_start(animelist: AnimeList, catalog: Catalog) -> bool:
    return not any(catalog.index_of(e.mal_id) is not None for e in animelist.entries)


def _age_years(item: CatalogItem, today: dt.date) -> float | None:
    if item.start_date is not None:
        d = item.start_date
        start = dt.date(d.year, d.month or 7, min(d.day or 1, 28))
    elif item.season_year is not None:
        start = dt.date(item.season_year, 7, 1)
    else:
        return None
    return max(0.0, (today - start).days / 365.25)


def popular_recent_scores(catalog: Catalog, today: dt.date) -> np.ndarray:
    """The cold-start score of every catalogue item (see module doc)."""
    scores = np.empty(len(catalog))
    for i, item in enumerate(catalog):
        score = float(np.log1p(max(item.popularity or 0, 0)))
        age = _age_years(item, today)
        if age is not None:
            score += RECENCY_BOOST * 2.0 ** (-age / RECENCY_HALF_LIFE_YEARS)
        scores[i] = score
    return scores


def popular_recent(
    catalog: Catalog,
    options: RecommendOptions,
    animelist: AnimeList | None = None,
    *,
    today: dt.date | None = None,
    franchises: FranchiseIndex | None = None,
    explainer: Explainer | None = None,
) -> tuple[list[Recommendation], str]:
    """Up to `options.count` popular-and-recent picks and the note that says why they were given."""
    today = today or dt.date.today()
    franchises = franchises or FranchiseIndex.build(catalog)
    animelist = animelist or AnimeList(source="mal", username=None)
    allowed: Eligibility = eligible(catalog, animelist, options, today=today, franchises=franchises)
    scores = redirect_utilities(popular_recent_scores(catalog, today), allowed)
    candidates = np.flatnonzero(allowed.mask)
    order = candidates[best_first(scores[candidates])]
    picks: list[int] = []
    used_franchises: set[int] = set()
    for i in order.tolist():
        fid = catalog[i].franchise_id
        fid = NO_FRANCHISE if fid is None else fid
        if fid != NO_FRANCHISE and fid in used_franchises:
            continue
        used_franchises.add(fid)
        picks.append(i)
        if len(picks) == options.count:
            break
    explainer = explainer or Explainer(catalog, franchises=franchises)
    user = UserContext(animelist, catalog)
    recommendations = [
        explainer.explain(i, user, utility=float(scores[i]), extra_why=_popular_why(catalog[i]))
        for i in picks
    ]
    return recommendations, COLD_START_NOTE


def _popular_why(item: CatalogItem) -> list[str]:
    if item.popularity:
        return [f"Popular: on {item.popularity:,} lists"]
    return []
