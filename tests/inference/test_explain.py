from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.animelist import AnimeList, ListEntry, Status
from inference.catalog import Catalog
from inference.explain import (
    MAX_CITATIONS_PER_TITLE,
    MIN_CAUSE_DROP,
    Explainer,
    Titles,
    UserContext,
    choose_causes,
    is_liked,
    item_url,
)
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
            item(8, "Fair Twin"),
        ]
    )


def _ids(catalog: Catalog, indices: list[int]) -> list[int]:
    return [catalog[i].mal_id for i in indices]


# ----- who liked what ------------------------------------------------------------------------


def test_liked_means_scored_at_or_above_the_users_own_mean() -> None:
    catalog = _catalog()
    user = UserContext(
        animelist(
            (2, Status.COMPLETED, 9.0),
            (3, Status.DROPPED, 10.0),  # dropped: never liked, whatever the score
            (4, Status.PLAN_TO_WATCH),
            (5, Status.COMPLETED, 4.0),
            (6, Status.COMPLETED, None),  # unscored, from a user who scores: not "liked"
            (8, Status.WATCHING, 7.0),  # the mean is exactly 7.5: 7 is below it
            (999, Status.COMPLETED, 7.5),  # not in the catalogue, but the user's mean counts it
        ),
        catalog,
    )
    assert user.mean_score == (9 + 10 + 4 + 7 + 7.5) / 5
    assert _ids(catalog, sorted(user.anchor_indices.tolist())) == [2]
    # Scores of 7 from a harsher scorer are liked.
    harsh = UserContext(
        animelist((2, Status.COMPLETED, 7.0), (5, Status.COMPLETED, 4.0), (8, Status.ON_HOLD, 5.0)),
        catalog,
    )
    assert _ids(catalog, sorted(harsh.anchor_indices.tolist())) == [2]


def test_a_user_who_scores_nothing_likes_what_they_completed() -> None:
    catalog = _catalog()
    rewatch = ListEntry(mal_id=8, status=Status.WATCHING, rewatching=True)
    entries = [
        ListEntry(mal_id=2, status=Status.COMPLETED),
        ListEntry(mal_id=3, status=Status.DROPPED),
        ListEntry(mal_id=4, status=Status.PLAN_TO_WATCH),
        ListEntry(mal_id=5, status=Status.WATCHING),
        ListEntry(mal_id=6, status=Status.ON_HOLD),
        rewatch,
    ]
    user = UserContext(AnimeList("mal", "u", entries), catalog)
    assert user.mean_score is None
    assert _ids(catalog, sorted(user.anchor_indices.tolist())) == [2, 8]


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(list(Status)), st.one_of(st.none(), st.integers(1, 10)), st.booleans()
        ),
        min_size=1,
        max_size=7,
    )
)
def test_liked_entries_follow_the_rule_for_any_list(
    rows: list[tuple[Status, int | None, bool]],
) -> None:
    entries = [
        ListEntry(
            mal_id=2 + i,
            status=status,
            score=None if score is None else float(score),
            rewatching=rewatch and status == Status.WATCHING,
        )
        for i, (status, score, rewatch) in enumerate(rows)
    ]
    user = UserContext(AnimeList("mal", "u", entries), _catalog())
    scores = [e.score for e in entries if e.score is not None]
    for e in entries:
        expected = e.status not in (Status.DROPPED, Status.PLAN_TO_WATCH) and (
            (e.score is not None and e.score >= sum(scores) / len(scores))
            if scores
            else (e.status == Status.COMPLETED or e.rewatching)
        )
        assert is_liked(e, user.mean_score) == expected


# ----- which entries are tried as causes --------------------------------------------------------


def test_candidate_causes_are_liked_entries_outside_the_picks_franchise_most_similar_first() -> (
    None
):
    catalog = _catalog()
    # 3, 4, 5 and 7 point exactly where the pick does; 2 close; 6 less so; 8 elsewhere.
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
            8: [0, 1, 0],
        },
    )
    user = UserContext(
        animelist(
            (2, Status.COMPLETED, 9.0),
            (3, Status.DROPPED, 10.0),
            (4, Status.PLAN_TO_WATCH),
            (5, Status.COMPLETED, 4.0),  # completed but below the mean (8.5)
            (6, Status.COMPLETED, 9.0),
            (7, Status.COMPLETED, 10.0),  # same franchise as the pick: the franchise line's job
            (8, Status.COMPLETED, 9.0),
        ),
        catalog,
    )
    explainer = Explainer(catalog, emb)
    pick = catalog.index_of(1)
    # 8 points away from the pick (cosine 0): not worth a run through the model.
    assert _ids(catalog, explainer.candidate_causes(pick, user)) == [2, 6]
    assert _ids(catalog, explainer.candidate_causes(pick, user, k=1)) == [2]
    # Without item embeddings (no model) nothing is tried.
    assert Explainer(catalog).candidate_causes(pick, user) == []


# ----- which causes are named ------------------------------------------------------------------


def test_the_entries_whose_removal_costs_most_are_named() -> None:
    catalog = _catalog()
    a, b, c, d = (catalog.index_of(m) for m in (2, 6, 8, 5))
    pick = catalog.index_of(1)
    # Larger drops first; a second one only at half the first or more.
    assert choose_causes([pick], {pick: {a: 0.2, b: 0.9, c: 0.5}}, catalog) == {pick: [b, c]}
    assert choose_causes([pick], {pick: {a: 0.2, b: 0.9, c: 0.4}}, catalog) == {pick: [b]}
    # An entry whose removal raises the utility, or barely moves it, is never named.
    assert choose_causes([pick], {pick: {a: -0.5, b: MIN_CAUSE_DROP / 2}}, catalog) == {pick: []}
    assert choose_causes([pick], {pick: {a: -0.5, d: 0.3}}, catalog) == {pick: [d]}
    # Removing it drops the pick out of the candidates: the strongest cause there is.
    assert choose_causes([pick], {pick: {a: 3.0, b: math.inf}}, catalog) == {pick: [b]}


def test_two_named_causes_come_from_different_franchises() -> None:
    catalog = Catalog([item(1, "Pick"), item(2, "Saga"), item(3, "Saga 2", franchise_id=2)])
    assert choose_causes([0], {0: {1: 1.0, 2: 0.9}}, catalog) == {0: [1]}


def test_one_title_explains_at_most_three_picks_of_a_reply() -> None:
    catalog = Catalog([item(m, f"T{m}") for m in range(1, 12)])
    favourite, runner_up = 9, 10
    picks = list(range(6))
    drops = {p: {favourite: 1.0, runner_up: 0.3} for p in picks}
    chosen = choose_causes(picks, drops, catalog)
    assert [chosen[p] for p in picks[:MAX_CITATIONS_PER_TITLE]] == [[favourite]] * 3
    # The next best cause takes over (it is below half of the favourite's drop, but the favourite
    # is no longer available), then nothing once both are used up.
    assert [chosen[p] for p in picks[3:]] == [[runner_up]] * 3
    more = choose_causes(
        list(range(8)), {p: {favourite: 1.0, runner_up: 0.3} for p in range(8)}, catalog
    )
    assert more[6] == [] and more[7] == []


@settings(max_examples=200, deadline=None)
@given(
    drops=st.dictionaries(
        st.integers(0, 5),
        st.dictionaries(
            st.integers(6, 11),
            st.one_of(st.floats(-2, 2), st.just(math.inf)),
            max_size=4,
        ),
        max_size=6,
    )
)
def test_named_causes_always_lowered_the_pick_and_respect_the_cap(
    drops: dict[int, dict[int, float]],
) -> None:
    catalog = Catalog([item(m, f"T{m}") for m in range(12)])
    picks = list(drops)
    chosen = choose_causes(picks, drops, catalog)
    counts: dict[int, int] = {}
    for pick in picks:
        named = chosen[pick]
        assert len(named) <= 2 and len(set(named)) == len(named)
        free = [e for e in drops[pick] if counts.get(e, 0) < MAX_CITATIONS_PER_TITLE]
        best = max((drops[pick][e] for e in free), default=-math.inf)
        # The best entry not already used up is named whenever its removal cost anything.
        assert bool(named) == (best >= MIN_CAUSE_DROP)
        if named:
            assert drops[pick][named[0]] == best
        for entry in named:
            assert drops[pick][entry] >= MIN_CAUSE_DROP
            counts[entry] = counts.get(entry, 0) + 1
    assert all(n <= MAX_CITATIONS_PER_TITLE for n in counts.values())


# ----- titles ----------------------------------------------------------------------------------


def _titled() -> Catalog:
    return Catalog(
        [
            item(1, "Shingeki no Kyojin", title_english="attack on titan"),
            item(2, "Dragon Ball Z", title_english="DRAGON BALL Z"),
            item(3, "Kyoushoku Soukou Guyver", title_english="GUYVER THE BIOBOOSTED ARMOR"),
            item(4, "Planetes", title_english="ΠΛΑΝΗΤΕΣ"),
            item(5, "Bakuman. 2nd Season", title_english="BAKUMAN"),
            item(6, "Bakuman. 3rd Season", title_english="BAKUMAN"),
            item(7, "Ao no Exorcist", title_english="Blue Exorcist"),
            item(8, "Mushishi"),
            item(9, "Date A Live II", title_english="DATE A LIVE XIII"),
            item(10, "Ushio to Tora (TV)", title_english="Ushio to Tora"),
        ]
    )


def test_titles_in_romaji_show_a_helpful_english_title_beside() -> None:
    catalog = _titled()
    titles = Titles(catalog, "romaji")
    names = {catalog[i].mal_id: (titles.name(i), titles.other(i)) for i in range(len(catalog))}
    assert names == {
        1: ("Shingeki no Kyojin", "Attack on Titan"),
        2: ("Dragon Ball Z", None),  # the same words: nothing to add
        3: ("Kyoushoku Soukou Guyver", "Guyver the Bioboosted Armor"),
        4: ("Planetes", None),  # not a Latin-script title we can case
        5: ("Bakuman. 2nd Season", None),  # "BAKUMAN" names two seasons: neither
        6: ("Bakuman. 3rd Season", None),
        7: ("Ao no Exorcist", "Blue Exorcist"),
        8: ("Mushishi", None),
        9: ("Date A Live II", "Date a Live XIII"),
        10: ("Ushio to Tora (TV)", None),  # inside the romaji title: adds nothing
    }


def test_titles_in_english_use_the_catalogues_english_title_where_usable() -> None:
    catalog = _titled()
    titles = Titles(catalog, "english")
    names = {catalog[i].mal_id: (titles.name(i), titles.other(i)) for i in range(len(catalog))}
    assert names[1] == ("Attack on Titan", "Shingeki no Kyojin")
    assert names[2] == ("Dragon Ball Z", None)  # never the export's "DRAGON BALL Z"
    assert names[4] == ("Planetes", None)
    assert names[5] == ("Bakuman. 2nd Season", None)
    assert names[7] == ("Blue Exorcist", "Ao no Exorcist")
    assert names[8] == ("Mushishi", None)


def test_the_title_language_names_picks_why_lines_and_franchise_lines_alike() -> None:
    catalog = Catalog(
        [
            item(1, "Shingeki no Kyojin", title_english="attack on titan", franchise_id=1),
            item(2, "Shingeki no Kyojin Season 2", title_english="Attack on Titan Season 2",
                 franchise_id=1),
            item(3, "Ao no Exorcist", title_english="Blue Exorcist"),
        ],
        info={"missing_fields": ["relations"]},
    )  # fmt: skip
    user = UserContext(animelist((1, Status.COMPLETED, 9.0), (3, Status.COMPLETED, 8.0)), catalog)
    for language, expected in (
        (
            "romaji",
            (
                "Shingeki no Kyojin Season 2",
                "Attack on Titan Season 2",
                [
                    "Because you liked Ao no Exorcist",
                    "From the same franchise as Shingeki no Kyojin, which you completed",
                ],
            ),
        ),
        (
            "english",
            (
                "Attack on Titan Season 2",
                "Shingeki no Kyojin Season 2",
                [
                    "Because you liked Blue Exorcist",
                    "From the same franchise as Attack on Titan, which you completed",
                ],
            ),
        ),
    ):
        explainer = Explainer(catalog, title_language=language)  # type: ignore[arg-type]
        rec = explainer.explain(1, user, because=[2])
        assert (rec.title, rec.title_other, rec.why) == expected
        assert rec.as_json()["title_other"] == expected[1]


# ----- the other lines ---------------------------------------------------------------------------


def test_no_because_line_without_causes() -> None:
    catalog = _catalog()
    user = UserContext(animelist((2, Status.COMPLETED, 9.0)), catalog)
    assert Explainer(catalog).explain(catalog.index_of(1), user).why == []
    named = Explainer(catalog).explain(catalog.index_of(1), user, because=[catalog.index_of(2)])
    assert named.why == ["Because you liked Loved Twin"]


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
    assert rec.predicted_score is None and rec.why == [] and rec.title_other is None
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


def test_a_remake_pick_says_an_older_version_exists_in_the_chosen_naming() -> None:
    def remake_catalog() -> Catalog:
        from inference.catalog import franchise_ids
        from tests.inference.small_catalogs import date

        items = [
            item(
                136,
                "Hunter x Hunter",
                title_english="Hunter x Hunter (1999 series)",
                episodes=62,
                start_date=date("1999-10-16"),
                popularity=400,
                relations=(("alternative_version", 11061),),
            ),
            item(11061, "Hunter x Hunter (2011)", episodes=148, start_date=date("2011-10-02")),
        ]
        groups = franchise_ids({it.mal_id: it.relations for it in items})
        return Catalog(
            [dataclasses.replace(it, franchise_id=groups[it.mal_id]) for it in items],
            info={"franchise_method": "relations"},
        )

    catalog = remake_catalog()
    user = UserContext(animelist(), catalog)
    remake = catalog.index_of(11061)
    for language, shown_title in (
        ("romaji", "Hunter x Hunter"),
        ("english", "Hunter x Hunter (1999 series)"),
    ):
        why = Explainer(catalog, title_language=language).explain(remake, user).why  # type: ignore[arg-type]
        assert f"An older version exists ({shown_title}, 1999)" in why
    assert not any(
        "older version" in line
        for line in Explainer(catalog).explain(catalog.index_of(136), user).why
    )
