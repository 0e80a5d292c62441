"""``DuckStore``: the store in one DuckDB file, the embedded default when no server is configured.

The same tables and the same read SQL as PostgreSQL (``engine.store.schema``, ``base.Store``), so
backtest, paper and a one-box live setup need no server. Batches are staged as Arrow tables and
inserted with one ``INSERT ... SELECT`` each (``ON CONFLICT`` as on PostgreSQL); DuckDB is
columnar, so there is no per-row work past building the Arrow columns. Time tables are plain
tables (no partitions); retention deletes old days. DuckDB allows one process per file: a file
held by another process is ``StoreLocked`` naming it and, when DuckDB says, the holder's pid.
Every method runs synchronously inside its coroutine: the store lives on its own thread
(``StoreService``) or in a CLI command.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.store.base import (
    DAY_NS,
    RISK_PASSED,
    Store,
    check_table,
    clean,
    newest_positions,
    order_states,
    to_datetime,
)
from engine.store.config import StoreSettings
from engine.store.errors import MigrationError, StoreError, StoreLocked
from engine.store.schema import (
    EVENT_TABLES,
    MIGRATIONS,
    ORDER_STATE_COLS,
    SCHEMA_MIGRATIONS_SQL,
    TIME_TABLES,
    orders_upsert_sql,
    positions_upsert_sql,
    q,
    store_columns,
)

_ARROW = {"I": pa.int64(), "F": pa.float64(), "S": pa.string(), "B": pa.bool_(), "A": pa.list_(pa.float64())}
_TS = pa.timestamp("us", tz="UTC")
_PID = re.compile(r"PID (\d+)")


def _times(ts: pa.Array) -> pa.Array:
    """ns timestamps as UTC microsecond timestamps (truncated, as on PostgreSQL)."""
    return pc.divide(ts, 1000).cast(pa.int64()).cast(_TS)


def _table(names: list[str], kinds: list[str], columns: list[Any]) -> pa.Table:
    arrays = []
    for kind, col in zip(kinds, columns, strict=True):
        arrays.append(pa.array(col, type=_TS if kind == "T" else _ARROW[kind]))
    return pa.Table.from_arrays(arrays, names=names)


def _event_arrow(event_table: str, rows: list[tuple], run_id: str | None) -> pa.Table:
    cols = EVENT_TABLES[event_table][1]
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(c, type=_ARROW[k]) for (_, k), c in zip(cols, columns, strict=True)]
    ts = arrays[1]
    run = pa.array([run_id] * len(rows), type=pa.string())
    return pa.Table.from_arrays([run, _times(ts), *arrays], names=store_columns(event_table))


class DuckStore(Store):
    backend = "duckdb"
    flavor = "duckdb"

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.path = Path(settings.duckdb_path)
        self._con: duckdb.DuckDBPyConnection | None = None

    # --- connection --------------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._con is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of DuckDB file {self.path}: {exc.strerror or exc}") from None
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                m = _PID.search(text)
                raise StoreLocked(str(self.path), int(m.group(1)) if m else None) from None
            raise StoreError(f"cannot open DuckDB file {self.path}: {text.splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open DuckDB file {self.path}: {str(exc).splitlines()[0]}") from None
        self._con.execute("SET TimeZone = 'UTC'")

    async def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            con.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreError(f"store {self.path} is not connected (call connect() first)")
        return self._con

    def _run(self, operation: str, sql: str, params: list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(sql, params) if params else self.con.execute(sql)
        except duckdb.Error as exc:
            raise StoreError(f"{operation} failed on {self.path}: {str(exc).splitlines()[0]}") from None

    def _rows(self, operation: str, sql: str, params: list[Any] | None = None) -> list[dict]:
        try:
            rel = self.con.sql(sql, params=params or None)
            return rel.to_arrow_table().to_pylist() if rel is not None else []
        except duckdb.Error as exc:
            raise StoreError(f"{operation} failed on {self.path}: {str(exc).splitlines()[0]}") from None

    async def _fetch(self, sql: str, *args: Any) -> list[dict]:
        return self._rows("query", sql, list(args))

    async def sql(self, text: str) -> tuple[list[str], list[tuple]]:
        try:
            rel = self.con.sql(text)
        except duckdb.Error as exc:
            raise StoreError(f"query failed on {self.path}: {str(exc).splitlines()[0]}") from None
        if rel is None:
            return ["status"], [("OK",)]
        tbl = rel.to_arrow_table()
        return tbl.column_names, [tuple(r.values()) for r in tbl.to_pylist()]

    def _transaction(self, operation: str, work: Any) -> Any:
        con = self.con
        con.begin()
        try:
            result = work()
        except BaseException:
            con.rollback()
            raise
        try:
            con.commit()
        except duckdb.Error as exc:
            raise StoreError(f"{operation} failed on {self.path}: {str(exc).splitlines()[0]}") from None
        return result

    # --- migrations ----------------------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        from engine.store.pg import check_history

        done: list[int] = []

        def work() -> None:
            self._run("migrate", SCHEMA_MIGRATIONS_SQL)
            rows = self._rows("migrate", "SELECT version, name, checksum, flavor FROM schema_migrations")
            applied = {r["version"]: r for r in rows}
            check_history(applied, "duckdb", str(self.path))
            for m in MIGRATIONS:
                if m.version in applied:
                    continue
                sql = m.sql("duckdb")
                if sql.strip():
                    self._run(f"migration {m.version}", sql)
                self._run(
                    "migrate",
                    "INSERT INTO schema_migrations (version, name, checksum, flavor) VALUES ($1, $2, $3, 'duckdb')",
                    [m.version, m.name, m.checksum("duckdb")],
                )
                done.append(m.version)

        try:
            self._transaction("migrate", work)
        except MigrationError:
            raise
        return done

    async def applied_migrations(self) -> list[dict]:
        exists = self._run(
            "status", "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchall()
        if not exists or not exists[0][0]:
            return []
        return await self._fetch(
            "SELECT version, name, checksum, flavor, applied_at FROM schema_migrations ORDER BY version"
        )

    # --- writes ------------------------------------------------------------------------------------
    def _insert(self, operation: str, sql: str, stage: pa.Table) -> int:
        con = self.con
        con.register("hft_stage", stage)
        try:
            rows = self._run(operation, sql).fetchall()
        finally:
            con.unregister("hft_stage")
        return int(rows[0][0]) if rows else 0

    async def write(self, table: str, rows: list[tuple], run_id: str) -> int:
        check_table(table)
        name = EVENT_TABLES[table][0]
        if table == "risk":
            rows = [r for r in rows if not r[RISK_PASSED]]  # refusals only
        if not rows:
            return 0
        cols = ", ".join(q(c) for c in store_columns(table))

        def work() -> int:
            if table == "positions":
                stage = _event_arrow(table, newest_positions(rows), run_id)
                return self._insert(f"write {name}", positions_upsert_sql("SELECT * FROM hft_stage"), stage)
            stage = _event_arrow(table, list(rows), run_id)
            n = self._insert(
                f"write {name}",
                f"INSERT INTO {name} ({cols}) SELECT {cols} FROM hft_stage ON CONFLICT DO NOTHING",
                stage,
            )
            if table == "orders":
                states = order_states(rows, run_id)
                names = [c for c, _ in ORDER_STATE_COLS]
                stage = _table(names, [k for _, k in ORDER_STATE_COLS], list(zip(*states, strict=True)))
                self._insert("write orders", orders_upsert_sql("SELECT * FROM hft_stage"), stage)
            return n

        return self._transaction(f"write {name}", work)

    async def copy_ticks(self, rows: list[tuple], run_id: str | None = None) -> int:
        if not rows:
            return 0
        stage = _event_arrow("market", rows, run_id)
        cols = ", ".join(q(c) for c in store_columns("market"))
        return self._insert(
            "copy market_data_ticks", f"INSERT INTO market_data_ticks ({cols}) SELECT {cols} FROM hft_stage", stage
        )

    async def copy_snapshots(self, rows: list[tuple]) -> int:
        if not rows:
            return 0
        columns = list(zip(*rows, strict=True))
        ts = pa.array(columns[0], type=pa.int64())
        depth = [max(len(b), len(a)) for b, a in zip(columns[4], columns[6], strict=True)]
        stage = pa.Table.from_arrays(
            [
                _times(ts), ts, pa.array(columns[1], pa.string()), pa.array(columns[2], pa.string()),
                pa.array(columns[3], pa.int64()), pa.array(depth, pa.int64()),
                *(pa.array([list(x) for x in columns[i]], type=_ARROW["A"]) for i in (4, 5, 6, 7)),
            ],
            names=["time", "ts_ns", "venue", "symbol", "data_seq", "depth", "bid_px", "bid_sz", "ask_px", "ask_sz"],
        )  # fmt: skip
        return self._insert(
            "copy order_book_snapshots", "INSERT INTO order_book_snapshots SELECT * FROM hft_stage", stage
        )

    async def delete_ticks(self, run_id: str, first_ns: int, last_ns: int) -> int:
        row = self._run(
            "delete market_data_ticks",
            "DELETE FROM market_data_ticks WHERE ts >= $1 AND ts <= $2 AND run_id = $3",
            [int(first_ns), int(last_ns), run_id],
        ).fetchall()
        return int(row[0][0]) if row else 0

    async def put_balances(self, venue: str, balances: dict[str, tuple[float, float]], ts_ns: int) -> None:
        if not balances:
            return
        assets = list(balances)
        free = [float(balances[a][0]) for a in assets]
        locked = [float(balances[a][1]) for a in assets]
        stage = pa.table(
            {
                "venue": pa.array([venue] * len(assets), pa.string()),
                "asset": pa.array(assets, pa.string()),
                "total": pa.array([f + lk for f, lk in zip(free, locked, strict=True)], pa.float64()),
                "free": pa.array(free, pa.float64()),
                "locked": pa.array(locked, pa.float64()),
                "updated_at": pa.array([to_datetime(ts_ns)] * len(assets), _TS),
                "updated_ns": pa.array([int(ts_ns)] * len(assets), pa.int64()),
            }
        )
        self._insert(
            "write balances",
            "INSERT INTO balances SELECT * FROM hft_stage ON CONFLICT (venue, asset) DO UPDATE SET "
            "total = EXCLUDED.total, free = EXCLUDED.free, locked = EXCLUDED.locked, "
            "updated_at = EXCLUDED.updated_at, updated_ns = EXCLUDED.updated_ns "
            "WHERE EXCLUDED.updated_ns >= balances.updated_ns",
            stage,
        )

    async def begin_run(
        self, run_id: str, name: str, mode: str, config_path: str, started_ns: int, manifest: dict
    ) -> None:
        self._run(
            "write strategy_runs",
            "INSERT INTO strategy_runs (run_id, name, mode, config_path, started_at, started_ns, status, "
            "code_version, manifest) VALUES ($1, $2, $3, $4, make_timestamptz($5), $6, 'running', $7, $8) "
            "ON CONFLICT (run_id) DO UPDATE SET name = EXCLUDED.name, mode = EXCLUDED.mode, "
            "config_path = EXCLUDED.config_path, started_at = EXCLUDED.started_at, "
            "started_ns = EXCLUDED.started_ns, code_version = EXCLUDED.code_version, manifest = EXCLUDED.manifest",
            [
                run_id, name, mode, config_path, int(started_ns) // 1000, int(started_ns),
                str(manifest.get("code_version") or ""), json.dumps(clean(manifest), default=str),
            ],
        )  # fmt: skip

    async def end_run(self, run_id: str, status: str, closed_ns: int, summary: dict | None) -> None:
        self._run(
            "write strategy_runs",
            "INSERT INTO strategy_runs (run_id, status, closed_at, closed_ns, summary) "
            "VALUES ($1, $2, make_timestamptz($3), $4, $5) "
            "ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, closed_at = EXCLUDED.closed_at, "
            "closed_ns = EXCLUDED.closed_ns, summary = EXCLUDED.summary",
            [
                run_id, status, int(closed_ns) // 1000, int(closed_ns),
                json.dumps(clean(summary), default=str) if summary is not None else None,
            ],
        )  # fmt: skip

    # --- partitions and retention ----------------------------------------------------------------
    async def ensure_partitions(self, first_ns: int, last_ns: int) -> None:
        return None  # one plain table per time table

    async def retention(self, older_than_days: int, now_ns: int, dry_run: bool = False) -> dict[str, list[str]]:
        """Delete the days that ended before ``now_ns - older_than_days``; returns those days."""
        limit = int(now_ns) - int(older_than_days) * DAY_NS
        limit -= limit % DAY_NS  # whole days only, as partitions and chunks are dropped
        out: dict[str, list[str]] = {}
        for table, col in zip(TIME_TABLES, ("ts", "ts_ns"), strict=True):
            days = self._run(
                "retention",
                f"SELECT DISTINCT strftime(time, '%Y-%m-%d') AS d FROM {table} WHERE {col} < $1 ORDER BY d",
                [limit],
            ).fetchall()
            out[table] = [d for (d,) in days]
            if not dry_run and days:
                self._run("retention", f"DELETE FROM {table} WHERE {col} < $1", [limit])
        return out

    # --- health --------------------------------------------------------------------------------
    async def health(self) -> dict:
        t0 = time.perf_counter()
        self._run("health check", "SELECT 1").fetchall()
        return {
            "backend": self.backend,
            "flavor": self.flavor,
            "where": str(self.path),
            "server_version": duckdb.__version__,
            "pool": {"size": 1, "in_use": 0, "free": 1, "max": 1},
            "ping_ms": round((time.perf_counter() - t0) * 1000, 3),
        }
