from __future__ import annotations

import asyncio
import email.utils
import random
import time

import httpx
import pytest

from inference.config import ServiceLimits, SourceSettings
from inference.errors import RateLimited, ServiceUnavailable
from inference.http import RateLimiter, ServiceClient, make_http_client, parse_retry_after
from tests.inference.fakes import FakeClock, RecordingTransport, html_response, json_response

URL = "https://api.example.test/thing"
LIMITS = ServiceLimits(
    requests_per_minute=60, timeout_s=5.0, max_retries=3, backoff_base_s=1.0, backoff_max_s=8.0
)


def ok(_: httpx.Request) -> httpx.Response:
    return json_response(200, {"ok": True})


def make_service(
    recorder: RecordingTransport, clock: FakeClock, limits: ServiceLimits = LIMITS
) -> ServiceClient:
    http = httpx.AsyncClient(transport=recorder.transport)
    limiter = RateLimiter(limits.requests_per_minute, clock=clock, sleep=clock.sleep)
    return ServiceClient(
        "mal", http, limits, limiter=limiter, sleep=clock.sleep, rng=random.Random(7)
    )


# --- RateLimiter -------------------------------------------------------------------------------


async def test_concurrent_acquires_are_spaced_at_the_configured_rate() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(120, clock=clock, sleep=clock.sleep)  # one slot every 0.5 s
    passed_at: list[float] = []

    async def caller() -> None:
        await limiter.acquire()
        passed_at.append(clock.now)

    await asyncio.gather(*(caller() for _ in range(6)))
    assert sorted(passed_at) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert sorted(clock.sleeps) == [0.5, 1.0, 1.5, 2.0, 2.5]


async def test_limiter_does_not_wait_once_the_interval_has_passed() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    clock.now += 5.0
    await limiter.acquire()
    assert clock.sleeps == []


async def test_defer_holds_back_the_next_request() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    limiter.defer(30.0)
    await limiter.acquire()
    assert clock.sleeps == [30.0]


def test_limiter_refuses_a_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


# --- Retry-After ---------------------------------------------------------------------------------


def test_retry_after_in_seconds_and_as_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 42, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(42.0)
    # A date in the past means "now", not a negative wait.
    assert parse_retry_after(email.utils.formatdate(now - 10, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- ServiceClient -------------------------------------------------------------------------------


async def test_429_with_retry_after_is_honoured_then_succeeds() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(ok)
    recorder.fail_next(json_response(429, {}, {"Retry-After": "7"}))
    service = make_service(recorder, clock)
    response = await service.send(httpx.Request("GET", URL))
    assert response.status_code == 200
    assert len(recorder.requests) == 2
    assert clock.sleeps == [7.0]


async def test_429_with_retry_after_as_http_date() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(ok)
    date = email.utils.formatdate(time.time() + 5, usegmt=True)
    recorder.fail_next(json_response(429, {}, {"Retry-After": date}))
    service = make_service(recorder, clock)
    assert (await service.send(httpx.Request("GET", URL))).status_code == 200
    assert len(clock.sleeps) == 1 and 3.0 <= clock.sleeps[0] <= 5.0


async def test_retry_after_beyond_our_patience_gives_up_at_once() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(ok)
    recorder.fail_next(json_response(429, {}, {"Retry-After": "3600"}))
    service = make_service(recorder, clock)
    with pytest.raises(RateLimited) as caught:
        await service.send(httpx.Request("GET", URL))
    assert caught.value.retry_after == 3600.0
    assert len(recorder.requests) == 1
    assert clock.sleeps == []


async def test_throttling_exhausted_raises_rate_limited() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(lambda _: json_response(429, {}))
    service = make_service(recorder, clock)
    with pytest.raises(RateLimited) as caught:
        await service.send(httpx.Request("GET", URL))
    assert len(recorder.requests) == LIMITS.max_retries + 1
    assert "MyAnimeList" in str(caught.value)
    assert caught.value.service == "mal"


async def test_5xx_then_success() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(ok)
    recorder.fail_next(html_response(502), json_response(503, {}))
    service = make_service(recorder, clock)
    response = await service.send(httpx.Request("GET", URL))
    assert response.json() == {"ok": True}
    assert len(recorder.requests) == 3


async def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    clock = FakeClock()
    limits = ServiceLimits(
        requests_per_minute=6000, timeout_s=5, max_retries=6, backoff_base_s=1.0, backoff_max_s=8.0
    )
    recorder = RecordingTransport(lambda _: html_response(500))
    service = make_service(recorder, clock, limits)
    with pytest.raises(ServiceUnavailable) as caught:
        await service.send(httpx.Request("GET", URL))
    assert len(recorder.requests) == 7
    caps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert len(clock.sleeps) == len(caps)
    for slept, cap in zip(clock.sleeps, caps, strict=True):
        assert cap / 2 <= slept <= cap
    assert "not answering" in str(caught.value)


async def test_timeout_then_success() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(ok)
    recorder.fail_next(httpx.ReadTimeout("slow"))
    service = make_service(recorder, clock)
    assert (await service.send(httpx.Request("GET", URL))).status_code == 200
    assert len(recorder.requests) == 2


async def test_timeouts_exhausted_raise_service_unavailable() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(ok)
    recorder.fail_next(*(httpx.ReadTimeout("slow") for _ in range(LIMITS.max_retries + 1)))
    service = make_service(recorder, clock)
    with pytest.raises(ServiceUnavailable):
        await service.send(httpx.Request("GET", URL))
    assert len(recorder.requests) == LIMITS.max_retries + 1


async def test_transport_errors_exhausted_raise_service_unavailable() -> None:
    clock = FakeClock()

    def refuse(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    recorder = RecordingTransport(refuse)
    service = make_service(recorder, clock)
    with pytest.raises(ServiceUnavailable):
        await service.send(httpx.Request("GET", URL))
    assert len(recorder.requests) == LIMITS.max_retries + 1


async def test_the_timeout_setting_reaches_the_request_and_bounds_a_hung_answer() -> None:
    seen: list[dict[str, float]] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        await asyncio.sleep(10)
        return json_response(200, {})

    limits = ServiceLimits(requests_per_minute=6000, timeout_s=0.01, max_retries=0)
    http = httpx.AsyncClient(transport=httpx.MockTransport(hang))
    service = ServiceClient("anilist", http, limits)
    with pytest.raises(ServiceUnavailable) as caught:
        await service.send(httpx.Request("GET", URL))
    assert seen[0]["read"] == 0.01
    assert "AniList" in str(caught.value)


async def test_client_errors_are_returned_without_retry() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(lambda _: json_response(404, {"error": "not_found"}))
    service = make_service(recorder, clock)
    response = await service.send(httpx.Request("GET", URL))
    assert response.status_code == 404
    assert len(recorder.requests) == 1


async def test_retry_on_marks_more_responses_as_throttling() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(lambda _: json_response(403, {"error": "forbidden"}))
    service = make_service(recorder, clock)
    with pytest.raises(RateLimited):
        await service.send(
            httpx.Request("GET", URL), retry_on=lambda response: response.status_code == 403
        )
    assert len(recorder.requests) == LIMITS.max_retries + 1


async def test_ratelimit_remaining_zero_holds_back_the_next_request() -> None:
    clock = FakeClock()
    recorder = RecordingTransport(ok)
    recorder.fail_next(json_response(200, {}, {"X-RateLimit-Remaining": "0"}))
    service = make_service(recorder, clock)
    await service.send(httpx.Request("GET", URL))
    assert clock.sleeps == []
    await service.send(httpx.Request("GET", URL))
    # Capped by backoff_max_s (8 s) rather than a full minute's window.
    assert clock.sleeps == [8.0]


async def test_shared_client_sends_user_agent_and_follows_no_redirect() -> None:
    recorder = RecordingTransport(
        lambda _: httpx.Response(302, headers={"Location": "https://elsewhere.test/"})
    )
    settings = SourceSettings(user_agent="animerec-test/1")
    async with make_http_client(settings, transport=recorder.transport) as http:
        response = await http.get(URL)
    assert response.status_code == 302
    assert len(recorder.requests) == 1
    assert recorder.requests[0].headers["User-Agent"] == "animerec-test/1"
