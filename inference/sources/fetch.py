"""Fetching a user's list by name from MyAnimeList or AniList: the one entry point callers use.

One `ListSources` per process: it holds each service's `ServiceClient` (so every concurrent user
shares one rate limiter per service) and the memory of recent MyAnimeList 403s that tells private
lists from throttling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx

from inference.animelist import MAX_LIST_ENTRIES, AnimeList
from inference.config import MAL_CLIENT_ID_ENV, SourceSettings
from inference.errors import ConfigError
from inference.http import RateLimiter, RequestBudget, ServiceClient
from inference.sources.anilist import fetch_anilist_list
from inference.sources.mal import ForbiddenTracker, fetch_mal_list
from inference.sources.usernames import validate_anilist_username, validate_mal_username


class ListSources:
    """Public anime lists by username, normalized to `AnimeList`.

    Failures are typed (`inference.errors`) with messages fit for a chat reply; a missing or
    rejected MyAnimeList client id is a ConfigError, since only the operator can fix it. A list of
    more than `max_entries` is ListTooLarge, found while paging: no more pages are fetched.
    `budgets` ("mal", "anilist") replace the in-process rate limiters, e.g. with ones that
    several processes share.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: SourceSettings,
        *,
        mal_client_id: str | None = None,
        anilist_to_mal: Mapping[int, int] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_LIST_ENTRIES,
        budgets: Mapping[str, RequestBudget] | None = None,
    ) -> None:
        self.max_entries = max_entries
        budgets = budgets or {}
        self.mal = ServiceClient(
            "mal",
            http,
            settings.mal,
            limiter=budgets.get("mal")
            or RateLimiter(settings.mal.requests_per_minute, clock=clock, sleep=sleep),
            sleep=sleep,
        )
        self.anilist = ServiceClient(
            "anilist",
            http,
            settings.anilist,
            limiter=budgets.get("anilist")
            or RateLimiter(settings.anilist.requests_per_minute, clock=clock, sleep=sleep),
            sleep=sleep,
        )
        self._mal_client_id = mal_client_id.strip() if mal_client_id else None
        # Kept by reference: the catalogue's map is large and may be refreshed in place.
        self._anilist_to_mal: Mapping[int, int] = (
            anilist_to_mal if anilist_to_mal is not None else {}
        )
        self._mal_forbidden = ForbiddenTracker(clock=clock)

    async def fetch_mal_list(self, username: str) -> AnimeList:
        name = validate_mal_username(username)
        if not self._mal_client_id:
            raise ConfigError(
                f"MyAnimeList lists need a client id, but {MAL_CLIENT_ID_ENV} is not set "
                "in the environment"
            )
        return await fetch_mal_list(
            self.mal,
            name,
            client_id=self._mal_client_id,
            forbidden=self._mal_forbidden,
            max_entries=self.max_entries,
        )

    async def fetch_anilist_list(self, username: str) -> AnimeList:
        name = validate_anilist_username(username)
        return await fetch_anilist_list(
            self.anilist, name, self._anilist_to_mal, max_entries=self.max_entries
        )
