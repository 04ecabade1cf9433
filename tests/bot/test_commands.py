"""The command layer end to end: real list sources over the fake services, real engine, real SQLite."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
from pathlib import Path

import httpx
import pytest

from bot.app import Runtime, open_runtime
from bot.commands import Attachment
from bot.parsing import FeedbackCommand, MoreCommand, RecommendCommand, SubscribeCommand
from bot.replies import render_text
from inference.animelist import AnimeList
from inference.catalog import Catalog
from inference.engine import Engine
from tests.bot.conftest import (
    CONSOLE_USER,
    MAL_CLIENT_ID,
    Services,
    chat_user,
    fast_sources,
    make_settings,
)
from tests.inference.fakes import html_response

EXAMPLE_EXPORT = Path(__file__).resolve().parents[2] / "examples" / "example-export.xml"


def runtime_with(
    tmp_path: Path, engine: Engine, services: Services, cooldown_s: float = 0.0, **bot: int
) -> contextlib.AbstractAsyncContextManager[Runtime]:
    """A runtime over the fake services with the given cooldown and [bot] settings."""
    settings = make_settings(tmp_path, cooldown_s=cooldown_s)
    settings = dataclasses.replace(settings, bot=dataclasses.replace(settings.bot, **bot))
    return open_runtime(
        settings,
        engine,
        sources_settings=fast_sources(),
        mal_client_id=MAL_CLIENT_ID,
        transport=services.transport,
    )


def listed_ids(services: Services, name: str) -> set[int]:
    return {row["node"]["id"] for row in services.mal.lists[name]}


async def test_recommend_by_mal_name_excludes_the_users_list(
    runtime: Runtime, services: Services
) -> None:
    reply = await runtime.service.handle_line(
        chat_user(), "/recommend malfan --source mal --count 5"
    )
    assert not reply.error, reply.lines
    assert len(reply.cards) == 5
    assert not {c.mal_id for c in reply.cards} & listed_ids(services, "malfan")
    assert {b.action for b in reply.buttons} == {"more", "subscribe"}
    text = render_text(reply)
    assert text.splitlines()[1].startswith("1. ")


async def test_default_source_is_mal_with_a_client_id_and_anilist_without(
    settings, engine: Engine, services: Services
) -> None:
    async with open_runtime(
        settings, engine, sources_settings=fast_sources(), transport=services.transport
    ) as rt:
        reply = await rt.service.handle_line(chat_user(), "/recommend alfan")
        assert not reply.error, reply.lines
        reply = await rt.service.handle_line(chat_user(2), "/recommend malfan --source mal")
        assert reply.error
        assert "ANIMEREC_MAL_CLIENT_ID" in reply.lines[0]
        assert "--source anilist" in reply.lines[0]
        assert MAL_CLIENT_ID not in reply.lines[0]


async def test_each_list_failure_has_its_own_message(runtime: Runtime, services: Services) -> None:
    service = runtime.service
    not_found = await service.handle_line(chat_user(1), "/recommend nobody99")
    private = await service.handle_line(chat_user(2), "/recommend secretive")
    invalid = await service.handle_line(chat_user(3), "/recommend bad/name")
    services.fail_next(html_response(503))
    unavailable = await service.handle_line(chat_user(4), "/recommend malfan")
    messages = [r.lines[0] for r in (not_found, private, invalid, unavailable)]
    assert all(r.error for r in (not_found, private, invalid, unavailable))
    assert len(set(messages)) == 4
    assert "--source anilist" in not_found.lines[0]  # the site was guessed, so say how to switch
    assert "private" in private.lines[0].lower()
    assert "not a valid MyAnimeList username" in invalid.lines[0]
    assert "not answering" in unavailable.lines[0]


async def test_rate_limited_service_is_reported(runtime: Runtime, services: Services) -> None:
    services.fail_next(httpx.Response(429, headers={"Retry-After": "1"}, content=b"{}"))
    reply = await runtime.service.handle_line(chat_user(), "/recommend malfan")
    assert reply.error and "too many requests" in reply.lines[0]


async def test_lists_come_from_the_cache_within_its_ttl(
    runtime: Runtime, services: Services
) -> None:
    await runtime.service.handle_line(chat_user(1), "/recommend malfan")
    sent = len(services.requests)
    reply = await runtime.service.handle_line(chat_user(2), "/recommend MalFan --count 3")
    assert not reply.error
    assert len(services.requests) == sent


async def test_feedback_is_honoured_in_later_recommendations(runtime: Runtime) -> None:
    user = chat_user()
    first = await runtime.service.handle_line(user, "/recommend malfan --count 4")
    seen_title = first.cards[1]
    noted = await runtime.service.handle_line(user, "/seen 2")
    assert seen_title.title in noted.lines[0]
    not_interested = first.cards[0].mal_id
    await runtime.service.execute(user, FeedbackCommand("not_interested", mal_id=not_interested))
    again = await runtime.service.handle_line(user, "/recommend malfan --count 10")
    ids = {c.mal_id for c in again.cards}
    assert seen_title.mal_id not in ids and not_interested not in ids
    assert (await runtime.storage.feedback("telegram", "1")) == {
        seen_title.mal_id: "seen",
        not_interested: "not_interested",
    }
    # Someone else's feedback is theirs alone.
    other = await runtime.service.handle_line(chat_user(9), "/recommend malfan --count 10")
    assert not_interested in {c.mal_id for c in other.cards}


async def test_more_gives_new_titles(runtime: Runtime) -> None:
    user = chat_user()
    first = await runtime.service.handle_line(user, "/recommend malfan --count 5")
    more = await runtime.service.execute(user, MoreCommand())
    assert more.cards and not {c.mal_id for c in first.cards} & {c.mal_id for c in more.cards}
    lonely = await runtime.service.handle_line(chat_user(5), "/more")
    assert lonely.error and "/recommend" in lonely.lines[0]


async def test_bad_positions_and_options_get_clear_replies(runtime: Runtime) -> None:
    user = chat_user()
    assert "/recommend first" in (await runtime.service.handle_line(user, "/seen 1")).lines[0]
    await runtime.service.handle_line(user, "/recommend malfan --count 3")
    assert "1 to 3" in (await runtime.service.handle_line(user, "/seen 7")).lines[0]
    genre = await runtime.service.handle_line(user, "/recommend malfan --genre scifi")
    assert genre.error and "Sci-Fi" in genre.lines[0]
    count = await runtime.service.handle_line(user, "/recommend malfan --count 99")
    assert count.error and "between 1 and 25" in count.lines[0]


async def test_link_then_recommend_and_unlink(runtime: Runtime) -> None:
    user = chat_user()
    assert "link" in (await runtime.service.handle_line(user, "/recommend")).lines[0]
    linked = await runtime.service.handle_line(user, "/link alfan --source anilist")
    assert "Linked alfan on AniList" in linked.lines[0]
    reply = await runtime.service.handle_line(user, "/recommend --count 3")
    assert len(reply.cards) == 3
    assert all(c.url.startswith("https://anilist.co/anime/") for c in reply.cards)
    assert (await runtime.service.handle_line(user, "/unlink")).lines == ["Unlinked your list."]
    assert (await runtime.storage.account("telegram", "1")) is None
    missing = await runtime.service.handle_line(user, "/link nobody99 --source anilist")
    assert missing.error and (await runtime.storage.account("telegram", "1")) is None


async def test_subscribe_button_links_the_last_list_and_uses_defaults(runtime: Runtime) -> None:
    user = chat_user()
    refused = await runtime.service.execute(user, SubscribeCommand())
    assert refused.error and "/link" in refused.lines[0]
    await runtime.service.handle_line(user, "/recommend malfan")
    reply = await runtime.service.execute(user, SubscribeCommand())
    assert "Linked malfan" in reply.lines[0]
    sub = await runtime.storage.subscription("telegram", "1")
    assert sub is not None and (sub.weekday, sub.hour, sub.tz) == ("saturday", 10, "UTC")
    await runtime.service.handle_line(user, "/subscribe fri 18:00 Asia/Tokyo")
    sub = await runtime.storage.subscription("telegram", "1")
    assert sub is not None and (sub.weekday, sub.hour, sub.tz) == ("friday", 18, "Asia/Tokyo")
    assert "no more" in (await runtime.service.handle_line(user, "/unsubscribe")).lines[0]


async def test_attached_export_is_recommended_for(runtime: Runtime) -> None:
    data = gzip.compress(EXAMPLE_EXPORT.read_bytes())
    reply = await runtime.service.handle_line(chat_user(), "/recommend --count 3", attachment=None)
    assert reply.error  # no name, nothing linked, nothing attached
    reply = await runtime.service.execute(
        chat_user(), RecommendCommand(count=3), Attachment("animelist.xml.gz", data)
    )
    assert not reply.error and len(reply.cards) == 3
    bad = await runtime.service.execute(
        chat_user(2), RecommendCommand(), Attachment("x.xml", b"<not xml")
    )
    assert bad.error and "export" in bad.lines[0].lower()


async def test_local_files_only_on_the_console(runtime: Runtime) -> None:
    line = f"/recommend --file {EXAMPLE_EXPORT} --count 2"
    refused = await runtime.service.handle_line(chat_user(), line)
    assert refused.error and "Attach" in refused.lines[0]
    reply = await runtime.service.handle_line(CONSOLE_USER, line)
    assert len(reply.cards) == 2
    missing = await runtime.service.handle_line(CONSOLE_USER, "/recommend --file /no/such.xml")
    assert missing.error and "No such file" in missing.lines[0]


async def test_cooldown_per_user(tmp_path: Path, engine: Engine, services: Services) -> None:
    async with runtime_with(tmp_path, engine, services, cooldown_s=60.0) as rt:
        assert not (await rt.service.handle_line(chat_user(1), "/recommend malfan")).error
        again = await rt.service.handle_line(chat_user(1), "/recommend malfan")
        assert again.error and again.lines[0].startswith("Please wait")
        assert not (await rt.service.handle_line(chat_user(2), "/recommend malfan")).error
        # The console user is the operator: never throttled.
        for _ in range(2):
            assert not (await rt.service.handle_line(CONSOLE_USER, "/recommend malfan")).error


async def test_help_names_the_model(runtime: Runtime, engine: Engine) -> None:
    reply = await runtime.service.handle_line(chat_user(), "/help")
    text = "\n".join(reply.lines)
    assert engine.info.version in text and engine.info.trained_on in text
    assert "/recommend" in text and "/subscribe" in text


async def test_an_internal_failure_is_a_polite_reply(runtime: Runtime, caplog) -> None:
    broken = dataclasses.replace  # any object without .recommend
    runtime.service.engine = broken  # type: ignore[assignment]
    reply = await runtime.service.handle_line(chat_user(), "/recommend malfan")
    assert reply.error and "on our side" in reply.lines[0]


async def test_a_bare_subscribe_keeps_the_chosen_schedule(runtime: Runtime) -> None:
    user = chat_user()
    await runtime.storage.link("telegram", "1", "mal", "malfan")
    first = await runtime.service.handle_line(user, "/subscribe friday 18 Europe/Berlin")
    assert "Friday at 18:00 (Europe/Berlin)" in first.lines[-1]
    for again in (
        await runtime.service.handle_line(user, "/subscribe"),
        await runtime.service.execute(user, SubscribeCommand()),  # the Weekly button
    ):
        assert not again.error and "already subscribed" in again.lines[-1]
        assert "Friday at 18:00 (Europe/Berlin)" in again.lines[-1]
    sub = await runtime.storage.subscription("telegram", "1")
    assert sub is not None and (sub.weekday, sub.hour, sub.tz) == ("friday", 18, "Europe/Berlin")
    # Only what is typed changes.
    moved = await runtime.service.handle_line(user, "/subscribe monday")
    assert "Monday at 18:00 (Europe/Berlin)" in moved.lines[-1]
    # A paused subscription is resumed on its own schedule.
    assert sub is not None
    await runtime.storage.pause_subscription(sub.id, "direct messages refused")
    resumed = await runtime.service.execute(user, SubscribeCommand())
    assert resumed.lines[-1].startswith("Subscribed:") and "Monday at 18:00" in resumed.lines[-1]
    sub = await runtime.storage.subscription("telegram", "1")
    assert sub is not None and sub.active


async def test_more_running_out_blames_filters_only_when_set(
    tmp_path: Path, catalog: Catalog, services: Services
) -> None:
    # The 60-title catalogue without a model runs out after a few /more.
    async with runtime_with(tmp_path, Engine.without_model(catalog), services) as rt:
        ends: dict[str, str] = {}
        for n, line in enumerate(
            ["/recommend malfan --count 25 --genre Horror", "/recommend malfan --count 25"]
        ):
            user = chat_user(n + 1)
            assert (await rt.service.handle_line(user, line)).cards
            for _ in range(5):
                reply = await rt.service.handle_line(user, "/more")
                if not reply.cards:
                    ends[line] = reply.lines[0]
                    break
        filtered_end, plain_end = ends.values()
        assert "filters" in filtered_end
        assert "filter" not in plain_end and "every title" in plain_end


async def test_a_refused_command_costs_no_cooldown(
    tmp_path: Path, engine: Engine, services: Services
) -> None:
    async with runtime_with(tmp_path, engine, services, cooldown_s=60.0) as rt:
        user = chat_user(1)
        bad_file = await rt.service.execute(user, RecommendCommand(), Attachment("x.xml", b"<x"))
        bad_name = await rt.service.handle_line(user, "/recommend bad/name")
        no_name = await rt.service.handle_line(user, "/recommend")
        bad_genre = await rt.service.handle_line(user, "/recommend malfan --genre Nope")
        assert all(r.error for r in (bad_file, bad_name, no_name, bad_genre))
        assert not any(r.lines[0].startswith("Please wait") for r in (bad_name, no_name))
        ok = await rt.service.handle_line(user, "/recommend malfan")
        assert not ok.error and ok.cards
        # A request that reached the service still costs its wait.
        missing = chat_user(2)
        await rt.service.handle_line(missing, "/recommend nobody99 --source mal")
        again = await rt.service.handle_line(missing, "/recommend malfan")
        assert again.error and again.lines[0].startswith("Please wait")


async def test_sessions_are_bounded_by_the_entries_they_keep(
    tmp_path: Path, engine: Engine, services: Services
) -> None:
    async with runtime_with(tmp_path, engine, services, sessions_max_entries=20) as rt:
        for n in range(1, 6):  # malfan's list has 8 entries: 2 sessions fit in 20
            assert (await rt.service.handle_line(chat_user(n), "/recommend malfan")).cards
            assert await rt.service.kept_session_entries() <= 20
        assert await rt.service.kept_session_entries() == 16
        # The oldest users' sessions went; the newest ones answer /more.
        assert (await rt.service.handle_line(chat_user(1), "/more")).error
        assert (await rt.service.handle_line(chat_user(5), "/more")).cards
        # Replacing a user's session does not count it twice.
        await rt.service.handle_line(chat_user(5), "/recommend malfan")
        assert await rt.service.kept_session_entries() == 16


async def test_attachments_are_parsed_inside_the_inference_admission(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.commands

    seen: list[tuple[int, int]] = []
    real_parse = bot.commands.parse_mal_export

    def parse(data: bytes, *, max_entries: int) -> AnimeList:
        # The semaphore's free slots while parsing, and the cap the bot passed down.
        seen.append((runtime.limits.inference._value, max_entries))
        return real_parse(data, max_entries=max_entries)

    monkeypatch.setattr(bot.commands, "parse_mal_export", parse)
    reply = await runtime.service.execute(
        chat_user(), RecommendCommand(count=3), Attachment("a.xml", EXAMPLE_EXPORT.read_bytes())
    )
    assert reply.cards
    limit = runtime.settings.limits.max_concurrent_inference
    assert seen == [(limit - 1, runtime.settings.bot.max_list_entries)]


async def test_console_files_must_be_regular_files_within_the_limit(
    runtime: Runtime, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe.xml"
    os.mkfifo(fifo)
    big = tmp_path / "big.xml"
    big.write_bytes(b" " * (runtime.settings.bot.max_attachment_bytes + 1))
    expected = {
        str(fifo): "not a regular file",
        "/dev/zero": "not a regular file",
        str(tmp_path): "is a folder",
        str(big): "too large",
    }
    for path, reason in expected.items():
        reply = await runtime.service.handle_line(CONSOLE_USER, f"/recommend --file {path}")
        assert reply.error and reason in reply.lines[0], reply.lines


async def test_an_oversized_export_says_so_plainly(
    tmp_path: Path, engine: Engine, services: Services
) -> None:
    async with runtime_with(tmp_path, engine, services, max_list_entries=5) as rt:
        reply = await rt.service.execute(
            chat_user(), RecommendCommand(), Attachment("a.xml", EXAMPLE_EXPORT.read_bytes())
        )
    assert reply.error and "not a readable" not in reply.lines[0]
    assert "5" in reply.lines[0]


async def test_a_fetched_list_over_the_entry_cap_is_refused(
    tmp_path: Path, engine: Engine, services: Services
) -> None:
    async with runtime_with(tmp_path, engine, services, max_list_entries=5) as rt:
        reply = await rt.service.handle_line(chat_user(), "/recommend malfan --source mal")
    assert reply.error and "5" in reply.lines[0]  # malfan has 8 entries
