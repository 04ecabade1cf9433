from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.animelist import AnimeList, ListEntry, Status
from inference.catalog import Catalog
from inference.explain import Explainer, UserContext, item_url
from tests.inference.small_catalogs import animelist, item, with_relations, without_relations


def _embeddings(catalog: Catalog, rows: dict[int, list[float]], dim: int = 3) -> np.ndarray:
    emb = np.zeros((len(catalog), dim))
    for mal_id, row in rows.items():
        emb[catalog.index_of(mal_id)] = row
    return emb


def _catalog() -> Catalog:
    return Catalog(
        [
            item(1, "Pick", genres=("Drama",), episodes=12, season="spring", season_year=2020),
            item(2, "Loved Twin"),
            item(3, "Dropped Twin"),
            item(4, "Planned Twin"),
            item(5, "Meh Twin"),
            item(6, "Distant Cousin"),
            item(7, "Pick Side Story", franchise_id=1),
        ]
    )


def test_because_you_liked_names_only_liked_entries() -> None:
    catalog = _catalog()
    # 3, 4, 5 and 7 point exactly where the pick does; 2 close; 6 less so.
    emb = _embeddings(
        catalog,
        {
            1: [1, 0, 0],
            2: [0.9, 0.3, 0],
            3: [1, 0, 0],
            4: [1, 0, 0],
            5: [1, 0, 0],
            6: [0.6, 0.8, 0],
            7: [1, 0, 0],
        },
    )
    user = UserContext(
        animelist(
            (2, Status.COMPLETED, 8.0),
            (3, Status.DROPPED, 10.0),
            (4, Status.PLAN_TO_WATCH),
            (5, Status.COMPLETED, 4.0),  # completed but disliked
            (6, Status.COMPLETED, None),  # unscored completed: liked enough
            (7, Status.COMPLETED, 10.0),  # same franchise as the pick: the franchise line's job
        ),
        catalog,
    )
    rec = Explainer(catalog, emb).explain(catalog.index_of(1), user)
    assert rec.why[0] == "Because you liked Loved Twin and Distant Cousin"


def test_a_weak_second_reason_is_left_out() -> None:
    catalog = _catalog()
    emb = _embeddings(catalog, {1: [1, 0, 0], 2: [1, 0, 0], 6: [0.2, 1, 0]})
    user = UserContext(animelist((2, Status.COMPLETED, 9.0), (6, Status.COMPLETED, 9.0)), catalog)
    assert Explainer(catalog, emb).because_you_liked(catalog.index_of(1), user) == [
        catalog.index_of(2)
    ]


@settings(max_examples=50, deadline=None)
@given(
    statuses=st.lists(st.sampled_from(list(Status)), min_size=6, max_size=6),
    scores=st.lists(st.one_of(st.none(), st.integers(1, 10)), min_size=6, max_size=6),
    seed=st.integers(0, 10_000),
)
def test_named_titles_are_always_on_the_list_and_never_dropped(
    statuses: list[Status], scores: list[int | None], seed: int
) -> None:
    catalog = _catalog()
    emb = np.random.default_rng(seed).normal(size=(len(catalog), 4))
    entries = [
        ListEntry(mal_id=m, status=s, score=None if sc is None else float(sc))
        for m, s, sc in zip((2, 3, 4, 5, 6, 7), statuses, scores, strict=True)
    ]
    user = UserContext(AnimeList("mal", "u", entries), catalog)
    named = Explainer(catalog, emb).because_you_liked(catalog.index_of(1), user)
    by_index = {catalog.index_of(e.mal_id): e for e in entries}
    assert len(named) <= 2
    for index in named:
        entry = by_index[index]
        assert entry.status not in (Status.DROPPED, Status.PLAN_TO_WATCH)
        assert (entry.score or 0) >= 7 or (entry.score is None and entry.status == Status.COMPLETED)


def test_sequel_line_with_relations_and_plan_to_watch_note() -> None:
    catalog = with_relations()
    user = UserContext(animelist((10, Status.COMPLETED, 9.0), (11, Status.PLAN_TO_WATCH)), catalog)
    rec = Explainer(catalog).explain(catalog.index_of(11), user, predicted_score=8.46, utility=2.0)
    assert rec.why == ["Sequel to Hero Academy, which you completed", "On your plan-to-watch list"]
    assert rec.predicted_score == 8.5
    # Watching season 1 is not "completed": no sequel line is claimed.
    watching = UserContext(animelist((10, Status.WATCHING)), catalog)
    assert Explainer(catalog).explain(catalog.index_of(11), watching).why == []


def test_offline_franchise_line_says_only_what_it_knows() -> None:
    catalog = without_relations()
    user = UserContext(animelist((100, Status.COMPLETED, 8.0)), catalog)
    rec = Explainer(catalog).explain(catalog.index_of(102), user)
    assert rec.why == ["From the same franchise as Space Pirates, which you completed"]
    assert not any("Sequel" in w for w in rec.why)


def test_what_it_is_and_where_to_open_it() -> None:
    catalog = _catalog()
    rec = Explainer(catalog).explain(catalog.index_of(1), UserContext(animelist(), catalog))
    assert rec.facts_line() == "TV · 12 episodes · Spring 2020"
    assert rec.url == "https://myanimelist.net/anime/1"
    assert rec.predicted_score is None and rec.why == []
    assert rec.as_json()["genres"] == ["Drama"]
    bebop = item(1, "Cowboy Bebop", anilist_id=1001, picture_url="https://img/1.jpg")
    assert item_url(bebop, "anilist") == "https://anilist.co/anime/1001"
    assert item_url(bebop, "mal-export") == "https://myanimelist.net/anime/1"
    assert item_url(item(2, "No AniList id"), "anilist") == "https://myanimelist.net/anime/2"
    movie = Explainer(Catalog([bebop])).explain(
        0, UserContext(animelist(source="anilist"), Catalog([bebop]))
    )
    assert movie.picture_url == "https://img/1.jpg" and movie.url.startswith("https://anilist.co")
    assert movie.facts_line() == "TV"
