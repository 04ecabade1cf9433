"""The bot's sections of `config.toml`: which platforms run, storage, scheduling, limits, engine.

Secrets are never read here; `bot.app` takes them from the environment (`inference.config`).
Unknown keys are refused (`inference.config.section`), so a typo fails loudly at start-up.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.config import PROJECT_ROOT, section
from inference.errors import ConfigError

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
    # Per-user memory of the last results (for /more and /seen N), bounded by user count.
    sessions_max: int = 10_000

    def __post_init__(self) -> None:
        if self.default_source not in ("auto", *SOURCES):
            raise ConfigError(
                f"[bot] default_source must be auto, mal or anilist, not {self.default_source!r}"
            )


@dataclass(frozen=True)
class PlatformSection:
    enabled: bool = False


@dataclass(frozen=True)
class StorageSection:
    path: str = "data/animerec.sqlite3"
    list_cache_ttl_s: float = 6 * 3600.0

    def resolved_path(self) -> Path:
        path = Path(self.path)
        return path if path.is_absolute() else PROJECT_ROOT / path


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
class EngineSection:
    bundle: str = "exports/default"
    # "auto": CUDA when onnxruntime-gpu is installed (and a GPU answers), else CPU; or "cpu",
    # "cuda", or a list of onnxruntime provider names.
    providers: str | list[str] = "auto"
    # Used only when no bundle loads: the no-model mode needs a catalogue.
    catalog: str = "data/catalog.json.gz"

    def bundle_path(self) -> Path:
        return _project_path(self.bundle)

    def catalog_path(self) -> Path:
        return _project_path(self.catalog)


def _project_path(text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else PROJECT_ROOT / path


@dataclass(frozen=True)
class BotSettings:
    bot: BotSection = field(default_factory=BotSection)
    discord: PlatformSection = field(default_factory=PlatformSection)
    telegram: PlatformSection = field(default_factory=PlatformSection)
    storage: StorageSection = field(default_factory=StorageSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    engine: EngineSection = field(default_factory=EngineSection)

    def enabled_platforms(self) -> list[str]:
        return [name for name in ("discord", "telegram") if getattr(self, name).enabled]


def bot_settings(data: dict[str, Any]) -> BotSettings:
    """The bot's settings from a loaded config (`inference.config.load_toml`)."""
    return BotSettings(
        bot=section(data, BotSection, "bot"),
        discord=section(data, PlatformSection, "discord"),
        telegram=section(data, PlatformSection, "telegram"),
        storage=section(data, StorageSection, "storage"),
        scheduler=section(data, SchedulerSection, "scheduler"),
        limits=section(data, LimitsSection, "limits"),
        engine=section(data, EngineSection, "engine"),
    )
