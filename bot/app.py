"""Start-up: config, secrets, engine, storage, then every enabled platform in one asyncio loop.

`python -m bot` runs Discord and Telegram when `config.toml` enables them, and the web page when
`[web]` does; with none of them enabled (the shipped config) it runs the console front end on
stdin/stdout and exits 0 at the end of input. With only the web page it serves until stopped.
A missing token, a bad setting or a missing model/catalogue stops start-up with exit code 2 and a
message naming what to fix, never a traceback. Each chat platform is supervised on its own
(`bot.supervisor`): a network failure is retried, a rejected token stops that platform, and the
process exits 2 with one line giving the reasons once no platform is left. Secret values are masked
in every log record and printed traceback from the first line of `main` on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import string
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from secrets import token_bytes
from typing import TYPE_CHECKING, TextIO

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.commands import CommandService
from bot.console import ConsoleSender, run_console
from bot.limits import Limits, SharedBudget
from bot.metrics import start_metrics_server
from bot.scheduler import ListCachePurge, Sender, WeeklyDeliveries, start_scheduler
from bot.settings import DATABASE_URL_ENV, BotSettings, EngineSection, bot_settings
from bot.storage import Storage, open_storage, secret_parts
from bot.supervisor import Backoff, Platform, supervise_all
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
from inference.redaction import install_exception_hooks, install_redaction, redact
from inference.sources.fetch import ListSources

if TYPE_CHECKING:
    from bot.web import WebServer

log = logging.getLogger("bot")

# Where the Telegram Bot API is, when not https://api.telegram.org/bot (a local Bot API server,
# or a fake one in tests); the token is appended to it. Not a secret, but a deployment detail
# like the tokens, so it sits beside them in the environment.
TELEGRAM_API_URL_ENV = "ANIMEREC_TELEGRAM_API_URL"
# The secret Telegram sends with every webhook update ([telegram] mode = "webhook"); only
# A-Z, a-z, 0-9, _ and - are allowed, and a short one is refused as guessable.
TELEGRAM_WEBHOOK_SECRET_ENV = "ANIMEREC_TELEGRAM_WEBHOOK_SECRET"
WEBHOOK_SECRET_MIN_CHARS = 16
WEBHOOK_SECRET_ALPHABET = frozenset(string.ascii_letters + string.digits + "_-")
GENERATE_WEBHOOK_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
# Signs the web page's session cookies; without it a random one is made at each start.
WEB_SECRET_ENV = "ANIMEREC_WEB_SECRET"
WEB_SECRET_MIN_CHARS = 32


class NoPlatformLeft(AnimerecError):
    """Every chat platform has stopped; the message gives each one's reason."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("no chat platform is left running: " + "; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Secrets:
    discord_token: str | None = None
    telegram_token: str | None = None
    mal_client_id: str | None = None
    telegram_webhook_secret: str | None = None
    web_secret: str | None = None

    def values(self) -> list[str]:
        return [
            v
            for v in (
                self.discord_token,
                self.telegram_token,
                self.mal_client_id,
                self.telegram_webhook_secret,
                self.web_secret,
            )
            if v
        ]


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
    webhook = (
        read_webhook_secret()
        if settings.telegram.enabled and settings.telegram.mode == "webhook"
        else None
    )
    web = (os.environ.get(WEB_SECRET_ENV, "").strip() or None) if settings.web.enabled else None
    if web is not None and len(web) < WEB_SECRET_MIN_CHARS:
        raise ConfigError(
            f"{WEB_SECRET_ENV} must be at least {WEB_SECRET_MIN_CHARS} characters "
            "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return Secrets(discord, telegram, mal, webhook, web)


def read_webhook_secret() -> str:
    """The webhook secret token from the environment; a missing, short or malformed one is a
    ConfigError saying how to make one (never showing the value)."""
    feature = 'Telegram webhook mode ([telegram] mode = "webhook")'
    secret = require_secret(TELEGRAM_WEBHOOK_SECRET_ENV, feature)
    if len(secret) < WEBHOOK_SECRET_MIN_CHARS or len(secret) > 256:
        problem = f"must be {WEBHOOK_SECRET_MIN_CHARS} to 256 characters long"
    elif not set(secret) <= WEBHOOK_SECRET_ALPHABET:
        problem = "may hold only A-Z, a-z, 0-9, _ and -"
    else:
        return secret
    raise ConfigError(
        f"{TELEGRAM_WEBHOOK_SECRET_ENV} {problem}; make one with {GENERATE_WEBHOOK_SECRET}"
    )


def environment_secrets() -> list[str]:
    """Every secret value the environment holds, whether or not the config uses it (the
    database URL both whole and its password alone)."""
    names = (
        DISCORD_TOKEN_ENV,
        TELEGRAM_TOKEN_ENV,
        MAL_CLIENT_ID_ENV,
        TELEGRAM_WEBHOOK_SECRET_ENV,
        WEB_SECRET_ENV,
    )
    values = [value for value in (os.environ.get(n, "").strip() for n in names) if value]
    database = os.environ.get(DATABASE_URL_ENV, "").strip()
    return values + (secret_parts(database) if database else [])


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

    The outside services' request budgets live in the store, so every process on one store
    together keeps to them. `transport` replaces the network (tests pass an httpx.MockTransport
    over fake services).
    """
    src = sources_settings or SourceSettings()
    storage = await open_storage(settings.storage)
    budgets = {
        "mal": SharedBudget(storage, "mal", src.mal.requests_per_minute),
        "anilist": SharedBudget(storage, "anilist", src.anilist.requests_per_minute),
    }
    try:
        async with make_http_client(src, transport=transport) as http:
            sources = ListSources(
                http,
                src,
                mal_client_id=mal_client_id,
                anilist_to_mal=engine.catalog.anilist_to_mal,
                max_entries=settings.bot.max_list_entries,
                budgets=budgets,
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
        for budget in budgets.values():
            await budget.settled()
        await storage.close()


def chat_platforms(runtime: Runtime, secrets: Secrets) -> list[Platform]:
    """The enabled chat platforms (those with a token), each registered as a weekly-DM sender."""
    platforms: list[Platform] = []
    if secrets.telegram_token:
        from bot import telegram_app

        telegram = telegram_app.TelegramFrontEnd(
            runtime.service,
            secrets.telegram_token,
            runtime.settings,
            base_url=os.environ.get(TELEGRAM_API_URL_ENV, "").strip() or None,
            webhook_secret=secrets.telegram_webhook_secret,
            storage=runtime.storage,
        )
        runtime.senders["telegram"] = telegram
        platforms.append(
            Platform(
                "telegram",
                telegram.run_forever,
                telegram_app.permanent_failure,
                telegram_app.is_transient,
            )
        )
    if secrets.discord_token:
        from bot import discord_app

        discord_bot = discord_app.DiscordFrontEnd(
            runtime.service, runtime.settings, storage=runtime.storage
        )
        runtime.senders["discord"] = discord_bot
        token = secrets.discord_token

        async def connect_discord() -> None:
            await discord_bot.run_forever(token)

        platforms.append(
            Platform(
                "discord", connect_discord, discord_app.permanent_failure, discord_app.is_transient
            )
        )
    return platforms


async def run_chat_platforms(
    platforms: list[Platform],
    *,
    senders: dict[str, Sender] | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Run every platform, each supervised on its own; raise NoPlatformLeft once none is left.

    A platform that stops leaves `senders`, so the weekly run skips its subscribers (their week
    stays unclaimed for a later run) rather than spending it on sends that cannot go out.
    """

    def stopped(name: str) -> None:
        if senders is not None:
            senders.pop(name, None)

    reasons = await supervise_all(platforms, backoff=backoff, on_stopped=stopped)
    raise NoPlatformLeft(reasons)


async def start_web(runtime: Runtime, secrets: Secrets) -> WebServer:
    """The web page, listening; a host:port it cannot bind is a ConfigError (exit 2)."""
    from bot.web import WebFrontEnd, WebServer

    if secrets.web_secret:
        secret = secrets.web_secret.encode()
    else:
        log.warning(
            "%s is not set: web sessions are signed with a key made now, so every visitor gets "
            "a new session (and loses their seen / not-interested marks) when the bot restarts",
            WEB_SECRET_ENV,
        )
        secret = token_bytes(32)
    web = runtime.settings.web
    server = WebServer(WebFrontEnd(runtime.service, runtime.settings, secret), web.host, web.port)
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(
            f"[web] cannot listen on {web.host}:{web.port}: {exc.strerror or exc}"
        ) from None
    return server


async def serve(
    settings: BotSettings,
    secrets: Secrets,
    engine: Engine,
    sources_settings: SourceSettings,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> None:
    """Run the chat platforms (until none is left: NoPlatformLeft), or else the web page alone
    (until cancelled), or else the console (until the end of its input), with the weekly
    scheduler beside them. The web page, when enabled, is served beside the chat platforms and
    stops with them."""
    async with open_runtime(
        settings, engine, sources_settings=sources_settings, mal_client_id=secrets.mal_client_id
    ) as runtime:
        platforms = chat_platforms(runtime, secrets)
        web = await start_web(runtime, secrets) if settings.web.enabled else None
        if not platforms and web is None:
            runtime.senders["console"] = ConsoleSender(stdout)
        metrics_server = (
            await start_metrics_server(runtime, settings.metrics.host, settings.metrics.port)
            if settings.metrics.enabled
            else None
        )
        scheduler = start_background_jobs(runtime)
        try:
            if platforms:
                await run_chat_platforms(platforms, senders=runtime.senders)
            elif web is not None:
                await asyncio.Event().wait()  # the page serves until the process is stopped
            else:
                await run_console(
                    runtime.service, settings.bot.console_user, stdin=stdin, stdout=stdout
                )
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            if metrics_server is not None:
                await metrics_server.close()
            if web is not None:
                await web.close()


def start_background_jobs(runtime: Runtime) -> AsyncIOScheduler | None:
    """The weekly DMs and the list-cache purge, on the running loop (None when disabled)."""
    settings = runtime.settings
    if not settings.scheduler.enabled:
        return None
    deliveries = WeeklyDeliveries(
        runtime.storage,
        runtime.service,
        runtime.senders,
        runtime.limits,
        spread_s=settings.limits.weekly_spread_s,
        max_rate_limit_retries=settings.limits.send_rate_limit_retries,
    )
    return start_scheduler(
        deliveries,
        settings.scheduler,
        purge=ListCachePurge(runtime.storage, settings.storage.list_cache_ttl_s),
        purge_interval_s=settings.storage.list_cache_purge_interval_s,
    )


def one_line(exc: BaseException) -> str:
    """The exception's message as one line, secrets masked: what a start-up error prints."""
    return redact(" ".join(str(exc).split()))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO, and Telegram's URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Before anything can fail: every secret the environment holds is masked from here on, in log
    # records and in any traceback the interpreter prints.
    install_redaction(environment_secrets())
    install_exception_hooks()
    try:
        data = load_toml()
        settings = bot_settings(data)
        sources = source_settings(data)
        secrets = read_secrets(settings)
        install_redaction(secrets.values())
        engine = load_engine(settings.engine)
        asyncio.run(serve(settings, secrets, engine, sources))
    except KeyboardInterrupt:
        return 130
    except AnimerecError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("the bot stopped on an unexpected error")
        print(
            "error: the bot stopped on an unexpected error; the log above has the details",
            file=sys.stderr,
        )
        return 1
    return 0
