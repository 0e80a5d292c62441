"""The database writer in a child process: ``StoreService``'s work off the trading interpreter.

``ProcessStoreService`` has the interface of ``engine.store.service.StoreService`` (``StoreService``
gives one when ``database.writer`` is ``"process"``, the PostgreSQL default). Everything the
thread writer does (journal framing and fsync, COPY/INSERT, retention, reconnect and backoff,
queries) runs in a child process started with the ``spawn`` context at ``NICE`` (lower CPU
priority: on two cores the scheduler prefers the trading process). The child runs the very same
``StoreService`` on a thread of its own; this module is the hand-over and the watch on it.

In the trading process:

- ``tap``/``submit``/``put_*``/``begin_run``/``end_run`` append to a list (and, for rows the
  journal must take now, set an event once until the sender has woken);
- a **sender thread** takes the list, encodes it in one call (msgpack, as the journal does:
  about a fifth of what pickle takes for the same rows, and the interpreter lock is held
  throughout either) and writes it to a pipe (``send_bytes``: the lock is let go while the bytes
  go out). Each such batch is numbered
  and kept until the child says it is in its journal (``ack``): a child that dies before that
  gets the batches again from its successor. Flush, close and query requests go the same way,
  after the rows handed over before them;
- a **receiver thread** per child reads what the child says: acks, incidents (``on_incident`` is
  called on it, as it is on the service thread of the thread writer), log lines (re-emitted on
  the same ``hft.*`` logger, so ``system.log``/``errors.log`` have them), metrics (a snapshot
  when they change, at most every ``METRICS_EVERY_S``), query and flush answers.

A child that dies (killed, crashed) is seen as the end of its pipe: the trading process logs an
ERROR (``Database connection failed: the database writer process ... exited``), records a
``database_unavailable`` incident, counts ``hft_db_writer_restarts_total``, fails the queries the
child had, and starts a new child. The new child opens the journal and writes it to the database
from the watermark the dead one left (``Journal.replay_from``: the store's keys make a row
written twice stored once), then the batches it never acknowledged and the flush and close
requests it never answered. ``database_restored`` says how long the database path was out.

What a kill -9 loses: of the trading process, the rows handed over in the last moments and not
yet written to the pipe (the event log's own buffer goes with them); what is in the pipe, the
child reads, journals and writes before it stops (it sees the pipe's end). Of the child: nothing
durable (unacknowledged batches are sent again, journaled ones are replayed); market rows and
order-book snapshots that were in its queue, not yet copied, are lost (they are droppable by
design), as is a balance snapshot not yet written (the session sends a new one every few seconds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import itertools
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

from engine.logs import get_logger
from engine.messages import DATABASE_CONNECTION_FAILED
from engine.store.journal import _plain
from engine.store.service import (
    _LAZY,
    BACKOFF_INITIAL_S,
    BACKOFF_MAX_S,
    CLOSE_TIMEOUT_S,
    StoreFeed,
    StoreService,
    samples_of,
)

_log = get_logger("system")
NICE = 10  #: added to the child's niceness: the trading process wins a contended core
METRICS_EVERY_S = 0.1  #: the child's metrics snapshot, sent when it changed
ORPHAN_WAIT_S = CLOSE_TIMEOUT_S + 5.0  #: the longest a writer orphaned by a kill -9 may write on
READY_TIMEOUT_S = 120.0  #: a child that neither says it is ready nor exits by then is stopped
_PICKLE = pickle.HIGHEST_PROTOCOL
DATA = b"D"  #: first byte of a batch of rows (msgpack); requests and answers are pickled (``REQUEST``)
REQUEST = b"P"
_encode_into = msgspec.msgpack.Encoder(enc_hook=_plain).encode_into
#: (batch number, [(run_id, [(table, rows)])], {venue: (balances, ts_ns)}): rows back as tuples
_decode_data = msgspec.msgpack.Decoder(
    tuple[int, list[tuple[str, list[tuple[str, list[tuple]]]]], dict[str, tuple[dict[str, tuple[float, float]], int]]]
).decode
#: counters a new child starts again from zero: the trading process adds the dead ones' counts
_COUNTERS = ("hft_db_rows_written_total", "hft_db_rows_dropped_total")


def _unavailable(cause: str) -> Exception:
    from engine.store.errors import StoreUnavailable

    return StoreUnavailable("the database writer process", "-", cause)


def _portable(exc: BaseException) -> tuple[str, str, str]:
    """An exception as (module, class, text): store errors take several arguments and do not
    survive pickle's default ``args`` round trip."""
    return type(exc).__module__, type(exc).__qualname__, str(exc) or type(exc).__name__


def _rebuild(what: tuple[str, str, str]) -> BaseException:
    """The exception ``_portable`` described, of its own class where that can be made (callers
    tell ``StoreLocked`` and ``JournalLocked`` apart), else a ``StoreError`` with its text."""
    from engine.store.errors import StoreError

    module, qualname, text = what
    with contextlib.suppress(Exception):
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if isinstance(cls, type) and issubclass(cls, Exception):
            exc = cls.__new__(cls)
            Exception.__init__(exc, text)
            return exc
    return StoreError(text)


class ProcessStoreService(StoreFeed):
    """See the module docstring. Same constructor and methods as ``StoreService`` (without a
    ``store`` argument: the store is opened in the child)."""

    def __init__(
        self,
        settings: Any,
        on_incident: Callable[[str, str, float], None] | None = None,
        journal_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.on_incident = on_incident
        self.journal_dir = Path(journal_dir if journal_dir is not None else settings.journal_dir)
        self.run_id = ""
        self.flush_s = max(0.001, settings.flush_interval_ms / 1000.0)
        self.submitted = 0
        # the trading loop's side: appends, and an event set once per sender wake-up
        self._inbox: deque[tuple[str, list[tuple[str, list[Any]]]]] = deque()
        self._balances: dict[str, tuple[dict[str, tuple[float, float]], int]] = {}
        self._controls: deque[tuple[Any, ...]] = deque()
        self._kicked = False
        self._wake = threading.Event()
        # the sender's side; ``_send_lock`` keeps a restart from swapping the pipe under a send
        self._send_lock = threading.Lock()
        self._seq = 0
        self._unacked: deque[tuple[int, bytearray]] = deque()  # batches the child has not journaled yet
        self._pending: dict[int, tuple[tuple[Any, ...], concurrent.futures.Future[Any]]] = {}  # flush, close
        self._queries: dict[int, concurrent.futures.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._proc: Any = None
        self._conn: Any = None  # to the child
        self._sender: threading.Thread | None = None
        self._stopping = False  # close() asked: a child that exits is not restarted
        self._stopped = threading.Event()
        # what the child says, and what the dead ones had counted
        self._snap: dict[str, Any] = {}
        self._base: dict[str, Any] = {"failures": 0, "lat_counts": [], "lat_sum": 0.0, "lat_n": 0}
        self._base_counts: dict[str, dict[str, int]] = {k: {} for k in _COUNTERS}
        self._alive = False
        self._own_error = ""
        self.down_since: float | None = None
        self.restarts = 0
        self.pid = 0
        # the sender's cost on this interpreter, CPU seconds (the benchmark reports it)
        self.sender_batches = 0
        self.sent_batches = 0  # written to the pipe (or to a dead child's: sent again)
        self.sender_encode_s = 0.0
        self.sender_encode_max_s = 0.0
        self.sender_bytes = 0

    # --- start, stop ----------------------------------------------------------------------------
    async def open(self) -> ProcessStoreService:
        """Start the child and wait until it has opened the journal and tried the database (the
        errors ``StoreService.open`` raises raise here, of the same class)."""
        await asyncio.to_thread(self._start)
        return self

    def open_sync(self) -> ProcessStoreService:
        self._start()
        return self

    def _start(self) -> None:
        with self._send_lock:
            self._spawn()
        self._sender = threading.Thread(target=self._send_loop, name="store-sender", daemon=True)
        self._sender.start()

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Write what is pending (waiting at most ``timeout_s``), then stop the child. False when
        rows were left: they stay in the journal and are written at the next start."""
        return await asyncio.to_thread(self.close_sync, timeout_s)

    def close_sync(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        if self._sender is None or self._stopped.is_set():
            return True
        fut: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._control(("close", next(self._ids), timeout_s), fut)
        try:
            # the child's own close waits ``timeout_s``; a restart on the way may add its start
            ok = bool(fut.result(timeout_s + READY_TIMEOUT_S))
        except Exception as exc:  # a timeout, or the close failed in the child
            _log.error("database: the writer process did not close (%r; database error); stopping it", exc)
            ok = False
        self._stop()
        return ok

    def _stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        proc = self._proc
        if proc is not None:
            proc.join(5.0)
            if proc.exitcode is None:
                proc.kill()
                proc.join(5.0)
        if self._sender is not None and self._sender is not threading.current_thread():
            self._sender.join(5.0)
        with contextlib.suppress(OSError):
            self._conn.close()
        self._alive = False
        for fut in list(self._queries.values()):
            if not fut.done():
                fut.set_exception(_unavailable("the store service is closed"))
        self._queries.clear()

    # --- feeding (the trading loop's side: appends, and a wake-up) ---------------------------------------
    def tap(self, job: list[tuple[str, list[tuple]]]) -> None:
        """``Recorder.taps``: a hand-off of the event recorder (its lists, not copied). Market data
        alone waits for the sender's next timer; rows for the journal wake it now."""
        self._inbox.append((self.run_id, job))
        self.submitted += 1
        if self._kicked:
            return
        for table, _ in job:
            if table not in _LAZY:
                self._kick()
                return

    def _kick(self) -> None:
        if not self._kicked:
            self._kicked = True
            self._wake.set()

    def _control(self, msg: tuple[Any, ...], fut: concurrent.futures.Future[Any]) -> None:
        """A request that must reach the child after the rows handed over before it; flush and
        close are kept until answered (a new child gets them again)."""
        if msg[0] == "query":
            self._queries[msg[1]] = fut
        else:
            self._pending[msg[1]] = (msg, fut)
        self._controls.append(msg)
        self._kick()

    # --- reads and flush ------------------------------------------------------------------------------
    def _query_future(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._sender is None or self._stopped.is_set():
            fut.set_exception(_unavailable("the store service is not running"))
            return fut
        self._control(("query", next(self._ids), name, args, kwargs), fut)
        return fut

    async def query(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``getattr(store, name)(*args, **kwargs)`` in the child; the store's errors raise here
        (of their own class). A child that dies meanwhile fails it with ``StoreUnavailable``."""
        return await asyncio.wrap_future(self._query_future(name, args, kwargs))

    def query_sync(self, name: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        return self._query_future(name, args, kwargs).result(timeout_s)

    async def flush(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait until everything submitted so far is in the database; False after ``timeout_s``."""
        return await asyncio.to_thread(self.flush_sync, timeout_s)

    def flush_sync(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        if self._sender is None or self._stopped.is_set():
            return False
        fut: concurrent.futures.Future[bool] = concurrent.futures.Future()
        ident = next(self._ids)
        self._control(("flush", ident), fut)
        try:
            return bool(fut.result(timeout_s))
        except concurrent.futures.TimeoutError:
            return False
        finally:
            self._pending.pop(ident, None)

    # --- metrics --------------------------------------------------------------------------------------
    @property
    def up(self) -> bool:
        return self._alive and bool(self._snap.get("hft_db_up"))

    @property
    def last_error(self) -> str:
        return self._own_error or str(self._snap.get("last_error", ""))

    @property
    def journal_pending_rows(self) -> int:
        return int(self._snap.get("hft_db_journal_pending_rows", 0))

    @property
    def journal_damaged(self) -> list[str]:
        return list(self._snap.get("journal_damaged", ()))

    def queue_depth(self) -> int:
        return int(self._snap.get("hft_db_queue_depth", 0))

    def metrics(self) -> dict[str, Any]:
        snap = self._snap
        base = self._base
        lat = snap.get("hft_db_write_latency_seconds") or {"buckets": [], "sum": 0.0, "count": 0}
        buckets = [list(b) for b in lat["buckets"]]
        for i, n in enumerate(base["lat_counts"][: len(buckets)]):
            buckets[i][1] += n
        out: dict[str, Any] = {
            "hft_db_up": int(self.up),
            "hft_db_queue_depth": self.queue_depth(),
            "hft_db_write_latency_seconds": {
                "buckets": buckets,
                "sum": lat["sum"] + base["lat_sum"],
                "count": lat["count"] + base["lat_n"],
            },
            "hft_db_journal_pending_rows": max(self.journal_pending_rows, 0),
            "hft_db_connection_failures_total": int(snap.get("hft_db_connection_failures_total", 0)) + base["failures"],
            "hft_db_writer_restarts_total": self.restarts,
        }
        for key in _COUNTERS:
            total = dict(self._base_counts[key])
            for table, n in (snap.get(key) or {}).items():
                total[table] = total.get(table, 0) + n
            out[key] = total
        return out

    def samples(self) -> list[dict[str, Any]]:
        """``metrics`` as the daemon's telemetry samples (``Telemetry.extra``)."""
        m = self.metrics()
        out = samples_of(m, self.settings.backend)
        out.append(
            {
                "name": "hft_db_writer_restarts_total",
                "type": "counter",
                "help": "Database writer processes that died and were started again",
                "labels": {},
                "value": m["hft_db_writer_restarts_total"],
            }
        )
        return out

    def _fold(self, snap: dict[str, Any]) -> None:
        """A dead child's counters, kept: its successor counts from zero."""
        base = self._base
        base["failures"] += int(snap.get("hft_db_connection_failures_total", 0))
        lat = snap.get("hft_db_write_latency_seconds")
        if lat:
            counts = [n for _, n in lat["buckets"]]
            old = base["lat_counts"] or [0] * len(counts)
            base["lat_counts"] = [a + b for a, b in zip(old, counts, strict=False)]
            base["lat_sum"] += lat["sum"]
            base["lat_n"] += lat["count"]
        for key in _COUNTERS:
            into = self._base_counts[key]
            for table, n in (snap.get(key) or {}).items():
                into[table] = into.get(table, 0) + n

    # --- the sender thread --------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self._kicked = False  # before the lists are taken: a hand-off from now on wakes it again
            # controls first: a request handed over after some rows finds them in ``items``.
            # Taken by popleft and pop, not by swapping the containers: the trading thread may
            # hold the old one between reading the attribute and appending to it
            controls = [self._controls.popleft() for _ in range(len(self._controls))]
            out = self._inbox
            items = [out.popleft() for _ in range(len(out))]
            balances: dict[str, Any] = {}
            for venue in list(self._balances):
                value = self._balances.pop(venue, None)
                if value is not None:
                    balances[venue] = value
            if items or balances:
                self._seq += 1
                # CPU time of this thread: a wall clock would count the waits for the interpreter lock
                t0 = time.thread_time()
                payload = bytearray(DATA)
                _encode_into((self._seq, items, balances), payload, 1)
                spent = time.thread_time() - t0
                self.sender_batches += 1
                self.sender_encode_s += spent
                self.sender_encode_max_s = max(self.sender_encode_max_s, spent)
                self.sender_bytes += len(payload)
                self._unacked.append((self._seq, payload))
                self._send(payload)
                self.sent_batches += 1
            for msg in controls:
                self._send(REQUEST + pickle.dumps(msg, _PICKLE))

    def _send(self, payload: bytes | bytearray) -> None:
        # a child that is gone gets nothing: its successor gets the batch again (``_restart``)
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            self._conn.send_bytes(payload)

    # --- the child: start, watch, restart -----------------------------------------------------------------
    def _spawn(self) -> None:
        """Start a child and wait for its ``ready`` (under ``_send_lock``). Its errors raise."""
        level = logging.getLogger("hft").getEffectiveLevel()
        proc, down_w, up_r = _Child.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        msg: Any = None
        try:
            try:
                down_w.send((self.settings, self.journal_dir, NICE, level))
                while msg is None:
                    if up_r.poll(0.1):
                        got = up_r.recv()
                        if got[0] == "ready":
                            msg = got
                        else:
                            self._on_message(got)
                    elif not proc.is_alive() or time.monotonic() > deadline:
                        raise EOFError
            except (EOFError, OSError) as exc:
                proc.join(1.0)
                code = proc.exitcode
                raise _unavailable(f"the writer process exited (code {code}) before it was ready") from exc
        except BaseException:
            proc.kill()
            proc.join(5.0)
            down_w.close()
            up_r.close()
            raise
        _, err, snap = msg
        if err is not None:
            proc.join(10.0)
            down_w.close()
            up_r.close()
            raise _rebuild(err)
        old = self._conn
        self._proc, self._conn, self.pid = proc, down_w, proc.pid
        if old is not None:
            with contextlib.suppress(OSError):
                old.close()
        self._snap = snap
        self._alive = True
        threading.Thread(target=self._receive, args=(proc, up_r), name="store-receiver", daemon=True).start()

    def _receive(self, proc: Any, conn: Any) -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # a message that does not unpickle: a bug, said, not fatal
                _log.error("database: unreadable message from the writer process: %r (database error)", exc)
                continue
            try:
                self._on_message(msg)
            except Exception as exc:
                _log.error("database: writer process message %r failed: %r (database error)", msg[0], exc)
        with contextlib.suppress(OSError):
            conn.close()
        if not self._stopping and proc is self._proc:
            self._restart(proc)

    def _on_message(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "ack":
            unacked = self._unacked
            while unacked and unacked[0][0] <= msg[1]:
                unacked.popleft()
        elif kind == "metrics":
            self._snap = msg[1]
        elif kind == "log":
            logging.getLogger(msg[1]).log(msg[2], "%s", msg[3])
        elif kind == "incident":
            self._incident(msg[1], msg[2], msg[3])
        elif kind in ("flushed", "closed"):
            self._snap = msg[3]
            got = self._pending.pop(msg[1], None)
            if kind == "closed":
                self._stopping = True  # the child exits now: not a death
            if got is not None and not got[1].done():
                got[1].set_result(msg[2])
        elif kind == "reply":
            fut = self._queries.pop(msg[1], None)
            if fut is not None and not fut.done():
                if msg[2]:
                    fut.set_result(msg[3])
                else:
                    fut.set_exception(_rebuild(msg[3]))

    def _restart(self, proc: Any) -> None:
        """The child died: say so, then start another until one runs (backing off)."""
        proc.join(5.0)
        code = proc.exitcode
        how = f"killed by signal {-code}" if isinstance(code, int) and code < 0 else f"exit code {code}"
        text = (
            f"{DATABASE_CONNECTION_FAILED}: the database writer process (pid {proc.pid}) exited ({how}); "
            "starting a new one, orders and fills are kept in the journal"
        )
        self._alive = False
        self._fold(self._snap)
        self._snap = {**self._snap, "hft_db_up": 0}
        for key in _COUNTERS:
            self._snap[key] = {}
        self._snap["hft_db_connection_failures_total"] = 0
        self._snap["hft_db_write_latency_seconds"] = None
        self.restarts += 1
        self._own_error = text
        if self.down_since is None:
            self.down_since = time.monotonic()
        _log.error("%s (database error)", text)
        self._incident("database_unavailable", text, 0.0)
        backoff = BACKOFF_INITIAL_S
        while not self._stopping:
            with self._send_lock:
                for fut in list(self._queries.values()):  # asked of the dead child: not asked again
                    if not fut.done():
                        fut.set_exception(_unavailable(text))
                self._queries.clear()
                try:
                    self._spawn()
                    if self._unacked or self._pending:
                        _log.info(
                            "database: sending %d batches the dead writer had not journaled and %d requests "
                            "it had not answered to writer process %d",
                            len(self._unacked),
                            len(self._pending),
                            self.pid,
                        )
                    for _, payload in list(self._unacked):
                        self._conn.send_bytes(payload)
                    for msg, _ in sorted(self._pending.values(), key=lambda p: p[0][1]):
                        self._conn.send_bytes(REQUEST + pickle.dumps(msg, _PICKLE))
                except Exception as exc:
                    _log.error("database: the writer process did not start again: %r (database error)", exc)
                else:
                    break
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        self._own_error = ""
        secs = time.monotonic() - (self.down_since or time.monotonic())
        self.down_since = None
        if self._stopping or not self.up:
            return  # a database that is down too: the new child says when it is back
        msg = (
            f"Database connection restored after {secs:.1f}s ({self.settings.where}): a new writer process "
            f"(pid {self.pid}) writes the journal from its watermark"
        )
        _log.warning(msg)
        self._incident("database_restored", msg, secs)

    def _incident(self, kind: str, detail: str, value: float) -> None:
        cb = self.on_incident
        if cb is None:
            return
        try:
            cb(kind, detail, value)
        except Exception as exc:  # the trading loop may have closed: the log line stands
            _log.warning("database incident %s not recorded: %r", kind, exc)


class _Child:
    """The writer process: a fresh interpreter (``python -m engine.store.writer_process``) with
    two pipes. Not ``multiprocessing``'s spawn: that runs the parent's ``__main__`` again in the
    child (a script without a main guard would start writers without end), and a fresh
    interpreter imports only the store."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    @classmethod
    def start(cls) -> tuple[_Child, Connection, Connection]:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the checkout, for a tree not installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", "engine.store.writer_process", str(down_r), str(up_w)],
                pass_fds=(down_r, up_w),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (down_r, down_w, up_r, up_w):
                os.close(fd)
            raise
        os.close(down_r)
        os.close(up_w)  # only the child holds its end: its death is the end of this pipe
        return cls(popen), Connection(down_w, readable=False), Connection(up_r, writable=False)

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def join(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.kill()


# --- the child's side ----------------------------------------------------------------------------------------
class _Link:
    """The child's pipe to the trading process: one writer at a time (the main thread answers
    closes, the service thread acks, incidents and replies, the metrics thread snapshots)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, msg: tuple[Any, ...]) -> None:
        with self.lock, contextlib.suppress(OSError, ValueError):  # the trading process is gone
            self.conn.send(msg)

    def send_made(self, make: Callable[[], tuple[Any, ...] | None]) -> None:
        """A message made under the lock: two metrics snapshots go out in the order they were
        taken (a stale one must not follow a flush's answer)."""
        with self.lock, contextlib.suppress(OSError, ValueError):
            msg = make()
            if msg is not None:
                self.conn.send(msg)

    def incident(self, kind: str, detail: str, value: float) -> None:
        self.send(("incident", kind, detail, value))


class _LogToParent(logging.Handler):
    def __init__(self, link: _Link) -> None:
        super().__init__()
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format: the raw message rather than nothing
            text = str(record.msg)
        self.link.send(("log", record.name, record.levelno, text))


class _ChildService(StoreService):
    """The thread writer, fed from the pipe; says which batches its journal holds."""

    def __init__(self, settings: Any, link: _Link, journal_dir: Path) -> None:
        super().__init__(settings, on_incident=link.incident, journal_dir=journal_dir)
        self.link = link
        self.received = 0  # the newest batch wholly in the inbox
        self.acked = 0

    def take(self, seq: int, items: list[tuple[str, list[tuple[str, list[Any]]]]], balances: dict) -> None:
        lazy = True
        for item in items:
            self._inbox.append(item)
            if lazy:
                lazy = all(table in _LAZY for table, _ in item[1])
        self.submitted += len(items)
        for venue, value in balances.items():
            self._balances[venue] = value
            self.submitted += 1
        self.received = seq  # after the appends: the next ``_ingest`` takes all of it
        if not lazy:
            self._kick()

    def _ingest(self) -> None:
        seq = self.received
        super()._ingest()
        if seq > self.acked:
            self.acked = seq
            self.link.send(("ack", seq))

    def snapshot(self) -> dict[str, Any]:
        m = self.metrics()
        m["last_error"] = self.last_error
        m["journal_damaged"] = list(self.journal_damaged)
        return m


def child_main(inbox: Connection, outbox: Connection) -> None:
    """The writer process: ``StoreService`` fed from ``inbox``, answering on ``outbox``."""
    # Ctrl-C and a service stop signal the whole group: the trading process closes this writer
    # (or dies, which ends the pipe), and the writer writes what it has before it goes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        settings, journal_dir, nice, level = inbox.recv()
    except (EOFError, OSError):
        return
    with contextlib.suppress(OSError):
        os.nice(nice)
    link = _Link(outbox)
    hft = logging.getLogger("hft")
    hft.setLevel(level)
    hft.addHandler(_LogToParent(link))
    hft.propagate = False
    try:
        svc = _open(settings, link, journal_dir)
    except BaseException as exc:
        link.send(("ready", _portable(exc), {}))
        return
    link.send(("ready", None, svc.snapshot()))
    done = threading.Event()
    threading.Thread(target=_publish, args=(svc, link, done), name="store-metrics", daemon=True).start()
    try:
        _serve(svc, link, inbox)
    finally:
        done.set()


def _open(settings: Any, link: _Link, journal_dir: Path) -> _ChildService:
    """The service opened; a journal another writer process holds is waited for (at most
    ``ORPHAN_WAIT_S``): after a kill -9 of the trading process its writer is still writing what
    was in the pipe when the restarted process starts its own."""
    from engine.store.journal import LOCK, JournalLocked

    deadline = time.monotonic() + ORPHAN_WAIT_S
    while True:
        svc = _ChildService(settings, link, journal_dir)
        try:
            return svc.open_sync()  # type: ignore[return-value]
        except JournalLocked:
            if time.monotonic() >= deadline or not _writer_holds(journal_dir / LOCK):
                raise
        time.sleep(0.1)


def _writer_holds(lock: Path) -> bool:
    """Does the journal's lock file name a live writer process (``pid N: <command line>``)?"""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(lock.read_text().split(":", 1)[0].split()[1])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        return pid != os.getpid() and b"engine.store.writer_process" in cmd
    return False


def _serve(svc: _ChildService, link: _Link, inbox: Any) -> None:
    while True:
        try:
            raw = inbox.recv_bytes()
        except (EOFError, OSError):
            # the trading process is gone: what it sent is in, written before this child stops
            svc.close_sync(CLOSE_TIMEOUT_S)
            return
        body = memoryview(raw)[1:]
        if raw[:1] == DATA:
            try:
                seq, items, balances = _decode_data(body)
            except msgspec.ValidationError:  # a row of another shape: lists rather than tuples, all kept
                seq, items, balances = msgspec.msgpack.decode(body)
            svc.take(seq, items, balances)
            continue
        msg = pickle.loads(body)
        kind = msg[0]
        if kind == "flush":
            fut = svc._flush_future()
            ident = msg[1]
            fut.add_done_callback(lambda f, i=ident: link.send_made(lambda: ("flushed", i, _result(f), svc.snapshot())))
        elif kind == "query":
            _query(svc, link, msg[1], msg[2], msg[3], msg[4])
        elif kind == "close":
            try:
                ok = svc.close_sync(msg[2])
            except Exception as exc:
                _log.error("database: store service did not close cleanly: %r (database error)", exc)
                ok = False
            ident, closed = msg[1], ok
            link.send_made(lambda: ("closed", ident, closed, svc.snapshot()))  # noqa: B023 - called here, once
            return


def _result(fut: concurrent.futures.Future[Any]) -> bool:
    return fut.exception() is None and bool(fut.result())


def _query(svc: _ChildService, link: _Link, ident: int, name: str, args: tuple, kwargs: dict) -> None:
    def answer(fut: concurrent.futures.Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            link.send(("reply", ident, False, _portable(exc)))
            return
        try:
            link.send(("reply", ident, True, fut.result()))
        except Exception as err:  # an answer pickle refuses
            link.send(("reply", ident, False, _portable(err)))

    try:
        loop = svc._loop
        if loop is None or svc._done.done():
            raise _unavailable("the store service is not running")
        fut = asyncio.run_coroutine_threadsafe(getattr(svc.store, name)(*args, **kwargs), loop)
    except Exception as exc:
        link.send(("reply", ident, False, _portable(exc)))
        return
    fut.add_done_callback(answer)


def _publish(svc: _ChildService, link: _Link, done: threading.Event) -> None:
    last: list[dict[str, Any]] = [{}]

    def changed() -> tuple[Any, ...] | None:
        snap = svc.snapshot()
        if snap == last[0]:
            return None
        last[0] = snap
        return ("metrics", snap)

    while not done.wait(METRICS_EVERY_S):
        link.send_made(changed)


if __name__ == "__main__":
    child_main(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
