"""Settings from `config.toml`, secrets from the environment.

Each package reads its own sections: `inference` owns [sources] and [engine] (shared with the bot,
which runs the engine); the bot owns its other sections and reuses `load_toml`, `section` and
`require_secret` from here. Secrets are never read from the file, only from the environment
variables named below, and never logged.

Every section is a frozen dataclass whose annotations are the schema: `section` checks each value
from the file against its field's annotation, so `enabled = "false"` or `list_cache_ttl_s = "6h"`
stops start-up with the key and the expected type instead of being truthy or a string later.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from inference.errors import ConfigError
from inference.options import MAX_COUNT
from inference.rerank import Method

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.toml"

# The only places secrets come from.
DISCORD_TOKEN_ENV = "ANIMEREC_DISCORD_TOKEN"
TELEGRAM_TOKEN_ENV = "ANIMEREC_TELEGRAM_TOKEN"
MAL_CLIENT_ID_ENV = "ANIMEREC_MAL_CLIENT_ID"
SECRET_ENV_VARS = (DISCORD_TOKEN_ENV, TELEGRAM_TOKEN_ENV, MAL_CLIENT_ID_ENV)

# The top-level tables `inference` reads (the bot adds its own when it checks for strays).
INFERENCE_SECTIONS = ("sources", "engine")

SHOWN_CHARS = 64  # a wrong value is quoted in the error up to this length

T = TypeVar("T")


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


# ----- the typed loader ---------------------------------------------------------------------------


def section(data: dict[str, Any], cls: type[T], name: str) -> T:
    """Dataclass `cls` from table `name` of `data`, every value checked against its annotation.

    Unknown keys are refused (a typo would otherwise be silent); missing keys keep their defaults;
    a nested dataclass field is a sub-table (`[sources.mal]`) whose missing keys keep the values
    of that field's default. A wrong value raises ConfigError naming the key and the type wanted.
    """
    return _build(cls, data.get(name, {}), name, None)


def _build(cls: type[T], table: Any, where: str, base: T | None) -> T:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table, not {_describe(table)}")
    known = {f.name: f for f in fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(known))
    if unknown:
        names = ", ".join(show_key(k) for k in unknown)
        raise ConfigError(f"unknown setting(s) in [{where}]: {names}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        wanted = hints[key]
        if dataclasses.is_dataclass(wanted) and isinstance(value, dict):
            default = getattr(base, key) if base is not None else _default(known[key])
            values[key] = _build(wanted, value, f"{where}.{key}", default)  # type: ignore[arg-type]
            continue
        try:
            values[key] = _coerce(value, wanted)
        except _WrongType:
            raise ConfigError(
                f"[{where}] {key} must be {_phrase(wanted)} ({_type_name(wanted)}), "
                f"not {_describe(value)}"
            ) from None
    try:
        if base is not None:
            return dataclasses.replace(base, **values)  # type: ignore[type-var]
        return cls(**values)
    except TypeError as exc:  # a field without a default that the table left out
        raise ConfigError(f"bad setting in [{where}]: {exc}") from None
    except ConfigError as exc:
        # A range check of a sub-table's class cannot know which table it was read from.
        if str(exc).startswith("["):
            raise
        raise ConfigError(f"[{where}] {exc}") from None


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


class _WrongType(Exception):
    pass


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _coerce(value: Any, tp: Any) -> Any:
    """`value` as annotation `tp` wants it (ints become floats, arrays tuples), or _WrongType.

    TOML has no null, so `X | None` only ever checks X: None is left to defaults.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if tp is bool:
        # Only a TOML boolean: "false" is a non-empty string, hence truthy, and 0/1 are numbers.
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        # NaN passes every `x <= 0` range check unnoticed, so it is refused here.
        if isinstance(value, int | float) and not isinstance(value, bool) and not _is_nan(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif _is_union(tp):
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except _WrongType:
                pass
    elif origin is Literal:
        # type() as well as ==: True == 1 must not pass for a Literal[1].
        if any(type(value) is type(a) and value == a for a in args):
            return value
    elif origin is list:
        if isinstance(value, list):
            return [_coerce(v, args[0]) for v in value]
    elif origin is tuple:
        if isinstance(value, list):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(v, args[0]) for v in value)
            if len(value) == len(args):
                return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
    elif dataclasses.is_dataclass(tp):
        pass  # a sub-table is built by `_build`; anything else here is the wrong type
    else:
        raise TypeError(f"settings of type {tp!r} are not supported by inference.config.section")
    raise _WrongType


def _is_nan(value: int | float) -> bool:
    return isinstance(value, float) and math.isnan(value)


_PHRASES: dict[Any, tuple[str, str]] = {
    bool: ("true or false", "booleans"),
    int: ("a whole number", "whole numbers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}


def _phrase(tp: Any, plural: bool = False) -> str:
    """How the error names what `tp` wants: "a number", "a list of strings", ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _PHRASES:
        return _PHRASES[tp][plural]
    if _is_union(tp):
        return " or ".join(_phrase(a, plural) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (list, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} values"
        return "lists" if plural else f"a list of {_phrase(args[0], plural=True)}"
    if dataclasses.is_dataclass(tp):
        return "tables" if plural else "a table"
    return "values"


def _type_name(tp: Any) -> str:
    """The annotation as the code spells it: `float`, `str | list[str]`, `tuple[int, ...]`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return " | ".join(sorted({type(a).__name__ for a in args}))
    if origin in (list, tuple):
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return getattr(tp, "__name__", str(tp))


def _describe(value: Any) -> str:
    """The wrong value for the error: its TOML kind and, cut short, itself; always one line."""
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"the whole number {_cut(str(value))}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, list):
        return f"the list {_cut(json.dumps(value, ensure_ascii=False, default=str))}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return f"the date/time {value.isoformat()}"
    return f"a {type(value).__name__}"


def show_key(key: str) -> str:
    """A key from the file for a message: as written when bare, else quoted (one line, cut)."""
    return key if _BARE_KEY.fullmatch(key) else _show(key)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _show(text: str) -> str:
    # JSON quoting escapes newlines and control characters, so the message stays one line.
    return _cut(json.dumps(text, ensure_ascii=False))


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


# ----- [sources] ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceLimits:
    """How one list service is called: pace, patience and retries."""

    requests_per_minute: float = 30.0
    timeout_s: float = 15.0
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.requests_per_minute <= 0 or self.timeout_s <= 0:
            raise ConfigError("requests_per_minute and timeout_s must be positive")
        if self.max_retries < 0 or self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ConfigError("max_retries, backoff_base_s and backoff_max_s cannot be negative")


@dataclass(frozen=True)
class SourceSettings:
    user_agent: str = "animerec/0.1 (+https://github.com/animerec/animerec)"
    mal: ServiceLimits = field(default_factory=lambda: ServiceLimits(requests_per_minute=60.0))
    anilist: ServiceLimits = field(default_factory=lambda: ServiceLimits(requests_per_minute=30.0))


def source_settings(data: dict[str, Any]) -> SourceSettings:
    """[sources] with its [sources.mal] and [sources.anilist] sub-tables."""
    return section(data, SourceSettings, "sources")


# ----- [engine] -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSettings:
    """[engine]: which bundle, where it runs, and the serving and re-ranking knobs.

    Read by `python -m bot` and `python -m inference recommend`, so both pick the same way. The
    defaults are the values the figures in BENCHMARKS.md were measured with.
    """

    bundle: str = "exports/default"
    # "auto": CUDA when onnxruntime-gpu is installed (and a GPU answers), else CPU; or "cpu",
    # "cuda", or a list of onnxruntime provider names.
    providers: str | list[str] = "auto"
    # Used only when no bundle loads: the no-model mode needs a catalogue.
    catalog: str = "data/catalog.json.gz"
    # "int8": the bundle's quantized encoder (exported with --int8), smaller and faster on CPU.
    precision: Literal["fp32", "int8"] = "fp32"
    # onnxruntime threads per model run; 0 = onnxruntime's default (every core). One thread per
    # run with several runs in flight uses the cores better than threads that spin-wait.
    threads: int = 1
    # Concurrent requests share one encoder and one ranker run (`inference.batching`): a batch is
    # run when it holds max_batch requests or max_wait_s after its first one arrived.
    micro_batching: bool = True
    max_batch: int = 16
    max_wait_s: float = 0.003
    workers: int = 2  # threads that run batches (and requests, without micro-batching)
    # Re-ranking (`inference.rerank`): DPP θ or MMR λ trades utility against diversity. On the anime
    # hold-out (bench/bench_rerank_quality.py) DPP at 0.9 keeps the ranker's NDCG@10 (0 franchise
    # duplicates, diversity 0.73 vs 0.67); 0.7 gives up 6.6%.
    method: Method = "dpp"
    tradeoff: float = 0.9
    genre_weight: float = 0.3  # share of genre overlap (vs embedding cosine) in the similarity
    rerank_pool: int = 200  # best eligible candidates the re-ranker chooses among
    # How titles are named in picks and "why" lines: the catalogue's romaji title, or its English
    # title where it has a usable one (the other is shown beside a pick where it helps).
    title_language: Literal["romaji", "english"] = "romaji"
    # Most picks per reply that are new to the model (titles without interactions in its training
    # data, judged from their content alone); 0 = never recommend them.
    new_titles_max: int = 3

    def __post_init__(self) -> None:
        problems = []
        if self.threads < 0:
            problems.append("threads cannot be negative (0 = onnxruntime's default)")
        if self.max_batch < 1 or self.workers < 1:
            problems.append("max_batch and workers must be at least 1")
        if not 0.0 <= self.max_wait_s < math.inf:
            problems.append("max_wait_s must be a number of seconds, 0 or more")
        top = 1.0 if self.method == "mmr" else math.nextafter(1.0, 0.0)
        if not 0.0 <= self.tradeoff <= top:
            span = "0 to 1" if self.method == "mmr" else "0 up to (not including) 1"
            problems.append(f"tradeoff must be from {span} for {self.method}, not {self.tradeoff}")
        if not 0.0 <= self.genre_weight <= 1.0:
            problems.append(f"genre_weight must be from 0 to 1, not {self.genre_weight}")
        if self.new_titles_max < 0:
            problems.append(f"new_titles_max must be 0 or more, not {self.new_titles_max}")
        if self.rerank_pool < MAX_COUNT:
            problems.append(
                f"rerank_pool must be at least {MAX_COUNT} (the most picks one request asks for)"
            )
        if problems:
            raise ConfigError(f"[engine] {'; '.join(problems)}")

    def bundle_path(self) -> Path:
        return project_path(self.bundle)

    def catalog_path(self) -> Path:
        return project_path(self.catalog)

    def provider_names(self) -> str | list[str]:
        return self.providers if isinstance(self.providers, str) else list(self.providers)


def project_path(text: str) -> Path:
    """A path from the config: relative ones are from the project root, not the working folder."""
    path = Path(text)
    return path if path.is_absolute() else PROJECT_ROOT / path


def engine_settings(data: dict[str, Any]) -> EngineSettings:
    return section(data, EngineSettings, "engine")
