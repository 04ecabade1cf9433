"""Inference fixtures: a tiny bundle trained and exported by the project's commands (once per
session), and the real default bundle when it is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_bundle import build_tiny_bundle

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "exports" / "default"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("tiny-bundle"))


@pytest.fixture(scope="session")
def default_bundle() -> Path:
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        pytest.skip("exports/default is not built")
    return DEFAULT_BUNDLE
