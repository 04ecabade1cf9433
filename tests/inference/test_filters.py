from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from inference.animelist import PartialDate, Status
from inference.catalog import Catalog, load_catalog
from inference.filters import (
    REASONS,
    eligible,
    exclusion_notes,
    is_unaired,
    redirect_utilities,
)
from inference.franchise import FranchiseIndex, franchise_array
from inference.options import RecommendOptions
from tests.inference.small_catalogs import animelist, item, with_relations, without_relations

TODAY = dt.date(2026, 6, 15)


def _allowed(catalog: Catalog, mask: np.ndarray) -> set[int]:
    return {catalog[i].mal_id for i in np.flatnonzero(mask)}


def test_empty_list_gets_entry_points_and_reasons_for_the_rest() -> None:
    catalog = with_relations()
    result = eligible(catalog, animelist(), RecommendOptions(), today=TODAY)
    assert _allowed(catalog, result.mask) == {10, 20, 50}
    assert result.excluded["recap"] == 1  # 13, a summary by relation
    assert result.excluded["adult"] == 1
    assert result.excluded["unaired"] == 1
    assert result.excluded["unwatched_prequel"] == 2  # seasons 2 and 3
    assert sum(result.excluded.values()) == len(catalog) - int(result.mask.sum())
    assert set(result.excluded) == set(REASONS)
    # Both later seasons point at season 1.
    assert {catalog[k].mal_id: catalog[v].mal_id for k, v in result.redirects.items()} == {
        11: 10,
        12: 10,
    }
    assert not result.approximate_franchises


def test_watched_prequel_unlocks_exactly_the_next_season() -> None:
    catalog = with_relations()
    result = eligible(
        catalog, animelist((10, Status.COMPLETED, 9.0)), RecommendOptions(), today=TODAY
    )
    allowed = _allowed(catalog, result.mask)
    assert 10 not in allowed  # on the list
    assert 11 in allowed
    assert 12 not in allowed  # season 3 waits for season 2...
    assert catalog[result.redirects[catalog.index_of(12)]].mal_id == 11  # ...which is offered


def test_dropped_prequel_offers_nothing_in_its_place() -> None:
    catalog = with_relations()
    result = eligible(catalog, animelist((10, Status.DROPPED)), RecommendOptions(), today=TODAY)
    assert not {11, 12} & _allowed(catalog, result.mask)
    assert result.redirects == {}


def test_plan_to_watch_stays_eligible_and_is_flagged_unless_turned_off() -> None:
    catalog = with_relations()
    user = animelist((20, Status.PLAN_TO_WATCH), (50, Status.COMPLETED))
    on = eligible(catalog, user, RecommendOptions(), today=TODAY)
    assert 20 in _allowed(catalog, on.mask) and 50 not in _allowed(catalog, on.mask)
    assert _allowed(catalog, on.plan_to_watch) == {20}
    off = eligible(catalog, user, RecommendOptions(plan_to_watch=False), today=TODAY)
    assert 20 not in _allowed(catalog, off.mask)
    assert off.excluded["on_list"] == 2


def test_planned_prequel_becomes_the_entry_point() -> None:
    catalog = with_relations()
    result = eligible(
        catalog, animelist((10, Status.PLAN_TO_WATCH)), RecommendOptions(), today=TODAY
    )
    assert catalog[result.redirects[catalog.index_of(11)]].mal_id == 10


def test_options_open_up_adult_and_unaired_and_narrow_types_and_genres() -> None:
    catalog = with_relations()
    user = animelist()
    both = eligible(catalog, user, RecommendOptions(adult=True, unaired=True), today=TODAY)
    assert {30, 40} <= _allowed(catalog, both.mask)
    movies = eligible(
        catalog, user, RecommendOptions(media_types=frozenset({"movie"})), today=TODAY
    )
    assert _allowed(catalog, movies.mask) == {20, 50}
    drama = RecommendOptions(include_genres=("drama",), exclude_genres=("romance",))
    result = eligible(catalog, user, drama, today=TODAY)  # names matched to the catalogue's
    assert _allowed(catalog, result.mask) == {20}
    assert result.excluded["excluded_genre"] == 1 and result.excluded["missing_genre"] >= 1


def test_not_interested_ids_are_dropped() -> None:
    catalog = with_relations()
    result = eligible(
        catalog, animelist(), RecommendOptions(exclude_mal_ids=frozenset({20})), today=TODAY
    )
    assert 20 not in _allowed(catalog, result.mask)
    assert result.excluded["not_interested"] == 1


def test_offline_franchise_order_approximates_prequels_and_titles_find_recaps() -> None:
    catalog = without_relations()
    fresh = eligible(catalog, animelist(), RecommendOptions(), today=TODAY)
    assert fresh.approximate_franchises
    assert _allowed(catalog, fresh.mask) == {100, 200}
    assert fresh.excluded["recap"] == 1  # "Space Pirates Recap", by its title
    assert {catalog[v].mal_id for v in fresh.redirects.values()} == {100}
    # Completing the first series opens what aired after it (the film, the second season).
    fan = eligible(catalog, animelist((100, Status.COMPLETED)), RecommendOptions(), today=TODAY)
    assert _allowed(catalog, fan.mask) == {101, 102, 200}


def test_offline_order_uses_dates_only_when_every_member_has_one() -> None:
    dated = Catalog(
        [
            item(7, "Late Entry", start_date=PartialDate(2010), franchise_id=5),
            item(5, "First Entry", start_date=PartialDate(2001), franchise_id=5),
        ]
    )
    index = FranchiseIndex.build(dated)
    assert [dated[i].mal_id for i in index.members[5]] == [5, 7]
    undated = Catalog(
        [
            item(7, "Late Entry", start_date=PartialDate(1990), franchise_id=5),
            item(5, "First Entry", franchise_id=5),
        ]
    )
    index = FranchiseIndex.build(undated)
    assert [undated[i].mal_id for i in index.members[5]] == [5, 7]
    loose = Catalog([item(1, "Alone", franchise_id=None), item(2, "Grouped", franchise_id=9)])
    assert franchise_array(loose).tolist() == [-1, 9]


def test_redirect_utilities_give_entry_points_the_better_score() -> None:
    catalog = with_relations()
    result = eligible(catalog, animelist(), RecommendOptions(), today=TODAY)
    utilities = np.zeros(len(catalog))
    utilities[catalog.index_of(12)] = 5.0  # the model loves season 3
    out = redirect_utilities(utilities, result)
    assert out[catalog.index_of(10)] == 5.0
    assert utilities[catalog.index_of(10)] == 0.0  # the input is untouched


@pytest.mark.parametrize(
    ("start", "status", "expected"),
    [
        ("2026-06-16", None, True),
        ("2026-06-15", None, False),
        ("2026-07", None, True),
        ("2026", None, False),  # a year-only date this year may already have started
        ("2027", None, True),
        (None, "not_yet_aired", True),
        (None, None, False),
    ],
)
def test_unaired(start: str | None, status: str | None, expected: bool) -> None:
    it = item(1, "X", start_date=PartialDate.parse(start), airing_status=status)
    assert is_unaired(it, TODAY) is expected


def test_real_offline_catalogue(shared_data: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "cat.json.gz"
    subprocess.run(
        [sys.executable, "-m", "training", "catalog", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    catalog = load_catalog(out)
    result = eligible(catalog, animelist(), RecommendOptions(), today=TODAY)
    adult = [i for i in np.flatnonzero(result.mask) if catalog[i].adult]
    recaps = [i for i in np.flatnonzero(result.mask) if "recap" in catalog[i].title.lower()]
    assert adult == [] and recaps == []
    assert result.excluded["unwatched_prequel"] > 1000  # title-stem franchises are common
    # Every redirect target is an eligible first entry of the same franchise.
    for later, entry in result.redirects.items():
        assert result.mask[entry]
        assert catalog[entry].franchise_id == catalog[later].franchise_id


def test_exclusion_notes_say_what_was_held_back_and_how_sure_we_are() -> None:
    exact = eligible(with_relations(), animelist(), RecommendOptions(), today=TODAY)
    notes = exclusion_notes(exact)
    assert notes[0].startswith(
        "Left out 2 titles that follow an entry you have not completed (sequels, side stories, "
        "older versions);"
    )
    assert "guessed" not in notes[0]
    assert "Left out 1 adult title." in notes
    assert "Left out 1 title not aired yet." in notes
    offline = eligible(without_relations(), animelist(), RecommendOptions(), today=TODAY)
    assert "guessed from titles, types and air dates" in exclusion_notes(offline)[0]
    everything = RecommendOptions(adult=True, unaired=True)
    assert exclusion_notes(
        eligible(with_relations(), animelist((10, Status.COMPLETED)), everything, today=TODAY)
    ) == [
        "Left out 1 title that follows an entry you have not completed (sequels, side stories, "
        "older versions); what to watch first was considered instead."
    ]
    with pytest.raises(ValueError, match="unknown genre"):
        eligible(with_relations(), animelist(), RecommendOptions(include_genres=("x",)))
