"""A scheduler process for the restart test: `python -m tests.bot.scheduler_worker DB LOG N`.

Everything is real (APScheduler job, SQLite file, engine, list sources) except the network edge:
AniList is the fake service over httpx.MockTransport and DMs go to a RecordingSender that appends
to LOG and takes a while per send. The process exits after its first weekly run.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from bot.app import open_runtime
from bot.scheduler import WeeklyDeliveries, start_scheduler
from bot.settings import BotSettings, LimitsSection, SchedulerSection, StorageSection
from inference.engine import Engine
from tests.bot.conftest import anilist_rows, bot_catalog, fast_sources
from tests.bot.recording_sender import RecordingSender
from tests.inference.fakes import FakeAniList

SEND_DELAY_S = 0.3


async def main(db: Path, log: Path, users: int) -> int:
    settings = BotSettings(
        storage=StorageSection(path=str(db)),
        scheduler=SchedulerSection(interval_s=3600.0),
        limits=LimitsSection(cooldown_s=0.0, telegram_sends_per_s=1000.0),
    )
    anilist = FakeAniList()
    for i in range(users):
        anilist.add_user(f"user{i}", anilist_rows(i % 10))
    engine = Engine.without_model(bot_catalog())
    async with open_runtime(
        settings,
        engine,
        sources_settings=fast_sources(),
        transport=httpx.MockTransport(anilist),
    ) as runtime:
        done = asyncio.Event()
        sender = RecordingSender(log, delay_s=SEND_DELAY_S)

        class OneRun(WeeklyDeliveries):
            async def run_logged(self) -> None:
                await super().run_logged()
                done.set()

        deliveries = OneRun(runtime.storage, runtime.service, {"telegram": sender}, runtime.limits)
        scheduler = start_scheduler(deliveries, settings.scheduler, first_run_in_s=0.0)
        await done.wait()
        scheduler.shutdown(wait=False)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))))
