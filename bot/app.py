"""Start-up: config, secrets, engine, storage, then every enabled platform in one asyncio loop.

`python -m bot` runs Discord and Telegram when `config.toml` enables them; with neither enabled
(the shipped config) it runs the console front end on stdin/stdout and exits 0 at the end of input.
A missing token, a bad setting or a missing model/catalogue stops start-up with exit code 2 and a
message naming what to fix, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TextIO

import httpx

from bot.commands import CommandService
from bot.console import ConsoleSender, run_console
from bot.limits import Limits
from bot.logs import install_redaction
from bot.scheduler import Sender, WeeklyDeliveries, start_scheduler
from bot.settings import BotSettings, EngineSection, bot_settings
from bot.storage import Storage
from inference.bundle import CATALOG as BUNDLE_CATALOG
from inference.catalog import load_catalog
from inference.config import (
    DISCORD_TOKEN_ENV,
    MAL_CLIENT_ID_ENV,
    TELEGRAM_TOKEN_ENV,
    SourceSettings,
    load_toml,
    require_secret,
    source_settings,
)
from inference.engine import Engine
from inference.errors import AnimerecError, ConfigError
from inference.http import make_http_client
from inference.sources.fetch import ListSources

log = logging.getLogger("bot")


@dataclass(frozen=True)
class Secrets:
    discord_token: str | None = None
    telegram_token: str | None = None
    mal_client_id: str | None = None

    def values(self) -> list[str]:
        return [v for v in (self.discord_token, self.telegram_token, self.mal_client_id) if v]


def read_secrets(settings: BotSettings) -> Secrets:
    """Tokens of the enabled platforms (a ConfigError naming a missing variable) and the optional
    MyAnimeList client id, from the environment only."""
    discord = (
        require_secret(DISCORD_TOKEN_ENV, "Discord ([discord] enabled = true)")
        if settings.discord.enabled
        else None
    )
    telegram = (
        require_secret(TELEGRAM_TOKEN_ENV, "Telegram ([telegram] enabled = true)")
        if settings.telegram.enabled
        else None
    )
    mal = os.environ.get(MAL_CLIENT_ID_ENV, "").strip() or None
    return Secrets(discord, telegram, mal)


def load_engine(settings: EngineSection) -> Engine:
    """The model bundle when there is one, else the no-model mode over a catalogue; either way
    with [engine]'s knobs (precision, threads, batching, re-ranking)."""
    bundle = settings.bundle_path()
    if bundle.is_dir():
        engine = Engine.from_bundle(bundle, settings=settings)
        log.info("model %s %s loaded from %s", engine.info.name, engine.info.version, bundle)
        return engine
    catalog_path = settings.catalog_path()
    if not catalog_path.exists() and (bundle / BUNDLE_CATALOG).exists():
        catalog_path = bundle / BUNDLE_CATALOG
    if not catalog_path.exists():
        raise ConfigError(
            f"no model bundle at {bundle} and no catalogue at {settings.catalog_path()}; "
            "build a catalogue with `python -m training catalog` or restore exports/default/"
        )
    log.warning(
        "running without a model (no bundle at %s): popular recent picks from %s",
        bundle,
        catalog_path,
    )
    return Engine.without_model(load_catalog(catalog_path), settings)


@dataclass
class Runtime:
    """Everything the front ends share; one per process."""

    settings: BotSettings
    storage: Storage
    http: httpx.AsyncClient
    limits: Limits
    service: CommandService
    senders: dict[str, Sender] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def open_runtime(
    settings: BotSettings,
    engine: Engine,
    *,
    sources_settings: SourceSettings | None = None,
    mal_client_id: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Runtime]:
    """Storage, the shared HTTP client, list sources, limits and the command layer.

    `transport` replaces the network (tests pass an httpx.MockTransport over fake services).
    """
    src = sources_settings or SourceSettings()
    storage = await Storage.open(settings.storage.resolved_path())
    try:
        async with make_http_client(src, transport=transport) as http:
            sources = ListSources(
                http,
                src,
                mal_client_id=mal_client_id,
                anilist_to_mal=engine.catalog.anilist_to_mal,
            )
            limits = Limits(settings.limits)
            service = CommandService(
                engine=engine,
                sources=sources,
                storage=storage,
                settings=settings,
                limits=limits,
                mal_available=mal_client_id is not None,
            )
            yield Runtime(settings, storage, http, limits, service)
    finally:
        await storage.close()


async def serve(
    settings: BotSettings,
    secrets: Secrets,
    engine: Engine,
    sources_settings: SourceSettings,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> None:
    async with open_runtime(
        settings, engine, sources_settings=sources_settings, mal_client_id=secrets.mal_client_id
    ) as runtime:
        platforms = []
        if secrets.telegram_token:
            from bot.telegram_app import TelegramFrontEnd

            telegram = TelegramFrontEnd(runtime.service, secrets.telegram_token, settings)
            runtime.senders["telegram"] = telegram
            platforms.append(telegram.run_forever())
        if secrets.discord_token:
            from bot.discord_app import DiscordFrontEnd

            discord_bot = DiscordFrontEnd(runtime.service, settings)
            runtime.senders["discord"] = discord_bot
            platforms.append(discord_bot.run_forever(secrets.discord_token))
        if not platforms:
            runtime.senders["console"] = ConsoleSender(stdout)
            platforms.append(
                run_console(runtime.service, settings.bot.console_user, stdin=stdin, stdout=stdout)
            )
        scheduler = None
        if settings.scheduler.enabled:
            deliveries = WeeklyDeliveries(
                runtime.storage, runtime.service, runtime.senders, runtime.limits
            )
            scheduler = start_scheduler(deliveries, settings.scheduler)
        try:
            # The console returns at the end of input; chat platforms run until cancelled.
            await asyncio.gather(*platforms)
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO, and Telegram's URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        data = load_toml()
        settings = bot_settings(data)
        sources = source_settings(data)
        secrets = read_secrets(settings)
        install_redaction(secrets.values())
        engine = load_engine(settings.engine)
    except AnimerecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings, secrets, engine, sources))
    except KeyboardInterrupt:
        return 130
    except AnimerecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
