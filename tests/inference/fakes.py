"""Fakes at the network edge: virtual time, and MyAnimeList / AniList services over MockTransport.

The services answer in the documented shapes (DESIGN §2): MyAnimeList pages by offset/limit with
`paging.next` URLs, AniList answers `MediaListCollection` in chunks with `hasNextChunk`. Tests (and
later bot tests) script failures per request with `fail_next`.
"""

from __future__ import annotations

import asyncio
import json
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
