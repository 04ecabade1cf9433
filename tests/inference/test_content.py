import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.animelist import PartialDate
from inference.catalog import MEDIA_TYPES, SEASONS, CatalogItem
from inference.content import (
    ContentLayout,
    content_vectors,
    genre_type_vectors,
    genre_vocabulary,
)

LAYOUT = ContentLayout(("Action", "Comedy", "Drama"))


def column(name: str) -> int:
    return LAYOUT.names().index(name)


def test_layout_names_match_the_vector_width():
    names = LAYOUT.names()
    assert len(names) == LAYOUT.dim == len(set(names))
    vectors = content_vectors([CatalogItem(mal_id=1, title="x")], LAYOUT)
    assert vectors.shape == (1, LAYOUT.dim)


def test_a_full_item_sets_its_columns_and_no_missing_indicator():
    item = CatalogItem(
        mal_id=1,
        title="Cowboy Bebop",
        media_type="tv",
        episodes=26,
        start_date=PartialDate(1998, 10, 23),
        season="fall",
        season_year=1998,
        genres=("Action", "Drama", "Space"),
        popularity=1_251_960,
        mean_score=8.78,
    )
    v = content_vectors([item], LAYOUT)[0]
    assert v[column("genre:Action")] == 1 and v[column("genre:Drama")] == 1
    assert v[column("genre:Comedy")] == 0  # not its genre
    assert v[column("type:tv")] == 1 and v[column("season:fall")] == 1
    assert v[column("episodes")] == pytest.approx(math.log1p(26) / 5)
    assert v[column("year")] == pytest.approx(-0.1)
    assert v[column("popularity")] == pytest.approx(math.log1p(1_251_960) / 15)
    assert v[column("score")] == pytest.approx((8.78 - 7) / 2)
    missing = [i for i, name in enumerate(LAYOUT.names()) if name.endswith(":?")]
    assert not v[missing].any()


def test_an_empty_item_is_all_missing_indicators():
    v = content_vectors([CatalogItem(mal_id=5, title="?")], LAYOUT)[0]
    names = LAYOUT.names()
    assert {names[i] for i in np.flatnonzero(v)} == {
        "genre:?",
        "type:?",
        "episodes:?",
        "year:?",
        "season:?",
        "popularity:?",
        "score:?",
    }


def test_year_falls_back_to_the_season_year_and_unknown_genres_count_as_none():
    item = CatalogItem(mal_id=2, title="y", season_year=2021, genres=("Isekai",))
    v = content_vectors([item], LAYOUT)[0]
    assert v[column("year")] == pytest.approx(1.05)
    assert v[column("genre:?")] == 1  # a genre the model never saw is ignored


def test_genre_vocabulary_is_sorted_and_unique():
    items = [
        CatalogItem(mal_id=1, title="a", genres=("Drama", "Action")),
        CatalogItem(mal_id=2, title="b", genres=("Action",)),
    ]
    assert genre_vocabulary(items) == ("Action", "Drama")


def test_layout_json_round_trip_and_refuses_a_mismatch():
    assert ContentLayout.from_json(LAYOUT.to_json()) == LAYOUT
    with pytest.raises(ValueError):
        ContentLayout.from_json({"genres": ["Action"], "columns": 3})
    with pytest.raises(ValueError):
        ContentLayout.from_json({"genres": "Action"})


def test_genre_type_vectors_are_the_leading_columns():
    item = CatalogItem(mal_id=1, title="a", media_type="movie", genres=("Comedy",), episodes=1)
    part = genre_type_vectors([item], LAYOUT)[0]
    assert part.shape == (len(LAYOUT.genres) + 1 + len(MEDIA_TYPES) + 1,)
    names = LAYOUT.names()
    assert {names[i] for i in np.flatnonzero(part)} == {"genre:Comedy", "type:movie"}


items_strategy = st.builds(
    CatalogItem,
    mal_id=st.integers(1, 10**6),
    title=st.just("t"),
    media_type=st.none() | st.sampled_from(MEDIA_TYPES),
    episodes=st.none() | st.integers(0, 10**6),
    start_date=st.none() | st.builds(PartialDate, st.integers(1, 9999)),
    season=st.none() | st.sampled_from(SEASONS),
    season_year=st.none() | st.integers(1900, 2100),
    genres=st.lists(st.sampled_from(("Action", "Comedy", "Drama", "Isekai")), max_size=4).map(
        tuple
    ),
    popularity=st.none() | st.integers(0, 10**8),
    mean_score=st.none() | st.floats(0, 10),
)


@given(st.lists(items_strategy, max_size=8))
def test_any_item_gives_a_finite_vector_with_one_flag_per_one_hot_group(items):
    vectors = content_vectors(items, LAYOUT)
    assert vectors.shape == (len(items), LAYOUT.dim)
    assert np.isfinite(vectors).all()
    names = LAYOUT.names()
    for prefix in ("type:", "season:"):
        group = [i for i, n in enumerate(names) if n.startswith(prefix)]
        assert (vectors[:, group].sum(axis=1) == 1).all()
    for name in ("episodes", "popularity", "score", "year"):
        value, missing = vectors[:, names.index(name)], vectors[:, names.index(name + ":?")]
        assert ((missing == 0) | (value == 0)).all()  # a missing value never also has a value
