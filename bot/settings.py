"""The bot's sections of `config.toml`: which platforms run, storage, scheduling, limits, engine.

Secrets are never read here; `bot.app` takes them from the environment (`inference.config`).
Every value is checked against its field's type and unknown keys and tables are refused
(`inference.config.section`), so a typo or a quoted `"false"` fails loudly at start-up.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from inference.config import (
    INFERENCE_SECTIONS,
    EngineSettings,
    project_path,
    section,
    show_key,
)
from inference.errors import ConfigError
from inference.options import MAX_COUNT

# The PostgreSQL store's URL, credentials included: from the environment only.
DATABASE_URL_ENV = "ANIMEREC_DATABASE_URL"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SOURCES = ("mal", "anilist")


@dataclass(frozen=True)
class BotSection:
    # "auto": MyAnimeList when ANIMEREC_MAL_CLIENT_ID is set, else AniList.
    default_source: str = "auto"
    default_count: int = 10
    # The one local user the console front end speaks for.
    console_user: str = "local"
    max_attachment_bytes: int = 16 * 1024 * 1024
    # Per-user memory of the last results (for /more and /seen N), bounded by user count...
    sessions_max: int = 10_000
    # ... and by the list entries kept across all users (a 20k-entry list weighs 20k).
    sessions_max_entries: int = 2_000_000
    # Lists longer than this are refused (the largest real lists have about 20k entries).
    max_list_entries: int = 30_000
    # A command line longer than this is refused with a clear message.
    max_line_chars: int = 4000

    def __post_init__(self) -> None:
        if self.default_source not in ("auto", *SOURCES):
            raise ConfigError(
                f"[bot] default_source must be auto, mal or anilist, not {self.default_source!r}"
            )
        if not 1 <= self.default_count <= MAX_COUNT:
            raise ConfigError(f"[bot] default_count must be between 1 and {MAX_COUNT}")
        _require_positive(
            "bot",
            max_attachment_bytes=self.max_attachment_bytes,
            sessions_max=self.sessions_max,
            sessions_max_entries=self.sessions_max_entries,
            max_list_entries=self.max_list_entries,
            max_line_chars=self.max_line_chars,
        )


@dataclass(frozen=True)
class PlatformSection:
    enabled: bool = False


@dataclass(frozen=True)
class DiscordSection(PlatformSection):
    # 0 (and no shard_ids): discord.py asks Discord for the recommended number of shards and runs
    # them all in this process. Set: exactly this many shards in all.
    shard_count: int = 0
    # Empty: every shard of shard_count in this process. Else the subset this process runs (each
    # below shard_count); only the process running shard 0 registers the slash commands.
    shard_ids: tuple[int, ...] = ()
    # Non-zero: the slash commands are registered in this one guild (at once) instead of globally.
    dev_guild_id: int = 0

    def __post_init__(self) -> None:
        if self.shard_count < 0:
            raise ConfigError("[discord] shard_count cannot be negative (0 lets Discord decide)")
        if self.shard_ids and self.shard_count == 0:
            raise ConfigError("[discord] shard_ids needs shard_count (the number of shards in all)")
        bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if bad:
            raise ConfigError(
                f"[discord] shard_ids must each be from 0 to {self.shard_count - 1} "
                f"(shard_count = {self.shard_count}), not {', '.join(map(str, bad))}"
            )
        repeated = sorted({i for i in self.shard_ids if self.shard_ids.count(i) > 1})
        if repeated:
            raise ConfigError(
                f"[discord] shard_ids lists shard {', '.join(map(str, repeated))} more than once"
            )
        if self.dev_guild_id < 0:
            raise ConfigError("[discord] dev_guild_id must be a guild id, or 0 for none")

    @property
    def registers_commands(self) -> bool:
        """Whether this process registers the slash commands: one process does, the one with
        shard 0 (every process when shard_ids is empty runs all shards, shard 0 among them)."""
        return not self.shard_ids or 0 in self.shard_ids


@dataclass(frozen=True)
class TelegramSection(PlatformSection):
    # "polling": the bot asks Telegram for updates. "webhook": Telegram POSTs them to public_url,
    # which a reverse proxy (terminating HTTPS) forwards to listen:port/url_path.
    mode: Literal["polling", "webhook"] = "polling"
    listen: str = "127.0.0.1"
    port: int = 8443
    url_path: str = "telegram"
    public_url: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"[telegram] port must be from 1 to 65535, not {self.port}")
        if self.mode != "webhook":
            return
        if not self.public_url:
            raise ConfigError(
                '[telegram] mode = "webhook" needs public_url, the https:// address Telegram '
                "posts updates to"
            )
        if not self.public_url.startswith("https://"):
            raise ConfigError(
                "[telegram] public_url must start with https:// (Telegram sends webhooks over "
                "HTTPS only)"
            )
        if not self.listen:
            raise ConfigError('[telegram] mode = "webhook" needs listen, the address to bind')


@dataclass(frozen=True)
class StorageSection:
    # "" (SQLite at `path`) or "env" (PostgreSQL at the URL in ANIMEREC_DATABASE_URL).
    url: str = ""
    path: str = "data/animerec.sqlite3"
    # PostgreSQL connections each process keeps open at most.
    pool_size: int = 10
    list_cache_ttl_s: float = 6 * 3600.0
    # How often cached lists older than list_cache_ttl_s are deleted.
    list_cache_purge_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.url not in ("", "env"):
            # Never echo the value: it may be a URL with a password in it.
            raise ConfigError(
                '[storage] url must be "" (SQLite at [storage] path) or "env" (PostgreSQL at the '
                f"URL in {DATABASE_URL_ENV}); a database URL never goes in the config file"
            )
        if self.list_cache_ttl_s < 0:
            raise ConfigError("[storage] list_cache_ttl_s cannot be negative")
        _require_positive(
            "storage",
            list_cache_purge_interval_s=self.list_cache_purge_interval_s,
            pool_size=self.pool_size,
        )

    def resolved_path(self) -> Path:
        return project_path(self.path)


@dataclass(frozen=True)
class SchedulerSection:
    enabled: bool = True
    interval_s: float = 300.0
    misfire_grace_hours: float = 6.0
    # What the "subscribe" button (and a bare /subscribe) chooses.
    default_weekday: str = "saturday"
    default_hour: int = 10
    default_timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.default_weekday not in WEEKDAYS:
            raise ConfigError(f"[scheduler] default_weekday must be one of {', '.join(WEEKDAYS)}")
        if not 0 <= self.default_hour <= 23:
            raise ConfigError("[scheduler] default_hour must be between 0 and 23")
        try:
            zoneinfo.ZoneInfo(self.default_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"[scheduler] default_timezone {self.default_timezone!r} is not a known time zone"
            ) from None
        if self.interval_s <= 0 or self.misfire_grace_hours <= 0:
            raise ConfigError("[scheduler] interval_s and misfire_grace_hours must be positive")


@dataclass(frozen=True)
class LimitsSection:
    cooldown_s: float = 10.0
    max_concurrent_fetches: int = 8
    max_concurrent_inference: int = 2
    max_concurrent_commands: int = 32
    telegram_sends_per_s: float = 25.0
    discord_sends_per_s: float = 5.0
    # Each subscriber's weekly DM goes out at a fixed point (a hash of subscriber and week) within
    # this many seconds after their hour, so a large cohort does not all leave at :00.
    weekly_spread_s: float = 3600.0
    # A DM the platform refused with a rate-limit answer (never delivered) is retried after the
    # wait it asked for, at most this many times; then the week is marked failed.
    send_rate_limit_retries: int = 5

    def __post_init__(self) -> None:
        if self.cooldown_s < 0:
            raise ConfigError("[limits] cooldown_s cannot be negative")
        if self.weekly_spread_s < 0 or self.send_rate_limit_retries < 0:
            raise ConfigError(
                "[limits] weekly_spread_s and send_rate_limit_retries cannot be negative"
            )
        if (
            min(
                self.max_concurrent_fetches,
                self.max_concurrent_inference,
                self.max_concurrent_commands,
            )
            < 1
        ):
            raise ConfigError("[limits] concurrency bounds must be at least 1")
        if self.telegram_sends_per_s <= 0 or self.discord_sends_per_s <= 0:
            raise ConfigError("[limits] send rates must be positive")


@dataclass(frozen=True)
class MetricsSection:
    # An HTTP server in the bot process: /healthz and /metrics (Prometheus text format).
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9108

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("[metrics] port must be between 0 and 65535")


@dataclass(frozen=True)
class WebSection:
    enabled: bool = False
    # Loopback by default: the page is for this machine until the operator opens it up.
    host: str = "127.0.0.1"
    port: int = 8080  # 0 picks a free port (logged at start-up)
    # Mark the session cookie Secure: set when visitors reach the page over HTTPS.
    secure_cookie: bool = False

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ConfigError("[web] host cannot be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError("[web] port must be between 0 and 65535")


# [engine] is read by `python -m inference recommend` too, so `inference` defines it: bundle,
# providers, the no-model catalogue and the serving and re-ranking knobs.
EngineSection = EngineSettings


def _require_positive(table: str, **values: float) -> None:
    bad = [name for name, value in values.items() if not value > 0]
    if bad:
        raise ConfigError(f"[{table}] {' and '.join(bad)} must be positive")


@dataclass(frozen=True)
class BotSettings:
    bot: BotSection = field(default_factory=BotSection)
    discord: DiscordSection = field(default_factory=DiscordSection)
    telegram: TelegramSection = field(default_factory=TelegramSection)
    storage: StorageSection = field(default_factory=StorageSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    engine: EngineSection = field(default_factory=EngineSection)
    web: WebSection = field(default_factory=WebSection)

    def enabled_platforms(self) -> list[str]:
        return [name for name in ("discord", "telegram") if getattr(self, name).enabled]


def bot_settings(data: dict[str, Any]) -> BotSettings:
    """The bot's settings from a loaded config (`inference.config.load_toml`).

    A table that nothing reads is refused too: `[engnie]` would otherwise leave every engine
    setting at its default without a word.
    """
    known = {f.name for f in fields(BotSettings)} | set(INFERENCE_SECTIONS)
    strays = sorted(set(data) - known)
    if strays:
        raise ConfigError(
            f"unknown table(s) in the config: {', '.join(show_key(k) for k in strays)} "
            f"(known: {', '.join(sorted(known))})"
        )
    return BotSettings(
        bot=section(data, BotSection, "bot"),
        discord=section(data, DiscordSection, "discord"),
        telegram=section(data, TelegramSection, "telegram"),
        storage=section(data, StorageSection, "storage"),
        scheduler=section(data, SchedulerSection, "scheduler"),
        limits=section(data, LimitsSection, "limits"),
        metrics=section(data, MetricsSection, "metrics"),
        engine=section(data, EngineSection, "engine"),
        web=section(data, WebSection, "web"),
    )
