"""Streaming writer of the market-data Parquet layout (``engine.marketdata.schema``).

``PartitionWriter`` takes column batches of one (venue, symbol) in arrival order and writes
``<root>/venue=<v>/symbol=<s>/date=<YYYY-MM-DD>/part-<n>.parquet``, the date being the UTC date
of ``ts_recv``. Rows are sorted by ``ts_recv`` with arrival order as the tie-break; the writer
holds at most ``2 * row_group_rows`` rows, so memory does not grow with the input and rows may
arrive out of order by up to one row group (importers re-time a few buffered messages). A row
earlier than what is already on disk is a ``DataError``: the input is not time-ordered.

A file is written as ``part-<n>.parquet.partial`` and renamed when complete; a failed import
(an exception inside the ``with`` block) removes every file it wrote.

Output bytes depend only on the rows and the metadata passed in (zstd, fixed row groups, no
wall-clock or absolute paths), so importing the same input twice gives identical files.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import DataError
from engine.marketdata.schema import (
    COLUMNS,
    META_PRICE_SCALE,
    META_SIZE_SCALE,
    META_SOURCE,
    META_SYMBOL,
    META_VENUE,
    NUMERIC_COLUMNS,
    SCHEMA,
    partition_path,
)

ROW_GROUP_ROWS = 65536
NS_PER_DAY = 86_400 * 1_000_000_000
_DTYPES = {
    "ts_event": np.int64,
    "ts_recv": np.int64,
    "kind": np.int8,
    "side": np.int8,
    "price": np.int64,
    "size": np.int64,
    "sequence": np.int64,
    "seq_first": np.int64,
    "batch_end": np.bool_,
}
# Encodings measured for replay speed and size on the Binance sample: dictionaries everywhere
# (rows of one message repeat times and ids; pyarrow falls back to plain when a dictionary
# grows too big) except ts_recv, which only grows and packs best as deltas.
_DICT_COLUMNS = [name for name in COLUMNS if name != "ts_recv"]
_COLUMN_ENCODING = {"ts_recv": "DELTA_BINARY_PACKED"}


def utc_date(ts_ns: int) -> str:
    """``YYYY-MM-DD`` of a nanosecond UTC timestamp."""
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%d")


def empty_columns() -> dict[str, np.ndarray]:
    return {name: np.zeros(0, dtype=dt) for name, dt in _DTYPES.items()}


class PartitionWriter:
    """Writes one (venue, symbol) stream into date partitions; use as a context manager.

    ``overwrite``: part files already in a partition this writer touches are removed first;
    otherwise finding one is a DataError (importing twice would silently duplicate rows).
    """

    def __init__(
        self,
        root: str | Path,
        venue: str,
        symbol: str,
        price_scale: int,
        size_scale: int,
        source: str,
        *,
        row_group_rows: int = ROW_GROUP_ROWS,
        overwrite: bool = False,
        compression_level: int = 3,
    ) -> None:
        if row_group_rows < 1:
            raise ValueError("row_group_rows must be positive")
        self.root = Path(root)
        self.venue = venue
        self.symbol = symbol
        self.row_group_rows = row_group_rows
        self.overwrite = overwrite
        self.compression_level = compression_level
        self.schema = SCHEMA.with_metadata(
            {
                META_PRICE_SCALE: str(price_scale).encode(),
                META_SIZE_SCALE: str(size_scale).encode(),
                META_SOURCE: source.encode(),
                META_VENUE: venue.encode(),
                META_SYMBOL: symbol.encode(),
            }
        )
        self._venue_col = pa.array([venue], pa.string())
        self._symbol_col = pa.array([symbol], pa.string())
        self._pending: list[dict[str, np.ndarray]] = []
        self._pending_rows = 0
        self._last_written_ts: int | None = None
        self._day: int | None = None
        self._writer: pq.ParquetWriter | None = None
        self._touched: set[Path] = set()
        self.files: list[Path] = []
        self.rows_written = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    # --- public API -----------------------------------------------------------------------
    def append(self, columns: dict[str, np.ndarray]) -> None:
        """Queue rows (the numeric columns of ``schema.NUMERIC_COLUMNS``, equal lengths)."""
        n = len(columns["ts_recv"])
        if n == 0:
            return
        batch = {}
        for name, dt in _DTYPES.items():
            col = np.asarray(columns[name])
            if len(col) != n:
                raise ValueError(f"column {name} has {len(col)} rows, ts_recv has {n}")
            batch[name] = col.astype(dt, copy=False)
        self._pending.append(batch)
        self._pending_rows += n
        if self._pending_rows >= 2 * self.row_group_rows:
            self._flush(keep=self.row_group_rows)

    def close(self) -> list[Path]:
        """Write what is left and close the files. Returns the files written."""
        if self._pending_rows:
            self._flush(keep=0)
        self._close_file()
        return list(self.files)

    def abort(self) -> None:
        """Stop after a failure: nothing of this import stays on disk."""
        self._pending.clear()
        self._pending_rows = 0
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for path in self.files:
            for candidate in (path, _partial(path)):
                candidate.unlink(missing_ok=True)
        self.files = []

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # --- internals --------------------------------------------------------------------------
    def _flush(self, keep: int) -> None:
        """Sort what is queued and write all but the latest ``keep`` rows, in whole row groups."""
        cols = {name: np.concatenate([b[name] for b in self._pending]) for name in _DTYPES}
        order = np.argsort(cols["ts_recv"], kind="stable")
        if not np.all(order[:-1] < order[1:]):
            cols = {name: col[order] for name, col in cols.items()}
        ts = cols["ts_recv"]
        if self._last_written_ts is not None and ts[0] < self._last_written_ts:
            raise DataError(
                str(self.root / partition_path(self.venue, self.symbol, utc_date(int(ts[0])))),
                f"rows are not in ts_recv order: {int(ts[0])} arrives after {self._last_written_ts} was written "
                f"(the writer reorders at most {self.row_group_rows} rows)",
            )
        n = len(ts)
        count = n if keep == 0 else ((n - keep) // self.row_group_rows) * self.row_group_rows
        for lo in range(0, count, self.row_group_rows):
            hi = min(lo + self.row_group_rows, count)
            self._write_sorted({name: col[lo:hi] for name, col in cols.items()})
        rest = {name: col[count:] for name, col in cols.items()}
        self._pending = [rest] if n > count else []
        self._pending_rows = n - count

    def _write_sorted(self, cols: dict[str, np.ndarray]) -> None:
        ts = cols["ts_recv"]
        days = ts // NS_PER_DAY
        cuts = np.flatnonzero(days[1:] != days[:-1]) + 1
        bounds = [0, *cuts.tolist(), len(ts)]
        for lo, hi in itertools.pairwise(bounds):
            day = int(days[lo])
            if day != self._day:
                self._open_day(day, int(ts[lo]))
            self._write_table({name: col[lo:hi] for name, col in cols.items()})
        self._last_written_ts = int(ts[-1])
        if self.first_ts is None:
            self.first_ts = int(ts[0])
        self.last_ts = int(ts[-1])

    def _open_day(self, day: int, ts: int) -> None:
        self._close_file()
        self._day = day
        directory = self.root / partition_path(self.venue, self.symbol, utc_date(ts))
        if directory not in self._touched:
            self._touched.add(directory)
            existing = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
            if existing and not self.overwrite:
                raise DataError(
                    str(directory), f"partition already holds {len(existing)} file(s); import with overwrite to replace"
                )
            for old in [*existing, *(directory.glob(f"*{_PARTIAL}") if directory.is_dir() else [])]:
                old.unlink()
            directory.mkdir(parents=True, exist_ok=True)
        n = sum(1 for f in self.files if f.parent == directory)
        path = directory / f"part-{n}.parquet"
        try:
            self._writer = pq.ParquetWriter(
                str(_partial(path)),
                self.schema,
                compression="zstd",
                compression_level=self.compression_level,
                use_dictionary=_DICT_COLUMNS,
                column_encoding=_COLUMN_ENCODING,
                write_statistics=True,
                data_page_version="2.0",
            )
        except OSError as exc:
            raise DataError(str(path), f"cannot create: {exc}") from None
        self.files.append(path)

    def _write_table(self, cols: dict[str, np.ndarray]) -> None:
        n = len(cols["ts_recv"])
        zeros = pa.array(np.zeros(n, dtype=np.int8))
        arrays = []
        for name in COLUMNS:
            if name == "venue":
                arrays.append(pa.DictionaryArray.from_arrays(zeros, self._venue_col))
            elif name == "symbol":
                arrays.append(pa.DictionaryArray.from_arrays(zeros, self._symbol_col))
            else:
                arrays.append(pa.array(cols[name]))
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        assert self._writer is not None
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        self.rows_written += n

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            # Readers only see *.parquet: a file appears under its name once it is complete.
            os.replace(_partial(self.files[-1]), self.files[-1])


_PARTIAL = ".partial"


def _partial(path: Path) -> Path:
    return path.with_name(path.name + _PARTIAL)


__all__ = ["NUMERIC_COLUMNS", "ROW_GROUP_ROWS", "PartitionWriter", "empty_columns", "utc_date"]
