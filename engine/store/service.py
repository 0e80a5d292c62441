"""StoreService: the path from the trading loop to the database, off the trading loop.

The store (``engine.store.open_store``: PostgreSQL or DuckDB) runs on a thread of its own with an
asyncio loop of its own (uvloop when installed). The trading loop never waits for it:

- ``tap(job)`` is what ``Recorder.taps`` calls with each hand-off of the event recorder (a list of
  ``(table, rows)``): one list append and one wake-up of the service thread;
- ``put_balances`` and ``put_snapshots`` are appends too; ``begin_run``/``end_run`` go through the
  journal like the rows.

On the service thread, each wake-up takes what arrived and:

1. **durable rows** (orders, fills, positions, risk rows that failed a check, incidents,
   reconciliation rows, run start/stop) are framed into journal records (``engine.store.journal``)
   of at most ``_SLICE`` rows each and appended in one write and one ``fsync``: from then on they
   survive the process and the database. They are then written to the database in batches of
   ``batch_rows``, at least every ``flush_interval_ms``, in journal order; after each committed
   batch the journal's watermark moves. Rows are kept in memory until written (up to
   ``queue_rows``; past that the oldest are let go and read back from the journal when their turn
   comes). They are never dropped.
2. **market data** (``market`` rows to ``market_data_ticks`` by COPY, order-book snapshots) goes
   through a bounded queue of ``queue_rows`` rows. Past half of it, arriving rows are sampled
   (every ``SAMPLE_EVERY``-th kept); when it is full they are dropped. Either is said in the
   guide's words (``Queue full: ...``, naming the table and the rows dropped, at most every
   ``QUEUE_FULL_EVERY_S``) and recorded as a ``queue_full`` incident. Hand-offs are gathered into
   COPYs of ``COPY_SLICE`` rows, ``batch_rows`` while a backlog waits (``_write_market_batch``
   says why).

Where it runs (``database.writer``): this thread, in the trading process, or (PostgreSQL's
default) a child process at a lower CPU priority running this same class on its thread, fed
through a pipe (``engine.store.writer_process``); ``StoreService(settings)`` gives whichever the
settings choose, with one interface.

The first connection is tried by ``open``: a DuckDB file another process holds (``StoreLocked``)
or a schema history that does not match (``MigrationError``) raise there; an unreachable server
is an outage like any later one.

Outage. A write or connect that fails with ``StoreUnavailable`` (or a dropped connection) or
``StoreTimeout`` marks the database down (``hft_db_up`` 0), logs an ERROR line (``errors.log``;
``Database connection failed: could not connect to server ...: database write error ...``),
records an incident (``database_unavailable`` / ``database_timeout``, through ``on_incident``:
the session hands it to the engine on the trading loop, so it is an event-log row like any
other), and reconnects with exponential backoff (``BACKOFF_*``). Once connected again (and the
schema migrated), writing resumes from the journal's watermark (idempotent: the store's keys
make a row written twice stored once) and ``database_restored`` says how long it was down.
Trading never notices. The replay starts ``REPLAY_MARGIN_S`` behind the watermark as it stood
when the outage began (and a start, behind the last watermark: ``Journal.replay_from``): a
server that crashed may have lost commits it had acknowledged (``synchronous_commit = off``).

Metrics (``metrics``/``samples``): ``hft_db_up``, ``hft_db_queue_depth`` (rows waiting for the
database, market and durable), ``hft_db_write_latency_seconds`` (histogram per batch),
``hft_db_rows_written_total{table}``, ``hft_db_rows_dropped_total{table}``,
``hft_db_journal_pending_rows``, ``hft_db_connection_failures_total``. ``system.log`` gets a
``database write`` line at most once a second (rows, tables, ``latency_us`` last).
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.eventlog_schema import TABLES
from engine.logs import get_logger
from engine.messages import DATABASE_CONNECTION_FAILED, DATABASE_QUERY_TIMEOUT, QUEUE_FULL
from engine.store.journal import RUN_TABLE, Journal, JournalCorrupt, JournalError, Position, Record, encode

_log = get_logger("system")
_SLICE = 4096  # rows per journal record (msgpack-encoded in one call)
DURABLE = ("orders", "fills", "positions", "risk", "incidents", "reconcile")
MARKET = "market"
SNAPSHOTS = "order_book_snapshots"
_LAZY = frozenset((MARKET, SNAPSHOTS, "timers"))  # hand-offs of these alone wait for the next timer
SAMPLE_EVERY = 10  # past half the market queue, one row in this many is kept
QUEUE_FULL_EVERY_S = 10.0
WRITE_LINE_EVERY_S = 1.0
BACKOFF_INITIAL_S = 0.25
BACKOFF_MAX_S = 5.0
CLOSE_TIMEOUT_S = 10.0
COPY_SLICE = 1000  # market rows per COPY while no backlog waits (see _write_market_batch)
BACKLOG_BATCHES = 4  # market rows waiting past this many batch_rows: COPY batch_rows at a time
REPLAY_MARGIN_S = 10.0  # how far behind the watermark a reconnect replays (acknowledged commits a crash lost)
POISON_TRIES = 3  # a batch refused this often for a reason other than the connection is skipped
_RISK_PASSED = TABLES["risk"].names.index("passed")
#: seconds, per database batch
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _is_outage(exc: BaseException) -> bool:
    """Does ``exc`` mean the database is out of reach (rather than that it refused the rows)?"""
    from engine.store.errors import StoreTimeout, StoreUnavailable

    if isinstance(exc, StoreUnavailable | StoreTimeout | ConnectionError | OSError | TimeoutError):
        return True
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.CrashShutdownError,
    )


def _is_timeout(exc: BaseException) -> bool:
    from engine.store.errors import StoreTimeout

    return isinstance(exc, StoreTimeout | TimeoutError)


class _Histogram:
    __slots__ = ("counts", "sum", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.total = 0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.total += 1

    def buckets(self) -> list[list[Any]]:
        out: list[list[Any]] = []
        run = 0
        for bound, n in zip(LATENCY_BUCKETS, self.counts, strict=False):
            run += n
            out.append([bound, run])
        out.append(["+Inf", self.total])
        return out


class StoreFeed:
    """The trading thread's side of a store writer (``StoreService`` here, or the writer process,
    ``engine.store.writer_process``): appends to ``_inbox`` and, for rows the journal must get
    soon, a wake-up of the writer (``_kick``, each writer's own)."""

    _inbox: deque[tuple[str, list[tuple[str, list[Any]]]]]
    _balances: dict[str, tuple[dict[str, tuple[float, float]], int]]
    submitted: int
    run_id: str

    def _kick(self) -> None:  # each writer wakes its own way
        raise TypeError(f"{type(self).__name__} must define _kick")

    def submit(self, table: str, rows: list[tuple]) -> None:
        """Rows of one event-log table (or ``order_book_snapshots``)."""
        self._inbox.append((self.run_id, [(table, rows)]))
        self.submitted += 1
        if table not in _LAZY:
            self._kick()

    def put_snapshots(self, rows: list[tuple]) -> None:
        """``(ts_ns, venue, symbol, data_seq, bid_px, bid_sz, ask_px, ask_sz)`` rows."""
        self.submit(SNAPSHOTS, rows)

    def put_balances(self, venue: str, balances: dict[str, tuple[float, float]], ts_ns: int) -> None:
        """The venue's balances now (asset -> (free, locked)); only the latest is written (at the
        writer's next timer)."""
        self._balances[venue] = (balances, ts_ns)
        self.submitted += 1

    def begin_run(self, run_id: str, name: str, mode: str, config_path: str, started_ns: int, manifest: dict) -> None:
        self.run_id = run_id
        args = (run_id, name, mode, config_path, started_ns, manifest)
        self._inbox.append((run_id, [(RUN_TABLE, [("begin", *args)])]))
        self.submitted += 1
        self._kick()

    def end_run(self, run_id: str, status: str, closed_ns: int, summary: dict | None) -> None:
        self._inbox.append((run_id, [(RUN_TABLE, [("end", run_id, status, closed_ns, summary)])]))
        self.submitted += 1
        self._kick()


class StoreService(StoreFeed):
    """See the module docstring. ``store``: a Store to use (tests, benchmarks); by default
    ``open_store(settings)``. ``on_incident(kind, detail, value)`` is called on the service
    thread: hand it to the trading loop (``loop.call_soon_threadsafe``).

    With ``settings.writer_kind == "process"`` (PostgreSQL's default) and no ``store`` given, the
    constructor gives an ``engine.store.writer_process.ProcessStoreService`` instead: the same
    interface, the database work in a child process. Callers (the session, reconciliation, the
    daemon) construct ``StoreService`` and need not know which they got."""

    def __new__(
        cls,
        settings: Any,
        store: Any = None,
        on_incident: Callable[[str, str, float], None] | None = None,
        journal_dir: Path | None = None,
    ) -> Any:
        if cls is StoreService and store is None and getattr(settings, "writer_kind", "thread") == "process":
            from engine.store.writer_process import ProcessStoreService

            return ProcessStoreService(settings, on_incident=on_incident, journal_dir=journal_dir)
        return super().__new__(cls)

    def __init__(
        self,
        settings: Any,
        store: Any = None,
        on_incident: Callable[[str, str, float], None] | None = None,
        journal_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        if store is None:
            from engine.store import open_store

            store = open_store(settings)
        self.store = store
        self.on_incident = on_incident
        self.journal_dir = Path(journal_dir if journal_dir is not None else settings.journal_dir)
        self.journal: Journal | None = None
        self.run_id = ""
        self.batch_rows = max(1, int(settings.batch_rows))
        self.queue_rows = max(1, int(settings.queue_rows))
        self.flush_s = max(0.001, settings.flush_interval_ms / 1000.0)
        self.copy_slice = min(COPY_SLICE, self.batch_rows)
        # the trading loop's side: appends only
        self._inbox: deque[tuple[str, list[tuple[str, list[Any]]]]] = deque()
        self._balances: dict[str, tuple[dict[str, tuple[float, float]], int]] = {}
        self.submitted = 0  # hand-offs taken (the trading loop's count)
        # the service thread's side
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._mem: deque[Record] = deque()  # journaled, not yet in the database, oldest first
        self._mem_rows = 0
        self._cursor: Position = (0, 0)  # the journal position the database has everything before
        self._marks: deque[tuple[float, Position]] = deque()  # (monotonic, watermark) of recent commits
        self._safe: Position = (0, 0)  # a watermark at least REPLAY_MARGIN_S old: where a replay starts
        self._market: deque[tuple[str, str, list[Any]]] = deque()
        self._market_rows = 0
        self._sample_n = 0
        self._waiters: list[tuple[int, concurrent.futures.Future[bool]]] = []
        self._poison: tuple[Position, int] = ((0, 0), 0)
        # state and counters (read by ``metrics`` from any thread)
        self.up = False
        self.down_since: float | None = None
        self.connection_failures = 0
        self.rows_written: dict[str, int] = {}
        self.rows_dropped: dict[str, int] = {}
        self.journal_pending_rows = 0
        self.latency = _Histogram()
        self.last_error = ""
        self.journal_damaged: list[str] = []  # what the journal found damaged (logged at ERROR)
        self._queue_full_said = 0.0
        self._dropped_since_said: dict[str, int] = {}
        self._line_at = 0.0
        self._line_rows: dict[str, int] = {}
        self._line_lat: list[float] = []

    # --- start, stop (the trading loop's side) ------------------------------------------------------
    async def open(self) -> StoreService:
        """Start the service thread: the journal opened (``JournalLocked`` and ``JournalError``
        raise here), a first connection and migration tried (a failure is an outage, not an
        error: the journal keeps everything until the database is back)."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="store-service", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)
        return self

    def open_sync(self) -> StoreService:
        """``open`` for callers without a running loop (scripts, benchmarks)."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="store-service", daemon=True)
        self._thread.start()
        ready.result()
        return self

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Write what is pending (waiting at most ``timeout_s``), then stop. False when rows were
        left: they stay in the journal and are written at the next start."""
        ok = await asyncio.wrap_future(self._close_future(timeout_s))
        self._join()
        return ok

    def close_sync(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        ok = self._close_future(timeout_s).result()
        self._join()
        return ok

    def _join(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)  # its loop has finished: only the thread's last steps are left

    def _close_future(self, timeout_s: float) -> concurrent.futures.Future[bool]:
        out: concurrent.futures.Future[bool] = concurrent.futures.Future()
        loop = self._loop
        if loop is None or self._done.done():
            out.set_result(True)
            return out

        def finished(f: concurrent.futures.Future[None]) -> None:  # on the service thread, as it ends
            exc = f.exception()
            out.set_result(exc is None and self._left() == 0) if exc is None else out.set_exception(exc)

        self._done.add_done_callback(finished)
        with contextlib.suppress(RuntimeError):  # the loop has just closed: ``finished`` answers
            loop.call_soon_threadsafe(self._begin_close, timeout_s)
        return out

    # --- feeding (the trading loop's side: appends and a wake-up) ----------------------------------
    def tap(self, job: list[tuple[str, list[tuple]]]) -> None:
        """``Recorder.taps``: a hand-off of the event recorder (its lists, not copied). A job of
        market data alone waits for the service's next timer; one with rows for the journal wakes
        it now."""
        self._inbox.append((self.run_id, job))
        self.submitted += 1
        for table, _ in job:
            if table not in _LAZY:
                self._kick()
                return

    def _kick(self) -> None:
        """Wake the service thread, once until it has woken (a write to its loop's self-pipe)."""
        if self._kicked:
            return
        loop = self._loop
        if loop is not None and not self._done.done():
            self._kicked = True
            with contextlib.suppress(RuntimeError):  # the loop closed under us: close() is under way
                loop.call_soon_threadsafe(self._wake_up)

    # --- reads and flush (awaitable from any loop) ---------------------------------------------------
    async def query(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``getattr(store, name)(*args, **kwargs)`` on the service thread; the store's errors raise."""
        loop = self._loop
        if loop is None or self._done.done():
            from engine.store.errors import StoreUnavailable

            raise StoreUnavailable(f"{DATABASE_CONNECTION_FAILED}: the store service is not running")
        method = getattr(self.store, name)
        fut = asyncio.run_coroutine_threadsafe(method(*args, **kwargs), loop)
        return await asyncio.wrap_future(fut)

    def query_sync(self, name: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        loop = self._loop
        assert loop is not None, "store service not open"
        fut = asyncio.run_coroutine_threadsafe(getattr(self.store, name)(*args, **kwargs), loop)
        return fut.result(timeout_s)

    async def flush(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait until everything submitted so far is in the database; False if that took longer
        than ``timeout_s`` (the rows are still on their way, or in the journal)."""
        fut = self._flush_future()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout_s)
        except TimeoutError:
            return False

    def flush_sync(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        try:
            return self._flush_future().result(timeout_s)
        except concurrent.futures.TimeoutError:
            return False

    def _flush_future(self) -> concurrent.futures.Future[bool]:
        fut: concurrent.futures.Future[bool] = concurrent.futures.Future()
        loop = self._loop
        if loop is None or self._done.done():
            fut.set_result(self._left() == 0)
            return fut
        target = self.submitted
        loop.call_soon_threadsafe(self._add_waiter, target, fut)
        return fut

    # --- metrics -------------------------------------------------------------------------------------
    def queue_depth(self) -> int:
        return self._market_rows + self._mem_rows

    def metrics(self) -> dict[str, Any]:
        return {
            "hft_db_up": int(self.up),
            "hft_db_queue_depth": self.queue_depth(),
            "hft_db_write_latency_seconds": {
                "buckets": self.latency.buckets(),
                "sum": self.latency.sum,
                "count": self.latency.total,
            },
            "hft_db_rows_written_total": dict(self.rows_written),
            "hft_db_rows_dropped_total": dict(self.rows_dropped),
            "hft_db_journal_pending_rows": max(self.journal_pending_rows, 0),
            "hft_db_connection_failures_total": self.connection_failures,
        }

    def samples(self) -> list[dict[str, Any]]:
        """``metrics`` as the daemon's telemetry samples (``Telemetry.extra``)."""
        return samples_of(self.metrics(), getattr(self.store, "backend", ""))

    # --- the service thread ----------------------------------------------------------------------------
    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            if not self._done.done():
                self._done.set_exception(exc)
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            if not self._done.done():
                self._done.set_result(None)

    async def _main(self, ready: concurrent.futures.Future[None]) -> None:
        self._wake = asyncio.Event()
        try:
            self.journal = Journal(
                self.journal_dir, self.settings.journal_retention_days, on_corrupt=self._journal_damaged
            ).open()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        try:
            self._cursor = self._safe = self.journal.replay_from
            self.journal_pending_rows = sum(len(r.rows) for r in self.journal.read(self.journal.watermark))
            if self.journal_pending_rows:
                _log.info(
                    "database: %d journaled rows not yet in the database (from %s); writing them first",
                    self.journal_pending_rows,
                    self.journal_dir,
                )
            await self._connect(first=True)
            ready.set_result(None)
            await self._serve()
        finally:
            await self._shutdown()

    async def _serve(self) -> None:
        """Wake-ups until closed; an unexpected error (a bug) is logged and the loop goes on: the
        service must not die with rows in its hands (the journal keeps what it took)."""
        assert self._wake is not None
        self._backoff = BACKOFF_INITIAL_S
        self._retry_at = 0.0
        self._prune_at = time.monotonic() + 3600.0
        self._last_write = 0.0
        while True:
            up = self.up
            wait = max(self._last_write + self.flush_s - time.monotonic(), 0.001) if up else 0.05
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            self._kicked = False  # before the inbox is read: a hand-off from now on wakes it again
            try:
                if await self._step():
                    break
            except Exception as exc:
                _log.error("database: store service error: %r (database error); carrying on", exc)
                if self._closing and time.monotonic() >= self._close_deadline:
                    break
                await asyncio.sleep(self.flush_s)

    async def _step(self) -> bool:
        """One wake-up's work; True when the service is done (closing)."""
        self._ingest()  # the journal at every wake-up: durable as soon as handed over
        if self.up and not self._due(self._last_write):
            return False  # the database in batches: batch_rows, or flush_interval_ms since the last
        if not self.up:
            now = time.monotonic()
            if self._closing and (now >= self._close_deadline or self._left() == 0):
                return True
            if now < self._retry_at:
                return False
            if not await self._connect():
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
                return False
            self._backoff = BACKOFF_INITIAL_S
        ok = await self._write_all()
        self._last_write = time.monotonic()
        self._answer_waiters()
        if self._closing and (self._left() == 0 or time.monotonic() >= self._close_deadline):
            return True
        if not ok:
            self._retry_at = time.monotonic() + self._backoff
        if time.monotonic() >= self._prune_at and self.journal is not None:
            self._prune_at = time.monotonic() + 3600.0
            self.journal.prune()
        return False

    def _due(self, last_write: float) -> bool:
        """Is it time to write to the database?"""
        return (
            self._closing
            or bool(self._waiters)
            or time.monotonic() - last_write >= self.flush_s
            or self._mem_rows + self._market_rows >= self.batch_rows
            or bool(self._unread())
        )

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _begin_close(self, timeout_s: float) -> None:
        self._closing = True
        self._close_deadline = time.monotonic() + timeout_s
        self._wake_up()

    _close_deadline = 0.0
    _kicked = False
    _backoff = BACKOFF_INITIAL_S
    _retry_at = 0.0
    _prune_at = 0.0
    _last_write = 0.0

    def _left(self) -> int:
        return self._mem_rows + self._market_rows + len(self._inbox) + len(self._balances) + self._unread()

    def _unread(self) -> int:
        """Journaled rows behind the in-memory ones (let go from memory, or from an earlier run)."""
        j = self.journal
        if j is None:
            return 0
        head = self._mem[0].start if self._mem else j.tail
        return int(self._cursor < head and j.tail > self._cursor)

    async def _shutdown(self) -> None:
        if self._left():
            _log.error(
                "database: not everything was written at close (database error or too slow): %d journaled rows "
                "stay in the journal %s and are written at the next start; %d market rows are dropped",
                max(self.journal_pending_rows, 0),
                self.journal_dir,
                self._market_rows,
            )
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_result(False)
        self._waiters = []
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.close(), 5.0)
        if self.journal is not None:
            self.journal.close()
        self.up = False

    # --- connect, outage ----------------------------------------------------------------------------------
    async def _connect(self, first: bool = False) -> bool:
        timeout = float(getattr(self.settings, "connect_timeout_s", 5.0)) + 5.0
        try:
            if not first:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.store.close(), 2.0)
            await asyncio.wait_for(self.store.connect(), timeout)
            await asyncio.wait_for(self.store.migrate(), max(timeout, 60.0))
        except Exception as exc:
            if first and not _is_outage(exc):
                raise  # a DuckDB file another process holds, a schema history that does not match
            self._down(exc, during="connect")
            return False
        was = self.down_since
        self.up = True
        self.down_since = None
        self.last_error = ""
        if was is not None:
            secs = time.monotonic() - was
            msg = (
                f"Database connection restored after {secs:.1f}s ({self._where()}); writing the journal from "
                f"segment {self._cursor[0]} offset {self._cursor[1]}"
            )
            _log.warning(msg)
            self._incident("database_restored", msg, secs)
        return True

    def _down(self, exc: BaseException, during: str) -> None:
        timeout = _is_timeout(exc)
        text = str(exc) or type(exc).__name__
        if timeout and not text.startswith(DATABASE_QUERY_TIMEOUT):
            text = f"{DATABASE_QUERY_TIMEOUT}: {during} on {self._where()} ({text})"
        elif not timeout and not text.startswith(DATABASE_CONNECTION_FAILED):
            text = f"{DATABASE_CONNECTION_FAILED}: could not connect to server {self._where()} ({text})"
        first = self.up or (self.down_since is None)
        self.up = False
        # from a watermark some seconds old: commits the server acknowledged just before may be lost
        self._cursor = min(self._cursor, self._safe_mark())
        if first:
            self.connection_failures += 1
            self.down_since = time.monotonic()
            self.last_error = text
            _log.error("%s: database %s error; orders and fills are kept in the journal, reconnecting", text, during)
            self._incident("database_timeout" if timeout else "database_unavailable", text, 0.0)
        elif text != self.last_error:
            self.last_error = text
            _log.error("%s: database %s error; still reconnecting", text, during)

    def _where(self) -> str:
        return str(getattr(self.settings, "where", "") or getattr(self.store, "backend", "database"))

    def _incident(self, kind: str, detail: str, value: float) -> None:
        cb = self.on_incident
        if cb is None:
            return
        try:
            cb(kind, detail, value)
        except Exception as exc:  # the trading loop may have closed: the log line stands
            _log.warning("database incident %s not recorded: %r", kind, exc)

    def _journal_damaged(self, err: JournalCorrupt) -> None:
        self.journal_damaged.append(str(err))

    # --- ingest: journal first, market data to the bounded queue -------------------------------------------
    def _ingest(self) -> None:
        inbox = self._inbox
        if not inbox:
            return
        n = len(inbox)
        framed: list[bytes] = []
        meta: list[tuple[str, str, list[Any]]] = []
        for _ in range(n):
            run_id, job = inbox.popleft()
            for table, rows in job:
                if not rows:
                    continue
                if table == MARKET:
                    if self.settings.market_data.ticks:
                        self._enqueue_market(MARKET, run_id, rows)
                    continue
                if table == SNAPSHOTS:
                    self._enqueue_market(SNAPSHOTS, run_id, rows)
                    continue
                if table == "risk":
                    rows = [r for r in rows if not r[_RISK_PASSED]]
                    if not rows:
                        continue
                elif table not in DURABLE and table != RUN_TABLE:
                    continue  # timers: the event log has them, the database does not
                for i in range(0, len(rows), _SLICE):
                    part = rows[i : i + _SLICE]
                    framed.append(encode(table, run_id, part))
                    meta.append((table, run_id, part))
        if framed:
            assert self.journal is not None
            try:
                spans = self.journal.append(framed)
            except JournalError as exc:
                # the disk refused: the rows still go to the database from memory (best effort),
                # and the log says the journal has a hole
                _log.error("%s: journal error; %d records kept in memory only", exc, len(framed))
                spans = []
            if spans:
                for (start, end), (table, run_id, part) in zip(spans, meta, strict=True):
                    self._mem.append(Record(start, end, table, run_id, part))
                    self._mem_rows += len(part)
                    self.journal_pending_rows += len(part)
            self._trim_mem()

    def _trim_mem(self) -> None:
        cap = max(self.queue_rows, self.batch_rows * 4)
        while self._mem_rows > cap and len(self._mem) > 1:
            rec = self._mem.popleft()  # the journal has it: read back when its turn comes
            self._mem_rows -= len(rec.rows)

    def _enqueue_market(self, table: str, run_id: str, rows: list[Any]) -> None:
        room = self.queue_rows - self._market_rows
        kept = rows
        if self._market_rows + len(rows) > self.queue_rows // 2:
            start = (-self._sample_n) % SAMPLE_EVERY
            kept = rows[start::SAMPLE_EVERY]
            self._sample_n += len(rows)
        if len(kept) > room:
            kept = kept[: max(room, 0)]
        dropped = len(rows) - len(kept)
        if kept:
            self._market.append((table, run_id, kept))
            self._market_rows += len(kept)
        if dropped:
            self.rows_dropped[table] = self.rows_dropped.get(table, 0) + dropped
            self._dropped_since_said[table] = self._dropped_since_said.get(table, 0) + dropped
            self._say_queue_full()

    def _say_queue_full(self) -> None:
        now = time.monotonic()
        if now - self._queue_full_said < QUEUE_FULL_EVERY_S:
            return
        self._queue_full_said = now
        what = ", ".join(f"{t} dropped {n} rows" for t, n in sorted(self._dropped_since_said.items()))
        self._dropped_since_said = {}
        state = "database down" if not self.up else "database too slow"
        msg = (
            f"{QUEUE_FULL}: database queue holds {self._market_rows} market rows (bound {self.queue_rows}, "
            f"{state}); {what} (sampled 1 in {SAMPLE_EVERY} past half, then dropped); orders and fills are "
            "journaled, none dropped"
        )
        _log.warning(msg)
        self._incident("queue_full", msg, float(sum(self.rows_dropped.values())))

    # --- writing ------------------------------------------------------------------------------------------
    async def _write_all(self) -> bool:
        """Durable rows first (in journal order), then balances and market data. False on failure."""
        try:
            while await self._write_durable_batch():
                if self._inbox:
                    self._ingest()
            await self._write_balances()
            while self._market:
                await self._write_market_batch()
                if self._inbox:
                    self._ingest()
        except Exception as exc:
            if _is_outage(exc):
                self._down(exc, during="write")
            else:
                _log.error("database write error: %r; retrying", exc)
            return False
        return True

    def _next_records(self) -> list[Record]:
        """The records from the cursor on, up to ``batch_rows`` rows: from memory when the cursor
        is at its head, else read back from the journal."""
        mem = self._mem
        while mem and mem[0].end <= self._cursor:
            self._mem_rows -= len(mem.popleft().rows)
        out: list[Record] = []
        rows = 0
        if mem and mem[0].start != self._cursor and self.journal is not None:
            out = list(self.journal.read(self._cursor, self.batch_rows, end=mem[0].start))
            if out:
                return out
            self._cursor = mem[0].start  # nothing between (a new segment began): contiguous
        elif not mem and self.journal is not None and self._cursor < self.journal.tail:
            out = list(self.journal.read(self._cursor, self.batch_rows))
            if out:
                return out
            self._cursor = self.journal.tail
            return []
        for rec in mem:
            if out and rows + len(rec.rows) > self.batch_rows:
                break
            out.append(rec)
            rows += len(rec.rows)
        return out

    async def _write_durable_batch(self) -> bool:
        records = self._next_records()
        if not records:
            return False
        t0 = time.perf_counter()
        try:
            i = 0
            while i < len(records):
                rec = records[i]
                j = i + 1
                rows = list(rec.rows)
                while j < len(records) and (records[j].table, records[j].run_id) == (rec.table, rec.run_id):
                    rows.extend(records[j].rows)
                    j += 1
                await self._write_rows(rec.table, rec.run_id, rows)
                i = j
        except Exception as exc:
            if _is_outage(exc):
                raise
            self._refused(records, exc)
        lat = time.perf_counter() - t0
        self.latency.add(lat)
        end = records[-1].end
        self._cursor = end
        journal = self.journal
        assert journal is not None
        n = sum(len(r.rows) for r in records if r.end > journal.watermark)  # a replay counts once
        self._marks.append((time.monotonic(), end))
        with contextlib.suppress(OSError):
            journal.set_watermark(end, self._safe_mark())
        self.journal_pending_rows -= n
        while self._mem and self._mem[0].end <= end:
            self._mem_rows -= len(self._mem.popleft().rows)
        self._line(records, lat)
        return True

    def _safe_mark(self) -> Position:
        """The newest watermark at least ``REPLAY_MARGIN_S`` old."""
        edge = time.monotonic() - REPLAY_MARGIN_S
        marks = self._marks
        while marks and marks[0][0] <= edge:
            self._safe = marks.popleft()[1]
        return self._safe

    def _refused(self, records: list[Record], exc: BaseException) -> None:
        """The database refused a batch for a reason other than the connection (a bug or bad row):
        retried ``POISON_TRIES`` times, then skipped (the journal keeps it for replay_fills)."""
        start = records[0].start
        pos, tries = self._poison
        tries = tries + 1 if pos == start else 1
        self._poison = (start, tries)
        if tries < POISON_TRIES:
            raise exc
        self._poison = ((0, 0), 0)
        _log.error(
            "database write error: batch at journal segment %d offset %d refused %d times (%r); skipped, its rows "
            "stay in the journal (scripts/replay_fills.sh)",
            start[0],
            start[1],
            tries,
            exc,
        )

    async def _write_rows(self, table: str, run_id: str, rows: list[Any]) -> None:
        store = self.store
        if table == RUN_TABLE:
            for row in rows:
                if row[0] == "begin":
                    await store.begin_run(*row[1:])
                else:
                    await store.end_run(*row[1:])
            return
        new = 0
        for i in range(0, len(rows), self.batch_rows):
            new += await store.write(table, rows[i : i + self.batch_rows], run_id)
        # rows the database took new: a replay of what it had adds nothing
        self.rows_written[table] = self.rows_written.get(table, 0) + new

    async def _write_balances(self) -> None:
        # a copy: the trading loop replaces entries meanwhile (the latest snapshot wins)
        for venue, (balances, ts_ns) in list(self._balances.items()):
            await self.store.put_balances(venue, balances, ts_ns)
            if self._balances.get(venue, (None, 0))[0] is balances:
                self._balances.pop(venue, None)

    async def _write_market_batch(self) -> None:
        """One COPY of the queue's head: consecutive hand-offs of one table and run gathered up to
        ``COPY_SLICE`` rows, or ``batch_rows`` while a backlog waits (``BACKLOG_BATCHES``). asyncpg
        encodes a COPY's rows without letting go of the interpreter, so a small slice bounds
        how long the trading loop can wait for it (about 2 us a row here); a backlog is cleared
        in big ones, where the per-statement cost dominates."""
        queue = self._market
        table, run_id, _ = queue[0]
        size = self.batch_rows if self._market_rows > BACKLOG_BATCHES * self.batch_rows else self.copy_slice
        take: list[Any] = []
        while queue and len(take) < size and queue[0][0] == table and queue[0][1] == run_id:
            rows = queue[0][2]
            room = size - len(take)
            if len(rows) <= room:
                take.extend(rows)
                queue.popleft()
            else:
                take.extend(rows[:room])
                queue[0] = (table, run_id, rows[room:])
        self._market_rows -= len(take)
        t0 = time.perf_counter()
        try:
            if table == MARKET:
                await self.store.copy_ticks(take, run_id or None)
            else:
                await self.store.copy_snapshots(take)
        except BaseException:
            queue.appendleft((table, run_id, take))  # written again after the reconnect
            self._market_rows += len(take)
            raise
        lat = time.perf_counter() - t0
        self.latency.add(lat)
        self.rows_written[table] = self.rows_written.get(table, 0) + len(take)
        self._line_rows[table] = self._line_rows.get(table, 0) + len(take)
        self._line_lat.append(lat)
        self._maybe_line()
        await asyncio.sleep(0)  # a loop turn (the interpreter let go) between two COPYs

    def _line(self, records: list[Record], lat: float) -> None:
        for r in records:
            self._line_rows[r.table] = self._line_rows.get(r.table, 0) + len(r.rows)
        self._line_lat.append(lat)
        self._maybe_line()

    def _maybe_line(self) -> None:
        """The ``database write`` line of ``system.log`` (guide §5.1), at most every second."""
        now = time.monotonic()
        if now - self._line_at < WRITE_LINE_EVERY_S:
            return
        self._line_at = now
        rows, self._line_rows = self._line_rows, {}
        lats, self._line_lat = self._line_lat, []
        what = ", ".join(f"{t} {n}" for t, n in sorted(rows.items()))
        mean_us = int(sum(lats) / len(lats) * 1e6) if lats else 0
        _log.info(
            "database write: %d rows (%s) in %d batches, queue %d rows, latency_us: %d",
            sum(rows.values()),
            what,
            len(lats),
            self.queue_depth(),
            mean_us,
        )

    # --- flush waiters -------------------------------------------------------------------------------------
    def _add_waiter(self, target: int, fut: concurrent.futures.Future[bool]) -> None:
        self._waiters.append((target, fut))
        self._wake_up()

    def _answer_waiters(self) -> None:
        """Every hand-off made before a waiter asked was taken once the inbox is empty: answer
        the waiters when, on top of that, nothing is left to write."""
        if not self._waiters or self._inbox or not self.up:
            return
        if self._mem_rows or self._market_rows or self._balances or self._unread():
            return
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_result(True)
        self._waiters = []


def samples_of(m: dict[str, Any], backend: str) -> list[dict[str, Any]]:
    """A writer's ``metrics`` as the daemon's telemetry samples (``Telemetry.extra``)."""

    def one(name: str, mtype: str, help_: str, value: float, **labels: str) -> dict[str, Any]:
        return {"name": name, "type": mtype, "help": help_, "labels": labels, "value": value}

    out = [
        one("hft_db_up", "gauge", "1 when the database answers", m["hft_db_up"], backend=backend),
        one("hft_db_queue_depth", "gauge", "Rows waiting for the database", m["hft_db_queue_depth"]),
        one(
            "hft_db_journal_pending_rows",
            "gauge",
            "Rows in the local journal not yet in the database",
            m["hft_db_journal_pending_rows"],
        ),
        one(
            "hft_db_connection_failures_total",
            "counter",
            "Database connections lost or refused",
            m["hft_db_connection_failures_total"],
        ),
    ]
    lat = m["hft_db_write_latency_seconds"]
    out.append(
        {
            "name": "hft_db_write_latency_seconds",
            "type": "histogram",
            "help": "Time to write one batch to the database, seconds",
            "labels": {},
            "buckets": lat["buckets"],
            "sum": lat["sum"],
            "count": lat["count"],
        }
    )
    for table in sorted(set(m["hft_db_rows_written_total"]) | set(DURABLE) | {MARKET}):
        n = m["hft_db_rows_written_total"].get(table, 0)
        out.append(one("hft_db_rows_written_total", "counter", "Rows written to the database", n, table=table))
    for table in (MARKET, SNAPSHOTS):
        n = m["hft_db_rows_dropped_total"].get(table, 0)
        out.append(one("hft_db_rows_dropped_total", "counter", "Rows dropped (queue full)", n, table=table))
    return out
