from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.animelist import MAX_LIST_ENTRIES, MAX_TIME, PartialDate, Status
from inference.config import ServiceLimits, SourceSettings
from inference.errors import (
    InvalidUsername,
    ListTooLarge,
    PrivateList,
    RateLimited,
    ServiceUnavailable,
    UserNotFound,
)
from inference.sources.anilist import LIST_QUERY, normalize_anilist_entry
from inference.sources.fetch import ListSources
from inference.sources.usernames import validate_anilist_username
from tests.inference.fakes import (
    FakeAniList,
    FakeClock,
    RecordingTransport,
    anilist_row,
    fuzzy,
    html_response,
    json_response,
    many_anilist_rows,
)

# At 30/min the limiter sleeps up to 2 s; backoff starts at 2.5–5 s, so retry waits stand apart.
LIMITS = ServiceLimits(
    requests_per_minute=30, timeout_s=5, max_retries=2, backoff_base_s=5.0, backoff_max_s=30
)
SETTINGS = SourceSettings(user_agent="animerec-test", mal=LIMITS, anilist=LIMITS)


class World:
    """A fake AniList behind a recording MockTransport, and ListSources on virtual time."""

    def __init__(self, anilist_to_mal: Mapping[int, int] | None = None) -> None:
        self.anilist = FakeAniList()
        self.recorder = RecordingTransport(self.anilist)
        self.clock = FakeClock()
        self.http = httpx.AsyncClient(transport=self.recorder.transport)
        self.sources = ListSources(
            self.http,
            SETTINGS,
            anilist_to_mal=anilist_to_mal,
            sleep=self.clock.sleep,
            clock=self.clock,
        )

    def retry_waits(self) -> list[float]:
        return [s for s in self.clock.sleeps if s > 2.1]


def graphql_error(status: int, message: str, *, http_status: int | None = None) -> httpx.Response:
    return json_response(
        status if http_status is None else http_status,
        {"errors": [{"message": message, "status": status}], "data": {"MediaListCollection": None}},
    )


async def test_several_chunks_are_read_to_the_end() -> None:
    world = World()
    rows = many_anilist_rows(1200)
    world.anilist.add_user("Chunky", rows)
    result = await world.sources.fetch_anilist_list("Chunky")
    assert result.source == "anilist" and result.username == "Chunky"
    assert sorted(e.mal_id for e in result.entries) == sorted(r["media"]["idMal"] for r in rows)
    assert [q["variables"]["chunk"] for q in world.anilist.queries] == [1, 2, 3]
    # The name only ever travels as a GraphQL variable.
    assert all(q["query"] == LIST_QUERY for q in world.anilist.queries)
    assert {q["variables"]["name"] for q in world.anilist.queries} == {"Chunky"}
    assert all("Chunky" not in q["query"] for q in world.anilist.queries)


async def test_empty_list() -> None:
    world = World()
    world.anilist.add_user("nobody", [])
    result = await world.sources.fetch_anilist_list("nobody")
    assert result.entries == [] and result.unmapped_entries == 0
    assert len(world.recorder.requests) == 1


async def test_an_11000_entry_list() -> None:
    world = World()
    rows = many_anilist_rows(11_000)
    world.anilist.add_user("hoarder", rows)
    world.anilist.rate_limit_remaining = 10_000  # this test is about size, not the rate limit
    result = await world.sources.fetch_anilist_list("hoarder")
    assert len(result) == 11_000
    assert len(world.recorder.requests) == 22
    # REPEATING rows count as watching, and as rewatches.
    watching = sum(r["status"] in ("CURRENT", "REPEATING") for r in rows)
    assert result.status_counts()[Status.WATCHING] == watching
    assert sum(e.rewatching for e in result.entries) == sum(
        r["status"] == "REPEATING" for r in rows
    )


async def test_statuses_scores_and_partial_dates() -> None:
    world = World()
    world.anilist.add_user(
        "detail",
        [
            anilist_row(11, 1, "CURRENT", score=85, started=fuzzy(2017, 10, 23)),
            anilist_row(12, 2, "PLANNING", score=0, updated_at=0, progress=0),
            anilist_row(13, 3, "COMPLETED", score=100, completed=fuzzy(2018, None, None)),
            anilist_row(14, 4, "DROPPED", score=5, started=fuzzy(2019, 4, None)),
            anilist_row(15, 5, "PAUSED", score=62.5, updated_at=None),
            anilist_row(16, 6, "REPEATING", score=90, repeat=2, completed=fuzzy(None, 5, 1)),
        ],
    )
    entries = {e.mal_id: e for e in (await world.sources.fetch_anilist_list("detail")).entries}
    assert entries[1].status is Status.WATCHING and not entries[1].rewatching
    assert entries[1].score == 8.5 and entries[1].started == PartialDate(2017, 10, 23)
    assert entries[1].updated_at == 1_600_000_000
    assert entries[2].status is Status.PLAN_TO_WATCH
    assert entries[2].score is None and entries[2].updated_at is None
    assert entries[3].score == 10.0 and entries[3].finished == PartialDate(2018)
    # A 1–14/100 score stays a real score (0.5), never "unscored".
    assert entries[4].status is Status.DROPPED and entries[4].score == 0.5
    assert entries[4].started == PartialDate(2019, 4)
    assert entries[5].status is Status.ON_HOLD and entries[5].score == 6.25
    assert entries[5].updated_at is None
    assert entries[6].status is Status.WATCHING and entries[6].rewatching
    assert entries[6].status_code == 5 and entries[6].finished is None


async def test_custom_list_duplicates_are_kept_once_and_hidden_entries_are_kept() -> None:
    world = World()
    shown = [anilist_row(21, 1, "COMPLETED", score=70), anilist_row(22, 2, "CURRENT")]
    hidden = anilist_row(23, 3, "COMPLETED", score=40)  # hidden from status lists
    world.anilist.add_user(
        "customs", shown, custom={"Favourites": [shown[0], hidden], "Rewatch later": [shown[0]]}
    )
    result = await world.sources.fetch_anilist_list("customs")
    assert sorted(e.mal_id for e in result.entries) == [1, 2, 3]
    assert {e.mal_id: e.score for e in result.entries}[3] == 4.0


async def test_missing_mal_ids_are_mapped_or_dropped_and_counted() -> None:
    world = World(anilist_to_mal={31: 301})
    world.anilist.add_user(
        "mapping",
        [
            anilist_row(30, 300, "COMPLETED"),
            anilist_row(31, None, "COMPLETED"),  # the catalogue knows it
            anilist_row(32, None, "COMPLETED"),  # nobody knows it
            anilist_row(33, None, "PLANNING"),
        ],
        custom={"Faves": [anilist_row(32, None, "COMPLETED")]},
    )
    result = await world.sources.fetch_anilist_list("mapping")
    assert sorted(e.mal_id for e in result.entries) == [300, 301]
    assert result.unmapped_entries == 2


async def test_429_with_retry_after_then_success() -> None:
    world = World()
    world.anilist.add_user("busy", [anilist_row(1, 1)])
    world.recorder.fail_next(
        json_response(
            429,
            {"errors": [{"message": "Too Many Requests.", "status": 429}], "data": None},
            {"Retry-After": "17", "X-RateLimit-Remaining": "0"},
        )
    )
    result = await world.sources.fetch_anilist_list("busy")
    assert len(result) == 1
    assert world.retry_waits() == [17.0]


async def test_ratelimit_remaining_zero_delays_the_next_chunk() -> None:
    world = World()
    world.anilist.add_user("big", many_anilist_rows(600))
    world.anilist.rate_limit_remaining = 1  # the first answer says 0 left
    assert len(await world.sources.fetch_anilist_list("big")) == 600
    assert world.retry_waits() == [30.0]  # a minute's window, capped by backoff_max_s


async def test_5xx_then_success() -> None:
    world = World()
    world.anilist.add_user("flaky", [anilist_row(1, 1)])
    world.recorder.fail_next(html_response(500), graphql_error(500, "Internal Server Error"))
    assert len(await world.sources.fetch_anilist_list("flaky")) == 1
    assert len(world.recorder.requests) == 3


async def test_timeout_then_success_and_timeouts_exhausted() -> None:
    world = World()
    world.anilist.add_user("slow", [anilist_row(1, 1)])
    world.recorder.fail_next(httpx.ReadTimeout("read timed out"))
    assert len(await world.sources.fetch_anilist_list("slow")) == 1
    world.recorder.fail_next(*(httpx.ReadTimeout("read timed out") for _ in range(3)))
    with pytest.raises(ServiceUnavailable, match="AniList is not answering"):
        await world.sources.fetch_anilist_list("slow")


async def test_throttling_exhausted_is_rate_limited() -> None:
    world = World()
    world.recorder.handler = lambda _: json_response(429, {"errors": [{"message": "Too Many"}]})
    with pytest.raises(RateLimited):
        await world.sources.fetch_anilist_list("someone")
    assert len(world.recorder.requests) == 3


async def test_html_error_page_is_service_unavailable() -> None:
    world = World()
    world.recorder.fail_next(html_response(403))  # a CDN's block page, not AniList's JSON
    with pytest.raises(ServiceUnavailable):
        await world.sources.fetch_anilist_list("someone")


async def test_malformed_json_is_service_unavailable() -> None:
    world = World()
    world.recorder.fail_next(httpx.Response(200, content=b'{"data": {"MediaListCollection": {'))
    with pytest.raises(ServiceUnavailable, match="could not read"):
        await world.sources.fetch_anilist_list("someone")


async def test_wrong_shape_is_service_unavailable() -> None:
    world = World()
    world.recorder.fail_next(json_response(200, {"data": {"MediaListCollection": {"lists": 3}}}))
    with pytest.raises(ServiceUnavailable):
        await world.sources.fetch_anilist_list("someone")


async def test_private_list() -> None:
    world = World()
    world.anilist.add_user("hidden", [anilist_row(1, 1)], private=True)
    with pytest.raises(PrivateList) as caught:
        await world.sources.fetch_anilist_list("hidden")
    assert str(caught.value) == "AniList user 'hidden' has a private list."


async def test_errors_are_read_even_with_http_200() -> None:
    world = World()
    world.recorder.fail_next(graphql_error(404, "Private User", http_status=200))
    with pytest.raises(PrivateList):
        await world.sources.fetch_anilist_list("someone")


async def test_unknown_user() -> None:
    world = World()
    with pytest.raises(UserNotFound, match="AniList has no user named 'ghost'"):
        await world.sources.fetch_anilist_list("ghost")
    assert len(world.recorder.requests) == 1


async def test_temporarily_disabled_is_service_unavailable_without_retry() -> None:
    world = World()
    world.recorder.fail_next(
        graphql_error(
            403, "The AniList API has been temporarily disabled due to severe stability issues."
        )
    )
    with pytest.raises(ServiceUnavailable, match="temporarily down"):
        await world.sources.fetch_anilist_list("someone")
    assert len(world.recorder.requests) == 1


@pytest.mark.parametrize("name", ["a", "x" * 21, "under_score", "da-sh", "sp ace", "ünï", "}{"])
async def test_invalid_username_sends_no_request(name: str) -> None:
    world = World()
    with pytest.raises(InvalidUsername, match="not a valid AniList username"):
        await world.sources.fetch_anilist_list(name)
    assert world.recorder.requests == []


def test_real_sample_entries(shared_data: Path) -> None:
    sample = json.loads(
        (shared_data / "fixtures/anilist/page-medialist-10-entries.json").read_text()
    )
    rows = sample["data"]["Page"]["mediaList"]
    id_map = json.loads((shared_data / "catalog/id-map-mal-anilist.json").read_text())
    anilist_to_mal = {
        row["anilist_id"]: row["mal_id"]
        for row in id_map
        if "anilist_id" in row and "mal_id" in row
    }
    entries = [normalize_anilist_entry(row, anilist_to_mal) for row in rows]
    assert all(entry is not None for entry in entries)
    by_media = {row["media"]["id"]: entry for row, entry in zip(rows, entries, strict=True)}
    bebop = by_media[1]  # AniList 1 is MyAnimeList 1, Cowboy Bebop
    assert bebop is not None and bebop.mal_id == 1
    assert bebop.status is Status.COMPLETED and bebop.score == 6.0
    assert bebop.episodes_watched == 26 and bebop.updated_at == 1_511_491_706
    assert bebop.started is None and bebop.finished == PartialDate(2017, 11, 24)
    for row, entry in zip(rows, entries, strict=True):
        assert entry is not None
        assert entry.mal_id == anilist_to_mal[row["media"]["id"]]
        assert entry.score == (row["score"] / 10 if row["score"] else None)
        expected = Status.PLAN_TO_WATCH if row["status"] == "PLANNING" else Status.COMPLETED
        assert entry.status is expected
    # Without a mapping, rows that lack idMal cannot be placed.
    assert normalize_anilist_entry(rows[0], {}) is None


@given(st.text(max_size=24))
def test_anilist_username_rule(name: str) -> None:
    trimmed = name.strip()
    allowed = 2 <= len(trimmed) <= 20 and all(c.isascii() and c.isalnum() for c in trimmed)
    if allowed:
        assert validate_anilist_username(name) == trimmed
    else:
        with pytest.raises(InvalidUsername):
            validate_anilist_username(name)


# ----- the entry cap ------------------------------------------------------------------------


async def test_a_list_over_the_cap_stops_reading_chunks_once_it_is_passed() -> None:
    world = World()
    world.anilist.add_user("hoarder", many_anilist_rows(2200))
    world.anilist.rate_limit_remaining = 10_000
    sources = ListSources(
        world.http, SETTINGS, sleep=world.clock.sleep, clock=world.clock, max_entries=900
    )
    with pytest.raises(ListTooLarge) as err:
        await sources.fetch_anilist_list("hoarder")
    assert err.value.service == "anilist"
    assert "'hoarder' has more than 900 entries" in str(err.value)
    assert [q["variables"]["chunk"] for q in world.anilist.queries] == [1, 2]


async def test_a_list_exactly_at_the_cap_is_read_whole() -> None:
    world = World()
    world.anilist.add_user("collector", many_anilist_rows(1000))
    sources = ListSources(
        world.http, SETTINGS, sleep=world.clock.sleep, clock=world.clock, max_entries=1000
    )
    assert len(await sources.fetch_anilist_list("collector")) == 1000
    assert World().sources.max_entries == MAX_LIST_ENTRIES


@pytest.mark.parametrize(
    ("updated_at", "expected"),
    [(2208988800, 2208988800), (MAX_TIME, MAX_TIME), (MAX_TIME + 1, None), (2**70, None)],
)
def test_update_times_past_the_year_9999_are_unknown(updated_at: int, expected: int | None) -> None:
    entry = normalize_anilist_entry(anilist_row(1, 1, updated_at=updated_at), {})
    assert entry is not None and entry.updated_at == expected


@pytest.mark.parametrize("year", [0, -5, 10_000, 2**40])
def test_a_date_with_an_impossible_year_is_unknown(year: int) -> None:
    row = anilist_row(1, 1, started=fuzzy(year, 1, 1), completed=fuzzy(2018, 2, 3))
    entry = normalize_anilist_entry(row, {})
    assert entry is not None and entry.started is None
    assert entry.finished == PartialDate(2018, 2, 3)
