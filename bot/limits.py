"""One user cannot starve the others (docs/architecture.md#reliability): a per-user cooldown, bounded concurrency for
list fetches and inference, per-platform send pacing for the weekly DMs, and the outside services'
request budgets shared through the store by every process that uses it.

The cooldown, the concurrency bounds and the send pacing are per process; with several processes a
user who reaches two of them could wait out two cooldowns at once (each platform's updates reach
one process, so in practice a user meets one).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from bot.settings import LimitsSection
from bot.storage import Storage
from inference.http import RateLimiter

log = logging.getLogger(__name__)


class Cooldown:
    """At most one expensive command per user every `seconds`.

    Memory is bounded: entries older than the cooldown are useless and are dropped first.
    """

    def __init__(
        self,
        seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_users: int = 100_000,
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self._max_users = max_users
        self._last: OrderedDict[str, float] = OrderedDict()

    def try_acquire(self, key: str) -> float:
        """0 when `key` may go now (and its cooldown starts), else the seconds left to wait."""
        if self.seconds <= 0:
            return 0.0
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            return self.seconds - (now - last)
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self._max_users:
            self._last.popitem(last=False)
        return 0.0

    def release(self, key: str) -> None:
        """Forget `key`'s last use: a request that failed on our side should not cost a wait."""
        self._last.pop(key, None)


def wait_message(seconds_left: float) -> str:
    return f"Please wait {max(1, math.ceil(seconds_left))} s before asking again."


class Limits:
    """The process-wide bounds, shared by every front end."""

    def __init__(
        self,
        settings: LimitsSection,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`clock` and `sleep` drive the cooldown and the send pacing (a test's fake clock)."""
        self._clock = clock
        self._sleep = sleep
        self.cooldown = Cooldown(settings.cooldown_s, clock=clock)
        self.fetches = asyncio.Semaphore(settings.max_concurrent_fetches)
        self.inference = asyncio.Semaphore(settings.max_concurrent_inference)
        # Admission: a burst of commands waits here instead of all running their first steps in
        # one event-loop iteration (200 at once stalled the loop for ~100 ms).
        self.commands = asyncio.Semaphore(settings.max_concurrent_commands)
        # RateLimiter spaces calls evenly; it counts per minute.
        self.sends = {
            "telegram": self._limiter(settings.telegram_sends_per_s),
            "discord": self._limiter(settings.discord_sends_per_s),
        }

    def _limiter(self, per_s: float) -> RateLimiter:
        return RateLimiter(per_s * 60.0, clock=self._clock, sleep=self._sleep)

    def send_limiter(self, platform: str) -> RateLimiter:
        limiter = self.sends.get(platform)
        if limiter is None:
            # A platform without its own pace (the console, a test sender) gets the slower one.
            slowest_interval = max(r.interval_s for r in self.sends.values())
            limiter = self.sends[platform] = self._limiter(1.0 / slowest_interval)
        return limiter


class SharedBudget:
    """A service's request budget kept in the store (a `RequestBudget`), so that every process
    on that store together stays within `requests_per_minute`.

    Like `RateLimiter`, each caller reserves the next free slot and then waits for it; the
    reservation is one atomic statement on the store's `rate_slots` row. Slots are unix times
    (`clock`), so the processes' machines need synchronized clocks (NTP).
    """

    def __init__(
        self,
        storage: Storage,
        name: str,
        requests_per_minute: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.name = name
        self.interval_s = 60.0 / requests_per_minute
        self._storage = storage
        self._clock = clock
        self._sleep = sleep
        # This process honours its own deferral at once, before the store has it.
        self._deferred_until = float("-inf")
        self._writes: set[asyncio.Task[None]] = set()

    async def acquire(self) -> None:
        now = self._clock()
        slot = await self._storage.reserve_slot(
            self.name, self.interval_s, max(now, self._deferred_until)
        )
        wait = slot - self._clock()
        if wait > 0:
            await self._sleep(wait)

    def defer(self, seconds: float) -> None:
        until = self._clock() + seconds
        self._deferred_until = max(self._deferred_until, until)
        # Called from synchronous code (reading a response's headers): the write goes on as a
        # task, kept referenced until it is done.
        task = asyncio.get_running_loop().create_task(self._storage.defer_slot(self.name, until))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "could not share a %s deferral through the store",
                self.name,
                exc_info=task.exception(),
            )

    async def settled(self) -> None:
        """Wait for every deferral this process started to reach the store."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
