"""The typed settings loader: every value checked against its field's annotation, one-line errors
naming the key and the type wanted; [sources] sub-tables; [engine]'s knobs and their checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inference.config import (
    EngineSettings,
    ServiceLimits,
    SourceSettings,
    engine_settings,
    load_toml,
    section,
    source_settings,
)
from inference.errors import ConfigError


@dataclass(frozen=True)
class Sub:
    level: int = 3
    label: str = "sub"


@dataclass(frozen=True)
class Kinds:
    """One field of every kind a section may use."""

    flag: bool = False
    count: int = 1
    ratio: float = 0.5
    name: str = "x"
    names: list[str] = field(default_factory=list)
    either: str | list[str] = "auto"
    pair: tuple[int, int] = (0, 0)
    many: tuple[str, ...] = ()
    maybe: int | None = None
    choice: Literal["a", "b"] = "a"
    sub: Sub = field(default_factory=lambda: Sub(level=7))


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_str(v: Any) -> bool:
    return type(v) is str


def _all(v: Any, check: Any) -> bool:
    return type(v) is list and all(check(x) for x in v)


# What each field must accept, written independently of the loader: anything else is refused.
ACCEPTS: dict[str, Any] = {
    "flag": lambda v: type(v) is bool,
    "count": _is_int,
    "ratio": lambda v: type(v) in (int, float) and not math.isnan(v),
    "name": _is_str,
    "names": lambda v: _all(v, _is_str),
    "either": lambda v: _is_str(v) or _all(v, _is_str),
    "pair": lambda v: _all(v, _is_int) and len(v) == 2,
    "many": lambda v: _all(v, _is_str),
    "maybe": _is_int,
    "choice": lambda v: v in ("a", "b") and _is_str(v),
}
EXPECTED = {
    "flag": "(bool)",
    "count": "(int)",
    "ratio": "(float)",
    "name": "(str)",
    "names": "(list[str])",
    "either": "(str | list[str])",
    "pair": "(tuple[int, int])",
    "many": "(tuple[str, ...])",
    "maybe": "(int)",
    "choice": 'one of "a", "b"',
}

# Every kind of value a TOML file can hold.
toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=80)
    | st.sampled_from(["a", "b", "false", "true", "6h", "1", ""])
    | st.datetimes()
    | st.dates()
    | st.times()
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@hypothesis.settings(deadline=None)  # no timing: a busy machine must not fail the property
@given(key=st.sampled_from(sorted(ACCEPTS)), value=toml_values)
def test_each_kind_accepts_exactly_its_type_and_names_key_and_type_otherwise(
    key: str, value: Any
) -> None:
    if ACCEPTS[key](value):
        built = section({"t": {key: value}}, Kinds, "t")
        got = getattr(built, key)
        if key == "ratio":
            # A float setting takes TOML integers as the float they round to (2**53 + 1 cannot
            # be one exactly), so compare with that rather than the integer.
            assert type(got) is float and got == float(value)
        else:
            assert got == (tuple(value) if key in ("pair", "many") else value)
        return
    with pytest.raises(ConfigError) as caught:
        section({"t": {key: value}}, Kinds, "t")
    message = str(caught.value)
    assert message.startswith(f"[t] {key} must be ")
    assert EXPECTED[key] in message
    assert ", not " in message
    assert "\n" not in message and len(message) < 200


@hypothesis.settings(deadline=None)
@given(value=toml_values)
def test_a_sub_table_is_checked_under_its_dotted_name(value: Any) -> None:
    if type(value) is int:
        assert section({"t": {"sub": {"level": value}}}, Kinds, "t").sub.level == value
        return
    with pytest.raises(ConfigError, match=r"^\[t\.sub\] level must be a whole number \(int\)"):
        section({"t": {"sub": {"level": value}}}, Kinds, "t")


def test_the_brief_examples_read_as_a_user_would_see_them() -> None:
    with pytest.raises(ConfigError) as caught:
        section({"t": {"flag": "false"}}, Kinds, "t")
    assert str(caught.value) == '[t] flag must be true or false (bool), not the string "false"'
    with pytest.raises(ConfigError) as caught:
        section({"t": {"ratio": "6h"}}, Kinds, "t")
    assert str(caught.value) == '[t] ratio must be a number (float), not the string "6h"'
    with pytest.raises(ConfigError) as caught:
        section({"t": {"count": 2.5}}, Kinds, "t")
    assert str(caught.value) == "[t] count must be a whole number (int), not the number 2.5"
    with pytest.raises(ConfigError) as caught:
        section({"t": {"either": ["cpu", 3]}}, Kinds, "t")
    assert str(caught.value) == (
        "[t] either must be a string or a list of strings (str | list[str]), "
        'not the list ["cpu", 3]'
    )
    with pytest.raises(ConfigError) as caught:
        section({"t": {"sub": "x"}}, Kinds, "t")
    assert str(caught.value) == '[t] sub must be a table (Sub), not the string "x"'
    with pytest.raises(ConfigError) as caught:
        section({"t": "x"}, Kinds, "t")
    assert str(caught.value) == '[t] must be a table, not the string "x"'


def test_long_and_multi_line_values_are_cut_to_one_short_line() -> None:
    with pytest.raises(ConfigError) as caught:
        section({"t": {"count": "line one\nline two " + "x" * 500}}, Kinds, "t")
    message = str(caught.value)
    assert "\n" not in message
    shown = message.split("not the string ", 1)[1]
    assert (
        len(shown) == 64 and shown.startswith('"line one\\nline two xx') and shown.endswith("x...")
    )
    with pytest.raises(ConfigError) as caught:
        section({"t": {"bad\nkey": 1, "other": 2}}, Kinds, "t")
    assert str(caught.value) == 'unknown setting(s) in [t]: "bad\\nkey", other'


def test_dates_and_tables_are_named_by_kind() -> None:
    with pytest.raises(ConfigError, match=r"not the date/time 2024-01-02$"):
        section({"t": {"name": dt.date(2024, 1, 2)}}, Kinds, "t")
    with pytest.raises(ConfigError, match=r"not a table$"):
        section({"t": {"name": {"a": 1}}}, Kinds, "t")


def test_missing_keys_keep_defaults_and_a_sub_table_keeps_its_fields_default() -> None:
    built = section({"t": {"sub": {"label": "mine"}}}, Kinds, "t")
    # The field's default is Sub(level=7), not the class's level=3.
    assert built.sub == Sub(level=7, label="mine")
    assert section({}, Kinds, "t") == Kinds()


def test_unknown_keys_are_refused_in_tables_and_sub_tables() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) in \[t\]: colour, extra"):
        section({"t": {"extra": 1, "colour": 2}}, Kinds, "t")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) in \[t\.sub\]: levle"):
        section({"t": {"sub": {"levle": 1}}}, Kinds, "t")


def test_an_annotation_the_loader_does_not_know_is_a_maintainer_error() -> None:
    @dataclass(frozen=True)
    class Odd:
        table: dict[str, int] = field(default_factory=dict)

    with pytest.raises(TypeError, match="not supported"):
        section({"t": {"table": {}}}, Odd, "t")


# ----- [sources] ----------------------------------------------------------------------------------


def test_a_sources_sub_table_keeps_the_services_own_defaults() -> None:
    settings = source_settings({"sources": {"mal": {"timeout_s": 3}}})
    # MyAnimeList's default pace is 60/min; the class default (30) must not replace it.
    assert settings.mal == ServiceLimits(requests_per_minute=60.0, timeout_s=3.0)
    assert type(settings.mal.timeout_s) is float
    assert settings.anilist == SourceSettings().anilist


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"mal": {"timeout_s": "15s"}},
            r'^\[sources\.mal\] timeout_s must be a number \(float\), not the string "15s"$',
        ),
        (
            {"anilist": {"max_retries": 1.5}},
            r"^\[sources\.anilist\] max_retries must be a whole number",
        ),
        (
            {"mal": {"requests_per_minute": 0}},
            r"^\[sources\.mal\] requests_per_minute and timeout_s must be positive$",
        ),
        (
            {"anilist": {"max_retries": -1}},
            r"^\[sources\.anilist\] max_retries, .* cannot be negative$",
        ),
        (
            {"user_agent": 5},
            r"^\[sources\] user_agent must be a string \(str\), not the whole number 5$",
        ),
        ({"mall": {}}, r"^unknown setting\(s\) in \[sources\]: mall$"),
    ],
)
def test_bad_sources_settings_name_the_sub_table(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        source_settings({"sources": table})


# ----- [engine] -----------------------------------------------------------------------------------


def test_engine_defaults_are_the_engines_measured_values() -> None:
    settings = engine_settings({})
    assert (settings.method, settings.tradeoff, settings.genre_weight) == ("dpp", 0.9, 0.3)
    assert (settings.rerank_pool, settings.threads, settings.precision) == (200, 1, "fp32")
    assert (settings.micro_batching, settings.max_batch, settings.max_wait_s) == (True, 16, 0.003)
    assert settings.workers == 2


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"method": "DPP"}, r'method must be one of "mmr", "dpp" \(str\), not the string "DPP"'),
        ({"precision": "int4"}, r'precision must be one of "fp32", "int8"'),
        ({"tradeoff": 1.0}, r"tradeoff must be from 0 up to \(not including\) 1 for dpp"),
        ({"tradeoff": -0.1, "method": "mmr"}, r"tradeoff must be from 0 to 1 for mmr"),
        ({"genre_weight": 1.5}, r"genre_weight must be from 0 to 1"),
        ({"rerank_pool": 10}, r"rerank_pool must be at least 25"),
        ({"max_batch": 0}, r"max_batch and workers must be at least 1"),
        ({"workers": 0}, r"max_batch and workers must be at least 1"),
        ({"max_wait_s": -1}, r"max_wait_s must be a number of seconds, 0 or more"),
        ({"max_wait_s": math.inf}, r"max_wait_s must be a number of seconds, 0 or more"),
        ({"threads": -1}, r"threads cannot be negative"),
        (
            {"micro_batching": 1},
            r"micro_batching must be true or false \(bool\), not the whole number 1",
        ),
        ({"providers": ["cpu", True]}, r"providers must be a string or a list of strings"),
    ],
)
def test_bad_engine_knobs_stop_with_the_key_named(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[engine\] .*" + message):
        engine_settings({"engine": table})


def test_mmr_accepts_a_tradeoff_of_one_and_dpp_just_below() -> None:
    assert engine_settings({"engine": {"method": "mmr", "tradeoff": 1}}).tradeoff == 1.0
    assert engine_settings({"engine": {"tradeoff": 0.999}}).tradeoff == 0.999


def test_engine_paths_are_from_the_project_root(tmp_path: Path) -> None:
    settings = engine_settings({"engine": {"bundle": "exports/x", "catalog": str(tmp_path)}})
    assert settings.bundle_path() == Path(__file__).resolve().parents[2] / "exports" / "x"
    assert settings.catalog_path() == tmp_path


@pytest.mark.parametrize("cls", [ServiceLimits, SourceSettings, EngineSettings])
def test_every_default_passes_its_own_type_check(cls: type) -> None:
    """The annotations are the schema: a default that breaks them would make the shipped file
    (which spells the defaults out) fail to load."""
    table = _as_toml(dataclasses.asdict(cls()))
    assert section({"t": table}, cls, "t") == cls()


def _as_toml(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_toml(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_toml(v) for v in value]
    return value


def test_a_wrong_type_in_a_real_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[engine]\nmax_batch = "16"\n')
    with pytest.raises(
        ConfigError,
        match=r'^\[engine\] max_batch must be a whole number \(int\), not the string "16"$',
    ):
        engine_settings(load_toml(path))
