"""The event recorder: buffers rows per table and writes them to ``runs/<run_id>/``.

Rows are appended as tuples in schema order (cheap on the hot path). Two ways to write them:

**Backtests** (``Recorder(run_dir)``) write ``<table>.parquet`` directly, one row group per full
buffer (``flush_rows``), in the caller. The writer settings are fixed and nothing wall-clock goes
into the files, so the same events give byte-identical files, as fast as before.

**Paper and live sessions** (``Recorder(run_dir, background=True)``) must survive ``kill -9``:
a Parquet file is unreadable without the footer ``close`` writes, and a buffer of 65,536 rows is
hours of a session. So each table is an append-only Arrow IPC *stream* (``<table>.arrows``): a
schema message, then one record batch per hand-off. A stream needs no footer; cut anywhere, it
reads up to its last complete batch (``read_stream_batches``), which is what ``kill -9`` (or a
power loss, for what was not yet synced) leaves. At a graceful ``close`` each stream is converted,
a row group at a time, into the usual ``<table>.parquet`` and removed, so a closed run looks as it
always did. A run that crashed is converted by ``recover_run`` (the next session of the same
config does it, ``Session.start``); until then the reports read its streams as they are
(``reports.eventlog``), also while its session is still running.

When rows reach the disk (live):

- the session calls ``start_flushing(loop)``: every ``flush_interval_s`` (1 s) a loop callback
  hands every non-empty buffer to the writer thread, and a ``fills`` row makes the hand-off happen
  right after the current callback (``call_soon``). The engine's thread only appends tuples and
  swaps lists; it never converts, writes or waits. A buffer that reaches ``flush_rows`` between
  two ticks is handed off at once, as before. Each hand-off's job also goes, as it is, to the
  recorder's ``taps`` (the database's ``engine.store.service.StoreService.tap``: a list append).
  So buffers hold at most about a second of rows, and memory stays flat however long the session;
- the writer thread converts the rows (in slices of ``_SLICE``, so it never holds the interpreter
  long), appends one batch per table to its stream (unbuffered: the bytes are the kernel's when
  the write returns, which is all ``kill -9`` needs) and ``fsync``s each written stream at most
  every ``fsync_interval_s`` (1 s; a power loss can lose that much more).

Failures. A write that fails is logged at ERROR (``errors.log``) when it happens and raised
(``RecorderError``, naming the table and the file) by ``flush`` and ``close``; its rows are kept.
In background mode the torn batch is cut off (best effort), the stream is left as it is and the
kept batches go, before any newer rows of the table, into a new segment ``<table>-<n>.arrows``
with the table's next write (and once more at ``close``): a table's rows stay in ``seq`` order
across its segments, which readers take in order. Rows that cannot even be converted (a bug, not
the disk) are tried once more at ``close``, after the rows written since (read such a table
ordered by ``seq``). A file removed under an open stream counts as a failed write.

Liveness. A session holds ``RunLock`` (an exclusive ``flock`` on ``<run_dir>/session.lock``) for
its whole life; the kernel lets go when the process dies, however it dies. A manifest that says
``"status": "running"`` whose lock nobody holds is a crashed run (``run_state``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import HftError
from engine.eventlog_schema import MANIFEST, TABLES
from engine.logs import get_logger
from engine.messages import QUEUE_FULL

NAN = math.nan
_SLICE = 4096  # rows the background writer converts per call into pyarrow
FLUSH_INTERVAL_S = 1.0  # live: longest a row waits in memory before the writer thread has it
FSYNC_INTERVAL_S = 1.0  # live: longest a written stream goes without fsync
ROW_GROUP_ROWS = 65_536  # rows per row group when a stream becomes Parquet
#: rows a table buffers before they are written (a backtest: one row group each). Bounded low:
#: with ten tables this is what the event log holds in memory, whatever the data's length
FLUSH_ROWS = 16_384
STREAM_SUFFIX = ".arrows"
LOCK_FILE = "session.lock"
#: jobs waiting for the writer thread at which it is behind (``Queue full``): hand-overs come
#: every ``FLUSH_INTERVAL_S``, so about half a minute of events
QUEUE_WARN_JOBS = 30
URGENT = ("fills",)  # tables whose rows are handed off right after the callback that added them
_log = get_logger("system")
_STREAM = re.compile(r"^(?P<table>[a-z]+)(?:-(?P<n>\d+))?\.arrows$")


class RecorderError(HftError):
    """The event log could not be written."""


def _columns(table: str, rows: list[tuple]) -> list[pa.Array]:
    """``rows`` (tuples in schema order) as one Arrow array per column of ``table``."""
    cols = list(zip(*rows, strict=True))
    return [pa.array(col, type=field.type) for col, field in zip(cols, TABLES[table], strict=True)]


def _batches(table: str, rows: list[tuple]) -> list[pa.RecordBatch]:
    schema = TABLES[table]
    return [
        pa.RecordBatch.from_arrays(_columns(table, rows[i : i + _SLICE]), schema=schema)
        for i in range(0, len(rows), _SLICE)
    ]


def utc_stamp() -> str:
    """Now, UTC, to the millisecond: ``2024-08-08T23:54:00.123Z``."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any], durable: bool = True) -> None:
    """``data`` as JSON at ``path``, replaced in one step: a crash leaves the old file or the new
    (``durable``: a power loss too)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


# --- streams: what a live session writes, and how it is read back -------------------------------
def stream_files(run_dir: str | Path) -> dict[str, list[Path]]:
    """``<table>.arrows`` and its later segments ``<table>-<n>.arrows`` of each table, in order."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for p in Path(run_dir).iterdir():
        m = _STREAM.match(p.name)
        if m and m["table"] in TABLES and p.is_file():
            found.setdefault(m["table"], []).append((int(m["n"]) if m["n"] else 0, p))
    return {t: [p for _, p in sorted(parts)] for t, parts in found.items()}


def read_stream_batches(paths: Iterable[Path], stats: dict[str, int] | None = None) -> Iterator[pa.RecordBatch]:
    """Every complete record batch of the stream segments ``paths``, in order.

    A segment cut short (``kill -9`` in the middle of a write, a power loss) ends at its last
    complete batch; an empty or torn header is an empty segment. ``stats`` (if given) counts
    ``batches``, ``rows`` and ``torn`` (segments that ended in an incomplete message)."""
    for path in paths:
        try:
            src = pa.OSFile(str(path), "rb")
        except OSError:
            continue
        try:
            try:
                reader = pa.ipc.open_stream(src)
            except (pa.ArrowInvalid, OSError):  # nothing, or not even a whole schema message
                if stats is not None and os.path.getsize(path) > 0:
                    stats["torn"] = stats.get("torn", 0) + 1
                continue
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except (pa.ArrowInvalid, OSError):  # a torn last batch: everything before it stands
                    if stats is not None:
                        stats["torn"] = stats.get("torn", 0) + 1
                    break
                if stats is not None:
                    stats["batches"] = stats.get("batches", 0) + 1
                    stats["rows"] = stats.get("rows", 0) + batch.num_rows
                yield batch
        finally:
            src.close()


def streams_to_parquet(
    paths: list[Path], table: str, out: Path, stats: dict[str, int] | None = None, durable: bool = True
) -> int:
    """Write what the stream segments ``paths`` of ``table`` hold to ``out`` (Parquet, zstd), a row
    group of ``ROW_GROUP_ROWS`` at a time: memory stays bounded however long the stream. The file
    appears complete or not at all (written aside, synced unless not ``durable``, renamed).
    Returns the rows written."""
    schema = TABLES[table]
    tmp = out.with_name(f".{out.name}.tmp")
    rows = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=True) as writer:
        pending: list[pa.RecordBatch] = []
        n = 0
        for batch in read_stream_batches(paths, stats):
            if batch.schema != schema:
                batch = pa.Table.from_batches([batch]).select(schema.names).cast(schema).to_batches()[0]
            pending.append(batch)
            n += batch.num_rows
            if n >= ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(pending, schema=schema))
                rows += n
                pending, n = [], 0
        if pending or not rows:
            writer.write_table(pa.Table.from_batches(pending, schema=schema))
            rows += n
    if durable:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, out)
    if durable:
        _fsync_dir(out.parent)
    return rows


def convert_streams(run_dir: str | Path, table: str, stats: dict[str, int] | None = None) -> int | None:
    """``<table>.parquet`` from the table's stream segments, which are then removed. ``None`` when the
    table has no stream. A Parquet file already there wins (a conversion whose clean-up was cut
    short): the segments are only removed."""
    run = Path(run_dir)
    segments = stream_files(run).get(table)
    if not segments:
        return None
    out = run / f"{table}.parquet"
    rows = 0
    if not out.exists():
        rows = streams_to_parquet(segments, table, out, stats)
    for p in segments:
        p.unlink(missing_ok=True)
    return rows


class _Stream:
    """One table's open stream segment (the writer thread's)."""

    __slots__ = ("dirty", "file", "path", "writer")

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.file = pa.OSFile(str(path), "wb")  # unbuffered: each write is the kernel's when it returns
        try:
            self.writer = pa.ipc.new_stream(self.file, schema)
        except BaseException:
            self.file.close()
            raise
        self.dirty = False

    def check_linked(self) -> None:
        if os.fstat(self.file.fileno()).st_nlink == 0:
            raise OSError(f"{self.path} was removed while the session wrote it")

    def sync(self) -> None:
        os.fsync(self.file.fileno())
        self.dirty = False

    def close(self) -> None:
        try:
            self.writer.close()  # the end-of-stream marker
        finally:
            self.file.close()

    def abandon(self, size: int | None) -> None:
        """After a failed write: cut a torn batch off (best effort) and let the file go."""
        try:
            if size is not None:
                os.ftruncate(self.file.fileno(), size)
        except OSError:
            pass  # readers stop at the torn batch; nothing is appended to this segment again
        with contextlib.suppress(Exception):
            self.file.close()


# --- liveness: a session's lock, a run's state -----------------------------------------------------
class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/session.lock``, held by a paper or live session for its
    whole life (and by ``recover_run`` while it recovers). The kernel releases it when the holder
    dies, ``kill -9`` included, so a free lock under a manifest that says ``running`` means the
    session is gone. The file holds the holder's pid, for people."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> bool:
        """True if taken; False if another process (or another ``RunLock``) holds it."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        return True

    def release(self, remove: bool = True) -> None:
        """Let go; ``remove`` deletes the file first (a closed run needs none)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(fd)  # closing the last descriptor releases the flock

    @staticmethod
    def held(run_dir: str | Path) -> bool:
        """Does a live process hold the run's lock? (False when there is no lock file.)"""
        import fcntl

        try:
            fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: assume alive, never recover what may still be written
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also releases a lock this probe took
        return False


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's manifest, ``{}`` if there is none or it cannot be read."""
    try:
        data = json.loads((Path(run_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_state(run_dir: str | Path, manifest: dict[str, Any] | None = None) -> str:
    """``running`` (its session is alive), ``crashed`` (its manifest says running but no process
    holds its lock; or recovered since: the manifest says so), else the manifest's status,
    ``closed`` when it names none (backtests, runs made before sessions wrote a status)."""
    m = read_manifest(run_dir) if manifest is None else manifest
    status = str(m.get("status") or "closed")
    if status == "running" and not RunLock.held(run_dir):
        return "crashed"
    return status


def recover_run(run_dir: str | Path, continued_by: str | None = None) -> dict[str, Any]:
    """Turn a crashed session's streams into ``<table>.parquet`` (and empty tables for what never
    happened), mark its manifest ``"status": "crashed"`` with ``recovered_at`` and the rows
    recovered per table, and, if ``continued_by`` is given and no run continues it yet, name that
    run (``continued_by``). Safe to repeat. Returns the manifest.

    Raises ``RecorderError`` while the run's session is alive (it holds ``session.lock``)."""
    run = Path(run_dir)
    lock = RunLock(run)
    if not lock.acquire():
        raise RecorderError(f"Cannot recover {run}: its session is still running (it holds {lock.path})")
    try:
        manifest = read_manifest(run)
        status = manifest.get("status")
        recovered: dict[str, int] = {}
        stats: dict[str, int] = {}
        for table in TABLES:
            n = convert_streams(run, table, stats)
            if n is not None:
                recovered[table] = n
        torn = stats.get("torn", 0)
        if recovered or status == "running":
            for table, schema in TABLES.items():
                path = run / f"{table}.parquet"
                if not path.exists():
                    pq.write_table(schema.empty_table(), path, compression="zstd")
        changed = False
        if status == "running" or (status is None and recovered):
            manifest["status"] = "crashed"
            manifest["recovered_at"] = utc_stamp()
            manifest["recovered_rows"] = recovered
            manifest["recovered_torn_segments"] = torn
            changed = True
            _log.warning(f"recovered crashed run {run}: {sum(recovered.values())} rows ({recovered})")
        if continued_by and not manifest.get("continued_by"):
            manifest["continued_by"] = continued_by
            changed = True
        if changed:
            write_json_atomic(run / MANIFEST, manifest)
        return manifest
    finally:
        lock.release()


class Recorder:
    """Append-only writer of the event log. ``run_dir=None`` keeps nothing (benchmarks of the core)."""

    def __init__(
        self,
        run_dir: str | Path | None,
        flush_rows: int = FLUSH_ROWS,
        background: bool = False,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        fsync_interval_s: float = FSYNC_INTERVAL_S,
        queue_warn_jobs: int = QUEUE_WARN_JOBS,
    ) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.fsync_interval_s = fsync_interval_s
        self.seq = 0
        self.counts = dict.fromkeys(TABLES, 0)
        self._buf: dict[str, list[tuple]] = {t: [] for t in TABLES}
        self._limit = dict.fromkeys(TABLES, flush_rows)  # rows that make ``add`` hand a buffer on
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.enabled = self.run_dir is not None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._pool: ThreadPoolExecutor | None = None
        if background and self.run_dir is not None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="recorder")
        self.background = self._pool is not None
        self._pending: list[Future[None]] = []
        self.queue_warn_jobs = queue_warn_jobs
        self._behind = False  # ``Queue full`` said, the writer not caught up yet
        self._failed: list[tuple[str, list[tuple]]] = []  # (table, rows) that could not be converted
        self._error: RecorderError | None = None
        self._lock = threading.Lock()  # the writers, streams and kept rows, shared with the writer thread
        # background (stream) mode, the writer thread's state
        self._streams: dict[str, _Stream] = {}
        self._segment: dict[str, int] = {}  # next segment number per table
        self._retry: dict[str, list[pa.RecordBatch]] = {}  # converted rows a failed write kept, per table
        self._last_sync = time.monotonic()
        self._unsynced = False
        # periodic hand-off on the session's loop
        self._loop: Any = None
        self._timer: Any = None
        self._soon = False
        self.handoffs = 0
        #: callables given every hand-off's job, ``[(table, rows), ...]``, the same lists the writer
        #: gets (not copied: neither side changes them), on the thread that hands off: the
        #: database's store service (``engine.store.service.StoreService.tap``) takes them here
        self.taps: list[Callable[[list[tuple[str, list[tuple]]]], None]] = []

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add(self, table: str, row: tuple) -> None:
        """``row`` without its leading ``seq``: the recorder numbers every row of the run."""
        if not self.enabled:
            return
        self.seq += 1
        buf = self._buf[table]
        buf.append((self.seq, *row))
        if len(buf) >= self.flush_rows:
            self._flush(table)

    def add_at(self, seq: int, table: str, row: tuple) -> None:
        """``row`` numbered ``seq``, taken earlier with ``next_seq``: a row whose event came first
        but that is built later (the order path builds its rows once the order is on the wire).
        The caller guarantees no other row of ``table`` was added in between, so each table's
        rows stay in ``seq`` order and the log is the same byte for byte."""
        if not self.enabled:
            return
        buf = self._buf[table]
        buf.append((seq, *row))
        if len(buf) >= self.flush_rows:
            self._flush(table)

    # ``start_flushing`` puts these two in place of ``add`` and ``add_at`` (instance attributes): a
    # fill is handed off at once, and a backtest's ``add`` stays what it was, to the nanosecond
    def _add_live(self, table: str, row: tuple) -> None:
        if not self.enabled:
            return
        self.seq += 1
        buf = self._buf[table]
        buf.append((self.seq, *row))
        if len(buf) >= self._limit[table]:
            self._full(table)

    def _add_at_live(self, seq: int, table: str, row: tuple) -> None:
        if not self.enabled:
            return
        buf = self._buf[table]
        buf.append((seq, *row))
        if len(buf) >= self._limit[table]:
            self._full(table)

    def _full(self, table: str) -> None:
        if self._loop is not None and len(self._buf[table]) < self.flush_rows:
            # an urgent row (a fill): everything goes to the writer right after this callback
            if not self._soon:
                self._soon = True
                self._loop.call_soon(self._handoff_soon)
            return
        self._flush(table)

    # --- the periodic hand-off (paper, live) ----------------------------------------------------
    def start_flushing(self, loop: Any) -> None:
        """Hand the buffers to the writer thread every ``flush_interval_s`` on ``loop`` (an asyncio
        loop: ``call_later``/``call_soon``), and right after any callback that adds a fill."""
        if self._pool is None or self._loop is not None:
            return
        self._loop = loop
        for table in URGENT:
            self._limit[table] = 1
        self.add = self._add_live  # type: ignore[method-assign]
        self.add_at = self._add_at_live  # type: ignore[method-assign]
        self._timer = loop.call_later(self.flush_interval_s, self._tick)

    def stop_flushing(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._loop = None
        self._soon = False
        self._limit = dict.fromkeys(TABLES, self.flush_rows)
        self.__dict__.pop("add", None)
        self.__dict__.pop("add_at", None)

    def _tick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self.handoff()
        self._timer = loop.call_later(self.flush_interval_s, self._tick)

    def _handoff_soon(self) -> None:
        if not self._soon:
            return
        self._soon = False
        self.handoff()

    @property
    def buffered(self) -> int:
        """Rows in memory not yet handed to the writer."""
        return sum(len(b) for b in self._buf.values())

    def handoff(self) -> None:
        """Background mode: give every non-empty buffer to the writer thread in one job, without
        waiting. Also asks for a sync when written streams wait for one and nothing else comes."""
        pool = self._pool
        if pool is None:
            return
        job: list[tuple[str, list[tuple]]] = []
        for table, buf in self._buf.items():
            if buf:
                self._buf[table] = []
                self.counts[table] += len(buf)
                job.append((table, buf))
        if not job and not self._unsynced:
            return
        self.handoffs += 1
        self._pending = [f for f in self._pending if not f.done()]
        if job:
            for tap in self.taps:
                tap(job)
        self._submit(job)

    def _flush(self, table: str) -> None:
        buf = self._buf[table]
        if not buf or self.run_dir is None:
            return
        if self._pool is None:
            if self.taps:
                job = [(table, list(buf))]  # ``buf`` is cleared and reused below
                for tap in self.taps:
                    tap(job)
            self._write(table, buf)
            self.counts[table] += len(buf)
            buf.clear()
            return
        self._buf[table] = []
        self.counts[table] += len(buf)
        job = [(table, buf)]
        for tap in self.taps:
            tap(job)
        self._submit(job)

    def _submit(self, job: list[tuple[str, list[tuple]]]) -> None:
        """Hand ``job`` to the writer thread. The hand-over never refuses (the event log loses
        nothing and the loop never waits on the disk), so its bound is a warning: at
        ``queue_warn_jobs`` jobs waiting the writer cannot keep up, said once in the guide's words
        (``Queue full``, §12), and once more when it has caught up."""
        assert self._pool is not None
        pending = [f for f in self._pending if not f.done()]
        waiting = len(pending)
        if waiting >= self.queue_warn_jobs and not self._behind:
            self._behind = True
            _log.warning(
                "%s: event recorder hand-over holds %d jobs (bound %d): the writer thread cannot keep up "
                "with the events (slow disk?); rows wait in memory, none are dropped",
                QUEUE_FULL,
                waiting,
                self.queue_warn_jobs,
            )
        elif self._behind and waiting == 0:
            self._behind = False
            _log.info("event recorder writer caught up")
        pending.append(self._pool.submit(self._write_job, job))
        self._pending = pending

    # --- direct Parquet (backtests) -----------------------------------------------------------------
    def _write(self, table: str, rows: list[tuple]) -> None:
        self._write_table(table, pa.Table.from_arrays(_columns(table, rows), schema=TABLES[table]))

    def _write_table(self, table: str, data: pa.Table) -> None:
        assert self.run_dir is not None
        writer = self._writers.get(table)
        if writer is None:
            writer = pq.ParquetWriter(
                self.run_dir / f"{table}.parquet", data.schema, compression="zstd", write_statistics=True
            )
            self._writers[table] = writer
        writer.write_table(data)

    # --- streams (paper, live), on the writer thread -------------------------------------------------
    def _write_job(self, job: list[tuple[str, list[tuple]]]) -> None:
        try:
            for table, rows in job:
                self._append(table, rows)
            if self._unsynced and time.monotonic() - self._last_sync >= self.fsync_interval_s:
                self._sync()
        except Exception as exc:  # never an exception out of the thread: said at once, raised by flush/close
            err = RecorderError(f"Event log writer failed: {exc}")
            _log.error(str(err))
            with self._lock:
                if self._error is None:
                    self._error = err

    def _append(self, table: str, rows: list[tuple]) -> None:
        """``rows`` converted a slice at a time and appended to the table's stream."""
        try:
            batches = _batches(table, rows)
        except Exception as exc:
            err = RecorderError(f"Event log write failed for table {table} (rows not convertible): {exc}")
            _log.error(f"{err}; its {len(rows)} rows are kept and tried again at close")
            with self._lock:
                self._failed.append((table, rows))
                if self._error is None:
                    self._error = err
            return
        with self._lock:
            kept = self._retry.pop(table, None)
            self._write_batches(table, [*kept, *batches] if kept else batches)

    def _next_path(self, table: str) -> Path:
        assert self.run_dir is not None
        n = self._segment.get(table, 0)
        return self.run_dir / (f"{table}{STREAM_SUFFIX}" if n == 0 else f"{table}-{n}{STREAM_SUFFIX}")

    def _open_stream(self, table: str) -> _Stream:
        """A new segment for ``table``: ``<table>.arrows``, after a failure ``<table>-<n>.arrows``."""
        assert self.run_dir is not None
        n = self._segment.get(table, 0)
        while True:
            path = self.run_dir / (f"{table}{STREAM_SUFFIX}" if n == 0 else f"{table}-{n}{STREAM_SUFFIX}")
            n += 1
            if not path.exists():
                break
        stream = _Stream(path, TABLES[table])
        self._segment[table] = n
        self._streams[table] = stream
        _fsync_dir(self.run_dir)  # the new file's name survives a power loss too
        return stream

    def _write_batches(self, table: str, batches: list[pa.RecordBatch], final: bool = False) -> bool:
        """Append ``batches`` to ``table``'s stream (a new segment if it has none open). On failure the
        batches not written are kept for the table's next write; returns whether all went."""
        done = 0
        size: int | None = None
        stream = self._streams.get(table)
        try:
            if stream is None:
                stream = self._open_stream(table)
            for batch in batches:
                size = stream.file.tell()
                stream.writer.write_batch(batch)
                done += 1
            size = None
            stream.check_linked()
            stream.dirty = True
            self._unsynced = True
            return True
        except Exception as exc:
            if stream is not None:
                self._streams.pop(table, None)
                stream.abandon(size)
                if size is None:  # the file went away under a complete write: every batch is lost
                    done = 0
            left = batches[done:]
            self._retry[table] = left
            rows = sum(b.num_rows for b in left)
            where = stream.path if stream is not None else self._next_path(table)
            err = RecorderError(f"Event log write failed for table {table} ({where}): {exc}")
            if final:
                _log.error(f"{err}; {rows} rows are lost")
            else:
                _log.error(f"{err}; its {rows} rows are kept and written again with the table's next write")
            if self._error is None:
                self._error = err
            return False

    def _sync(self) -> None:
        self._unsynced = False
        self._last_sync = time.monotonic()
        with self._lock:
            streams = [s for s in self._streams.values() if s.dirty]
        for s in streams:
            try:
                s.sync()
            except Exception as exc:
                err = RecorderError(f"Event log sync failed ({s.path}): {exc}")
                _log.error(str(err))
                with self._lock:
                    if self._error is None:
                        self._error = err

    # --- flush and close ------------------------------------------------------------------------------
    def _raise_failure(self) -> None:
        with self._lock:
            err, self._error = self._error, None
        if err is not None:
            raise err

    def _drain(self) -> None:
        """Wait for the writer thread's queue (background mode)."""
        for f in self._pending:
            f.result()
        self._pending = []

    def flush(self) -> None:
        """Write everything buffered and wait for it (raises a write failure since the last call)."""
        if self._pool is not None:
            self.handoff()
            self._drain()
            self._raise_failure()
            return
        for table in self._buf:
            self._flush(table)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """``manifest.json`` now, replaced in one step (a session writes it at start and at close)."""
        if self.run_dir is None:
            return
        try:
            write_json_atomic(self.run_dir / MANIFEST, manifest, durable=self.background)
        except OSError as exc:
            raise RecorderError(f"Event log manifest not written ({self.run_dir / MANIFEST}): {exc}") from None

    def close(self, manifest: dict[str, Any] | None = None) -> None:
        """Flush everything, write empty tables for what never happened, then the manifest.

        In background mode, rows of a write that failed are tried once more here, then each stream
        becomes ``<table>.parquet``. Rows that still cannot be written, or a stream that cannot be
        converted (it stays, for ``recover_run``), make ``RecorderError`` (after the other tables
        are closed)."""
        if self.run_dir is None:
            return
        failure: RecorderError | None = None
        streamed = self._pool is not None
        if self._pool is not None:
            self.stop_flushing()
            self.handoff()
            self._drain()
            self._pool.shutdown(wait=True)
            self._pool = None
            self._error = None
            failure = self._close_streams()
        else:
            try:
                self.flush()
            except Exception as exc:
                failure = failure or RecorderError(f"Event log write failed: {exc}")
        for table, schema in TABLES.items():
            path = self.run_dir / f"{table}.parquet"
            try:
                writer = self._writers.pop(table, None)
                if writer is not None:
                    writer.close()
                    continue
                if streamed and convert_streams(self.run_dir, table) is not None:
                    continue
                if not path.exists():
                    pq.write_table(schema.empty_table(), path, compression="zstd")
            except Exception as exc:
                failure = failure or RecorderError(f"Event log write failed for table {table} ({path}): {exc}")
        if manifest is not None:
            try:
                self.write_manifest(manifest)
            except RecorderError as exc:
                failure = failure or exc
        self.enabled = False
        if failure is not None:
            raise failure

    def discard(self) -> None:
        """Stop without writing anything more (a session that found its run directory taken)."""
        self.stop_flushing()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for stream in self._streams.values():
            stream.abandon(None)
        self._streams = {}
        self.enabled = False

    def _close_streams(self) -> RecorderError | None:
        """The last try for kept rows, then every stream closed (end-of-stream marker, synced)."""
        failure: RecorderError | None = None
        for table, rows in self._failed:
            try:
                self._retry.setdefault(table, []).extend(_batches(table, rows))
            except Exception as exc:
                failure = failure or RecorderError(f"Event log write failed for table {table}: {exc}")
                self.counts[table] -= len(rows)
        self._failed = []
        for table in list(self._retry):
            batches = self._retry.pop(table)
            if batches and not self._write_batches(table, batches, final=True):
                lost = self._retry.pop(table, [])
                self.counts[table] -= sum(b.num_rows for b in lost)
                failure = failure or self._error
        self._error = None
        for table, stream in list(self._streams.items()):
            try:
                stream.close()
            except Exception as exc:
                failure = failure or RecorderError(f"Event log write failed for table {table} ({stream.path}): {exc}")
        self._streams = {}
        return failure


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.recorder RUN_DIR...``: recover crashed paper/live runs (streams to Parquet)."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m engine.recorder RUN_DIR...", file=sys.stderr)
        return 2
    code = 0
    for arg in args:
        try:
            state = run_state(arg)
            m = recover_run(arg)
        except (RecorderError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
            continue
        rows = m.get("recovered_rows")
        print(f"{arg}: {state}" + (f", recovered {sum(rows.values())} rows {rows}" if rows else ""))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
