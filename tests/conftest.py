from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The real data beside the project (never inside it); tests that need it skip when it is absent.
SHARED_DATA = Path(os.environ.get("ANIMEREC_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent")
    return SHARED_DATA


# A tiny bundle trained and exported by the project's commands, once per session (export, engine
# and CLI tests), and the real default bundle when it has been built.
DEFAULT_BUNDLE = ROOT / "exports" / "default"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_bundle import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("tiny-bundle"))


@pytest.fixture(scope="session")
def default_bundle() -> Path:
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        pytest.skip(f"the default bundle is not built ({DEFAULT_BUNDLE})")
    return DEFAULT_BUNDLE
