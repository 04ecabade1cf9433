"""Weekly DMs (docs/architecture.md#weekly-dms): one recurring job that sends whatever is due.

A subscription is due when its weekday and hour have come in its own time zone during the current
ISO week (in that zone), after it was created, and the week has no delivery row yet. The row is the
claim: it is written "sending" before the message goes out and "sent" or "failed" after. A row left
"sending" by a crash is never retried (a chat message cannot be sent idempotently), so nobody gets
two DMs in a week; a run missed while the bot was down is caught up by the next run of that week.

Pacing: each subscriber's DM is due at a fixed moment within `[limits] weekly_spread_s` after their
hour (a hash of subscription and week, so every run and every process agrees), so a cohort of
thousands is spread over the hour instead of leaving at :00; within a run, each platform's sends
go through its rate limiter. A platform's rate-limit answer (`SendRateLimited`, which the adapters
raise for Telegram's RetryAfter and Discord's 429) means a resend duplicates nothing: the platform's
sends wait the time it asked for and the DM is sent again, a bounded number of times; then the
week is "failed" with the reason. The claim stays in place while it waits, so at most one DM a
week still holds.

APScheduler 3.x runs the job: one interval job with `misfire_grace_time` in hours (its 1 s default
would silently drop a run missed across a restart), `coalesce` and `max_instances=1`. A second
job deletes expired entries of the list cache.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import metrics
from bot.limits import Limits
from bot.replies import Reply
from bot.settings import WEEKDAYS, SchedulerSection
from bot.storage import Storage, Subscription
from inference.http import RateLimiter

log = logging.getLogger(__name__)

JOB_ID = "weekly-deliveries"


class DeliveryForbidden(Exception):
    """The platform refused the DM for good (closed DMs, bot blocked): pause the subscription."""


class SendRateLimited(Exception):
    """The platform refused the DM for now (Telegram RetryAfter, Discord 429), and sending it
    again after `retry_after` seconds cannot duplicate it: none of it was delivered, or (a
    Telegram DM of several messages) the adapter resumes after the messages that were."""

    def __init__(self, retry_after: float | dt.timedelta) -> None:
        seconds = (
            retry_after.total_seconds()
            if isinstance(retry_after, dt.timedelta)
            else float(retry_after)
        )
        self.retry_after = max(0.0, seconds)
        super().__init__(f"rate limited; retry after {self.retry_after:g} s")


class Sender(Protocol):
    async def send(self, chat_id: str, reply: Reply) -> None: ...


def is_ready(sender: Sender) -> bool:
    """Whether the sender can send now; one without a `ready` attribute (the console, a test's
    recorder) always can. A chat platform between two connections is not ready."""
    return bool(getattr(sender, "ready", True))


class WeeklyReplies(Protocol):
    async def weekly_reply(self, subscription: Subscription) -> Reply: ...


def week_slot(subscription: Subscription, now: dt.datetime) -> tuple[str, dt.datetime]:
    """("2026-W48", the scheduled moment) for the ISO week `now` falls in, in the user's zone."""
    tz = zoneinfo.ZoneInfo(subscription.tz)
    local = now.astimezone(tz)
    year, week, _ = local.isocalendar()
    day = dt.date.fromisocalendar(year, week, WEEKDAYS.index(subscription.weekday) + 1)
    scheduled = dt.datetime.combine(day, dt.time(subscription.hour), tzinfo=tz)
    return f"{year}-W{week:02d}", scheduled


def spread_offset(
    subscription: Subscription, week: str, scheduled: dt.datetime, spread_s: float
) -> float:
    """Seconds after the scheduled moment that this week's DM is due: fixed for a subscription and
    week, evenly spread over [0, spread_s), and within the first half of what is left of the week,
    so the runs after it still find it before its week ends."""
    if spread_s <= 0:
        return 0.0
    tz = scheduled.tzinfo
    week_end = dt.datetime.combine(
        scheduled.date() + dt.timedelta(days=7 - scheduled.weekday()), dt.time(0), tzinfo=tz
    )
    window = min(spread_s, (week_end.timestamp() - scheduled.timestamp()) / 2)
    digest = hashlib.blake2b(f"{subscription.id}:{week}".encode(), digest_size=8).digest()
    return window * int.from_bytes(digest, "big") / 2**64


def due_week(subscription: Subscription, now: dt.datetime, *, spread_s: float = 0.0) -> str | None:
    """The ISO week whose DM is due now, or None (not yet this week, or subscribed after it).

    With `spread_s`, the DM comes due at its `spread_offset` after the subscriber's hour.
    """
    week, scheduled = week_slot(subscription, now)
    if scheduled.timestamp() < subscription.created_at:
        return None
    offset = spread_offset(subscription, week, scheduled, spread_s)
    if scheduled.timestamp() + offset <= now.timestamp():
        return week
    return None


@dataclass(slots=True)
class RunStats:
    due: int = 0
    sent: int = 0
    failed: int = 0
    paused: int = 0
    skipped: int = 0  # already claimed, or no sender for the platform in this process
    rate_limited: int = 0  # rate-limit answers waited out (a DM can have several)


class WeeklyDeliveries:
    def __init__(
        self,
        storage: Storage,
        replies: WeeklyReplies,
        senders: Mapping[str, Sender],
        limits: Limits,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        spread_s: float = 0.0,
        max_rate_limit_retries: int = 5,
    ) -> None:
        """`spread_s` and `max_rate_limit_retries` come from `[limits]` in the bot (`bot.app`);
        the send pace and its clock are the limiters' in `limits`."""
        self.storage = storage
        self.replies = replies
        self.senders = senders
        self.limits = limits
        self._clock = clock
        self.spread_s = spread_s
        self.max_rate_limit_retries = max_rate_limit_retries

    async def run_once(self) -> RunStats:
        """Send every DM that is due now. Platforms proceed side by side, each at its own pace."""
        now = self._clock()
        stats = RunStats()
        due: dict[str, list[tuple[Subscription, str]]] = {}
        for sub in await self.storage.active_subscriptions():
            try:
                week = due_week(sub, now, spread_s=self.spread_s)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                log.error("subscription %d has an unusable time zone; skipped", sub.id)
                continue
            if week is not None:
                due.setdefault(sub.platform, []).append((sub, week))
        weeks = sorted({week for items in due.values() for _, week in items})
        claimed = await self.storage.delivered_weeks(weeks)
        for platform in list(due):
            pending = [(s, w) for s, w in due[platform] if (s.id, w) not in claimed]
            stats.due += len(pending)
            stats.skipped += len(due[platform]) - len(pending)
            sender = self.senders.get(platform)
            if sender is None or not is_ready(sender):
                # Not claimed: a platform that is reconnecting gets its week on a later run.
                stats.skipped += len(pending)
                del due[platform]
            else:
                due[platform] = pending
        await asyncio.gather(*(self._send_all(p, items, stats) for p, items in due.items()))
        if stats.due:
            log.info(
                "weekly run: %d due, %d sent, %d failed, %d paused, %d rate-limit waits",
                stats.due,
                stats.sent,
                stats.failed,
                stats.paused,
                stats.rate_limited,
            )
        return stats

    async def _send_all(
        self, platform: str, items: list[tuple[Subscription, str]], stats: RunStats
    ) -> None:
        sender = self.senders[platform]
        limiter = self.limits.send_limiter(platform)
        for sub, week in items:
            # Claim first: a second process (or an overlapping run) skips this week before it
            # spends a list fetch and a model run on a reply it would not send.
            if not await self.storage.claim_delivery(sub.id, week):
                stats.skipped += 1
                continue
            try:
                reply = await self.replies.weekly_reply(sub)
                await self._send_paced(platform, sender, limiter, sub.chat_id, reply, stats)
            except DeliveryForbidden as exc:
                reason = f"direct messages refused: {exc}"[:300]
                await self.storage.finish_delivery(sub.id, week, ok=False, error=reason)
                await self.storage.pause_subscription(sub.id, reason)
                log.info("subscription %d paused: the platform refused the DM", sub.id)
                metrics.DMS_FAILED.inc(platform, "forbidden")
                stats.failed += 1
                stats.paused += 1
            except SendRateLimited as exc:
                reason = (
                    f"rate limited {self.max_rate_limit_retries + 1} times "
                    f"(last asked to wait {exc.retry_after:g} s)"
                )
                await self.storage.finish_delivery(sub.id, week, ok=False, error=reason)
                log.warning("weekly DM for subscription %d failed: %s", sub.id, reason)
                metrics.DMS_FAILED.inc(platform, "rate_limited")
                stats.failed += 1
            except Exception as exc:
                await self.storage.finish_delivery(sub.id, week, ok=False, error=type(exc).__name__)
                log.warning("weekly DM for subscription %d failed", sub.id, exc_info=exc)
                metrics.DMS_FAILED.inc(platform, "error")
                stats.failed += 1
            else:
                await self.storage.finish_delivery(sub.id, week, ok=True)
                metrics.DMS_SENT.inc(platform)
                stats.sent += 1

    async def _send_paced(
        self,
        platform: str,
        sender: Sender,
        limiter: RateLimiter,
        chat_id: str,
        reply: Reply,
        stats: RunStats,
    ) -> None:
        """Send at the platform's pace; a rate-limit answer holds back every later send of the
        platform for the time asked (they would get the same answer) and retries this one."""
        attempt = 0
        while True:
            await limiter.acquire()
            try:
                await sender.send(chat_id, reply)
                return
            except SendRateLimited as exc:
                metrics.DMS_RATE_LIMITED.inc(platform)
                stats.rate_limited += 1
                if attempt >= self.max_rate_limit_retries:
                    raise
                attempt += 1
                limiter.defer(exc.retry_after)
                log.info("%s asked to wait %g s before the next DM", platform, exc.retry_after)

    async def run_logged(self) -> None:
        """The job itself: a failed run is logged and the next one tries again."""
        try:
            await self.run_once()
        except Exception:
            log.exception("weekly run failed")


class ListCachePurge:
    """The housekeeping job: cached lists older than their time to live are deleted."""

    def __init__(self, storage: Storage, max_age_s: float) -> None:
        self.storage = storage
        self.max_age_s = max_age_s

    async def run_logged(self) -> None:
        try:
            removed = await self.storage.purge_list_cache(self.max_age_s)
        except Exception:
            log.exception("list cache purge failed")
            return
        if removed:
            log.info("list cache: %d expired lists deleted", removed)


PURGE_JOB_ID = "list-cache-purge"


def start_scheduler(
    deliveries: WeeklyDeliveries,
    settings: SchedulerSection,
    *,
    purge: ListCachePurge | None = None,
    purge_interval_s: float = 3600.0,
    first_run_in_s: float = 5.0,
) -> AsyncIOScheduler:
    """Start the recurring jobs on the running loop (the weekly DMs and, given `purge`, the list
    cache purge); the first runs come soon after start-up."""
    scheduler = AsyncIOScheduler(timezone=dt.UTC)
    first_run = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=first_run_in_s)
    scheduler.add_job(
        deliveries.run_logged,
        "interval",
        seconds=settings.interval_s,
        id=JOB_ID,
        misfire_grace_time=int(settings.misfire_grace_hours * 3600),
        coalesce=True,
        max_instances=1,
        next_run_time=first_run,
    )
    if purge is not None:
        scheduler.add_job(
            purge.run_logged,
            "interval",
            seconds=purge_interval_s,
            id=PURGE_JOB_ID,
            misfire_grace_time=int(settings.misfire_grace_hours * 3600),
            coalesce=True,
            max_instances=1,
            next_run_time=first_run,
        )
    scheduler.start()
    return scheduler
