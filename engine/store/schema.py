"""The store's tables, the same in PostgreSQL and DuckDB, and the migrations that create them.

Event-log tables mirror every column of ``engine.eventlog_schema.TABLES`` plus ``run_id`` and
``time`` (``ts`` as a timestamp). The column lists below are frozen literals, not derived from the
event-log schema at import: a migration's text must never change once applied (its checksum is
checked on every ``migrate``), so a new event-log column means a new migration, and
``tests/test_store_schema.py`` fails until one is written.

A migration's SQL depends on the *flavor* of the database: ``duckdb``, ``postgresql`` (plain:
time tables range-partitioned by day, a ``drop_chunks`` shim) or ``timescaledb`` (hypertables
with a retention policy). The flavor is decided once, when migration 2 is first applied, and
recorded with each migration, so a database keeps its flavor even if TimescaleDB is installed
later. Checksums are SHA-256 of the SQL for the recorded flavor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

FLAVORS = ("duckdb", "postgresql", "timescaledb")

# --- columns --------------------------------------------------------------------------------------
# kinds: I int64, F double, S text, B bool
ORDER_EVENT_COLS = (
    ("seq", "I"), ("ts", "I"), ("event", "S"), ("strategy_id", "S"), ("venue", "S"), ("symbol", "S"),
    ("client_order_id", "S"), ("venue_order_id", "S"), ("side", "S"), ("order_type", "S"), ("tif", "S"),
    ("price", "F"), ("qty", "F"), ("filled_qty", "F"), ("leaves_qty", "F"), ("status", "S"), ("reason", "S"),
    ("code", "I"), ("ts_tick", "I"), ("ts_decided", "I"), ("ts_sent", "I"), ("ts_acked", "I"), ("ts_venue", "I"),
    ("mid", "F"), ("post_only", "B"),
)  # fmt: skip
FILL_COLS = (
    ("seq", "I"), ("ts", "I"), ("ts_event", "I"), ("strategy_id", "S"), ("venue", "S"), ("symbol", "S"),
    ("client_order_id", "S"), ("venue_order_id", "S"), ("trade_id", "S"), ("side", "S"), ("price", "F"),
    ("qty", "F"), ("notional", "F"), ("fee", "F"), ("fee_asset", "S"), ("liquidity", "S"), ("order_price", "F"),
    ("mid_at_decision", "F"), ("mid_at_fill", "F"), ("ts_tick", "I"), ("ts_decided", "I"), ("ts_sent", "I"),
    ("ts_acked", "I"), ("position_after", "F"), ("realized_pnl", "F"),
)  # fmt: skip
POSITION_COLS = (
    ("seq", "I"), ("ts", "I"), ("strategy_id", "S"), ("venue", "S"), ("symbol", "S"), ("position", "F"),
    ("avg_price", "F"), ("realized_pnl", "F"), ("unrealized_pnl", "F"), ("fees", "F"), ("mark_price", "F"),
    ("reason", "S"),
)  # fmt: skip
RISK_COLS = (
    ("seq", "I"), ("ts", "I"), ("strategy_id", "S"), ("venue", "S"), ("symbol", "S"), ("client_order_id", "S"),
    ("check", "S"), ("passed", "B"), ("reason", "S"), ("value", "F"), ("limit", "F"),
)  # fmt: skip
MARKET_COLS = (
    ("seq", "I"), ("ts", "I"), ("ts_event", "I"), ("venue", "S"), ("symbol", "S"), ("bid", "F"), ("ask", "F"),
    ("bid_size", "F"), ("ask_size", "F"), ("mid", "F"), ("data_seq", "I"), ("feed_latency_ns", "I"),
)  # fmt: skip
INCIDENT_COLS = (
    ("seq", "I"), ("ts", "I"), ("venue", "S"), ("symbol", "S"), ("kind", "S"), ("detail", "S"), ("value", "F"),
)  # fmt: skip
RECONCILE_COLS = (
    ("seq", "I"), ("ts", "I"), ("venue", "S"), ("symbol", "S"), ("item", "S"), ("action", "S"),
    ("client_order_id", "S"), ("venue_order_id", "S"), ("local_value", "F"), ("venue_value", "F"), ("detail", "S"),
)  # fmt: skip

#: event-log table -> (store table, its event-log columns, the columns of its key)
EVENT_TABLES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "orders": ("order_events", ORDER_EVENT_COLS),
    "fills": ("fills", FILL_COLS),
    "positions": ("positions", POSITION_COLS),
    "risk": ("risk_violations", RISK_COLS),
    "incidents": ("incidents", INCIDENT_COLS),
    "reconcile": ("reconciliations", RECONCILE_COLS),
    "market": ("market_data_ticks", MARKET_COLS),
}
#: tables ``Store.write`` takes (market rows go through ``copy_ticks``)
WRITE_TABLES = ("orders", "fills", "positions", "risk", "incidents", "reconcile")

#: the current state of each order, upserted from its events
ORDER_STATE_COLS = (
    ("venue", "S"), ("client_order_id", "S"), ("venue_order_id", "S"), ("run_id", "S"), ("strategy_id", "S"),
    ("symbol", "S"), ("side", "S"), ("order_type", "S"), ("tif", "S"), ("price", "F"), ("qty", "F"),
    ("filled_qty", "F"), ("leaves_qty", "F"), ("status", "S"), ("reason", "S"), ("post_only", "B"),
    ("created_at", "T"), ("updated_at", "T"), ("created_ns", "I"), ("updated_ns", "I"), ("last_seq", "I"),
)  # fmt: skip
SNAPSHOT_COLS = (
    ("time", "T"), ("ts_ns", "I"), ("venue", "S"), ("symbol", "S"), ("data_seq", "I"), ("depth", "I"),
    ("bid_px", "A"), ("bid_sz", "A"), ("ask_px", "A"), ("ask_sz", "A"),
)  # fmt: skip
#: the tables partitioned by day (plain PostgreSQL) or hypertables (TimescaleDB)
TIME_TABLES = ("market_data_ticks", "order_book_snapshots")
#: every table the store owns, in creation order (``hft db status`` counts them)
ALL_TABLES = (
    "strategy_runs", "order_events", "orders", "fills", "positions", "balances", "risk_violations",
    "incidents", "reconciliations", "market_data_ticks", "order_book_snapshots",
)  # fmt: skip

_TYPES = {
    "postgresql": {"I": "BIGINT", "F": "DOUBLE PRECISION", "S": "TEXT", "B": "BOOLEAN", "T": "TIMESTAMPTZ",
                   "A": "DOUBLE PRECISION[]", "J": "JSONB"},
    "duckdb": {"I": "BIGINT", "F": "DOUBLE", "S": "TEXT", "B": "BOOLEAN", "T": "TIMESTAMPTZ", "A": "DOUBLE[]",
               "J": "JSON"},
}  # fmt: skip


def q(name: str) -> str:
    """A quoted identifier: the event log has columns named ``check`` and ``limit``."""
    return f'"{name}"'


def store_columns(event_table: str) -> list[str]:
    """The store table's columns in the order ``base.event_rows`` produces them."""
    return ["run_id", "time", *(c for c, _ in EVENT_TABLES[event_table][1])]


def _cols(flavor: str, cols: tuple[tuple[str, str], ...], not_null: tuple[str, ...] = ()) -> str:
    types = _TYPES["duckdb" if flavor == "duckdb" else "postgresql"]
    return ",\n  ".join(f"{q(c)} {types[k]}{' NOT NULL' if c in not_null else ''}" for c, k in cols)


def _event_table(flavor: str, event_table: str, tail: str) -> str:
    name, cols = EVENT_TABLES[event_table]
    body = _cols(flavor, (("run_id", "S"), ("time", "T"), *cols), ("run_id", "time", "seq", "ts"))
    return f"CREATE TABLE IF NOT EXISTS {name} (\n  {body}{tail}\n);"


def _core(flavor: str) -> str:
    t = _TYPES["duckdb" if flavor == "duckdb" else "postgresql"]
    parts = [
        f"""CREATE TABLE IF NOT EXISTS strategy_runs (
  run_id TEXT PRIMARY KEY,
  name TEXT,
  mode TEXT,
  config_path TEXT,
  started_at TIMESTAMPTZ,
  closed_at TIMESTAMPTZ,
  started_ns BIGINT,
  closed_ns BIGINT,
  status TEXT,
  code_version TEXT,
  manifest {t["J"]},
  summary {t["J"]}
);""",
        _event_table(flavor, "orders", ",\n  PRIMARY KEY (run_id, seq)"),
        f"CREATE TABLE IF NOT EXISTS orders (\n  {_cols(flavor, ORDER_STATE_COLS, ('venue', 'client_order_id'))},"
        "\n  PRIMARY KEY (venue, client_order_id)\n);",
        "CREATE INDEX IF NOT EXISTS idx_orders_symbol_created ON orders(symbol, created_at);",
        "CREATE INDEX IF NOT EXISTS idx_orders_venue_status ON orders(venue, status);",
        _event_table(flavor, "fills", ",\n  UNIQUE (venue, symbol, trade_id, client_order_id)"),
        "CREATE INDEX IF NOT EXISTS idx_fills_venue_symbol_ts ON fills(venue, symbol, ts_event);",
        _event_table(flavor, "positions", ",\n  PRIMARY KEY (strategy_id, venue, symbol)"),
        f"""CREATE TABLE IF NOT EXISTS balances (
  venue TEXT NOT NULL,
  asset TEXT NOT NULL,
  total {t["F"]},
  free {t["F"]},
  locked {t["F"]},
  updated_at TIMESTAMPTZ,
  updated_ns BIGINT,
  PRIMARY KEY (venue, asset)
);""",
        _event_table(flavor, "risk", ",\n  PRIMARY KEY (run_id, seq)"),
        _event_table(flavor, "incidents", ",\n  PRIMARY KEY (run_id, seq)"),
        _event_table(flavor, "reconcile", ",\n  PRIMARY KEY (run_id, seq)"),
    ]
    return "\n".join(parts)


def _time_tables(flavor: str) -> str:
    cols = (("run_id", "S"), ("time", "T"), *MARKET_COLS)
    ticks = _cols(flavor, cols, ("time", "ts"))
    snaps = _cols(flavor, SNAPSHOT_COLS, ("time", "ts_ns"))
    if flavor == "duckdb":
        # no ART index: it slows bulk inserts several-fold and DuckDB's zone maps prune by time anyway
        return (
            f"CREATE TABLE IF NOT EXISTS market_data_ticks (\n  {ticks}\n);\n"
            f"CREATE TABLE IF NOT EXISTS order_book_snapshots (\n  {snaps}\n);"
        )
    index = (
        "CREATE INDEX IF NOT EXISTS idx_ticks_venue_symbol_time ON market_data_ticks(venue, symbol, time);\n"
        "CREATE INDEX IF NOT EXISTS idx_snapshots_venue_symbol_time ON order_book_snapshots(venue, symbol, time);"
    )
    if flavor == "timescaledb":
        return (
            "CREATE EXTENSION IF NOT EXISTS timescaledb;\n"
            f"CREATE TABLE IF NOT EXISTS market_data_ticks (\n  {ticks}\n);\n"
            f"CREATE TABLE IF NOT EXISTS order_book_snapshots (\n  {snaps}\n);\n"
            "SELECT create_hypertable('market_data_ticks', 'time', chunk_time_interval => INTERVAL '1 day', "
            "if_not_exists => TRUE);\n"
            "SELECT create_hypertable('order_book_snapshots', 'time', chunk_time_interval => INTERVAL '1 day', "
            "if_not_exists => TRUE);\n"
            f"{index}\n"
            "SELECT add_retention_policy('market_data_ticks', INTERVAL '90 days', if_not_exists => TRUE);\n"
            "SELECT add_retention_policy('order_book_snapshots', INTERVAL '90 days', if_not_exists => TRUE);"
        )
    return (
        f"CREATE TABLE IF NOT EXISTS market_data_ticks (\n  {ticks}\n) PARTITION BY RANGE (time);\n"
        f"CREATE TABLE IF NOT EXISTS order_book_snapshots (\n  {snaps}\n) PARTITION BY RANGE (time);\n"
        f"{index}"
    )


# The guide's `SELECT drop_chunks('market_data_ticks', INTERVAL '90 days');` (TimescaleDB 2.x order)
# on plain PostgreSQL: drops the day partitions (named <table>_pYYYYMMDD) whose whole day ended
# before now() - older_than, as TimescaleDB drops whole chunks, and returns their names.
DROP_CHUNKS_SQL = r"""CREATE OR REPLACE FUNCTION drop_chunks(relation regclass, older_than interval)
RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE
  part record;
  day_end timestamptz;
BEGIN
  FOR part IN
    SELECT c.oid::regclass::text AS name, c.relname
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = relation AND c.relname ~ '_p[0-9]{8}$'
    ORDER BY c.relname
  LOOP
    day_end := to_timestamp(right(part.relname, 8), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC' + INTERVAL '1 day';
    IF day_end <= now() - older_than THEN
      EXECUTE format('DROP TABLE %s', part.name);
      RETURN NEXT part.name;
    END IF;
  END LOOP;
END
$fn$;"""


def _drop_chunks(flavor: str) -> str:
    return DROP_CHUNKS_SQL if flavor == "postgresql" else ""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql_for: Callable[[str], str]

    def sql(self, flavor: str) -> str:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown database flavor {flavor!r}")
        return self.sql_for(flavor)

    def checksum(self, flavor: str) -> str:
        return hashlib.sha256(self.sql(flavor).encode()).hexdigest()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "core tables", _core),
    Migration(2, "time tables", _time_tables),
    Migration(3, "drop_chunks shim", _drop_chunks),
)

#: the bookkeeping table, created before any migration (never itself migrated)
SCHEMA_MIGRATIONS_SQL = """CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  checksum TEXT NOT NULL,
  flavor TEXT NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);"""


def partition_name(table: str, day: str) -> str:
    """``market_data_ticks_p20261207`` for day ``2026-12-07``."""
    return f"{table}_p{day.replace('-', '')}"


def timescale_retention_sql(table: str, cutoff_ns: int) -> str:
    """What the retention job runs on TimescaleDB: the hypertable's own drop of the chunks that end
    before ``cutoff_ns`` (an absolute time, so a test or a catch-up run can pass its own now)."""
    if table not in TIME_TABLES:
        raise ValueError(f"{table!r} is not a time table")
    return f"SELECT drop_chunks('{table}', older_than => to_timestamp({int(cutoff_ns) / 1e9!r}))::text AS name"


MIGRATE_LOCK = 0x48465431  # "HFT1": pg_advisory_lock key held while migrating
PARTITION_LOCK = 0x48465432  # held (per transaction) while creating or dropping partitions


def _newer(a: str, b: str) -> str:
    return f"(EXCLUDED.{a} > {{t}}.{a} OR (EXCLUDED.{a} = {{t}}.{a} AND EXCLUDED.{b} > {{t}}.{b}))"


def orders_upsert_sql(source: str) -> str:
    """Upsert ``orders`` from ``source`` (a SELECT of ORDER_STATE_COLS): an event replaces the stored
    state only when it is not older by (updated_ns, last_seq); ``created`` keeps the earliest; a
    venue order id once known is never blanked."""
    cols = [c for c, _ in ORDER_STATE_COLS]
    newer = _newer("updated_ns", "last_seq").format(t="orders")
    sets = []
    for c in cols:
        if c in ("venue", "client_order_id"):
            continue
        if c in ("created_at", "created_ns"):
            sets.append(f"{q(c)} = LEAST(orders.{q(c)}, EXCLUDED.{q(c)})")
        elif c == "venue_order_id":
            sets.append(
                f"{q(c)} = CASE WHEN {newer} AND coalesce(EXCLUDED.{q(c)}, '') <> '' "
                f"THEN EXCLUDED.{q(c)} ELSE orders.{q(c)} END"
            )
        else:
            sets.append(f"{q(c)} = CASE WHEN {newer} THEN EXCLUDED.{q(c)} ELSE orders.{q(c)} END")
    return (
        f"INSERT INTO orders ({', '.join(q(c) for c in cols)}) {source} "
        f"ON CONFLICT (venue, client_order_id) DO UPDATE SET {', '.join(sets)}"
    )


def positions_upsert_sql(source: str) -> str:
    """Upsert ``positions`` (current state per strategy, venue, symbol): newest (ts, seq) wins."""
    cols = ["run_id", "time", *(c for c, _ in POSITION_COLS)]
    key = ("strategy_id", "venue", "symbol")
    sets = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in cols if c not in key)
    return (
        f"INSERT INTO positions ({', '.join(q(c) for c in cols)}) {source} "
        f"ON CONFLICT (strategy_id, venue, symbol) DO UPDATE SET {sets} "
        f"WHERE {_newer('ts', 'seq').format(t='positions')}"
    )
