"""Tick-to-order latency of the live hot path, measured inside the process against the fake Binance.

    python -m bench.hot_path [--ticks 10000] [--entry ws,rest] [--mode place,replace]
        [--record] [--logs] [--every N]

The fake (``sim.fake_binance``) runs in a child process (its own core and event loop) and replays
the real BTCUSDT capture at ``speed=max``: depth diffs, trades and bookTickers as fast as this
process reads them. This process runs the real stack on uvloop: ``BinanceAdapter``'s feed (decode,
book sync, book) -> ``Engine`` (``LiveClock``, risk, OMS) -> a strategy that on every depth update
sends a new LIMIT IOC bid (``place``) or cancels and replaces a resting LIMIT_MAKER bid
(``replace``) -> ``BinanceExecutionClient`` -> the order socket (WS API ``order.place``, or REST
``POST /api/v3/order`` on a raw keep-alive connection).

What is timed, with ``time.perf_counter_ns`` in this process:
- *frame -> order*: from the moment the WebSocket layer hands a depth frame over (inside the
  socket's ``data_received``, before any decoding) to the return of the transport ``write`` that
  takes the (new) order's bytes. On uvloop (the default) the transport sends what the loop
  iteration's callbacks wrote in one system call once they return (a replace's cancel and new
  order leave together); with ``--loop asyncio`` the write sends at once and the adapter corks
  the order connections around each market event for the same effect. The order socket's
  transport is wrapped (``venues.common.tap``) to take that time; nothing else about the path
  changes.
- *socket read -> order*: the same end, from the start of the ``data_received`` call that read
  the frame, for frames that came first in their read (later frames of a read also wait for the
  ones before them, which at ``speed=max`` says more about the replay's burst than about us).
The first ``--warmup`` ticks of each round are not counted. A round replays the capture once
(about 6,500 depth updates for the two shipped days); rounds repeat with a fresh fake until
``--ticks`` ticks are measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import REPO, interpreter
from engine.book import Book
from engine.engine import Engine
from engine.gcpolicy import trading_gc
from engine.logs import setup_logging
from engine.model import Side, TimeInForce
from engine.orders import Order
from engine.risk import RiskLimits
from engine.runners.node import build_node
from engine.runners.spec import code_spec
from engine.strategy import Strategy
from engine.warm import PathWarmer
from venues.binance.adapter import BinanceAdapter
from venues.binance.config import Credentials, parse_config
from venues.common.loop import run, uvloop_available
from venues.common.tap import TransportTap

DEFAULT_DATA = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest"
SYMBOL = "BTC-USDT"


# --- the strategy --------------------------------------------------------------------------------
class TickQuoter(Strategy):
    """An order on every depth update (``book_updates = "every"``).

    ``mode="replace"``: cancel and replace one resting LIMIT_MAKER bid. ``mode="place"``: a new
    LIMIT IOC bid each time, which expires at once (nothing to cancel). The bid sits
    ``offset_bps`` below the best bid (plus one tick on every other update, so each replace moves
    it): far enough that it never fills even though, at ``speed=max``, the fake's market runs ahead
    of the book this process has read, so the path is the same on every tick.
    """

    book_updates = "every"
    warm = True

    def on_start(self) -> None:
        self.live: Order | None = None
        self.ticks = 0
        self.offset = float(self.params.get("offset_bps", 100)) / 1e4
        self.qty = float(self.params.get("qty", 0.001))
        self.replace = self.params.get("mode", "replace") == "replace"
        self.every = int(self.params.get("every", 1))

    def on_book(self, book: Book) -> None:
        self.ticks += 1
        if self.every > 1 and self.ticks % self.every:
            return  # a quoting strategy acts on some updates, not all: the rest only move the book
        tick = book.instrument.tick / 10**book.instrument.price_scale
        price = book.best_bid * (1.0 - self.offset) - (self.ticks & 1) * tick
        if not self.replace:
            self.submit_limit(Side.BUY, price, self.qty, tif=TimeInForce.IOC)
            return
        live = self.live
        if live is None or live.status.is_terminal or live.cancel_requested:
            self.live = self.submit_limit(Side.BUY, price, self.qty, post_only=True)
        else:
            self.live = self.modify(live, price=price)


#: replay speed of the fake ("max", or a multiple of real time: Binance itself paces spot depth at
#: 100 ms, so a paced replay is closer to production than a flood); set from --speed
FAKE_SPEED: str | float = "max"


# --- the fake, in its own process ----------------------------------------------------------------
def fake_binance(data: list[str], key: str, secret: str, start: str = "subscribe", speed: Any = None) -> Any:
    """The fake with limits out of the way: at speed=max this process sends thousands of orders a
    second. ``start="subscribe"``: the replay starts when the client's feed subscribes; ``speed``
    defaults to ``FAKE_SPEED``."""
    from sim.fake_binance.server import FakeBinance

    big = 10**9
    return FakeBinance(
        data=data,
        api_key=key,
        api_secret=secret,
        speed=FAKE_SPEED if speed is None else speed,
        start=start,
        balances={"BTC": "1000", "USDT": "1000000000"},
        weight_limit=big,
        orders_per_10s=big,
        orders_per_day=big,
        max_incoming_per_s=None,
    )


def _pin(cpu: int | None) -> None:
    """Keep a process on one CPU (where the OS allows it): no migrations between the two sides."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


def _serve_fake(
    pipe: Connection, data: list[str], key: str, secret: str, cpu: int | None = None, speed: Any = "max"
) -> None:
    _pin(cpu)

    async def main() -> None:
        # ``speed`` comes as an argument: a spawned process imports this module afresh, with
        # FAKE_SPEED at its default
        async with fake_binance(data, key, secret, speed=speed) as fb:
            pipe.send((fb.rest_url, fb.ws_url, fb.ws_api_url))
            loop = asyncio.get_running_loop()
            while True:
                cmd = await loop.run_in_executor(None, pipe.recv)
                if cmd == "status":
                    pipe.send(fb.status())
                else:
                    break

    setup_logging(None)
    run(main())


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


class FakeProcess:
    def __init__(self, data: list[Path], key: str, secret: str, cpu: int | None = None) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_serve_fake, args=(child, [str(p) for p in data], key, secret, cpu, FAKE_SPEED), daemon=True
        )

    def start(self, timeout_s: float = 60.0) -> tuple[str, str, str]:
        self.proc.start()
        if not self.pipe.poll(timeout_s):
            raise RuntimeError("the fake Binance did not start")
        return self.pipe.recv()

    def send(self, cmd: str) -> None:
        self.pipe.send(cmd)

    def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self.pipe.send("stop")
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --- measurement ---------------------------------------------------------------------------------
@dataclass
class Samples:
    frame_to_order: list[int] = field(default_factory=list)  # ns, to the new order's bytes
    frame_to_first: list[int] = field(default_factory=list)  # ns, to the first order write
    read_to_order: list[int] = field(default_factory=list)  # ns, frames first in their socket read
    # the same plus the warm pass the frame may have waited for (read began right after one)
    read_to_order_warm: list[int] = field(default_factory=list)
    frame_to_sent: list[int] = field(default_factory=list)  # ns, to the end of the reading callback
    ticks: int = 0  # depth frames that wrote an order
    depth_frames: int = 0
    other_frames: int = 0


class Probe:
    """Times each market-data frame from hand-over to the last order write it caused."""

    def __init__(self, samples: Samples, warmup: int) -> None:
        self.s = samples
        self.warmup = warmup
        self.round_ticks = 0
        self._in_frame = False
        self._first = 0
        self._last = 0
        self._unsent: list[int] = []  # ticks of the current read, waiting for its callback to end
        self.warmer: PathWarmer | None = None

    def read_done(self, now: int) -> None:
        """The callback that read the last ticks returned: on uvloop their orders leave now."""
        if self._unsent:
            self.s.frame_to_sent.extend(now - t0 for t0 in self._unsent)
            self._unsent.clear()

    def on_write(self, _nbytes: int, now: int) -> None:
        if self._in_frame:
            if not self._first:
                self._first = now
            self._last = now

    def wrap(self, inner: Callable[[bytes, int], None], conn: Callable[[], Any]) -> Callable[[bytes, int], None]:
        """``conn()`` is the market-data connection the frame came from (it changes on reconnect)."""
        s = self.s
        clock = time.perf_counter_ns

        def timed(frame: bytes, ts: int) -> None:
            self._first = self._last = 0
            self._in_frame = True
            t0 = clock()  # the probe's own bookkeeping stays outside the timed span
            try:
                inner(frame, ts)
            finally:
                self._in_frame = False
            c = conn()  # the reader counts a frame after its handler returns: still this one's
            if c.on_read_done is None:  # a new connection (the first, or after a reconnect)
                c.on_read_done = self.read_done
            first_in_read = c.chunk_index == 0
            read_ns = c.chunk_ns
            if not self._last:
                if b"@depth" in frame[:40]:
                    s.depth_frames += 1
                else:
                    s.other_frames += 1
                return
            s.depth_frames += 1
            self.round_ticks += 1
            if self.round_ticks <= self.warmup:
                return
            s.ticks += 1
            s.frame_to_order.append(self._last - t0)
            s.frame_to_first.append(self._first - t0)
            self._unsent.append(t0)
            if first_in_read:
                s.read_to_order.append(self._last - read_ns)
                w = self.warmer
                if w is not None:
                    # A frame that arrived during a warm pass waited for it, unseen by the timings
                    # above (they start when the loop reads). Charged to every read that began
                    # within 20 us of a pass's end: an upper bound of that wait.
                    after = read_ns - w.last_end_ns
                    waited = w.last_end_ns - w.last_start_ns if 0 <= after < 20_000 else 0
                    s.read_to_order_warm.append(self._last - read_ns + waited)

        return timed


def _config(urls: tuple[str, str, str], entry: str) -> Any:
    rest_url, ws_url, ws_api_url = urls
    return parse_config(
        {
            "rest_url": rest_url,
            "ws_url": ws_url,
            "ws_api_url": ws_api_url,
            "order_entry": entry,
            "order_connections": 4,
            "new_order_resp_type": "ACK",
            "stale_data_timeout_s": 60.0,
            "silence_reconnect_s": 120.0,
            "order_timeout_s": 30.0,
            "rate_limits": {
                "request_weight_per_minute": 1_000_000,
                "orders_per_10s": 100_000,
                "orders_per_day": 10_000_000,
                "safety_margin": 0.0,
                "use_exchange_info": False,
            },
        },
        "<bench>",
        env={},
    )


@dataclass(frozen=True)
class Run:
    """One measured configuration."""

    entry: str  # "ws" | "rest"
    mode: str  # "place" | "replace"
    log_orders: bool = False
    gc_threshold: int = 0  # gen-0 threshold after setup (0: Python's default)
    ticks: int = 10_000
    warmup: int = 300
    max_rounds: int = 10
    inline: bool = False
    loop: str = "uvloop"  # "uvloop" | "asyncio"
    pin: bool = True  # this process on CPU 0, the fake on CPU 1 (when there are two)
    record: bool = False  # write the event log, as paper and live trading do
    every: int = 1  # an order on every n-th depth update
    warm_us: float = 0.0  # run the path warmer after this long without market data (0: off)
    warm_spin: bool = True  # the warmer polls every loop turn (else a millisecond timer)
    telemetry: bool = False  # the daemon's latency rings on the path (engine.daemon.telemetry)

    @property
    def label(self) -> str:
        what = "WS API order.place" if self.entry == "ws" else "REST POST /api/v3/order"
        how = "new IOC order per tick" if self.mode == "place" else "cancel + replace per tick"
        if self.every > 1:
            how = how.replace("per tick", f"per {self.every} depth updates")
        return f"{what}, {how}"


def build_engine(
    loop: asyncio.AbstractEventLoop,
    inst: Any,
    mode: str,
    log_orders: bool,
    run_dir: Path | None = None,
    every: int = 1,
) -> tuple[Engine, Book]:
    """The measured engine, built as a live node (``build_node``): live clock, every risk limit
    on, one ``TickQuoter``; the event log goes to ``run_dir`` (written as paper and live trading
    write it), or nowhere. The caller connects the venue (the bench taps its sockets first)."""
    limits = RiskLimits(
        max_order_size_usd=10_000,
        max_position_usd=1e6,
        max_global_position_usd=1e6,
        daily_loss_limit_usd=1e6,
        max_orders_per_second=1e6,  # the bench sends thousands a second; the check still runs
        price_band_pct=5.0,
    )
    spec = code_spec("hot_path", limits, {"binance": {"USDT": 1e9, "BTC": 1e3}})
    params = {"offset_bps": 100, "qty": 0.001, "mode": mode, "every": every}
    node = build_node(
        spec,
        "live",
        run_dir,
        instruments={("binance", SYMBOL): inst},
        strategies=[TickQuoter("hot_path", "binance", [SYMBOL], params)],
        log_orders=log_orders,
        loop=loop,
    )
    return node.engine, node.book_of[("binance", SYMBOL)]


def daemon_telemetry(engine: Engine, loop: asyncio.AbstractEventLoop) -> tuple[Callable[[Book], None], Any]:
    """What the daemon adds to the path (``engine.daemon.telemetry``): its latency rings hooked
    into the engine, folded once a second on this loop, and the feed callback that records the
    market-data stage. Returns that callback (for the adapter) and the telemetry (to ``stop``).
    The callback is one Python frame more than the session's own: the figure is an upper bound."""
    from engine.daemon.telemetry import Telemetry

    telemetry = Telemetry()
    telemetry.attach(engine)
    telemetry.start(loop)
    add, engine_on_book, now_ns = telemetry.market_data.add, engine.on_book, time.time_ns

    def on_book(b: Book) -> None:
        add(now_ns() - b.ts_recv)
        engine_on_book(b)

    return on_book, telemetry


async def stop_measured(engine: Engine, adapter: BinanceAdapter, log_dir: Any) -> None:
    """Stop the engine and the adapter, close the event log, remove its temporary directory."""
    engine.stop()
    await adapter.stop()
    engine.recorder.close()
    if log_dir is not None:
        log_dir.cleanup()


async def _round(creds: Credentials, urls: tuple[str, str, str], run_: Run, samples: Samples) -> dict:
    loop = asyncio.get_running_loop()
    cfg = _config(urls, run_.entry)
    adapter = BinanceAdapter(cfg, creds)
    instruments = await adapter.load_instruments()
    inst = instruments[SYMBOL]
    probe = Probe(samples, run_.warmup)
    first_sample = len(samples.frame_to_order)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    pool = adapter.rest.open_order_connections()
    assert pool is not None
    # at speed=max the fake answers orders slower than this process sends them; deep pipelining
    # keeps every order on the measured path (live, the rate limits keep a few in flight)
    pool.max_in_flight = 1_000_000
    end = loop.time() + 10
    while len(pool.conns) < pool.size and loop.time() < end:
        await asyncio.sleep(0.01)
    if run_.entry == "rest":
        for c in pool.conns:
            c.transport = TransportTap(c.transport, probe.on_write)
    log_dir = tempfile.TemporaryDirectory(prefix="hft-bench-") if run_.record else None
    run_dir = Path(log_dir.name) if log_dir is not None else None
    engine, book = build_engine(loop, inst, run_.mode, run_.log_orders, run_dir, run_.every)
    on_book, telemetry = daemon_telemetry(engine, loop) if run_.telemetry else (engine.on_book, None)
    with trading_gc(run_.gc_threshold):  # what the paper and live runners do
        await adapter.start(on_book, engine.on_trade, sink=engine, books={SYMBOL: book})
        # from here to the first await nothing can arrive: the feed's task has not run yet
        feed, execution, ws_api = adapter.feed, adapter.execution, adapter.ws_api
        assert feed is not None and execution is not None and ws_api is not None
        engine.add_venue(execution, adapter.profile)
        engine.start()
        feed.ws.on_message = probe.wrap(feed.ws.on_message, lambda: feed.ws.ws)
        if run_.entry == "ws":
            conn = ws_api.ws.ws
            assert conn is not None
            conn.transport = TransportTap(conn.transport, probe.on_write)
        warmer = None
        if run_.warm_us > 0:
            warmer = PathWarmer(engine, run_.warm_us, spin=run_.warm_spin, feeds=[feed.warm])
        if warmer is not None:
            probe.warmer = warmer
            warmer.start(loop)
        try:
            last, quiet_since = -1, loop.time()
            while loop.time() - quiet_since < 2.0:
                await asyncio.sleep(0.1)
                if probe.round_ticks != last:
                    last, quiet_since = probe.round_ticks, loop.time()
        finally:
            if warmer is not None:
                warmer.stop()
            if telemetry is not None:
                await telemetry.stop()
            await stop_measured(engine, adapter, log_dir)
    warm = {}
    if warmer is not None:
        mean = warmer.pass_ns_total / warmer.passes / 1000 if warmer.passes else 0.0
        warm = {"warm_passes": warmer.passes, "warm_pass_us": (round(mean, 1), round(warmer.pass_ns_max / 1000, 1))}
    return {
        "ticks": probe.round_ticks,
        "orders": engine.oms.submitted,
        "rejected_local": engine.oms.rejected_local,
        "sync_gaps": feed.syncs[SYMBOL].gaps,
        "handler_errors": feed.ws.handler_errors,
        "written_now": execution.written_now,
        "queued": execution.queued,
        "p50_us": pct(samples.frame_to_order[first_sample:], 50),
        "busy": round((time.process_time() - cpu0) / (time.perf_counter() - wall0), 2),
        "cpu_per_depth_us": round((time.process_time() - cpu0) / max(feed.syncs[SYMBOL].applied, 1) * 1e6),
        "connects": (feed.ws.connects, ws_api.ws.connects),
        "sync": (feed.syncs[SYMBOL].applied, feed.syncs[SYMBOL].dropped, feed.syncs[SYMBOL].snapshots),
        **warm,
    }


async def _inline_round(data: list[Path], creds: Credentials, run_: Run, samples: Samples) -> dict:
    async with fake_binance([str(p) for p in data], creds.api_key, creds.api_secret) as fb:
        return await _round(creds, (fb.rest_url, fb.ws_url, fb.ws_api_url), run_, samples)


def bench(data: list[Path], run_: Run) -> tuple[Samples, list[dict]]:
    """Rounds (each a fresh fake and a fresh client) until ``run_.ticks`` ticks are measured."""
    samples = Samples()
    rounds: list[dict] = []
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    creds = Credentials(key, secret)
    runner = run if run_.loop == "uvloop" else asyncio.run
    while samples.ticks < run_.ticks and len(rounds) < run_.max_rounds:
        if run_.inline:
            rounds.append(runner(_inline_round(data, creds, run_, samples)))
        else:
            cpus = _cpus() if run_.pin else []
            fake = FakeProcess(data, key, secret, cpus[1] if len(cpus) > 1 else None)
            try:
                urls = fake.start()
                rounds.append(runner(_round(creds, urls, run_, samples)))
            finally:
                fake.stop()
        if rounds[-1]["ticks"] <= run_.warmup:
            break  # nothing measurable came through: do not spin
    return samples, rounds


def reference_ms() -> float:
    """A fixed pure-Python loop, timed: how fast this (shared, virtual) machine runs Python right
    now. Printed with every result, as the same code measures up to 2x apart on a busy host."""
    t = time.perf_counter()
    x = 0
    for i in range(3_000_000):
        x += i
    return (time.perf_counter() - t) * 1e3


def pct(values: list[int], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, int(p / 100 * len(s)))] / 1000.0


def line(name: str, ns: list[int]) -> str:
    return (
        f"  {name:<40} n={len(ns):<6} p50={pct(ns, 50):7.1f} us  p99={pct(ns, 99):7.1f} us  "
        f"p99.9={pct(ns, 99.9):7.1f} us  max={max(ns) / 1000 if ns else float('nan'):8.1f} us"
    )


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    got = [e.strip() for e in text.split(",") if e.strip()]
    if not got or any(e not in allowed for e in got):
        raise ValueError(f"--{what} takes {' or '.join(allowed)} (comma-separated); got {text!r}")
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", default="max", help="fake replay speed: max (default) or a multiple of real time")
    ap.add_argument("--ticks", type=int, default=10_000, help="measured ticks per configuration (default 10000)")
    ap.add_argument("--entry", default="ws,rest", help="order entry: ws, rest or ws,rest (default both)")
    ap.add_argument("--mode", default="place,replace", help="place, replace or place,replace (default both)")
    ap.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA], help="capture files or a directory")
    ap.add_argument("--warmup", type=int, default=300, help="ticks per round not counted (default 300)")
    ap.add_argument("--max-rounds", type=int, default=10, help="rounds per configuration at most (default 10)")
    ap.add_argument("--log-orders", action="store_true", help="keep the order manager's per-order log line")
    ap.add_argument(
        "--logs",
        action="store_true",
        help="write the component log files (to a temporary directory) and log every order, as paper and "
        "live trading do",
    )
    ap.add_argument(
        "--gc-threshold", type=int, default=50_000, help="gen-0 GC threshold after setup (default 50000; 0: Python's)"
    )
    ap.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of the measured process (default uvloop; see the README on what 'written' means)",
    )
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin this process and the fake to one CPU each (default: pinned when there are two or more)",
    )
    ap.add_argument(
        "--record",
        action="store_true",
        help="write the event log (to a temporary directory), as paper and live trading do",
    )
    ap.add_argument(
        "--every",
        type=int,
        default=1,
        help="send an order on every n-th depth update only (default 1: on each); the others only "
        "move the book, as for a quoting strategy that acts on some updates",
    )
    ap.add_argument(
        "--warm-us",
        type=float,
        default=0.0,
        help="run the path warmer (engine.warm) after this many microseconds without market data (default 0: off)",
    )
    ap.add_argument(
        "--warm-timer",
        action="store_true",
        help="the warmer runs on a timer (millisecond resolution) instead of polling every loop turn",
    )
    ap.add_argument(
        "--telemetry",
        action="store_true",
        help="record the daemon's latency histograms on the path (engine.daemon.telemetry), as the daemon does",
    )
    ap.add_argument(
        "--fake",
        choices=("process", "inline"),
        default="process",
        help="run the fake in a child process (default) or on this process's event loop",
    )
    args = ap.parse_args(argv)
    global FAKE_SPEED
    FAKE_SPEED = args.speed if args.speed == "max" else float(args.speed)
    try:
        entries = _choices(args.entry, ("ws", "rest"), "entry")
        modes = _choices(args.mode, ("place", "replace"), "mode")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in args.data:
        if not p.exists():
            print(f"error: capture not found at {p}", file=sys.stderr)
            return 2
    if args.ticks < 1 or args.warmup < 0 or args.gc_threshold < 0 or args.every < 1 or args.warm_us < 0:
        print(
            "error: --ticks and --every must be at least 1, --warmup, --gc-threshold and --warm-us at least 0",
            file=sys.stderr,
        )
        return 2
    logs_dir = tempfile.TemporaryDirectory(prefix="hft-bench-logs-") if args.logs else None
    # component logs stay in memory unless asked for; the numbers go to stdout
    setup_logging(logs_dir.name if logs_dir is not None else None)
    args.log_orders = args.log_orders or args.logs
    if args.loop == "uvloop" and not uvloop_available():
        print("error: uvloop is not installed; use --loop asyncio", file=sys.stderr)
        return 2
    warmer = "off" if not args.warm_us else f"{args.warm_us:g} us ({'timer' if args.warm_timer else 'spin'})"
    print(
        f"hot path: fake Binance (speed={args.speed}, {args.fake}) -> feed -> engine -> order socket; "
        f"loop={args.loop}, order log={'on' if args.log_orders else 'off'}, "
        f"log files={'on' if args.logs else 'off'}, "
        f"event log={'on' if args.record else 'off'}, "
        f"gen-0 GC threshold={args.gc_threshold or 'default'}, "
        f"path warmer={warmer}"
    )
    print(f"python: {interpreter()}")
    status = 0
    for mode in modes:
        for entry in entries:
            cfg = Run(
                entry,
                mode,
                args.log_orders,
                args.gc_threshold,
                args.ticks,
                args.warmup,
                args.max_rounds,
                args.fake == "inline",
                args.loop,
                not args.no_pin,
                args.record,
                args.every,
                args.warm_us,
                not args.warm_timer,
                args.telemetry,
            )
            ref_before = reference_ms()
            samples, rounds = bench(args.data, cfg)
            ref_after = reference_ms()
            print(
                f"{cfg.label}: {len(rounds)} round(s), {samples.ticks} measured ticks; "
                f"reference loop {ref_before:.0f} ms before, {ref_after:.0f} ms after"
            )
            for r in rounds:
                print(f"  round: {r}")
            if not samples.frame_to_order:
                print("  no tick produced an order", file=sys.stderr)
                status = 1
                continue
            print(line("frame handed over -> order bytes written", samples.frame_to_order))
            print(line("socket read -> order bytes (1st in read)", samples.read_to_order))
            if samples.read_to_order_warm:
                print(line("  + the warm pass it may have waited for", samples.read_to_order_warm))
            if cfg.loop == "uvloop":
                print(line("frame handed over -> its read callback ends", samples.frame_to_sent))
    if logs_dir is not None:
        setup_logging(None)
        logs_dir.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
