"""Bot test fixtures: a real engine, real SQLite (and PostgreSQL for the store's own tests),
real list sources over the fake services.

The engine is behind one fixture (`engine`): switching every bot test to the default model bundle
is the one line marked below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.app import Runtime, open_runtime
from bot.commands import CONSOLE, UserRef
from bot.settings import DATABASE_URL_ENV, BotSettings, LimitsSection, StorageSection
from bot.storage import Storage, open_storage
from inference.catalog import Catalog
from inference.config import ServiceLimits, SourceSettings
from inference.engine import Engine
from tests.conftest import DEFAULT_BUNDLE
from tests.inference.fakes import FakeAniList, FakeMal, anilist_row, mal_row
from tests.inference.small_catalogs import date, item

GENRES = ("Action", "Comedy", "Drama", "Romance", "Sci-Fi", "Slice of Life", "Fantasy", "Horror")
TYPES = ("tv", "tv", "tv", "movie", "ova", "ona")
N_ITEMS = 60
MAL_CLIENT_ID = "mal-client-id-0123456789abcdef"


def bot_catalog() -> Catalog:
    """60 titles: varied genres, types, years and popularity; franchises of one or two."""
    items = []
    for i in range(N_ITEMS):
        mal_id = 1000 + i
        items.append(
            item(
                mal_id,
                f"Show {i} <{GENRES[i % len(GENRES)]}> & co",
                anilist_id=50_000 + i,
                media_type=TYPES[i % len(TYPES)],
                genres=(GENRES[i % len(GENRES)], GENRES[(i * 3 + 1) % len(GENRES)]),
                start_date=date(f"{2000 + i % 25}-0{1 + i % 9}-01"),
                popularity=100_000 - i * 1000,
                episodes=12 + i % 13,
                franchise_id=1000 + i - (i % 2 if i < 20 else 0),
                picture_url=f"https://cdn.example/{mal_id}.jpg",
            )
        )
    return Catalog(items, info={"source": "test"})


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return bot_catalog()


@pytest.fixture(scope="session")
def engine(catalog: Catalog) -> Engine:
    # The default bundle when it is built (the one line that switches every bot test to it).
    if (DEFAULT_BUNDLE / "manifest.json").is_file():
        return Engine.from_bundle(DEFAULT_BUNDLE, providers="cpu")
    return Engine.without_model(catalog)


def fast_sources() -> SourceSettings:
    """Real clients, no waiting: no pacing, no retries (failures surface at once)."""
    limits = ServiceLimits(requests_per_minute=1e9, timeout_s=5.0, max_retries=0)
    return SourceSettings(user_agent="animerec-tests", mal=limits, anilist=limits)


def make_settings(tmp_path: Path, **limits: float) -> BotSettings:
    return BotSettings(
        storage=StorageSection(path=str(tmp_path / "bot.sqlite3")),
        limits=dataclasses.replace(LimitsSection(cooldown_s=0.0), **limits),
    )


@pytest.fixture
def settings(tmp_path: Path) -> BotSettings:
    return make_settings(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_section(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> StorageSection:
    """[storage] for each backend: a new SQLite file, or a fresh database on the test cluster
    (its URL in the environment, as in production)."""
    if request.param == "sqlite":
        return StorageSection(path=str(tmp_path / "bot.sqlite3"))
    monkeypatch.setenv(DATABASE_URL_ENV, request.getfixturevalue("postgres_url"))
    return StorageSection(url="env")


@pytest.fixture
async def storage(storage_section: StorageSection) -> AsyncIterator[Storage]:
    async with await open_storage(storage_section) as store:
        yield store


def user_rows(start: int = 0) -> list[dict[str, object]]:
    """A MyAnimeList list over the catalogue's first titles, scored."""
    return [mal_row(1000 + i, "completed", score=8 - i % 4) for i in range(start, start + 8)]


def anilist_rows(start: int = 0) -> list[dict[str, object]]:
    return [
        anilist_row(50_000 + i, 1000 + i, "COMPLETED", score=80 - i)
        for i in range(start, start + 8)
    ]


@dataclasses.dataclass
class Services:
    mal: FakeMal
    anilist: FakeAniList
    requests: list[httpx.Request]
    scripted: list[httpx.Response] = dataclasses.field(default_factory=list)

    def fail_next(self, *responses: httpx.Response) -> None:
        self.scripted.extend(responses)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.scripted:
            return self.scripted.pop(0)
        if request.url.host == "graphql.anilist.co":
            return self.anilist(request)
        return self.mal(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


@pytest.fixture
def services() -> Services:
    mal = FakeMal(client_id=MAL_CLIENT_ID)
    mal.add_user("malfan", user_rows())
    mal.add_user("secretive", user_rows(), private=True)
    anilist = FakeAniList()
    anilist.add_user("alfan", anilist_rows(4))
    anilist.add_user("hidden", anilist_rows(), private=True)
    return Services(mal, anilist, [])


@pytest.fixture
async def runtime(
    settings: BotSettings, engine: Engine, services: Services
) -> AsyncIterator[Runtime]:
    async with open_runtime(
        settings,
        engine,
        sources_settings=fast_sources(),
        mal_client_id=MAL_CLIENT_ID,
        transport=services.transport,
    ) as rt:
        yield rt


def chat_user(n: int = 1, platform: str = "telegram") -> UserRef:
    return UserRef(platform, str(n), str(n))


CONSOLE_USER = UserRef(CONSOLE, "local", "local")
