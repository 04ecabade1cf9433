"""The bot's settings: typed sections, the shipped config.toml, start-up errors of `python -m bot`,
and [engine]'s knobs reaching the loaded engine."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.app import load_engine
from bot.settings import (
    BotSection,
    BotSettings,
    LimitsSection,
    PlatformSection,
    SchedulerSection,
    StorageSection,
    bot_settings,
)
from inference.catalog import save_catalog
from inference.config import EngineSettings, SourceSettings, load_toml, section, source_settings
from inference.errors import ConfigError
from tests.bot.conftest import bot_catalog

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config.toml"
SECRET_VARS = ("ANIMEREC_DISCORD_TOKEN", "ANIMEREC_TELEGRAM_TOKEN", "ANIMEREC_MAL_CLIENT_ID")
BOT_SECTIONS = [BotSection, PlatformSection, StorageSection, SchedulerSection, LimitsSection]


def run_bot(config: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, "ANIMEREC_CONFIG": str(config)},
        timeout=120,
    )


def shipped_with(tmp_path: Path, old: str, new: str) -> Path:
    text = SHIPPED.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "config.toml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "[discord]\nenabled = false",
            '[discord]\nenabled = "false"',
            'error: [discord] enabled must be true or false (bool), not the string "false"',
        ),
        (
            "list_cache_ttl_s = 21600.0",
            'list_cache_ttl_s = "6h"',
            'error: [storage] list_cache_ttl_s must be a number (float), not the string "6h"',
        ),
    ],
)
def test_a_wrong_type_stops_start_up_with_one_line_and_exit_2(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    done = run_bot(shipped_with(tmp_path, old, new))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [expected]
    assert done.stdout == ""


def test_a_misspelt_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^unknown table\(s\) in the config: engnie \(known: "):
        bot_settings({"engnie": {"tradeoff": 0.5}})
    with pytest.raises(ConfigError, match=r'in the config: "two\\nlines"'):
        bot_settings({"two\nlines": {}})


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("bot", "max_list_entries"),
        ("bot", "max_line_chars"),
        ("bot", "sessions_max_entries"),
        ("bot", "sessions_max"),
        ("bot", "max_attachment_bytes"),
        ("storage", "list_cache_purge_interval_s"),
    ],
)
@pytest.mark.parametrize("value", [0, -1])
def test_limits_must_be_positive(table: str, key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=rf"^\[{table}\] {key} must be positive$"):
        bot_settings({table: {key: value}})


@pytest.mark.parametrize("value", [0, 26])
def test_default_count_is_one_a_request_may_ask_for(value: int) -> None:
    with pytest.raises(ConfigError, match=r"^\[bot\] default_count must be between 1 and 25$"):
        bot_settings({"bot": {"default_count": value}})


def test_new_limits_have_their_documented_defaults() -> None:
    settings = bot_settings({})
    assert settings.bot.max_list_entries == 30_000
    assert settings.bot.max_line_chars == 4000
    assert settings.bot.sessions_max_entries == 2_000_000
    assert settings.storage.list_cache_purge_interval_s == 3600.0


def test_a_negative_cache_lifetime_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^\[storage\] list_cache_ttl_s cannot be negative$"):
        bot_settings({"storage": {"list_cache_ttl_s": -1}})


@pytest.mark.parametrize("cls", BOT_SECTIONS)
def test_every_default_passes_its_own_type_check(cls: type) -> None:
    assert section({"t": dataclasses.asdict(cls())}, cls, "t") == cls()


# ----- the shipped config.toml --------------------------------------------------------------------


def test_the_shipped_file_spells_out_every_setting_with_its_default() -> None:
    raw = tomllib.loads(SHIPPED.read_text())
    for name in (f.name for f in dataclasses.fields(BotSettings)):
        table = getattr(BotSettings(), name)
        missing = {f.name for f in dataclasses.fields(table)} - set(raw.get(name, {}))
        assert not missing, f"[{name}] lacks {sorted(missing)}"
    for name in ("mal", "anilist"):
        missing = {f.name for f in dataclasses.fields(SourceSettings().mal)} - set(
            raw["sources"][name]
        )
        assert not missing, f"[sources.{name}] lacks {sorted(missing)}"
    data = load_toml(SHIPPED)
    assert bot_settings(data) == BotSettings()
    assert source_settings(data).mal == SourceSettings().mal


# ----- [engine]'s knobs reach the engine ----------------------------------------------------------

KNOBS = """
[engine]
bundle = "{bundle}"
catalog = "{catalog}"
providers = "cpu"
precision = "int8"
threads = 2
micro_batching = false
max_batch = 4
max_wait_s = 0.02
workers = 1
method = "mmr"
tradeoff = 0.5
genre_weight = 0.0
rerank_pool = 50
"""


def knob_config(tmp_path: Path, bundle: Path, catalog: Path) -> BotSettings:
    path = tmp_path / "config.toml"
    path.write_text(KNOBS.format(bundle=bundle, catalog=catalog))
    return bot_settings(load_toml(path))


def test_engine_knobs_from_the_file_reach_the_loaded_bundle(
    tmp_path: Path, default_bundle: Path
) -> None:
    settings = knob_config(tmp_path, default_bundle, tmp_path / "absent.json.gz")
    engine = load_engine(settings.engine)
    try:
        assert engine.settings == settings.engine
        assert (engine.method, engine.tradeoff, engine.genre_weight) == ("mmr", 0.5, 0.0)
        assert engine.micro_batching is False
        assert (engine._batcher.max_batch, engine._batcher.max_wait_s) == (4, 0.02)
        assert engine._executor._max_workers == 1
        assert engine.model is not None
        assert engine.model.precision == "int8"
        assert engine.model.providers[0] == "CPUExecutionProvider"
        assert engine.model.encoder.get_session_options().intra_op_num_threads == 2
    finally:
        engine.close()


def test_engine_knobs_reach_the_no_model_mode(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json.gz"
    save_catalog(bot_catalog(), catalog)
    settings = knob_config(tmp_path, tmp_path / "no-bundle", catalog)
    engine = load_engine(settings.engine)
    try:
        assert engine.model is None
        assert engine.settings == settings.engine
        assert engine._batcher.max_batch == 4
    finally:
        engine.close()


def test_the_engine_section_is_the_inference_settings() -> None:
    # One definition: `python -m inference recommend` reads [engine] exactly as the bot does.
    assert type(BotSettings().engine) is EngineSettings
