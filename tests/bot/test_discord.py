"""The Discord adapter: slash-command callbacks driven with a fake interaction at the edge."""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from bot.app import Runtime
from bot.discord_app import (
    DESCRIPTION_LIMIT,
    EMBEDS_PER_MESSAGE,
    FIELD_VALUE_LIMIT,
    FIELDS_LIMIT,
    MESSAGE_TOTAL_LIMIT,
    TITLE_LIMIT,
    DiscordFrontEnd,
    EmbedSpec,
    button_command,
    is_transient,
    pack_messages,
    permanent_failure,
)
from bot.parsing import FeedbackCommand, MoreCommand
from bot.replies import Reply
from bot.scheduler import DeliveryForbidden
from inference.catalog import Catalog
from inference.engine import Engine
from inference.errors import ConfigError
from inference.explain import Recommendation


@pytest.fixture(scope="session")
def engine(catalog: Catalog) -> Engine:
    """These tests check rendering (cover thumbnails, escaping of titles with markup characters),
    which needs the bot catalogue's titles and covers rather than the default bundle's."""
    return Engine.without_model(catalog)


EXPORT = Path(__file__).resolve().parents[2] / "examples" / "example-export.xml"


@dataclass
class FakeUser:
    id: int


class FakeResponse:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def defer(self, *, thinking: bool = False, ephemeral: bool = False) -> None:
        self.log.append("defer")


@dataclass
class FakeFollowup:
    log: list[str]
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, **kwargs: Any) -> None:
        self.log.append("followup")
        self.sent.append(kwargs)


class FakeInteraction:
    def __init__(self, user_id: int = 7, custom_id: str | None = None) -> None:
        self.log: list[str] = []
        self.user = FakeUser(user_id)
        self.response = FakeResponse(self.log)
        self.followup = FakeFollowup(self.log)
        self.type = (
            discord.InteractionType.component
            if custom_id
            else discord.InteractionType.application_command
        )
        self.data = {"custom_id": custom_id} if custom_id else {}


class FakeAttachment:
    def __init__(self, filename: str, data: bytes) -> None:
        self.filename, self._data, self.size = filename, data, len(data)

    async def read(self) -> bytes:
        return self._data


@pytest.fixture
async def front(runtime: Runtime) -> DiscordFrontEnd:
    return DiscordFrontEnd(runtime.service, runtime.settings)


def callback(front: DiscordFrontEnd, name: str) -> Any:
    command = front.tree.get_command(name)
    assert command is not None
    return command.callback  # type: ignore[union-attr]


def all_embeds(interaction: FakeInteraction) -> list[discord.Embed]:
    return [e for message in interaction.followup.sent for e in message["embeds"]]


async def test_recommend_defers_then_answers_with_embeds_and_buttons(
    front: DiscordFrontEnd,
) -> None:
    interaction = FakeInteraction()
    await callback(front, "recommend")(
        interaction, username="malfan", source="mal", count=12, filters="--type tv"
    )
    assert (
        interaction.log[0] == "defer"
        and interaction.log[1:]
        and set(interaction.log[1:]) == {"followup"}
    )
    cards = [e for e in all_embeds(interaction) if e.url]
    assert len(cards) == 12
    assert all(
        e.thumbnail.url and e.url and e.url.startswith("https://myanimelist.net/") for e in cards
    )
    for message in interaction.followup.sent:
        assert len(message["embeds"]) <= EMBEDS_PER_MESSAGE
        assert sum(len(e) for e in message["embeds"]) <= MESSAGE_TOTAL_LIMIT
    ids = [
        item.custom_id
        for message in interaction.followup.sent
        if "view" in message
        for item in message["view"].children
    ]
    assert sum(i.startswith("animerec:seen:") for i in ids) == 12
    assert "animerec:more" in ids and "animerec:subscribe" in ids
    assert all(len(m["view"].children) <= 25 for m in interaction.followup.sent if "view" in m)


async def test_buttons_go_through_on_interaction(front: DiscordFrontEnd, runtime: Runtime) -> None:
    first = FakeInteraction()
    await callback(front, "recommend")(first, username="malfan", source="mal", count=3)
    mal_id = next(e for e in all_embeds(first) if e.url).url.rsplit("/", 1)[1]  # type: ignore[union-attr]
    press = FakeInteraction(custom_id=f"animerec:not_interested:{mal_id}")
    await front.on_interaction(press)  # type: ignore[arg-type]
    assert press.log[0] == "defer"
    assert await runtime.storage.feedback("discord", "7") == {int(mal_id): "not_interested"}
    more = FakeInteraction(custom_id="animerec:more")
    await front.on_interaction(more)  # type: ignore[arg-type]
    assert mal_id not in {e.url.rsplit("/", 1)[1] for e in all_embeds(more) if e.url}
    assert button_command("animerec:seen:12") == FeedbackCommand("seen", mal_id=12)
    assert button_command("animerec:more") == MoreCommand()
    assert button_command("animerec:seen:x") is None and button_command("other:more") is None


async def test_attachment_and_bad_filters(front: DiscordFrontEnd) -> None:
    ok = FakeInteraction()
    await callback(front, "recommend")(
        ok, count=2, export=FakeAttachment("animelist.xml.gz", gzip.compress(EXPORT.read_bytes()))
    )
    assert len([e for e in all_embeds(ok) if e.url]) == 2
    bad = FakeInteraction(user_id=8)
    await callback(front, "recommend")(bad, username="malfan", filters='--genre "unclosed')
    text = all_embeds(bad)[0].description or ""
    assert "quote" in text


async def test_subscribe_link_and_help(front: DiscordFrontEnd, runtime: Runtime) -> None:
    link = FakeInteraction()
    await callback(front, "link")(link, username="alfan", source="anilist")
    sub = FakeInteraction()
    await callback(front, "subscribe")(sub, weekday="friday", hour=18, timezone="Nowhere/City")
    assert "not a time zone" in (all_embeds(sub)[0].description or "")
    sub = FakeInteraction()
    await callback(front, "subscribe")(sub, weekday="friday", hour=18, timezone="Europe/Berlin")
    stored = await runtime.storage.subscription("discord", "7")
    assert stored is not None and (stored.weekday, stored.hour, stored.tz) == (
        "friday",
        18,
        "Europe/Berlin",
    )
    help_ = FakeInteraction()
    await callback(front, "help")(help_)
    assert "Model:" in (all_embeds(help_)[0].description or "")


def test_embed_builder_keeps_every_limit() -> None:
    spec = EmbedSpec(
        title="T" * 1000,
        url="https://example.org",
        description="D" * 10_000,
        fields=[("N" * 400, "V" * 2000)] * 40,
        footer="F" * 3000,
    )
    embed = spec.build()
    assert len(embed.title or "") == TITLE_LIMIT
    assert len(embed.description or "") <= DESCRIPTION_LIMIT
    assert len(embed.fields) <= FIELDS_LIMIT
    assert all(len(f.value or "") <= FIELD_VALUE_LIMIT for f in embed.fields)
    assert len(embed) <= MESSAGE_TOTAL_LIMIT
    small = EmbedSpec(title="Hi", description="short").build()
    assert (small.title, small.description) == ("Hi", "short")


def rec(i: int, why_len: int) -> Recommendation:
    return Recommendation(
        mal_id=i,
        title=f"T{i}",
        url=f"https://x/{i}",
        picture_url=None,
        media_type="tv",
        episodes=12,
        season=None,
        year=2020,
        genres=("Action",),
        predicted_score=None,
        why=["w" * why_len],
    )


def test_messages_pack_within_count_and_size() -> None:
    reply = Reply(heading="H", cards=[rec(i, 3000) for i in range(25)])
    messages = pack_messages(reply)
    assert [p for m in messages for p in m.positions] == list(range(1, 26))
    assert all(len(m.embeds) <= EMBEDS_PER_MESSAGE for m in messages)
    assert all(sum(len(e) for e in m.embeds) <= MESSAGE_TOTAL_LIMIT for m in messages)


class ForbiddenResponse:
    status = 403
    reason = "Forbidden"


async def test_closed_dms_raise_delivery_forbidden(front: DiscordFrontEnd) -> None:
    class ClosedUser:
        async def send(self, **kwargs: Any) -> None:
            raise discord.Forbidden(
                ForbiddenResponse(), {"code": 50007, "message": "Cannot send messages to this user"}
            )  # type: ignore[arg-type]

    async def fetch_user(user_id: int) -> ClosedUser:
        return ClosedUser()

    front.client.fetch_user = fetch_user  # type: ignore[method-assign,assignment]
    with pytest.raises(DeliveryForbidden, match="Cannot send messages"):
        await front.send("7", Reply.text("hi"))


class ServerErrorResponse:
    status = 503
    reason = "Service Unavailable"


@dataclass
class ClosedSocket:
    close_code: int


def closed(code: int) -> discord.ConnectionClosed:
    return discord.ConnectionClosed(ClosedSocket(code), shard_id=None)  # type: ignore[arg-type]


def test_failures_are_classified_permanent_or_transient() -> None:
    rejected = permanent_failure(discord.LoginFailure("Improper token has been passed."))
    assert rejected is not None and "ANIMEREC_DISCORD_TOKEN" in rejected
    assert "ANIMEREC_DISCORD_TOKEN" in (permanent_failure(closed(4004)) or "")
    assert "4014" in (permanent_failure(closed(4014)) or "")
    assert "Developer Portal" in (permanent_failure(discord.PrivilegedIntentsRequired(None)) or "")
    assert permanent_failure(ConfigError("bad setting")) == "bad setting"
    for retried in (
        closed(1006),
        discord.GatewayNotFound(),
        aiohttp.ClientConnectionError("name resolution failed"),
        OSError("network unreachable"),
        TimeoutError(),
        discord.DiscordServerError(ServerErrorResponse(), "upstream"),  # type: ignore[arg-type]
    ):
        assert permanent_failure(retried) is None, retried
        assert is_transient(retried), retried
    assert not is_transient(discord.Forbidden(ForbiddenResponse(), "no"))  # type: ignore[arg-type]
    assert not is_transient(RuntimeError("a bug"))


async def test_each_attempt_logs_in_on_an_open_client(
    front: DiscordFrontEnd, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_closed: list[bool] = []

    async def static_login(token: str) -> dict[str, Any]:
        seen_closed.append(front.client.is_closed())
        raise aiohttp.ClientConnectionError("name resolution failed")

    monkeypatch.setattr(front.client.http, "static_login", static_login)
    for _ in range(3):
        with pytest.raises(aiohttp.ClientConnectionError):
            await front.run_forever("discord-token")
    # A closed client would skip the gateway and return as if Discord had shut it down.
    assert seen_closed == [False, False, False]


async def test_a_failed_defer_is_logged_with_its_traceback(
    front: DiscordFrontEnd, caplog: pytest.LogCaptureFixture
) -> None:
    interaction = FakeInteraction()

    async def defer(*, thinking: bool = False, ephemeral: bool = False) -> None:
        raise discord.DiscordServerError(ServerErrorResponse(), "upstream")  # type: ignore[arg-type]

    interaction.response.defer = defer  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="bot.discord_app"):
        await callback(front, "help")(interaction)
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is discord.DiscordServerError
    assert interaction.followup.sent == []


@pytest.mark.parametrize("custom", ["animerec:seen:²", "animerec:seen:٣", "animerec:nope"])
async def test_a_forged_button_is_answered(front: DiscordFrontEnd, custom: str) -> None:
    press = FakeInteraction(custom_id=custom)
    await front.on_interaction(press)  # type: ignore[arg-type]
    assert "button" in (all_embeds(press)[0].description or "")
    # Another application's buttons are not ours to answer.
    other = FakeInteraction(custom_id="other:seen:1")
    await front.on_interaction(other)  # type: ignore[arg-type]
    assert other.log == []


async def test_a_filters_option_over_the_line_limit_is_refused(front: DiscordFrontEnd) -> None:
    press = FakeInteraction()
    await callback(front, "recommend")(press, username="malfan", filters="--genre Action " * 400)
    assert "limit" in (all_embeds(press)[0].description or "")


def test_not_ready_for_weekly_dms_before_login(front: DiscordFrontEnd) -> None:
    assert not front.ready
