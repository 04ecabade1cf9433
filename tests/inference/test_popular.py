from __future__ import annotations

import datetime as dt

from inference.animelist import Status
from inference.catalog import Catalog
from inference.options import RecommendOptions
from inference.popular import (
    COLD_START_NOTE,
    is_cold_start,
    popular_recent,
    popular_recent_scores,
)
from tests.inference.small_catalogs import animelist, date, item

TODAY = dt.date(2026, 6, 15)


def _catalog() -> Catalog:
    return Catalog(
        [
            item(1, "Old Giant", popularity=2_000_000, start_date=date("1998-10")),
            item(
                2,
                "Old Giant Movie",
                popularity=1_900_000,
                franchise_id=1,
                start_date=date("2001-09"),
            ),
            item(3, "New Hit", popularity=300_000, start_date=date("2026-01")),
            item(4, "Undated Mid", popularity=500_000),
            item(5, "Adult Hit", popularity=3_000_000, adult=True),
            item(6, "Next Year", popularity=900_000, airing_status="not_yet_aired"),
            item(7, "Tiny", popularity=10),
        ]
    )


def test_cold_start_is_an_empty_or_unknown_only_list() -> None:
    catalog = _catalog()
    assert is_cold_start(animelist(), catalog)
    assert is_cold_start(animelist((999, Status.COMPLETED)), catalog)
    assert not is_cold_start(animelist((999, Status.COMPLETED), (7, Status.DROPPED)), catalog)


def test_recent_titles_get_a_boost_that_fades_with_age() -> None:
    catalog = _catalog()
    scores = popular_recent_scores(catalog, TODAY)
    # 300k lists this year beats 500k lists of unknown age, not 2M lists from 1998.
    assert scores[catalog.index_of(3)] > scores[catalog.index_of(4)]
    assert scores[catalog.index_of(1)] > scores[catalog.index_of(3)]
    later = popular_recent_scores(catalog, TODAY.replace(year=2036))
    assert later[catalog.index_of(3)] < scores[catalog.index_of(3)]


def test_picks_follow_the_filters_and_one_per_franchise() -> None:
    catalog = _catalog()
    picks, note = popular_recent(catalog, RecommendOptions(count=4), today=TODAY)
    assert note == COLD_START_NOTE
    assert [p.mal_id for p in picks] == [1, 3, 4, 7]  # no adult, no unaired, no second Old Giant
    assert picks[0].why == ["Popular: on 2,000,000 lists"]
    assert picks[0].utility > picks[1].utility > picks[2].utility
    movies_ok = popular_recent(
        catalog,
        RecommendOptions(count=2, adult=True, exclude_mal_ids=frozenset({3})),
        today=TODAY,
    )[0]
    assert [p.mal_id for p in movies_ok] == [5, 1]


def test_unknown_only_list_of_anilist_user_links_to_anilist() -> None:
    catalog = Catalog([item(1, "Show", anilist_id=77, popularity=5)])
    picks, _ = popular_recent(
        catalog,
        RecommendOptions(count=3),
        animelist((999, Status.COMPLETED), source="anilist"),
        today=TODAY,
    )
    assert [p.url for p in picks] == ["https://anilist.co/anime/77"]
