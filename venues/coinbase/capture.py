"""Coinbase's raw capture for ``hft record``: every market-data frame as a
``{"recv_ns": <local receive ns>, "frame": <frame as received>}`` line, one gzip file per UTC day
in ``DIR/raw/coinbase_<YYYYMMDD>.jsonl.gz``.

One file for all products, not one per product: Advanced Trade numbers the frames of a connection
in one ``sequence_num`` chain across products and channels, and only the whole chain shows whether
a frame was lost while recording. ``capture_import`` (``hft data import --format
coinbase-capture``) reads these files as they are (and the fixture's ``recv_ts`` lines), so the
Parquet is always exactly what importing the raw files gives.

The socket reader only appends ``(receive time, frame)`` to a list; a flush (the recorder's)
compresses and appends the buffer from a worker thread, one gzip member per flush, so a file is
readable up to the last flush even if the process is killed.
"""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import DataError
from engine.model import Instrument
from venues.coinbase.capture_import import import_files
from venues.coinbase.feed import CoinbaseMarketData

RAW_DIR = "raw"
NS_PER_DAY = 86_400 * 1_000_000_000


class RawCapture:
    def __init__(self, raw_dir: Path, compresslevel: int = 6) -> None:
        self.dir = raw_dir
        self.compresslevel = compresslevel
        self._buf: list[tuple[int, bytes]] = []
        self._bytes = 0
        self.received = 0
        self.lines = 0
        self.skipped = 0  # nothing is skipped: every frame belongs to the chain
        self.files: set[Path] = set()
        self.bytes_written = 0

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def add_frame(self, frame: bytes, ts_recv: int) -> None:
        self._buf.append((ts_recv, frame))
        self.received += 1
        self._bytes += len(frame) + 32

    def take(self) -> list[tuple[int, bytes]]:
        buf, self._buf, self._bytes = self._buf, [], 0
        return buf

    def write(self, batch: list[tuple[int, bytes]]) -> None:
        """Append ``batch`` to its day files (blocking: run it off the event loop)."""
        if not batch:
            return
        days: dict[str, list[bytes]] = {}
        for ts, frame in batch:
            if b"\n" in frame or b"\r" in frame:
                frame = frame.replace(b"\r", b" ").replace(b"\n", b" ")
            day = datetime.fromtimestamp(ts // 1_000_000_000, tz=UTC).strftime("%Y%m%d")
            days.setdefault(day, []).append(b'{"recv_ns":%d,"frame":%b}\n' % (ts, frame))
        self.dir.mkdir(parents=True, exist_ok=True)
        for day, lines in days.items():
            path = self.dir / f"coinbase_{day}.jsonl.gz"
            data = b"".join(lines)
            try:
                with open(path, "ab") as fh:
                    fh.write(gzip.compress(data, self.compresslevel, mtime=0))
            except OSError as exc:
                raise DataError(str(path), f"cannot write the capture: {exc.strerror or exc}") from None
            self.files.add(path)
            self.bytes_written += len(data)
            self.lines += len(lines)


class CoinbaseCapture:
    """``engine.venue.Capture`` of Coinbase: the feed's frames into a ``RawCapture``, then Parquet."""

    def __init__(self, out_dir: Path, symbols: list[str]) -> None:
        self.out = out_dir
        self.symbols = list(symbols)
        self.capture = RawCapture(out_dir / RAW_DIR)
        self.flushes = 0
        self.malformed = 0
        self.gaps: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._feed: CoinbaseMarketData | None = None

    @property
    def pending_bytes(self) -> int:
        return self.capture.pending_bytes

    def attach(self, feed: CoinbaseMarketData) -> None:
        """Tap ``feed``'s frames before it decodes them (a frame it chokes on is still recorded)."""
        inner = feed.ws.on_message
        add = self.capture.add_frame

        def on_message(frame: bytes, ts: int) -> None:
            add(frame, ts)
            inner(frame, ts)

        feed.ws.on_message = on_message
        self._feed = feed

    async def flush(self) -> None:
        async with self._lock:
            batch = self.capture.take()
            if batch:
                await asyncio.to_thread(self.capture.write, batch)
                self.flushes += 1

    async def close(self) -> None:
        async with self._lock:
            self.capture.write(self.capture.take())
        if self._feed is not None:
            self.gaps = {s: sync.gaps for s, sync in self._feed.syncs.items()}
            self.malformed = self._feed.decoder.malformed

    async def to_parquet(self, root: Path, instruments: dict[str, Instrument]) -> dict[str, dict[str, Any]]:
        files = sorted((self.out / RAW_DIR).glob("coinbase_*.jsonl.gz"))
        out: dict[str, dict[str, Any]] = {
            s: {"gaps_live": self.gaps.get(s, 0), "raw_files": [str(p) for p in files]} for s in self.symbols
        }
        if not files:
            return out
        for res in await asyncio.to_thread(import_files, files, root, overwrite=True):
            entry = out.setdefault(res.symbol, {"raw_files": [str(p) for p in files]})
            entry.update(
                frames=sum(res.messages.values()),
                rows=dict(res.rows),
                parquet_files=[str(p) for p in res.files_written],
                malformed=res.malformed,
                gaps=res.gaps,
                book_resets=res.book_resets,
            )
        return out
