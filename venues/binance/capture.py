"""Binance's raw capture for ``hft record``: every combined-stream frame (diff depth, trades,
bookTicker) as ``<local_receive_ns> <frame>`` lines, plus each REST depth snapshot as a bare JSON
line, one gzip file per symbol and UTC date in ``DIR/raw/<symbol>_<YYYYMMDD>.gz``: the format of
the shipped hftbacktest captures, so ``hft data import`` and the fake Binance read them as they are.

The socket reader only appends ``(receive time, frame)`` to a list. A flush (the recorder's, every
second or when the buffer passes a few MB) compresses and appends the buffer to the day file from
a worker thread, one gzip member per flush: a file is readable up to the last flush even if the
process is killed. The Parquet is built at the end by the capture importer
(``venues.binance.capture_import``) from all of a symbol's raw files in ``DIR/raw``, so it is
always exactly what importing the raw files gives; a session killed before it finished is rebuilt
with ``hft data import DIR/raw/<symbol>_*.gz --out DIR --overwrite``.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import DataError
from engine.model import Instrument
from venues.binance.capture_import import import_binance_capture
from venues.binance.feed import BinanceMarketData
from venues.binance.rest import BinanceRest
from venues.binance.symbols import to_stream, to_wire

VENUE = "binance"
RAW_DIR = "raw"
FLUSH_BYTES = 8 << 20
NS_PER_DAY = 86_400 * 1_000_000_000
_STREAM_PREFIX = b'{"stream":"'


def utc_day(ts_ns: int) -> str:
    """``YYYYMMDD`` of a nanosecond UTC timestamp (the capture files' date suffix)."""
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC).strftime("%Y%m%d")


class RawCapture:
    """Buffered ``<ts> <frame>`` lines, appended per (symbol, UTC day) to gzip files.

    ``add_frame`` is what the socket reader calls: a prefix check and a list append. ``write`` (a
    worker thread's job) appends a taken buffer as one gzip member per file. ``received`` counts
    lines taken in, ``lines`` lines written, ``snapshots`` REST snapshots, per stream symbol.
    """

    def __init__(
        self,
        raw_dir: Path,
        stream_symbols: list[str],
        compresslevel: int = 6,
        full_bytes: int = FLUSH_BYTES,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        self.dir = raw_dir
        self.compresslevel = compresslevel
        self.full_bytes = full_bytes
        self.on_full = on_full  # called once each time the buffer grows past full_bytes
        self._known = {s.encode(): s for s in stream_symbols}
        self._buf: list[tuple[int, bytes, bytes]] = []  # (ts, stream symbol, frame)
        self._bytes = 0
        self.received: dict[str, int] = dict.fromkeys(stream_symbols, 0)
        self.lines: dict[str, int] = dict.fromkeys(stream_symbols, 0)  # lines written
        self.snapshots: dict[str, int] = dict.fromkeys(stream_symbols, 0)
        self.skipped = 0  # frames of no recorded symbol (control replies, serverShutdown)
        self.files: set[Path] = set()
        self.bytes_written = 0

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def add_frame(self, frame: bytes, ts_recv: int) -> None:
        """A combined-stream frame, as the socket handed it over."""
        if not frame.startswith(_STREAM_PREFIX):
            self.skipped += 1
            return
        at = frame.find(b"@", len(_STREAM_PREFIX))
        sym = frame[len(_STREAM_PREFIX) : at] if at > 0 else b""
        name = self._known.get(sym)
        if name is None:
            self.skipped += 1
            return
        self._buf.append((ts_recv, sym, frame))
        self.received[name] += 1
        self._grow(len(frame) + 21)

    def _grow(self, n: int) -> None:
        before = self._bytes
        self._bytes = before + n
        if before < self.full_bytes <= self._bytes and self.on_full is not None:
            self.on_full()

    def add_snapshot(self, stream_symbol: str, body: bytes, ts_recv: int) -> None:
        """A REST depth snapshot body: stored as a bare JSON line, like the collector does."""
        sym = stream_symbol.encode()
        if sym not in self._known:
            self.skipped += 1
            return
        self.snapshots[stream_symbol] += 1
        self.received[stream_symbol] += 1
        self._buf.append((ts_recv, sym, body))
        self._grow(len(body) + 21)

    def take(self) -> list[tuple[int, bytes, bytes]]:
        """Hand the buffer over (to a flush) and start a new one."""
        buf, self._buf, self._bytes = self._buf, [], 0
        return buf

    def write(self, batch: list[tuple[int, bytes, bytes]]) -> None:
        """Append ``batch`` to its day files (blocking: run it off the event loop)."""
        if not batch:
            return
        groups: dict[tuple[bytes, str], list[bytes]] = {}
        day_of: dict[int, str] = {}
        for ts, sym, frame in batch:
            if b"\n" in frame or b"\r" in frame:  # JSON whitespace only; a line must stay one line
                frame = frame.replace(b"\r", b" ").replace(b"\n", b" ")
            d = ts // NS_PER_DAY
            day = day_of.get(d)
            if day is None:
                day = day_of[d] = utc_day(ts)
            groups.setdefault((sym, day), []).append(b"%d %b\n" % (ts, frame))
        self.dir.mkdir(parents=True, exist_ok=True)
        for (sym, day), lines in groups.items():
            path = self.dir / f"{sym.decode()}_{day}.gz"
            data = b"".join(lines)
            try:
                with open(path, "ab") as fh:
                    fh.write(gzip.compress(data, self.compresslevel, mtime=0))
            except OSError as exc:
                raise DataError(str(path), f"cannot write the capture: {exc.strerror or exc}") from None
            self.files.add(path)
            self.bytes_written += len(data)
            self.lines[sym.decode()] += len(lines)


class BinanceCapture:
    """``engine.venue.Capture`` of Binance: a feed's frames and snapshots into a ``RawCapture``,
    then into Parquet by the capture importer."""

    def __init__(self, rest: BinanceRest, out_dir: Path, symbols: list[str]) -> None:
        self.rest = rest
        self.out = out_dir
        self.streams = {to_stream(s): s for s in symbols}
        self.capture = RawCapture(out_dir / RAW_DIR, list(self.streams), on_full=self._on_full)
        self.gaps: dict[str, int] = {}
        self.malformed = 0
        self._flushing: asyncio.Task[None] | None = None
        self._early: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.flushes = 0

    def _on_full(self) -> None:
        # called from the socket reader: only schedule, the flush itself runs later
        if self._early is None or self._early.done():
            self._early = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        """Write what is buffered from a worker thread; one flush at a time, in order. The
        thread's task is shielded: cancelling a caller never leaves a batch half-accounted."""
        async with self._lock:
            await self._settle()
            batch = self.capture.take()
            if not batch:
                return
            self._flushing = asyncio.get_running_loop().create_task(asyncio.to_thread(self.capture.write, batch))
            await self._settle()
            self.flushes += 1

    async def _settle(self) -> None:
        """Wait for the write in flight (left by a cancelled flush, too) before the next one."""
        t = self._flushing
        if t is not None:
            await asyncio.shield(t)
            self._flushing = None
            t.result()

    @property
    def pending_bytes(self) -> int:
        return self.capture.pending_bytes

    def attach(self, feed: BinanceMarketData) -> None:
        """Tap ``feed``'s frames (before it decodes them: a frame it chokes on is still recorded)
        and the REST snapshots it fetches."""
        by_wire = {to_wire(s): to_stream(s) for s in self.streams.values()}
        capture = self.capture

        def on_depth_body(wire: str, body: bytes, ts: int) -> None:
            stream = by_wire.get(wire)
            if stream is not None:
                capture.add_snapshot(stream, body, ts)

        self.rest.on_depth_body = on_depth_body
        inner = feed.ws.on_message
        capture_frame = capture.add_frame

        def on_message(frame: bytes, ts: int) -> None:
            capture_frame(frame, ts)
            inner(frame, ts)

        feed.ws.on_message = on_message
        self._feed = feed

    async def close(self) -> None:
        """Wait for a flush in flight, then write the rest on this thread: nothing buffered is lost."""
        if self._early is not None and not self._early.done():
            self._early.cancel()
        await self._settle()  # a write error must not go unnoticed
        self.capture.write(self.capture.take())
        feed = getattr(self, "_feed", None)
        if feed is not None:
            self.gaps = {s: sync.gaps for s, sync in feed.syncs.items()}
            self.malformed = feed.decoder.malformed

    async def to_parquet(self, root: Path, instruments: dict[str, Instrument]) -> dict[str, dict[str, Any]]:
        """The Parquet: exactly what the importer makes of each symbol's raw files, oldest first
        (its partitions replaced), so sessions recorded into one directory add up."""
        registry = {(VENUE, sym): inst for sym, inst in instruments.items()}
        out: dict[str, dict[str, Any]] = {}
        cap = self.capture
        for stream, symbol in self.streams.items():
            files = sorted((self.out / RAW_DIR).glob(f"{stream}_*.gz"))
            entry: dict[str, Any] = {
                "frames": cap.lines[stream] - cap.snapshots[stream],
                "snapshots": cap.snapshots[stream],
                "lines_received": cap.received[stream],
                "lines_written": cap.lines[stream],
                "gaps_live": self.gaps.get(symbol, 0),
                "raw_files": [str(p) for p in files],
            }
            if files:
                res = await asyncio.to_thread(
                    import_binance_capture, files, root, VENUE, symbol, registry=registry, overwrite=True
                )
                entry.update(
                    rows=dict(res.rows),
                    parquet_files=[str(p) for p in res.files_written],
                    malformed=res.malformed,
                    gaps=res.gaps,
                    book_resets=res.book_resets,
                )
            out[symbol] = entry
        return out
