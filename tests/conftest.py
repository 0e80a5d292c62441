from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(REPO))  # bench/: the benchmarks are not installed

# PostgreSQL fixtures (pg_server, pg_settings, pg_private_server): tests/pg_fixtures.py
pytest_plugins = ["pg_fixtures"]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED
