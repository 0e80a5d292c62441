"""pytest fixtures for a real PostgreSQL (``tests/pg.py``), loaded by ``conftest.py``.

- ``pg_server`` (session): one server shared by the session's tests, stopped at the end.
- ``pg_settings`` (function): a fresh database on it, as ``StoreSettings`` with backend
  postgresql (superuser ``postgres``, trust auth, a small pool); dropped after the test.
- ``pg_private_server`` (function): a server of the test's own, which it may stop and start
  (``stop("immediate")`` is a crash); ``pg_private_settings`` points a store at it.
- ``duck_settings`` (function): a DuckDB file in the test's temporary directory.

Tests skip only when no PostgreSQL binaries are installed (the reason says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import PgServer, PgUnavailable

from engine.store.config import StoreSettings


def _server() -> PgServer:
    try:
        return PgServer()
    except PgUnavailable as exc:
        pytest.skip(str(exc))


def settings_for(server: PgServer, dbname: str, tmp: Path, **overrides: object) -> StoreSettings:
    base = {
        "backend": "postgresql",
        "host": server.host,
        "port": server.port,
        "name": dbname,
        "user": "postgres",
        "password_env": "HFT_TEST_NO_PASSWORD",
        "connection_pool_size": 5,
        "min_pool_size": 1,
        "connect_timeout_s": 5.0,
        "query_timeout_s": 15.0,
        "duckdb_path": tmp / "hft.duckdb",
        "journal_dir": tmp / "journal",
        "source": f"test server {server.host}:{server.port}",
    }
    base.update(overrides)
    return StoreSettings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = _server()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_settings(pg_server: PgServer, tmp_path: Path) -> Iterator[StoreSettings]:
    if not pg_server.running:  # a test stopped the shared server: bring it back for the next
        pg_server.start()
    name = pg_server.create_database()
    try:
        yield settings_for(pg_server, name, tmp_path)
    finally:
        if pg_server.running:
            pg_server.drop_database(name)


@pytest.fixture
def pg_private_server() -> Iterator[PgServer]:
    server = _server()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_private_settings(pg_private_server: PgServer, tmp_path: Path) -> StoreSettings:
    name = pg_private_server.create_database("hft_db")
    return settings_for(pg_private_server, name, tmp_path)


@pytest.fixture
def duck_settings(tmp_path: Path) -> StoreSettings:
    return StoreSettings(backend="duckdb", duckdb_path=tmp_path / "hft.duckdb", journal_dir=tmp_path / "journal")
