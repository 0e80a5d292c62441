"""Running a node on live market data: paper trading and live trading share this, frame to order.

``open_session`` asks each venue's adapter (from the registry) for its instruments and builds the
node (``node.build_node``); ``Session.start`` then, in this order:

1. live: connects each venue's order entry and private stream, and **reconciles** the account
   (``engine.reconcile``) before anything else may trade;
2. starts the engine (strategies' ``on_start``);
3. starts the feeds. Each writes the engine's books on the venue's fast path and shows them to
   the engine (``on_book``). In paper trading the feed also hands each message's levels and trades
   to the simulated venue (``sim.paper.PaperMatching``), which matches on the same book.
   With ``output.capture_market_data`` (paper's default) each venue's capture taps its feed's
   input before it starts (``record.SessionCapture``: what ``hft record`` does, a prefix check
   and a list append per frame, flushed every second off the loop's thread), so the run
   directory's ``market_data/`` replays the session as a backtest (``hft parity``). The manifest
   keeps what that replay needs beside the config (``replay``: the venue's instruments as loaded,
   each strategy's parameters).

``Session.stop`` ends it in order: feeds first (no new decisions), then the capture's last lines and
its Parquet (``market_data`` in the manifest), then, when configured, every
open order is cancelled and its answer awaited, then the engine stops, the adapters close
(pending answers are waited for briefly) and the event log is closed with its manifest.

A session survives a crash of its process (``engine.recorder`` has the event log's side). Before
anything else, ``start``:

- takes the run directory's lock (``RunLock``, held until ``stop``; the kernel drops it when the
  process dies, ``kill -9`` included);
- looks for the latest earlier run of the same config name and mode beside the new one (the runs
  root, or the parent of ``--out``). If that run crashed (its manifest says ``running`` and nobody
  holds its lock), it is recovered (``recover_run``: its streams become Parquet, its manifest says
  ``"status": "crashed"`` and ``recovered_at``) and the two are linked: the new manifest says
  ``"continues": <run id>``, the old one ``"continued_by"``. A run that closed, or one still
  running, is left alone;
- writes ``manifest.json`` at once (``"status": "running"``, mode, name, the redacted config, code
  version, strategies, instruments, models, ``started_at``) and ``run_info.json`` (``started_at``,
  pid, host): a crashed run says what it was;
- has the recorder hand its rows to the writer thread every second and after every fill.

``stop`` rewrites the manifest with ``"status": "closed"``, ``closed_at`` and the summary.

The database (``engine.store``). Paper and live sessions open a ``StoreService`` right after the
run directory's lock (``database.backend: none`` turns it off): the schema is migrated, the
journal's rows a previous process left unwritten go first, the run is recorded
(``strategy_runs``), and the recorder's hand-offs reach the service through ``Recorder.taps``.
Without a ``database`` section the store is the DuckDB file ``hft.duckdb`` and the journal
``journal/`` in the runs root in effect (the run directory's parent, as for the crashed-run
search); when another process holds that default file or journal, the session says so and
stores nothing (its event log has everything; ``hft db load`` takes it later). A configured
database that cannot be opened is an error. Live trading reconciles against the store, once the
journal's backlog is in it (waiting at most ``STORE_CATCH_UP_S``). While
trading, a task on the trading loop hands the service each book's top ``snapshot_depth`` levels
every ``market_data.snapshot_interval_s`` and, live, the balances every ``BALANCES_EVERY_S`` (and
after reconciliation). ``stop`` closes the service last (after the event log), waiting at most
``STORE_CLOSE_S`` for the database: what it has not taken by then stays in the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.book import Book
from engine.errors import ConfigError, HftError
from engine.events import Trade
from engine.gcpolicy import thread_switch, trading_gc
from engine.logs import flush_logs, get_logger, setup_logging
from engine.messages import LOCK_ACQUISITION_TIMEOUT
from engine.reconcile import ReconcilePolicy, ReconcileResult, reconcile_venue
from engine.recorder import RecorderError, RunLock, read_manifest, recover_run, run_state, utc_stamp
from engine.runners import registry
from engine.runners.node import Node, build_node, summarize, wall_clock_info
from engine.runners.record import MARKET_DATA_DIR, SessionCapture
from engine.runners.spec import RunSpec
from engine.venue import FeedCallbacks, VenueAdapter
from engine.warm import PathWarmer
from sim.paper import PaperMatching
from sim.replay import ReplayStats

_log = get_logger("system")
CANCEL_WAIT_S = 5.0
BALANCES_EVERY_S = 5.0  # live: the portfolio's balances to the store this often
STORE_CLOSE_S = 10.0  # at stop: the longest the session waits for the database to take the rest
STORE_CATCH_UP_S = 30.0  # live start: the longest reconciliation waits for the journal's backlog
_time_ns = time.time_ns


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
    log_dir: Path | None = None,
    log_rotate: tuple[float, int] = (0.0, 0),
) -> Session:
    """The node for ``mode`` (paper, live) with its adapters' instruments loaded. Component logs
    go to ``log_dir`` (the daemon's), else to the run directory's ``logs``; ``log_rotate`` is the
    daemon's (``log_rotate_mb``, ``log_backups``), (0, 0): no rotation."""
    setup_logging(
        log_dir if log_dir is not None else run_dir / "logs", log_rotate_mb=log_rotate[0], log_backups=log_rotate[1]
    )
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
        self._lock: RunLock | None = None
        self._lock_refused = False
        #: the manifest's run-state keys: status, started_at, continues
        self.lifecycle: dict[str, Any] = {}
        #: the daemon's ring of market-data latencies (``engine.daemon.telemetry.LatencyRing``):
        #: set before ``start``, it gets frame receipt -> book shown to the engine of every update
        self.md_ring: Any = None
        #: the database's service (``engine.store.service.StoreService``), None when nothing is stored
        self.store: Any = None
        self._store_task: asyncio.Task[None] | None = None
        #: the feeds' market data into the run directory (``output.capture_market_data``)
        self.capture: SessionCapture | None = None

    # --- the run: lock, crashed predecessor, manifest at start ---------------------------------------
    def _begin_run(self) -> None:
        node = self.node
        run_dir = node.run_dir
        if run_dir is None or not node.recorder.enabled:
            return
        lock = RunLock(run_dir)
        if not lock.acquire():
            self._lock_refused = True
            msg = f"{LOCK_ACQUISITION_TIMEOUT}: run directory {run_dir} is in use by another session ({lock.path})"
            _log.error(msg)
            raise HftError(msg)
        self._lock = lock
        state: dict[str, Any] = {"status": "running", "started_at": utc_stamp()}
        previous = self._continue_crashed(run_dir)
        if previous is not None:
            state["continues"] = previous
        self.lifecycle = state
        self._describe_data()
        node.recorder.write_manifest({**node.manifest(None), **state})
        info = {"started_at": state["started_at"], "pid": os.getpid(), "host": socket.gethostname()}
        (run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
        node.recorder.start_flushing(asyncio.get_running_loop())

    def _continue_crashed(self, run_dir: Path) -> str | None:
        """Recover the latest earlier run of this config name and mode if it crashed, and link it."""
        node = self.node
        latest: tuple[tuple[float, str], Path, dict[str, Any]] | None = None
        try:
            siblings = [p for p in run_dir.parent.iterdir() if p != run_dir and p.is_dir()]
        except OSError:
            return None
        for p in siblings:
            m = read_manifest(p)
            if m.get("mode") != node.mode:
                continue
            config = m.get("config")
            name = m.get("name") or (config.get("name") if isinstance(config, dict) else None)
            if name != node.spec.name:
                continue
            key = (_started(m, p), p.name)
            if latest is None or key > latest[0]:
                latest = (key, p, m)
        if latest is None:
            return None
        _, previous, m = latest
        if m.get("continued_by") or run_state(previous, m) != "crashed":
            return None
        try:
            m = recover_run(previous, continued_by=run_dir.name)
        except (RecorderError, OSError) as exc:
            _log.error(f"crashed run {previous} not recovered, this run does not continue it: {exc}")
            return None
        if m.get("continued_by") != run_dir.name:
            return None
        rows = m.get("recovered_rows") or {}
        _log.info(f"continuing crashed run {previous.name} ({sum(rows.values())} rows recovered: {rows})")
        return previous.name

    def _describe_data(self) -> None:
        node = self.node
        node.extra_manifest["data"] = {"live": True, "symbols": [f"{v}:{s}" for v, s in node.streams]}
        node.extra_manifest["venues"] = {
            v: {"profile": a.profile.name, "adapter": type(a).__name__} for v, a in node.adapters.items()
        }
        # what a replay (``hft parity``) needs that the config only points to: the venue's
        # instruments as loaded, and each strategy file's contents
        node.extra_manifest["replay"] = {
            "instruments": [dataclasses.asdict(i) for i in node.instruments.values()],
            "strategies": [
                {
                    "strategy_id": st.strategy_id,
                    "class": f"{st.cls.__module__}:{st.cls.__qualname__}",
                    "venue": st.venue,
                    "symbols": list(st.symbols),
                    "params": st.params,
                    **({"invalid_book": st.invalid_book} if st.invalid_book is not None else {}),
                    **({"risk_limits": st.risk_limits} if st.risk_limits else {}),
                }
                for st in node.spec.strategies
            ],
        }

    # --- start -------------------------------------------------------------------------------
    async def start(self) -> None:
        node = self.node
        engine = node.engine
        spec = node.spec
        self._t0 = time.perf_counter()
        self._begin_run()
        await self._open_store()
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
                    self.reconciled.append(
                        await reconcile_venue(engine, venue, adapter.account(), syms, policy, store=self.store)
                    )
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
        capture = self._capture()
        for venue, adapter in node.adapters.items():
            books = {s: node.book_of[(v, s)] for v, s in node.streams if v == venue}
            feed = adapter.market_data(books, self._callbacks())
            node.feeds[venue] = feed
            if capture is not None and not capture.attach(adapter, feed, {s: b.instrument for s, b in books.items()}):
                _log.warning("market data capture: venue %s has no capture; this run cannot be replayed", venue)
            self._tasks.append(feed.start())
        if capture is not None:
            capture.start(asyncio.get_running_loop())
        if spec.warm is not None and node.mode != "record":
            self.warmer = PathWarmer(engine, **spec.warm, feeds=[f.warm for f in node.feeds.values()])
            self.warmer.start(asyncio.get_running_loop())
        if self.store is not None:
            self._store_task = asyncio.get_running_loop().create_task(self._feed_store())

    def _capture(self) -> SessionCapture | None:
        node = self.node
        if not node.spec.capture_market_data or node.run_dir is None or self._lock is None:
            return None
        self.capture = SessionCapture(node.run_dir / MARKET_DATA_DIR)
        return self.capture

    async def _close_capture(self) -> None:
        """After the feeds stopped: the capture's last lines, then its Parquet (described in the manifest)."""
        capture, self.capture = self.capture, None
        if capture is None:
            return
        entry: dict[str, Any] = {"root": MARKET_DATA_DIR}
        try:
            entry["venues"] = await capture.close()
        except Exception as exc:  # the event log must still close; the raw files up to the last flush stay
            _log.error("market data capture did not close cleanly: %s", exc)
            entry["error"] = str(exc)
        if capture.unsupported:
            entry["not_captured"] = capture.unsupported
        self.node.extra_manifest["market_data"] = entry

    # --- the database -----------------------------------------------------------------------------
    async def _open_store(self) -> None:
        """The store service of a paper or live session (see the module docstring)."""
        from engine.store.errors import StoreLocked
        from engine.store.journal import JournalLocked
        from engine.store.service import StoreService

        node = self.node
        settings = node.spec.store
        if node.mode not in ("paper", "live") or not settings.enabled or node.run_dir is None:
            return
        if not node.recorder.enabled or self._lock is None:
            return
        implicit = "database" not in node.spec.raw
        if implicit:  # the embedded default lives in the runs root in effect
            root = node.run_dir.parent
            settings = replace(settings, duckdb_path=root / "hft.duckdb", journal_dir=root / "journal")
        loop = asyncio.get_running_loop()
        engine = node.engine

        def incident(kind: str, detail: str, value: float) -> None:  # on the store's thread or its receiver
            loop.call_soon_threadsafe(lambda: engine.incident(node.clock.now(), "", "", kind, detail, value))

        service = StoreService(settings, on_incident=incident)
        try:
            await service.open()
        except (StoreLocked, JournalLocked) as exc:
            if not implicit:
                raise
            _log.warning(
                "database: %s; this session stores nothing in the default database (its event log has "
                "everything: `hft db load %s` later)",
                exc,
                node.run_dir,
            )
            return
        self.store = service
        manifest = {**node.manifest(None), **self.lifecycle}
        service.begin_run(node.run_dir.name, node.spec.name, node.mode, node.spec.path, time.time_ns(), manifest)
        node.recorder.taps.append(service.tap)
        _log.info("database: %s store at %s, journal %s", settings.backend, settings.where, settings.journal_dir)
        if node.mode == "live" and not await service.flush(STORE_CATCH_UP_S):
            # reconciliation reads the store: what an earlier process journaled must be in it first
            _log.warning(
                "database: the journal's rows are not all in the database after %.0f s (%s); reconciliation "
                "reads what the database has",
                STORE_CATCH_UP_S,
                service.last_error or "still writing",
            )

    def _put_balances(self) -> None:
        store = self.store
        if store is None or self.node.mode != "live":
            return
        now = time.time_ns()
        for venue, assets in self.node.engine.portfolio.balance_detail().items():
            store.put_balances(venue, {a: (b["free"], b["held"]) for a, b in assets.items()}, now)

    async def _feed_store(self) -> None:
        """Order-book snapshots every ``snapshot_interval_s`` and, live, balances every
        ``BALANCES_EVERY_S``: a few list appends per interval on the trading loop."""
        store = self.store
        node = self.node
        md = node.spec.store.market_data
        depth = md.snapshot_depth
        every = md.snapshot_interval_s
        tick = min(every, BALANCES_EVERY_S) if every > 0 else BALANCES_EVERY_S
        self._put_balances()
        next_balances = time.monotonic() + BALANCES_EVERY_S
        while True:
            await asyncio.sleep(tick)
            if every > 0:
                now = time.time_ns()
                rows = []
                for (venue, symbol), book in node.book_of.items():
                    if not book.valid:
                        continue
                    bids, asks = book.bids(depth), book.asks(depth)
                    rows.append(
                        (
                            now, venue, symbol, int(book.update_id),
                            [p for p, _ in bids], [q for _, q in bids], [p for p, _ in asks], [q for _, q in asks],
                        )
                    )  # fmt: skip
                if rows:
                    store.put_snapshots(rows)
            if time.monotonic() >= next_balances:
                next_balances = time.monotonic() + BALANCES_EVERY_S
                self._put_balances()

    def _callbacks(self) -> FeedCallbacks:
        engine = self.node.engine
        matching = self.matching
        ring = self.md_ring

        if ring is None:

            def on_book(book: Book) -> None:
                # measured feed latency: local receipt minus venue event time (0 when the venue gives none)
                engine.on_book(book, book.ts_recv - book.ts_event if book.ts_event else 0)

        else:
            add = ring.add  # a deque's append: the snapshot does the rest (``engine.daemon.telemetry``)

            def on_book(book: Book) -> None:
                add(_time_ns() - book.ts_recv)
                engine.on_book(book, book.ts_recv - book.ts_event if book.ts_event else 0)

        if matching is None:
            return FeedCallbacks(on_book, engine.on_trade, engine.on_incident, None, engine.on_book_invalid)

        # Paper: the simulated venue's acks and fills due before a message are handled before it
        # (``AsyncScheduler.run_due``), as the backtest's timeline orders them; the loop's timers
        # alone cannot, while a burst of messages from one socket read is being handled.
        run_due = getattr(self.node.scheduler, "run_due", None)
        book_cb = on_book
        match_levels = matching.on_levels

        def on_levels(book: Book, bids: Any, asks: Any, snapshot: bool) -> None:
            if run_due is not None:
                run_due(book.ts_recv)
            match_levels(book, bids, asks, snapshot)

        def on_paper_book(book: Book) -> None:
            if run_due is not None:
                run_due(book.ts_recv)
            book_cb(book)

        def on_trade(trade: Trade) -> None:
            if run_due is not None:
                run_due(trade.ts_recv)
            matching.on_trade(trade)
            engine.on_trade(trade)

        return FeedCallbacks(on_paper_book, on_trade, engine.on_incident, on_levels, engine.on_book_invalid)

    # --- run and stop --------------------------------------------------------------------------
    async def run(
        self,
        stop: asyncio.Event | None = None,
        duration_s: float | None = None,
        after_start: Callable[[Session], Awaitable[None]] | None = None,
        before_stop: Callable[[Session], Awaitable[None]] | None = None,
    ) -> SessionResult:
        """Start, trade until ``stop`` is set or ``duration_s`` passes, stop; the event log is closed
        whatever happens. ``after_start`` runs once the session trades (the daemon starts its
        bridge and API there), ``before_stop`` before it stops (whether or not it started)."""
        stop = stop or asyncio.Event()
        try:
            with trading_gc(), thread_switch():  # the recorder writes from a thread of its own
                try:
                    await self.start()
                    if after_start is not None:
                        await after_start(self)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=duration_s)
                finally:
                    if before_stop is not None:
                        await before_stop(self)
        finally:
            summary = await self.stop()
        return SessionResult(self.node.run_dir or Path("."), summary, self.node, self.reconciled)

    async def stop(self) -> dict[str, Any]:
        node = self.node
        engine = node.engine
        if self.warmer is not None:
            self.warmer.stop()
        if self._store_task is not None:
            self._store_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._store_task
            self._store_task = None
        for feed in node.feeds.values():
            with contextlib.suppress(Exception):
                await feed.stop()
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._close_capture()
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
        if self._lock_refused:  # the directory is another session's: write nothing into it
            node.recorder.discard()
            return summary
        self._put_balances()
        self._describe_data()
        if self.reconciled:
            node.extra_manifest["reconciliation"] = [r.__dict__ for r in self.reconciled]
        manifest = node.manifest(summary)
        if self.lifecycle:
            manifest.update(self.lifecycle, status="closed", closed_at=utc_stamp())
        try:
            node.recorder.close(manifest)
            if node.run_dir is not None:
                extra = {"started_at": self.lifecycle["started_at"]} if self.lifecycle else {}
                info = wall_clock_info(wall, **extra)
                (node.run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
        finally:
            await self._close_store(manifest.get("status") or "closed", summary)
            if self._lock is not None:
                self._lock.release()
                self._lock = None
        return summary

    async def _close_store(self, status: str, summary: dict[str, Any]) -> None:
        """After the event log's close (its last rows are handed over): the run's end, then the
        service closed, waiting at most ``STORE_CLOSE_S``."""
        store, self.store = self.store, None
        if store is None:
            return
        run_dir = self.node.run_dir
        store.end_run(run_dir.name if run_dir is not None else "", status, time.time_ns(), summary)
        try:
            if not await store.close(STORE_CLOSE_S):
                _log.warning(
                    "database: not every row was written within %.0f s of the stop; the rest stay in the journal "
                    "%s and are written by the next session",
                    STORE_CLOSE_S,
                    store.journal_dir,
                )
        except Exception as exc:  # the event log is closed and whole: the store must not fail the stop
            _log.error("database: store service did not close cleanly: %r (database error)", exc)

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


def _started(manifest: dict[str, Any], run_dir: Path) -> float:
    """When a run started (its manifest's ``started_at``), else when its manifest was last written."""
    stamp = manifest.get("started_at")
    if isinstance(stamp, str):
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    try:
        return (run_dir / "manifest.json").stat().st_mtime
    except OSError:
        return 0.0


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
