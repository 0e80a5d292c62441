"""Retention of the time tables: old days of market_data_ticks and order_book_snapshots go.

- Plain PostgreSQL: the tables are range-partitioned by UTC day (``<table>_pYYYYMMDD``); a day is
  dropped (``DROP TABLE`` of its partition: instant, no vacuum) once its whole day ended before
  ``now - older_than_days``, the same rule TimescaleDB applies to its chunks. The guide's
  ``SELECT drop_chunks('market_data_ticks', INTERVAL '90 days');`` runs verbatim against a
  plpgsql shim of that name (``schema.DROP_CHUNKS_SQL``, migration 3).
- TimescaleDB: the hypertables carry a 90-day retention policy (migration 2); this job calls
  ``drop_chunks`` itself with an absolute cutoff (``schema.timescale_retention_sql``).
- DuckDB: rows of those days are deleted.

``now_ns`` is always passed in (the job never reads the clock itself), so tests and catch-up runs
decide what "now" is; ``maintain`` also creates the partitions ``partition_ahead_days`` ahead.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from engine.store.base import DAY_NS, Store
from engine.store.schema import PARTITION_LOCK, TIME_TABLES, timescale_retention_sql

if TYPE_CHECKING:
    from engine.store.pg import PgStore

#: partitions and chunk-drops may take longer than an ordinary query
RETENTION_TIMEOUT_S = 600.0


def cutoff_ns(older_than_days: int, now_ns: int) -> int:
    return int(now_ns) - int(older_than_days) * DAY_NS


def partition_day_ns(name: str) -> int | None:
    """Start (ns, UTC) of the day a ``<table>_pYYYYMMDD`` partition holds, None for another name."""
    tail = name.rsplit("_p", 1)[-1]
    if len(tail) != 8 or not tail.isdigit():
        return None
    day = dt.datetime.strptime(tail, "%Y%m%d").replace(tzinfo=dt.UTC)
    return int(day.timestamp()) * 1_000_000_000


async def pg_retention(
    store: PgStore, older_than_days: int, now_ns: int, dry_run: bool = False
) -> dict[str, list[str]]:
    """Drop (or with ``dry_run`` list) what is older than ``older_than_days`` before ``now_ns``."""
    limit = cutoff_ns(older_than_days, now_ns)
    if store.flavor is None:
        store.flavor = await store._recorded_flavor()
    out: dict[str, list[str]] = {t: [] for t in TIME_TABLES}
    if store.flavor == "timescaledb":
        for table in TIME_TABLES:
            if dry_run:
                rows = await store._fetch(
                    "SELECT chunk_name AS name FROM timescaledb_information.chunks "
                    "WHERE hypertable_name = $1 AND range_end <= to_timestamp($2)",
                    table,
                    limit / 1e9,
                )
            else:
                rows = await store._fetch(timescale_retention_sql(table, limit))
            out[table] = [str(r["name"]) for r in rows]
        return out
    async with store._conn("retention", RETENTION_TIMEOUT_S) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        for table in TIME_TABLES:
            parts = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass($1) ORDER BY c.relname",
                table,
            )
            for p in parts:
                name = p["relname"]
                start = partition_day_ns(name)
                if start is None or start + DAY_NS > limit:
                    continue
                if not dry_run:
                    await conn.execute(f'DROP TABLE "{name}"', timeout=RETENTION_TIMEOUT_S)
                out[table].append(name)
    store.forget_partitions()
    return out


async def maintain(store: Store, retention_days: int, ahead_days: int, now_ns: int) -> dict[str, list[str]]:
    """The periodic job: partitions for today and ``ahead_days`` more, then retention."""
    await store.ensure_partitions(now_ns, now_ns + ahead_days * DAY_NS)
    return await store.retention(retention_days, now_ns)
