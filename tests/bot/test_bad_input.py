"""Hostile and random input: every command line, option and attachment gets a clear reply."""

from __future__ import annotations

import asyncio
import gzip
import logging
import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import Runtime, open_runtime
from bot.commands import INTERNAL_ERROR, Attachment
from bot.parsing import (
    COMMAND_NAMES,
    DEFAULT_MAX_LINE_CHARS,
    CommandError,
    RecommendCommand,
    button_payload_command,
    parse_command,
    tokenize,
)
from bot.replies import parse_payload
from tests.bot.conftest import (
    MAL_CLIENT_ID,
    Services,
    anilist_rows,
    chat_user,
    fast_sources,
    make_settings,
    user_rows,
)

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
OPTION_WORDS = st.sampled_from(
    [
        "--source",
        "--count",
        "--genre",
        "--exclude-genre",
        "--type",
        "--adventurous",
        "--adult",
        "--unaired",
        "--no-plan-to-watch",
        "--file",
        "mal",
        "anilist",
        "-1",
        "26",
        "nan",
        "1e9",
        "Action",
        "scifi",
        "movie",
        "'",
        '"',
        "--",
        "—adult",
        "x" * 300,
        "ünï",
        "\x00",
        ";DROP",
    ]
)
LINES = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda name, words: f"/{name} " + " ".join(words),
        st.sampled_from([*COMMAND_NAMES, "start", "nope"]),
        st.lists(st.one_of(OPTION_WORDS, st.text(max_size=20)), max_size=6),
    ),
)


@given(LINES)
@settings(max_examples=300, deadline=None)
def test_parsing_only_ever_raises_command_error(line: str) -> None:
    try:
        parse_command(line)
    except CommandError as exc:
        assert str(exc) and "Traceback" not in str(exc)


def test_usernames_reach_requests_only_as_parameters() -> None:
    # A name that could change a URL's path or a query never passes the parser's checks...
    for name in ("../admin", "a b", 'x") { Viewer { id } } #', "a%2Fb", "x?y=1"):
        try:
            parsed = parse_command(f"/recommend '{name}'")
        except CommandError:
            continue
        assert isinstance(parsed, RecommendCommand) and parsed.username == name


@given(st.text(max_size=80))
def test_button_payloads_are_checked(payload: str) -> None:
    parsed = parse_payload(payload)
    if parsed is not None:
        action, mal_id = parsed
        assert action in ("more", "seen", "not_interested", "subscribe")
        assert mal_id is None or 0 <= mal_id < 10**9


@FAST
@given(LINES)
async def test_any_line_gets_a_reply_never_an_internal_error(runtime: Runtime, line: str) -> None:
    reply = await runtime.service.handle_line(chat_user(), line)
    assert reply.lines or reply.cards
    assert INTERNAL_ERROR not in reply.lines


@FAST
@given(st.one_of(st.binary(max_size=400), st.binary(max_size=200).map(gzip.compress)))
async def test_any_attachment_gets_a_clear_reply(runtime: Runtime, data: bytes) -> None:
    reply = await runtime.service.execute(
        chat_user(), RecommendCommand(), Attachment("x.xml", data)
    )
    assert reply.lines or reply.cards
    assert INTERNAL_ERROR not in reply.lines


async def test_usernames_in_requests_are_encoded(runtime: Runtime, services) -> None:
    await runtime.service.handle_line(chat_user(), "/recommend Al-fan_1 --source mal")
    await runtime.service.handle_line(chat_user(2), "/recommend alfan --source anilist")
    mal_request = services.requests[0]
    assert mal_request.url.path == "/v2/users/Al-fan_1/animelist"
    body = services.anilist.queries[-1]
    assert body["variables"]["name"] == "alfan" and "alfan" not in body["query"]


async def test_many_concurrent_recommends_are_all_answered(
    runtime: Runtime, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """200 users at once, asking about 20 lists: all answered, each list fetched once."""
    caplog.set_level(logging.WARNING)
    for k in range(10):
        services.mal.add_user(f"malload{k}", user_rows(k))
        services.anilist.add_user(f"alload{k}", anilist_rows(k))
    lines = [
        f"/recommend malload{i // 2 % 10} --source mal --count 5"
        if i % 2
        else f"/recommend alload{i // 2 % 10} --source anilist --count 5"
        for i in range(200)
    ]
    replies = await asyncio.gather(
        *(runtime.service.handle_line(chat_user(i), line) for i, line in enumerate(lines))
    )
    assert len(replies) == 200
    assert all(not r.error and len(r.cards) == 5 for r in replies), [
        r.lines for r in replies if r.error
    ][:3]
    assert len(services.requests) == 20
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_burst_of_commands_is_admitted_a_few_at_a_time(
    tmp_path, engine, services: Services
) -> None:
    """Past `max_concurrent_commands`, commands wait their turn instead of all starting at once."""
    for k in range(4):
        services.anilist.add_user(f"burst{k}", anilist_rows(k))
    settings = make_settings(tmp_path, max_concurrent_commands=3)
    async with open_runtime(
        settings,
        engine,
        sources_settings=fast_sources(),
        mal_client_id=MAL_CLIENT_ID,
        transport=services.transport,
    ) as rt:
        in_flight, most = 0, 0
        dispatch = rt.service._dispatch

        async def counting_dispatch(*args, **kwargs):
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await dispatch(*args, **kwargs)
            finally:
                in_flight -= 1

        rt.service._dispatch = counting_dispatch  # type: ignore[method-assign]
        replies = await asyncio.gather(
            *(
                rt.service.handle_line(chat_user(i), f"/recommend burst{i % 4} --source anilist")
                for i in range(24)
            )
        )
    assert all(not r.error for r in replies)
    assert most == 3


# ----- long lines, repeated options, forged buttons ---------------------------------------------

SHELL_ALPHABET = st.sampled_from(list("ab -'\"\\\t\n—x"))


@given(st.text(alphabet=SHELL_ALPHABET, max_size=40))
@settings(max_examples=500, deadline=None)
def test_tokenize_reads_words_as_a_posix_shell_does(text: str) -> None:
    try:
        expected: list[str] | None = shlex.split(text)
    except ValueError:
        expected = None
    try:
        got: list[str] | None = tokenize(text)
    except CommandError:
        got = None
    if expected is not None:
        expected = ["--" + t.lstrip("—") if t.startswith("—") else t for t in expected]
    assert got == expected


LONG_LINES = st.builds(
    lambda name, word, n, tail: f"/{name} " + " ".join([word] * n) + tail,
    st.sampled_from(["recommend", "link", "subscribe", "seen"]),
    st.sampled_from(["--genre Action", "--type tv", "x", "'a b'", '"q', "--count 9" + "9" * 50]),
    st.integers(min_value=0, max_value=8000),
    st.text(max_size=50),
)


HUGE_LINES = st.builds(
    lambda piece, n: (piece * n)[:100_000],
    st.text(min_size=1, max_size=30),
    st.integers(3000, 100_000),
)


@given(st.one_of(LONG_LINES, HUGE_LINES))
@settings(max_examples=40, deadline=None)
def test_lines_up_to_100k_characters_are_refused_or_read_never_raise(line: str) -> None:
    try:
        parse_command(line)
    except CommandError as exc:
        if len(line) > DEFAULT_MAX_LINE_CHARS:
            assert "limit" in str(exc)
        assert len(str(exc)) < 400  # echoes are cut


def test_a_line_over_the_limit_names_the_limit_and_repeats_are_all_read() -> None:
    line = "/recommend x " + " ".join(["--genre Action"] * 5000)
    with pytest.raises(CommandError, match="the limit is 4,000"):
        parse_command(line)
    # Under a raised limit every repeat is read (the old parser copied the list each time).
    parsed = parse_command(line, max_chars=len(line))
    assert isinstance(parsed, RecommendCommand) and len(parsed.genres) == 5000


@pytest.mark.parametrize(
    "line",
    [
        "/recommend --count " + "9" * 3000,
        "/recommend --adventurous " + "x" * 3000,
        "/recommend --source " + "y" * 3000,
        "/recommend --genre " + "z" * 3000,
        "/recommend --type " + "w" * 3000,
        "/similar " + "b" * 3000,
        "/" + "c" * 3000,
    ],
)
def test_bad_values_are_echoed_cut(line: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(line)
    message = str(caught.value)
    assert len(message) < 300 and "…" in message


async def test_a_long_line_gets_one_clear_reply(runtime: Runtime) -> None:
    reply = await runtime.service.handle_line(chat_user(), "/recommend " + "a" * 100_000)
    assert reply.error and "limit" in reply.lines[0] and len(reply.lines[0]) < 200


PAYLOADS = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda action, rest: f"{action}:{rest}",
        st.sampled_from(["seen", "not_interested", "more", "subscribe", "nope"]),
        st.one_of(st.text(max_size=12), st.text(alphabet="0123456789²³¹٣۵߁", max_size=12)),
    ),
)


@given(PAYLOADS)
@settings(max_examples=500, deadline=None)
def test_forged_button_payloads_never_raise(payload: str) -> None:
    command = button_payload_command(payload)
    parsed = parse_payload(payload)
    assert (command is None) == (parsed is None)
    if parsed is not None and parsed[1] is not None:
        assert payload.split(":", 1)[1] == str(parsed[1])  # plain ASCII digits only


@pytest.mark.parametrize("payload", ["seen:²", "seen:٣", "not_interested:0", "seen:0012", "seen:"])
def test_payloads_with_non_ascii_or_odd_digits_are_refused(payload: str) -> None:
    assert parse_payload(payload) is None
