"""Importer of Tardis.dev downloadable CSV files (plain or gzip).

Supported data types, recognised by their header:
- ``incremental_book_L2`` (``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount``):
  ``is_snapshot`` rows -> ``snapshot``, others -> ``delta``; ``amount`` is the absolute level size.
  A run of snapshot rows after delta rows is a new snapshot (the book is replaced); delta rows
  before the first snapshot are skipped (no book to apply them to). A batch is the rows sharing
  one ``local_timestamp``, except that a snapshot run is always one batch of its own.
- ``trades`` (``...,id,side,price,amount``): side buy/sell/unknown is the taker side (+1/-1/0);
  numeric ids become ``sequence``, other ids (BitMEX UUIDs) a stable 63-bit hash.
- ``book_snapshot_N`` (``asks[i].price,asks[i].amount,bids[i].price,bids[i].amount``): each CSV
  row becomes one snapshot batch, bids then asks, best first; empty levels are left out.
- ``quotes`` (``ask_amount,ask_price,bid_price,bid_amount``): two ``bbo`` rows, bid then ask
  (an empty side gives price 0 and size 0).

Times are microseconds and become nanoseconds (exact integer arithmetic): ``timestamp`` ->
ts_event, ``local_timestamp`` -> ts_recv. Files of the same exchange and symbol are merged by
ts_recv into one stream (book files first on equal times), so a trades file and a book file of
one day land in the same partition. Malformed rows (wrong column count, bad numbers, unknown
sides) are counted with their line numbers and skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.errors import DataError
from engine.marketdata.decimals import parse_arrow
from engine.marketdata.importers.result import ImportResult
from engine.marketdata.instruments import Registry, find_by_venue_symbol, get_instrument, load_instruments
from engine.marketdata.merge import merge_sorted
from engine.marketdata.writer import PartitionWriter
from engine.model import KIND_BBO, KIND_DELTA, KIND_NAMES, KIND_SNAPSHOT, KIND_TRADE, Instrument, canonical_symbol

FORMAT = "tardis"
BLOCK_BYTES = 4 << 20
US = 1000
INCREMENTAL, SNAPSHOT_N, TRADES, QUOTES = "incremental_book_L2", "book_snapshot", "trades", "quotes"
_TYPE_RANK = {INCREMENTAL: 0, SNAPSHOT_N: 1, QUOTES: 2, TRADES: 3}
_BASE = ("exchange", "symbol", "timestamp", "local_timestamp")
_HASH_MASK = (1 << 63) - 1
_SNAPSHOT_FIELDS = (("asks", "price"), ("asks", "amount"), ("bids", "price"), ("bids", "amount"))


@dataclass(slots=True)
class TardisFile:
    """One CSV file: its data type, exchange, symbol and (for book_snapshot_N) depth."""

    path: Path
    data_type: str
    exchange: str
    symbol: str
    depth: int = 0


def _open_text(path: Path) -> BinaryIO:
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def inspect_file(path: str | Path) -> TardisFile:
    """Read the header and first row: data type, exchange and symbol. DataError if not Tardis CSV."""
    p = Path(path)
    try:
        with _open_text(p) as fh:
            header = fh.readline().decode("utf-8", "replace").strip()
            first = fh.readline().decode("utf-8", "replace").strip()
    except FileNotFoundError:
        raise DataError(str(p), "file not found") from None
    except (OSError, EOFError) as exc:
        raise DataError(str(p), f"cannot read: {exc}") from None
    cols = header.split(",")
    if tuple(cols[:4]) != _BASE:
        raise DataError(str(p), f"not a Tardis CSV: header starts {','.join(cols[:4])!r}, expected {','.join(_BASE)}")
    rest = cols[4:]
    depth = 0
    if rest == ["is_snapshot", "side", "price", "amount"]:
        dtype = INCREMENTAL
    elif rest == ["id", "side", "price", "amount"]:
        dtype = TRADES
    elif rest == ["ask_amount", "ask_price", "bid_price", "bid_amount"]:
        dtype = QUOTES
    elif (
        rest
        and len(rest) % 4 == 0
        and rest[:4] == ["asks[0].price", "asks[0].amount", "bids[0].price", "bids[0].amount"]
    ):
        depth = len(rest) // 4
        expected = [f"{s}[{i}].{f}" for i in range(depth) for s, f in _SNAPSHOT_FIELDS]
        if rest != expected:
            raise DataError(str(p), "book_snapshot header is not asks[i].price,asks[i].amount,bids[i].price,...")
        dtype = SNAPSHOT_N
    else:
        raise DataError(str(p), f"unknown Tardis data type with columns {','.join(rest)}")
    fields = first.split(",")
    if len(fields) < 2 or not fields[0] or not fields[1]:
        raise DataError(str(p), "no data rows")
    return TardisFile(p, dtype, fields[0], fields[1], depth)


class _FileReader:
    """Streams one Tardis file as sorted numeric column chunks; counts problems in ``result``."""

    def __init__(self, tf: TardisFile, inst: Instrument, result: ImportResult) -> None:
        self.tf = tf
        self.inst = inst
        self.result = result
        self.name = tf.path.name
        self.rows_seen = 0  # lines after the header
        self.rows_used = 0  # lines with the right fields and valid times
        self.blank_lines = 0
        self.prev_ts: int | None = None
        # incremental_book_L2 state carried across blocks
        self.have_snapshot = False
        self.carry: dict[str, np.ndarray] | None = None

    # --- CSV plumbing ---------------------------------------------------------------------
    def _lines(self) -> Iterator[pa.Array]:
        """Raw text lines after the header, one Arrow string array per block.

        Lines are split into fields here rather than by the CSV parser so that every physical
        line keeps its number, whatever is wrong with it.
        """
        try:
            reader = pacsv.open_csv(
                pa.input_stream(str(self.tf.path), compression="detect"),
                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, column_names=["line"], skip_rows=1),
                parse_options=pacsv.ParseOptions(
                    delimiter="\x01", quote_char=False, escape_char=False, ignore_empty_lines=False
                ),
                convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()}, strings_can_be_null=False),
            )
            for batch in reader:
                yield batch.column(0)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(str(self.tf.path), f"cannot read CSV: {exc}") from None

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        convert = {
            INCREMENTAL: self._incremental,
            TRADES: self._trades,
            QUOTES: self._quotes,
            SNAPSHOT_N: self._snapshots,
        }[self.tf.data_type]
        names = list(_all_strings(self.tf))
        width = len(names)
        filler = pa.scalar("," * (width - 1))
        for lines in self._lines():
            n = len(lines)
            if n == 0:
                continue
            first_line = self.rows_seen + 2  # the header is line 1
            self.rows_seen += n
            lines = pc.utf8_rtrim(lines, characters="\r")
            counts = pc.add(pc.count_substring(lines, ","), 1).to_numpy(zero_copy_only=False)
            ok = counts == width
            blank = pc.equal(lines, "").to_numpy(zero_copy_only=False)
            self.blank_lines += int(blank.sum())
            self._bad(ok | blank, first_line, f"expected {width} comma-separated fields")
            if not ok.all():
                lines = pc.if_else(pa.array(ok), lines, filler)
            fields = pc.split_pattern(lines, ",")
            batch = pa.RecordBatch.from_arrays([pc.list_element(fields, i) for i in range(width)], names=names)
            self._check_stream(batch, ok, first_line)
            ts_event, ok_e = parse_arrow(batch.column("timestamp"), 0)
            ts_recv, ok_r = parse_arrow(batch.column("local_timestamp"), 0)
            self._bad(~ok | (ok_e & ok_r), first_line, "bad timestamp or local_timestamp")
            ok &= ok_e & ok_r
            self.rows_used += int(ok.sum())
            out = convert(batch, ts_event * US, ts_recv * US, ok, first_line)
            if out is not None and len(out["ts_recv"]):
                yield self._checked(out)
        if self.carry is not None:
            last = self.carry
            last["batch_end"][:] = True
            self.carry = None
            yield self._checked(last)

    def _checked(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ts = cols["ts_recv"]
        if (self.prev_ts is not None and ts[0] < self.prev_ts) or not bool(np.all(ts[1:] >= ts[:-1])):
            raise DataError(str(self.tf.path), "local_timestamp goes backwards; the file must be in arrival order")
        self.prev_ts = int(ts[-1])
        return cols

    def _check_stream(self, batch: pa.RecordBatch, ok: np.ndarray, first_line: int) -> None:
        exch = batch.column("exchange").to_numpy(zero_copy_only=False)
        sym = batch.column("symbol").to_numpy(zero_copy_only=False)
        same = ((exch == self.tf.exchange) & (sym == self.tf.symbol)) | ~ok
        if not same.all():
            bad = int(np.flatnonzero(~same)[0])
            raise DataError(
                str(self.tf.path),
                f"line {first_line + bad}: {exch[bad]} {sym[bad]} differs from {self.tf.exchange} {self.tf.symbol}; "
                "one file must hold one exchange and symbol",
            )

    def _bad(self, ok: np.ndarray, first_line: int, reason: str) -> None:
        for i in np.flatnonzero(~ok):
            self.result.add_malformed(self.name, first_line + int(i), reason)

    def _decimal(
        self, batch: pa.RecordBatch, name: str, scale: int, allow_empty: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        col = batch.column(name)
        values, ok = parse_arrow(col, scale)
        if allow_empty:
            empty = pc.equal(col, "").to_numpy(zero_copy_only=False)
            ok |= empty
        return values, ok

    # --- data types -----------------------------------------------------------------------
    def _incremental(
        self, batch: pa.RecordBatch, ts_event: np.ndarray, ts_recv: np.ndarray, ok: np.ndarray, first_line: int
    ) -> dict[str, np.ndarray] | None:
        price, ok_p = self._decimal(batch, "price", self.inst.price_scale)
        size, ok_s = self._decimal(batch, "amount", self.inst.size_scale)
        snap_txt = batch.column("is_snapshot").to_numpy(zero_copy_only=False)
        side_txt = batch.column("side").to_numpy(zero_copy_only=False)
        is_snap = snap_txt == "true"
        ok_flag = is_snap | (snap_txt == "false")
        side = np.where(side_txt == "bid", 1, np.where(side_txt == "ask", -1, 0)).astype(np.int8)
        good = ok & ok_p & ok_s & ok_flag & (side != 0)
        self._bad(good | ~ok, first_line, "bad is_snapshot, side, price or amount")
        cols = {
            "ts_event": ts_event[good],
            "ts_recv": ts_recv[good],
            "kind": np.where(is_snap[good], KIND_SNAPSHOT, KIND_DELTA).astype(np.int8),
            "side": side[good],
            "price": price[good],
            "size": size[good],
            "sequence": np.zeros(int(good.sum()), dtype=np.int64),
            "seq_first": np.zeros(int(good.sum()), dtype=np.int64),
        }
        if not self.have_snapshot:
            kinds = cols["kind"]
            first_snap = int(np.argmax(kinds == KIND_SNAPSHOT)) if (kinds == KIND_SNAPSHOT).any() else len(kinds)
            if first_snap:
                self.result.dropped_book_rows += first_snap
                self.result.add_skipped(self.name, first_line, f"{first_snap} delta rows before the first snapshot")
                cols = {k: v[first_snap:] for k, v in cols.items()}
            if len(cols["kind"]) == 0:
                return None
            self.have_snapshot = True
        if self.carry is not None:
            cols = {k: np.concatenate([self.carry[k], cols[k]]) for k in cols}
        n = len(cols["ts_recv"])
        if n == 0:
            return None
        snap = cols["kind"] == KIND_SNAPSHOT
        ts = cols["ts_recv"]
        end = np.zeros(n, dtype=bool)
        # A batch ends where the time changes, except inside a snapshot run, and where the kind changes.
        end[:-1] = ((ts[1:] != ts[:-1]) & ~(snap[1:] & snap[:-1])) | (snap[1:] != snap[:-1])
        cols["batch_end"] = end
        # The last row's batch end depends on the next block: hold it back.
        self.carry = {k: v[-1:].copy() for k, v in cols.items()}
        return {k: v[:-1] for k, v in cols.items()}

    def _trades(
        self, batch: pa.RecordBatch, ts_event: np.ndarray, ts_recv: np.ndarray, ok: np.ndarray, first_line: int
    ) -> dict[str, np.ndarray] | None:
        price, ok_p = self._decimal(batch, "price", self.inst.price_scale)
        size, ok_s = self._decimal(batch, "amount", self.inst.size_scale)
        side_txt = batch.column("side").to_numpy(zero_copy_only=False)
        side = np.where(side_txt == "buy", 1, np.where(side_txt == "sell", -1, 0)).astype(np.int8)
        ok_side = (side != 0) | (side_txt == "unknown")
        ids, ok_id = parse_arrow(batch.column("id"), 0)
        if not ok_id.all():
            raw = batch.column("id").to_numpy(zero_copy_only=False)
            for i in np.flatnonzero(~ok_id):
                ids[i] = _hash_id(raw[i]) if raw[i] else 0
        good = ok & ok_p & ok_s & ok_side
        self._bad(good | ~ok, first_line, "bad side, price or amount")
        n = int(good.sum())
        return {
            "ts_event": ts_event[good],
            "ts_recv": ts_recv[good],
            "kind": np.full(n, KIND_TRADE, dtype=np.int8),
            "side": side[good],
            "price": price[good],
            "size": size[good],
            "sequence": ids[good],
            "seq_first": np.zeros(n, dtype=np.int64),
            "batch_end": np.ones(n, dtype=bool),
        }

    def _quotes(
        self, batch: pa.RecordBatch, ts_event: np.ndarray, ts_recv: np.ndarray, ok: np.ndarray, first_line: int
    ) -> dict[str, np.ndarray] | None:
        ps, ss = self.inst.price_scale, self.inst.size_scale
        bp, ok1 = self._decimal(batch, "bid_price", ps, allow_empty=True)
        bs, ok2 = self._decimal(batch, "bid_amount", ss, allow_empty=True)
        ap, ok3 = self._decimal(batch, "ask_price", ps, allow_empty=True)
        as_, ok4 = self._decimal(batch, "ask_amount", ss, allow_empty=True)
        good = ok & ok1 & ok2 & ok3 & ok4
        self._bad(good | ~ok, first_line, "bad price or amount")
        n = int(good.sum())
        return _interleave(
            ts_event[good],
            ts_recv[good],
            KIND_BBO,
            [(np.ones(n, np.int8), bp[good], bs[good]), (np.full(n, -1, np.int8), ap[good], as_[good])],
        )

    def _snapshots(
        self, batch: pa.RecordBatch, ts_event: np.ndarray, ts_recv: np.ndarray, ok: np.ndarray, first_line: int
    ) -> dict[str, np.ndarray] | None:
        ps, ss = self.inst.price_scale, self.inst.size_scale
        depth = self.tf.depth
        good = ok.copy()
        levels = []
        for side_name, side in (("bids", 1), ("asks", -1)):
            for i in range(depth):
                p, okp = self._decimal(batch, f"{side_name}[{i}].price", ps, allow_empty=True)
                q, okq = self._decimal(batch, f"{side_name}[{i}].amount", ss, allow_empty=True)
                good &= okp & okq
                levels.append((np.full(len(p), side, np.int8), p, q))
        self._bad(good | ~ok, first_line, "bad price or amount")
        levels = [(s[good], p[good], q[good]) for s, p, q in levels]
        out = _interleave(ts_event[good], ts_recv[good], KIND_SNAPSHOT, levels)
        present = out["price"] > 0
        # Rows where every level is empty still replace the book: keep one empty row for them.
        n_rows = int(good.sum())
        width = len(levels)
        any_level = present.reshape(n_rows, width).any(axis=1) if n_rows else np.zeros(0, bool)
        keep = present.copy()
        if n_rows and not any_level.all():
            keep.reshape(n_rows, width)[~any_level, 0] = True
        out = {k: v[keep] for k, v in out.items()}
        end = np.zeros(len(out["ts_recv"]), dtype=bool)
        counts = keep.reshape(n_rows, width).sum(axis=1) if n_rows else np.zeros(0, np.int64)
        end[np.cumsum(counts) - 1] = True
        out["batch_end"] = end
        return out


def _all_strings(tf: TardisFile) -> dict[str, pa.DataType]:
    names = list(_BASE)
    if tf.data_type == INCREMENTAL:
        names += ["is_snapshot", "side", "price", "amount"]
    elif tf.data_type == TRADES:
        names += ["id", "side", "price", "amount"]
    elif tf.data_type == QUOTES:
        names += ["ask_amount", "ask_price", "bid_price", "bid_amount"]
    else:
        names += [f"{s}[{i}].{f}" for i in range(tf.depth) for s, f in _SNAPSHOT_FIELDS]
    return {name: pa.string() for name in names}


def _interleave(
    ts_event: np.ndarray, ts_recv: np.ndarray, kind: int, levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Rows of ``len(levels)`` per input row, in ``levels`` order; batch_end on each row's last."""
    n = len(ts_recv)
    width = len(levels)
    total = n * width
    end = np.zeros((n, width), dtype=bool)
    end[:, -1] = True
    return {
        "ts_event": np.repeat(ts_event, width),
        "ts_recv": np.repeat(ts_recv, width),
        "kind": np.full(total, kind, dtype=np.int8),
        "side": np.stack([lv[0] for lv in levels], axis=1).ravel() if n else np.zeros(0, np.int8),
        "price": np.stack([lv[1] for lv in levels], axis=1).ravel() if n else np.zeros(0, np.int64),
        "size": np.stack([lv[2] for lv in levels], axis=1).ravel() if n else np.zeros(0, np.int64),
        "sequence": np.zeros(total, dtype=np.int64),
        "seq_first": np.zeros(total, dtype=np.int64),
        "batch_end": end.ravel(),
    }


def _hash_id(text: str) -> int:
    """A stable positive int64 for a non-numeric trade id (UUIDs)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") & _HASH_MASK


def import_tardis(
    paths: Sequence[str | Path],
    root: str | Path,
    venue: str | None = None,
    symbol: str | None = None,
    *,
    registry: Registry | None = None,
    overwrite: bool = False,
) -> list[ImportResult]:
    """Import Tardis CSV files; one ImportResult per (exchange, symbol) found.

    ``venue`` overrides the file's exchange id, ``symbol`` (canonical) its instrument lookup.
    """
    files = [inspect_file(p) for p in paths]
    if not files:
        raise DataError(str(root), "no input files")
    reg = registry if registry is not None else load_instruments()
    groups: dict[tuple[str, str], list[TardisFile]] = {}
    for tf in files:
        groups.setdefault((venue or tf.exchange, tf.symbol), []).append(tf)
    results = []
    for (v, wire), group in sorted(groups.items()):
        if symbol:
            inst = get_instrument(v, symbol, reg)
        else:
            found = find_by_venue_symbol(reg, v, wire)
            inst = found if found is not None else get_instrument(v, canonical_symbol(wire), reg)
        group.sort(key=lambda tf: (_TYPE_RANK[tf.data_type], tf.path.name))
        results.append(_import_group(group, inst, root, overwrite))
    return results


def _import_group(group: list[TardisFile], inst: Instrument, root: str | Path, overwrite: bool) -> ImportResult:
    result = ImportResult(inst.venue, inst.symbol, FORMAT, sources=[tf.path.name for tf in group])
    started = time.perf_counter()
    readers = [_FileReader(tf, inst, result) for tf in group]
    source = f"{FORMAT}:{','.join(tf.path.name for tf in group)}"
    with PartitionWriter(
        root, inst.venue, inst.symbol, inst.price_scale, inst.size_scale, source, overwrite=overwrite
    ) as w:
        for cols, _ids in merge_sorted([r.chunks() for r in readers]):
            counts = np.bincount(cols["kind"], minlength=len(KIND_NAMES))
            for k, name in KIND_NAMES.items():
                result.rows[name] += int(counts[k])
            w.append(cols)
    for r, tf in zip(readers, group, strict=True):
        name = tf.data_type if tf.data_type != SNAPSHOT_N else f"book_snapshot_{tf.depth}"
        result.count_message(name, r.rows_seen - r.blank_lines)
        if tf.data_type == INCREMENTAL:
            result.levels_seen += r.rows_used
    result.files_written = list(w.files)
    if w.first_ts is not None and w.last_ts is not None:
        result.note_time(w.first_ts, w.last_ts)
    result.seconds = time.perf_counter() - started
    return result
