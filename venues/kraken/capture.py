"""``hft record`` on Kraken: the feed's frames, as received, into ``<out>/raw/kraken_<start>.gz``
(``<recv_ns> <frame>`` lines after a header naming each pair's precision, the format
``capture_import`` reads), then into Parquet.

Frames are tapped before the feed decodes them, so a frame it chokes on is still recorded.
Buffered lines are written by ``flush`` on a worker thread, one gzip member per flush (a gzip file
of several members reads as one stream), so a crash loses at most the last unflushed batch.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any

from engine.model import Instrument
from venues.kraken.capture_import import HEADER, import_kraken_capture
from venues.kraken.feed import KrakenMarketData
from venues.kraken.filters import PairRules
from venues.kraken.symbols import to_ws

RAW_DIR = "raw"


class KrakenCapture:
    def __init__(self, out_dir: Path, rules: dict[str, PairRules], symbols: list[str], depth: int) -> None:
        self.out = out_dir
        self.symbols = symbols
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = out_dir / RAW_DIR / f"kraken_{stamp}.gz"
        header = {
            "capture": HEADER,
            "depth": depth,
            "pairs": {
                to_ws(s): {"price_precision": rules[s].price_decimals, "qty_precision": rules[s].qty_decimals}
                for s in symbols
            },
        }
        self._buf: list[bytes] = [f"{time.time_ns()} {json.dumps(header, separators=(',', ':'))}\n".encode()]
        self.pending_bytes = len(self._buf[0])
        self.lines = 0
        self.bytes_written = 0
        self.flushes = 0
        self.malformed = 0
        self.skipped = 0
        # ``engine.runners.record`` reads these counters as ``capture.capture.*`` (Binance's layout)
        self.capture = self
        self._lock = asyncio.Lock()
        self._feed: KrakenMarketData | None = None

    def attach(self, feed: KrakenMarketData) -> None:
        inner = feed.ws.on_message
        buf = self._buf

        def on_message(frame: bytes, ts: int) -> None:
            line = b"%d %s\n" % (ts, frame)
            buf.append(line)
            self.pending_bytes += len(line)
            self.lines += 1
            inner(frame, ts)

        feed.ws.on_message = on_message
        self._feed = feed

    def _take(self) -> bytes:
        data = b"".join(self._buf)
        self._buf.clear()
        self.pending_bytes = 0
        return data

    def _write(self, data: bytes) -> None:
        if not data:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(self.path, "ab") as fh:
            fh.write(data)
        self.bytes_written += len(data)

    async def flush(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._write, self._take())
            self.flushes += 1

    async def close(self) -> None:
        async with self._lock:
            self._write(self._take())
        if self._feed is not None:
            self.malformed = self._feed.decoder.malformed

    async def to_parquet(self, root: Path, instruments: dict[str, Instrument]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        feed = self._feed
        for sym in self.symbols:
            entry: dict[str, Any] = {
                "lines_written": self.lines,
                "gaps_live": feed.syncs[sym].gaps if feed is not None and sym in feed.syncs else 0,
                "raw_files": [str(self.path)],
            }
            if self.path.exists():
                res = await asyncio.to_thread(import_kraken_capture, [self.path], root, sym, overwrite=True)
                entry.update(
                    rows=dict(res.rows),
                    parquet_files=[str(p) for p in res.files_written],
                    malformed=res.malformed,
                    gaps=res.gaps,
                    book_resets=res.book_resets,
                )
            out[sym] = entry
        return out
