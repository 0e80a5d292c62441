"""The local journal: every order event and fill is on disk before the database is asked for it.

A journal directory (``database.journal_dir``) holds numbered segment files
``<n:012d>.jnl`` and a ``watermark.json``. A segment is a sequence of records::

    u32 length (little-endian) | u32 CRC32 of the payload | payload (``length`` bytes)

The payload is msgpack (``msgspec``): ``[table, run_id, rows]``, one batch of one table's rows as
the event log has them (tuples in ``engine.eventlog_schema.TABLES`` order; ``_run`` records carry
``begin_run``/``end_run`` arguments). A batch of records goes out in one ``write`` and one
``fsync`` (``append``): when it returns, a power loss keeps them.

Positions are ``(segment, offset)`` pairs, ordered. The **watermark** is the position up to which
the database holds every record; ``watermark.json`` is replaced in one step (write aside, rename)
after each committed database batch. Beside it the file keeps ``replay_from``, a position the
writer chose a little behind (``engine.store.service``: the watermark of some seconds earlier):
a database that acknowledged a commit and then lost it in a crash (``synchronous_commit = off``,
a lying disk) is caught up too, because a start replays from there. The file is not fsynced: one
that a power loss sets back only makes the next start replay records the database already has,
which the store's keys make harmless (every write is idempotent).

On open:

- the directory's lock (``journal.lock``, an exclusive ``flock`` the kernel drops when the
  process dies) is taken: two processes appending to one journal would interleave and lose
  records, so the second is refused (``JournalLocked``) with the holder's pid and command;
- the last segment is checked record by record. A record cut short (``kill -9`` or a power
  loss in the middle of a write) is a torn tail: it is cut off at the last whole record, a
  WARNING says where. A whole record whose CRC does not match is damage, not a torn write: it
  is cut off too (nothing after it can be trusted), said at ERROR with its segment and offset;
- appends go to a new segment: a segment, once closed, never changes.

Reading (``read``) walks the segments from a position; a CRC mismatch there is reported
(``JournalCorrupt``, naming the segment and offset) through ``on_corrupt`` and the rest of that
segment is skipped. Segments older than ``retention_days`` that lie wholly below ``replay_from``
are deleted (``prune``).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from engine.errors import HftError
from engine.logs import get_logger

_log = get_logger("system")
_HEADER = struct.Struct("<II")
HEADER_SIZE = _HEADER.size
SUFFIX = ".jnl"
WATERMARK = "watermark.json"
LOCK = "journal.lock"
SEGMENT_BYTES = 64 << 20  # a new segment past this size ...
SEGMENT_AGE_S = 3600.0  # ... or this age, so that retention can let old ones go
MAX_RECORD = 1 << 30  # a length past this is damage, not a record
RUN_TABLE = "_run"  # begin_run / end_run arguments

Position = tuple[int, int]  # (segment number, byte offset)


def _plain(obj: Any) -> Any:
    """What msgpack has no type for: numpy scalars as Python numbers, anything else as text."""
    item = getattr(obj, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return str(obj)


_encode = msgspec.msgpack.Encoder(enc_hook=_plain).encode
_decode = msgspec.msgpack.Decoder(tuple[str, str, list[tuple]]).decode


class JournalError(HftError):
    """The journal cannot be opened, written or read."""


class JournalLocked(JournalError):
    """Another process appends to this journal directory."""


class JournalCorrupt(JournalError):
    """A record's checksum does not match its bytes."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        super().__init__(f"Journal record damaged in segment {path} at offset {offset}: {reason}")


@dataclass(slots=True)
class Record:
    start: Position
    end: Position
    table: str
    run_id: str
    rows: list[Any]


def encode(table: str, run_id: str, rows: list[Any]) -> bytes:
    """One framed record."""
    payload = _encode((table, run_id, rows))
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _segment_no(path: Path) -> int | None:
    if path.suffix != SUFFIX:
        return None
    try:
        return int(path.stem)
    except ValueError:
        return None


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "unknown"
    return text or "unknown"


class Journal:
    """An open journal directory (see the module docstring). Not thread-safe: one thread (the
    store service's) appends, reads and moves the watermark."""

    def __init__(
        self,
        directory: str | Path,
        retention_days: float = 7.0,
        segment_bytes: int = SEGMENT_BYTES,
        segment_age_s: float = SEGMENT_AGE_S,
        on_corrupt: Callable[[JournalCorrupt], None] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.retention_days = retention_days
        self.segment_bytes = segment_bytes
        self.segment_age_s = segment_age_s
        self.on_corrupt = on_corrupt
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._seg = 0  # the segment appends go to
        self._size = 0
        self._opened_at = 0.0
        self.watermark: Position = (0, 0)
        self.replay_from: Position = (0, 0)  # where a start replays from (at or behind the watermark)
        self.cut_bytes = 0  # what open cut off the last segment (torn tail or damage)
        self.corrupt = 0  # damaged records found

    # --- open, close ---------------------------------------------------------------------------
    def open(self) -> Journal:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"Cannot create journal directory {self.dir}: {exc.strerror or exc}") from None
        self._take_lock()
        try:
            self.watermark, self.replay_from = self._read_watermark()
            segments = self.segments()
            if segments:
                self._check_tail(segments[-1])
            self._seg = (max(segments) if segments else 0) + 1
            if self.watermark > (self._seg, 0):  # a watermark past the journal (files removed by hand)
                self.watermark = (self._seg, 0)
            self.replay_from = min(self.replay_from, self.watermark)
            self._open_segment()
            self.prune()
        except BaseException:
            self.close()
            raise
        return self

    def _take_lock(self) -> None:
        import fcntl

        path = self.dir / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"Cannot open journal lock {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLocked(
                f"Journal directory {self.dir} is in use by another process ({_holder(path)}): two processes "
                "must not share a journal; give each its own database.journal_dir"
            ) from None
        self._lock_fd = fd
        with contextlib.suppress(OSError):
            cmd = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}: {cmd[:200]}\n".encode())

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)
            path = self._path(self._seg)
            with contextlib.suppress(OSError):
                if path.stat().st_size == 0:  # nothing was appended: leave no empty segment behind
                    path.unlink()
        lock, self._lock_fd = self._lock_fd, None
        if lock is not None:
            os.close(lock)

    def __enter__(self) -> Journal:
        return self.open() if self._lock_fd is None else self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- segments --------------------------------------------------------------------------------
    def _path(self, n: int) -> Path:
        return self.dir / f"{n:012d}{SUFFIX}"

    def segments(self) -> list[int]:
        out = []
        for p in self.dir.iterdir():
            n = _segment_no(p)
            if n is not None and p.is_file():
                out.append(n)
        return sorted(out)

    def _open_segment(self) -> None:
        path = self._path(self._seg)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._opened_at = time.monotonic()
        _fsync_dir(self.dir)

    def _roll(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        self._seg += 1
        self._open_segment()
        self.prune()

    @property
    def tail(self) -> Position:
        """Where the next record goes."""
        return (self._seg, self._size)

    def _check_tail(self, n: int) -> None:
        """Cut a torn or damaged end off segment ``n`` (see the module docstring)."""
        path = self._path(n)
        data = path.read_bytes()
        good = 0
        reason = ""
        while good < len(data):
            if len(data) - good < HEADER_SIZE:
                reason = "torn"
                break
            length, crc = _HEADER.unpack_from(data, good)
            end = good + HEADER_SIZE + length
            if length > MAX_RECORD or end > len(data):
                reason = "torn"
                break
            if zlib.crc32(data[good + HEADER_SIZE : end]) != crc:
                reason = "crc"
                break
            good = end
        if not reason:
            return
        cut = len(data) - good
        self.cut_bytes += cut
        with open(path, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
        if reason == "torn":
            _log.warning("journal: torn tail cut from segment %s at offset %d (%d bytes)", path, good, cut)
        else:
            self.corrupt += 1
            err = JournalCorrupt(path, good, f"CRC mismatch; {cut} bytes from there cut off")
            _log.error("%s (journal error)", err)
            if self.on_corrupt is not None:
                self.on_corrupt(err)

    # --- append ------------------------------------------------------------------------------------
    def append(self, records: list[bytes]) -> list[tuple[Position, Position]]:
        """Write framed records (``encode``) in one write and one fsync; their (start, end)
        positions. Raises ``JournalError`` when the disk refuses (nothing is acknowledged then)."""
        if self._fd is None:
            raise JournalError(f"Journal {self.dir} is not open")
        if self._size >= self.segment_bytes or (
            self._size and time.monotonic() - self._opened_at >= self.segment_age_s
        ):
            self._roll()
        out = []
        pos = self._size
        for rec in records:
            out.append(((self._seg, pos), (self._seg, pos + len(rec))))
            pos += len(rec)
        data = b"".join(records)
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError as exc:
            # what was written of this batch is a torn tail: the next open cuts it
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise JournalError(f"Journal write failed ({self._path(self._seg)}): {exc.strerror or exc}") from None
        self._size = pos
        return out

    # --- read --------------------------------------------------------------------------------------
    def read(self, start: Position, max_rows: int = 1 << 62, end: Position | None = None) -> Iterator[Record]:
        """Records from ``start`` on (up to ``end``, the tail by default), stopping once
        ``max_rows`` rows were given. A damaged record is reported (``on_corrupt``) and the rest of
        its segment skipped."""
        stop = end if end is not None else self.tail
        rows = 0
        for n in self.segments():
            if n < start[0] or n > stop[0]:
                continue
            path = self._path(n)
            offset = start[1] if n == start[0] else 0
            limit = stop[1] if n == stop[0] else None
            try:
                f = open(path, "rb")  # noqa: SIM115 - closed by the with below; a missing file is skipped
            except FileNotFoundError:
                continue
            with f:
                f.seek(offset)
                while limit is None or offset < limit:
                    header = f.read(HEADER_SIZE)
                    if len(header) < HEADER_SIZE:
                        break
                    length, crc = _HEADER.unpack(header)
                    payload = f.read(length) if length <= MAX_RECORD else b""
                    if len(payload) < length or length > MAX_RECORD:
                        break  # the segment being appended to ends here (or was cut)
                    if zlib.crc32(payload) != crc:
                        self._damaged(JournalCorrupt(path, offset, "CRC mismatch; the rest of the segment skipped"))
                        break
                    try:
                        table, run_id, batch = _decode(payload)
                    except (msgspec.DecodeError, ValueError, TypeError) as exc:
                        self._damaged(JournalCorrupt(path, offset, f"undecodable record ({exc})"))
                        break
                    new = offset + HEADER_SIZE + length
                    yield Record((n, offset), (n, new), table, run_id, batch)
                    offset = new
                    rows += len(batch)
                    if rows >= max_rows:
                        return

    def _damaged(self, err: JournalCorrupt) -> None:
        self.corrupt += 1
        _log.error("%s (journal error)", err)
        if self.on_corrupt is not None:
            self.on_corrupt(err)

    def pending_bytes(self) -> int:
        """Bytes of records above the watermark."""
        seg, off = self.watermark
        total = 0
        for n in self.segments():
            if n < seg:
                continue
            size = self._size if n == self._seg else _size(self._path(n))
            total += size - (off if n == seg else 0)
        return max(total, 0)

    # --- watermark, retention ----------------------------------------------------------------------
    def _read_watermark(self) -> tuple[Position, Position]:
        path = self.dir / WATERMARK
        try:
            data = json.loads(path.read_text())
            mark = (int(data["segment"]), int(data["offset"]))
            back = data.get("replay_from")
            return mark, (int(back[0]), int(back[1])) if back else mark
        except FileNotFoundError:
            return (0, 0), (0, 0)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            # replaying from the start is safe (idempotent), only slower: say so and do it
            _log.warning("journal: watermark %s unreadable (%s); replaying the whole journal", path, exc)
            return (0, 0), (0, 0)

    def set_watermark(self, pos: Position, replay_from: Position | None = None) -> None:
        """The database holds every record before ``pos``; a start replays from ``replay_from``
        (default ``pos``). Written in one step."""
        back = min(replay_from if replay_from is not None else pos, pos)
        if pos <= self.watermark and back <= self.replay_from:
            return
        self.watermark = max(pos, self.watermark)
        self.replay_from = max(back, self.replay_from)
        path = self.dir / WATERMARK
        tmp = self.dir / f".{WATERMARK}.tmp"
        doc = {
            "segment": self.watermark[0],
            "offset": self.watermark[1],
            "replay_from": list(self.replay_from),
            "updated_ns": time.time_ns(),
        }
        tmp.write_text(json.dumps(doc) + "\n")
        os.replace(tmp, path)

    def prune(self, now: float | None = None) -> list[Path]:
        """Delete segments older than ``retention_days`` that lie wholly below ``replay_from``."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_days * 86400.0
        gone = []
        for n in self.segments():
            if n >= self.replay_from[0] or n == self._seg:
                break
            path = self._path(n)
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    gone.append(path)
            except OSError:
                continue
        if gone:
            _log.info(
                "journal: %d segments older than %g days removed from %s", len(gone), self.retention_days, self.dir
            )
        return gone


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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


def open_readonly(directory: str | Path) -> Journal:
    """A journal to read without appending (``replay_fills``): no lock, no new segment."""
    j = Journal(directory)
    if not j.dir.is_dir():
        raise JournalError(f"No journal at {j.dir}")
    j.watermark, j.replay_from = j._read_watermark()
    segments = j.segments()
    j._seg = max(segments) if segments else 0
    j._size = _size(j._path(j._seg)) if segments else 0
    return j
