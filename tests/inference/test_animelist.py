from inference.animelist import AnimeList, ListEntry, PartialDate, Status


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
