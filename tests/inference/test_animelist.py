import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.animelist import MAX_TIME, AnimeList, ListEntry, PartialDate, Status, unix_time


def test_json_round_trip_keeps_every_field() -> None:
    original = AnimeList(
        source="anilist",
        username="someone",
        entries=[
            ListEntry(
                5114,
                Status.COMPLETED,
                score=9.5,
                episodes_watched=64,
                updated_at=1_700_000_000,
                started=PartialDate(2017, 10),
                finished=PartialDate(2018, 1, 2),
                title="Fullmetal Alchemist: Brotherhood",
            ),
            ListEntry(1, Status.WATCHING, rewatching=True),
        ],
        unmapped_entries=3,
    )
    assert AnimeList.from_json(original.to_json()) == original


def test_rows_written_without_titles_still_read() -> None:
    body = '{"source":"mal","username":"x","entries":[[1,"dropped",false,null,3,null,"2017",null]]}'
    entry = AnimeList.from_json(body).entries[0]
    assert (entry.mal_id, entry.status, entry.title) == (1, Status.DROPPED, None)
    assert entry.started == PartialDate(2017)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9999-12-31", PartialDate(9999, 12, 31)),
        ("0001", PartialDate(1)),
        ("10000-01-01", None),
        ("99999-01-01", None),
        ("0000-00-00", None),
        ("2017-13-40", PartialDate(2017)),
    ],
)
def test_a_year_outside_1_to_9999_is_an_unknown_date(
    text: str, expected: PartialDate | None
) -> None:
    assert PartialDate.parse(text) == expected


@pytest.mark.parametrize("year", [None, 0, -1, 10_000, 2**63])
def test_fuzzy_dates_with_impossible_years_are_unknown(year: int | None) -> None:
    assert PartialDate.from_parts(year, 1, 1) is None
    assert PartialDate.from_parts(2017, 13, 1) == PartialDate(2017)


@given(st.text(max_size=30) | st.from_regex(r"-?\d{1,7}(-\d{1,3}){0,3}", fullmatch=True))
def test_any_parsed_date_is_one_datetime_can_hold_and_round_trips(text: str) -> None:
    date = PartialDate.parse(text)
    if date is not None:
        dt.date(date.year, date.month or 1, 1)  # a year datetime can represent
        assert PartialDate.parse(str(date)) == date


def test_unix_time_keeps_real_times_and_drops_the_rest() -> None:
    assert unix_time(2**31 + 1) == 2**31 + 1  # after January 2038: real
    assert unix_time(MAX_TIME) == MAX_TIME
    dt.datetime.fromtimestamp(MAX_TIME, dt.UTC)  # the last second datetime can show
    assert [unix_time(v) for v in (None, 0, -1, MAX_TIME + 1, 2**64)] == [None] * 5
