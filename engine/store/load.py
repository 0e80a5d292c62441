"""Load a run's event log (``runs/<run_id>/``) into a store: ``hft db load RUN_DIR``.

Reads the run's Parquet tables (``<table>.parquet`` and rolled parts ``<table>-<n>.parquet``),
or, for a session still running or one that crashed, its Arrow streams up to their last complete
batch (``engine.recorder.read_stream_batches``): the run is never changed. Event tables go
through ``Store.write`` in batches, which is idempotent, so loading a run twice stores it once;
ticks have no key, so a run's ticks are replaced (deleted in the run's time range, then copied)
rather than appended. The run's manifest becomes its ``strategy_runs`` row. A missing run, a
corrupt file or an unreachable database is one error line naming what and where.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import RunLogError
from engine.eventlog_schema import MANIFEST, TABLES
from engine.recorder import read_manifest, read_stream_batches, stream_files
from engine.store.base import Store
from engine.store.schema import EVENT_TABLES, WRITE_TABLES

BATCH_ROWS = 50_000


_PART = re.compile(r"^(?P<table>[a-z]+)(?:-(?P<n>\d+))?\.parquet$")


def _parquet_files(run_dir: Path) -> dict[str, list[Path]]:
    found: dict[str, list[tuple[int, Path]]] = {}
    for p in run_dir.iterdir():
        m = _PART.match(p.name)
        if m and m["table"] in TABLES and p.is_file():
            found.setdefault(m["table"], []).append((int(m["n"]) if m["n"] else -1, p))
    return {t: [p for _, p in sorted(parts)] for t, parts in found.items()}


def _rows(batch: pa.RecordBatch, names: list[str]) -> list[tuple]:
    return list(zip(*(batch.column(n).to_pylist() for n in names), strict=True))


def _stream_batches(paths: list[Path], table: str) -> Iterator[list[tuple]]:
    names = [c for c, _ in EVENT_TABLES[table][1]]
    try:
        for batch in read_stream_batches(paths):
            missing = [n for n in names if n not in batch.schema.names]
            if missing:
                raise RunLogError(str(paths[0]), f"not a {table} stream: missing column(s) {', '.join(missing)}")
            yield _rows(batch, names)
    except RunLogError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise RunLogError(str(paths[0]), f"unreadable stream ({str(exc).splitlines()[0]})") from None


def _batches(path: Path, table: str) -> Iterator[list[tuple]]:
    names = [c for c, _ in EVENT_TABLES[table][1]]
    try:
        f = pq.ParquetFile(path)
        missing = [n for n in names if n not in f.schema_arrow.names]
        if missing:
            raise RunLogError(str(path), f"not a {table} table: missing column(s) {', '.join(missing)}")
        for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=names):
            yield _rows(batch, names)
    except RunLogError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise RunLogError(str(path), f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def _time_range(batches: Iterator[list[tuple]]) -> tuple[int, int] | None:
    lo: int | None = None
    hi: int | None = None
    for rows in batches:
        if rows:
            ts = [r[1] for r in rows]
            lo = min(ts) if lo is None else min(lo, min(ts))
            hi = max(ts) if hi is None else max(hi, max(ts))
    return None if lo is None or hi is None else (lo, hi)


class _Run:
    """One run directory's tables: Parquet parts when the run was closed, else its streams."""

    def __init__(self, run_dir: str | Path) -> None:
        path = Path(run_dir)
        if not path.exists():
            raise RunLogError(str(path), "no such run directory")
        if not path.is_dir():
            raise RunLogError(str(path), "not a directory (expected runs/<run_id>/)")
        self.path = path
        self.manifest = read_manifest(path)
        if (path / MANIFEST).exists() and not self.manifest:
            raise RunLogError(str(path / MANIFEST), "manifest is not a valid JSON object")
        self.parquet = _parquet_files(path)
        self.streams = {t: s for t, s in stream_files(path).items() if t not in self.parquet}
        if not self.manifest and not self.parquet and not self.streams:
            raise RunLogError(str(path), f"not an event log: no {MANIFEST}, no <table>.parquet or .arrows files")
        self.run_id = str(self.manifest.get("run_id") or path.name)

    def batches(self, table: str) -> Iterator[list[tuple]]:
        for f in self.parquet.get(table, []):
            yield from _batches(f, table)
        if table in self.streams:
            yield from _stream_batches(self.streams[table], table)


def _ns(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        return int(t.timestamp() * 1000) * 1_000_000
    return None


async def load_run(
    store: Store, run_dir: str | Path, ticks: bool = True, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Put one run's event log into ``store``; returns the rows newly stored per table (ticks: copied)."""
    info = _Run(run_dir)  # RunLogError: missing, not a directory, not an event log
    run_id = info.run_id
    m = info.manifest
    started = _ns(m.get("started_at")) or (m.get("data") or {}).get("from_ns") or 0
    await store.begin_run(
        run_id, str(m.get("name") or run_id), str(m.get("mode") or "unknown"), str(m.get("config_path") or ""),
        int(started), m,
    )  # fmt: skip
    counts: dict[str, int] = {}
    for table in WRITE_TABLES:
        n = 0
        for rows in info.batches(table):
            n += await store.write(table, rows, run_id)
        counts[table] = n
        if progress:
            progress(table, n)
    if ticks:
        span = _time_range(info.batches("market"))
        n = 0
        if span is not None:
            await store.delete_ticks(run_id, *span)
            for rows in info.batches("market"):
                n += await store.copy_ticks(rows, run_id=run_id)
        counts["market"] = n
        if progress:
            progress("market", n)
    status = m.get("status") or ("closed" if m.get("summary") is not None else None)
    if status and status != "running":
        closed = _ns(m.get("closed_at")) or int(started)
        await store.end_run(run_id, str(status), closed, m.get("summary"))
    return counts
