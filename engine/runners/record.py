"""``hft record CONFIG --out DIR``: record a venue's live market data for later replay.

CONFIG is an exchange config (``config/exchanges/<venue>.json``); the venue it names is found in
the registry. The node is a record node (``build_node(mode="record")``: the feed keeps the books in
sync as it would for trading, no strategy) and the venue's capture (``engine.venue.Capture``) taps
the feed's input. Two forms of the same session land in ``DIR``: the venue's raw capture files
under ``DIR/raw/`` and, built from them at the end by the venue's importer,
``DIR/venue=<venue>/symbol=<SYMBOL>/date=<YYYY-MM-DD>/part-N.parquet``, so ``DIR`` is a backtest
data root as it stands.

A flush every second (or when the buffer passes a few MB) writes what came in; on stop
(``--duration`` reached, ``stop`` set, SIGINT/SIGTERM) the feed is closed first, then whatever is
buffered is written, and only then is the Parquet built. Reconnects, resyncs and the REST
snapshots they need are recorded like everything else; a gap shows up in the import as a book
reset until the next snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from engine.config import load_json
from engine.errors import ConfigError, HftError
from engine.logs import flush_logs, get_logger, setup_logging
from engine.model import Instrument
from engine.runners import registry
from engine.runners.node import build_node
from engine.runners.spec import code_spec
from engine.venue import FeedCallbacks, MarketDataFeed, VenueAdapter

FLUSH_INTERVAL_S = 1.0
#: a paper or live session's capture, inside its run directory: a backtest data root (``hft parity``)
MARKET_DATA_DIR = "market_data"

_log = get_logger("market_data")


def _ignore(_: object) -> None:
    return None


class SessionCapture:
    """The captures of a paper or live session's feeds, one per venue, into ``root``: the same
    taps as ``hft record`` (each venue's ``Capture`` on its feed's input, before decoding), flushed
    every ``flush_interval_s`` from a task on the trading loop (the writes run on a worker thread),
    imported into ``root/venue=<v>/symbol=<S>/date=<d>/`` Parquet at the end. A venue's raw files
    go to ``root/capture/<venue>/raw/`` so two venues' day files never share a name.

    On the feed's path this adds what recording adds: a prefix check and a list append per frame.
    A process that dies keeps every raw line up to the last flush (one gzip member per flush);
    ``hft data import`` rebuilds the Parquet from them.
    """

    def __init__(self, root: Path, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.root = root
        self.flush_interval_s = flush_interval_s
        self.captures: dict[str, tuple[Any, dict[str, Instrument]]] = {}
        self.unsupported: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def attach(self, adapter: VenueAdapter, feed: MarketDataFeed, instruments: dict[str, Instrument]) -> bool:
        """Tap ``feed`` (before it starts); False when the venue has no capture."""
        make = getattr(adapter, "capture", None)
        if make is None:
            self.unsupported.append(adapter.name)
            return False
        capture = make(self.root / "capture" / adapter.name, list(instruments))
        capture.attach(feed)
        self.captures[adapter.name] = (capture, instruments)
        return True

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.captures and self._task is None:
            self._task = loop.create_task(self._flush_every())

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            for capture, _ in self.captures.values():
                try:
                    await capture.flush()
                except HftError as exc:  # a full disk must not stop trading: say it, keep the buffer
                    _log.error("market data capture: %s", exc)

    async def close(self) -> dict[str, dict[str, Any]]:
        """After the feeds stopped: write the rest, build the Parquet; venue -> symbol -> what was written."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        out: dict[str, dict[str, Any]] = {}
        for venue, (capture, instruments) in self.captures.items():
            await capture.close()
            out[venue] = await capture.to_parquet(self.root, instruments)
        return out


async def run_record(
    adapter: VenueAdapter,
    out_dir: str | Path,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    *,
    symbols: list[str] | None = None,
    flush_interval_s: float = FLUSH_INTERVAL_S,
) -> dict[str, Any]:
    """Record ``symbols`` (default: the adapter config's) into ``out_dir`` until ``duration_s``
    elapses or ``stop`` is set; returns a summary (files, counts, import results)."""
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    out = Path(out_dir)
    stop = stop or asyncio.Event()
    started = time.time()
    venue = adapter.name
    try:
        instruments = await adapter.load_instruments(symbols)
        node = build_node(
            code_spec("record"),
            "record",
            None,
            instruments={(venue, s): i for s, i in instruments.items()},
            streams=[(venue, s) for s in instruments],
            adapters={venue: adapter},
            strategies=[],
            loop=asyncio.get_running_loop(),
        )
        out.mkdir(parents=True, exist_ok=True)
        capture = adapter.capture(out, list(instruments))  # type: ignore[attr-defined]
        books = {s: node.book_of[(venue, s)] for s in instruments}
        feed = adapter.market_data(books, FeedCallbacks(_ignore, _ignore, node.engine.on_incident))
        capture.attach(feed)
        task = feed.start()
        _log.info(f"recording {venue} {', '.join(instruments)} into {out}")
        loop = asyncio.get_running_loop()
        deadline = None if duration_s is None else loop.time() + duration_s
        try:
            while not stop.is_set():
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    break
                wait = flush_interval_s if left is None else min(flush_interval_s, left)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if capture.pending_bytes or not stop.is_set():
                    await capture.flush()
        finally:
            await feed.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.cancel()
                await task
            await capture.close()
    finally:
        await adapter.close()
        flush_logs()  # the last turn's lines, before the caller reads the logs
    per_symbol = await capture.to_parquet(out, instruments)
    return {
        "out": str(out),
        "venue": venue,
        "seconds": round(time.time() - started, 3),
        "raw_bytes": capture.capture.bytes_written,
        "flushes": capture.flushes,
        "malformed_frames": capture.malformed,
        "skipped_frames": capture.capture.skipped,
        "symbols": per_symbol,
    }


# --- the command -----------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record",
        help="record live market data of a venue: its raw capture and the Parquet schema",
        description="Record a venue's market data (for Binance: diff depth, trades, bookTicker and the REST "
        "snapshots the book needs) into DIR/raw/ in the venue's capture format and into "
        "DIR/venue=/symbol=/date=/ Parquet, so DIR can be replayed as a backtest. "
        "Endpoints come from CONFIG or the venue's environment variables (BINANCE_REST_URL, ...).",
    )
    p.add_argument("config", help="exchange config (e.g. config/exchanges/binance.json)")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write (created if missing)")
    p.add_argument("--duration", metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--symbols", metavar="LIST", help="comma-separated symbols instead of the config's (BTC-USDT,...)")
    p.set_defaults(func=cmd_record)


def _symbols(raw: str | None, where: str) -> list[str] | None:
    if not raw:
        return None
    symbols = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in symbols if s.count("-") != 1 or s != s.upper() or s.startswith("-") or s.endswith("-")]
    if bad:
        raise ConfigError(where, f"symbols: {', '.join(bad)} not in BASE-QUOTE form (e.g. BTC-USDT)")
    if len(set(symbols)) != len(symbols):
        raise ConfigError(where, "symbols: a symbol is listed twice")
    return symbols


def cmd_record(args: argparse.Namespace) -> int:
    from engine.runners.backtest_cli import discard_if_empty, positive_seconds
    from venues.common.loop import run as run_loop

    try:
        duration = positive_seconds(args.duration)
    except HftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    venue = load_json(args.config).get("venue")
    if not isinstance(venue, str) or not venue:
        raise ConfigError(args.config, "venue: missing (the exchange config names its venue)")
    entry = registry.entry(venue, args.config)
    if entry.adapter is None:
        raise ConfigError(args.config, f"venue {venue!r} has no live adapter")
    symbols = _symbols(args.symbols, args.config)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise HftError(f"--out {out} exists and is not a directory")
    existed = out.exists()
    fresh = not existed or not any(out.iterdir())  # a failed start may clear only what it made

    def discard() -> None:
        if fresh:
            discard_if_empty(out, existed)

    adapter = registry.load(entry.adapter)(args.config, symbols or [], None)
    setup_logging(out / "logs")

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError):  # covers platforms without signal handlers
                loop.add_signal_handler(sig, stop.set)
        until = f"for {duration:g} s" if duration else "until Ctrl-C"
        print(f"recording {venue} into {out} {until}", file=sys.stderr)
        return await run_record(adapter, out, duration, stop, symbols=symbols)

    try:
        summary = run_loop(main())
    except HftError:
        discard()
        raise
    except Exception as exc:
        # instruments are needed before anything is recorded: without them there is no session
        discard()
        where = getattr(adapter, "endpoint", "")
        print(f"error: cannot start recording {venue}{' from ' + where if where else ''}: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        discard()
        raise
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
