"""Importer of Kraken WebSocket v2 captures (``hft data import --format kraken-capture``).

A capture is text lines (gzip or plain) ``<recv_ns> <frame>``: the local receive time in ns, a
space, and a v2 frame exactly as received. The first line may be a header naming each pair's
precision, which the book checksum needs:

    <recv_ns> {"capture":"kraken-ws-v2","pairs":{"BTC/USD":{"price_precision":1,"qty_precision":8}}}

Without one, the precision comes from the instrument registry (``config/instruments.json``,
venue ``kraken``). One import handles one pair (``symbol``, or the only pair in the capture).

Mapping (``engine.marketdata.schema``):
- book ``snapshot`` -> ``snapshot`` rows, bids then asks, one batch;
- book ``update`` -> ``delta`` rows: every level of the message, plus a size-0 row for each level
  pushed out of the subscribed depth (Kraken sends none; a replay must not keep it);
- ``trade`` -> one ``trade`` row per trade (side: the taker's).
``sequence`` numbers the pair's book messages from 1 (Kraken's book has no ids); ``ts_event`` is
the message's ``timestamp``.

Every book message is checked with Kraken's CRC32 before it is written. A mismatch is a gap: it is
counted with its position, one *book reset* row (an empty snapshot) is written, and no book row
follows until the next snapshot. Malformed lines are counted and skipped.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import msgspec
import numpy as np

from engine.errors import ConfigError, DataError
from engine.marketdata.importers.result import MAX_POSITIONS, ImportResult, Position
from engine.marketdata.instruments import get_instrument
from engine.marketdata.writer import PartitionWriter
from engine.model import KIND_DELTA, KIND_SNAPSHOT, KIND_TRADE
from venues.kraken import decode as kd
from venues.kraken.book_sync import LevelBook
from venues.kraken.symbols import from_ws, to_ws

FORMAT = "kraken-capture"
HEADER = "kraken-ws-v2"


class _Header(msgspec.Struct):
    capture: str
    pairs: dict[str, dict[str, int]]
    depth: int = 10


def open_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def sniff(path: Path) -> bool:
    """``<digits> {`` lines whose first frame is a Kraken v2 frame or this format's header."""
    first = next(iter(open_lines(path)), b"")
    head, _, body = first.partition(b" ")
    if not head.isdigit() or not body.startswith(b"{"):
        return False
    return HEADER.encode() in body[:200] or b'"channel"' in body[:200] or b'"method"' in body[:200]


def _pairs(paths: Sequence[Path]) -> tuple[dict[str, tuple[int, int]], int, set[str]]:
    """Header precisions, the book depth, and every pair that has book or trade frames."""
    precisions: dict[str, tuple[int, int]] = {}
    depth = 10
    seen: set[str] = set()
    hdr = msgspec.json.Decoder(_Header)
    for p in paths:
        for line in open_lines(p):
            _, _, body = line.partition(b" ")
            if HEADER.encode() in body[:200]:
                try:
                    h = hdr.decode(body)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                depth = h.depth
                for name, pr in h.pairs.items():
                    precisions[name] = (int(pr["price_precision"]), int(pr["qty_precision"]))
                continue
            for marker in (b'"symbol":"', b'"symbol": "'):
                i = body.find(marker)
                if i > 0:
                    j = body.find(b'"', i + len(marker))
                    seen.add(body[i + len(marker) : j].decode(errors="replace"))
                    break
    return precisions, depth, seen


def import_kraken_capture(
    paths: Sequence[str | Path], root: str | Path, symbol: str | None = None, *, overwrite: bool = False
) -> ImportResult:
    files = [Path(p) for p in paths]
    if not files:
        raise DataError(str(root), "no input files")
    for f in files:
        if not f.is_file():
            raise DataError(str(f), "file not found")
    precisions, depth, seen = _pairs(files)
    if symbol is None:
        if len(seen) != 1:
            raise DataError(str(files[0]), f"the capture holds pairs {sorted(seen)}: pass --symbol")
        symbol = from_ws(next(iter(seen)))
    wire = to_ws(symbol)
    if wire in precisions:
        pp, qp = precisions[wire]
    else:
        try:
            inst = get_instrument("kraken", symbol)
        except ConfigError as exc:
            raise DataError(
                str(files[0]), f"no header with {wire}'s precision and no kraken {symbol} instrument ({exc.reason})"
            ) from None
        pp, qp = inst.price_scale, inst.size_scale
    result = ImportResult(venue="kraken", symbol=symbol, source_format=FORMAT, sources=[f.name for f in files])
    started = time.perf_counter()
    source = f"{FORMAT}:{','.join(f.name for f in files)}"
    with PartitionWriter(root, "kraken", symbol, pp, qp, source, overwrite=overwrite) as writer:
        imp = _Importer(wire, pp, qp, depth, writer, result)
        for f in files:
            imp.import_file(f)
    result.files_written = list(writer.files)
    if writer.first_ts is not None and writer.last_ts is not None:
        result.note_time(writer.first_ts, writer.last_ts)
    result.seconds = time.perf_counter() - started
    return result


class _Importer:
    def __init__(self, wire: str, pp: int, qp: int, depth: int, writer: PartitionWriter, result: ImportResult) -> None:
        self.wire = wire
        self.pp, self.qp = pp, qp
        self.levels = LevelBook(depth)
        self.synced = False
        self.seq = 0
        self.writer = writer
        self.result = result

    def import_file(self, path: Path) -> None:
        for lineno, line in enumerate(open_lines(path), 1):
            head, _, body = line.partition(b" ")
            if HEADER.encode() in body[:200]:
                continue
            try:
                ts = int(head)
                msg = kd.decode(body)
            except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
                self._malformed(path.name, lineno, "not a time and a Kraken v2 frame")
                continue
            try:
                if type(msg) is kd.BookMessage:
                    for d in msg.data:
                        if d.symbol == self.wire:
                            self.book(msg.type, d, ts, path.name, lineno)
                elif type(msg) is kd.TradeMessage:
                    for t in msg.data:
                        if t.symbol == self.wire:
                            self.trade(t, ts)
            except ValueError as exc:  # more decimals than the pair's precision
                self._malformed(path.name, lineno, str(exc))

    def _malformed(self, file: str, line: int, reason: str) -> None:
        self.result.malformed += 1
        if len(self.result.malformed_positions) < MAX_POSITIONS:
            self.result.malformed_positions.append(Position(file, line, reason))

    def _rows(self, kind: int, ts_event: int, ts_recv: int, rows: list[tuple[int, Decimal, Decimal]]) -> None:
        n = len(rows)
        if n == 0:
            return
        batch_end = np.zeros(n, dtype=bool)
        batch_end[-1] = True
        self.writer.append(
            {
                "ts_event": np.full(n, ts_event, dtype=np.int64),
                "ts_recv": np.full(n, ts_recv, dtype=np.int64),
                "kind": np.full(n, kind, dtype=np.int8),
                "side": np.array([r[0] for r in rows], dtype=np.int8),
                "price": np.array([kd.to_fixed(r[1], self.pp) for r in rows], dtype=np.int64),
                "size": np.array([kd.to_fixed(r[2], self.qp) for r in rows], dtype=np.int64),
                "sequence": np.full(n, self.seq, dtype=np.int64),
                "seq_first": np.full(n, self.seq, dtype=np.int64),
                "batch_end": batch_end,
            }
        )
        name = {KIND_SNAPSHOT: "snapshot", KIND_DELTA: "delta", KIND_TRADE: "trade"}[kind]
        self.result.rows[name] = self.result.rows.get(name, 0) + n

    def book(self, kind: str, d: kd.BookData, ts: int, file: str, lineno: int) -> None:
        lb = self.levels
        self.result.count_message(f"book_{kind}")
        if kind == "update" and not self.synced:
            self.result.dropped_book_messages += 1
            self.result.dropped_book_rows += len(d.bids) + len(d.asks)
            return
        if kind == "snapshot":
            lb.clear()
        tb: dict[Decimal, Decimal] = {}
        ta: dict[Decimal, Decimal] = {}
        lb.apply(lb.bids, d.bids, tb)
        lb.apply(lb.asks, d.asks, ta)
        lb.truncate(tb, ta)
        self.result.levels_seen += len(d.bids) + len(d.asks)
        if lb.checksum(self.pp, self.qp) != d.checksum:
            self.result.gaps += 1
            if len(self.result.gap_positions) < MAX_POSITIONS:
                self.result.gap_positions.append(Position(file, lineno, f"checksum mismatch on {kind}"))
            if self.synced:
                self.seq += 1
                self.result.book_resets += 1
                self._rows(KIND_SNAPSHOT, kd.ts_ns(d.timestamp), ts, [(0, Decimal(0), Decimal(0))])
            self.synced = False
            lb.clear()
            return
        self.seq += 1
        ts_event = kd.ts_ns(d.timestamp)
        if kind == "snapshot":
            rows = [(1, p, q) for p, q in lb.sorted_bids()] + [(-1, p, q) for p, q in lb.sorted_asks()]
            self._rows(KIND_SNAPSHOT, ts_event, ts, rows)
            self.synced = True
        else:
            rows = [(1, p, q) for p, q in tb.items()] + [(-1, p, q) for p, q in ta.items()]
            self._rows(KIND_DELTA, ts_event, ts, rows)

    def trade(self, t: kd.TradeData, ts: int) -> None:
        self.result.count_message("trade")
        self._rows(KIND_TRADE, kd.ts_ns(t.timestamp), ts, [(1 if t.side == "buy" else -1, t.price, t.qty)])


def import_files(
    paths: Sequence[Path],
    root: str | Path,
    venue: str | None = None,
    symbol: str | None = None,
    *,
    include_bbo: bool = False,
    overwrite: bool = False,
) -> list[ImportResult]:
    """One import per pair found in ``paths`` (or just ``symbol``'s); files in name order."""
    if venue not in (None, "kraken"):
        raise DataError(str(paths[0]) if paths else "<none>", f"venue {venue!r}: a Kraken capture is venue 'kraken'")
    files = sorted((Path(p) for p in paths), key=lambda f: f.name)
    if symbol is not None:
        return [import_kraken_capture(files, root, symbol, overwrite=overwrite)]
    _, _, seen = _pairs(files)
    return [import_kraken_capture(files, root, from_ws(w), overwrite=overwrite) for w in sorted(seen)]
