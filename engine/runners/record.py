"""``hft record CONFIG --out DIR``: record live Binance market data for later replay.

Two forms of the same session land in ``DIR``:

- ``DIR/raw/<symbol>_<YYYYMMDD>.gz``: every combined-stream frame (diff depth, trades, bookTicker)
  as ``<local_receive_ns> <frame>`` lines, plus each REST depth snapshot as a bare JSON line, one
  gzip file per symbol and UTC date - the format of the shipped hftbacktest captures, so
  ``hft data import`` and the fake Binance read them as they are;
- ``DIR/venue=binance/symbol=<SYMBOL>/date=<YYYY-MM-DD>/part-N.parquet``: the market-data Parquet
  schema (``engine.marketdata.schema``), so ``DIR`` is a backtest data root as it stands.

The socket reader only appends ``(receive time, frame)`` to a list. A flush every second (or
every few MB) compresses and appends the buffer to the day file from a worker thread, one gzip
member per flush: a file is readable up to the last flush even if the process is killed. On stop
(``--duration`` reached, ``stop`` set, SIGINT/SIGTERM) the feed is closed first, then whatever is
buffered is written, and only then is the Parquet built - by the capture importer
(``engine.marketdata.importers.binance_capture``), which syncs the book with Binance's documented
rules, from all of a recorded symbol's raw files in ``DIR/raw`` (oldest first; its partitions are
replaced), so sessions recorded into one ``DIR`` add up. The Parquet is therefore always exactly
what importing the raw files gives; a session killed before it finished can be rebuilt with
``hft data import DIR/raw/<symbol>_*.gz --out DIR --overwrite``.

The feed is the live adapter's (``venues.binance.feed``): reconnects, resyncs and the REST
snapshots they need are recorded like everything else; a gap shows up in the import as a book
reset until the next snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gzip
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, DataError
from engine.logs import flush_logs, get_logger, setup_logging
from engine.model import Instrument

VENUE = "binance"
RAW_DIR = "raw"
FLUSH_INTERVAL_S = 1.0
FLUSH_BYTES = 8 << 20
NS_PER_DAY = 86_400 * 1_000_000_000
_STREAM_PREFIX = b'{"stream":"'

_log = get_logger("market_data")


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


class Recorder:
    """The recording session: a feed whose frames and snapshots go to a ``RawCapture``."""

    def __init__(self, config: Any, out_dir: Path, instruments: dict[str, Instrument]) -> None:
        from venues.binance.symbols import to_stream

        self.config = config
        self.out = out_dir
        self.instruments = instruments
        self.streams = {to_stream(s): s for s in config.symbols}
        self.capture = RawCapture(out_dir / RAW_DIR, list(self.streams), on_full=self._on_full)
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

    async def close(self) -> None:
        """Wait for a flush in flight, then write the rest on this thread: nothing buffered is lost."""
        if self._early is not None and not self._early.done():
            self._early.cancel()
        await self._settle()  # a write error must not go unnoticed
        self.capture.write(self.capture.take())


def _symbols_override(config: Any, symbols: list[str] | None, where: str) -> Any:
    if not symbols:
        return config
    from venues.binance.symbols import is_canonical

    bad = [s for s in symbols if not is_canonical(s)]
    if bad:
        raise ConfigError(where, f"symbols: {', '.join(bad)} not in BASE-QUOTE form (e.g. BTC-USDT)")
    if len(set(symbols)) != len(symbols):
        raise ConfigError(where, "symbols: a symbol is listed twice")
    return dataclasses.replace(config, symbols=tuple(symbols))


async def run_record(
    config: Any,
    out_dir: str | Path,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    *,
    flush_interval_s: float = FLUSH_INTERVAL_S,
) -> dict[str, Any]:
    """Record ``config.symbols`` (a ``BinanceConfig``) into ``out_dir`` until ``duration_s``
    elapses or ``stop`` is set; returns a summary (files, counts, import results)."""
    from engine.marketdata.importers.binance_capture import import_binance_capture
    from venues.binance.feed import BinanceMarketData
    from venues.binance.filters import parse_filters, to_instrument
    from venues.binance.rest import BinanceRest
    from venues.binance.symbols import to_stream, to_wire

    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    out = Path(out_dir)
    stop = stop or asyncio.Event()
    started = time.time()
    rest = BinanceRest(config)
    await rest.start()
    try:
        info = await rest.exchange_info([to_wire(s) for s in config.symbols])
        instruments: dict[str, Instrument] = {}
        for si in info.symbols:
            f = parse_filters(si)
            if f.symbol in config.symbols:
                instruments[f.symbol] = to_instrument(f, config.fees.maker, config.fees.taker)
        missing = [s for s in config.symbols if s not in instruments]
        if missing:
            raise ConfigError(config.path or "<config>", f"symbols: Symbol not found on binance: {', '.join(missing)}")
        out.mkdir(parents=True, exist_ok=True)
        rec = Recorder(config, out, instruments)
        by_wire = {to_wire(s): to_stream(s) for s in config.symbols}

        def on_depth_body(wire: str, body: bytes, ts: int) -> None:
            stream = by_wire.get(wire)
            if stream is not None:
                rec.capture.add_snapshot(stream, body, ts)

        rest.on_depth_body = on_depth_body
        feed = BinanceMarketData(config, rest, instruments, on_book=_ignore)
        inner = feed.ws.on_message
        capture_frame = rec.capture.add_frame

        def on_message(frame: bytes, ts: int) -> None:
            capture_frame(frame, ts)  # first: a frame the feed chokes on is still recorded
            inner(frame, ts)

        feed.ws.on_message = on_message
        task = feed.start()
        _log.info(f"recording binance {', '.join(config.symbols)} from {config.ws_url} into {out}")
        deadline = None if duration_s is None else asyncio.get_running_loop().time() + duration_s
        try:
            while not stop.is_set():
                left = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if left is not None and left <= 0:
                    break
                wait = flush_interval_s if left is None else min(flush_interval_s, left)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if rec.capture.pending_bytes or not stop.is_set():
                    await rec.flush()
        finally:
            await feed.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.cancel()
                await task
            await rec.close()
        gaps = {s: sync.gaps for s, sync in feed.syncs.items()}
        malformed = feed.decoder.malformed
    finally:
        await rest.close()
        flush_logs()  # the last turn's lines, before the caller reads the logs

    # the Parquet: exactly what the importer makes of the raw files of each symbol, oldest first
    registry = {(inst.venue, inst.symbol): inst for inst in instruments.values()}
    symbols: dict[str, Any] = {}
    for stream, symbol in rec.streams.items():
        files = sorted((out / RAW_DIR).glob(f"{stream}_*.gz"))
        entry: dict[str, Any] = {
            "frames": rec.capture.lines[stream] - rec.capture.snapshots[stream],
            "snapshots": rec.capture.snapshots[stream],
            "lines_received": rec.capture.received[stream],
            "lines_written": rec.capture.lines[stream],
            "gaps_live": gaps.get(symbol, 0),
            "raw_files": [str(p) for p in files],
        }
        if files:
            res = await asyncio.to_thread(
                import_binance_capture, files, out, VENUE, symbol, registry=registry, overwrite=True
            )
            entry.update(
                rows=dict(res.rows),
                parquet_files=[str(p) for p in res.files_written],
                malformed=res.malformed,
                gaps=res.gaps,
                book_resets=res.book_resets,
            )
        symbols[symbol] = entry
    return {
        "out": str(out),
        "venue": VENUE,
        "seconds": round(time.time() - started, 3),
        "raw_bytes": rec.capture.bytes_written,
        "flushes": rec.flushes,
        "malformed_frames": malformed,
        "skipped_frames": rec.capture.skipped,
        "symbols": symbols,
    }


def _ignore(_: object) -> None:
    return None


# --- the command -----------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="record live Binance market data: raw frames (gzip) and the Parquet schema",
        description="Record Binance spot market data (diff depth, trades, bookTicker and the REST "
        "snapshots the book needs) into DIR/raw/<symbol>_<YYYYMMDD>.gz as <recv_ns> <frame> lines and "
        "into DIR/venue=binance/symbol=/date=/ Parquet, so DIR can be replayed as a backtest. "
        "Endpoints come from CONFIG or BINANCE_REST_URL / BINANCE_WS_URL / BINANCE_WS_API_URL.",
    )
    p.add_argument("config", help="exchange config (e.g. config/exchanges/binance.json)")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write (created if missing)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--symbols", metavar="LIST", help="comma-separated symbols instead of the config's (BTC-USDT,...)")
    p.set_defaults(func=cmd_record)


def cmd_record(args: argparse.Namespace) -> int:
    from venues.binance.config import load_config
    from venues.common.loop import run as run_loop

    if args.duration is not None and args.duration <= 0:
        print(f"error: --duration must be positive, got {args.duration}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    config = _symbols_override(config, symbols, args.config)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} exists and is not a directory", file=sys.stderr)
        return 2
    setup_logging(out / "logs")

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError):  # covers platforms without signal handlers
                loop.add_signal_handler(sig, stop.set)
        until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
        print(f"recording binance {', '.join(config.symbols)} from {config.ws_url} into {out} {until}", file=sys.stderr)
        return await run_record(config, out, args.duration, stop)

    from venues.binance.errors import BinanceError

    try:
        summary = run_loop(main())
    except (BinanceError, OSError) as exc:
        # exchangeInfo is needed before anything is recorded: without it there is no session
        print(f"error: cannot start recording from {config.rest_url}: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"recorded {summary['seconds']:.1f} s into {summary['out']} ({summary['raw_bytes']:,} raw bytes)"]
    for symbol, e in summary["symbols"].items():
        rows = e.get("rows", {})
        lines.append(
            f"  {symbol}: {e['frames']:,} frames, {e['snapshots']} snapshots, "
            f"{sum(rows.values()):,} Parquet rows ({', '.join(f'{k} {v:,}' for k, v in rows.items() if v)}), "
            f"{e.get('gaps', 0)} gaps"
        )
        if e["lines_written"] != e["lines_received"]:
            lines.append(f"    WARNING: {e['lines_received'] - e['lines_written']} received lines were not written")
        for f in e.get("raw_files", []):
            lines.append(f"    raw     {f}")
        for f in e.get("parquet_files", []):
            lines.append(f"    parquet {f}")
    return "\n".join(lines)
