"""The event recorder: buffers rows per table and streams them to ``runs/<run_id>/*.parquet``.

Rows are appended as tuples in schema order (cheap on the hot path) and written as row groups
when a buffer fills, so memory stays flat however long the run. The writer settings are fixed
and nothing wall-clock goes into the files, so the same events give byte-identical files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.eventlog_schema import MANIFEST, TABLES

NAN = math.nan


class Recorder:
    """Append-only writer of the event log. ``run_dir=None`` keeps nothing (benchmarks of the core)."""

    def __init__(self, run_dir: str | Path | None, flush_rows: int = 65_536) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.flush_rows = flush_rows
        self.seq = 0
        self.counts = dict.fromkeys(TABLES, 0)
        self._buf: dict[str, list[tuple]] = {t: [] for t in TABLES}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.enabled = self.run_dir is not None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)

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

    def _flush(self, table: str) -> None:
        buf = self._buf[table]
        if not buf or self.run_dir is None:
            return
        schema = TABLES[table]
        cols = list(zip(*buf, strict=True))
        arrays = [pa.array(col, type=field.type) for col, field in zip(cols, schema, strict=True)]
        batch = pa.Table.from_arrays(arrays, schema=schema)
        writer = self._writers.get(table)
        if writer is None:
            writer = pq.ParquetWriter(
                self.run_dir / f"{table}.parquet", schema, compression="zstd", write_statistics=True
            )
            self._writers[table] = writer
        writer.write_table(batch)
        self.counts[table] += len(buf)
        buf.clear()

    def flush(self) -> None:
        for table in self._buf:
            self._flush(table)

    def close(self, manifest: dict[str, Any] | None = None) -> None:
        """Flush everything, write empty tables for what never happened, then the manifest."""
        if self.run_dir is None:
            return
        self.flush()
        for table, schema in TABLES.items():
            writer = self._writers.pop(table, None)
            if writer is not None:
                writer.close()
            elif not (self.run_dir / f"{table}.parquet").exists():
                pq.write_table(schema.empty_table(), self.run_dir / f"{table}.parquet", compression="zstd")
        if manifest is not None:
            text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
            (self.run_dir / MANIFEST).write_text(text + "\n")
        self.enabled = False
