"""Running a node on live market data: paper trading and live trading share this, frame to order.

``open_session`` asks each venue's adapter (from the registry) for its instruments and builds the
node (``node.build_node``); ``Session.start`` then, in this order:

1. live: connects each venue's order entry and private stream, and **reconciles** the account
   (``engine.reconcile``) before anything else may trade;
2. starts the engine (strategies' ``on_start``);
3. starts the feeds. Each writes the engine's books on the venue's fast path and shows them to
   the engine (``on_book``). In paper trading the feed also hands each message's levels and trades
   to the simulated venue (``sim.paper.PaperMatching``), which matches on the same book.

``Session.stop`` ends it in order: feeds first (no new decisions), then, when configured, every
open order is cancelled and its answer awaited, then the engine stops, the adapters close
(pending answers are waited for briefly) and the event log is closed with its manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.book import Book
from engine.errors import ConfigError, HftError
from engine.events import Trade
from engine.gcpolicy import thread_switch, trading_gc
from engine.logs import flush_logs, get_logger, setup_logging
from engine.reconcile import ReconcilePolicy, ReconcileResult, reconcile_venue
from engine.runners import registry
from engine.runners.node import Node, build_node, summarize, wall_clock_info
from engine.runners.spec import RunSpec
from engine.venue import FeedCallbacks, VenueAdapter
from engine.warm import PathWarmer
from sim.paper import PaperMatching
from sim.replay import ReplayStats

_log = get_logger("system")
CANCEL_WAIT_S = 5.0


@dataclass
class SessionResult:
    run_dir: Path
    summary: dict[str, Any]
    node: Node
    reconciled: list[ReconcileResult] = field(default_factory=list)

    @property
    def engine(self) -> Any:
        return self.node.engine


def _at(adapter: VenueAdapter) -> str:
    where = getattr(adapter, "endpoint", "")
    return f" ({where})" if where else ""


async def open_adapters(spec: RunSpec, env: Mapping[str, str] | None = None) -> dict[str, VenueAdapter]:
    """One adapter per venue the strategies trade on, each for the symbols they use."""
    symbols: dict[str, list[str]] = {}
    for st in spec.strategies:
        symbols.setdefault(st.venue, [])
        for s in st.symbols:
            if s not in symbols[st.venue]:
                symbols[st.venue].append(s)
    adapters: dict[str, VenueAdapter] = {}
    for venue, syms in symbols.items():
        entry = registry.entry(venue, spec.path)
        if entry.adapter is None:
            raise ConfigError(spec.path, f"venue {venue!r} has no live adapter")
        path = spec.exchanges.get(venue, entry.config)
        adapters[venue] = registry.load(entry.adapter)(path, syms, env)
    return adapters


async def open_session(
    spec: RunSpec,
    mode: str,
    run_dir: Path,
    adapters: dict[str, VenueAdapter] | None = None,
    strategies: list[Any] | None = None,
) -> Session:
    """The node for ``mode`` (paper, live) with its adapters' instruments loaded."""
    setup_logging(run_dir / "logs")
    adapters = adapters if adapters is not None else await open_adapters(spec)
    instruments = {}
    try:
        for venue, adapter in adapters.items():
            syms = sorted({s for st in spec.strategies if st.venue == venue for s in st.symbols})
            try:
                loaded = await adapter.load_instruments(syms)
            except HftError:
                raise
            except Exception as exc:  # no instruments, no node: say where and why, in one line
                raise HftError(f"Cannot load instruments from {venue}{_at(adapter)}: {exc}") from exc
            for sym, inst in loaded.items():
                instruments[(venue, sym)] = inst
        node = build_node(
            spec,
            mode,
            run_dir,
            instruments=instruments,
            adapters=adapters,
            strategies=strategies,
            loop=asyncio.get_running_loop(),
        )
    except BaseException:
        for adapter in adapters.values():
            with contextlib.suppress(Exception):
                await adapter.close()
        raise
    return Session(node)


class Session:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.matching: PaperMatching | None = None
        self.warmer: PathWarmer | None = None
        self.reconciled: list[ReconcileResult] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._t0 = 0.0
        self.started = False

    # --- start -------------------------------------------------------------------------------
    async def start(self) -> None:
        node = self.node
        engine = node.engine
        spec = node.spec
        self._t0 = time.perf_counter()
        if node.mode == "live":
            for venue, adapter in node.adapters.items():
                try:
                    client = await adapter.connect_execution(engine)
                except HftError:
                    raise
                except Exception as exc:
                    raise HftError(f"Cannot connect order entry on {venue}{_at(adapter)}: {exc}") from exc
                engine.add_venue(client, adapter.profile)
                node.execution[venue] = client
            policy = spec.live or ReconcilePolicy()
            for venue, adapter in node.adapters.items():
                syms = [s for v, s in node.streams if v == venue]
                try:
                    self.reconciled.append(await reconcile_venue(engine, venue, adapter.account(), syms, policy))
                except TimeoutError:
                    raise HftError(f"Reconciliation with {venue} timed out after {policy.timeout_s:.0f}s") from None
                except HftError:
                    raise
                except Exception as exc:  # the node must not trade on an account it could not read
                    raise HftError(f"Reconciliation with {venue} failed{_at(adapter)}: {exc}") from exc
        sim = node.sim
        if sim is not None:
            index = {key: i for i, key in enumerate(node.streams)}
            delay = getattr(sim.venue_time, "latency_ns", 0)
            self.matching = PaperMatching(sim.resting, index, node.clock, sim.queue_model, sim.queue_power, delay)
        engine.start()
        self.started = True
        for venue, adapter in node.adapters.items():
            books = {s: node.book_of[(v, s)] for v, s in node.streams if v == venue}
            feed = adapter.market_data(books, self._callbacks())
            node.feeds[venue] = feed
            self._tasks.append(feed.start())
        if spec.warm is not None and node.mode != "record":
            self.warmer = PathWarmer(engine, **spec.warm, feeds=[f.warm for f in node.feeds.values()])
            self.warmer.start(asyncio.get_running_loop())

    def _callbacks(self) -> FeedCallbacks:
        engine = self.node.engine
        matching = self.matching

        def on_book(book: Book) -> None:
            # measured feed latency: local receipt minus venue event time (0 when the venue gives none)
            engine.on_book(book, book.ts_recv - book.ts_event if book.ts_event else 0)

        if matching is None:
            return FeedCallbacks(on_book, engine.on_trade, engine.on_incident, None, engine.on_book_invalid)

        def on_trade(trade: Trade) -> None:
            matching.on_trade(trade)
            engine.on_trade(trade)

        return FeedCallbacks(on_book, on_trade, engine.on_incident, matching.on_levels, engine.on_book_invalid)

    # --- run and stop --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None, duration_s: float | None = None) -> SessionResult:
        """Start, trade until ``stop`` is set or ``duration_s`` passes, stop; the event log is closed
        whatever happens."""
        stop = stop or asyncio.Event()
        try:
            with trading_gc(), thread_switch():  # the recorder writes from a thread of its own
                await self.start()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=duration_s)
        finally:
            summary = await self.stop()
        return SessionResult(self.node.run_dir or Path("."), summary, self.node, self.reconciled)

    async def stop(self) -> dict[str, Any]:
        node = self.node
        engine = node.engine
        if self.warmer is not None:
            self.warmer.stop()
        for feed in node.feeds.values():
            with contextlib.suppress(Exception):
                await feed.stop()
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        spec = node.spec
        if self.started and node.mode == "live" and spec.live_cancel_on_stop:
            await self._cancel_open()
        engine.stop()
        for adapter in node.adapters.values():
            with contextlib.suppress(Exception):
                await adapter.close()
        flush_logs()  # the last turn's lines, before the caller reads the logs
        wall = time.perf_counter() - self._t0 if self._t0 else 0.0
        stats = ReplayStats()
        stats.rows = self.matching.messages if self.matching is not None else engine.book_events
        summary = summarize(engine, stats, wall)
        node.extra_manifest["data"] = {"live": True, "symbols": [f"{v}:{s}" for v, s in node.streams]}
        node.extra_manifest["venues"] = {
            v: {"profile": a.profile.name, "adapter": type(a).__name__} for v, a in node.adapters.items()
        }
        if self.reconciled:
            node.extra_manifest["reconciliation"] = [r.__dict__ for r in self.reconciled]
        node.recorder.close(node.manifest(summary))
        if node.run_dir is not None:
            info = wall_clock_info(wall)
            (node.run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
        return summary

    async def _cancel_open(self) -> None:
        """Cancel every open order and wait (briefly) for the venues to confirm."""
        oms = self.node.engine.oms
        orders = oms.all_open()
        if not orders:
            return
        _log.info("cancelling %d open orders before stopping", len(orders))
        for order in orders:
            oms.cancel(order)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline and any(not o.status.is_terminal for o in orders):
            await asyncio.sleep(0.02)
        left = [o.client_order_id for o in orders if not o.status.is_terminal]
        if left:
            _log.error("open orders not confirmed cancelled at stop: %s", ", ".join(left))


async def run_session(
    spec: RunSpec,
    mode: str,
    run_dir: Path,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    ready: Callable[[Session], None] | None = None,
    adapters: dict[str, VenueAdapter] | None = None,
) -> SessionResult:
    session = await open_session(spec, mode, run_dir, adapters)
    if ready is not None:
        ready(session)
    return await session.run(stop, duration_s)
