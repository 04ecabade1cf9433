"""Paced weekly DMs: spread over the hour, under each platform's rate, rate-limit answers retried.

The platform is faked at the sender seam the scheduler uses; it enforces its own limit with a
sliding window on the same fake clock the scheduler's pacing sleeps on, so an hour of sends takes no
real time. Storage is real SQLite.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import json
import zoneinfo
from pathlib import Path
from typing import Any

import discord
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import metrics
from bot.limits import Limits
from bot.replies import Reply
from bot.scheduler import (
    SendRateLimited,
    WeeklyDeliveries,
    due_week,
    spread_offset,
    week_slot,
)
from bot.settings import WEEKDAYS, LimitsSection
from bot.storage import Storage, Subscription

UTC = dt.UTC
# Saturday 2026-11-28, 10:00 UTC: the hour every simulated subscriber chose.
HOUR = dt.datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


class FakeClock:
    """Monotonic seconds that move only when someone sleeps (one sender task at a time)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        self.slept += max(0.0, seconds)
        await asyncio.sleep(0)

    def wall(self, start: dt.datetime) -> dt.datetime:
        return start + dt.timedelta(seconds=self.now)


class FakePlatform:
    """A chat platform's send API: at most `limit` messages in any `window_s` (sliding), else
    RetryAfter (as the adapters map it); chats in `flaky` get one RetryAfter on their first try.
    Only accepted sends are delivered."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        limit: int = 30,
        window_s: float = 1.0,
        flaky: frozenset[str] = frozenset(),
        retry_after_s: float = 2.0,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.window_s = window_s
        self.flaky = set(flaky)
        self.retry_after_s = retry_after_s
        self.delivered: collections.Counter[str] = collections.Counter()
        self.times: list[float] = []
        self.refused = 0
        self._recent: collections.deque[float] = collections.deque()

    async def send(self, chat_id: str, reply: Reply) -> None:
        now = self.clock.now
        while self._recent and self._recent[0] <= now - self.window_s:
            self._recent.popleft()
        if len(self._recent) >= self.limit:
            self.refused += 1
            raise SendRateLimited(self.window_s)
        if chat_id in self.flaky:
            self.flaky.discard(chat_id)
            self.refused += 1
            raise SendRateLimited(self.retry_after_s)
        self._recent.append(now)
        self.times.append(now)
        self.delivered[chat_id] += 1

    def peak_per_s(self) -> int:
        """The most deliveries in any one-second window."""
        peak, lo = 0, 0
        for hi, t in enumerate(self.times):
            while self.times[lo] <= t - 1.0:
                lo += 1
            peak = max(peak, hi - lo + 1)
        return peak


class CannedReplies:
    """The weekly reply seam: the same small reply for everyone (the model is not under test)."""

    async def weekly_reply(self, subscription: Subscription) -> Reply:
        return Reply.text(f"Your weekly recommendations, {subscription.user_id}")


async def subscribe_many(storage: Storage, n: int, platform: str = "telegram") -> None:
    created = (HOUR - dt.timedelta(days=8)).timestamp()
    for i in range(n):
        await storage.subscribe(platform, str(i), str(i), "saturday", 10, "UTC", now=created)


@dataclasses.dataclass
class Simulation:
    platform: FakePlatform
    runs: int
    last_send_s: float
    states: collections.Counter[str]


async def simulate_hour(
    db: Path,
    subscribers: int,
    *,
    flaky_every: int,
    spread_s: float,
    sends_per_s: float = 25.0,
    interval_s: float = 300.0,
) -> Simulation:
    """Runs every `interval_s` from the subscribers' hour until every DM has a final row, as the
    scheduler would run them (a run that overruns its interval is followed at once)."""
    clock = FakeClock()
    platform = FakePlatform(
        clock, flaky=frozenset(str(i) for i in range(0, subscribers, flaky_every))
    )
    limits = Limits(
        LimitsSection(telegram_sends_per_s=sends_per_s),
        clock=clock.monotonic,
        sleep=clock.sleep,
    )
    async with await Storage.open(db) as storage:
        await subscribe_many(storage, subscribers)
        deliveries = WeeklyDeliveries(
            storage,
            CannedReplies(),
            {"telegram": platform},
            limits,
            clock=lambda: clock.wall(HOUR),
            spread_s=spread_s,
        )
        runs = 0
        while runs == 0 or clock.now <= spread_s + interval_s:
            started = clock.now
            await deliveries.run_once()
            runs += 1
            await clock.sleep(max(0.0, started + interval_s - clock.now))
        states = collections.Counter(state for _, _, state, _ in await storage.deliveries())
    return Simulation(platform, runs, max(platform.times, default=0.0), states)


@pytest.mark.slow
async def test_five_thousand_weekly_dms_are_spread_paced_and_each_sent_once(
    tmp_path: Path,
) -> None:
    n = 5000
    sent_before = metrics.DMS_SENT.value("telegram")
    sim = await simulate_hour(tmp_path / "bot.sqlite3", n, flaky_every=97, spread_s=3600.0)
    platform = sim.platform
    # Everyone got exactly one DM: none lost, none doubled, every row final.
    assert set(platform.delivered) == {str(i) for i in range(n)}
    assert set(platform.delivered.values()) == {1}
    assert sim.states == {"sent": n}
    # The platform's limit was never hit; only the scripted RetryAfters were refused.
    assert platform.refused == len(range(0, n, 97))
    # 25/s evenly spaced: a one-second window can hold both ends of 25 intervals.
    assert platform.peak_per_s() <= 26
    # Spread over the hour, not all at :00.
    assert 3000.0 < sim.last_send_s < 3600.0 + 300.0
    assert max(collections.Counter(int(t // 300) for t in platform.times).values()) < n / 6
    assert metrics.DMS_SENT.value("telegram") - sent_before == n


async def test_a_catch_up_run_sends_at_the_platform_rate(tmp_path: Path) -> None:
    # Every DM due at once (the bot was down through the hour): paced, not burst.
    sim = await simulate_hour(
        tmp_path / "bot.sqlite3", 300, flaky_every=50, spread_s=0.0, sends_per_s=25.0
    )
    assert sim.states == {"sent": 300}
    assert set(sim.platform.delivered.values()) == {1}
    assert sim.platform.peak_per_s() <= 26
    # 300 sends at 25/s take about 12 s; the two-second waits asked for stretch it a little.
    assert 11.0 < sim.last_send_s < 12.0 + 6 * 2.0 + 1.0


async def test_too_fast_a_pace_is_held_back_by_the_platform_and_loses_nothing(
    tmp_path: Path,
) -> None:
    # Configured above the platform's 30/s: its answers slow the run down, nobody is lost.
    sim = await simulate_hour(
        tmp_path / "bot.sqlite3", 400, flaky_every=10**9, spread_s=0.0, sends_per_s=100.0
    )
    assert sim.states == {"sent": 400}
    assert set(sim.platform.delivered.values()) == {1}
    assert sim.platform.refused > 0
    assert sim.platform.peak_per_s() <= 30


class AlwaysRateLimited:
    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self.tries = 0

    async def send(self, chat_id: str, reply: Reply) -> None:
        self.tries += 1
        raise SendRateLimited(self.retry_after_s)


async def test_rate_limit_retries_are_bounded_then_the_week_is_failed(tmp_path: Path) -> None:
    clock = FakeClock()
    limits = Limits(LimitsSection(), clock=clock.monotonic, sleep=clock.sleep)
    sender = AlwaysRateLimited(7.0)
    async with await Storage.open(tmp_path / "bot.sqlite3") as storage:
        await subscribe_many(storage, 1)
        deliveries = WeeklyDeliveries(
            storage,
            CannedReplies(),
            {"telegram": sender},
            limits,
            clock=lambda: clock.wall(HOUR),
            max_rate_limit_retries=3,
        )
        failed_before = metrics.DMS_FAILED.value("telegram", "rate_limited")
        stats = await deliveries.run_once()
        assert (stats.sent, stats.failed, stats.rate_limited) == (0, 1, 4)
        assert sender.tries == 4
        assert clock.slept >= 3 * 7.0  # each wait the platform asked for was honoured
        [(_, _, state, error)] = await storage.deliveries()
        assert state == "failed" and error is not None and "rate limited 4 times" in error
        assert metrics.DMS_FAILED.value("telegram", "rate_limited") - failed_before == 1
        # A failed week is final: the next run sends nothing more.
        assert (await deliveries.run_once()).due == 0 and sender.tries == 4


async def test_other_send_errors_are_not_retried(tmp_path: Path) -> None:
    class Broken:
        tries = 0

        async def send(self, chat_id: str, reply: Reply) -> None:
            self.tries += 1
            raise ConnectionError("network down")

    clock = FakeClock()
    sender = Broken()
    async with await Storage.open(tmp_path / "bot.sqlite3") as storage:
        await subscribe_many(storage, 1)
        deliveries = WeeklyDeliveries(
            storage,
            CannedReplies(),
            {"telegram": sender},
            Limits(LimitsSection(), clock=clock.monotonic, sleep=clock.sleep),
            clock=lambda: clock.wall(HOUR),
        )
        stats = await deliveries.run_once()
        assert (stats.failed, sender.tries) == (1, 1)
        assert [(s, e) for _, _, s, e in await storage.deliveries()] == [
            ("failed", "ConnectionError")
        ]


# ----- the spread ---------------------------------------------------------------------------


def subscription(n: int, weekday: str, hour: int, tz: str) -> Subscription:
    return Subscription(n, "telegram", str(n), str(n), weekday, hour, tz, True, None, 0.0)


ZONES = ("UTC", "Asia/Tokyo", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 10**9),
    weekday=st.sampled_from(WEEKDAYS),
    hour=st.integers(0, 23),
    tz=st.sampled_from(ZONES),
    spread_s=st.floats(0.0, 7200.0),
    day=st.integers(0, 13),
)
def test_the_spread_keeps_each_dm_in_its_week_and_fixed(
    n: int, weekday: str, hour: int, tz: str, spread_s: float, day: int
) -> None:
    sub = subscription(n, weekday, hour, tz)
    now = dt.datetime(2026, 11, 23, 12, tzinfo=UTC) + dt.timedelta(days=day)
    week, scheduled = week_slot(sub, now)
    offset = spread_offset(sub, week, scheduled, spread_s)
    assert offset == spread_offset(sub, week, scheduled, spread_s)  # every run agrees
    assert 0.0 <= offset <= spread_s
    local = scheduled.astimezone(zoneinfo.ZoneInfo(tz))
    week_end = dt.datetime.combine(
        local.date() + dt.timedelta(days=7 - local.weekday()), dt.time(0), tzinfo=local.tzinfo
    )
    left = week_end.timestamp() - scheduled.timestamp()
    # At least half of what is left of the week remains for the runs to find it.
    assert scheduled.timestamp() + offset <= week_end.timestamp() - left / 2 + 1e-6
    # Due exactly from its moment on, and in the same week.
    # (A microsecond later: the datetime rounds the float to whole microseconds.)
    due_at = dt.datetime.fromtimestamp(scheduled.timestamp() + offset, UTC) + dt.timedelta(
        microseconds=1
    )
    assert due_week(sub, due_at, spread_s=spread_s) == week
    if offset > 0.001:
        assert due_week(sub, due_at - dt.timedelta(milliseconds=2), spread_s=spread_s) is None


def test_the_spread_fills_the_window_evenly() -> None:
    week, scheduled = week_slot(subscription(1, "saturday", 10, "UTC"), HOUR)
    offsets = [
        spread_offset(subscription(i, "saturday", 10, "UTC"), week, scheduled, 3600.0)
        for i in range(6000)
    ]
    per_ten_minutes = collections.Counter(int(o // 600) for o in offsets)
    assert sorted(per_ten_minutes) == [0, 1, 2, 3, 4, 5]
    assert all(800 < c < 1200 for c in per_ten_minutes.values())


# ----- the adapters map their platform's rate-limit errors -------------------------------------


async def test_telegram_retry_after_becomes_send_rate_limited(runtime: Any) -> None:
    from bot.telegram_app import TelegramFrontEnd
    from tests.bot.test_telegram import TOKEN, FakeBotApi

    class FloodedApi(FakeBotApi):
        async def do_request(self, url: str, method: str, request_data: Any = None, **kw: Any):  # type: ignore[override]
            if url.endswith("/sendMessage"):
                body = {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 3",
                    "parameters": {"retry_after": 3},
                }
                return 429, json.dumps(body).encode()
            return await super().do_request(url, method, request_data, **kw)

    front = TelegramFrontEnd(runtime.service, TOKEN, runtime.settings, request=FloodedApi())
    await front.app.initialize()
    try:
        with pytest.raises(SendRateLimited) as caught:
            await front.send("77", Reply.text("hi"))
        assert caught.value.retry_after == 3.0
    finally:
        await front.app.shutdown()


async def test_a_telegram_dm_refused_part_way_resumes_without_repeating(runtime: Any) -> None:
    from bot.telegram_app import (
        RATE_LIMIT_RETRIES,
        TelegramFrontEnd,
        reply_blocks,
        split_messages,
    )
    from tests.bot.test_telegram import TOKEN, FakeBotApi

    class FloodedApi(FakeBotApi):
        """Refuses sendMessage while `refusals` lasts, once `allowed` messages went out."""

        allowed, refusals = 1, 0

        async def do_request(self, url: str, method: str, request_data: Any = None, **kw: Any):  # type: ignore[override]
            if url.endswith("/sendMessage") and len(self.sent()) >= self.allowed and self.refusals:
                self.refusals -= 1
                body = {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                }
                return 429, json.dumps(body).encode()
            return await super().do_request(url, method, request_data, **kw)

    api = FloodedApi()
    front = TelegramFrontEnd(runtime.service, TOKEN, runtime.settings, request=api)
    await front.app.initialize()
    try:
        long_reply = Reply(lines=[f"{i} " + "x" * 500 for i in range(30)])
        messages = split_messages(reply_blocks(long_reply))
        assert len(messages) >= 3
        # The second message is refused by the rate limiter's tries and more: the first arrived.
        api.refusals = RATE_LIMIT_RETRIES + 1
        with pytest.raises(SendRateLimited):
            await front.send("77", long_reply)
        assert [m["text"] for m in api.sent()] == messages[:1]
        # A different DM to another chat is unaffected by the pending one.
        await front.send("78", Reply.text("hi"))
        # The scheduler's resend of the same DM sends the rest, each message once.
        await front.send("77", long_reply)
        to_77 = [m["text"] for m in api.sent() if int(m["chat_id"]) == 77]
        assert to_77 == messages
        # Refused on its first message: nothing went out, so the next send starts over.
        api.allowed, api.refusals = len(api.sent()), RATE_LIMIT_RETRIES + 1
        with pytest.raises(SendRateLimited):
            await front.send("79", long_reply)
        await front.send("79", long_reply)
        assert [m["text"] for m in api.sent() if int(m["chat_id"]) == 79] == messages
    finally:
        await front.app.shutdown()


class TooManyRequests:
    status = 429
    reason = "Too Many Requests"
    headers = {"Retry-After": "4.5"}  # noqa: RUF012


async def test_discord_rate_limits_become_send_rate_limited(runtime: Any) -> None:
    from bot.discord_app import DiscordFrontEnd

    front = DiscordFrontEnd(runtime.service, runtime.settings)
    sent: list[dict[str, Any]] = []
    answers: list[BaseException] = []

    class User:
        async def send(self, **kwargs: Any) -> None:
            if answers:
                raise answers.pop(0)
            sent.append(kwargs)

    async def fetch_user(user_id: int) -> User:
        return User()

    front.client.fetch_user = fetch_user  # type: ignore[method-assign,assignment]
    answers.append(discord.RateLimited(12.0))
    with pytest.raises(SendRateLimited) as caught:
        await front.send("7", Reply.text("hi"))
    assert caught.value.retry_after == 12.0
    answers.append(discord.HTTPException(TooManyRequests(), {"message": "slow down"}))  # type: ignore[arg-type]
    with pytest.raises(SendRateLimited) as caught:
        await front.send("7", Reply.text("hi"))
    assert caught.value.retry_after == 4.5
    # Other HTTP errors are not rate limits.
    server_error = dataclasses.make_dataclass("R", [("status", int), ("reason", str)])(500, "x")
    answers.append(discord.HTTPException(server_error, {"message": "boom"}))  # type: ignore[arg-type]
    with pytest.raises(discord.HTTPException):
        await front.send("7", Reply.text("hi"))
    assert sent == []


# ----- settings ------------------------------------------------------------------------------


async def test_the_bot_paces_with_its_limits_settings(tmp_path: Path, engine: Any) -> None:
    from bot.app import open_runtime, start_background_jobs
    from bot.scheduler import JOB_ID
    from tests.bot.conftest import fast_sources, make_settings

    settings = make_settings(tmp_path, weekly_spread_s=1800.0, send_rate_limit_retries=2)
    async with open_runtime(settings, engine, sources_settings=fast_sources()) as runtime:
        scheduler = start_background_jobs(runtime)
        assert scheduler is not None
        try:
            job = scheduler.get_job(JOB_ID)
            assert job is not None
            deliveries = job.func.__self__
            assert (deliveries.spread_s, deliveries.max_rate_limit_retries) == (1800.0, 2)
        finally:
            scheduler.shutdown(wait=False)


def test_the_new_limits_are_checked() -> None:
    from bot.settings import bot_settings
    from inference.errors import ConfigError

    for bad in ({"weekly_spread_s": -1.0}, {"send_rate_limit_retries": -1}):
        with pytest.raises(ConfigError, match=r"\[limits\]"):
            bot_settings({"limits": bad})
    with pytest.raises(ConfigError, match=r"\[metrics\] port"):
        bot_settings({"metrics": {"port": 70000}})
    with pytest.raises(ConfigError, match="send_rate_limit_retries"):
        bot_settings({"limits": {"send_rate_limit_retries": "5"}})
    settings = bot_settings({})
    assert settings.limits.weekly_spread_s == 3600.0
    assert settings.limits.telegram_sends_per_s == 25.0
    assert settings.metrics.host == "127.0.0.1" and not settings.metrics.enabled
