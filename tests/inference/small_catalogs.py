"""Small hand-made catalogues and lists for the filter, explanation and cold-start tests."""

from __future__ import annotations

from inference.animelist import AnimeList, ListEntry, PartialDate, Status
from inference.catalog import Catalog, CatalogItem


def item(mal_id: int, title: str, **fields: object) -> CatalogItem:
    fields.setdefault("media_type", "tv")
    fields.setdefault("popularity", 1000)
    fields.setdefault("franchise_id", mal_id)
    return CatalogItem(mal_id=mal_id, title=title, **fields)  # type: ignore[arg-type]


def date(text: str) -> PartialDate:
    parsed = PartialDate.parse(text)
    assert parsed is not None
    return parsed


def with_relations() -> Catalog:
    """A live-style catalogue: relations are facts.

    Franchise 10: 10 (S1) -> 11 (S2) -> 12 (S3), 13 is a recap of S1 (S1 lists it as "summary").
    Franchise 20: 20 (film) alone. 30: an adult title. 40: not yet aired. 50: a movie, Romance.
    """
    return Catalog(
        [
            item(
                10,
                "Hero Academy",
                genres=("Action", "Comedy"),
                start_date=date("2016-04-03"),
                relations=(("sequel", 11), ("summary", 13)),
                franchise_id=10,
                popularity=900_000,
            ),
            item(
                11,
                "Hero Academy 2",
                genres=("Action",),
                start_date=date("2017-04-01"),
                relations=(("prequel", 10), ("sequel", 12)),
                franchise_id=10,
                popularity=800_000,
            ),
            item(
                12,
                "Hero Academy 3",
                genres=("Action",),
                start_date=date("2018-04-07"),
                relations=(("prequel", 11),),
                franchise_id=10,
                popularity=700_000,
            ),
            item(
                13,
                "Hero Academy: Memories",
                media_type="special",
                genres=("Action",),
                relations=(("parent", 10),),
                franchise_id=10,
            ),
            item(20, "Quiet Film", media_type="movie", genres=("Drama",), franchise_id=20),
            item(
                30, "Night Thing", media_type="ova", genres=("Hentai",), adult=True, franchise_id=30
            ),
            item(
                40,
                "Future Show",
                genres=("Sci-Fi",),
                airing_status="not_yet_aired",
                start_date=date("2031-01"),
                franchise_id=40,
            ),
            item(
                50, "Love Movie", media_type="movie", genres=("Romance", "Drama"), franchise_id=50
            ),
        ],
        info={"source": "test"},
    )


def without_relations() -> Catalog:
    """An offline-style catalogue: title-stem franchises, no relations, few dates."""
    return Catalog(
        [
            item(100, "Space Pirates", genres=("Sci-Fi",), franchise_id=100),
            item(
                101, "Space Pirates Movie", media_type="movie", genres=("Sci-Fi",), franchise_id=100
            ),
            item(102, "Space Pirates 2nd Season", genres=("Sci-Fi",), franchise_id=100),
            item(103, "Space Pirates Recap", media_type="special", franchise_id=100),
            item(200, "Cooking Club", genres=("Slice of Life",), franchise_id=200),
        ],
        info={"source": "test", "missing_fields": ["relations"]},
    )


def animelist(
    *entries: tuple[int, Status] | tuple[int, Status, float | None], source: str = "mal"
) -> AnimeList:
    rows = []
    for e in entries:
        score = e[2] if len(e) > 2 else None  # type: ignore[misc]
        rows.append(ListEntry(mal_id=e[0], status=e[1], score=score))
    return AnimeList(source=source, username="tester", entries=rows)
