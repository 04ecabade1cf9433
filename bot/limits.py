"""One user cannot starve the others (docs/architecture.md#reliability): a per-user cooldown, bounded concurrency for
list fetches and inference, and per-platform send pacing for the weekly DMs."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from bot.settings import LimitsSection
from inference.http import RateLimiter


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

    def __init__(self, settings: LimitsSection, *, clock: Callable[[], float] = time.monotonic):
        self.cooldown = Cooldown(settings.cooldown_s, clock=clock)
        self.fetches = asyncio.Semaphore(settings.max_concurrent_fetches)
        self.inference = asyncio.Semaphore(settings.max_concurrent_inference)
        # Admission: a burst of commands waits here instead of all running their first steps in
        # one event-loop iteration (200 at once stalled the loop for ~100 ms).
        self.commands = asyncio.Semaphore(settings.max_concurrent_commands)
        # RateLimiter spaces calls evenly; it counts per minute.
        self.sends = {
            "telegram": RateLimiter(settings.telegram_sends_per_s * 60.0),
            "discord": RateLimiter(settings.discord_sends_per_s * 60.0),
        }

    def send_limiter(self, platform: str) -> RateLimiter:
        limiter = self.sends.get(platform)
        if limiter is None:
            # A platform without its own pace (the console, a test sender) gets the slower one.
            slowest_interval = max(r.interval_s for r in self.sends.values())
            limiter = self.sends[platform] = RateLimiter(60.0 / slowest_interval)
        return limiter
