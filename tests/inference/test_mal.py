from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.animelist import MAX_LIST_ENTRIES, MAX_TIME, PartialDate, Status
from inference.config import ServiceLimits, SourceSettings
from inference.errors import (
    ConfigError,
    InvalidUsername,
    ListTooLarge,
    PrivateList,
    RateLimited,
    ServiceUnavailable,
    UserNotFound,
)
from inference.sources.fetch import ListSources
from inference.sources.mal import mal_list_url, parse_mal_page
from inference.sources.usernames import validate_mal_username
from tests.inference.fakes import (
    FakeClock,
    FakeMal,
    RecordingTransport,
    html_response,
    json_response,
    mal_row,
    many_mal_rows,
)

# Backoff starts at 2–4 s, so retry waits stand apart from the limiter's sub-second spacing.
LIMITS = ServiceLimits(
    requests_per_minute=60, timeout_s=5, max_retries=2, backoff_base_s=4.0, backoff_max_s=30
)
SETTINGS = SourceSettings(user_agent="animerec-test", mal=LIMITS, anilist=LIMITS)


class World:
    """A fake MyAnimeList behind a recording MockTransport, and ListSources on virtual time."""

    def __init__(self, *, client_id: str | None = "test-client-id") -> None:
        self.mal = FakeMal()
        self.recorder = RecordingTransport(self.mal)
        self.clock = FakeClock()
        self.http = httpx.AsyncClient(transport=self.recorder.transport)
        self.sources = ListSources(
            self.http, SETTINGS, mal_client_id=client_id, sleep=self.clock.sleep, clock=self.clock
        )

    def retry_waits(self) -> list[float]:
        """Sleeps longer than the limiter's one-second spacing."""
        return [s for s in self.clock.sleeps if s > 1.0]


def unix(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


async def test_several_pages_are_followed_to_the_end() -> None:
    world = World()
    rows = many_mal_rows(2500)
    world.mal.add_user("Pager", rows)
    result = await world.sources.fetch_mal_list("Pager")
    assert result.source == "mal" and result.username == "Pager"
    assert [e.mal_id for e in result.entries] == [r["node"]["id"] for r in rows]
    offsets = [r.url.params.get("offset", "0") for r in world.recorder.requests]
    assert offsets == ["0", "1000", "2000"]
    # Every page carries the client id; the limiter spaced the pages a second apart.
    assert {r.headers["X-MAL-CLIENT-ID"] for r in world.recorder.requests} == {"test-client-id"}
    assert world.clock.sleeps == [pytest.approx(1.0)] * 2


async def test_first_request_has_the_documented_url() -> None:
    world = World()
    world.mal.add_user("someone_1", [])
    await world.sources.fetch_mal_list("someone_1")
    url = world.recorder.requests[0].url
    assert url.host == "api.myanimelist.net"
    assert url.path == "/v2/users/someone_1/animelist"
    assert url.params["limit"] == "1000" and url.params["nsfw"] == "true"
    assert url.params["fields"].startswith("list_status{status,score,num_episodes_watched,")


def test_username_is_one_escaped_path_segment() -> None:
    url = mal_list_url("a/../b?x=1")
    assert url.raw_path.startswith(b"/v2/users/a%2F..%2Fb%3Fx%3D1/animelist?")
    assert url.host == "api.myanimelist.net"


async def test_empty_list() -> None:
    world = World()
    world.mal.add_user("nobody", [])
    result = await world.sources.fetch_mal_list("nobody")
    assert result.entries == [] and len(world.recorder.requests) == 1


async def test_an_11000_entry_list() -> None:
    world = World()
    world.mal.add_user("hoarder", many_mal_rows(11_000))
    result = await world.sources.fetch_mal_list("hoarder")
    assert len(result) == 11_000
    assert len(world.recorder.requests) == 11
    assert len({e.mal_id for e in result.entries}) == 11_000
    assert set(result.status_counts().values()) == {2200}


async def test_scores_dates_rewatching_and_missing_pictures() -> None:
    world = World()
    world.mal.add_user(
        "detail",
        [
            mal_row(1, "completed", score=9, start_date="2017-10-23", finish_date="2017-11"),
            mal_row(2, "watching", score=0, start_date="2017", picture=False),
            mal_row(3, "completed", score=10, rewatching=True, updated_at=None),
            mal_row(4, "plan_to_watch", watched=0, updated_at="2021-03-15T10:00:58+01:00"),
            mal_row(5, "on_hold", score=4, start_date="0000-00-00"),
        ],
    )
    entries = {e.mal_id: e for e in (await world.sources.fetch_mal_list("detail")).entries}
    assert entries[1].score == 9
    assert entries[1].started == PartialDate(2017, 10, 23)
    assert entries[1].finished == PartialDate(2017, 11)
    assert entries[1].updated_at == unix("2021-03-15T09:00:58")
    assert entries[2].score is None and entries[2].started == PartialDate(2017)
    assert entries[2].status is Status.WATCHING
    assert entries[3].rewatching and entries[3].status_code == 5 and entries[3].updated_at is None
    # A non-UTC offset is converted, not ignored.
    assert entries[4].updated_at == unix("2021-03-15T09:00:58")
    assert entries[4].status is Status.PLAN_TO_WATCH and entries[4].episodes_watched == 0
    assert entries[5].started is None and entries[5].status is Status.ON_HOLD


def test_unreadable_rows_are_skipped_and_an_empty_paging_ends_the_list() -> None:
    payload = {
        "data": [
            mal_row(1),
            {"node": {"id": 2}, "list_status": {"status": "reading"}},
            {"node": {"title": "no id"}, "list_status": {"status": "completed"}},
            "garbage",
        ],
        "paging": {},
    }
    entries, next_url = parse_mal_page(payload)
    assert [e.mal_id for e in entries] == [1] and next_url is None


@pytest.mark.parametrize("payload", [[], {"paging": {}}, {"data": {"node": 1}}, None])
def test_a_page_of_the_wrong_shape_is_service_unavailable(payload: object) -> None:
    with pytest.raises(ServiceUnavailable):
        parse_mal_page(payload)


async def test_429_with_retry_after_then_success() -> None:
    world = World()
    world.mal.add_user("busy", [mal_row(1)])
    world.recorder.fail_next(
        json_response(429, {"error": "too_many_requests"}, {"Retry-After": "12"})
    )
    result = await world.sources.fetch_mal_list("busy")
    assert [e.mal_id for e in result.entries] == [1]
    assert world.retry_waits() == [12.0]


async def test_5xx_then_success() -> None:
    world = World()
    world.mal.add_user("flaky", [mal_row(1)])
    world.recorder.fail_next(html_response(502))
    assert len(await world.sources.fetch_mal_list("flaky")) == 1
    assert len(world.recorder.requests) == 2


async def test_timeout_then_success_and_timeouts_exhausted() -> None:
    world = World()
    world.mal.add_user("slow", [mal_row(1)])
    world.recorder.fail_next(httpx.ReadTimeout("read timed out"))
    assert len(await world.sources.fetch_mal_list("slow")) == 1
    world.recorder.fail_next(*(httpx.ReadTimeout("read timed out") for _ in range(3)))
    with pytest.raises(ServiceUnavailable, match="MyAnimeList is not answering"):
        await world.sources.fetch_mal_list("slow")


async def test_html_error_pages_exhausted_are_service_unavailable() -> None:
    world = World()
    world.mal.add_user("down", [mal_row(1)])
    world.recorder.fail_next(*(html_response(503) for _ in range(3)))
    with pytest.raises(ServiceUnavailable):
        await world.sources.fetch_mal_list("down")


async def test_html_with_status_200_is_service_unavailable() -> None:
    world = World()
    world.recorder.fail_next(html_response(200))
    with pytest.raises(ServiceUnavailable, match="could not read"):
        await world.sources.fetch_mal_list("someone")


async def test_malformed_json_is_service_unavailable() -> None:
    world = World()
    world.recorder.fail_next(
        httpx.Response(
            200,
            content=b'{"data": [{"node": {"id": 1}',
            headers={"Content-Type": "application/json"},
        )
    )
    with pytest.raises(ServiceUnavailable, match="could not read"):
        await world.sources.fetch_mal_list("someone")


async def test_private_list() -> None:
    world = World()
    world.mal.add_user("hidden", [mal_row(1)], private=True)
    with pytest.raises(PrivateList) as caught:
        await world.sources.fetch_mal_list("hidden")
    assert str(caught.value) == "MyAnimeList user 'hidden' has a private list."
    assert len(world.recorder.requests) == 1


async def test_403s_for_several_users_are_treated_as_throttling() -> None:
    world = World()
    world.recorder.handler = lambda _: json_response(403, {"error": "forbidden", "message": ""})
    for name in ("first", "second"):
        with pytest.raises(PrivateList):
            await world.sources.fetch_mal_list(name)
    with pytest.raises(RateLimited) as caught:
        await world.sources.fetch_mal_list("third")
    assert "too many requests" in str(caught.value)
    # The third user's request was retried with backoff before giving up.
    assert len(world.recorder.requests) == 2 + 3
    assert len(world.retry_waits()) == 2


async def test_a_success_ends_the_throttling_suspicion() -> None:
    world = World()
    world.mal.add_user("fine", [mal_row(1)])
    forbidden = json_response(403, {"error": "forbidden", "message": ""})
    world.recorder.fail_next(forbidden, forbidden)
    for name in ("first", "second"):
        with pytest.raises(PrivateList):
            await world.sources.fetch_mal_list(name)
    assert len(await world.sources.fetch_mal_list("fine")) == 1
    world.recorder.fail_next(forbidden)
    with pytest.raises(PrivateList):
        await world.sources.fetch_mal_list("third")


async def test_unknown_user() -> None:
    world = World()
    with pytest.raises(UserNotFound, match="MyAnimeList has no user named 'ghost'"):
        await world.sources.fetch_mal_list("ghost")


async def test_rejected_client_id_is_a_config_error_that_hides_the_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    world = World(client_id="wrong-secret-id")
    world.mal.add_user("someone", [])
    with pytest.raises(ConfigError) as caught:
        await world.sources.fetch_mal_list("someone")
    assert "ANIMEREC_MAL_CLIENT_ID" in str(caught.value)
    assert "wrong-secret-id" not in str(caught.value)
    assert "wrong-secret-id" not in caplog.text


async def test_concurrent_users_share_one_limiter() -> None:
    world = World()
    names = ["user_a", "user_b", "user_c", "user_d"]
    for name in names:
        world.mal.add_user(name, [mal_row(1)])
    sent_at: list[float] = []
    serve = world.recorder.handler

    def stamped(request: httpx.Request) -> httpx.Response:
        sent_at.append(world.clock.now)
        return serve(request)

    world.recorder.handler = stamped
    results = await asyncio.gather(*(world.sources.fetch_mal_list(n) for n in names))
    assert [r.username for r in results] == names
    start = min(sent_at)
    assert sorted(t - start for t in sent_at) == [0.0, 1.0, 2.0, 3.0]


async def test_missing_client_id_is_a_config_error_and_sends_nothing() -> None:
    world = World(client_id=None)
    with pytest.raises(ConfigError, match="ANIMEREC_MAL_CLIENT_ID"):
        await world.sources.fetch_mal_list("someone")
    assert world.recorder.requests == []


@pytest.mark.parametrize("name", ["a", "x" * 17, "bad name", "../admin", "@me", "名前", "a\n", ""])
async def test_invalid_username_sends_no_request(name: str) -> None:
    world = World()
    with pytest.raises(InvalidUsername, match="not a valid MyAnimeList username"):
        await world.sources.fetch_mal_list(name)
    assert world.recorder.requests == []


async def test_paging_next_to_another_host_is_refused() -> None:
    world = World()
    world.recorder.fail_next(
        json_response(200, {"data": [mal_row(1)], "paging": {"next": "https://evil.test/steal"}})
    )
    with pytest.raises(ServiceUnavailable):
        await world.sources.fetch_mal_list("someone")
    assert [r.url.host for r in world.recorder.requests] == ["api.myanimelist.net"]


async def test_real_sample_response(shared_data: Path) -> None:
    body = (shared_data / "fixtures/mal-api/user-animelist-5-entries.json").read_bytes()
    sample = json.loads(body)
    world = World()
    world.recorder.handler = lambda _: httpx.Response(
        200, content=body, headers={"Content-Type": "application/json"}
    )
    result = await world.sources.fetch_mal_list("sample_user")
    assert len(world.recorder.requests) == 1  # its `paging` is {}
    assert [e.mal_id for e in result.entries] == [r["node"]["id"] for r in sample["data"]]
    assert [e.title for e in result.entries] == [r["node"]["title"] for r in sample["data"]]
    assert [e.status for e in result.entries] == [Status.WATCHING] * 4 + [Status.COMPLETED]
    assert [e.episodes_watched for e in result.entries] == [
        r["list_status"]["num_episodes_watched"] for r in sample["data"]
    ]
    assert all(e.score is None for e in result.entries)  # every score in the sample is 0
    assert result.entries[0].updated_at == unix("2021-03-15T09:00:58")


@given(st.text(max_size=24))
def test_mal_username_rule(name: str) -> None:
    trimmed = name.strip()
    allowed = 2 <= len(trimmed) <= 16 and all(
        c.isascii() and (c.isalnum() or c in "_-") for c in trimmed
    )
    if allowed:
        assert validate_mal_username(name) == trimmed
    else:
        with pytest.raises(InvalidUsername):
            validate_mal_username(name)


# ----- the entry cap ------------------------------------------------------------------------


def capped_sources(world: World, max_entries: int) -> ListSources:
    return ListSources(
        world.http,
        SETTINGS,
        mal_client_id="test-client-id",
        sleep=world.clock.sleep,
        clock=world.clock,
        max_entries=max_entries,
    )


async def test_a_list_over_the_cap_stops_paging_once_it_is_passed() -> None:
    world = World()
    world.mal.add_user("hoarder", many_mal_rows(3500))
    with pytest.raises(ListTooLarge) as err:
        await capped_sources(world, 1500).fetch_mal_list("hoarder")
    assert err.value.service == "mal"
    assert "'hoarder' has more than 1,500 entries" in str(err.value)
    # The second page passed the cap: the third and fourth were never asked for.
    assert len(world.recorder.requests) == 2


async def test_a_list_exactly_at_the_cap_is_read_whole() -> None:
    world = World()
    world.mal.add_user("collector", many_mal_rows(2000))
    result = await capped_sources(world, 2000).fetch_mal_list("collector")
    assert len(result) == 2000


def test_the_default_cap_is_max_list_entries() -> None:
    assert World().sources.max_entries == MAX_LIST_ENTRIES


@pytest.mark.parametrize(
    ("updated_at", "expected"),
    [
        ("2040-01-01T00:00:00+00:00", 2208988800),  # past the int32 range: a real time
        ("9999-12-31T23:59:59+00:00", MAX_TIME),
        ("9999-12-31T23:59:59-05:00", None),  # past what a UTC datetime can show
        ("1969-12-31T23:59:59+00:00", None),
    ],
)
def test_update_times_at_the_edges(updated_at: str, expected: int | None) -> None:
    (entry,), _ = parse_mal_page({"data": [mal_row(1, updated_at=updated_at)], "paging": {}})
    assert entry.updated_at == expected


def test_a_start_date_with_an_impossible_year_is_unknown() -> None:
    row = mal_row(1, start_date="99999-01-01", finish_date="2017-10-23")
    (entry,), _ = parse_mal_page({"data": [row], "paging": {}})
    assert entry.started is None and entry.finished == PartialDate(2017, 10, 23)
