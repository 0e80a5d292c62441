"""The guide's SQL (operator-surface.md §8.3) verbatim through ``psql`` against our schema on a real
PostgreSQL, the guide's database scripts (§6.2, §7.3, §2.3) against it, and ``hft doctor``'s
database section.

As in the guide, the statements run as the application role ``hft_user`` (which owns the
schema: it ran the migrations), the ``pg_terminate_backend`` ones as ``postgres``.
``pg_stat_statements`` was installed by the superuser in its own schema, as a DBA would; the
migration adds the view that keeps the guide's pre-13 column names working."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import asyncpg
import pyarrow.parquet as pq
import pytest
from pg import PgServer
from store_rows import DAY, SEC, order, tick

from engine.store import StoreSettings, open_store

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
NOW = time.time_ns()


@pytest.fixture(scope="module")
def guide_db(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> StoreSettings:
    """A database as the guide operates it: ``hft_user`` owns and migrated it, with data."""
    pg_server.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hft_user') THEN "
        "CREATE ROLE hft_user LOGIN; END IF; END $$;"
    )
    name = pg_server.create_database()
    pg_server.psql(f'ALTER DATABASE "{name}" OWNER TO hft_user')
    pg_server.psql(
        "CREATE SCHEMA pgss; CREATE EXTENSION pg_stat_statements SCHEMA pgss; GRANT USAGE ON SCHEMA pgss TO hft_user; "
        "GRANT pg_read_all_stats TO hft_user;",
        dbname=name,
    )
    tmp = tmp_path_factory.mktemp("guide")
    settings = StoreSettings(
        backend="postgresql",
        host=pg_server.host,
        port=pg_server.port,
        name=name,
        user="hft_user",
        connection_pool_size=4,
        min_pool_size=1,
        duckdb_path=tmp / "x.duckdb",
        journal_dir=tmp / "journal",
    )

    async def seed() -> None:
        async with open_store(settings) as st:
            await st.migrate()
            rnd = random.Random(7)
            symbols = [f"S{i}-USDT" for i in range(40)] + ["BTC-USDT"]
            rows = [
                order(i, NOW - rnd.randrange(30 * DAY), f"c{i}", "filled", symbol=rnd.choice(symbols))
                for i in range(20_000)
            ]
            rows += [order(20_000 + i, NOW - i * SEC, f"btc{i}", "open", symbol="BTC-USDT") for i in range(20)]
            await st.write("orders", rows, "guide-run")
            await st.copy_ticks([tick(i, NOW - d * DAY) for i, d in enumerate((0, 1, 95, 120))], run_id="guide-run")
            await st.copy_snapshots([(NOW - 100 * DAY, "binance", "BTC-USDT", 1, [1.0], [1.0], [2.0], [1.0])])
            await st.sql("ANALYZE")

    asyncio.run(seed())
    return settings


def guide_psql(
    server: PgServer, db: str, sql: str, user: str = "hft_user", fmt: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``psql -h localhost -U <user> -d <db>`` with the statement on stdin (the guide's heredoc form)."""
    argv = [
        str(server.bindir / "psql"),
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        *fmt,
        "-h",
        server.host,
        "-p",
        str(server.port),
        "-U",
        user,
        "-d",
        db,
    ]
    return subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=120)


# every statement of operator-surface §8.3 that applies to a single server, verbatim ("hft_db" is
# the test database's name: the guide's filter names its database)
READ_ONLY = [
    "SELECT 1;",
    "SELECT count(*) FROM pg_stat_activity;",
    """SELECT pid, now() - pg_stat_activity.query_start AS duration, query
FROM pg_stat_activity
WHERE state = 'active'
ORDER BY duration DESC;""",
    "SELECT count(*) FROM pg_stat_activity WHERE datname = 'hft_db';",
    """SELECT pid, query, now() - query_start AS duration
FROM pg_stat_activity
WHERE state = 'active' AND query_start < now() - interval '10 seconds'
ORDER BY duration DESC;""",
    """SELECT pid, now() - query_start as duration, query
FROM pg_stat_activity
WHERE state = 'active' AND now() - query_start > interval '100 milliseconds'
ORDER BY duration DESC;""",
    """SELECT query, calls, total_time, mean_time, max_time
FROM pg_stat_statements
ORDER BY mean_time DESC
LIMIT 20;""",
    """SELECT schemaname, tablename, pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) AS size
FROM pg_tables
WHERE schemaname = 'public'
ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC;""",
    "SELECT count(*), state FROM pg_stat_activity GROUP BY state;",
    "SELECT pg_current_wal_lsn();",
]
MAINTENANCE = [
    "VACUUM FULL;",
    "VACUUM FULL market_data_ticks;",
    "ANALYZE market_data_ticks;",
]
TERMINATE_IDLE = [
    """SELECT pg_terminate_backend(pid)
FROM pg_stat_activity
WHERE datname = 'hft_db' AND state = 'idle' AND state_change < now() - interval '5 minutes';""",
    """SELECT pg_terminate_backend(pid)
FROM pg_stat_activity
WHERE datname = 'hft_db' AND state = 'idle' AND state_change < now() - interval '30 minutes';""",
]


@pytest.mark.parametrize("sql", READ_ONLY + MAINTENANCE, ids=lambda s: " ".join(s.split())[:60])
def test_guide_statement_runs_verbatim(pg_server: PgServer, guide_db: StoreSettings, sql: str) -> None:
    p = guide_psql(pg_server, guide_db.name, sql)
    assert p.returncode == 0, p.stderr
    assert "ERROR" not in p.stderr


def test_guide_autovacuum_statement_on_plain_postgresql(pg_server: PgServer, guide_db: StoreSettings) -> None:
    """PostgreSQL takes no storage parameters on a partitioned table (it has no storage of its own):
    the guide's statement (written for a TimescaleDB hypertable) fails with a clear error, and is
    moot: autovacuum is on for every partition unless turned off, and the same statement per
    partition works."""
    sql = "ALTER TABLE market_data_ticks SET (autovacuum_enabled = true);"
    p = guide_psql(pg_server, guide_db.name, sql)
    assert p.returncode != 0 and 'unrecognized parameter "autovacuum_enabled"' in p.stderr
    off = guide_psql(
        pg_server,
        guide_db.name,
        "SELECT count(*) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid "
        "WHERE i.inhparent = 'market_data_ticks'::regclass AND 'autovacuum_enabled=false' = ANY(c.reloptions);",
        fmt=("-At",),
    )
    assert off.stdout.strip() == "0"
    today = time.strftime("%Y%m%d", time.gmtime(NOW // SEC))
    p = guide_psql(pg_server, guide_db.name, sql.replace("market_data_ticks", f"market_data_ticks_p{today}"))
    assert p.returncode == 0, p.stderr


def test_guide_pg_stat_statements_query_reads_the_renamed_columns(pg_server: PgServer, guide_db: StoreSettings) -> None:
    p = guide_psql(pg_server, guide_db.name, READ_ONLY[6], fmt=("-A", "-F", "|"))
    assert p.returncode == 0, p.stderr
    header, *rows = p.stdout.splitlines()
    assert header == "query|calls|total_time|mean_time|max_time" and len(rows) >= 2  # rows + "(N rows)"


def test_guide_drop_chunks_on_plain_postgresql(pg_server: PgServer, guide_db: StoreSettings) -> None:
    old_day = time.strftime("%Y%m%d", time.gmtime((NOW - 120 * DAY) // SEC))
    p = guide_psql(pg_server, guide_db.name, "SELECT drop_chunks('market_data_ticks', INTERVAL '90 days');")
    assert p.returncode == 0, p.stderr
    assert f"market_data_ticks_p{old_day}" in p.stdout
    p = guide_psql(pg_server, guide_db.name, "SELECT drop_chunks('order_book_snapshots', INTERVAL '90 days');")
    assert p.returncode == 0, p.stderr
    p = guide_psql(
        pg_server,
        guide_db.name,
        "SELECT count(*) FROM market_data_ticks WHERE time < now() - interval '90 days';",
        fmt=("-At",),
    )
    assert p.stdout.strip() == "0"


def test_guide_plan_check_uses_the_index(pg_server: PgServer, guide_db: StoreSettings) -> None:
    sql = "EXPLAIN ANALYZE SELECT * FROM orders WHERE symbol = 'BTC-USDT' AND created_at > now() - interval '1 hour';"
    p = guide_psql(pg_server, guide_db.name, sql)
    assert p.returncode == 0, p.stderr
    assert "idx_orders_symbol_created" in p.stdout and "Seq Scan" not in p.stdout, p.stdout
    # the guide's fix for a Seq Scan: our migration made the index, so only "already exists" stops it
    p = guide_psql(
        pg_server, guide_db.name, "CREATE INDEX CONCURRENTLY idx_orders_symbol_created ON orders(symbol, created_at);"
    )
    assert p.returncode != 0 and 'relation "idx_orders_symbol_created" already exists' in p.stderr
    variant = "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_symbol_created ON orders(symbol, created_at);"
    p = guide_psql(pg_server, guide_db.name, variant)
    assert p.returncode == 0, p.stderr


def test_guide_terminate_statements_on_an_idle_connection(pg_server: PgServer, guide_db: StoreSettings) -> None:
    async def idle_pid() -> tuple[asyncpg.Connection, int]:
        conn = await asyncpg.connect(host=pg_server.host, port=pg_server.port, user="hft_user", database=guide_db.name)
        return conn, await conn.fetchval("SELECT pg_backend_pid()")

    loop = asyncio.new_event_loop()
    try:
        conn, pid = loop.run_until_complete(idle_pid())
        for sql in TERMINATE_IDLE:  # nothing has been idle for minutes: they run and end nothing
            p = guide_psql(pg_server, guide_db.name, sql.replace("'hft_db'", f"'{guide_db.name}'"), user="postgres")
            assert p.returncode == 0, p.stderr
        p = guide_psql(pg_server, guide_db.name, f"SELECT pg_terminate_backend({pid});", user="postgres", fmt=("-At",))
        assert p.returncode == 0 and p.stdout.strip() == "t", p.stderr

        def gone() -> bool:
            q = guide_psql(
                pg_server, guide_db.name, f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid};", fmt=("-At",)
            )
            return q.stdout.strip() == "0"

        deadline = time.monotonic() + 10
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone()
        loop.run_until_complete(conn.close(timeout=2))
    finally:
        loop.close()


def test_guide_standby_query_returns_nulls_on_a_primary(pg_server: PgServer, guide_db: StoreSettings) -> None:
    p = guide_psql(
        pg_server,
        guide_db.name,
        "SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn();",
        fmt=("-A", "-t", "-F", "|"),
    )
    assert p.returncode == 0 and p.stdout.strip() == "|", p.stdout


# --- the scripts ---------------------------------------------------------------------------------
def _script_env(s: StoreSettings) -> dict[str, str]:
    return {
        **os.environ,
        "HFT_DB_HOST": s.host,
        "HFT_DB_PORT": str(s.port),
        "HFT_DB_NAME": s.name,
        "HFT_DB_USER": s.user,
    }


def test_check_replication_lag_on_a_server_without_standby(guide_db: StoreSettings, tmp_path: Path) -> None:
    p = subprocess.run(
        [str(SCRIPTS / "check_replication_lag.sh")],
        env=_script_env(guide_db),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert "current WAL position" in p.stdout and "no standby connected" in p.stdout
    # the guide's standby-host pointed at a primary: its positions are NULL, said in words
    p = subprocess.run(
        [str(SCRIPTS / "check_replication_lag.sh"), "--standby-host", guide_db.host],
        env=_script_env(guide_db),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and "not a standby" in p.stdout, p.stdout + p.stderr


def test_archive_market_data_exports_then_drops(
    pg_server: PgServer, pg_settings: StoreSettings, tmp_path: Path
) -> None:
    days = (0, 1, 91, 91, 120)

    async def seed() -> None:
        async with open_store(pg_settings) as st:
            await st.migrate()
            await st.copy_ticks([tick(i, NOW - d * DAY) for i, d in enumerate(days)], run_id="r")
            await st.copy_snapshots([(NOW - 100 * DAY, "binance", "BTC-USDT", 9, [1.0], [1.0], [2.0], [1.0])])

    asyncio.run(seed())
    env = _script_env(pg_settings)
    args = [str(SCRIPTS / "archive_market_data.sh"), "--older-than-days=90", "--out", "arch", "--backend", "postgresql"]
    p = subprocess.run([*args, "--dry-run"], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("would archive") == 3
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    files = sorted((tmp_path / "arch").rglob("*.parquet"))
    assert [f.parent.name for f in files] == ["market_data_ticks", "market_data_ticks", "order_book_snapshots"]
    exported = sorted(
        s for f in files if f.parent.name == "market_data_ticks" for s in pq.read_table(f).column("seq").to_pylist()
    )
    assert exported == [2, 3, 4]  # every old tick is in the archive
    snap = pq.read_table(files[-1]).to_pylist()
    assert snap[0]["data_seq"] == 9 and snap[0]["bid_px"] == [1.0]
    left = pg_server.psql(
        "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM market_data_ticks", dbname=pg_settings.name
    )
    assert " 0,1" in left.stdout
    old_day = time.strftime("%Y%m%d", time.gmtime((NOW - 120 * DAY) // SEC))
    parts = pg_server.psql(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'market_data_ticks'::regclass "
        f"AND inhrelid::regclass::text LIKE '%{old_day}'",
        dbname=pg_settings.name,
    )
    assert " 0\n" in parts.stdout


def test_check_database_and_doctor_against_the_server(
    pg_server: PgServer, guide_db: StoreSettings, tmp_path: Path
) -> None:
    p = subprocess.run(
        [str(SCRIPTS / "check_database.sh"), "--backend", "postgresql"],
        env=_script_env(guide_db),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = p.stdout.splitlines()
    for name in ("reachable", "connections", "long-running queries", "slow queries", "disk", "table bloat", "schema"):
        assert any(
            line.split(":")[0].split(None, 1)[1] == name
            for line in lines
            if line[:4] in ("PASS", "WARN", "FAIL", "SKIP")
        ), name
    assert "PASS reachable" in p.stdout and "PASS schema: current" in p.stdout
    assert p.returncode == (1 if any(line.startswith(("WARN", "FAIL")) for line in lines) else 0)
    cfg = tmp_path / "run.json"
    cfg.write_text(
        json.dumps(
            {
                "database": {
                    "backend": "postgresql",
                    "host": guide_db.host,
                    "port": guide_db.port,
                    "name": guide_db.name,
                    "user": "hft_user",
                }
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_DB_")}
    doctor = [
        str(REPO / ".venv" / "bin" / "hft"),
        "doctor",
        "--only",
        "database",
        "--url",
        "http://127.0.0.1:9",
        "--config",
        str(cfg),
        "--json",
    ]
    p = subprocess.run(doctor, env=env, capture_output=True, text=True, timeout=120)
    assert '"reachable"' in p.stdout and '"connections"' in p.stdout, p.stdout + p.stderr
    down = replace(guide_db, port=1)
    cfg.write_text(json.dumps({"database": {"backend": "postgresql", "host": down.host, "port": down.port}}))
    p = subprocess.run(doctor, env=env, capture_output=True, text=True, timeout=120)
    assert "Database connection failed: could not connect to server 127.0.0.1:1" in p.stdout, p.stdout
    assert p.returncode == 1
