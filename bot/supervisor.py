"""Each chat platform runs on its own: one failing never stops another.

A platform's `connect` is one connection attempt that runs until it fails (or is cancelled). A
failure its adapter calls permanent (a rejected token) stops that platform with one log line saying
what to fix; any other failure is retried after an exponential, jittered delay. The caller learns
why each platform stopped once none is left.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Platform:
    name: str
    # One connection attempt: returns only if the platform shut down on its own, raises on failure.
    connect: Callable[[], Awaitable[None]]
    # A one-line reason (naming the variable to fix) when retrying cannot help, else None.
    permanent_failure: Callable[[BaseException], str | None]
    # Network-like failures, logged in one line; anything else is logged with its traceback.
    is_transient: Callable[[BaseException], bool]


@dataclass(frozen=True)
class Backoff:
    first_s: float = 2.0
    max_s: float = 300.0
    # Spread, as a fraction of the delay: bots restarted together do not reconnect in step.
    jitter: float = 0.2
    # A connection that held this long was healthy: the next failure starts from first_s again.
    healthy_s: float = 600.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs 0 < first_s <= max_s and 0 <= jitter < 1")

    def spread(self, delay: float) -> float:
        return delay * (1 + random.uniform(-self.jitter, self.jitter))


Sleep = Callable[[float], Awaitable[None]]


async def supervise_platform(
    platform: Platform,
    *,
    backoff: Backoff | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Run `platform`, reconnecting after each failure that is not permanent; return why it
    stopped ("telegram: ..."). Cancelling the task stops it."""
    policy = backoff or Backoff()
    delay = policy.first_s
    while True:
        started = clock()
        try:
            await platform.connect()
        except Exception as exc:
            reason = platform.permanent_failure(exc)
            if reason is not None:
                log.error("%s stopped: %s", platform.name, reason, exc_info=exc)
                return f"{platform.name}: {reason}"
            if clock() - started >= policy.healthy_s:
                delay = policy.first_s
            wait = policy.spread(delay)
            if platform.is_transient(exc):
                log.warning(
                    "%s: connection failed (%s: %s); reconnecting in %.1f s",
                    platform.name,
                    type(exc).__name__,
                    exc,
                    wait,
                )
            else:
                log.error(
                    "%s: unexpected failure; restarting in %.1f s",
                    platform.name,
                    wait,
                    exc_info=exc,
                )
            await sleep(wait)
            delay = min(delay * 2, policy.max_s)
        else:
            log.warning("%s stopped: it shut down on its own", platform.name)
            return f"{platform.name}: shut down on its own"


async def supervise_all(
    platforms: Sequence[Platform],
    *,
    backoff: Backoff | None = None,
    sleep: Sleep = asyncio.sleep,
    on_stopped: Callable[[str], None] | None = None,
) -> list[str]:
    """Run every platform, each supervised on its own, until none is left; why each stopped.

    `on_stopped(name)` is called as soon as a platform stops for good, while others run on.
    """

    async def supervised(platform: Platform) -> str:
        try:
            return await supervise_platform(platform, backoff=backoff, sleep=sleep)
        finally:
            if on_stopped is not None:
                on_stopped(platform.name)

    results = await asyncio.gather(*(supervised(p) for p in platforms), return_exceptions=True)
    reasons: list[str] = []
    for platform, result in zip(platforms, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            # Only a defect in an adapter's classification gets here.
            log.error("%s: supervision failed", platform.name, exc_info=result)
            result = f"{platform.name}: stopped on an internal error (logged)"
        reasons.append(result)
    return reasons
