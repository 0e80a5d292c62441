"""Paper trading: live market data from a venue adapter, execution simulated against the live
book with the backtest's own latency, queue and fee models, the same strategy/risk/OMS code, and
the same event log.

The simulated venue keeps its resting orders in the replay kernel's arrays; every live message is
turned into the kernel's rows *before* the adapter applies it to the book, so queue positions see
each level's old and new size exactly as in a backtest (the adapter then re-applies the same
absolute sizes, which changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.book import Book, BookSet
from engine.clock import LiveClock
from engine.engine import Engine
from engine.errors import ConfigError
from engine.events import Trade
from engine.gcpolicy import thread_switch, trading_gc
from engine.logs import flush_logs, get_logger, setup_logging
from engine.model import Instrument
from engine.portfolio import Portfolio
from engine.recorder import Recorder
from engine.risk import RiskEngine
from engine.runners.backtest import code_version, summarize
from engine.runners.spec import RunSpec
from engine.warm import PathWarmer
from sim import kernel as K
from sim import latency as lat
from sim.queue import model_code
from sim.replay import ReplayStats
from sim.venue import RestingOrders, SimulatedVenue, dispatch_kernel_fills

_log = get_logger("system")


class AsyncScheduler:
    """The engine's scheduler on an asyncio loop: ``schedule(ts_ns, fn, arg)`` at wall-clock ts."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: LiveClock) -> None:
        self.loop = loop
        self.clock = clock

    def schedule(self, ts: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        delay = (ts - self.clock.now()) / 1e9
        self.loop.call_later(delay if delay > 0 else 0.0, fn, arg)


class LiveKernel:
    """Runs live book messages and trades through the replay kernel for the simulated venue."""

    def __init__(
        self, books: BookSet, resting: RestingOrders, streams: dict[str, int], queue_model: int, queue_power: float
    ) -> None:
        self.books = books
        self.resting = resting
        self.streams = streams
        self.st = np.zeros((len(streams), K.ST_COLS), dtype=np.int64)
        self.fills = np.zeros((1024, 3), dtype=np.int64)
        self.params = np.zeros(5, dtype=np.int64)
        self.params[3] = queue_model
        self.power = queue_power
        self.out = np.zeros(5, dtype=np.int64)
        self.messages = 0

    def _run(self, ts: int, kind: int, side: np.ndarray, price: np.ndarray, size: np.ndarray, stream: int) -> None:
        n = len(price)
        if n == 0:
            return
        ts_recv = np.full(n, ts, dtype=np.int64)
        kinds = np.full(n, kind, dtype=np.int8)
        streams = np.full(n, stream, dtype=np.int32)
        end = np.zeros(n, dtype=np.bool_)
        end[-1] = True
        bs = self.books
        i = 0
        self.messages += 1
        while i < n:
            self.params[0] = i
            self.params[1] = n
            self.params[2] = 2**63 - 1
            self.params[4] = self.resting.n
            K.run_rows(
                ts_recv,
                kinds,
                side,
                price,
                size,
                streams,
                end,
                *bs.arrays(),
                self.st,
                self.resting.arr,
                self.fills,
                self.params,
                self.power,
                self.out,
            )
            i = int(self.out[K.O_NEXT])
            mask = int(self.out[K.O_MASK])
            if mask & K.M_FULL:
                bs.grow()
            if mask & K.M_FILL:
                dispatch_kernel_fills(self.resting, self.fills, int(self.out[K.O_NFILLS]), ts)

    def on_apply(self, symbol: str, kind: str, msg: Any) -> None:
        """Hook called by the adapter's book sync just before it applies a snapshot or a diff."""
        stream = self.streams.get(symbol)
        if stream is None:
            return
        bids = np.asarray(msg.bids, dtype=np.int64).reshape(-1, 2)
        asks = np.asarray(msg.asks, dtype=np.int64).reshape(-1, 2)
        levels = np.concatenate((bids, asks))
        side = np.concatenate((np.ones(len(bids), np.int8), np.full(len(asks), -1, np.int8)))
        self._run(
            msg.ts_recv,
            K.K_SNAPSHOT if kind == "snapshot" else K.K_DELTA,
            side,
            np.ascontiguousarray(levels[:, 0]),
            np.ascontiguousarray(levels[:, 1]),
            stream,
        )

    def on_trade(self, trade: Trade) -> None:
        stream = self.streams.get(trade.symbol)
        if stream is None:
            return
        self._run(
            trade.ts_recv,
            K.K_TRADE,
            np.array([trade.side], np.int8),
            np.array([trade.price_fixed], np.int64),
            np.array([trade.size_fixed], np.int64),
            stream,
        )


@dataclass
class PaperResult:
    run_dir: Path
    summary: dict[str, Any]
    engine: Engine
    kernel: LiveKernel


def _latency(spec: RunSpec, key: str, default_ns: int, seed: int) -> Any:
    cfg = spec.sim.raw("latency", {})
    try:
        return lat.from_config(cfg.get(key) if isinstance(cfg, dict) else None, default_ns, seed)
    except (ValueError, TypeError) as exc:
        raise ConfigError(spec.path, f"sim.latency.{key}: {exc}") from None


async def run_paper(
    spec: RunSpec,
    exchange_config: Any,
    run_dir: Path,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    ready: Callable[[Engine], None] | None = None,
) -> PaperResult:
    """Run until ``duration_s`` elapses or ``stop`` is set. ``exchange_config`` is a BinanceConfig."""
    from venues.binance.feed import BinanceMarketData
    from venues.binance.filters import parse_filters, to_instrument
    from venues.binance.rest import BinanceRest

    setup_logging(run_dir / "logs")
    loop = asyncio.get_running_loop()
    clock = LiveClock()
    sched = AsyncScheduler(loop, clock)
    symbols = sorted({s for st in spec.strategies for s in st.symbols})
    for st in spec.strategies:
        if st.venue != "binance":
            raise ConfigError(st.path, f"venue: paper trading runs on the binance adapter, got {st.venue!r}")
    rest = BinanceRest(exchange_config)
    await rest.start()
    try:
        from venues.binance.symbols import to_wire

        info = await rest.exchange_info([to_wire(s) for s in symbols])
        fees = exchange_config.fees
        instruments: dict[tuple[str, str], Instrument] = {}
        for si in info.symbols:
            inst = to_instrument(parse_filters(si), fees.maker, fees.taker)
            instruments[(inst.venue, inst.symbol)] = inst
        missing = [s for s in symbols if ("binance", s) not in instruments]
        if missing:
            raise ConfigError(spec.path, f"strategies: Symbol not found on binance: {', '.join(missing)}")
        streams = {s: i for i, s in enumerate(symbols)}
        books = BookSet(len(symbols))
        book_objs = {s: Book(instruments[("binance", s)], books, i) for s, i in streams.items()}
        recorder = Recorder(run_dir, background=True)  # a full buffer must not stall the feed
        portfolio = Portfolio(spec.balances)
        risk = RiskEngine(spec.risk, portfolio, spec.strategy_risk)
        engine = Engine(
            clock,
            sched,
            {k: v for k, v in instruments.items() if k[1] in streams},
            portfolio,
            risk,
            recorder,
            mark_interval_ns=spec.mark_interval_ns,
        )
        for b in book_objs.values():
            engine.add_book(b)
        resting = RestingOrders()
        seed = spec.seed
        feed_l = _latency(spec, "feed", 0, seed + 1)
        order_l = _latency(spec, "order", 4_000_000, seed + 2)
        resp_l = _latency(spec, "response", 2_000_000, seed + 3)
        venue = SimulatedVenue(
            "binance",
            {s: instruments[("binance", s)] for s in symbols},
            streams,
            books,
            resting,
            sched,
            clock,
            engine,
            feed_l,
            order_l,
            resp_l,
        )
        engine.add_venue(venue)
        try:
            qmodel = model_code(spec.sim.str("queue_model", "prob"))
        except ValueError as exc:
            raise ConfigError(spec.path, f"sim.queue_model: {exc}") from None
        kernel = LiveKernel(books, resting, streams, qmodel, spec.sim.number("queue_power", 2.0, positive=True))
        for st in spec.strategies:
            engine.add_strategy(st.build())

        def on_book(book: Book) -> None:
            # measured feed latency: local receipt minus venue event time (0 when the venue gives none)
            engine.on_book(book, book.ts_recv - book.ts_event if book.ts_event else 0)

        def on_trade(trade: Trade) -> None:
            kernel.on_trade(trade)
            engine.on_trade(trade)

        md = BinanceMarketData(
            dataclasses.replace(exchange_config, symbols=tuple(symbols)),
            rest,
            {s: instruments[("binance", s)] for s in symbols},
            on_book=on_book,
            on_trade=on_trade,
            on_incident=engine.on_incident,
            books=book_objs,
        )
        for sync in md.syncs.values():
            sync.on_apply = kernel.on_apply
        t0 = time.perf_counter()
        warmer = PathWarmer(engine, **spec.warm) if spec.warm is not None else None
        with trading_gc(), thread_switch():  # the recorder writes from a thread of its own
            engine.start()
            task = md.start()
            if warmer is not None:
                warmer.start(loop)
            if ready is not None:
                ready(engine)
            stop = stop or asyncio.Event()
            try:
                await asyncio.wait_for(stop.wait(), timeout=duration_s)
            except TimeoutError:
                pass
            finally:
                if warmer is not None:
                    warmer.stop()
                engine.stop()
                await md.stop()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    task.cancel()
                    await task
        wall = time.perf_counter() - t0
    finally:
        await rest.close()
        flush_logs()  # the last turn's lines, before the caller reads the logs
    stats = ReplayStats()
    stats.rows = kernel.messages
    summary = summarize(engine, stats, wall)
    manifest = {
        "run_id": run_dir.name,
        "mode": "paper",
        "latency_source": "simulated",
        "latency_notes": "feed latency measured (local receipt - venue event time); order path simulated",
        "config_path": spec.path,
        "config": spec.raw,
        "exchange": {"venue": "binance", "rest_url": exchange_config.rest_url, "ws_url": exchange_config.ws_url},
        "data": {"live": True, "symbols": symbols, "messages": kernel.messages},
        "code_version": code_version(),
        "seeds": {"run": seed},
        "sim": {
            "queue_model": spec.sim.str("queue_model", "prob"),
            "latency": {"feed": feed_l.describe(), "order": order_l.describe(), "response": resp_l.describe()},
        },
        "strategies": [s.strategy_id for s in spec.strategies],
        "summary": {k: v for k, v in summary.items() if k not in ("rows_per_s", "wall_s")},
    }
    recorder.close(manifest)
    (run_dir / "run_info.json").write_text(
        json.dumps(
            {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": round(wall, 3)}, indent=2
        )
        + "\n"
    )
    return PaperResult(run_dir, summary, engine, kernel)


def install_signal_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError):  # covers platforms without signal handlers
            loop.add_signal_handler(sig, stop.set)
