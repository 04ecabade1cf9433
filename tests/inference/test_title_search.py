"""Fuzzy title search: romaji, English and synonyms, normalised; tiers; suggestions; ties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from inference.catalog import Catalog
from inference.title_search import MIN_SCORE, TitleIndex, name_score, normalise
from tests.inference.small_catalogs import item


def catalog() -> Catalog:
    return Catalog(
        [
            item(1, "Shingeki no Kyojin", title_english="Attack on Titan", popularity=9000),
            item(2, "Shingeki no Kyojin Season 2", popularity=5000),
            item(3, "Pokemon", synonyms=("Pocket Monsters",), popularity=4000),
            item(4, "Kimi no Na wa.", title_english="Your Name.", popularity=8000),
            item(5, "Monster", popularity=3000),
            item(6, "Monster Strike", popularity=100),
            item(7, "Gintama", popularity=6000),
            item(8, "Gintama'", popularity=2000),
            item(9, "Café Junkie", popularity=10),
            item(10, "Cowboy Bebop", popularity=7000),
        ]
    )


INDEX = TitleIndex(catalog())


def best_id(query: str) -> int | None:
    match = INDEX.search(query)
    return None if match.best is None else INDEX.catalog[match.best.index].mal_id


def test_normalise_drops_case_punctuation_and_diacritics() -> None:
    assert normalise("  Pokémon:  the  FIRST Movie! ") == "pokemon the first movie"
    assert normalise("Steins;Gate") == "steins gate"
    assert normalise("Café") == normalise("cafe")


def test_romaji_english_synonym_and_diacritics_all_find_the_title() -> None:
    assert best_id("shingeki no kyojin") == 1
    assert best_id("Attack on Titan") == 1
    assert best_id("your name") == 4
    assert best_id("pocket monsters") == 3
    assert best_id("Pokémon") == 3
    assert best_id("cafe junkie") == 9


def test_exact_beats_prefix_and_shorter_prefix_wins() -> None:
    assert INDEX.search("monster").exact
    assert best_id("monster") == 5
    # "shingeki no" is a prefix of both; the title with fewer extra words comes first.
    assert best_id("shingeki no") == 1


def test_tiers_are_ordered() -> None:
    exact = name_score("cowboy bebop", "cowboy bebop")
    prefix = name_score("cowboy", "cowboy bebop")
    overlap = name_score("bebop cowboy", "cowboy bebop")
    typo = name_score("cowbow bebob", "cowboy bebop")
    assert exact > prefix > overlap > typo > 0


def test_a_typo_still_matches() -> None:
    assert best_id("cowbow bebop") == 10


def test_unknown_title_offers_three_suggestions() -> None:
    match = INDEX.search("zzqx wvvv")
    assert not match.found and match.best is None
    assert len(match.candidates) == 3
    assert all(c.score < MIN_SCORE for c in match.candidates)


def test_equal_names_are_ambiguous_and_the_popular_one_is_picked() -> None:
    match = INDEX.search("gintama")  # "Gintama" and "Gintama'" normalise alike
    assert match.ambiguous
    assert {INDEX.catalog[c.index].mal_id for c in match.tied()} == {7, 8}
    assert best_id("gintama") == 7


def test_a_clear_match_is_not_ambiguous() -> None:
    assert not INDEX.search("Cowboy Bebop").ambiguous


@given(st.text(max_size=300))
def test_any_text_gives_an_answer_without_error(text: str) -> None:
    match = INDEX.search(text)
    assert len(match.candidates) <= 3
    assert all(0 <= c.score <= 1 for c in match.candidates)
