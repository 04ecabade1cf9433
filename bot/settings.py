"""The bot's sections of `config.toml`: which platforms run, storage, scheduling, limits, engine.

Secrets are never read here; `bot.app` takes them from the environment (`inference.config`).
Every value is checked against its field's type and unknown keys and tables are refused
(`inference.config.section`), so a typo or a quoted `"false"` fails loudly at start-up.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from inference.config import (
    INFERENCE_SECTIONS,
    EngineSettings,
    project_path,
    section,
    show_key,
)
from inference.errors import ConfigError
from inference.options import MAX_COUNT

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
class StorageSection:
    path: str = "data/animerec.sqlite3"
    list_cache_ttl_s: float = 6 * 3600.0
    # How often cached lists older than list_cache_ttl_s are deleted.
    list_cache_purge_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.list_cache_ttl_s < 0:
            raise ConfigError("[storage] list_cache_ttl_s cannot be negative")
        _require_positive("storage", list_cache_purge_interval_s=self.list_cache_purge_interval_s)

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

    def __post_init__(self) -> None:
        if self.cooldown_s < 0:
            raise ConfigError("[limits] cooldown_s cannot be negative")
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
    discord: PlatformSection = field(default_factory=PlatformSection)
    telegram: PlatformSection = field(default_factory=PlatformSection)
    storage: StorageSection = field(default_factory=StorageSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
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
        discord=section(data, PlatformSection, "discord"),
        telegram=section(data, PlatformSection, "telegram"),
        storage=section(data, StorageSection, "storage"),
        scheduler=section(data, SchedulerSection, "scheduler"),
        limits=section(data, LimitsSection, "limits"),
        engine=section(data, EngineSection, "engine"),
        web=section(data, WebSection, "web"),
    )
