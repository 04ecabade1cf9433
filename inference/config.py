"""Settings from `config.toml`, secrets from the environment.

Each package reads its own sections: `inference` owns [sources], [catalog] and [model]; the bot
owns its sections and reuses `load_toml` and `require_secret` from here. Secrets are never read
from the file, only from the environment variables named below, and never logged.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from inference.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.toml"

# The only places secrets come from.
DISCORD_TOKEN_ENV = "ANIMEREC_DISCORD_TOKEN"
TELEGRAM_TOKEN_ENV = "ANIMEREC_TELEGRAM_TOKEN"
MAL_CLIENT_ID_ENV = "ANIMEREC_MAL_CLIENT_ID"
SECRET_ENV_VARS = (DISCORD_TOKEN_ENV, TELEGRAM_TOKEN_ENV, MAL_CLIENT_ID_ENV)


def load_toml(path: Path | str | None = None) -> dict[str, Any]:
    """Read the config file (the project's `config.toml` by default) with a clear error."""
    path = (
        Path(path)
        if path is not None
        else Path(os.environ.get("ANIMEREC_CONFIG", DEFAULT_CONFIG_PATH))
    )
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def require_secret(env_var: str, feature: str) -> str:
    """The secret in `env_var`, or a ConfigError naming the variable (never the value)."""
    value = os.environ.get(env_var, "").strip()
    if not value:
        raise ConfigError(f"{feature} is enabled but {env_var} is not set in the environment")
    return value


def section(data: dict[str, Any], cls: type, name: str) -> Any:
    """Build dataclass `cls` from table `name`, refusing unknown keys (typos would be silent)."""
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{name}]: {', '.join(unknown)}")
    try:
        return cls(**table)
    except TypeError as exc:
        raise ConfigError(f"bad setting in [{name}]: {exc}") from None


@dataclass(frozen=True)
class ServiceLimits:
    """How one list service is called: pace, patience and retries."""

    requests_per_minute: float = 30.0
    timeout_s: float = 15.0
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class SourceSettings:
    user_agent: str = "animerec/0.1 (+https://github.com/animerec/animerec)"
    mal: ServiceLimits = field(default_factory=lambda: ServiceLimits(requests_per_minute=60.0))
    anilist: ServiceLimits = field(default_factory=lambda: ServiceLimits(requests_per_minute=30.0))


def source_settings(data: dict[str, Any]) -> SourceSettings:
    table = dict(data.get("sources", {}))
    mal = section(table, ServiceLimits, "mal")
    anilist = section(table, ServiceLimits, "anilist")
    table.pop("mal", None)
    table.pop("anilist", None)
    base = section({"sources": table}, SourceSettings, "sources")
    return SourceSettings(user_agent=base.user_agent, mal=mal, anilist=anilist)
