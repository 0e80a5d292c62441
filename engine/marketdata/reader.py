"""Replay source: the partitioned market-data Parquet files as a stream of numpy column batches.

``open_dataset(root, ...)`` finds the ``venue=/symbol=/date=`` partitions, checks every file's
footer and schema up front, and returns a ``ReplaySource``. Iterating it yields ``ColumnBatch``
objects whose rows are in global ``(ts_recv, stream, file order)`` order, where the stream id
is the index into ``ReplaySource.streams`` (sorted by venue, then symbol). Each stream is read
row group by row group with pyarrow (about ``batch_rows`` rows at a time) and the streams are
merged chunk by chunk (``engine.marketdata.merge``). Memory stays at about one chunk per stream
whatever the length of the data.

Arrays in a batch may be read-only views (of Arrow buffers or shared buffers): consumers read
them and copy what they want to change. Batches may cut a venue message in two; consumers rely
on the per-row ``batch_end`` flag and on the snapshot rule: a snapshot starts at a ``kind == 0``
row whose previous row of the same stream is not a snapshot row or ends a batch, and replaces
the book. An empty snapshot (one row, side 0, price 0, size 0) is a book reset written where the
importer lost sync: the book is unknown until the next snapshot.

Time window: rows with ``start_ns <= ts_recv < end_ns``. A book cannot start from deltas. With
``warmup`` (what a backtest asks for) each stream starts at its last snapshot at or before
``start_ns`` and yields the book rows (snapshot and delta) from there to ``start_ns`` as well, so
the consumer can rebuild the book as it stood at ``start_ns`` (``warmup_until``: rows before it are
history, not part of the window); streams with no snapshot before ``start_ns`` fall back to the
rule without ``warmup``: their book rows are skipped until the first snapshot that starts at or
after ``start_ns``. Trades and bbo rows are kept from ``start_ns``. Without ``start_ns`` every row
is replayed as stored (imports begin with a snapshot).

Errors (missing root, no matching partitions, unreadable or corrupt files, wrong schema, missing
scale metadata) are ``DataError(path, reason)`` naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import DataError
from engine.marketdata.merge import merge_sorted
from engine.marketdata.schema import META_PRICE_SCALE, META_SIZE_SCALE, NUMERIC_COLUMNS, SCHEMA
from engine.marketdata.writer import NS_PER_DAY

_PART = re.compile(r"part-(\d+)\.parquet$")
_DATE = re.compile(r"^date=(\d{4})-(\d{2})-(\d{2})$")
_NUMPY_TYPES = {name: SCHEMA.field(name).type for name in NUMERIC_COLUMNS}
_KIND_SNAPSHOT = 0
_KIND_DELTA = 1


@dataclass(slots=True)
class ColumnBatch:
    """A block of replay rows as numpy arrays (one entry per row in every array)."""

    ts_event: np.ndarray  # int64 ns
    ts_recv: np.ndarray  # int64 ns
    kind: np.ndarray  # int8: 0 snapshot, 1 delta, 2 trade, 3 bbo
    side: np.ndarray  # int8: +1 bid / buy, -1 ask / sell, 0 unknown
    price: np.ndarray  # int64 fixed point (scale per stream)
    size: np.ndarray  # int64 fixed point
    sequence: np.ndarray  # int64
    seq_first: np.ndarray  # int64
    batch_end: np.ndarray  # bool
    stream: np.ndarray  # int16 index into ReplaySource.streams

    def __len__(self) -> int:
        return len(self.ts_recv)


@dataclass(slots=True)
class _File:
    path: Path
    date_start: int  # ns of the partition's midnight
    num_rows: int
    price_scale: int
    size_scale: int


class ReplaySource:
    """The market data of one run: fixed stream order, scales, files and the row iterator."""

    def __init__(
        self,
        root: Path,
        stream_files: dict[tuple[str, str], list[_File]],
        start_ns: int | None,
        end_ns: int | None,
        batch_rows: int,
        warmup: bool = False,
    ) -> None:
        self.root = root
        self.streams: list[tuple[str, str]] = sorted(stream_files)
        self._files = [stream_files[s] for s in self.streams]
        self.files: list[Path] = [f.path for files in self._files for f in files]
        self.scales: dict[tuple[str, str], tuple[int, int]] = {
            s: (fs[0].price_scale, fs[0].size_scale) for s, fs in zip(self.streams, self._files, strict=True)
        }
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.batch_rows = batch_rows
        self._rows: int | None = None
        #: per stream, (file index, row in file) of its last snapshot start at or before start_ns
        self._warm: list[tuple[int, int] | None] = [None] * len(self.streams)
        if warmup and start_ns is not None:
            self._warm = [self._warm_position(files, start_ns) for files in self._files]
        #: rows received before this are the books' history, replayed to rebuild them (None: none)
        self.warmup_until = start_ns if any(w is not None for w in self._warm) else None

    def __repr__(self) -> str:
        return f"ReplaySource({self.root}, streams={self.streams}, files={len(self.files)})"

    @property
    def rows(self) -> int:
        """Rows the iterator yields (counted from the footers, or by a light scan with a window)."""
        if self._rows is None:
            if self.start_ns is None and self.end_ns is None:
                self._rows = sum(f.num_rows for files in self._files for f in files)
            else:
                cols = ("ts_recv", "kind", "batch_end")
                self._rows = sum(
                    len(chunk["ts_recv"])
                    for files, warm in zip(self._files, self._warm, strict=True)
                    for chunk in self._stream_chunks(files, cols, warm)
                )
        return self._rows

    def latency_spans(self) -> dict[int, tuple[int, int]]:
        """stream index -> (min, max) of ``ts_recv - ts_event`` over its rows that carry a venue
        time (``sim.venue_time``: feed latency from the data), reading only those two columns."""
        out: dict[int, tuple[int, int]] = {}
        for i, files in enumerate(self._files):
            lo = hi = None
            for chunk in self._stream_chunks(files, ("ts_event", "ts_recv")):
                has = chunk["ts_event"] > 0
                if not has.any():
                    continue
                d = chunk["ts_recv"][has] - chunk["ts_event"][has]
                a, b = int(d.min()), int(d.max())
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
            if lo is not None and hi is not None:
                out[i] = (lo, hi)
        return out

    def __iter__(self) -> Iterator[ColumnBatch]:
        if len(self.streams) == 1:
            yield from self._single(self._files[0])
        else:
            yield from self._merge()

    # --- per-stream reading -----------------------------------------------------------------
    def _read_file(
        self, f: _File, columns: tuple[str, ...], from_start: bool = True
    ) -> Iterator[dict[str, np.ndarray]]:
        """``f``'s rows in about ``batch_rows`` at a time; row groups wholly before ``start_ns``
        are skipped unless ``from_start`` is False (a warm-up reads the book's history)."""
        try:
            pf = pq.ParquetFile(f.path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(str(f.path), f"cannot read Parquet file: {exc}") from None
        with pf:
            md = pf.metadata
            groups = _row_groups(md, self.start_ns if from_start else None, self.end_ns)
            if not groups:
                return
            # Read group by group but hand out about ``batch_rows`` rows at a time.
            pending: list[int] = []
            pending_rows = 0
            for rg in groups:
                pending.append(rg)
                pending_rows += md.row_group(rg).num_rows
                if pending_rows >= self.batch_rows:
                    yield _to_numpy(f.path, pf, pending, columns)
                    pending, pending_rows = [], 0
            if pending:
                yield _to_numpy(f.path, pf, pending, columns)

    def _warm_position(self, files: list[_File], start: int) -> tuple[int, int] | None:
        """(file index, row in file) of the stream's last snapshot start at or before ``start``,
        looking back from the file that holds ``start`` (only three columns are read)."""
        cols = ("ts_recv", "kind", "batch_end")
        candidates = [i for i, f in enumerate(files) if f.date_start <= start]
        for fi in reversed(candidates):
            found = None
            prev_kind, prev_end, offset = -1, True, 0
            for chunk in self._read_file(files[fi], cols, from_start=False):
                ts, kind, bend = chunk["ts_recv"], chunk["kind"], chunk["batch_end"]
                n = len(ts)
                if n == 0:
                    continue
                starts = _snapshot_starts(kind, bend, prev_kind, prev_end)
                starts &= ts <= start
                if starts.any():
                    found = (fi, offset + int(np.flatnonzero(starts)[-1]))
                prev_kind, prev_end = int(kind[-1]), bool(bend[-1])
                offset += n
                if ts[-1] > start:
                    break
            if found is not None:
                return found
        return None

    def _stream_chunks(
        self, files: list[_File], columns: tuple[str, ...], warm: tuple[int, int] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """One stream's rows in file order with the time window and the snapshot rule applied;
        with ``warm``, from that snapshot start on, only book rows before ``start_ns``."""
        start, end = self.start_ns, self.end_ns
        need = tuple(dict.fromkeys((*columns, "ts_recv", "kind", "batch_end")))
        waiting = start is not None and warm is None
        prev_kind = -1
        prev_end = True
        prev_ts: int | None = None
        for fi, f in enumerate(files):
            day_end = f.date_start + NS_PER_DAY
            if end is not None and f.date_start >= end:
                continue
            if warm is not None:
                if fi < warm[0]:
                    continue
            elif start is not None and day_end <= start:
                continue
            offset = 0
            for chunk in self._read_file(f, need, from_start=warm is None):
                ts = chunk["ts_recv"]
                n = len(ts)
                if n == 0:
                    continue
                base = offset
                offset += n
                if (prev_ts is not None and ts[0] < prev_ts) or not bool(np.all(ts[1:] >= ts[:-1])):
                    raise DataError(str(f.path), "rows are not sorted by ts_recv")
                prev_ts = int(ts[-1])
                kind = chunk["kind"]
                bend = chunk["batch_end"]
                keep = None
                if warm is not None and start is not None:
                    hi = n if end is None else int(np.searchsorted(ts, end, side="left"))
                    keep = np.ones(n, dtype=bool)
                    keep[hi:] = False
                    if fi == warm[0] and warm[1] > base:
                        keep[: warm[1] - base] = False
                    book = (kind == _KIND_SNAPSHOT) | (kind == _KIND_DELTA)
                    keep &= book | (ts >= start)  # before the window, only what rebuilds the book
                elif start is not None or end is not None:
                    lo = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
                    hi = n if end is None else int(np.searchsorted(ts, end, side="left"))
                    if lo > 0 or hi < n:
                        keep = np.zeros(n, dtype=bool)
                        keep[lo:hi] = True
                    if waiting:
                        starts = _snapshot_starts(kind, bend, prev_kind, prev_end)
                        starts[:lo] = False
                        starts[hi:] = False
                        first = int(np.argmax(starts)) if starts.any() else n
                        book = (kind == _KIND_SNAPSHOT) | (kind == _KIND_DELTA)
                        book[first:] = False
                        if keep is None:
                            keep = np.ones(n, dtype=bool)
                        keep &= ~book
                        if first < n:
                            waiting = False
                prev_kind = int(kind[-1])
                prev_end = bool(bend[-1])
                if keep is not None:
                    chunk = {name: col[keep] for name, col in chunk.items()}
                if len(chunk["ts_recv"]):
                    yield chunk
                if end is not None and ts[-1] >= end:
                    return

    # --- output -----------------------------------------------------------------------------
    def _single(self, files: list[_File]) -> Iterator[ColumnBatch]:
        zeros = np.zeros(0, dtype=np.int16)
        for chunk in self._stream_chunks(files, NUMERIC_COLUMNS, self._warm[0]):
            n = len(chunk["ts_recv"])
            if len(zeros) < n:
                zeros = np.zeros(n, dtype=np.int16)
                zeros.flags.writeable = False  # shared by every batch of this iteration
            yield _batch(chunk, zeros[:n])

    def _merge(self) -> Iterator[ColumnBatch]:
        iters = [
            self._stream_chunks(files, NUMERIC_COLUMNS, warm)
            for files, warm in zip(self._files, self._warm, strict=True)
        ]
        for cols, stream in merge_sorted(iters):
            yield _batch(cols, stream)


def _snapshot_starts(kind: np.ndarray, bend: np.ndarray, prev_kind: int, prev_end: bool) -> np.ndarray:
    """Rows that start a snapshot: kind 0 after a non-snapshot row or after a batch end."""
    n = len(kind)
    pk = np.empty(n, dtype=kind.dtype)
    pe = np.empty(n, dtype=bool)
    pk[0] = prev_kind
    pe[0] = prev_end
    pk[1:] = kind[:-1]
    pe[1:] = bend[:-1]
    return (kind == _KIND_SNAPSHOT) & ((pk != _KIND_SNAPSHOT) | pe)


def _batch(cols: dict[str, np.ndarray], stream: np.ndarray) -> ColumnBatch:
    return ColumnBatch(
        ts_event=cols["ts_event"],
        ts_recv=cols["ts_recv"],
        kind=cols["kind"],
        side=cols["side"],
        price=cols["price"],
        size=cols["size"],
        sequence=cols["sequence"],
        seq_first=cols["seq_first"],
        batch_end=cols["batch_end"],
        stream=stream,
    )


def _to_numpy(path: Path, pf: pq.ParquetFile, groups: list[int], columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        table = pf.read_row_groups(groups, columns=list(columns), use_threads=False)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(str(path), f"corrupt data in row groups {groups}: {exc}") from None
    out = {}
    for name in columns:
        col = table.column(name)
        if col.null_count:
            raise DataError(str(path), f"column {name} has {col.null_count} null values")
        out[name] = col.to_numpy()
    return out


def _row_groups(md: pq.FileMetaData, start: int | None, end: int | None) -> list[int]:
    """Row groups that may hold rows in [start, end), plus the one before (to see a snapshot start)."""
    groups = list(range(md.num_row_groups))
    if start is None and end is None:
        return groups
    col = md.schema.names.index("ts_recv")
    chosen = []
    for rg in groups:
        stats = md.row_group(rg).column(col).statistics
        if stats is None or not stats.has_min_max:
            chosen.append(rg)
            continue
        if (start is not None and stats.max < start) or (end is not None and stats.min >= end):
            continue
        chosen.append(rg)
    if chosen and chosen[0] > 0 and start is not None:
        chosen.insert(0, chosen[0] - 1)
    return chosen


# --- discovery ------------------------------------------------------------------------------
def _partition_value(name: str, key: str) -> str | None:
    prefix = f"{key}="
    return name[len(prefix) :] if name.startswith(prefix) and len(name) > len(prefix) else None


def _part_key(path: Path) -> tuple[int, str]:
    m = _PART.search(path.name)
    return (int(m.group(1)) if m else 1 << 30, path.name)


def _check_file(path: Path) -> tuple[int, int, int]:
    """Validate footer and schema; returns ``(num_rows, price_scale, size_scale)``."""
    try:
        md = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(str(path), f"not a readable Parquet file ({exc})") from None
    for name, typ in _NUMPY_TYPES.items():
        if name not in schema.names:
            raise DataError(str(path), f"wrong schema: column {name} is missing")
        got = schema.field(name).type
        if got != typ:
            raise DataError(str(path), f"wrong schema: column {name} is {got}, expected {typ}")
    meta = schema.metadata or {}
    scales = []
    for key in (META_PRICE_SCALE, META_SIZE_SCALE):
        raw = meta.get(key)
        if raw is None or not raw.isdigit():
            raise DataError(str(path), f"missing or bad {key.decode()} metadata")
        scales.append(int(raw))
    return md.num_rows, scales[0], scales[1]


def _date_start(name: str) -> int | None:
    m = _DATE.match(name)
    if not m:
        return None
    try:
        day = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp()) * 1_000_000_000


def discover(
    root: str | Path,
    venue: str | None = None,
    symbols: list[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> dict[tuple[str, str], list[tuple[Path, int]]]:
    """Partition files per (venue, symbol) in replay order, as ``(path, midnight ns of the date)``."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(str(base), "market data root does not exist" if not base.exists() else "not a directory")
    wanted = set(symbols) if symbols else None
    found: dict[tuple[str, str], list[tuple[Path, int]]] = {}
    for vdir in sorted(base.iterdir()):
        v = _partition_value(vdir.name, "venue")
        if v is None or not vdir.is_dir() or (venue is not None and v != venue):
            continue
        for sdir in sorted(vdir.iterdir()):
            s = _partition_value(sdir.name, "symbol")
            if s is None or not sdir.is_dir() or (wanted is not None and s not in wanted):
                continue
            for ddir in sorted(sdir.iterdir()):
                day = _date_start(ddir.name)
                if day is None or not ddir.is_dir():
                    continue
                if (start_ns is not None and day + NS_PER_DAY <= start_ns) or (end_ns is not None and day >= end_ns):
                    continue
                for path in sorted(ddir.glob("*.parquet"), key=_part_key):
                    found.setdefault((v, s), []).append((path, day))
    return found


def open_dataset(
    root: str | Path,
    venue: str | None = None,
    symbols: list[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    batch_rows: int = 65536,
    warmup: bool = False,
) -> ReplaySource:
    """Open the market data under ``root`` for replay (see the module docstring)."""
    if batch_rows < 1:
        raise ValueError("batch_rows must be positive")
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise DataError(str(root), f"empty time window: end {end_ns} is not after start {start_ns}")
    # a warm-up may need files before the window: the last snapshot can be days before start_ns
    found = discover(root, venue, symbols, None if warmup else start_ns, end_ns)
    if not found:
        what = [f"venue={venue}" if venue else "", f"symbols={','.join(symbols)}" if symbols else ""]
        filt = " ".join(w for w in what if w)
        raise DataError(str(root), f"no market data partitions{' for ' + filt if filt else ''} in the time window")
    stream_files: dict[tuple[str, str], list[_File]] = {}
    for key, paths in found.items():
        files = []
        for path, day in paths:
            num_rows, ps, ss = _check_file(path)
            if files and (ps, ss) != (files[0].price_scale, files[0].size_scale):
                raise DataError(
                    str(path),
                    f"scales {ps}/{ss} differ from {files[0].path.name} ({files[0].price_scale}/{files[0].size_scale})",
                )
            files.append(_File(path, day, num_rows, ps, ss))
        stream_files[key] = files
    return ReplaySource(Path(root), stream_files, start_ns, end_ns, batch_rows, warmup)
