"""Calling outside services politely and surviving their bad days (docs/architecture.md#rate-limits-and-retries).

One `httpx.AsyncClient` is shared by the whole process; each outside service gets a `ServiceClient`
over it with its own pace (`RateLimiter`), timeout and retry policy. Failures that outlast the retries
become typed errors whose messages a chat bot can show the user as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from inference.config import ServiceLimits, SourceSettings
from inference.errors import RateLimited, ServiceUnavailable

log = logging.getLogger(__name__)

# How services are named to chat users; unknown services are shown by their key.
SERVICE_NAMES = {"mal": "MyAnimeList", "anilist": "AniList"}

# Rate-limit windows of both services are one minute; with no reset time given, wait out a window.
RATE_WINDOW_S = 60.0


def service_display_name(service: str) -> str:
    return SERVICE_NAMES.get(service, service)


class RateLimiter:
    """Spaces requests to one service evenly, across every concurrent caller.

    Each caller reserves the next free slot before it waits, so N callers arriving together leave
    at 0, 1, ..., N-1 intervals instead of stampeding when a shared wait ends.
    """

    def __init__(
        self,
        requests_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.interval_s = 60.0 / requests_per_minute
        self._clock = clock
        self._sleep = sleep
        self._next_slot = float("-inf")

    async def acquire(self) -> None:
        now = self._clock()
        # No await between reading and moving the slot: asyncio makes the reservation atomic.
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval_s
        if slot > now:
            await self._sleep(slot - now)

    def defer(self, seconds: float) -> None:
        """Let no request through for `seconds` from now (the service said it is saturated)."""
        self._next_slot = max(self._next_slot, self._clock() + seconds)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class ServiceClient:
    """One outside service: its own rate limiter, timeout and retry policy over a shared httpx.AsyncClient."""

    def __init__(
        self,
        service: str,
        http: httpx.AsyncClient,
        limits: ServiceLimits,
        *,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.service = service
        self.display_name = service_display_name(service)
        self.http = http
        self.limits = limits
        self.limiter = limiter or RateLimiter(limits.requests_per_minute, sleep=sleep)
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def send(
        self,
        request: httpx.Request,
        *,
        retry_on: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send `request`, retrying throttling, 5xx, timeouts and transport errors.

        Returns the first response that is not retryable (the caller interprets 4xx). Raises
        RateLimited when throttling (429 or a response `retry_on` marks) outlasts the retries, and
        ServiceUnavailable when 5xx answers, timeouts or transport errors do.
        """
        request.extensions["timeout"] = httpx.Timeout(self.limits.timeout_s).as_dict()
        attempts = self.limits.max_retries + 1
        for attempt in range(attempts):
            retry_after: float | None = None
            await self.limiter.acquire()
            try:
                # httpx times each phase; this bounds the whole exchange, a trickling body included.
                async with asyncio.timeout(self.limits.timeout_s):
                    response = await self.http.send(request)
            except (httpx.TimeoutException, TimeoutError) as exc:
                failure: Exception | httpx.Response = exc
                log.warning("%s: timeout (try %d/%d)", self.service, attempt + 1, attempts)
            except httpx.TransportError as exc:
                failure = exc
                log.warning(
                    "%s: %s (try %d/%d)", self.service, type(exc).__name__, attempt + 1, attempts
                )
            else:
                # Parsed once: an HTTP-date Retry-After must give one wait, not two.
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self._note_rate_headers(response, retry_after)
                throttled = response.status_code == 429 or (
                    retry_on is not None and retry_on(response)
                )
                if not throttled and response.status_code < 500:
                    return response
                failure = response
                log.warning(
                    "%s: HTTP %d (try %d/%d)",
                    self.service,
                    response.status_code,
                    attempt + 1,
                    attempts,
                )
            if attempt + 1 == attempts:
                break
            delay = self._delay(attempt, retry_after)
            if delay is None:
                break
            await self._sleep(delay)
        raise self._give_up(failure)

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds before the next try, or None when the service asked for more than we wait."""
        if retry_after is not None:
            return retry_after if retry_after <= self.limits.backoff_max_s else None
        cap = min(self.limits.backoff_max_s, self.limits.backoff_base_s * 2.0**attempt)
        # Half fixed, half random: always some pause, and concurrent retries spread out.
        return cap / 2 + self._rng.uniform(0, cap / 2)

    def _note_rate_headers(self, response: httpx.Response, retry_after: float | None) -> None:
        """Hold every caller of this service back while the service says its budget is spent."""
        if retry_after is not None and response.status_code in (429, 503):
            wait = retry_after  # the service's own word beats any guess from the window
        elif response.headers.get("X-RateLimit-Remaining", "").strip() == "0":
            wait = RATE_WINDOW_S
            reset = response.headers.get("X-RateLimit-Reset")
            if reset is not None:
                # AniList sends the unix time at which the window reopens.
                with contextlib.suppress(ValueError):
                    wait = float(reset) - time.time()
        else:
            return
        self.limiter.defer(min(max(wait, 0.0), self.limits.backoff_max_s))

    def _give_up(self, failure: Exception | httpx.Response) -> Exception:
        name = self.display_name
        if isinstance(failure, httpx.Response) and failure.status_code < 500:
            return RateLimited(
                f"{name} is receiving too many requests right now; please try again in a few minutes.",
                service=self.service,
                retry_after=parse_retry_after(failure.headers.get("Retry-After")),
            )
        if isinstance(failure, httpx.Response):
            detail = f"HTTP {failure.status_code}"
        else:
            detail = (
                "timed out"
                if isinstance(failure, TimeoutError | httpx.TimeoutException)
                else "unreachable"
            )
        log.error("%s: giving up (%s)", self.service, detail)
        return ServiceUnavailable(
            f"{name} is not answering right now; please try again later.", service=self.service
        )


def read_json(response: httpx.Response, service: str) -> Any:
    """The response body as JSON, or ServiceUnavailable when it is not (an HTML error page...)."""
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning(
            "%s: HTTP %d with a body that is not JSON (%s)",
            service,
            response.status_code,
            response.headers.get("Content-Type", "no content type"),
        )
        raise ServiceUnavailable(
            f"{service_display_name(service)} sent an answer we could not read; "
            "please try again later.",
            service=service,
        ) from None


def make_http_client(
    settings: SourceSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one shared client: our User-Agent, bounded connection pool, no redirects.

    Redirects stay off so a secret header (the MyAnimeList client id) never follows a response
    to another host.
    """
    return httpx.AsyncClient(
        headers={"User-Agent": settings.user_agent},
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30),
        timeout=httpx.Timeout(max(settings.mal.timeout_s, settings.anilist.timeout_s)),
        follow_redirects=False,
        transport=transport,
    )
