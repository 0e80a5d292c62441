"""The store's schema and config without a server: columns follow the event log, migrations are
frozen and checksummed, the TimescaleDB path's SQL, and the ``database`` config section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import Section
from engine.errors import ConfigError
from engine.eventlog_schema import TABLES
from engine.store import StoreSettings, load_store_settings, parse_store
from engine.store.errors import MigrationError
from engine.store.pg import check_history
from engine.store.schema import EVENT_TABLES, MIGRATIONS, TIME_TABLES, timescale_retention_sql

KIND = {"int64": "I", "double": "F", "string": "S", "bool": "B"}


@pytest.mark.parametrize("table", sorted(EVENT_TABLES))
def test_store_tables_mirror_every_event_log_column(table: str) -> None:
    # a new event-log column needs a new migration: this fails until one is written
    expected = tuple((f.name, KIND[str(f.type)]) for f in TABLES[table])
    assert EVENT_TABLES[table][1] == expected


def test_migrations_are_versioned_and_checksums_are_stable() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(versions) == list(range(1, len(versions) + 1))
    for flavor in ("duckdb", "postgresql", "timescaledb"):
        for m in MIGRATIONS:
            assert m.checksum(flavor) == m.checksum(flavor) and len(m.checksum(flavor)) == 64
    core = MIGRATIONS[0].sql("postgresql")
    assert "CREATE INDEX IF NOT EXISTS idx_orders_symbol_created ON orders(symbol, created_at);" in core
    assert "UNIQUE (venue, symbol, trade_id, client_order_id)" in core


def test_plain_postgresql_partitions_by_day_and_timescale_makes_hypertables() -> None:
    plain = MIGRATIONS[1].sql("postgresql")
    assert plain.count("PARTITION BY RANGE (time)") == 2 and "timescaledb" not in plain
    ts = MIGRATIONS[1].sql("timescaledb")
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb;" in ts
    for table in TIME_TABLES:
        assert f"SELECT create_hypertable('{table}', 'time', chunk_time_interval => INTERVAL '1 day'" in ts
        assert f"SELECT add_retention_policy('{table}', INTERVAL '90 days', if_not_exists => TRUE);" in ts
    assert "PARTITION BY" not in ts
    # the drop_chunks shim exists only where TimescaleDB's own function does not
    assert "FUNCTION drop_chunks(relation regclass, older_than interval)" in MIGRATIONS[2].sql("postgresql")
    assert MIGRATIONS[2].sql("timescaledb") == MIGRATIONS[2].sql("duckdb") == ""
    sql = timescale_retention_sql("market_data_ticks", 1_700_000_000_000_000_000)
    assert sql == "SELECT drop_chunks('market_data_ticks', older_than => to_timestamp(1700000000.0))::text AS name"
    with pytest.raises(ValueError):
        timescale_retention_sql("orders; DROP TABLE x", 0)


def test_history_check_refuses_an_edited_or_unknown_migration() -> None:
    good = {
        m.version: {"name": m.name, "checksum": m.checksum("postgresql"), "flavor": "postgresql"} for m in MIGRATIONS
    }
    check_history(good, "postgresql", "db")
    edited = {**good, 1: {**good[1], "checksum": "0" * 64}}
    with pytest.raises(MigrationError, match=r"migration 1 \(core tables\) was applied with checksum 000000000000"):
        check_history(edited, "postgresql", "db")
    newer = {**good, 99: {"name": "future", "checksum": "x", "flavor": "postgresql"}}
    with pytest.raises(MigrationError, match=r"migration 99 .* newer version"):
        check_history(newer, "postgresql", "db")


def _parse(data: dict | None, root: Path = Path("/runs")) -> StoreSettings:
    return parse_store(None if data is None else Section(data, "run.json", "database"), root)


def test_database_section_defaults_to_embedded_duckdb(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HFT_DB_HOST", "HFT_DB_PORT", "HFT_DB_NAME", "HFT_DB_USER"):
        monkeypatch.delenv(var, raising=False)
    s = _parse(None)
    assert (
        s.backend == "duckdb" and s.duckdb_path == Path("/runs/hft.duckdb") and s.journal_dir == Path("/runs/journal")
    )
    pg = _parse({"backend": "postgresql", "connection_pool_size": 50, "market_data": {"snapshot_depth": 5}})
    assert (pg.host, pg.port, pg.name, pg.user, pg.connection_pool_size) == (
        "localhost",
        5432,
        "hft_db",
        "hft_user",
        50,
    )
    assert pg.market_data.snapshot_depth == 5 and pg.retention_days == 90
    assert pg.dsn() == "postgresql://hft_user@localhost:5432/hft_db"


def test_database_section_refuses_typos_passwords_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"run.json: database.conection_pool_size: .*connection_pool_size"):
        _parse({"conection_pool_size": 5})
    with pytest.raises(ConfigError, match=r"database.market_data.tick: "):
        _parse({"market_data": {"tick": True}})
    monkeypatch.setenv("HFT_DB_PASSWORD", "s3cret")
    with pytest.raises(ConfigError, match=r"database\.password: passwords must not be stored") as info:
        _parse({"password": "s3cret"})
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigError, match=r"database\.backend: must be one of postgresql, duckdb, none"):
        _parse({"backend": "mysql"})
    with pytest.raises(ConfigError, match=r"database\.min_pool_size: must be <= connection_pool_size"):
        _parse({"connection_pool_size": 2, "min_pool_size": 3})
    s = _parse({"backend": "postgresql"})
    assert s.password() == "s3cret" and "s3cret" not in s.dsn()


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFT_DB_HOST", "db.internal")
    monkeypatch.setenv("HFT_DB_PORT", "6543")
    monkeypatch.setenv("HFT_DB_NAME", "other")
    monkeypatch.setenv("HFT_DB_USER", "ops")
    s = _parse({"backend": "postgresql", "host": "localhost", "port": 5432})
    assert (s.host, s.port, s.name, s.user) == ("db.internal", 6543, "other", "ops")
    monkeypatch.setenv("HFT_DB_PORT", "nope")
    with pytest.raises(ConfigError, match=r"\$HFT_DB_PORT: must be a port number"):
        _parse({})


def test_load_store_settings_reads_a_run_config(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HFT_DB_HOST", "HFT_DB_PORT", "HFT_DB_NAME", "HFT_DB_USER"):
        monkeypatch.delenv(var, raising=False)
    shipped = load_store_settings(repo / "config" / "production.json")
    assert shipped.backend in ("duckdb", "postgresql")
    cfg = tmp_path / "run.json"
    (tmp_path / "out").mkdir()  # runs_root resolves as the run config's does (engine.config.resolve_path)
    cfg.write_text(json.dumps({"output": {"runs_root": "out"}, "database": {"duckdb_path": "x.duckdb"}}))
    s = load_store_settings(cfg)
    assert s.duckdb_path == (tmp_path / "out" / "x.duckdb") and s.source == str(cfg)
    with pytest.raises(ConfigError, match="file not found"):
        load_store_settings(tmp_path / "missing.json")
