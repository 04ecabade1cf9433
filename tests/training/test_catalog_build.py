from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference.animelist import PartialDate
from inference.catalog import Catalog, load_catalog
from inference.config import ServiceLimits, SourceSettings
from inference.errors import CatalogError, ServiceUnavailable
from inference.http import make_http_client
from tests.conftest import ROOT, SHARED_DATA
from training.__main__ import main as cli
from training.catalog_build import (
    _tmdb_series,
    airing_status,
    build_offline,
    group_by_franchise,
    offline_franchises,
    season_of,
    title_stem,
)
from training.catalog_live import ANILIST_URL, PageStore, build_live, catalog_from_media

# ----- offline ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_catalog() -> Catalog:
    folder = SHARED_DATA / "catalog"
    if not folder.is_dir():
        pytest.skip(f"real data not available: {folder} is absent")
    return build_offline(folder, now=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))


def test_offline_build_covers_the_17k_list(offline_catalog: Catalog) -> None:
    catalog = offline_catalog
    assert 17_000 <= len(catalog) <= 18_000
    ids = [item.mal_id for item in catalog.items]
    assert ids == sorted(ids)  # vocabulary order is MAL id order
    with_anilist = sum(1 for item in catalog.items if item.anilist_id is not None)
    assert with_anilist > 0.8 * len(catalog)
    with_dates = sum(1 for item in catalog.items if item.start_date is not None)
    assert 5_000 < with_dates < 8_000
    assert catalog.info["coverage"]["start_date"] == with_dates
    assert catalog.info["franchise_method"] == "approximate: title stems and TMDB series"
    assert set(catalog.info["missing_fields"]) >= {"picture_url", "episode_minutes", "relations"}
    assert any("bangumi-data" in credit for credit in catalog.info["credits"])


def test_offline_items_carry_the_joined_fields(offline_catalog: Catalog) -> None:
    bebop = offline_catalog.by_mal_id(1)
    assert bebop is not None
    assert bebop.title == "Cowboy Bebop"
    assert bebop.anilist_id == 1
    assert bebop.media_type == "tv" and bebop.episodes == 26
    assert bebop.genres[:2] == ("Action", "Adventure")
    assert bebop.mean_score == pytest.approx(8.78)
    assert bebop.popularity is not None and bebop.popularity > 1_000_000
    assert bebop.airing_status == "finished"
    assert offline_catalog.mal_id_for_anilist(1) == 1
    jjk = offline_catalog.by_mal_id(40748)
    assert jjk is not None
    assert jjk.title_english == "Jujutsu Kaisen"
    assert jjk.start_date == PartialDate(2020, 10, 3)  # Japan's date, not UTC's
    assert (jjk.season, jjk.season_year) == ("fall", 2020)
    # "Unknown" in the CSV becomes None, not 0
    assert any(item.mean_score is None for item in offline_catalog.items)
    assert all(item.mean_score is None or item.mean_score > 0 for item in offline_catalog.items)


def test_adult_flag_comes_from_the_hentai_genre(offline_catalog: Catalog) -> None:
    adult = [item for item in offline_catalog.items if item.adult]
    assert adult and all("Hentai" in item.genres for item in adult)
    assert not any("Hentai" in item.genres for item in offline_catalog.items if not item.adult)


def test_offline_franchises_group_seasons(offline_catalog: Catalog) -> None:
    def franchise(mal_id: int) -> int | None:
        item = offline_catalog.by_mal_id(mal_id)
        assert item is not None
        return item.franchise_id

    snk = franchise(16498)
    assert snk == 16498
    assert franchise(25777) == snk  # Shingeki no Kyojin Season 2
    assert franchise(38524) == snk  # Season 3 Part 2
    assert franchise(40028) == snk  # The Final Season
    assert franchise(1) != snk
    assert franchise(1) == franchise(5)  # Cowboy Bebop and its movie
    groups = group_by_franchise(offline_catalog)
    assert sum(len(v) for v in groups.values()) == len(offline_catalog)
    assert len(groups) < 0.85 * len(offline_catalog)


@pytest.mark.parametrize(
    ("title", "stem"),
    [
        ("Shingeki no Kyojin Season 3 Part 2", "shingeki no kyojin"),
        ("Shingeki no Kyojin: The Final Season", "shingeki no kyojin"),
        ("Shingeki no Kyojin Movie 1: Guren no Yumiya", "shingeki no kyojin"),
        ("Fate/Zero 2nd Season", "fate zero"),
        ("Hunter x Hunter (2011)", "hunter x hunter"),
        ("Gintama&#039;", "gintama"),
        ("K-On!!", "k on"),
        ("Durarara!! Specials", "durarara"),
        ("Haikyuu!! Second Season", "haikyuu"),
        ("Major S2", "major"),
        ("Zoku Natsume Yuujinchou", "natsume yuujinchou"),
        ("Zan Sayonara Zetsubou Sensei", "sayonara zetsubou sensei"),
        ("Violet Evergarden Gaiden: Eien to Jidou Shuki Ningyou", "violet evergarden"),
        ("Hunter x Hunter Pilot", "hunter x hunter"),
        # the part before the colon is too short: the whole title, without its instalment words
        (
            "Re:Zero kara Hajimeru Isekai Seikatsu 2nd Season",
            "re zero kara hajimeru isekai seikatsu",
        ),
        (
            "Re:Zero kara Hajimeru Isekai Seikatsu - Memory Snow",
            "re zero kara hajimeru isekai seikatsu",
        ),
        # too short to group on: the whole title stays
        ("Ef: A Tale of Memories.", "ef a tale of memories"),
        ("Kanon", "kanon"),
    ],
)
def test_title_stem(title: str, stem: str) -> None:
    assert title_stem(title) == stem


def test_offline_franchises_join_tmdb_series_and_spin_offs_named_in_a_subtitle() -> None:
    titles = [
        (5081, "Bakemonogatari"),
        (11597, "Nisemonogatari"),
        (17074, "Monogatari Series: Second Season"),
        (37430, "Tensei shitara Slime Datta Ken"),
        (39551, "Tensei shitara Slime Datta Ken 2nd Season"),
        (41488, "Tensura Nikki: Tensei shitara Slime Datta Ken"),
        (50, "Another"),
        (60, "Persona 2: Another Self"),  # a one-word stem is a common word, not a franchise
        (918, "Gintama"),
        (9969, "Gintama'"),
        (40323, "Gintama: Monster Strike-hen"),
        (70, "Monster Strike the Animation"),
        (71, "Monster Strike: Monster Strike the Animation"),
    ]
    series = {5081: "tv/46195", 11597: "tv/46195", 17074: "tv/46195", 999: "tv/46195"}
    ids = offline_franchises(titles, series)
    assert ids[5081] == ids[11597] == ids[17074] == 5081  # one TMDB series, three stems
    assert ids[41488] == ids[39551] == ids[37430] == 37430  # named after its colon
    assert ids[60] == 60 and ids[50] == 50
    # A long runner's collaboration episode does not pull the other show into its franchise.
    assert ids[40323] == ids[9969] == 918
    assert ids[70] == ids[71] == 70
    assert 999 not in ids  # bangumi-data rows outside the CSV add nothing


@pytest.mark.parametrize(
    ("site_id", "series"),
    [
        ("tv/1429/season/3", "tv/1429"),
        ("tv/46195/season/0/episode/22", "tv/46195"),
        ("tv/85937", "tv/85937"),
        ("movie/635302", None),
        ("tv/", None),
        ("", None),
        (None, None),
    ],
)
def test_tmdb_series_of_a_bangumi_site_id(site_id: str | None, series: str | None) -> None:
    assert _tmdb_series(site_id) == series


def test_real_offline_franchises_join_what_titles_split(offline_catalog: Catalog) -> None:
    def franchise(mal_id: int) -> int | None:
        item = offline_catalog.by_mal_id(mal_id)
        assert item is not None
        return item.franchise_id

    assert franchise(31181) == franchise(5081)  # Owarimonogatari, through TMDB
    assert franchise(5300) == franchise(4081)  # Zoku Natsume Yuujinchou
    assert franchise(36286) == franchise(31240)  # Re:Zero - Memory Snow
    assert franchise(41488) == franchise(37430)  # Tensura Nikki
    assert franchise(11061) == franchise(136)  # Hunter x Hunter (2011) and the 1999 series
    assert franchise(1) != franchise(5081)


def test_season_and_airing_status_rules() -> None:
    assert [season_of(dt.date(2020, m, 1)) for m in (1, 3, 4, 7, 10, 12)] == [
        "winter",
        "winter",
        "spring",
        "summer",
        "fall",
        "fall",
    ]
    today = dt.date(2024, 6, 1)
    assert airing_status(None, None, today) is None
    assert airing_status(dt.date(2024, 7, 1), None, today) == "not_yet_aired"
    assert airing_status(dt.date(2020, 1, 1), dt.date(2020, 3, 1), today) == "finished"
    assert airing_status(dt.date(1999, 10, 20), None, today) == "airing"


def run_cli(argv: list[str]) -> int:
    return cli(["catalog", *argv])


def test_cli_writes_a_loadable_catalogue(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "catalog.json.gz"
    assert run_cli(["--offline", str(shared_data / "catalog"), "--out", str(out)]) == 0
    loaded = load_catalog(out)
    assert len(loaded) > 17_000
    assert loaded.by_mal_id(16498) is not None


def test_cli_missing_offline_folder_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["--offline", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "mal-anime-17k.csv" in err
    assert not (tmp_path / "c.json").exists()


def write_offline_folder(folder: Path) -> None:
    """Two titles in the three offline files' own formats: the smallest folder a build reads."""
    folder.mkdir(parents=True)
    (folder / "mal-anime-17k.csv").write_text(
        "anime_id,Name,Score,Genres,Type,Episodes,Members\n"
        '1,Cowboy Bebop,8.78,"Action, Sci-Fi",TV,26,1251960\n'
        "5,Cowboy Bebop: Tengoku no Tobira,8.39,Action,Movie,1,273145\n",
        encoding="utf-8",
    )
    (folder / "id-map-mal-anilist.json").write_text(json.dumps([{"mal_id": 1, "anilist_id": 1}]))
    bangumi = {
        "items": [{"begin": "1998-04-02T15:00:00.000Z", "sites": [{"site": "mal", "id": "1"}]}]
    }
    with gzip.open(folder / "bangumi-data.json.gz", "wt", encoding="utf-8") as f:
        json.dump(bangumi, f)


def test_default_offline_folder_follows_animerec_shared_data(tmp_path: Path) -> None:
    # Import-time default, so a fresh interpreter: the variable is read the way a shell sets it.
    write_offline_folder(tmp_path / "shared" / "catalog")
    out = tmp_path / "catalog.json.gz"
    env = {**os.environ, "ANIMEREC_SHARED_DATA": str(tmp_path / "shared")}
    done = subprocess.run(
        [sys.executable, "-m", "training", "catalog", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    catalog = load_catalog(out)
    assert [item.mal_id for item in catalog.items] == [1, 5]
    assert catalog.by_mal_id(1).anilist_id == 1  # type: ignore[union-attr]


def test_default_offline_folder_without_the_variable_is_beside_the_repository() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANIMEREC_SHARED_DATA"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from training.catalog_build import DEFAULT_OFFLINE_DIR as d; print(d)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()) == ROOT.parent / "shared" / "data" / "catalog"


# ----- live, against a fake AniList ---------------------------------------------------------


def medium(anilist_id: int, mal_id: int | None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": anilist_id,
        "idMal": mal_id,
        "title": {"romaji": f"Title {anilist_id}", "english": None},
        "format": "TV",
        "episodes": 12,
        "duration": 24,
        "season": "SPRING",
        "seasonYear": 2015,
        "status": "FINISHED",
        "startDate": {"year": 2015, "month": 4, "day": None},
        "endDate": {"year": None, "month": None, "day": None},
        "genres": ["Action"],
        "tags": [],
        "coverImage": {"medium": f"https://img.example/{anilist_id}.jpg"},
        "popularity": 1000 + anilist_id,
        "averageScore": 75,
        "isAdult": False,
        "relations": {"edges": []},
    }
    base.update(extra)
    return base


def edge(kind: str, anilist_id: int, mal_id: int | None, media_type: str = "ANIME") -> dict:
    return {"relationType": kind, "node": {"id": anilist_id, "idMal": mal_id, "type": media_type}}


FAKE_MEDIA = [
    medium(
        101,
        11,
        title={"romaji": "Show", "english": "The Show"},
        relations={
            "edges": [
                edge("SEQUEL", 102, 12),
                edge("ADAPTATION", 900, 11, "MANGA"),  # manga id 11: must not count
                edge("SIDE_STORY", 150, None),  # AniList-only special
            ]
        },
        tags=[
            {"name": "Time Travel", "rank": 90, "isMediaSpoiler": False},
            {"name": "Twist Ending", "rank": 95, "isMediaSpoiler": True},
            {"name": "Minor", "rank": 20, "isMediaSpoiler": False},
        ],
    ),
    medium(102, 12, relations={"edges": [edge("PREQUEL", 101, 11)]}),
    medium(103, 30, format="MOVIE", status="RELEASING", isAdult=True, averageScore=None),
    medium(150, None, relations={"edges": [edge("PARENT", 101, 11), edge("SEQUEL", 151, 40)]}),
    medium(151, 40, relations={"edges": [edge("SPIN_OFF", 103, 30)]}),
    medium(152, 41, relations={"edges": [edge("ALTERNATIVE", 103, None)]}),
    medium(153, 50, format="TV_SHORT"),
    medium(154, 51),
]
FAKE_PAGE_SIZE = 3  # the fake ignores perPage: the client must follow hasNextPage, not a count


class FakeAniList:
    def __init__(self, fail_from_page: int | None = None) -> None:
        self.fail_from_page = fail_from_page
        self.pages_requested: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and str(request.url) == ANILIST_URL
        body = json.loads(request.content)
        assert "Page(page: $page, perPage: $perPage)" in body["query"]
        page = body["variables"]["page"]
        assert body["variables"]["perPage"] == 50
        self.pages_requested.append(page)
        if self.fail_from_page is not None and page >= self.fail_from_page:
            raise httpx.ConnectError("connection refused", request=request)
        start = (page - 1) * FAKE_PAGE_SIZE
        chunk = FAKE_MEDIA[start : start + FAKE_PAGE_SIZE]
        has_next = start + FAKE_PAGE_SIZE < len(FAKE_MEDIA)
        return httpx.Response(
            200,
            json={"data": {"Page": {"pageInfo": {"hasNextPage": has_next}, "media": chunk}}},
            headers={"X-RateLimit-Remaining": "80"},
        )


FAST = SourceSettings(
    anilist=ServiceLimits(requests_per_minute=1e9, max_retries=1, backoff_base_s=0.0)
)


async def no_sleep(_seconds: float) -> None:
    return None


async def live(fake: Any, state: Path) -> Catalog:
    async with make_http_client(FAST, transport=httpx.MockTransport(fake)) as http:
        return await build_live(http, FAST, state, sleep=no_sleep, progress=False)


async def test_live_build_maps_media_to_catalogue_items(tmp_path: Path) -> None:
    fake = FakeAniList()
    catalog = await live(fake, tmp_path / "state.jsonl")
    assert fake.pages_requested == [1, 2, 3]
    assert [item.mal_id for item in catalog.items] == [11, 12, 30, 40, 41, 50, 51]
    assert catalog.info["left_out_without_mal_id"] == 1
    assert catalog.info["franchise_method"] == "relations"
    show = catalog.by_mal_id(11)
    assert show is not None
    assert show.title == "Show" and show.title_english == "The Show"
    assert show.anilist_id == 101
    assert show.relations == (("sequel", 12),)  # manga and unmapped nodes dropped
    assert show.tags == ("Time Travel",)  # spoiler and low-rank tags dropped
    assert show.episode_minutes == 24
    assert show.picture_url == "https://img.example/101.jpg"
    assert show.mean_score == pytest.approx(7.5)
    assert (show.season, show.season_year) == ("spring", 2015)
    assert show.start_date == PartialDate(2015, 4)
    movie = catalog.by_mal_id(30)
    assert movie is not None
    assert (movie.media_type, movie.airing_status, movie.adult) == ("movie", "airing", True)
    assert movie.mean_score is None
    short = catalog.by_mal_id(50)
    assert short is not None and short.media_type == "tv"
    alt = catalog.by_mal_id(41)
    assert alt is not None and alt.relations == (("alternative_version", 30),)


async def test_live_franchises_follow_relations(tmp_path: Path) -> None:
    catalog = await live(FakeAniList(), tmp_path / "state.jsonl")
    franchise = {item.mal_id: item.franchise_id for item in catalog.items}
    # 11-12 sequels; 40 joined through the AniList-only special 150; 30 is a spin-off of 40, and
    # 41 an alternative version of 30: spin-offs belong to their parent's franchise
    assert franchise[11] == franchise[12] == franchise[40] == franchise[30] == franchise[41] == 11
    assert franchise[50] == 50 and franchise[51] == 51


def test_live_spin_offs_of_two_franchises_and_other_relations_join_nothing() -> None:
    def m(anilist_id: int, mal_id: int, *edges: dict[str, Any]) -> dict[str, Any]:
        return medium(anilist_id, mal_id, relations={"edges": list(edges)})

    media = [
        m(1, 1, edge("SEQUEL", 2, 2), edge("SPIN_OFF", 5, 5), edge("OTHER", 7, 7)),
        m(2, 2, edge("PREQUEL", 1, 1)),
        m(3, 3, edge("SPIN_OFF", 5, 5), edge("SIDE_STORY", 6, 6)),
        # a crossover: spin-off of two franchises (AniList answers SPIN_OFF with PARENT)
        m(5, 5, edge("PARENT", 1, 1), edge("PARENT", 3, 3)),
        m(6, 6, edge("PARENT", 3, 3)),  # an ordinary side story of 3
        m(7, 7, edge("PARENT", 1, 1)),  # AniList's answer to OTHER is PARENT too
    ]
    catalog = catalog_from_media(media, {})
    franchise = {item.mal_id: item.franchise_id for item in catalog.items}
    assert franchise == {1: 1, 2: 1, 3: 3, 5: 5, 6: 3, 7: 7}
    assert ("spin_off", 5) in catalog.by_mal_id(1).relations  # type: ignore[union-attr]
    assert ("other", 7) in catalog.by_mal_id(1).relations  # type: ignore[union-attr]


def test_live_prequels_reach_through_media_myanimelist_lacks() -> None:
    media = [
        medium(1, 10, relations={"edges": [edge("SEQUEL", 2, None)]}),
        # an AniList-only special between two seasons, and an unmapped one after it
        medium(2, None, relations={"edges": [edge("PREQUEL", 1, 10), edge("SEQUEL", 3, None)]}),
        medium(3, None, relations={"edges": [edge("PREQUEL", 2, None), edge("SEQUEL", 4, 11)]}),
        medium(4, 11, relations={"edges": [edge("PREQUEL", 3, None)]}),
    ]
    catalog = catalog_from_media(media, {})
    assert catalog.by_mal_id(11).relations == (("prequel", 10),)  # type: ignore[union-attr]
    assert catalog.by_mal_id(10).relations == (("sequel", 11),)  # type: ignore[union-attr]
    assert catalog.by_mal_id(10).franchise_id == catalog.by_mal_id(11).franchise_id == 10  # type: ignore[union-attr]


async def test_interrupted_live_build_resumes_with_only_the_remaining_pages(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.jsonl"
    failing = FakeAniList(fail_from_page=3)
    with pytest.raises(ServiceUnavailable):
        await live(failing, state)
    assert failing.pages_requested == [1, 2, 3, 3]  # page 3 tried, retried once, given up
    assert [p["page"] for p in PageStore(state).read()] == [1, 2]

    healthy = FakeAniList()
    resumed = await live(healthy, state)
    assert healthy.pages_requested == [3]

    fresh = await live(FakeAniList(), tmp_path / "fresh.jsonl")
    assert resumed.items == fresh.items


async def test_torn_last_line_refetches_that_page(tmp_path: Path) -> None:
    state = tmp_path / "state.jsonl"
    await live(FakeAniList(), state)
    lines = state.read_text().splitlines(keepends=True)
    state.write_text("".join(lines[:1]) + lines[1][: len(lines[1]) // 2])  # crash mid-write
    fake = FakeAniList()
    catalog = await live(fake, state)
    assert fake.pages_requested == [2, 3]
    assert len(catalog) == 7
    assert [p["page"] for p in PageStore(state).read()] == [1, 2, 3]


async def test_graphql_errors_in_a_200_answer_are_refused(tmp_path: Path) -> None:
    def erroring(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"data": None, "errors": [{"message": "Invalid token", "status": 400}]}
        )

    with pytest.raises(CatalogError, match="Invalid token"):
        await live(erroring, tmp_path / "state.jsonl")
    assert PageStore(tmp_path / "state.jsonl").read() == []


async def test_state_from_another_build_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state.jsonl"
    state.write_text(json.dumps({"version": 1, "page": 7, "has_next": True, "media": []}) + "\n")
    with pytest.raises(CatalogError, match="does not continue this build"):
        await live(FakeAniList(), state)


@pytest.fixture
def fast_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[sources.anilist]\nrequests_per_minute = 1000000\nmax_retries = 0\nbackoff_base_s = 0.0\n"
    )
    monkeypatch.setenv("ANIMEREC_CONFIG", str(config))


def route_http_to(monkeypatch: pytest.MonkeyPatch, fake: FakeAniList) -> None:
    import training.catalog_live

    def with_fake(settings: SourceSettings, **_kwargs: object) -> httpx.AsyncClient:
        return make_http_client(settings, transport=httpx.MockTransport(fake))

    monkeypatch.setattr(training.catalog_live, "make_http_client", with_fake)


def test_live_cli_resumes_then_saves_and_clears_its_state(
    fast_config: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out" / "catalog.json.gz"
    state = tmp_path / "out" / "catalog.live-pages.jsonl"

    route_http_to(monkeypatch, FakeAniList(fail_from_page=2))
    assert run_cli(["--live", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "run the same command again to resume" in err and str(state) in err
    assert state.exists() and not out.exists()

    healthy = FakeAniList()
    route_http_to(monkeypatch, healthy)
    assert run_cli(["--live", "--out", str(out)]) == 0
    assert healthy.pages_requested == [2, 3]
    assert len(load_catalog(out)) == 7
    assert load_catalog(out).info["franchise_method"] == "relations"
    assert not state.exists()
