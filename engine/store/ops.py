"""The guide's database checks and chores (§2.3, §6.2, §7.1-7.3) against the configured store.

- ``check``: reachable and ``SELECT 1``; connections against ``max_connections`` and ours against
  the pool size; long-running (> 10 s) and slow (> 100 ms) active queries; disk of the data
  directory when the server is on this host; table sizes and dead rows (bloat); pending
  migrations. Read-only: terminating idle connections (the guide's [DESTR] step) happens only
  when asked (``kill_idle_minutes``). DuckDB: the file exists and is readable, or is held by the
  process that writes it. ``hft db check``, ``scripts/check_database.sh`` and ``hft doctor``'s
  database section use it.
- ``replication_lag``: the primary's standbys (``pg_stat_replication``, lag in bytes and time);
  with a standby host, its receive/replay positions against the primary's current WAL position.
- ``archive``: market data days older than N days exported to Parquet, the export's row count
  checked against the database, then the days dropped (``scripts/archive_market_data.sh``).

Checks use PostgreSQL's current names (``pg_stat_statements.total_exec_time``, not the guide's
pre-13 ``total_time``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.store.base import DAY_NS, Store, to_datetime
from engine.store.config import StoreSettings
from engine.store.errors import StoreError, StoreTimeout, StoreUnavailable
from engine.store.schema import TIME_TABLES

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
LONG_QUERY_S = 10.0  # §2.3 "query_start < now() - interval '10 seconds'"
SLOW_QUERY_MS = 100.0  # §7.1 "Database queries taking > 100ms"
CONNECTIONS_WARN = 0.8  # of max_connections: "well below max_connections" (inferred)
DISK_WARN_PCT, DISK_FAIL_PCT = 80.0, 90.0  # §6.2 "Disk usage > 90%"
DEAD_ROWS_WARN = 0.2  # dead rows as a share of live rows, on tables of some size
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    next_step: str = ""


def run_sync(coro: Any) -> Any:
    """Run a coroutine from sync code, also when the caller's thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="store-check")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _psql(s: StoreSettings, user: str | None = None) -> str:
    return f"psql -h {s.host} -p {s.port} -U {user or s.user} -d {s.name}"


# --- check -----------------------------------------------------------------------------------------
async def check(settings: StoreSettings, kill_idle_minutes: float | None = None) -> list[Check]:
    if settings.backend == "duckdb":
        return _check_duckdb(settings)
    if settings.backend != "postgresql":
        return [Check("database", SKIP, f"store turned off (database.backend {settings.backend!r})")]
    from engine.store.pg import PgStore

    store = PgStore(replace(settings, min_pool_size=1, connection_pool_size=min(2, settings.connection_pool_size)))
    try:
        await store.connect()
    except StoreUnavailable as exc:
        return [
            Check(
                "reachable",
                FAIL,
                str(exc),
                f'§2.3: sudo systemctl status timescaledb; {_psql(settings)} -c "SELECT 1;"',
            )
        ]
    try:
        return await _check_pg(store, settings, kill_idle_minutes)
    except (StoreUnavailable, StoreTimeout) as exc:
        return [Check("reachable", FAIL, str(exc), "§2.3: check the server and its load")]
    finally:
        await store.close()


async def _check_pg(store: Store, s: StoreSettings, kill_idle_minutes: float | None) -> list[Check]:
    out: list[Check] = []
    h = await store.health()
    out.append(
        Check("reachable", PASS, f"{s.where}: SELECT 1 in {h['ping_ms']:.1f} ms (PostgreSQL {h['server_version']})")
    )
    f = store._fetch
    row = (
        await f(
            "SELECT (SELECT count(*) FROM pg_stat_activity) AS total, current_setting('max_connections')::int AS max, "
            "(SELECT count(*) FROM pg_stat_activity WHERE datname = $1) AS ours",
            s.name,
        )
    )[0]
    total, limit, ours = int(row["total"]), int(row["max"]), int(row["ours"])
    status = FAIL if total >= 0.95 * limit else WARN if total >= CONNECTIONS_WARN * limit else PASS
    out.append(
        Check(
            "connections",
            status,
            f"{total} of max_connections {limit} in use ({ours} to {s.name}; "
            f"this system's pool allows {s.connection_pool_size})",
            ""
            if status == PASS
            else "§2.3/§7.2: find idle connections (SELECT count(*), state FROM "
            "pg_stat_activity GROUP BY state); terminate idle ones: hft db check --kill-idle-minutes 5",
        )
    )
    by_state = await f(
        "SELECT coalesce(state, 'background') AS state, count(*) AS n FROM pg_stat_activity GROUP BY 1 ORDER BY 2 DESC"
    )
    out.append(Check("connections by state", PASS, ", ".join(f"{r['state']} {r['n']}" for r in by_state)))
    long = await f(
        "SELECT pid, extract(epoch FROM now() - query_start) AS s, left(query, 80) AS query FROM pg_stat_activity "
        "WHERE state = 'active' AND pid <> pg_backend_pid() AND query_start < now() - make_interval(secs => $1) "
        "ORDER BY s DESC",
        LONG_QUERY_S,
    )
    if long:
        worst = long[0]
        out.append(
            Check(
                "long-running queries",
                WARN,
                f"{len(long)} active for more than {LONG_QUERY_S:g} s; "
                f"longest pid {worst['pid']} {float(worst['s']):.1f} s: {worst['query']}",
                f'§2.3: {_psql(s, "postgres")} -c "SELECT pg_terminate_backend({worst["pid"]});" '
                "if it must go; then §7.1",
            )
        )
    else:
        out.append(Check("long-running queries", PASS, f"none active for more than {LONG_QUERY_S:g} s"))
    slow = await f(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
        "AND now() - query_start > make_interval(secs => $1)",
        SLOW_QUERY_MS / 1000,
    )
    n_slow = int(slow[0]["n"])
    out.append(
        Check(
            "slow queries",
            WARN if n_slow else PASS,
            f"{n_slow} active for more than {SLOW_QUERY_MS:g} ms",
            '§7.1: hft db sql "SELECT query, calls, mean_exec_time FROM pg_stat_statements ORDER BY '
            'mean_exec_time DESC LIMIT 20"'
            if n_slow
            else "",
        )
    )
    out.append(await _disk(store, s))
    sizes = await f(
        "SELECT relname AS table, n_live_tup AS live, n_dead_tup AS dead, "
        "pg_total_relation_size(relid) AS bytes FROM pg_stat_user_tables ORDER BY bytes DESC LIMIT 10"
    )
    bloated = [r for r in sizes if r["live"] and r["dead"] > 10_000 and r["dead"] > DEAD_ROWS_WARN * r["live"]]
    top = ", ".join(f"{r['table']} {_size(int(r['bytes']))}" for r in sizes[:5]) or "no tables"
    if bloated:
        names = ", ".join(f"{r['table']} ({r['dead']} dead of {r['live']})" for r in bloated)
        out.append(
            Check(
                "table bloat",
                WARN,
                f"dead rows: {names}; largest: {top}",
                f'§7.1: {_psql(s)} -c "VACUUM (ANALYZE) {bloated[0]["table"]};"',
            )
        )
    else:
        out.append(Check("table bloat", PASS, f"largest: {top}"))
    applied = {m["version"] for m in await store.applied_migrations()}  # type: ignore[attr-defined]
    from engine.store.schema import MIGRATIONS

    pending = [m.version for m in MIGRATIONS if m.version not in applied]
    out.append(
        Check(
            "schema",
            WARN if pending else PASS,
            f"migrations {', '.join(map(str, pending))} pending" if pending else f"current (migration {max(applied)})",
            "hft db migrate" if pending else "",
        )
    )
    if kill_idle_minutes is not None:
        killed = await f(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND state = 'idle' AND pid <> pg_backend_pid() "
            "AND state_change < now() - make_interval(mins => $2) AND pg_terminate_backend(pid)",
            s.name,
            int(kill_idle_minutes),
        )
        out.append(
            Check(
                "idle connections terminated",
                PASS,
                f"{len(killed)} idle for more than "
                f"{kill_idle_minutes:g} min: {', '.join(str(r['pid']) for r in killed) or 'none'}",
            )
        )
    return out


async def _disk(store: Store, s: StoreSettings) -> Check:
    local = s.host in LOCAL_HOSTS or s.host.startswith("/")
    if not local:
        return Check("disk", SKIP, f"the server {s.host} is not on this host: check df there (§2.3)")
    try:
        rows = await store._fetch("SELECT current_setting('data_directory') AS d")
    except StoreError as exc:
        return Check("disk", SKIP, f"data_directory not readable by {s.user} ({exc}); df -h /var/lib/postgresql")
    path = Path(rows[0]["d"])
    try:
        du = shutil.disk_usage(path)
    except OSError as exc:
        return Check("disk", SKIP, f"cannot stat the data directory {path}: {exc.strerror or exc}")
    pct = 100.0 * du.used / du.total if du.total else 0.0
    status = FAIL if pct > DISK_FAIL_PCT else WARN if pct > DISK_WARN_PCT else PASS
    step = (
        ""
        if status == PASS
        else "§2.3/§6.2: hft db retention drops old market data; ./scripts/archive_market_data.sh --older-than-days=90"
    )
    return Check("disk", status, f"{path}: {pct:.0f}% used, {_size(du.free)} free", step)


def _check_duckdb(s: StoreSettings) -> list[Check]:
    import duckdb

    path = Path(s.duckdb_path)
    if not path.exists():
        return [
            Check(
                "duckdb file",
                SKIP,
                f"{path} does not exist yet (the first session or hft db migrate creates it)",
                "hft db migrate",
            )
        ]
    if not os.access(path, os.R_OK):
        return [Check("duckdb file", FAIL, f"{path} is not readable by this user", f"ls -l {path}")]
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        m = re.search(r"PID (\d+)", str(exc))
        if "lock" in str(exc).lower():
            who = f"pid {m.group(1)}" if m else "another process"
            return [Check("duckdb file", PASS, f"{path} ({_size(path.stat().st_size)}) is open in {who} (the writer)")]
        return [Check("duckdb file", FAIL, f"{path}: {str(exc).splitlines()[0]}")]
    except duckdb.Error as exc:
        return [Check("duckdb file", FAIL, f"{path} is not a readable DuckDB file: {str(exc).splitlines()[0]}")]
    try:
        n = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchall()
        migrated = bool(n and n[0][0])
    finally:
        con.close()
    return [
        Check(
            "duckdb file",
            PASS if migrated else WARN,
            f"{path} ({_size(path.stat().st_size)}) readable" + ("" if migrated else ", not migrated"),
            "" if migrated else "hft db migrate",
        )
    ]


def probe_config(config_path: str | Path, timeout_s: float = 3.0) -> list[dict[str, str]] | str:
    """``check`` of the store a run config names, as plain dicts (``hft doctor``'s database
    facts), with short timeouts so a dead server cannot stall the doctor; a bad config is a string."""
    from engine.errors import HftError
    from engine.store.config import load_store_settings

    try:
        s = load_store_settings(config_path)
    except HftError as exc:
        return str(exc)
    s = replace(s, connect_timeout_s=min(s.connect_timeout_s, timeout_s), query_timeout_s=min(s.query_timeout_s, 5.0))
    try:
        checks = run_sync(check(s))
    except HftError as exc:
        return str(exc)
    return [{"check": c.name, "status": c.status, "detail": c.detail, "next_step": c.next_step} for c in checks]


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# --- replication --------------------------------------------------------------------------------
async def replication_lag(store: Store, standby: StoreSettings | None = None) -> dict[str, Any]:
    """The primary's WAL position and each standby's lag (bytes, seconds); with ``standby``, that
    server's receive/replay positions (NULL on a server that is not a standby)."""
    f = store._fetch
    primary = (
        await f(
            "SELECT pg_is_in_recovery() AS recovery, "
            "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS lsn"
        )
    )[0]
    out: dict[str, Any] = {"primary_lsn": primary["lsn"], "in_recovery": primary["recovery"], "standbys": []}
    if not primary["recovery"]:
        out["standbys"] = await f(
            "SELECT application_name AS name, client_addr::text AS addr, state, replay_lsn::text AS replay_lsn, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes, "
            "extract(epoch FROM replay_lag)::float8 AS lag_s FROM pg_stat_replication ORDER BY 1"
        )
    if standby is not None:
        from engine.store.pg import PgStore

        other = PgStore(replace(standby, min_pool_size=1, connection_pool_size=1))
        await other.connect()
        try:
            row = (
                await other._fetch(
                    "SELECT pg_last_wal_receive_lsn()::text AS received, pg_last_wal_replay_lsn()::text AS replayed"
                )
            )[0]
        finally:
            await other.close()
        lag = None
        if row["replayed"] and out["primary_lsn"]:
            lag = (
                await f(
                    "SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint AS b", out["primary_lsn"], row["replayed"]
                )
            )[0]["b"]
        out["standby"] = {"host": standby.host, "port": standby.port, **row, "lag_bytes": lag}
    return out


# --- archive -------------------------------------------------------------------------------------
async def archive(
    store: Store, older_than_days: int, now_ns: int, out_dir: Path, dry_run: bool = False
) -> list[dict[str, Any]]:
    """Export each whole day of the time tables older than the cutoff to
    ``<out_dir>/<table>/<table>_pYYYYMMDD.parquet``, check the file holds every row, then drop the
    day. Returns one entry per day: table, day, rows, file."""
    limit = int(now_ns) - int(older_than_days) * DAY_NS
    limit -= limit % DAY_NS
    done: list[dict[str, Any]] = []
    for table in TIME_TABLES:
        col = "ts" if table == "market_data_ticks" else "ts_ns"
        days = await store._fetch(
            f"SELECT DISTINCT ({col} - {col} % {DAY_NS}) AS day FROM {table} WHERE {col} < $1 ORDER BY 1", limit
        )
        for d in days:
            start = int(d["day"])
            name = f"{table}_p{to_datetime(start).strftime('%Y%m%d')}"
            rows = (
                await store._fetch(
                    f"SELECT count(*) AS n FROM {table} WHERE {col} >= $1 AND {col} < $2", start, start + DAY_NS
                )
            )[0]["n"]
            path = out_dir / table / f"{name}.parquet"
            entry = {
                "table": table,
                "day": to_datetime(start).strftime("%Y-%m-%d"),
                "rows": int(rows),
                "file": str(path),
            }
            if not dry_run:
                written = await _export_day(store, table, col, start, path)
                if written != rows or pq.read_metadata(path).num_rows != rows:
                    raise StoreError(
                        f"archive of {table} {entry['day']}: {path} holds {written} rows, the database "
                        f"{rows}: nothing dropped"
                    )
                await _drop_day(store, table, col, start, name)
            done.append(entry)
    if not dry_run and hasattr(store, "forget_partitions"):
        store.forget_partitions()
    return done


async def _export_day(store: Store, table: str, col: str, start: int, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.part")
    rows = await store._fetch(
        f"SELECT * FROM {table} WHERE {col} >= $1 AND {col} < $2 ORDER BY {col}", start, start + DAY_NS
    )
    data = pa.Table.from_pylist(rows) if rows else pa.table({})
    pq.write_table(data, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return len(rows)


async def _drop_day(store: Store, table: str, col: str, start: int, name: str) -> None:
    flavor = getattr(store, "flavor", None)
    if store.backend == "postgresql" and flavor == "postgresql":
        exists = await store._fetch("SELECT to_regclass($1) IS NOT NULL AS e", name)
        if exists and exists[0]["e"]:
            await store.sql(f'DROP TABLE "{name}"')
            return
    if store.backend == "postgresql" and flavor == "timescaledb":
        await store._fetch(f"SELECT drop_chunks('{table}', older_than => $1) AS c", to_datetime(start + DAY_NS))
        return
    await store.sql(f"DELETE FROM {table} WHERE {col} >= {int(start)} AND {col} < {int(start + DAY_NS)}")


def utc_day(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d")


__all__ = ["Check", "archive", "check", "replication_lag", "run_sync"]
