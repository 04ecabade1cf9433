"""Every shipped recipe in training/configs loads with the command it is written for: a mistyped or
stale key fails here, not an hour into a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.errors import ConfigError
from training.finetune import FinetuneConfig
from training.pretrain import PretrainConfig
from training.ranker import RankerConfig
from training.train import RunConfig, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.toml"))


def config_class(path: Path) -> type:
    """The config a recipe is for, from its name (tiny.toml is shared: it has only the common parts)."""
    stem = path.stem
    if "-pretrain" in stem:
        return PretrainConfig
    if "-finetune" in stem:
        return FinetuneConfig
    if stem.endswith("-ranker"):
        return RankerConfig
    return RunConfig


def test_the_recipes_are_found() -> None:
    assert {p.name for p in CONFIGS} >= {
        "anime-finetune-wide.toml",
        "tiny.toml",
        "ml-1m-sasrec.toml",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_shipped_recipe_loads(path: Path) -> None:
    config: Any = load_config(config_class(path), path)
    assert config.name
    # Every recipe names its data, but tiny.toml, whose callers pass --set data.path=...
    assert config.data.path or path.name == "tiny.toml"


def test_a_stale_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "typo-finetune.toml"
    path.write_text('name = "typo"\n\n[model]\nd_modle = 64\n')
    with pytest.raises(ConfigError, match=r"model\.d_modle"):
        load_config(FinetuneConfig, path)
