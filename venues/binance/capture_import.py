"""Importer of Binance WebSocket captures (the hftbacktest collector's ``<recv_ns> <json>`` lines).

Each gzip (or plain) text line is the local receive time in ns, a space, and either a
combined-stream message ``{"stream": ..., "data": ...}`` or a bare REST depth snapshot
``{"lastUpdateId": ...}``. One import handles one (venue, symbol) stream over one or more
consecutive files (a day cut does not reset the book: the next file continues the chain).

Mapping (``engine.marketdata.schema``):
- REST snapshot -> ``snapshot`` rows, bids then asks, one batch; sequence = ``lastUpdateId``;
  ts_event = ``T`` (futures) or 0 (spot snapshots carry no time).
- ``depthUpdate`` -> ``delta`` rows, ``b`` then ``a``; sequence = ``u``, seq_first = ``U``;
  ts_event = ``T`` on futures (transaction time), ``E`` on spot.
- ``trade`` -> one ``trade`` row; side = -1 when ``m`` (the buyer was the maker, so the taker sold);
  sequence = trade id; ts_event = ``T``.
- ``bookTicker`` -> two ``bbo`` rows (bid, ask) only with ``include_bbo``; sequence = ``u``.

The book is synchronised here, at import, with Binance's documented rules, so the Parquet file
replays correctly in file order (L = the snapshot's ``lastUpdateId``):
- futures (USD-M ``binance-futures``, COIN-M ``binance-delivery``): drop u < L; the first applied
  update needs U <= L <= u; every later one needs ``pu`` == the previous ``u``;
- spot (``binance``): drop u <= L; the first applied update needs U <= L+1 <= u; every later one
  needs U == previous u + 1.
Updates received before their snapshot are held back and written right after it, with ts_recv
moved up to the snapshot's receive time (the earliest moment a live book could have used them).
When the chain breaks the gap is reported and one *book reset* row is written: a snapshot batch
of a single row with price 0 and size 0, i.e. an empty book. No book row follows until a fresh
snapshot arrives and is bridged, so a replay never shows a silently wrong book.

Malformed lines (no time prefix, bad JSON, missing fields, prices that are not exact decimals,
a stream name that is not one: unreadable, an unknown channel of the imported symbol, or another
symbol's name on a message of the imported symbol) are counted with their line numbers and
skipped; everything else is kept. Streams that are well-formed but not imported (another symbol's,
``aggTrade``, partial depth) are counted as skipped. A truncated gzip stream ends that file with
one malformed entry, after every complete line before the cut has been imported.
"""

from __future__ import annotations

import gzip
import re
import time
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import numpy as np

from engine.errors import DataError
from engine.logs import get_logger
from engine.marketdata.decimals import parse_strings
from engine.marketdata.importers.result import ImportResult
from engine.marketdata.instruments import Registry, find_by_venue_symbol, get_instrument, load_instruments
from engine.marketdata.writer import PartitionWriter
from engine.model import KIND_BBO, KIND_DELTA, KIND_NAMES, KIND_SNAPSHOT, KIND_TRADE, Instrument, canonical_symbol

SPOT_VENUES = frozenset({"binance"})
FUTURES_VENUES = frozenset({"binance-futures", "binance-delivery"})
VENUES = SPOT_VENUES | FUTURES_VENUES
FORMAT = "binance-capture"

CHUNK_LINES = 8192
MAX_HELD_MESSAGES = 20_000  # deltas kept while waiting for a snapshot; older ones are dropped
MS = 1_000_000

_log = get_logger("market_data")


# --- wire structures (decoded with msgspec; unknown fields are ignored) -----------------------
class _Envelope(msgspec.Struct):
    stream: str
    data: msgspec.Raw


class _Depth(msgspec.Struct, kw_only=True):
    E: int
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    T: int = 0
    pu: int | None = None


class _Trade(msgspec.Struct, kw_only=True):
    t: int
    p: str
    q: str
    T: int
    m: bool


class _BookTicker(msgspec.Struct, kw_only=True):
    u: int
    b: str
    B: str
    a: str
    A: str
    T: int = 0


class _Snapshot(msgspec.Struct, kw_only=True):
    lastUpdateId: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    T: int = 0


class _DepthEnvelope(msgspec.Struct):
    data: _Depth


class _TradeEnvelope(msgspec.Struct):
    data: _Trade


class _BookTickerEnvelope(msgspec.Struct):
    data: _BookTicker


class _Peek(msgspec.Struct):
    """The symbol a stream message is about (``s``), to tell another symbol's stream from ours
    under a damaged name."""

    s: str = ""


class _PeekEnvelope(msgspec.Struct):
    data: _Peek


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_DEPTH = msgspec.json.Decoder(_Depth)
_TRADE = msgspec.json.Decoder(_Trade)
_BBO = msgspec.json.Decoder(_BookTicker)
_DEPTH_ENV = msgspec.json.Decoder(_DepthEnvelope)
_TRADE_ENV = msgspec.json.Decoder(_TradeEnvelope)
_BBO_ENV = msgspec.json.Decoder(_BookTickerEnvelope)
_STREAM_PREFIX = b'{"stream":"'
_SNAPSHOT = msgspec.json.Decoder(_Snapshot)
_PEEK = msgspec.json.Decoder(_Peek)
_PEEK_ENV = msgspec.json.Decoder(_PeekEnvelope)
_ANY = msgspec.json.Decoder()

# stream kinds: imported (depth, trade, bookTicker), ``_S_OTHER`` a well-formed stream of ours or of
# every symbol (``!bookTicker``) that is not imported, ``_S_FOREIGN`` another symbol's (or ours
# under a damaged symbol: the message says), ``_S_BAD`` not a stream name (malformed)
_S_DEPTH, _S_TRADE, _S_BBO, _S_OTHER, _S_SNAPSHOT, _S_FOREIGN, _S_BAD = 0, 1, 2, 3, 4, 5, 6
#: ``<symbol>@<channel>[@<speed or option>...]`` or an all-market ``!<channel>[@...]``
_STREAM_NAME = re.compile(r"^(?:[a-z0-9_]+|![A-Za-z]+)(?:@[A-Za-z0-9_]+)+$|^![A-Za-z]+$")
#: Binance's market-data channels (spot, USD-M, COIN-M): a stream of the imported symbol with a
#: channel not listed here is a damaged name, not a channel we skip
_CHANNELS = re.compile(
    r"^(?:trade|aggTrade|bookTicker|depth(?:5|10|20)?|rpiDepth|miniTicker|ticker(?:_\w+)?|avgPrice|"
    r"kline_\w+|continuousKline_\w+|indexPriceKline_\w+|markPriceKline_\w+|markPrice|forceOrder|indexPrice|"
    r"compositeIndex|contractInfo|assetIndex)$"
)
_MAX_STREAM_NAMES = 4096  # names remembered; a file of damaged names must not grow the cache forever
_MESSAGE_NAMES = {_S_SNAPSHOT: "snapshot", _S_DEPTH: "depthUpdate", _S_TRADE: "trade", _S_BBO: "bookTicker"}


# --- detection ---------------------------------------------------------------------------------
def open_lines(path: Path, block: int = 1 << 20) -> Iterator[bytes]:
    """Lines of a gzip or plain capture file (raises the gzip/zlib errors of a damaged stream).

    Reads large blocks and splits them: much faster than ``readline`` per line, and memory
    stays at one block plus one line. A gzip stream is read with ``read1`` (what has been
    decompressed so far), so every complete line before a truncation is yielded before the error.
    """
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        fh = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        read = fh.read1 if gz else fh.read
        tail = b""
        while True:
            data = read(block)
            if not data:
                break
            lines = (tail + data).split(b"\n")
            tail = lines.pop()
            yield from lines
        if tail:
            yield tail


def detect_capture(path: str | Path, max_lines: int = 5000) -> tuple[str | None, str | None]:
    """Guess ``(venue, wire symbol)`` of a capture from its messages, then from its path.

    Content decides: a depth update with ``ps`` is COIN-M, with ``pu`` USD-M, without ``pu`` spot;
    a trade with ``M`` is spot. Path words (``spot``, ``usdm``, ``coinm``/``cm``) are the fallback.
    """
    p = Path(path)
    venue: str | None = None
    symbol: str | None = None
    try:
        for n, line in enumerate(open_lines(p)):
            if n >= max_lines or (venue and symbol):
                break
            _, _, body = line.partition(b" ")
            try:
                msg = _ANY.decode(body)
            except msgspec.DecodeError:
                continue
            if not isinstance(msg, dict) or not isinstance(msg.get("stream"), str):
                continue
            data = msg.get("data")
            if not isinstance(data, dict):
                continue
            symbol = symbol or msg["stream"].split("@")[0].upper()
            if venue is None and data.get("e") == "depthUpdate":
                venue = "binance-delivery" if "ps" in data else "binance-futures" if "pu" in data else "binance"
            elif venue is None and data.get("e") == "trade" and "M" in data:
                venue = "binance"
    except (OSError, EOFError, zlib.error):
        pass
    if venue is None:
        words = {part.lower() for part in p.parts} | set(p.stem.lower().split("_"))
        if words & {"spot"}:
            venue = "binance"
        elif words & {"usdm", "futures", "fapi", "um"}:
            venue = "binance-futures"
        elif words & {"coinm", "cm", "delivery", "dapi"}:
            venue = "binance-delivery"
    if symbol is None:
        stem = p.name.split(".")[0]
        head = stem.rsplit("_", 1)[0] if "_" in stem else stem
        symbol = head.upper() or None
    return venue, symbol


def resolve_instrument(venue: str, wire_symbol: str | None, symbol: str | None, registry: Registry) -> Instrument:
    """The registry entry for a canonical ``symbol`` or, failing that, for a wire symbol."""
    if symbol:
        return get_instrument(venue, symbol, registry)
    if not wire_symbol:
        raise DataError(venue, "cannot tell the symbol: pass it explicitly")
    inst = find_by_venue_symbol(registry, venue, wire_symbol)
    return inst if inst is not None else get_instrument(venue, canonical_symbol(wire_symbol), registry)


# --- the importer ------------------------------------------------------------------------------
class _Held:
    """A delta message waiting for a snapshot: its ids, times and rows (chunk index or arrays)."""

    __slots__ = ("event", "file", "first", "line", "nlev", "prev", "recv", "ref", "u")

    def __init__(
        self, u: int, first: int, prev: int, recv: int, event: int, file: str, line: int, nlev: int, ref: object
    ) -> None:
        self.u = u  # final update id (Binance ``u``)
        self.first = first  # first update id (``U``)
        self.prev = prev  # previous message's final id (``pu``, futures only)
        self.recv = recv
        self.event = event
        self.file = file
        self.line = line
        self.nlev = nlev
        self.ref = ref


class _Chunk:
    """Decoded messages of a block of lines: per-message fields plus flat per-level arrays."""

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.recv: list[int] = []
        self.event: list[int] = []
        self.seq: list[int] = []
        self.first: list[int] = []
        self.prev: list[int] = []
        self.line: list[int] = []
        self.file: list[str] = []
        self.seg: list[int] = []  # per message: n1, side1, n2, side2
        self.px: list[str] = []
        self.qty: list[str] = []

    def __len__(self) -> int:
        return len(self.kind)

    def add(self, kind: int, recv: int, event: int, seq: int, first: int, prev: int, file: str, line: int) -> None:
        self.kind.append(kind)
        self.recv.append(recv)
        self.event.append(event)
        self.seq.append(seq)
        self.first.append(first)
        self.prev.append(prev)
        self.file.append(file)
        self.line.append(line)

    def finish(self, price_scale: int, size_scale: int) -> None:
        """Parse every price and size of the chunk at once and index levels by message."""
        self.prices, pok = parse_strings(self.px, price_scale)
        self.sizes, sok = parse_strings(self.qty, size_scale)
        seg = np.array(self.seg, dtype=np.int64).reshape(-1, 4)
        self.nlev = seg[:, 0] + seg[:, 2]
        lens = seg[:, [0, 2]].ravel()
        self.sides = np.repeat(seg[:, [1, 3]].ravel().astype(np.int8), lens)
        ends = np.cumsum(self.nlev)
        self.starts = ends - self.nlev
        bad_cum = np.concatenate([[0], np.cumsum(~(pok & sok))])
        self.bad = (bad_cum[ends] - bad_cum[self.starts]) > 0
        self.a_kind = np.array(self.kind, dtype=np.int8)
        self.a_event = np.array(self.event, dtype=np.int64)
        self.a_seq = np.array(self.seq, dtype=np.int64)
        self.a_first = np.array(self.first, dtype=np.int64)
        self.px = []
        self.qty = []

    def rows(self, idx: Sequence[int], recv: Sequence[int]) -> dict[str, np.ndarray]:
        """The output rows of messages ``idx`` (in that order) with receive times ``recv``."""
        ii = np.asarray(idx, dtype=np.int64)
        lens = self.nlev[ii]
        total = int(lens.sum())
        ends = np.cumsum(lens)
        row = np.arange(total, dtype=np.int64) + np.repeat(self.starts[ii] - (ends - lens), lens)
        batch_end = np.zeros(total, dtype=bool)
        batch_end[ends[lens > 0] - 1] = True
        return {
            "ts_event": np.repeat(self.a_event[ii], lens),
            "ts_recv": np.repeat(np.asarray(recv, dtype=np.int64), lens),
            "kind": np.repeat(self.a_kind[ii], lens),
            "side": self.sides[row],
            "price": self.prices[row],
            "size": self.sizes[row],
            "sequence": np.repeat(self.a_seq[ii], lens),
            "seq_first": np.repeat(self.a_first[ii], lens),
            "batch_end": batch_end,
        }


def _reset_row(ts_event: int, ts_recv: int, sequence: int) -> dict[str, np.ndarray]:
    """One empty snapshot batch: the book is cleared because its state is unknown."""
    return {
        "ts_event": np.array([ts_event], dtype=np.int64),
        "ts_recv": np.array([ts_recv], dtype=np.int64),
        "kind": np.array([KIND_SNAPSHOT], dtype=np.int8),
        "side": np.array([0], dtype=np.int8),
        "price": np.array([0], dtype=np.int64),
        "size": np.array([0], dtype=np.int64),
        "sequence": np.array([sequence], dtype=np.int64),
        "seq_first": np.array([0], dtype=np.int64),
        "batch_end": np.array([True]),
    }


class _Output:
    """Rows of one chunk in emission order: runs of chunk messages and ready-made row blocks."""

    def __init__(self, chunk: _Chunk) -> None:
        self.chunk = chunk
        self.pieces: list[dict[str, np.ndarray]] = []
        self.idx: list[int] = []
        self.recv: list[int] = []

    def message(self, i: int, recv: int) -> None:
        self.idx.append(i)
        self.recv.append(recv)

    def block(self, rows: dict[str, np.ndarray]) -> None:
        self._close_run()
        self.pieces.append(rows)

    def _close_run(self) -> None:
        if self.idx:
            self.pieces.append(self.chunk.rows(self.idx, self.recv))
            self.idx = []
            self.recv = []

    def build(self) -> dict[str, np.ndarray] | None:
        self._close_run()
        if not self.pieces:
            return None
        if len(self.pieces) == 1:
            return self.pieces[0]
        return {name: np.concatenate([p[name] for p in self.pieces]) for name in self.pieces[0]}


class BinanceCaptureImporter:
    """State of one import: book sync across files, counters, and the Parquet writer."""

    UNSYNCED, AWAIT_BRIDGE, SYNCED = 0, 1, 2

    def __init__(
        self, instrument: Instrument, writer: PartitionWriter, result: ImportResult, include_bbo: bool
    ) -> None:
        self.inst = instrument
        self.writer = writer
        self.result = result
        self.include_bbo = include_bbo
        self.spot = instrument.venue in SPOT_VENUES
        self.stream_prefix = instrument.venue_symbol.lower() + "@"
        self.state = self.UNSYNCED
        self.last_u = 0
        self.snap_id = 0
        self.held: deque[_Held] = deque()
        self._streams: dict[bytes, int] = {}
        self.counts = [0] * 5
        self._out: _Output | None = None

    # --- reading -------------------------------------------------------------------------
    def import_file(self, path: Path) -> None:
        name = path.name
        chunk = _Chunk()
        line_no = 0
        try:
            for line_no, line in enumerate(open_lines(path), start=1):
                self._decode_line(chunk, name, line_no, line)
                if len(chunk) >= CHUNK_LINES:
                    self._process(chunk)
                    chunk = _Chunk()
        except FileNotFoundError:
            raise DataError(str(path), "file not found") from None
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            self.result.add_malformed(name, line_no + 1, f"truncated or corrupt gzip stream ({exc})")
        except OSError as exc:
            raise DataError(str(path), f"cannot read: {exc}") from None
        if len(chunk):
            self._process(chunk)

    def _decode_line(self, chunk: _Chunk, file: str, line_no: int, line: bytes) -> None:
        sp = line.find(b" ")
        if sp <= 0:
            if line.strip():
                self.result.add_malformed(file, line_no, "expected '<recv_ns> <json>'")
            return
        head = line[:sp]
        if not head.isdigit():
            self.result.add_malformed(file, line_no, "receive time is not an integer")
            return
        recv = int(head)
        body = line[sp + 1 :]
        if body.startswith(_STREAM_PREFIX):
            # The collector writes Binance's bytes as received: the stream name comes first, so the
            # message type is known before decoding and each line is decoded once.
            start = len(_STREAM_PREFIX)
            end = body.find(b'"', start)
            if end < 0:  # the line ends inside the name: cut short
                name, kind = body[start:].rstrip(), _S_BAD
            else:
                name = body[start:end]
                kind = self._streams.get(name)
                if kind is None:
                    kind = self._stream_kind(name.decode("utf-8", "replace"))
                    if len(self._streams) < _MAX_STREAM_NAMES:
                        self._streams[name] = kind
            self._decode_stream(chunk, file, line_no, recv, body, kind, name=name)
            return
        try:
            if body.startswith(b'{"lastUpdateId"'):
                self._add_snapshot(chunk, file, line_no, recv, _SNAPSHOT.decode(body))
                return
            env = _ENVELOPE.decode(body)
        except msgspec.DecodeError as exc:
            try:
                snap = _SNAPSHOT.decode(body)
            except msgspec.DecodeError:
                self.result.add_malformed(file, line_no, f"bad message: {exc}")
                return
            self._add_snapshot(chunk, file, line_no, recv, snap)
            return
        kind = self._stream_kind(env.stream)
        self._decode_stream(chunk, file, line_no, recv, b"", kind, env.data, env.stream.encode("utf-8", "replace"))

    def _decode_stream(
        self,
        chunk: _Chunk,
        file: str,
        line_no: int,
        recv: int,
        body: bytes,
        kind: int,
        data: bytes | None = None,
        name: bytes = b"",
    ) -> None:
        """Decode one combined-stream message; ``data`` is its payload when already split off."""
        if kind >= _S_OTHER and kind != _S_SNAPSHOT:
            self._not_imported(file, line_no, body, kind, data, name)
            return
        try:
            if kind == _S_DEPTH:
                d = _DEPTH.decode(data) if data is not None else _DEPTH_ENV.decode(body).data
                self._add_depth(chunk, file, line_no, recv, d)
            elif kind == _S_TRADE:
                tr = _TRADE.decode(data) if data is not None else _TRADE_ENV.decode(body).data
                self.counts[_S_TRADE] += 1
                chunk.add(KIND_TRADE, recv, tr.T * MS, tr.t, 0, 0, file, line_no)
                chunk.seg.extend((1, -1 if tr.m else 1, 0, 0))
                chunk.px.append(tr.p)
                chunk.qty.append(tr.q)
            elif self.include_bbo:
                bt = _BBO.decode(data) if data is not None else _BBO_ENV.decode(body).data
                self.counts[_S_BBO] += 1
                chunk.add(KIND_BBO, recv, bt.T * MS, bt.u, 0, 0, file, line_no)
                chunk.seg.extend((1, 1, 1, -1))
                chunk.px.extend((bt.b, bt.a))
                chunk.qty.extend((bt.B, bt.A))
            elif data is not None or body.rstrip().endswith(b"}}"):
                self.counts[_S_BBO] += 1  # not imported: a cheap completeness check instead of decoding
            else:
                self.result.add_malformed(file, line_no, "truncated bookTicker message")
        except msgspec.DecodeError as exc:
            self.result.add_malformed(file, line_no, f"bad message: {exc}")

    def _stream_kind(self, stream: str) -> int:
        if not _STREAM_NAME.match(stream):
            return _S_BAD
        if stream.startswith("!"):
            return _S_OTHER  # every symbol's stream: not this import's
        if not stream.startswith(self.stream_prefix):
            return _S_FOREIGN
        channel = stream[len(self.stream_prefix) :].split("@")[0]
        if channel == "depth":  # diff depth at any speed; depth5/depth20 are partial images
            return _S_DEPTH
        if channel == "trade":
            return _S_TRADE
        if channel == "bookTicker":
            return _S_BBO
        return _S_OTHER if _CHANNELS.match(channel) else _S_BAD

    def _not_imported(self, file: str, line_no: int, body: bytes, kind: int, data: bytes | None, name: bytes) -> None:
        """A message of a stream that is not imported is skipped, unless its name is damaged:
        not a stream name, an unknown channel of this symbol, or another symbol's name on a
        message about this symbol (then it is malformed: the message is lost, say where)."""
        shown = name.decode("utf-8", "replace")[:60]
        if kind == _S_BAD:
            self.result.add_malformed(file, line_no, f"damaged stream name {shown!r}")
            return
        if kind == _S_FOREIGN:
            try:
                symbol = _PEEK.decode(data).s if data is not None else _PEEK_ENV.decode(body).data.s
            except msgspec.DecodeError:
                symbol = ""  # not an object with a symbol: nothing says it is ours
            if symbol.upper() == self.inst.venue_symbol.upper():
                self.result.add_malformed(file, line_no, f"damaged stream name {shown!r} on a {symbol} message")
                return
        self.result.add_skipped(file, line_no, "stream is not imported")

    def _add_snapshot(self, chunk: _Chunk, file: str, line_no: int, recv: int, snap: _Snapshot) -> None:
        self.counts[_S_SNAPSHOT] += 1
        chunk.add(KIND_SNAPSHOT, recv, snap.T * MS, snap.lastUpdateId, 0, 0, file, line_no)
        chunk.seg.extend((len(snap.bids), 1, len(snap.asks), -1))
        for levels in (snap.bids, snap.asks):
            if levels:
                px, qty = zip(*levels, strict=True)
                chunk.px.extend(px)
                chunk.qty.extend(qty)

    def _add_depth(self, chunk: _Chunk, file: str, line_no: int, recv: int, d: _Depth) -> None:
        if self.spot and d.pu is not None:
            raise DataError(file, f"line {line_no}: depth update has 'pu' (futures data) but the venue is spot")
        if not self.spot and d.pu is None:
            raise DataError(
                file, f"line {line_no}: depth update has no 'pu' (spot data) but the venue is {self.inst.venue}"
            )
        self.counts[_S_DEPTH] += 1
        event = (d.E if self.spot else d.T) * MS
        chunk.add(KIND_DELTA, recv, event, d.u, d.U, -1 if d.pu is None else d.pu, file, line_no)
        chunk.seg.extend((len(d.b), 1, len(d.a), -1))
        for levels in (d.b, d.a):
            if levels:
                px, qty = zip(*levels, strict=True)
                chunk.px.extend(px)
                chunk.qty.extend(qty)

    # --- syncing -------------------------------------------------------------------------
    def _process(self, chunk: _Chunk) -> None:
        chunk.finish(self.inst.price_scale, self.inst.size_scale)
        out = _Output(chunk)
        self._out = out
        res = self.result
        kinds = chunk.kind
        recvs = chunk.recv
        bad = chunk.bad.tolist()
        nlev = chunk.nlev.tolist()
        for i in range(len(chunk)):
            kind = kinds[i]
            if bad[i]:
                res.add_malformed(chunk.file[i], chunk.line[i], "price or size is not an exact decimal")
                continue
            if kind in (KIND_TRADE, KIND_BBO):
                out.message(i, recvs[i])
            elif kind == KIND_DELTA:
                res.levels_seen += nlev[i]
                held = _Held(
                    chunk.seq[i],
                    chunk.first[i],
                    chunk.prev[i],
                    recvs[i],
                    chunk.event[i],
                    chunk.file[i],
                    chunk.line[i],
                    nlev[i],
                    i,
                )
                self._on_delta(held, recvs[i])
            else:
                self._on_snapshot(chunk, i, nlev[i])
        # Held messages must not point into this chunk once it is gone.
        for h in self.held:
            if isinstance(h.ref, int):
                h.ref = chunk.rows([h.ref], [h.recv])
        rows = out.build()
        self._out = None
        if rows is not None:
            counts = np.bincount(rows["kind"], minlength=len(KIND_NAMES))
            for k, name in KIND_NAMES.items():
                res.rows[name] += int(counts[k])
            self.writer.append(rows)

    def _emit(self, h: _Held, recv: int) -> None:
        assert self._out is not None
        if isinstance(h.ref, int):
            self._out.message(h.ref, recv)
        else:
            rows = dict(h.ref)
            rows["ts_recv"] = np.full(len(rows["ts_recv"]), recv, dtype=np.int64)
            self._out.block(rows)

    def _drop(self, h: _Held) -> None:
        self.result.dropped_book_messages += 1
        self.result.dropped_book_rows += h.nlev

    def _hold(self, h: _Held) -> None:
        self.held.append(h)
        if len(self.held) > MAX_HELD_MESSAGES:
            self._drop(self.held.popleft())

    def _lose_sync(self, h: _Held, recv: int, reason: str) -> None:
        self.result.add_gap(h.file, h.line, f"Market data sequence gap: {reason}")
        if self.result.gaps <= 10:
            _log.warning(
                "Market data sequence gap on %s %s at %s:%d: %s",
                self.inst.venue,
                self.inst.symbol,
                h.file,
                h.line,
                reason,
            )
        if self.state != self.UNSYNCED:
            self.result.book_resets += 1
            assert self._out is not None
            self._out.block(_reset_row(h.event, recv, self.last_u))
        self.state = self.UNSYNCED
        self._hold(h)

    def _on_delta(self, h: _Held, recv: int) -> None:
        if self.state == self.UNSYNCED:
            self._hold(h)
            return
        if self.state == self.AWAIT_BRIDGE:
            snap = self.snap_id
            if h.u < snap or (self.spot and h.u == snap):
                self._drop(h)
                return
            bridged = h.first <= snap + 1 <= h.u if self.spot else h.first <= snap <= h.u
            if not bridged:
                self._lose_sync(h, recv, f"snapshot {snap} does not reach update {h.first}..{h.u}")
                return
        else:
            if h.u <= self.last_u:
                self._drop(h)  # a repeat of an update the book already holds
                return
            if self.spot and h.first != self.last_u + 1:
                self._lose_sync(h, recv, f"expected U={self.last_u + 1}, got U={h.first} (u={h.u})")
                return
            if not self.spot and h.prev != self.last_u:
                self._lose_sync(h, recv, f"expected pu={self.last_u}, got pu={h.prev} (u={h.u})")
                return
        self._emit(h, recv)
        self.state = self.SYNCED
        self.last_u = h.u

    def _on_snapshot(self, chunk: _Chunk, i: int, nlev: int) -> None:
        snap_id = chunk.seq[i]
        recv = chunk.recv[i]
        if self.state == self.SYNCED and snap_id <= self.last_u:
            self.result.add_skipped(
                chunk.file[i], chunk.line[i], f"snapshot {snap_id} is behind the book ({self.last_u})"
            )
            return
        assert self._out is not None
        if nlev:
            self._out.message(i, recv)
        else:
            self.result.book_resets += 1
            self._out.block(_reset_row(chunk.event[i], recv, snap_id))
        self.state = self.AWAIT_BRIDGE
        self.snap_id = snap_id
        self.last_u = snap_id
        pending = list(self.held)
        self.held.clear()
        for h in pending:
            self._on_delta(h, max(h.recv, recv))

    def finish(self) -> None:
        for k, name in _MESSAGE_NAMES.items():
            self.result.count_message(name, self.counts[k])
        for h in self.held:
            self._drop(h)
        self.held.clear()


def import_binance_capture(
    paths: Sequence[str | Path],
    root: str | Path,
    venue: str | None = None,
    symbol: str | None = None,
    *,
    include_bbo: bool = False,
    registry: Registry | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Import consecutive capture files of one stream into the partitioned Parquet layout.

    ``venue`` is ``binance``, ``binance-futures`` or ``binance-delivery`` (detected from the first
    file when omitted); ``symbol`` is canonical (``BTC-USDT``) or found through the registry from
    the stream names. Files are read in the order given: pass them oldest first.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise DataError(str(root), "no input files")
    for f in files:
        if not f.is_file():
            raise DataError(str(f), "file not found")
    reg = registry if registry is not None else load_instruments()
    guessed_venue, wire = detect_capture(files[0])
    venue = venue or guessed_venue
    if venue is None:
        raise DataError(str(files[0]), "cannot tell the venue (spot, USD-M or COIN-M): pass --venue")
    if venue not in VENUES:
        raise DataError(str(files[0]), f"venue {venue!r} is not a Binance venue ({', '.join(sorted(VENUES))})")
    inst = resolve_instrument(venue, wire, symbol, reg)
    if wire and inst.venue_symbol.upper() != wire.upper():
        raise DataError(
            str(files[0]), f"the file holds {wire} but {inst.symbol} on {inst.venue} is {inst.venue_symbol}"
        )
    result = ImportResult(venue=inst.venue, symbol=inst.symbol, source_format=FORMAT, sources=[f.name for f in files])
    started = time.perf_counter()
    source = f"{FORMAT}:{','.join(f.name for f in files)}"
    with PartitionWriter(
        root, inst.venue, inst.symbol, inst.price_scale, inst.size_scale, source, overwrite=overwrite
    ) as writer:
        importer = BinanceCaptureImporter(inst, writer, result, include_bbo)
        for f in files:
            importer.import_file(f)
        importer.finish()
    result.files_written = list(writer.files)
    if writer.first_ts is not None and writer.last_ts is not None:
        result.note_time(writer.first_ts, writer.last_ts)
    result.seconds = time.perf_counter() - started
    return result


def sniff(path: Path) -> bool:
    """Whether ``path`` looks like this format: ``<digits> {`` lines (``hft data import`` asks
    every registered capture format before giving up)."""
    first = next(iter(open_lines(path)), b"")
    head, _, body = first.partition(b" ")
    return head.isdigit() and body.startswith(b"{")


def _require_a_line(path: Path) -> None:
    """``DataError`` for a file that holds no line at all (empty, or a gzip of nothing): there is
    nothing to import, and saying so beats writing an empty dataset. A damaged gzip is left to
    the import, which counts it as malformed."""
    try:
        first = next(iter(open_lines(path)), None)
    except (OSError, EOFError, zlib.error):
        return
    if first is None:
        raise DataError(str(path), "the file holds no lines")


def import_files(
    paths: Sequence[Path],
    root: str | Path,
    venue: str | None = None,
    symbol: str | None = None,
    *,
    include_bbo: bool = False,
    overwrite: bool = False,
) -> list[ImportResult]:
    """``import_binance_capture`` once per stream found in ``paths``; each stream's files oldest
    first (the collector names them by date)."""
    groups: dict[tuple[str | None, str | None], list[Path]] = {}
    for p in paths:
        _require_a_line(p)
        v, wire = detect_capture(p)
        groups.setdefault((venue or v, wire), []).append(p)
    results = []
    for (v, _wire), files in sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")):
        files.sort(key=lambda f: f.name)
        results.append(import_binance_capture(files, root, v, symbol, include_bbo=include_bbo, overwrite=overwrite))
    return results
