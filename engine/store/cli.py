"""``hft db``: migrate, inspect, trim and load the store a run config names.

``--config`` picks the run config whose ``database`` section is used (default
``config/production.json``); ``--backend duckdb --duckdb-path FILE`` (or ``--backend postgresql``
with ``HFT_DB_HOST``/``HFT_DB_PORT``/``HFT_DB_NAME``/``HFT_DB_USER``) overrides it. Every failure
(unreachable server, locked DuckDB file, corrupt Parquet, missing run) is one line naming what and
where, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.store import open_store
from engine.store.config import DEFAULT_CONFIG, StoreSettings, load_store_settings
from engine.store.errors import StoreError


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser(
        "db",
        help="the database store: migrate, status, retention, load a run, run SQL",
        description="Manage the store of a run config's 'database' section (PostgreSQL/TimescaleDB, or the "
        "embedded DuckDB file when none is configured).",
    )
    sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    db.set_defaults(func=lambda _a: _help(db))

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=DEFAULT_CONFIG, help=f"run config file (default: {DEFAULT_CONFIG})")
        p.add_argument("--backend", choices=("postgresql", "duckdb"), help="override database.backend")
        p.add_argument("--duckdb-path", metavar="FILE", help="override database.duckdb_path")

    p = sub.add_parser("migrate", help="apply the schema migrations not yet applied (safe to run twice)")
    common(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("status", help="backend, applied migrations and rows per table")
    common(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "retention",
        help="drop market data older than the retention (day partitions / chunks)",
        description="Drop the days of market_data_ticks and order_book_snapshots that ended more than "
        "--older-than-days ago (default: database.retention_days), and create the partitions for the "
        "next database.partition_ahead_days days.",
    )
    common(p)
    p.add_argument("--older-than-days", type=int, metavar="N", help="default: database.retention_days (90)")
    p.add_argument("--dry-run", action="store_true", help="list what would be dropped, drop nothing")
    p.set_defaults(func=cmd_retention)

    p = sub.add_parser("load", help="load a run's event log (Parquet or live streams) into the store")
    common(p)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="runs/<run_id>/ directories")
    p.add_argument("--no-ticks", action="store_true", help="skip the market table (market_data_ticks)")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser(
        "check",
        help="the guide's database checks (§2.3, §7.1, §7.2): connections, long and slow queries, disk, bloat",
        description="Read-only unless --kill-idle-minutes is given. Exit status: 0 healthy, 1 a check warned or "
        "failed, 2 bad arguments.",
    )
    common(p)
    p.add_argument(
        "--kill-idle-minutes",
        type=float,
        metavar="N",
        help="terminate this database's connections idle for more than N minutes (the guide's §2.3/§7.2 fix; "
        "needs a role allowed to: postgres, or pg_signal_backend)",
    )
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "replication-lag",
        help="standby lag in bytes and seconds (§7.3)",
        description="On the primary: pg_current_wal_lsn() and every standby of pg_stat_replication with its lag. "
        "With --standby-host: that server's pg_last_wal_receive_lsn()/pg_last_wal_replay_lsn() against the "
        "primary. Exit status: 0 no standby or lag within --max-lag-bytes, 1 lag above it or a standby not "
        "streaming, 2 errors.",
    )
    common(p)
    p.add_argument("--standby-host", metavar="HOST", help="also ask this standby (same port, user and database)")
    p.add_argument("--standby-port", type=int, metavar="PORT", help="the standby's port (default: the primary's)")
    p.add_argument("--max-lag-bytes", type=int, default=16 * 1024 * 1024, metavar="N", help="default 16 MiB")
    p.set_defaults(func=cmd_replication_lag)

    p = sub.add_parser(
        "archive",
        help="export market data days older than N days to Parquet, then drop them (§6.2)",
        description="Each whole UTC day of market_data_ticks and order_book_snapshots that ended more than N days "
        "ago is written to OUT/<table>/<table>_pYYYYMMDD.parquet; the file's row count is checked against the "
        "database before the day is dropped.",
    )
    common(p)
    p.add_argument("--older-than-days", type=int, default=90, metavar="N", help="default 90")
    p.add_argument("--out", metavar="DIR", help="archive directory (default: <runs_root>/archive)")
    p.add_argument("--dry-run", action="store_true", help="list the days, export and drop nothing")
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("sql", help="run one SQL statement against the store and print the result")
    common(p)
    p.add_argument("statement", help='for example "SELECT count(*) FROM fills"')
    p.set_defaults(func=cmd_sql)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def settings_from(args: argparse.Namespace) -> StoreSettings:
    s = load_store_settings(args.config)
    if args.backend:
        s = replace(s, backend=args.backend)
    if args.duckdb_path:
        s = replace(s, backend=args.backend or "duckdb", duckdb_path=Path(args.duckdb_path).expanduser().resolve())
    if not s.enabled:
        raise StoreError(f"the store is turned off in {args.config} (database.backend is 'none')")
    return s


async def _with_store(settings: StoreSettings, work: Any) -> Any:
    store = open_store(settings)
    await store.connect()
    try:
        return await work(store)
    finally:
        await store.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def work(store: Any) -> list[int]:
        return await store.migrate()

    applied = asyncio.run(_with_store(settings, work))
    where = f"{settings.backend} {settings.where}"
    print(f"{where}: applied migrations {', '.join(map(str, applied))}" if applied else f"{where}: schema is current")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from engine.store.schema import MIGRATIONS

    settings = settings_from(args)

    async def work(store: Any) -> tuple[dict, list[dict], dict]:
        return await store.health(), await store.applied_migrations(), await store.table_counts()

    health, applied, counts = asyncio.run(_with_store(settings, work))
    print(f"backend: {settings.backend} ({settings.where}; server {health['server_version']}; "
          f"flavor {recorded_flavor(applied)}; ping {health['ping_ms']:.1f} ms)")  # fmt: skip
    done = {m["version"] for m in applied}
    for m in applied:
        print(f"migration {m['version']}: {m['name']} (applied {str(m['applied_at'])[:19]})")
    pending = [m for m in MIGRATIONS if m.version not in done]
    for m in pending:
        print(f"migration {m.version}: {m.name} (pending: run hft db migrate)")
    width = max(len(t) for t in counts)
    for table, n in counts.items():
        print(f"  {table:<{width}}  {'-' if n is None else n}")
    return 0


def recorded_flavor(applied: list[dict]) -> str:
    return str(applied[0]["flavor"]) if applied else "not migrated"


def cmd_retention(args: argparse.Namespace) -> int:
    from engine.store.retention import maintain

    settings = settings_from(args)
    days = args.older_than_days if args.older_than_days is not None else settings.retention_days
    if days < 1:
        raise StoreError(f"--older-than-days must be at least 1, got {days}")
    now = time.time_ns()

    async def work(store: Any) -> dict[str, list[str]]:
        if args.dry_run:
            return await store.retention(days, now, dry_run=True)
        return await maintain(store, days, settings.partition_ahead_days, now)

    dropped = asyncio.run(_with_store(settings, work))
    verb = "would drop" if args.dry_run else "dropped"
    for table, parts in dropped.items():
        print(f"{table}: {verb} {len(parts)}{': ' + ', '.join(parts) if parts else ''} (older than {days} days)")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from engine.store.load import load_run

    settings = settings_from(args)

    async def work(store: Any) -> list[tuple[str, dict[str, int]]]:
        await store.migrate()
        out = []
        for run_dir in args.run_dirs:
            out.append((run_dir, await load_run(store, run_dir, ticks=not args.no_ticks)))
        return out

    for run_dir, counts in asyncio.run(_with_store(settings, work)):
        parts = ", ".join(f"{t} {n}" for t, n in counts.items())
        print(f"{run_dir}: loaded into {settings.backend} {settings.where}: {parts} (new rows)")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def work(store: Any) -> tuple[list[str], list[tuple]]:
        return await store.sql(args.statement)

    columns, rows = asyncio.run(_with_store(settings, work))
    if columns:
        print("\t".join(columns))
    for r in rows:
        print("\t".join("" if v is None else str(v) for v in r))
    sys.stdout.flush()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from engine.store.ops import PASS, SKIP, check

    settings = settings_from(args)
    if args.kill_idle_minutes is not None and args.kill_idle_minutes < 0:
        raise StoreError(f"--kill-idle-minutes must be >= 0, got {args.kill_idle_minutes:g}")
    results = asyncio.run(check(settings, args.kill_idle_minutes))
    for c in results:
        if args.json:
            print(json.dumps({"check": c.name, "status": c.status, "detail": c.detail, "next_step": c.next_step}))
        else:
            print(f"{c.status:<4} {c.name}: {c.detail}" + (f"\n     next: {c.next_step}" if c.next_step else ""))
    return 1 if any(c.status not in (PASS, SKIP) for c in results) else 0


def cmd_replication_lag(args: argparse.Namespace) -> int:
    from engine.store.ops import replication_lag

    settings = settings_from(args)
    if settings.backend != "postgresql":
        print(f"replication: not applicable to the {settings.backend} store ({settings.where})")
        return 0
    standby = None
    if args.standby_host:
        standby = replace(settings, host=args.standby_host, port=args.standby_port or settings.port)

    async def work(store: Any) -> dict:
        return await replication_lag(store, standby)

    lag = asyncio.run(_with_store(settings, work))
    bad = False
    if lag["in_recovery"]:
        print(f"{settings.where} is itself a standby (in recovery): run this against the primary")
    else:
        print(f"primary {settings.where}: current WAL position {lag['primary_lsn']}")
        if not lag["standbys"]:
            print("no standby connected (pg_stat_replication is empty): replication is not in use here")
        for sb in lag["standbys"]:
            behind = sb["lag_bytes"]
            late = behind is None or behind > args.max_lag_bytes or sb["state"] != "streaming"
            bad |= late
            secs = "" if sb["lag_s"] is None else f", replay {sb['lag_s']:.3f} s behind"
            print(f"standby {sb['name'] or sb['addr']}: {sb['state']}, lag {behind} bytes{secs}"
                  + (" (above --max-lag-bytes)" if late else ""))  # fmt: skip
    sb = lag.get("standby")
    if sb is not None:
        if sb["replayed"] is None:
            print(f"{sb['host']}:{sb['port']}: not a standby (pg_last_wal_receive_lsn() and "
                  "pg_last_wal_replay_lsn() are NULL)")  # fmt: skip
        else:
            bad |= sb["lag_bytes"] is None or sb["lag_bytes"] > args.max_lag_bytes
            print(f"{sb['host']}:{sb['port']}: received {sb['received']}, replayed {sb['replayed']}, "
                  f"lag {sb['lag_bytes']} bytes")  # fmt: skip
    return 1 if bad else 0


def cmd_archive(args: argparse.Namespace) -> int:
    from engine.store.ops import archive

    settings = settings_from(args)
    if args.older_than_days < 1:
        raise StoreError(f"--older-than-days must be at least 1, got {args.older_than_days}")
    out = Path(args.out).expanduser().resolve() if args.out else settings.journal_dir.parent / "archive"

    async def work(store: Any) -> list[dict]:
        return await archive(store, args.older_than_days, time.time_ns(), out, dry_run=args.dry_run)

    days = asyncio.run(_with_store(settings, work))
    verb = "would archive" if args.dry_run else "archived and dropped"
    for d in days:
        print(f"{d['table']} {d['day']}: {verb} {d['rows']} rows -> {d['file']}")
    if not days:
        print(f"nothing older than {args.older_than_days} days in {settings.where}")
    return 0
