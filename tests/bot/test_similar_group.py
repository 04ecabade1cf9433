"""/similar and group /recommend: parsing, bad input, and the command layer end to end on the
tiny exported bundle (real list sources over the fake services, real SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import Runtime, open_runtime
from bot.parsing import (
    MAX_GROUP,
    CommandError,
    GroupCommand,
    GroupMember,
    RecommendCommand,
    SimilarCommand,
    parse_command,
)
from bot.replies import render_text
from bot.settings import BotSettings
from inference.engine import Engine
from tests.bot.conftest import CONSOLE_USER, MAL_CLIENT_ID, Services, chat_user, fast_sources
from tests.tiny_bundle import SEQUEL_ID


@pytest.fixture(scope="module")
def tiny_engine(tiny_bundle: Path) -> Engine:
    return Engine.from_bundle(tiny_bundle, providers="cpu")


@pytest.fixture
async def tiny_runtime(
    settings: BotSettings, tiny_engine: Engine, services: Services
) -> AsyncIterator[Runtime]:
    services.mal.add_user("otherfan", _rows(10))
    async with open_runtime(
        settings,
        tiny_engine,
        sources_settings=fast_sources(),
        mal_client_id=MAL_CLIENT_ID,
        transport=services.transport,
    ) as rt:
        yield rt


def _rows(start: int) -> list[dict[str, object]]:
    from tests.inference.fakes import mal_row

    return [mal_row(1000 + i, "completed", score=7) for i in range(start, start + 4)]


# ----- parsing ---------------------------------------------------------------------------------


def test_similar_reads_the_title_and_options() -> None:
    command = parse_command('/similar Cowboy "Bebop" --count 5 --franchise --user malfan')
    assert command == SimilarCommand(
        title="Cowboy Bebop", username="malfan", count=5, franchise=True
    )


@pytest.mark.parametrize(
    "line, says",
    [
        ("/similar", "Usage: /similar TITLE"),
        ("/similar --count 5", "Usage: /similar TITLE"),
        ("/similar x --count lots", "--count must be a whole number"),
        ("/similar x --genre Action", "has no option --genre"),
        ("/similar " + "y" * 300, "longer than any title"),
    ],
)
def test_bad_similar_commands_say_what_is_wrong(line: str, says: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(line)
    assert says in str(caught.value)
    assert len(str(caught.value)) < 300


def test_several_names_are_a_group_with_per_member_sites() -> None:
    command = parse_command("/recommend alice bob@anilist Carol@MAL <@123> --count 5")
    assert isinstance(command, GroupCommand)
    assert command.members == (
        GroupMember("alice"),
        GroupMember("bob", source="anilist"),
        GroupMember("Carol", source="mal"),
        GroupMember("<@123>", mention="123"),
    )
    assert command.request.count == 5


def test_one_name_is_still_a_plain_request_and_repeats_count_once() -> None:
    assert parse_command("/recommend alice") == RecommendCommand(username="alice")
    assert parse_command("/recommend alice ALICE") == RecommendCommand(username="alice")


def test_too_many_names_are_refused() -> None:
    names = " ".join(f"user{i}" for i in range(MAX_GROUP + 1))
    with pytest.raises(CommandError) as caught:
        parse_command(f"/recommend {names}")
    assert f"at most {MAX_GROUP} names" in str(caught.value)
    assert isinstance(parse_command("/recommend " + names.rsplit(" ", 1)[0]), GroupCommand)


def test_a_group_cannot_take_a_file() -> None:
    with pytest.raises(CommandError):
        parse_command("/recommend alice bob --file x.xml")


# ----- /similar end to end -------------------------------------------------------------------


async def test_similar_names_the_match_and_answers_cards(tiny_runtime: Runtime) -> None:
    reply = await tiny_runtime.service.handle_line(chat_user(), "/similar show 3 --count 4")
    assert not reply.error, reply.lines
    assert reply.heading == "More like Show 3"
    assert len(reply.cards) == 4
    assert all(card.why for card in reply.cards)
    text = render_text(reply)
    assert text.splitlines()[1].startswith("1. ")
    assert "why: " in text and "/more" not in text


async def test_similar_unknown_title_suggests_the_closest(tiny_runtime: Runtime) -> None:
    reply = await tiny_runtime.service.handle_line(chat_user(), "/similar qqqq zzzz")
    assert reply.error
    assert len(reply.lines) == 1 and "closest" in reply.lines[0]
    assert reply.lines[0].count("Show") == 3


async def test_similar_leaves_out_a_linked_users_list(
    tiny_runtime: Runtime, services: Services
) -> None:
    service = tiny_runtime.service
    listed = {row["node"]["id"] for row in services.mal.lists["malfan"]}
    anyone = await service.handle_line(chat_user(1), "/similar show 12 --count 25")
    assert {c.mal_id for c in anyone.cards} & listed
    linked = await service.handle_line(chat_user(2), "/link malfan --source mal")
    assert not linked.error, linked.lines
    mine = await service.handle_line(chat_user(2), "/similar show 12 --count 25")
    assert not mine.error, mine.lines
    assert not {c.mal_id for c in mine.cards} & listed
    named = await service.handle_line(chat_user(3), "/similar show 12 --user malfan --count 25")
    assert not {c.mal_id for c in named.cards} & listed


async def test_similar_franchise_option(tiny_runtime: Runtime) -> None:
    service = tiny_runtime.service
    plain = await service.handle_line(CONSOLE_USER, "/similar Show 0 --count 25")
    asked = await service.handle_line(CONSOLE_USER, "/similar Show 0 --count 25 --franchise")
    assert SEQUEL_ID not in {c.mal_id for c in plain.cards}
    assert SEQUEL_ID in {c.mal_id for c in asked.cards}


async def test_help_lists_similar_and_groups(tiny_runtime: Runtime) -> None:
    reply = await tiny_runtime.service.handle_line(chat_user(), "/help")
    text = render_text(reply)
    assert "/similar TITLE" in text and "NAME NAME" in text


# ----- groups end to end ---------------------------------------------------------------------


async def test_group_picks_are_new_to_everyone_and_say_who_they_suit(
    tiny_runtime: Runtime, services: Services
) -> None:
    reply = await tiny_runtime.service.handle_line(
        chat_user(), "/recommend malfan otherfan@mal alfan@anilist --count 4"
    )
    assert not reply.error, reply.lines
    assert reply.heading == "Recommendations for malfan, otherfan and alfan"
    seen = {
        row["node"]["id"] for name in ("malfan", "otherfan") for row in services.mal.lists[name]
    }
    assert len(reply.cards) == 4
    assert not {c.mal_id for c in reply.cards} & seen
    for card in reply.cards:
        assert any(line.startswith("Suits ") for line in card.why)


async def test_a_private_member_is_named_and_the_group_goes_on(tiny_runtime: Runtime) -> None:
    reply = await tiny_runtime.service.handle_line(
        chat_user(), "/recommend malfan secretive otherfan --source mal --count 3"
    )
    assert not reply.error, reply.lines
    assert len(reply.cards) == 3
    assert len(reply.lines) == 1
    assert reply.lines[0].startswith("Left out secretive:") and "private" in reply.lines[0]
    assert reply.heading == "Recommendations for malfan and otherfan"


async def test_a_group_left_with_one_list_gets_a_clear_message(tiny_runtime: Runtime) -> None:
    reply = await tiny_runtime.service.handle_line(
        chat_user(), "/recommend malfan secretive nobody99 --source mal"
    )
    assert reply.error
    assert reply.lines[-1].startswith("A group needs at least 2 readable lists")
    assert any(line.startswith("Left out secretive") for line in reply.lines)
    assert any(line.startswith("Left out nobody99") for line in reply.lines)


async def test_a_mentioned_member_uses_their_linked_list(tiny_runtime: Runtime) -> None:
    service = tiny_runtime.service
    friend = chat_user(7, platform="discord")
    assert not (await service.handle_line(friend, "/link otherfan --source mal")).error
    reply = await service.handle_line(
        chat_user(1, platform="discord"), "/recommend malfan@mal <@7> <@8>"
    )
    assert not reply.error, reply.lines
    assert reply.heading == "Recommendations for malfan and otherfan"
    assert reply.lines == ["Left out <@8>: they have not linked a list (/link NAME)"]


async def test_a_member_the_model_cannot_read_leaves_too_small_a_group(
    tiny_runtime: Runtime, services: Services
) -> None:
    from tests.inference.fakes import mal_row

    services.mal.add_user(
        "stranger", [mal_row(990_000 + i, "completed", score=8) for i in range(3)]
    )
    reply = await tiny_runtime.service.handle_line(
        chat_user(), "/recommend malfan stranger --source mal"
    )
    assert reply.error
    assert (
        reply.lines[0] == "Left out stranger: no title on their list is in the model's catalogue."
    )
    assert reply.lines[-1].startswith("A group needs at least 2 lists the model can read")
