"""A public MyAnimeList list through API v2 (docs/data-formats.md#myanimelist-api-v2).

`parse_mal_page` is the pure step (one decoded page -> entries + next page URL); `fetch_mal_list`
walks the pages over a `ServiceClient` and turns MyAnimeList's answers into typed failures.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from inference.animelist import (
    LARGEST_REAL_LIST,
    MAX_LIST_ENTRIES,
    AnimeList,
    ListEntry,
    PartialDate,
    Status,
    unix_time,
)
from inference.config import MAL_CLIENT_ID_ENV
from inference.errors import (
    ConfigError,
    ListTooLarge,
    PrivateList,
    ServiceUnavailable,
    UserNotFound,
)
from inference.http import ServiceClient, read_json

log = logging.getLogger(__name__)

MAL_API_HOST = "api.myanimelist.net"
MAL_LIST_FIELDS = (
    "list_status{status,score,num_episodes_watched,is_rewatching,updated_at,start_date,finish_date},"
    "num_episodes,media_type,status,genres,mean,start_season"
)
MAL_PAGE_SIZE = 1000
# Far beyond any real list (the largest are ~20k entries): a guard against a paging loop.
MAL_MAX_PAGES = 100

_STATUSES = {status.value: status for status in Status}


def mal_list_url(username: str) -> httpx.URL:
    """The first page's URL; the name is one escaped path segment, never pasted raw."""
    return httpx.URL(
        f"https://{MAL_API_HOST}/v2/users/{quote(username, safe='')}/animelist",
        params={
            "fields": MAL_LIST_FIELDS,
            "limit": MAL_PAGE_SIZE,
            "nsfw": "true",
        },
    )


def _unreadable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "MyAnimeList sent a list we could not read; please try again later.", service="mal"
    )


def _unix_seconds(text: Any) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # 9999-12-31T23:59:59-05:00 is past what a UTC datetime can show: unknown, like 1969.
    return unix_time(int(moment.timestamp()))


def _int(value: Any, default: int = 0) -> int:
    # bool is an int subclass; a true/false where a count belongs is noise, not 1/0.
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def parse_mal_entry(item: Any) -> ListEntry | None:
    """One `data` row, or None when it lacks an id or a known status."""
    if not isinstance(item, dict):
        return None
    node = item.get("node")
    status_block = item.get("list_status")
    if not isinstance(node, dict) or not isinstance(status_block, dict):
        return None
    mal_id = _int(node.get("id"))
    status_text = status_block.get("status")
    status = _STATUSES.get(status_text) if isinstance(status_text, str) else None
    if mal_id <= 0 or status is None:
        return None
    score = _int(status_block.get("score"))
    title = node.get("title")
    return ListEntry(
        mal_id=mal_id,
        status=status,
        rewatching=status_block.get("is_rewatching") is True,
        score=score if 0 < score <= 10 else None,
        episodes_watched=max(0, _int(status_block.get("num_episodes_watched"))),
        updated_at=_unix_seconds(status_block.get("updated_at")),
        started=PartialDate.parse(_str_or_none(status_block.get("start_date"))),
        finished=PartialDate.parse(_str_or_none(status_block.get("finish_date"))),
        title=title if isinstance(title, str) else None,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_mal_page(payload: Any) -> tuple[list[ListEntry], str | None]:
    """Entries of one decoded page and the next page's URL (None on the last page).

    Rows without an id or a known status are skipped (logged); a page that is not the documented
    shape at all is ServiceUnavailable.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise _unreadable()
    rows = payload["data"]
    entries = [entry for entry in map(parse_mal_entry, rows) if entry is not None]
    if len(entries) < len(rows):
        log.warning("mal: skipped %d unreadable list rows", len(rows) - len(entries))
    paging = payload.get("paging")
    next_url = paging.get("next") if isinstance(paging, dict) else None
    if next_url is not None and not isinstance(next_url, str):
        raise _unreadable()
    return entries, next_url or None


class ForbiddenTracker:
    """Tells a private list from throttling: MyAnimeList answers 403 to both.

    A 403 for one user is a private list; 403s for several different users within a short window,
    with no success in between, mean MyAnimeList is throttling us (docs/data-formats.md#myanimelist-api-v2).
    """

    def __init__(
        self,
        *,
        distinct_users: int = 3,
        window_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.distinct_users = distinct_users
        self.window_s = window_s
        self._clock = clock
        self._recent: deque[tuple[float, str]] = deque()

    def record(self, username: str) -> bool:
        """Note a 403 for `username`; True when the recent 403s look like throttling."""
        now = self._clock()
        while self._recent and now - self._recent[0][0] > self.window_s:
            self._recent.popleft()
        self._recent.append((now, username.lower()))
        return len({name for _, name in self._recent}) >= self.distinct_users

    def clear(self) -> None:
        """A list came through: whatever throttled us is over."""
        self._recent.clear()


def _is_next_page_url(url: str) -> bool:
    # The client id header goes wherever paging.next points: only ever to MyAnimeList's API.
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme == "https" and parsed.host == MAL_API_HOST


async def fetch_mal_list(
    service: ServiceClient,
    username: str,
    *,
    client_id: str,
    forbidden: ForbiddenTracker,
    max_entries: int = MAX_LIST_ENTRIES,
) -> AnimeList:
    """The whole list of an already validated `username`, every page followed.

    A list of more than `max_entries` is ListTooLarge, raised as soon as the pages read so far
    pass the cap: the rest is never fetched.
    """
    headers = {"X-MAL-CLIENT-ID": client_id, "Accept": "application/json"}
    entries: list[ListEntry] = []
    seen: set[int] = set()
    url: httpx.URL | str | None = mal_list_url(username)
    visited: set[str] = set()

    def throttled(response: httpx.Response) -> bool:
        return response.status_code == 403 and forbidden.record(username)

    pages = 0
    while url is not None:
        pages += 1
        if pages > MAL_MAX_PAGES or str(url) in visited:
            log.error("mal: paging did not end after %d pages", pages - 1)
            raise _unreadable()
        visited.add(str(url))
        response = await service.send(
            httpx.Request("GET", url, headers=headers), retry_on=throttled
        )
        _raise_for_status(response, username)
        page_entries, next_url = parse_mal_page(read_json(response, "mal"))
        forbidden.clear()
        # A list edited while we page can shift a row onto the next page too.
        for entry in page_entries:
            if entry.mal_id not in seen:
                seen.add(entry.mal_id)
                entries.append(entry)
        if len(entries) > max_entries:
            raise ListTooLarge(
                f"MyAnimeList user '{username}' has more than {max_entries:,} entries on their "
                f"list, more than can be read here (the largest real lists have about "
                f"{LARGEST_REAL_LIST:,}).",
                service="mal",
            )
        if next_url is not None and not _is_next_page_url(next_url):
            log.error("mal: refusing a paging.next outside %s", MAL_API_HOST)
            raise _unreadable()
        url = next_url
    return AnimeList(source="mal", username=username, entries=entries)


def _raise_for_status(response: httpx.Response, username: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 401:
        # Never echo the id itself: it is a secret.
        raise ConfigError(
            f"MyAnimeList rejected the client id in {MAL_CLIENT_ID_ENV}; "
            "check that it is a valid MyAnimeList API client id."
        )
    if status == 403:
        raise PrivateList(f"MyAnimeList user '{username}' has a private list.", service="mal")
    if status == 404:
        raise UserNotFound(f"MyAnimeList has no user named '{username}'.", service="mal")
    log.error("mal: unexpected HTTP %d for a list request", status)
    raise ServiceUnavailable(
        "MyAnimeList refused our request; please try again later.", service="mal"
    )
