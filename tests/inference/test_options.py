from __future__ import annotations

import pytest

from inference.options import MAX_COUNT, RecommendOptions
from tests.inference.small_catalogs import with_relations


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "between 1 and"),
        ({"count": MAX_COUNT + 1}, "between 1 and"),
        ({"count": "5"}, "whole number"),
        ({"count": True}, "whole number"),
        ({"media_types": frozenset({"tv", "drama"})}, "unknown media type.*'drama'"),
        ({"media_types": frozenset()}, "at least one"),
        ({"adventurous": 1.5}, "between 0"),
        ({"include_genres": ("Drama",), "exclude_genres": ("drama",)}, "both included"),
        ({"plan_to_watch_max": -1}, "negative"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RecommendOptions(**kwargs)


def test_media_types_are_normalized() -> None:
    assert RecommendOptions(media_types=frozenset({" TV", "Movie"})).media_types == {"tv", "movie"}


def test_genres_resolve_to_catalogue_spelling_or_suggest_close_ones() -> None:
    catalog = with_relations()
    resolved = RecommendOptions(include_genres=("sci-fi",), exclude_genres=("DRAMA",))
    resolved = resolved.resolve_genres(catalog)
    assert resolved.include_genres == ("Sci-Fi",) and resolved.exclude_genres == ("Drama",)
    with pytest.raises(ValueError, match="unknown genre 'Romanse'; did you mean Romance"):
        RecommendOptions(include_genres=("Romanse",)).resolve_genres(catalog)
    with pytest.raises(ValueError, match="known genres: Action"):
        RecommendOptions(exclude_genres=("zzzz",)).resolve_genres(catalog)
