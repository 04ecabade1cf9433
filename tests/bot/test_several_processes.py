"""Several bot processes on one store (SQLite file or PostgreSQL database): each runtime here is
what one process builds (`open_runtime`), with its own connections, HTTP client and limiters.

A follow-up (/more, /seen N, a button, the Weekly button) is answered by a process that did not
make the reply; the outside services' request budgets hold for all processes together.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from bot.app import Runtime, open_runtime
from bot.limits import SharedBudget
from bot.parsing import button_payload_command
from bot.settings import DATABASE_URL_ENV, StorageSection
from bot.storage import Storage, open_storage
from inference.config import ServiceLimits, SourceSettings
from inference.engine import Engine
from inference.http import make_http_client
from inference.sources.fetch import ListSources
from tests.bot.conftest import (
    MAL_CLIENT_ID,
    Services,
    chat_user,
    fast_sources,
    make_settings,
    user_rows,
)
from tests.inference.fakes import FakeMal


@contextlib.asynccontextmanager
async def processes(
    n: int, storage: StorageSection, tmp_path: Path, engine: Engine, services: Services
) -> AsyncIterator[list[Runtime]]:
    settings = dataclasses.replace(make_settings(tmp_path), storage=storage)
    async with contextlib.AsyncExitStack() as stack:
        runtimes = [
            await stack.enter_async_context(
                open_runtime(
                    settings,
                    engine,
                    sources_settings=fast_sources(),
                    mal_client_id=MAL_CLIENT_ID,
                    transport=services.transport,
                )
            )
            for _ in range(n)
        ]
        yield runtimes


async def test_follow_ups_are_answered_by_another_process(
    storage_section: StorageSection, tmp_path: Path, engine: Engine, services: Services
) -> None:
    user = chat_user(5)
    async with processes(2, storage_section, tmp_path, engine, services) as (one, other):
        first = await one.service.handle_line(user, "/recommend malfan --count 3 --genre Drama")
        assert not first.error and len(first.cards) == 3, first.lines
        first_ids = {c.mal_id for c in first.cards}

        more = await other.service.handle_line(user, "/more")
        assert not more.error and more.cards, more.lines
        assert not first_ids & {c.mal_id for c in more.cards}  # what was shown stays shown
        assert all("Drama" in c.genres for c in more.cards)  # and the options carried over

        # "/seen 1" refers to the reply the other process made last.
        seen = await one.service.handle_line(user, "/seen 1")
        assert not seen.error and more.cards[0].title in seen.lines[0]
        # A button press (its payload, as Telegram and Discord deliver it) on the first process.
        press = button_payload_command(f"not_interested:{more.cards[1].mal_id}")
        assert press is not None
        assert not (await one.service.execute(user, press)).error
        assert await other.storage.feedback("telegram", "5") == {
            more.cards[0].mal_id: "seen",
            more.cards[1].mal_id: "not_interested",
        }
        more_button = button_payload_command("more")
        assert more_button is not None
        again = await one.service.execute(user, more_button)
        assert not again.error and again.cards
        shown = first_ids | {c.mal_id for c in more.cards}
        assert not shown & {c.mal_id for c in again.cards}

        # The Weekly button links the list the session came from, in whichever process.
        weekly = await other.service.handle_line(user, "/subscribe")
        assert not weekly.error and "Linked malfan" in weekly.lines[0]
        # The list was fetched once: the cache and the sessions are shared.
        assert sum(1 for r in services.requests if r.url.host != "graphql.anilist.co") == 1


async def test_a_follow_up_without_a_stored_session_still_asks_for_recommendations(
    storage_section: StorageSection, tmp_path: Path, engine: Engine, services: Services
) -> None:
    async with processes(2, storage_section, tmp_path, engine, services) as (one, other):
        await one.service.handle_line(chat_user(1), "/recommend malfan")
        # Another user's session answers nobody else.
        reply = await other.service.handle_line(chat_user(2), "/more")
        assert reply.error and "/recommend" in reply.lines[0]
        # A stored state this version cannot read is ignored, not an error.
        await one.storage.save_session(
            "telegram", "1", "{not json", None, 8, max_sessions=10, max_entries=100
        )
        reply = await other.service.handle_line(chat_user(1), "/more")
        assert reply.error and "/recommend" in reply.lines[0]
        assert (await other.service.handle_line(chat_user(1), "/seen 1")).error


# ----- request budgets across processes -------------------------------------------------------

# Each request's task carries its own virtual time: it starts at T0, and a budget's sleep moves
# that task's time on instead of waiting. The fake service stamps each request with it.
T0 = 1_000_000.0
_now: contextvars.ContextVar[float] = contextvars.ContextVar("now", default=T0)


def virtual_clock() -> float:
    return _now.get()


async def virtual_sleep(seconds: float) -> None:
    _now.set(_now.get() + max(seconds, 0.0))
    await asyncio.sleep(0)


def stamped(service: FakeMal, stamps: list[float]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        stamps.append(_now.get())
        return service(request)

    return httpx.MockTransport(handle)


def most_in_any_minute(stamps: list[float]) -> int:
    ordered = sorted(stamps)
    return max(sum(1 for t in ordered if start <= t < start + 60.0 - 1e-9) for start in ordered)


async def fetch_everyone(
    budgets: Callable[[Storage], dict[str, SharedBudget] | None],
    storage_section: StorageSection,
    users: int,
) -> list[float]:
    """Two processes (stores, HTTP clients, list sources) fetch `users` lists each, at once."""
    mal = FakeMal(client_id=MAL_CLIENT_ID)
    for n in range(2 * users):
        mal.add_user(f"user{n}", user_rows())
    stamps: list[float] = []
    limits = ServiceLimits(requests_per_minute=30.0, timeout_s=5.0, max_retries=0)
    settings = SourceSettings(user_agent="animerec-tests", mal=limits, anilist=limits)
    async with contextlib.AsyncExitStack() as stack:
        sources = []
        for _ in range(2):
            store = await open_storage(storage_section)
            stack.push_async_callback(store.close)
            http = await stack.enter_async_context(
                make_http_client(settings, transport=stamped(mal, stamps))
            )
            sources.append(
                ListSources(
                    http,
                    settings,
                    mal_client_id=MAL_CLIENT_ID,
                    clock=virtual_clock,
                    sleep=virtual_sleep,
                    budgets=budgets(store),
                )
            )
        lists = await asyncio.gather(
            *(sources[n % 2].fetch_mal_list(f"user{n}") for n in range(2 * users))
        )
    assert all(len(a) == 8 for a in lists)
    return stamps


async def test_processes_together_keep_to_a_services_budget(
    storage_section: StorageSection,
) -> None:
    def shared(store: Storage) -> dict[str, SharedBudget]:
        return {"mal": SharedBudget(store, "mal", 30.0, clock=virtual_clock, sleep=virtual_sleep)}

    stamps = await fetch_everyone(shared, storage_section, users=40)
    assert len(stamps) == 80
    ordered = sorted(stamps)
    assert min(b - a for a, b in itertools.pairwise(ordered)) >= 2.0 - 1e-6
    assert most_in_any_minute(stamps) == 30
    # The same two processes each with only its own limiter send twice the budget.
    alone = await fetch_everyone(lambda _: None, storage_section, users=40)
    assert most_in_any_minute(alone) == 60


async def test_a_deferral_reaches_the_other_processes(storage: Storage) -> None:
    budgets = [
        SharedBudget(storage, "anilist", 60.0, clock=virtual_clock, sleep=virtual_sleep)
        for _ in range(2)
    ]
    await budgets[0].acquire()
    budgets[0].defer(30.0)  # the service said "wait 30 s" to the first process
    await budgets[0].settled()
    await budgets[1].acquire()  # the second one waits too
    assert virtual_clock() == pytest.approx(T0 + 30.0)


# ----- a burst across processes ---------------------------------------------------------------


@pytest.mark.slow
async def test_a_burst_spread_over_two_processes_on_postgresql_is_all_answered(
    postgres_url: str,
    tiny_bundle: Path,
    tmp_path: Path,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 users at once, each asking one process and following up on the other (real
    onnxruntime sessions on the tiny bundle)."""
    monkeypatch.setenv(DATABASE_URL_ENV, postgres_url)
    engine = Engine.from_bundle(tiny_bundle, providers="cpu")
    users = [chat_user(n) for n in range(200)]
    async with processes(2, StorageSection(url="env"), tmp_path, engine, services) as procs:
        firsts = await asyncio.gather(
            *(
                procs[n % 2].service.handle_line(u, "/recommend malfan --count 3")
                for n, u in enumerate(users)
            )
        )
        assert all(not r.error and len(r.cards) == 3 for r in firsts), [
            r.lines for r in firsts if r.error
        ][:3]
        mores = await asyncio.gather(
            *(procs[(n + 1) % 2].service.handle_line(u, "/more") for n, u in enumerate(users))
        )
        assert all(not r.error and r.cards for r in mores), [r.lines for r in mores if r.error][:3]
        for first, more in zip(firsts, mores, strict=True):
            assert not {c.mal_id for c in first.cards} & {c.mal_id for c in more.cards}
        assert await procs[0].service.kept_session_entries() == 200 * 8
