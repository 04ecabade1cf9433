"""Fakes at the network edge: virtual time, and MyAnimeList / AniList services over MockTransport.

The services answer in the documented shapes (docs/data-formats.md#user-lists): MyAnimeList pages by offset/limit with
`paging.next` URLs, AniList answers `MediaListCollection` in chunks with `hasNextChunk`. Tests (and
later bot tests) script failures per request with `fail_next`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


class FakeClock:
    """Virtual time: `sleep` records what was asked and moves the clock instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        target = self.now + seconds
        # Yield like a real sleep, so concurrent callers interleave.
        await asyncio.sleep(0)
        self.now = max(self.now, target)


Handler = Callable[[httpx.Request], httpx.Response]
# A scripted answer: a response, or an exception the transport raises (e.g. httpx.ReadTimeout).
Scripted = httpx.Response | Exception


@dataclass
class RecordingTransport:
    """A MockTransport that records every request and lets tests queue failures before `handler`."""

    handler: Handler
    requests: list[httpx.Request] = field(default_factory=list)
    scripted: list[Scripted] = field(default_factory=list)

    def fail_next(self, *answers: Scripted) -> None:
        self.scripted.extend(answers)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.scripted:
            answer = self.scripted.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return self.handler(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def html_response(status: int) -> httpx.Response:
    page = f"<html><head><title>{status}</title></head><body><h1>Server Error</h1></body></html>"
    return httpx.Response(status, content=page.encode(), headers={"Content-Type": "text/html"})


# --- MyAnimeList API v2 ----------------------------------------------------------------------------

MAL_HOST = "api.myanimelist.net"
MAL_STATUSES = ("watching", "completed", "on_hold", "dropped", "plan_to_watch")


def mal_row(
    mal_id: int,
    status: str = "completed",
    *,
    score: int = 0,
    watched: int = 12,
    rewatching: bool = False,
    updated_at: str | None = "2021-03-15T09:00:58+00:00",
    start_date: str | None = None,
    finish_date: str | None = None,
    title: str | None = None,
    picture: bool = True,
) -> dict[str, Any]:
    """One `data` row as API v2 sends it; optional fields are left out the way MyAnimeList does."""
    node: dict[str, Any] = {"id": mal_id, "title": title or f"Anime {mal_id}"}
    if picture:
        base = f"https://api-cdn.myanimelist.net/images/anime/{mal_id % 97}/{mal_id}"
        node["main_picture"] = {"medium": f"{base}.jpg", "large": f"{base}l.jpg"}
    node.update({"num_episodes": 12, "media_type": "tv", "status": "finished_airing", "mean": 7.5})
    list_status: dict[str, Any] = {
        "status": status,
        "score": score,
        "num_episodes_watched": watched,
        "is_rewatching": rewatching,
    }
    if updated_at is not None:
        list_status["updated_at"] = updated_at
    if start_date is not None:
        list_status["start_date"] = start_date
    if finish_date is not None:
        list_status["finish_date"] = finish_date
    return {"node": node, "list_status": list_status}


def many_mal_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """A big, varied list: every status, unscored rows, partial dates, rows without pictures."""
    rng = random.Random(seed)
    dates = [None, "2017", "2017-10", "2017-10-23"]
    return [
        mal_row(
            mal_id=i + 1,
            status=MAL_STATUSES[i % 5],
            score=rng.choice([0, 0, *range(1, 11)]),
            watched=rng.randrange(0, 30),
            rewatching=i % 50 == 0,
            updated_at=f"20{10 + i % 14:02d}-0{1 + i % 9}-1{i % 10}T12:34:56+00:00",
            start_date=rng.choice(dates),
            finish_date=rng.choice(dates),
            picture=i % 7 != 0,
        )
        for i in range(count)
    ]


@dataclass
class FakeMal:
    """MyAnimeList API v2's `users/{name}/animelist`, paging by offset/limit."""

    client_id: str = "test-client-id"
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    private: set[str] = field(default_factory=set)

    def add_user(self, name: str, rows: list[dict[str, Any]], *, private: bool = False) -> None:
        self.lists[name.lower()] = rows
        if private:
            self.private.add(name.lower())

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != MAL_HOST or request.method != "GET":
            return html_response(404)
        if request.headers.get("X-MAL-CLIENT-ID") != self.client_id:
            return json_response(401, {"error": "invalid_token", "message": "invalid client id"})
        parts = request.url.path.split("/")  # decoded: "", "v2", "users", name, "animelist"
        if len(parts) != 5 or parts[1:3] != ["v2", "users"] or parts[4] != "animelist":
            return json_response(404, {"error": "not_found", "message": ""})
        name = parts[3].lower()
        if name not in self.lists:
            return json_response(404, {"error": "not_found", "message": ""})
        if name in self.private:
            return json_response(403, {"error": "forbidden", "message": ""})
        limit = min(int(request.url.params.get("limit", "10")), 1000)
        offset = int(request.url.params.get("offset", "0"))
        rows = self.lists[name]
        paging: dict[str, str] = {}
        if offset + limit < len(rows):
            paging["next"] = str(request.url.copy_merge_params({"offset": offset + limit}))
        if offset > 0:
            paging["previous"] = str(
                request.url.copy_merge_params({"offset": max(0, offset - limit)})
            )
        return json_response(200, {"data": rows[offset : offset + limit], "paging": paging})


# --- AniList GraphQL ------------------------------------------------------------------------------

ANILIST_URL = "https://graphql.anilist.co"
ANILIST_STATUSES = ("CURRENT", "PLANNING", "COMPLETED", "DROPPED", "PAUSED", "REPEATING")


def fuzzy(
    year: int | None = None, month: int | None = None, day: int | None = None
) -> dict[str, Any]:
    return {"year": year, "month": month, "day": day}


def anilist_row(
    media_id: int,
    id_mal: int | None,
    status: str = "COMPLETED",
    *,
    score: float = 0,
    progress: int = 12,
    repeat: int = 0,
    updated_at: int | None = 1_600_000_000,
    started: dict[str, Any] | None = None,
    completed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One MediaList entry with the fields the list query asks for."""
    return {
        "mediaId": media_id,
        "status": status,
        "score": score,
        "progress": progress,
        "repeat": repeat,
        "updatedAt": updated_at,
        "startedAt": started or fuzzy(),
        "completedAt": completed or fuzzy(),
        "media": {"idMal": id_mal, "format": "TV", "episodes": 12},
    }


def many_anilist_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        anilist_row(
            media_id=100_000 + i,
            id_mal=i + 1,
            status=ANILIST_STATUSES[i % 6],
            score=rng.choice([0, 0, 35, 60, 75, 85, 100]),
            progress=rng.randrange(0, 30),
            updated_at=1_400_000_000 + i * 1000,
            started=rng.choice([fuzzy(), fuzzy(2017), fuzzy(2017, 10), fuzzy(2017, 10, 23)]),
            completed=rng.choice([fuzzy(), fuzzy(2018, 2, None)]),
        )
        for i in range(count)
    ]


@dataclass
class AniListUser:
    # (list name, is custom, rows): status lists, then custom lists repeating some of their rows.
    lists: list[tuple[str, bool, list[dict[str, Any]]]]
    private: bool = False


@dataclass
class FakeAniList:
    """AniList's GraphQL MediaListCollection, in chunks of perChunk entries over all lists."""

    users: dict[str, AniListUser] = field(default_factory=dict)
    per_chunk: int = 500
    rate_limit_remaining: int = 90
    queries: list[dict[str, Any]] = field(default_factory=list)

    def add_user(
        self,
        name: str,
        rows: list[dict[str, Any]],
        *,
        custom: dict[str, list[dict[str, Any]]] | None = None,
        private: bool = False,
    ) -> None:
        by_status: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_status.setdefault(row["status"], []).append(row)
        lists: list[tuple[str, bool, list[dict[str, Any]]]] = [
            (status.title(), False, group) for status, group in by_status.items()
        ]
        # AniList puts custom lists wherever the user ordered them: first here, on purpose.
        lists[:0] = [(list_name, True, group) for list_name, group in (custom or {}).items()]
        self.users[name.lower()] = AniListUser(lists, private)

    def _headers(self) -> dict[str, str]:
        self.rate_limit_remaining = max(0, self.rate_limit_remaining - 1)
        return {"X-RateLimit-Limit": "90", "X-RateLimit-Remaining": str(self.rate_limit_remaining)}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) != ANILIST_URL or request.method != "POST":
            return html_response(404)
        body = json.loads(request.content)
        self.queries.append(body)
        query, variables = body["query"], body.get("variables", {})
        if "MediaListCollection" not in query or "score(format: POINT_100)" not in query:
            return json_response(
                400, {"errors": [{"message": "unexpected query", "status": 400}], "data": None}
            )
        user = self.users.get(str(variables.get("name", "")).lower())
        if user is None:
            return json_response(
                404,
                {
                    "errors": [
                        {
                            "message": "User not found",
                            "status": 404,
                            "locations": [{"line": 2, "column": 3}],
                        }
                    ],
                    "data": {"MediaListCollection": None},
                },
                self._headers(),
            )
        if user.private:
            return json_response(
                404,
                {
                    "errors": [
                        {
                            "message": "Private User",
                            "status": 404,
                            "locations": [{"line": 2, "column": 3}],
                        }
                    ],
                    "data": {"MediaListCollection": None},
                },
                self._headers(),
            )
        chunk = int(variables.get("chunk") or 1)
        flat = [(index, row) for index, (_, _, rows) in enumerate(user.lists) for row in rows]
        part = flat[(chunk - 1) * self.per_chunk : chunk * self.per_chunk]
        lists = [
            {
                "name": name,
                "isCustomList": custom,
                "status": None if custom else rows[0]["status"],
                "entries": [row for index, row in part if index == list_index],
            }
            for list_index, (name, custom, rows) in enumerate(user.lists)
        ]
        collection = {
            "hasNextChunk": chunk * self.per_chunk < len(flat),
            "user": {"id": 1, "name": variables["name"]},
            "lists": [group for group in lists if group["entries"]],
        }
        return json_response(200, {"data": {"MediaListCollection": collection}}, self._headers())
