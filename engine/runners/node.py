"""One composition function for every mode: ``build_node`` puts the engine, its books, its
venues and its data source together for a backtest, paper trading, live trading or recording.

=========  ===========================================  ==========================================
mode       market data                                  orders go to
=========  ===========================================  ==========================================
backtest   Parquet replay (``sim.replay``)              simulated venues on their own clock
paper      live venue feeds (``VenueAdapter``)          simulated venues matching on the live book
live       live venue feeds                             live execution clients, after reconciling
record     live venue feeds                             nowhere (no strategies)
=========  ===========================================  ==========================================

Everything between the data and the orders (strategies, risk, order manager, portfolio, event
log) is the same objects in every mode. The CLI, the daemon and the benchmarks build nodes here
and nowhere else; ``engine.runners.backtest``, ``.paper``, ``.live`` and ``.record`` run them.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.book import Book, BookSet
from engine.clock import LiveClock, SimClock
from engine.config import redact_secrets
from engine.engine import Engine
from engine.errors import ConfigError, DataError
from engine.model import Instrument
from engine.portfolio import Portfolio
from engine.recorder import Recorder
from engine.risk import RiskEngine
from engine.runners import registry
from engine.runners.spec import RunSpec
from engine.strategy import Strategy
from engine.timeline import Timeline
from engine.venue import ExecutionClient, MarketDataFeed, VenueAdapter
from sim import kernel as K
from sim import latency as lat
from sim.queue import model_code
from sim.replay import ReplayDriver, ReplayStats, replay_mode
from sim.venue import RestingOrders, SimulatedVenue
from sim.venue_time import DataVenueTime, VenueTime, latency_spans

MODES = ("backtest", "paper", "live", "record")
Key = tuple[str, str]


class AsyncScheduler:
    """The engine's scheduler on an asyncio loop: ``schedule(ts_ns, fn, arg)`` at wall-clock ts.

    Events wait in one time-ordered heap (ties in the order scheduled, as the backtest's
    ``Timeline``) under a single loop timer set for the earliest. ``run_due(ts)`` runs, in time
    order, every event due by ``ts``: paper trading calls it with each market message's receive
    time before handing the message on, so a simulated venue's answer due before a message is
    seen before it, even when a burst of messages came in one socket read and the loop's timers
    could not run in between (without it, an ack due 100 µs after an order arrived up to tens of
    ms late, after the next messages: ``hft parity`` named it "venue answer timing")."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: LiveClock) -> None:
        self.loop = loop
        self.clock = clock
        self._heap: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._n = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0

    def schedule(self, ts: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        self._n += 1
        heapq.heappush(self._heap, (ts, self._n, fn, arg))
        if self._timer is None or ts < self._armed_for:
            self._arm(ts)

    def _arm(self, ts: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = ts
        delay = (ts - self.clock.now()) / 1e9
        self._timer = self.loop.call_later(delay if delay > 0 else 0.0, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.run_due(self.clock.now())

    def run_due(self, ts: int) -> None:
        """Run every event due by ``ts`` (events they schedule too, when due), then re-arm."""
        heap = self._heap
        while heap and heap[0][0] <= ts:
            _, _, fn, arg = heapq.heappop(heap)
            try:
                fn(arg)
            except Exception as exc:  # as the loop's own callbacks: said, and the others still run
                self.loop.call_exception_handler({"message": f"scheduled event {fn!r} failed", "exception": exc})
        if heap and (self._timer is None or heap[0][0] != self._armed_for):
            self._arm(heap[0][0])
        elif not heap and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pending(self) -> int:
        """Events waiting."""
        return len(self._heap)


@dataclass
class SimSetup:
    """The simulated venues' shared parts (backtest and paper)."""

    venues: dict[str, SimulatedVenue]
    resting: RestingOrders
    books: BookSet  # the books the venues match on
    venue_time: VenueTime | None
    order_latency: Any
    response_latency: Any
    queue_model: int
    queue_power: float
    decision_ns: int


@dataclass
class Node:
    mode: str
    spec: RunSpec
    run_dir: Path | None
    clock: SimClock | LiveClock
    scheduler: Any
    recorder: Recorder
    engine: Engine
    instruments: dict[Key, Instrument]
    streams: list[Key]
    books: BookSet
    book_of: dict[Key, Book]
    sim: SimSetup | None = None
    replay: ReplayDriver | None = None
    source: Any = None
    adapters: dict[str, VenueAdapter] = field(default_factory=dict)
    feeds: dict[str, MarketDataFeed] = field(default_factory=dict)
    execution: dict[str, ExecutionClient] = field(default_factory=dict)
    extra_manifest: dict[str, Any] = field(default_factory=dict)

    # --- the manifest every mode writes -----------------------------------------------------------
    def manifest(self, summary: dict[str, Any] | None) -> dict[str, Any]:
        """What the run is (config, code, models) and, once it has ended, its ``summary``. A paper or
        live session writes it without a summary when it starts (``session``), with it when it closes."""
        spec = self.spec
        out: dict[str, Any] = {
            "run_id": self.run_dir.name if self.run_dir is not None else "",
            "name": spec.name,
            "mode": self.mode,
            "latency_source": "simulated" if self.mode in ("backtest", "paper") else "measured",
            "config_path": spec.path,
            "config": redact_secrets(spec.raw),
            "config_sha256": hashlib.sha256(json.dumps(spec.raw, sort_keys=True).encode()).hexdigest(),
            "code_version": code_version(),
            "seeds": {"run": spec.seed, "order_latency": spec.seed + 2, "response_latency": spec.seed + 3},
            "strategies": list(self.engine.strategies),
            "instruments": [
                {
                    "venue": i.venue,
                    "symbol": i.symbol,
                    "venue_symbol": i.venue_symbol,
                    "price_scale": i.price_scale,
                    "size_scale": i.size_scale,
                    "tick": i.tick,
                    "lot": i.lot,
                    "min_notional": i.min_notional,
                    "maker_fee": i.maker_fee,
                    "taker_fee": i.taker_fee,
                }
                for i in self.instruments.values()
            ],
        }
        sim = self.sim
        if sim is not None:
            out["sim"] = {
                "queue_model": spec.sim.str("queue_model", "prob"),
                "queue_power": sim.queue_power,
                "venue_clock": "own" if self.mode == "backtest" else "live book",
                "latency": {
                    "feed": sim.venue_time.describe() if sim.venue_time is not None else None,
                    "order": sim.order_latency.describe(),
                    "response": sim.response_latency.describe(),
                    "decision_ns": sim.decision_ns,
                },
            }
        out.update(self.extra_manifest)
        if summary is not None:
            out["summary"] = {k: v for k, v in summary.items() if k not in ("rows_per_s", "wall_s")}
        return out


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parents[2],
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from engine import __version__

    return __version__


def summarize(engine: Engine, stats: ReplayStats, wall_s: float) -> dict[str, Any]:
    pf = engine.portfolio
    realized = unrealized = fees = 0.0
    for _sid, pos in pf.positions():
        realized += pos.realized_quote
        unrealized += pos.unrealized_quote
        fees += pos.fees_quote
    oms = engine.oms
    submitted = oms.submitted
    return {
        "net_pnl": realized + unrealized - fees,
        "realized_pnl": realized,
        "unrealized_pnl": unrealized,
        "fees": fees,
        "fills": engine.fill_count,
        "orders_submitted": submitted,
        "orders_filled": oms.filled_orders,
        "orders_rejected": oms.rejected,
        "fill_ratio": oms.filled_orders / submitted if submitted else 0.0,
        "max_drawdown": engine.max_drawdown,
        "rows": stats.rows,
        "book_updates": stats.book_wakes,
        "crossed_books": stats.crossed,
        "incidents": dict(sorted(engine.incident_counts.items())),
        "wall_s": wall_s,
        "rows_per_s": stats.rows / wall_s if wall_s > 0 else 0.0,
    }


# --- latency and queue settings from the ``sim`` section ----------------------------------------
def _latency_cfg(spec: RunSpec) -> dict[str, Any]:
    cfg = spec.sim.raw("latency", {})
    if not isinstance(cfg, dict):
        raise ConfigError(spec.path, "sim.latency: must be an object")
    unknown = set(cfg) - {"feed", "order", "response", "decision_us"}
    if unknown:
        raise ConfigError(
            spec.path, f"sim.latency.{sorted(unknown)[0]}: unknown field (feed, order, response, decision_us)"
        )
    return cfg


def _latency(spec: RunSpec, key: str, default_ns: int, seed: int) -> Any:
    try:
        return lat.from_config(_latency_cfg(spec).get(key), default_ns, seed)
    except (ValueError, TypeError) as exc:
        raise ConfigError(spec.path, f"sim.latency.{key}: {exc}") from None


def _feed(spec: RunSpec, default_ns: int) -> VenueTime:
    try:
        return lat.feed_from_config(_latency_cfg(spec).get("feed"), default_ns)
    except (ValueError, TypeError) as exc:
        raise ConfigError(spec.path, f"sim.latency.feed: {exc}") from None


def _sim_setup(
    spec: RunSpec,
    engine: Engine,
    streams: list[Key],
    instruments: dict[Key, Instrument],
    local_books: BookSet,
    scheduler: Any,
    clock: Any,
    backtest: bool,
) -> SimSetup:
    seed = spec.seed
    order_l = _latency(spec, "order", 4_000_000, seed + 2)
    resp = _latency(spec, "response", 2_000_000, seed + 3)
    feed = _feed(spec, 2_000_000 if backtest else 0)
    try:
        qmodel = model_code(spec.sim.str("queue_model", "prob"))
    except ValueError as exc:
        raise ConfigError(spec.path, f"sim.queue_model: {exc}") from None
    qpower = spec.sim.number("queue_power", 2.0, positive=True)
    cfg = _latency_cfg(spec)
    decision_ns = int(float(cfg["decision_us"]) * 1000) if "decision_us" in cfg else 0
    resting = RestingOrders()
    if backtest and replay_mode(feed) == K.DUAL:  # the venue keeps books of its own
        venue_books = BookSet(len(streams), ticks=[instruments[k].tick for k in streams])
    else:
        venue_books = local_books
    # paper: one book; the venue is ahead of it by the feed latency (``SimulatedVenue``)
    act_delay = None if backtest else lat.ConstantLatency(getattr(feed, "latency_ns", 0))
    venue_cfgs = spec.sim.raw("venues", {})
    if not isinstance(venue_cfgs, dict):
        raise ConfigError(spec.path, "sim.venues: must be an object of venue -> settings")
    venues: dict[str, SimulatedVenue] = {}
    for venue in sorted({v for v, _ in streams}):
        vc = venue_cfgs.get(venue, {})
        if not isinstance(vc, dict) or set(vc) - {"maker_fee", "taker_fee", "supports_modify"}:
            raise ConfigError(
                spec.path, f"sim.venues.{venue}: expected an object of maker_fee, taker_fee, supports_modify"
            )
        profile = registry.profile(venue)
        sv = SimulatedVenue(
            venue,
            {s: instruments[(v, s)] for v, s in streams if v == venue},
            {s: i for i, (v, s) in enumerate(streams) if v == venue},
            venue_books,
            resting,
            scheduler,
            clock,
            engine,
            order_l,
            resp,
            profile=profile,
            maker_fee=vc.get("maker_fee"),
            taker_fee=vc.get("taker_fee"),
            supports_modify=vc.get("supports_modify"),
            act_delay=act_delay,
        )
        engine.add_venue(sv, profile)
        venues[venue] = sv
    return SimSetup(venues, resting, venue_books, feed, order_l, resp, qmodel, qpower, decision_ns)


def _check_instruments(spec: RunSpec, streams: list[Key], instruments: dict[Key, Instrument], where: str) -> None:
    for key in streams:
        if key not in instruments:
            raise ConfigError(where, f"no instrument {key[0]}:{key[1]} (the data has it)")
    for st in spec.strategies:
        for sym in st.symbols:
            if (st.venue, sym) not in instruments:
                have = ", ".join(f"{v}:{s}" for v, s in streams) or "nothing"
                raise ConfigError(
                    st.path, f"symbols: {st.venue}:{sym} is not in the data at {spec.data_root} (it holds {have})"
                )


def build_node(
    spec: RunSpec,
    mode: str,
    run_dir: Path | None,
    *,
    instruments: dict[Key, Instrument],
    streams: list[Key] | None = None,
    source: Any = None,
    adapters: dict[str, VenueAdapter] | None = None,
    strategies: list[Strategy] | None = None,
    measure_wakes: bool = False,
    log_orders: bool | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Node:
    """The node for ``mode`` (see the module docstring).

    ``instruments`` holds every instrument the node trades or replays. A backtest takes its
    streams from ``source`` (``engine.marketdata.reader.ReplaySource`` or anything shaped like
    it); the live modes take them from ``streams`` (default: every symbol a strategy uses) and
    their feeds from ``adapters`` (venue -> ``VenueAdapter``, for ``paper``/``live``/``record``).
    ``strategies`` replaces the config's (benchmarks; ``[]`` for none); ``log_orders`` the
    config's ``output.log_orders``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    backtest = mode == "backtest"
    if backtest:
        if source is None:
            raise ValueError("a backtest node needs a replay source")
        streams = list(source.streams)
        _check_instruments(spec, streams, instruments, str(spec.instruments_path or "config/instruments.json"))
        for key in streams:
            scales = source.scales.get(key)
            inst = instruments[key]
            if scales is not None and tuple(scales) != (inst.price_scale, inst.size_scale):
                raise DataError(
                    str(spec.data_root),
                    f"{key[0]}:{key[1]} stored with scales {scales}, "
                    f"instrument says {(inst.price_scale, inst.size_scale)}",
                )
        clock: SimClock | LiveClock = SimClock(source.start_ns or 0)
        scheduler: Any = Timeline()
        recorder = Recorder(run_dir)
    else:
        if streams is None:
            subs = [key for st in strategies for key in st.subscriptions] if strategies is not None else None
            streams = sorted(
                set(subs) if subs is not None else {(st.venue, s) for st in spec.strategies for s in st.symbols}
            )
        missing = [f"{v}:{s}" for v, s in streams if (v, s) not in instruments]
        if missing:
            raise ConfigError(spec.path, f"strategies: Symbol not found: {', '.join(missing)}")
        clock = LiveClock()
        scheduler = AsyncScheduler(loop or asyncio.get_event_loop(), clock)
        # written from a thread of its own, as crash-safe streams handed over every second by the
        # session (``Recorder.start_flushing``): a write must not stall the feed, a crash lose the day
        recorder = Recorder(run_dir, background=True)
    used = {k: instruments[k] for k in streams}
    portfolio = Portfolio(spec.balances)
    risk = RiskEngine(spec.risk, portfolio, spec.strategy_risk)
    engine = Engine(
        clock,
        scheduler,
        used,
        portfolio,
        risk,
        recorder,
        mark_interval_ns=spec.mark_interval_ns,
        log_orders=spec.log_orders if log_orders is None else log_orders,
    )
    books = BookSet(len(streams), ticks=[used[k].tick for k in streams])
    book_of: dict[Key, Book] = {}
    for i, key in enumerate(streams):
        book_of[key] = Book(used[key], books, i)
        engine.add_book(book_of[key])
    built = [st.build() for st in spec.strategies] if strategies is None else strategies
    node = Node(mode, spec, run_dir, clock, scheduler, recorder, engine, used, list(streams), books, book_of)
    trading = bool(built) and mode != "record"
    if trading and mode in ("backtest", "paper"):
        node.sim = _sim_setup(spec, engine, list(streams), used, books, scheduler, clock, backtest)
        engine.oms.decision_latency_ns = node.sim.decision_ns
    for s in built:
        engine.add_strategy(s)
    if backtest:
        node.source = source
        venue_time = node.sim.venue_time if node.sim is not None else None
        if isinstance(venue_time, DataVenueTime):
            spans = source.latency_spans() if hasattr(source, "latency_spans") else latency_spans(lambda: iter(source))
            venue_time.calibrate(spans)
        node.replay = ReplayDriver(
            engine,
            books,
            [book_of[k] for k in streams],
            scheduler,
            clock,  # type: ignore[arg-type]
            node.sim.resting if node.sim is not None else RestingOrders(),
            venue_time,
            node.sim.books if node.sim is not None else None,
            node.sim.queue_model if node.sim is not None else 0,
            node.sim.queue_power if node.sim is not None else 2.0,
            measure_wakes=measure_wakes,
        )
    else:
        node.adapters = dict(adapters or {})
        for adapter in node.adapters.values():  # REST limits, outages, private-stream drops: rows too
            adapter.set_incident_sink(engine.on_incident)
    return node


def wall_clock_info(wall: float, **extra: Any) -> dict[str, Any]:
    """``run_info.json``: the wall-clock facts kept apart so the event log stays deterministic."""
    return {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": round(wall, 3), **extra}
