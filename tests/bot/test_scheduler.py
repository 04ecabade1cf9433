"""Weekly deliveries: when a DM is due, at most one per week, pauses, and restart safety."""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path

import pytest

from bot.app import Runtime, start_background_jobs
from bot.replies import Reply
from bot.scheduler import (
    JOB_ID,
    PURGE_JOB_ID,
    ListCachePurge,
    WeeklyDeliveries,
    due_week,
    start_scheduler,
    week_slot,
)
from bot.settings import WEEKDAYS
from bot.storage import Storage, Subscription
from inference.animelist import AnimeList
from tests.bot.recording_sender import RecordingSender

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC


def sub(weekday: str, hour: int, tz: str, created_at: float = 0.0) -> Subscription:
    return Subscription(1, "telegram", "1", "1", weekday, hour, tz, True, None, created_at)


def test_due_in_the_subscribers_zone() -> None:
    tokyo_friday_18 = sub("friday", 18, "Asia/Tokyo")
    # 2026-11-27 is a Friday; 18:00 in Tokyo is 09:00 UTC.
    assert due_week(tokyo_friday_18, dt.datetime(2026, 11, 27, 8, 59, tzinfo=UTC)) is None
    assert due_week(tokyo_friday_18, dt.datetime(2026, 11, 27, 9, 0, tzinfo=UTC)) == "2026-W48"
    # Still due later that week (a run missed during a restart is caught up)...
    assert due_week(tokyo_friday_18, dt.datetime(2026, 11, 29, 14, 0, tzinfo=UTC)) == "2026-W48"
    # ...but Sunday 15:00 UTC is Monday in Tokyo: a new ISO week there, not yet due.
    assert due_week(tokyo_friday_18, dt.datetime(2026, 11, 29, 15, 0, tzinfo=UTC)) is None


def test_week_key_follows_the_local_date() -> None:
    monday_early = sub("monday", 0, "Asia/Tokyo")
    week, scheduled = week_slot(monday_early, dt.datetime(2026, 11, 29, 15, 30, tzinfo=UTC))
    assert week == "2026-W49"
    assert scheduled == dt.datetime(2026, 11, 30, 0, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo"))


def test_a_slot_before_subscribing_is_not_due() -> None:
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    created_after_slot = sub("friday", 9, "UTC", created_at=now.timestamp() - 60)
    assert due_week(created_after_slot, now) is None
    created_before = sub("friday", 9, "UTC", created_at=now.timestamp() - 86400)
    assert due_week(created_before, now) == "2026-W48"


async def add_subscriber(
    storage: Storage, n: int, weekday: str, hour: int, tz: str
) -> Subscription:
    await storage.link("telegram", str(n), "mal", "malfan")
    return await storage.subscribe(
        "telegram", str(n), str(n), weekday, hour, tz, now=time.time() - 8 * 86400
    )


def today(tz: str = "UTC") -> str:
    return WEEKDAYS[dt.datetime.now(zoneinfo.ZoneInfo(tz)).weekday()]


async def test_each_due_subscriber_gets_one_dm_a_week(runtime: Runtime) -> None:
    storage = runtime.storage
    due = [
        await add_subscriber(storage, n, today(tz), 0, tz)
        for n, tz in ((1, "UTC"), (2, "Asia/Tokyo"))
    ]
    # Subscribed just now, after this week's slot: the first DM comes next week.
    await storage.link("telegram", "3", "mal", "malfan")
    await storage.subscribe("telegram", "3", "3", today(), 0, "UTC")
    sender = RecordingSender()
    deliveries = WeeklyDeliveries(storage, runtime.service, {"telegram": sender}, runtime.limits)
    first = await deliveries.run_once()
    second = await deliveries.run_once()
    chats = [chat for chat, _ in sender.sent]
    assert sorted(chats) == sorted(s.chat_id for s in due)
    assert first.sent == 2 and second.sent == 0
    reply = sender.sent[0][1]
    assert reply.heading == "Your weekly recommendations" and reply.cards
    assert {r[2] for r in await storage.deliveries()} == {"sent"}


async def test_closed_dms_pause_and_failures_are_not_retried(runtime: Runtime) -> None:
    storage = runtime.storage
    blocked = await add_subscriber(storage, 1, today(), 0, "UTC")
    flaky = await add_subscriber(storage, 2, today(), 0, "UTC")
    crashed = await add_subscriber(storage, 3, today(), 0, "UTC")
    week, _ = week_slot(crashed, dt.datetime.now(UTC))
    # A send cut off by a crash left its row "sending": it must not be sent again.
    assert await storage.claim_delivery(crashed.id, week)
    sender = RecordingSender(forbidden=frozenset({"1"}), failing=frozenset({"2"}))
    deliveries = WeeklyDeliveries(storage, runtime.service, {"telegram": sender}, runtime.limits)
    stats = await deliveries.run_once()
    assert (stats.sent, stats.failed, stats.paused) == (0, 2, 1)
    paused = await storage.subscription("telegram", "1")
    assert paused is not None and not paused.active and "refused" in (paused.paused_reason or "")
    states = {s: (state, err) for s, _, state, err in await storage.deliveries()}
    assert states[blocked.id][0] == "failed"
    assert states[flaky.id] == ("failed", "ConnectionError")
    assert states[crashed.id] == ("sending", None)
    again = await deliveries.run_once()
    assert again.due == 0 and sender.sent == []


async def test_weekly_reply_reports_a_list_failure_to_the_user(runtime: Runtime) -> None:
    storage = runtime.storage
    await storage.link("telegram", "5", "mal", "secretive")
    subscription = await storage.subscribe("telegram", "5", "5", today(), 0, "UTC")
    reply = await runtime.service.weekly_reply(subscription)
    assert reply.error and "private" in reply.lines[0].lower()
    await storage.unlink("telegram", "5")
    assert "/link" in (await runtime.service.weekly_reply(subscription)).lines[0]


def _lines(log: Path) -> list[tuple[str, str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text().splitlines() if line.strip()]  # type: ignore[misc]


def _worker(db: Path, log: Path, users: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bot.scheduler_worker", str(db), str(log), str(users)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
async def test_killed_mid_run_then_restarted_sends_no_duplicates_and_loses_none(
    tmp_path: Path,
) -> None:
    users = 12
    db, log = tmp_path / "bot.sqlite3", tmp_path / "sent.log"
    zones = ("UTC", "Asia/Tokyo", "America/New_York")
    async with await Storage.open(db) as storage:
        for i in range(users):
            tz = zones[i % 3]
            await storage.link("telegram", str(i), "anilist", f"user{i}")
            await storage.subscribe(
                "telegram", str(i), str(i), today(tz), 0, tz, now=time.time() - 8 * 86400
            )

    first = _worker(db, log, users)
    deadline = time.monotonic() + 60
    while True:
        lines = _lines(log)
        begun = [c for what, _, c in lines if what == "begin"]
        sent = [c for what, _, c in lines if what == "sent"]
        if len(sent) >= 3 and len(begun) > len(sent):
            break  # a send is in flight
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert time.monotonic() < deadline, "the worker never got going"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()

    async with await Storage.open(db) as storage:
        at_kill = await storage.deliveries()
    in_flight = {str(s) for s, _, state, _ in at_kill if state == "sending"}
    assert in_flight, "the kill should have landed during a send"

    second = _worker(db, log, users)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()

    lines = _lines(log)
    sent_counts = collections.Counter(c for what, _, c in lines if what == "sent")
    assert all(n == 1 for n in sent_counts.values()), sent_counts  # nobody got two
    second_run_begun = {c for what, pid, c in lines if what == "begin" and pid == str(second.pid)}
    # Subscription ids and chat ids differ; map via the database.
    async with await Storage.open(db) as storage:
        final = {s: (w, state) for s, w, state, _ in await storage.deliveries()}
        chat_of = {
            str(sub.id): sub.chat_id
            for sub in [await storage.subscription("telegram", str(i)) for i in range(users)]
            if sub is not None
        }
    in_flight_chats = {chat_of[s] for s in in_flight}
    assert set(sent_counts) | in_flight_chats == {str(i) for i in range(users)}
    assert not in_flight_chats & second_run_begun  # the cut-off send was not retried
    assert not set(sent_counts) & in_flight_chats
    assert len(final) == users
    assert {final[int(s)][1] for s in in_flight} == {"sending"}
    assert {state for s, (_, state) in final.items() if str(s) not in in_flight} == {"sent"}


class CountingReplies:
    """The command layer's weekly replies, counted: what a run spends on each subscriber."""

    def __init__(self, runtime: Runtime) -> None:
        self.service = runtime.service
        self.made: list[int] = []

    async def weekly_reply(self, subscription: Subscription) -> Reply:
        self.made.append(subscription.id)
        return await self.service.weekly_reply(subscription)


async def test_a_week_claimed_elsewhere_costs_no_reply(runtime: Runtime) -> None:
    storage = runtime.storage
    mine = await add_subscriber(storage, 1, today(), 0, "UTC")
    theirs = await add_subscriber(storage, 2, today(), 0, "UTC")
    replies = CountingReplies(runtime)
    sender = RecordingSender()
    deliveries = WeeklyDeliveries(storage, replies, {"telegram": sender}, runtime.limits)

    # Another process claims subscriber 2's week between our read of the rows and our claim.
    real_delivered = storage.delivered_weeks

    async def delivered_then_claimed_elsewhere(weeks):
        rows = await real_delivered(weeks)
        week, _ = week_slot(theirs, dt.datetime.now(UTC))
        assert await storage.claim_delivery(theirs.id, week)
        return rows

    storage.delivered_weeks = delivered_then_claimed_elsewhere  # type: ignore[method-assign]
    stats = await deliveries.run_once()
    assert replies.made == [mine.id]  # no list fetched, no model run for subscriber 2
    assert [chat for chat, _ in sender.sent] == [mine.chat_id]
    assert (stats.sent, stats.skipped) == (1, 1)


async def test_a_reply_that_crashes_marks_the_week_failed(runtime: Runtime, caplog) -> None:
    storage = runtime.storage
    subscriber = await add_subscriber(storage, 1, today(), 0, "UTC")

    class Broken:
        async def weekly_reply(self, subscription: Subscription) -> Reply:
            raise RuntimeError("model exploded")

    deliveries = WeeklyDeliveries(
        storage, Broken(), {"telegram": RecordingSender()}, runtime.limits
    )
    with caplog.at_level(logging.WARNING):
        stats = await deliveries.run_once()
    assert stats.failed == 1
    assert [(s, state, err) for s, _, state, err in await storage.deliveries()] == [
        (subscriber.id, "failed", "RuntimeError")
    ]
    logged = [r for r in caplog.records if "weekly DM" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback, not just the type


async def test_the_list_cache_purge_is_scheduled_and_deletes_expired_lists(
    runtime: Runtime,
) -> None:
    storage = runtime.storage
    old = AnimeList(source="mal", username="old", entries=[])
    await storage.cache_list("mal", "old", old, now=time.time() - 10_000)
    await storage.cache_list("mal", "fresh", old)
    purge = ListCachePurge(storage, max_age_s=3600.0)
    deliveries = WeeklyDeliveries(storage, runtime.service, {}, runtime.limits)
    scheduler = start_scheduler(
        deliveries, runtime.settings.scheduler, purge=purge, purge_interval_s=600.0
    )
    try:
        job = scheduler.get_job(PURGE_JOB_ID)
        assert job is not None and job.trigger.interval == dt.timedelta(seconds=600)
        await job.func()
    finally:
        scheduler.shutdown(wait=False)
    assert await storage.cached_list("mal", "old", 1e12) is None
    assert await storage.cached_list("mal", "fresh", 1e12) is not None


async def test_the_bot_starts_both_jobs_with_its_settings(runtime: Runtime) -> None:
    scheduler = start_background_jobs(runtime)
    assert scheduler is not None
    try:
        purge = scheduler.get_job(PURGE_JOB_ID)
        weekly = scheduler.get_job(JOB_ID)
        assert purge is not None and weekly is not None
        storage = runtime.settings.storage
        assert purge.trigger.interval.total_seconds() == storage.list_cache_purge_interval_s
        assert purge.func.__self__.max_age_s == storage.list_cache_ttl_s
    finally:
        scheduler.shutdown(wait=False)


async def test_a_reconnecting_platform_keeps_its_week_for_a_later_run(runtime: Runtime) -> None:
    storage = runtime.storage
    subscriber = await add_subscriber(storage, 1, today(), 0, "UTC")
    sender = RecordingSender()
    sender.ready = False  # type: ignore[attr-defined]
    deliveries = WeeklyDeliveries(storage, runtime.service, {"telegram": sender}, runtime.limits)
    down = await deliveries.run_once()
    assert (down.sent, down.skipped) == (0, 1) and await storage.deliveries() == []
    sender.ready = True  # type: ignore[attr-defined]
    up = await deliveries.run_once()
    assert up.sent == 1 and [chat for chat, _ in sender.sent] == [subscriber.chat_id]
