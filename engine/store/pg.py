"""``PgStore``: the store on PostgreSQL (TimescaleDB when the server has it), through an asyncpg pool.

- The pool holds ``connection_pool_size`` connections at most (the guide's §7.2 key), opened
  within ``connect_timeout_s``; every statement runs under ``query_timeout_s`` (asyncpg cancels
  it server-side). A refused or lost connection is ``StoreUnavailable`` (the guide's
  ``Database connection failed: could not connect to server ...``), a statement past its timeout
  ``StoreTimeout`` (``Database query timeout: <operation> ...``). The pool replaces dead
  connections itself, so a store outlives a server restart.
- Event tables are written with one ``INSERT ... SELECT FROM unnest($1::type[], ...)`` per batch:
  one round trip, ``ON CONFLICT`` for idempotence, and the status line gives the rows stored.
- Ticks and snapshots go through binary COPY (``copy_records_to_table``) into day partitions made
  before the batch (``ensure_partitions``, cached per process, serialised across processes by an
  advisory lock). ``time`` is computed from ``ts`` with numpy, not per row in Python.
- ``migrate`` holds a session advisory lock, so two processes migrating at once apply each
  migration once; see ``engine.store.schema`` for versions, checksums and flavors.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np

from engine.store import retention as _retention
from engine.store.base import (
    DAY_NS,
    Store,
    check_table,
    clean,
    day_of,
    days_between,
    event_rows,
    newest_positions,
    order_states,
    snapshot_rows,
    to_datetime,
)
from engine.store.config import StoreSettings
from engine.store.errors import MigrationError, StoreError, StoreTimeout, StoreUnavailable
from engine.store.pgcopy import tick_payload
from engine.store.schema import (
    EVENT_TABLES,
    MIGRATE_LOCK,
    MIGRATIONS,
    ORDER_STATE_COLS,
    PARTITION_LOCK,
    POSITION_COLS,
    SCHEMA_MIGRATIONS_SQL,
    SNAPSHOT_COLS,
    TIME_TABLES,
    orders_upsert_sql,
    partition_name,
    positions_upsert_sql,
    q,
    store_columns,
)

log = logging.getLogger("hft.store")

MIGRATE_TIMEOUT_S = 600.0  # DDL and lock waits may take longer than an ordinary query
_PG_TYPES = {"I": "bigint", "F": "float8", "S": "text", "B": "boolean", "T": "timestamptz", "A": "float8[]"}
_TICK_COLUMNS = store_columns("market")
_SNAPSHOT_COLUMNS = [c for c, _ in SNAPSHOT_COLS]


def _kinds(event_table: str) -> list[str]:
    return ["S", "T", *(k for _, k in EVENT_TABLES[event_table][1])]


def unnest_source(kinds: list[str]) -> str:
    return "SELECT * FROM unnest(" + ", ".join(f"${i + 1}::{_PG_TYPES[k]}[]" for i, k in enumerate(kinds)) + ")"


#: shared_preload_libraries through pg_settings: a role without pg_read_all_settings gets "" rather
#: than an error (current_setting() refuses it)
PRELOAD_SQL = "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), '')"
#: TimescaleDB is used when already created in the database (a DBA did it) or loadable here
TIMESCALE_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') OR ("
    "EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AND "
    f"({PRELOAD_SQL[7:]}) LIKE '%timescaledb%')"
)


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _count(status: str) -> int:
    """Rows of an ``INSERT 0 n`` / ``UPDATE n`` / ``COPY n`` status line."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return 0


class PgStore(Store):
    backend = "postgresql"

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self.flavor: str | None = None  # postgresql | timescaledb, known once migrated
        self._days: set[tuple[str, str]] = set()  # (table, day) known to exist

    # --- connection and errors ---------------------------------------------------------------------
    def _unavailable(self, cause: str) -> StoreUnavailable:
        return StoreUnavailable(self.settings.host, self.settings.port, cause)

    async def connect(self) -> None:
        s = self.settings
        if self._pool is not None:
            return
        try:
            # the overall bound: min_pool_size connections are opened, each within connect_timeout_s
            self._pool = await asyncio.wait_for(
                asyncpg.create_pool(
                    host=s.host,
                    port=s.port,
                    user=s.user,
                    database=s.name,
                    password=s.password(),
                    min_size=s.min_pool_size,
                    max_size=s.connection_pool_size,
                    timeout=s.connect_timeout_s,
                    command_timeout=s.query_timeout_s,
                    init=_init_connection,
                ),
                timeout=s.connect_timeout_s * 2,
            )
        except TimeoutError:
            raise self._unavailable(f"no answer within {s.connect_timeout_s:g} s") from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._unavailable(_cause(exc)) from None
        with contextlib.suppress(StoreError):
            self.flavor = await self._recorded_flavor()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=self.settings.connect_timeout_s)
            except (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
                pool.terminate()

    @contextlib.asynccontextmanager
    async def _conn(self, operation: str, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StoreError(f"store {self.settings.where} is not connected (call connect() first)")
        limit = timeout or self.settings.query_timeout_s
        try:
            async with self._pool.acquire(timeout=limit) as conn:
                yield conn
        except (TimeoutError, asyncpg.QueryCanceledError):
            raise StoreTimeout(operation, limit) from None
        except (
            OSError,
            asyncpg.PostgresConnectionError,
            asyncpg.OperatorInterventionError,
            asyncpg.InterfaceError,
        ) as exc:
            raise self._unavailable(_cause(exc)) from None
        except asyncpg.PostgresError as exc:
            raise StoreError(f"{operation} failed on {self.settings.where}: {_cause(exc)}") from None

    async def _fetch(self, sql: str, *args: Any) -> list[dict]:
        async with self._conn(_operation(sql)) as conn:
            return [dict(r) for r in await conn.fetch(sql, *args)]

    async def sql(self, text: str) -> tuple[list[str], list[tuple]]:
        """Any statement (``hft db sql``): its columns and rows (none for a command)."""
        async with self._conn(_operation(text)) as conn:
            stmt_rows = await conn.fetch(text) if _returns_rows(text) else None
            if stmt_rows is None:
                status = await conn.execute(text)
                return ["status"], [(status,)]
            if not stmt_rows:
                return [], []
            return list(stmt_rows[0].keys()), [tuple(r.values()) for r in stmt_rows]

    # --- migrations ------------------------------------------------------------------------------
    async def _recorded_flavor(self) -> str | None:
        rows = await self._fetch(
            "SELECT flavor FROM schema_migrations ORDER BY version LIMIT 1"
            if await self._has_table("schema_migrations")
            else "SELECT NULL AS flavor WHERE false"
        )
        return rows[0]["flavor"] if rows else None

    async def _has_table(self, name: str) -> bool:
        async with self._conn("look up tables") as conn:
            return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{name}"))

    async def migrate(self) -> list[int]:
        applied_now: list[int] = []
        async with self._conn("migrate", MIGRATE_TIMEOUT_S) as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK, timeout=MIGRATE_TIMEOUT_S)
            try:
                await conn.execute(SCHEMA_MIGRATIONS_SQL)
                rows = await conn.fetch("SELECT version, name, checksum, flavor FROM schema_migrations")
                applied = {r["version"]: dict(r) for r in rows}
                flavor = next(iter(applied.values()))["flavor"] if applied else await self._flavor_on(conn)
                check_history(applied, flavor, self.settings.where)
                for m in MIGRATIONS:
                    if m.version in applied:
                        continue
                    sql = m.sql(flavor)
                    async with conn.transaction():
                        if sql.strip():
                            await conn.execute(sql, timeout=MIGRATE_TIMEOUT_S)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum, flavor) VALUES ($1, $2, $3, $4)",
                            m.version,
                            m.name,
                            m.checksum(flavor),
                            flavor,
                        )
                    applied_now.append(m.version)
                    log.info("store %s: applied migration %d (%s, %s)", self.settings.where, m.version, m.name, flavor)
                self.flavor = flavor
                await _stat_statements(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK)
        if self.flavor == "postgresql":
            now = time.time_ns()
            await self.ensure_partitions(now, now + self.settings.partition_ahead_days * 86_400 * 10**9)
        return applied_now

    @staticmethod
    async def _flavor_on(conn: asyncpg.Connection) -> str:
        ok = await conn.fetchval(TIMESCALE_SQL)
        return "timescaledb" if ok else "postgresql"

    async def applied_migrations(self) -> list[dict]:
        if not await self._has_table("schema_migrations"):
            return []
        return await self._fetch(
            "SELECT version, name, checksum, flavor, applied_at FROM schema_migrations ORDER BY version"
        )

    # --- partitions --------------------------------------------------------------------------------
    async def ensure_partitions(self, first_ns: int, last_ns: int) -> None:
        if self.flavor is None:
            self.flavor = await self._recorded_flavor()
        if self.flavor != "postgresql":
            return
        await self._ensure_days(days_between(int(first_ns), int(last_ns)))

    async def _ensure_days(self, wanted: list[str], tables: tuple[str, ...] = TIME_TABLES) -> None:
        if self.flavor is None:
            self.flavor = await self._recorded_flavor()
        if self.flavor != "postgresql":
            return
        missing = [(t, d) for d in wanted for t in tables if (t, d) not in self._days]
        if not missing:
            return
        async with self._conn("create partitions") as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            for table, day in missing:
                await conn.execute(_partition_ddl(table, day))
        self._days.update(missing)

    def forget_partitions(self) -> None:
        """Partitions may have been dropped (retention): make the next batch check again."""
        self._days.clear()

    async def retention(self, older_than_days: int, now_ns: int, dry_run: bool = False) -> dict[str, list[str]]:
        return await _retention.pg_retention(self, older_than_days, now_ns, dry_run)

    # --- writes ----------------------------------------------------------------------------------
    async def write(self, table: str, rows: list[tuple], run_id: str) -> int:
        check_table(table)
        name = EVENT_TABLES[table][0]
        stored = event_rows(table, rows, run_id)
        if not stored:
            return 0
        kinds = _kinds(table)
        columns = list(zip(*stored, strict=True))
        async with self._conn(f"write {name}") as conn, conn.transaction():
            if table == "positions":
                latest = event_rows(table, newest_positions(rows), run_id)
                status = await conn.execute(positions_upsert_sql(unnest_source(kinds)), *zip(*latest, strict=True))
                return _count(status)
            cols = ", ".join(q(c) for c in store_columns(table))
            status = await conn.execute(
                f"INSERT INTO {name} ({cols}) {unnest_source(kinds)} ON CONFLICT DO NOTHING", *columns
            )
            if table == "orders":
                states = order_states(rows, run_id)
                await conn.execute(
                    orders_upsert_sql(unnest_source([k for _, k in ORDER_STATE_COLS])), *zip(*states, strict=True)
                )
        return _count(status)

    async def copy_ticks(self, rows: list[tuple], run_id: str | None = None) -> int:
        if not rows:
            return 0
        # binary COPY built with numpy (engine.store.pgcopy): asyncpg only streams the bytes, so
        # the trading loop sharing this process is not held off while a batch is encoded
        payload = tick_payload(rows, run_id)
        return await self._copy("market_data_ticks", _TICK_COLUMNS, payload, batch_days([r[1] for r in rows]))

    async def copy_snapshots(self, rows: list[tuple]) -> int:
        if not rows:
            return 0
        days = batch_days([r[0] for r in rows])
        return await self._copy("order_book_snapshots", _SNAPSHOT_COLUMNS, snapshot_rows(rows), days)

    async def _copy(self, table: str, columns: list[str], records: list[tuple] | bytes, days: list[str]) -> int:
        """COPY ``records`` (tuples, or a whole binary COPY payload) into ``table``."""
        for attempt in range(2):
            await self._ensure_days(days, (table,))
            async with self._conn(f"copy {table}") as conn:
                try:
                    if isinstance(records, bytes):
                        source = io.BytesIO(records)
                        status = await conn.copy_to_table(table, source=source, columns=columns, format="binary")
                    else:
                        status = await conn.copy_records_to_table(table, records=records, columns=columns)
                except asyncpg.CheckViolationError:
                    # "no partition of relation ... found for row": another process's retention
                    # dropped a day this process believed existed
                    if attempt:
                        raise
                    self.forget_partitions()
                    continue
            return _count(status)
        return 0

    async def delete_ticks(self, run_id: str, first_ns: int, last_ns: int) -> int:
        """Remove a run's ticks in a time range (``hft db load`` reloads a run's ticks this way)."""
        async with self._conn("delete market_data_ticks") as conn:
            status = await conn.execute(
                "DELETE FROM market_data_ticks WHERE time >= $1 AND time <= $2 AND run_id = $3",
                to_datetime(first_ns),
                to_datetime(last_ns + 1000),
                run_id,
            )
        return _count(status)

    async def put_balances(self, venue: str, balances: dict[str, tuple[float, float]], ts_ns: int) -> None:
        if not balances:
            return
        assets = list(balances)
        free = [float(balances[a][0]) for a in assets]
        locked = [float(balances[a][1]) for a in assets]
        async with self._conn("write balances") as conn:
            await conn.execute(
                "INSERT INTO balances (venue, asset, total, free, locked, updated_at, updated_ns) "
                "SELECT $1, a, f + l, f, l, $5, $6 FROM unnest($2::text[], $3::float8[], $4::float8[]) AS u(a, f, l) "
                "ON CONFLICT (venue, asset) DO UPDATE SET total = EXCLUDED.total, free = EXCLUDED.free, "
                "locked = EXCLUDED.locked, updated_at = EXCLUDED.updated_at, updated_ns = EXCLUDED.updated_ns "
                "WHERE EXCLUDED.updated_ns >= balances.updated_ns",
                venue,
                assets,
                free,
                locked,
                to_datetime(ts_ns),
                int(ts_ns),
            )

    async def begin_run(
        self, run_id: str, name: str, mode: str, config_path: str, started_ns: int, manifest: dict
    ) -> None:
        async with self._conn("write strategy_runs") as conn:
            await conn.execute(
                "INSERT INTO strategy_runs (run_id, name, mode, config_path, started_at, started_ns, status, "
                "code_version, manifest) VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8) "
                "ON CONFLICT (run_id) DO UPDATE SET name = EXCLUDED.name, mode = EXCLUDED.mode, "
                "config_path = EXCLUDED.config_path, started_at = EXCLUDED.started_at, "
                "started_ns = EXCLUDED.started_ns, code_version = EXCLUDED.code_version, manifest = EXCLUDED.manifest",
                run_id,
                name,
                mode,
                config_path,
                to_datetime(started_ns),
                int(started_ns),
                str(manifest.get("code_version") or ""),
                json.dumps(clean(manifest), default=str),
            )

    async def end_run(self, run_id: str, status: str, closed_ns: int, summary: dict | None) -> None:
        async with self._conn("write strategy_runs") as conn:
            await conn.execute(
                "INSERT INTO strategy_runs (run_id, status, closed_at, closed_ns, summary) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, closed_at = EXCLUDED.closed_at, "
                "closed_ns = EXCLUDED.closed_ns, summary = EXCLUDED.summary",
                run_id,
                status,
                to_datetime(closed_ns),
                int(closed_ns),
                json.dumps(clean(summary), default=str) if summary is not None else None,
            )

    # --- health --------------------------------------------------------------------------------
    async def health(self) -> dict:
        t0 = time.perf_counter()
        async with self._conn("health check") as conn:
            await conn.fetchval("SELECT 1")
            ping_ms = (time.perf_counter() - t0) * 1000
            version = await conn.fetchval("SHOW server_version")
        pool = self._pool
        size = pool.get_size() if pool else 0
        free = pool.get_idle_size() if pool else 0
        return {
            "backend": self.backend,
            "flavor": self.flavor,
            "where": self.settings.where,
            "server_version": version,
            "pool": {"size": size, "in_use": size - free, "free": free, "max": self.settings.connection_pool_size},
            "ping_ms": round(ping_ms, 3),
        }


def check_history(applied: dict[int, dict], flavor: str, where: str) -> None:
    """Refuse a database whose applied migrations differ from this code's (edited or newer)."""
    known = {m.version: m for m in MIGRATIONS}
    for version, row in sorted(applied.items()):
        m = known.get(version)
        if m is None:
            raise MigrationError(
                f"database {where} has migration {version} ({row['name']}) that this code does not know: "
                "the database was migrated by a newer version; upgrade this code"
            )
        expected = m.checksum(row["flavor"] or flavor)
        if row["checksum"] != expected:
            raise MigrationError(
                f"database {where}: migration {version} ({m.name}) was applied with checksum "
                f"{row['checksum'][:12]} but this code's is {expected[:12]}: an applied migration was edited; "
                "restore it and add a new migration instead"
            )


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON documents pass as text both ways (manifest, summary)
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=lambda v: v, decoder=lambda v: v, schema="pg_catalog", format="text")


async def _stat_statements(conn: asyncpg.Connection) -> None:
    """pg_stat_statements where the server preloads it, in its own schema ``pgss``, and a view
    ``public.pg_stat_statements`` with the pre-13 names (total_time, mean_time, max_time) beside
    today's, so the guide's §7.1 query runs verbatim. Best effort: needs the right to create it."""
    preload = await conn.fetchval(PRELOAD_SQL)
    schema = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_stat_statements'"
    )
    if schema is None and "pg_stat_statements" not in (preload or ""):
        return
    try:
        if schema is None:
            async with conn.transaction():
                await conn.execute("CREATE SCHEMA IF NOT EXISTS pgss")
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA pgss")
            schema = "pgss"
        if schema == "public":
            return  # the extension's own view holds the name; the guide's query needs today's names there
        renamed = await conn.fetchval(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'total_exec_time'",
            f"{schema}.pg_stat_statements",
        )
        if renamed:
            await conn.execute(
                f"CREATE OR REPLACE VIEW public.pg_stat_statements AS SELECT *, total_exec_time AS total_time, "
                f"mean_exec_time AS mean_time, max_exec_time AS max_time FROM {schema}.pg_stat_statements"
            )
    except asyncpg.PostgresError as exc:
        log.info("pg_stat_statements not set up (%s); the guide's §7.1 query needs it", _cause(exc))


def batch_days(ts_ns: list[int]) -> list[str]:
    """The UTC days (``YYYY-MM-DD``) a batch's timestamps fall on (numpy: no per-row Python)."""
    days = np.unique(np.asarray(ts_ns, dtype=np.int64) // DAY_NS)
    return [day_of(int(d) * DAY_NS) for d in days]


def _partition_ddl(table: str, day: str) -> str:
    import datetime as dt

    start = dt.date.fromisoformat(day)
    end = start + dt.timedelta(days=1)
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} PARTITION OF {table} "
        f"FOR VALUES FROM ('{start.isoformat()} 00:00:00+00') TO ('{end.isoformat()} 00:00:00+00')"
    )


def _operation(sql: str) -> str:
    words = " ".join(sql.split()[:6])
    return words if len(words) <= 80 else words[:77] + "..."


def _returns_rows(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    return head in ("SELECT", "WITH", "VALUES", "SHOW", "TABLE", "EXPLAIN") or " RETURNING " in sql.upper()


__all__ = ["POSITION_COLS", "PgStore", "check_history"]
