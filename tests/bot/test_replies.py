"""The platform-neutral reply: a pick's detail lines and the console's text form."""

from __future__ import annotations

from bot.discord_app import reply_specs
from bot.replies import Reply, detail_lines, render_text
from inference.cli_recommend import pick_lines
from inference.explain import Recommendation


def pick(title_other: str | None) -> Recommendation:
    return Recommendation(
        mal_id=5114,
        title="Hagane no Renkinjutsushi: Fullmetal Alchemist",
        url="https://myanimelist.net/anime/5114",
        picture_url=None,
        media_type="tv",
        episodes=64,
        season="spring",
        year=2009,
        genres=("Action",),
        predicted_score=9.1,
        why=["Because you liked Steins;Gate"],
        title_other=title_other,
    )


def test_the_other_language_title_is_shown_under_the_pick_where_it_helps() -> None:
    other = "Fullmetal Alchemist: Brotherhood"
    with_other, without = pick(other), pick(None)
    assert detail_lines(with_other)[0] == f"({other})"
    assert detail_lines(without) == detail_lines(with_other)[1:]
    assert f"({other})" in render_text(Reply(cards=[with_other]))
    assert pick_lines(1, with_other)[1] == f"   ({other})"
    assert all(other not in line for line in pick_lines(1, without))
    specs = reply_specs(Reply(cards=[with_other]))
    assert any(other in (spec.description or "") for spec in specs)
