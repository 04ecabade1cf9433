"""A weekly run of 5,000 DMs: simulated duration, DMs/s and peak send rate, on a fake clock.

The scenario of tests/bot/test_scheduler_pacing.py: real SQLite (claim-first delivery rows), the
real scheduler and its per-platform rate limiter, and a fake chat platform at the sender seam that
enforces 30 messages in any one-second window (sliding) and answers every 97th chat with one
RetryAfter of 2 s. Time is a fake clock: the scheduler's pacing sleeps advance it, so an hour of
sends takes seconds of real time. The scheduler runs every 300 s (simulated), as `[scheduler]
interval_s` does, until every subscriber's week has a final row.

    python bench/bench_weekly.py [--subscribers 5000] [--sends-per-s 25]

Scenarios: the shipped config (`weekly_spread_s = 3600`), a catch-up run (every DM due at once:
spread 0, as after the bot was down through the hour), and a pace set above the platform's limit.
"simulated" figures are on the fake clock; "wall" is the real time the machinery took (SQLite rows,
the scheduler's bookkeeping), which bounds how fast a real run could go.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bot.test_scheduler_pacing import simulate_hour  # noqa: E402


async def scenario(name: str, subscribers: int, spread_s: float, sends_per_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        sim = await simulate_hour(
            Path(tmp) / "bot.sqlite3",
            subscribers,
            flaky_every=97,
            spread_s=spread_s,
            sends_per_s=sends_per_s,
        )
        wall = time.perf_counter() - started
    platform = sim.platform
    delivered = sum(platform.delivered.values())
    doubled = sum(1 for n in platform.delivered.values() if n > 1)
    first = min(platform.times, default=0.0)
    span = sim.last_send_s - first
    print(
        f"{name}: {subscribers} subscribers, pace {sends_per_s:g}/s, spread {spread_s:g} s | "
        f"delivered {delivered} (doubled {doubled}, lost {subscribers - len(platform.delivered)}) "
        f"| simulated: first-to-last send {span:.0f} s, {delivered / max(span, 1e-9):.2f} DMs/s, "
        f"peak {platform.peak_per_s()} in any 1 s, {platform.refused} rate-limit answers, "
        f"{sim.runs} runs | wall {wall:.1f} s ({delivered / wall:.0f} DMs/s)"
    )


async def main(subscribers: int, sends_per_s: float) -> None:
    await scenario("hour", subscribers, 3600.0, sends_per_s)
    await scenario("catch-up", subscribers, 0.0, sends_per_s)
    await scenario("over-pace", subscribers, 0.0, 100.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--sends-per-s", type=float, default=25.0)
    args = parser.parse_args()
    asyncio.run(main(args.subscribers, args.sends_per_s))
