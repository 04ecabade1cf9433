from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresCluster, start_cluster

ROOT = Path(__file__).resolve().parent.parent
# The real data beside the project (never inside it); tests that need it skip when it is absent.
SHARED_DATA = Path(os.environ.get("ANIMEREC_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Every test starts from one torch RNG state. Without it a test that builds a model without a
    seed of its own gets different weights in every process, and passes or fails by chance."""
    import torch

    torch.manual_seed(0)


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


# One throwaway PostgreSQL cluster for the whole run (tests/postgres.py), started on first use;
# tests that need it are skipped, with the reason, only where it cannot run.
@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = start_cluster()
    if isinstance(cluster, str):
        pytest.skip(f"PostgreSQL tests skipped: {cluster}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """The URL of a fresh, empty database on the test cluster."""
    return postgres_cluster.new_database()
