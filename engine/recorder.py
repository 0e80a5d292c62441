"""The event recorder: buffers rows per table and streams them to ``runs/<run_id>/*.parquet``.

Rows are appended as tuples in schema order (cheap on the hot path) and written as row groups
when a buffer fills, so memory stays flat however long the run. The writer settings are fixed
and nothing wall-clock goes into the files, so the same events give byte-identical files.

``background=True`` (paper and live trading) hands each full buffer to one writer thread instead
of writing it inside ``add``: converting and compressing 65,536 rows takes 0.1-0.5 s, which a
backtest does not mind but a live feed would spend stalled. The thread converts in slices of
``_SLICE`` rows, so it never holds the interpreter for long at a time. A write that fails is
logged at ERROR (``errors.log``) when it happens and raised (``RecorderError``, naming the table
and the file) by ``flush`` and ``close``; the rows it held stay in memory for ``close`` to write
once more (after the rows written since: read such a table ordered by ``seq``).
"""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import HftError
from engine.eventlog_schema import MANIFEST, TABLES
from engine.logs import get_logger

NAN = math.nan
_SLICE = 4096  # rows the background writer converts per call into pyarrow
_log = get_logger("system")


class RecorderError(HftError):
    """The event log could not be written."""


def _columns(table: str, rows: list[tuple]) -> list[pa.Array]:
    """``rows`` (tuples in schema order) as one Arrow array per column of ``table``."""
    cols = list(zip(*rows, strict=True))
    return [pa.array(col, type=field.type) for col, field in zip(cols, TABLES[table], strict=True)]


class Recorder:
    """Append-only writer of the event log. ``run_dir=None`` keeps nothing (benchmarks of the core)."""

    def __init__(self, run_dir: str | Path | None, flush_rows: int = 65_536, background: bool = False) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.flush_rows = flush_rows
        self.seq = 0
        self.counts = dict.fromkeys(TABLES, 0)
        self._buf: dict[str, list[tuple]] = {t: [] for t in TABLES}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.enabled = self.run_dir is not None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._pool: ThreadPoolExecutor | None = None
        if background and self.run_dir is not None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="recorder")
        self._pending: list[Future[None]] = []
        self._failed: list[tuple[str, list[tuple]]] = []  # (table, rows) of writes that failed
        self._error: RecorderError | None = None
        self._lock = threading.Lock()  # the writers and _failed, shared with the writer thread

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add(self, table: str, row: tuple) -> None:
        """``row`` without its leading ``seq``: the recorder numbers every row of the run."""
        if not self.enabled:
            return
        self.seq += 1
        buf = self._buf[table]
        buf.append((self.seq, *row))
        if len(buf) >= self.flush_rows:
            self._flush(table)

    def add_at(self, seq: int, table: str, row: tuple) -> None:
        """``row`` numbered ``seq``, taken earlier with ``next_seq``: a row whose event came first
        but that is built later (the order path builds its rows once the order is on the wire).
        The caller guarantees no other row of ``table`` was added in between, so each table's
        rows stay in ``seq`` order and the log is the same byte for byte."""
        if not self.enabled:
            return
        buf = self._buf[table]
        buf.append((seq, *row))
        if len(buf) >= self.flush_rows:
            self._flush(table)

    def _flush(self, table: str) -> None:
        buf = self._buf[table]
        if not buf or self.run_dir is None:
            return
        if self._pool is None:
            self._write(table, buf)
            self.counts[table] += len(buf)
            buf.clear()
            return
        self._buf[table] = []
        self.counts[table] += len(buf)
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._pool.submit(self._write_background, table, buf))

    def _write(self, table: str, rows: list[tuple]) -> None:
        self._write_table(table, pa.Table.from_arrays(_columns(table, rows), schema=TABLES[table]))

    def _write_table(self, table: str, data: pa.Table) -> None:
        assert self.run_dir is not None
        writer = self._writers.get(table)
        if writer is None:
            writer = pq.ParquetWriter(
                self.run_dir / f"{table}.parquet", data.schema, compression="zstd", write_statistics=True
            )
            self._writers[table] = writer
        writer.write_table(data)

    def _write_background(self, table: str, rows: list[tuple]) -> None:
        """On the writer thread: ``rows`` converted a slice at a time, written as one table."""
        schema = TABLES[table]
        try:
            batches = [
                pa.RecordBatch.from_arrays(_columns(table, rows[i : i + _SLICE]), schema=schema)
                for i in range(0, len(rows), _SLICE)
            ]
            with self._lock:
                self._write_table(table, pa.Table.from_batches(batches, schema=schema))
        except Exception as exc:
            where = self.run_dir / f"{table}.parquet" if self.run_dir is not None else table
            err = RecorderError(f"Event log write failed for table {table} ({where}): {exc}")
            # said at once (errors.log); trading goes on, and flush/close raise it
            _log.error(f"{err}; its {len(rows)} rows are kept and written again at close")
            with self._lock:
                self._failed.append((table, rows))
                if self._error is None:
                    self._error = err

    def _raise_failure(self) -> None:
        err = self._error
        if err is not None:
            self._error = None
            raise err

    def _drain(self) -> None:
        """Wait for the writer thread's queue (background mode)."""
        for f in self._pending:
            f.result()
        self._pending = []

    def flush(self) -> None:
        for table in self._buf:
            self._flush(table)
        if self._pool is not None:
            self._drain()
            self._raise_failure()

    def close(self, manifest: dict[str, Any] | None = None) -> None:
        """Flush everything, write empty tables for what never happened, then the manifest.

        In background mode, rows of a write that failed are tried once more here; if that fails
        too, ``RecorderError`` says so (after the other tables are closed)."""
        if self.run_dir is None:
            return
        failure: RecorderError | None = None
        if self._pool is not None:
            for table in self._buf:
                self._flush(table)
            self._drain()
            self._pool.shutdown(wait=True)
            self._pool = None
            self._error = None
            for table, rows in self._failed:  # one more try, in order, before the rows still buffered
                try:
                    self._write(table, rows)
                except Exception as exc:
                    failure = RecorderError(f"Event log write failed for table {table}: {exc}")
                    self.counts[table] -= len(rows)
            self._failed = []
        try:
            self.flush()
        except Exception as exc:
            failure = failure or RecorderError(f"Event log write failed: {exc}")
        for table, schema in TABLES.items():
            path = self.run_dir / f"{table}.parquet"
            try:
                writer = self._writers.pop(table, None)
                if writer is not None:
                    writer.close()
                elif not path.exists():
                    pq.write_table(schema.empty_table(), path, compression="zstd")
            except Exception as exc:
                failure = failure or RecorderError(f"Event log write failed for table {table} ({path}): {exc}")
        if manifest is not None:
            text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
            try:
                (self.run_dir / MANIFEST).write_text(text + "\n")
            except OSError as exc:
                failure = failure or RecorderError(f"Event log manifest not written ({self.run_dir / MANIFEST}): {exc}")
        self.enabled = False
        if failure is not None:
            raise failure
