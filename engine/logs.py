"""Component log files named by the operator guide (section 1.3).

``system.log, errors.log, market_data.log, orders.log, strategies.log, risk.log, exchanges.log``
under the log directory (``HFT_LOG_DIR``, default ``/var/log/hft_system`` for the daemon and
``<run_dir>/logs`` for backtests). Every WARNING or worse also goes to ``errors.log``.
Log lines never carry secrets: ``redact`` strips anything that looks like a labelled key or
signature (``signature=...``, ``"X-MBX-APIKEY": "..."``) and, wherever they appear, the exact key
and secret values this process holds (``register_secret``: the venue adapters register the
credentials they load; ``setup_logging`` registers the values of environment variables named
``*_API_KEY``, ``*_API_SECRET``, ``*_SECRET_KEY``, ``*_PASSPHRASE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path

COMPONENTS = ("system", "market_data", "orders", "strategies", "risk", "exchanges")
DEFAULT_LOG_DIR = "/var/log/hft_system"
# date and time as the first two fields: the guide counts lines per timestamp with
# awk '{print $1" "$2}' (§4.3)
_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s [%(name)s] %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"

_SECRET = re.compile(
    r"(?i)(signature|api[_-]?key|secret|x-mbx-apikey|passphrase)([\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9+/=_\-]{8,})"
)


_running_loop = asyncio._get_running_loop  # the C accessor: no exception when there is none

#: environment variables whose values are credentials (``BINANCE_API_KEY``, ``X_PASSPHRASE``, ...)
SECRET_ENV_SUFFIXES = ("_API_KEY", "_API_SECRET", "_SECRET_KEY", "_PASSPHRASE")
#: shorter values are not masked: they would blank out ordinary words and numbers
MIN_SECRET_LEN = 6
_values: tuple[str, ...] = ()  # registered secret values, longest first
_values_lock = threading.Lock()


def register_secret(*values: str | None) -> None:
    """Mask these exact values in every log line from now on (API keys, secrets, passphrases as
    loaded by a venue adapter). Empty, short (< ``MIN_SECRET_LEN``) and non-text values are
    ignored; registering a value twice is harmless."""
    global _values
    new = {v.strip() for v in values if isinstance(v, str) and len(v.strip()) >= MIN_SECRET_LEN}
    if not new - set(_values):
        return
    with _values_lock:
        _values = tuple(sorted(set(_values) | new, key=len, reverse=True))


def register_env_secrets(env: dict[str, str] | None = None) -> None:
    """Register the values of the environment's credential variables (``SECRET_ENV_SUFFIXES``)."""
    env = dict(os.environ) if env is None else env
    register_secret(*(v for k, v in env.items() if k.upper().endswith(SECRET_ENV_SUFFIXES)))


def redact(text: str) -> str:
    for value in _values:
        if value in text:
            text = text.replace(value, "***")
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted line: message, %-arguments and traceback alike."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


#: a line ``info_later`` queued: (logger, level, message, arguments, time logged in ns)
_Lazy = tuple[logging.Logger, int, str, tuple[object, ...], int]


class DeferredFileHandler(logging.FileHandler):
    """A component log file whose writes wait for the current event-loop callback to return.

    On the live order path a log line is written inside the callback that sends the order, and
    uvloop sends the order's bytes only when that callback returns: formatting the line
    (timestamp, redaction) and writing and flushing the file put tens of microseconds between
    the decision and the send. So, on a thread with a running event loop, a record's message is
    fixed at once (its arguments may change later), and formatting and writing happen in one
    ``call_soon`` per loop turn, with every line of that turn in one write. Records at ERROR and
    above, records from threads without a loop (backtests, the CLI, the recorder's writer), and
    ``flush``/``close`` write at once, after what is pending, so the file keeps the order in
    which lines were logged. The timestamp is the record's creation time either way.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        mode: str = "a",
        encoding: str | None = None,
        buffered: bool = False,
        max_bytes: int = 0,
        backups: int = 0,
    ) -> None:
        super().__init__(filename, mode, encoding)
        self._pending: list[logging.LogRecord | _Lazy] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None  # loop whose call_soon will write
        #: lines logged without a loop are written but not flushed one by one (a backtest: the
        #: file's buffer goes out when full, at an ERROR, and at ``flush``/``close``)
        self.buffered = buffered
        #: size-based rotation (0: never): ``<name>.log`` -> ``<name>.log.1`` ... ``.<backups>``,
        #: the oldest dropped; checked after a write, so it costs the writer, never the logger
        self.max_bytes = max_bytes
        self.backups = backups
        self._size = 0
        if max_bytes:
            with contextlib.suppress(OSError):
                self._size = os.path.getsize(self.baseFilename)

    def emit(self, record: logging.LogRecord) -> None:
        loop = _running_loop()
        if loop is None or record.levelno >= logging.ERROR:
            if self._pending:
                self._write_pending()
            try:
                self._write(self.format(record) + self.terminator, not self.buffered or record.levelno >= logging.ERROR)
            except Exception:
                self.handleError(record)
            return
        try:
            record.message = record.getMessage()
        except Exception:
            self.handleError(record)
            return
        record.msg, record.args = record.message, None
        self._pending.append(record)
        self._write_soon(loop)

    def _write_soon(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if loop is not None and self._flush_on is not loop:
            # a loop that closed with our callback still queued never runs it: schedule again
            self._flush_on = loop
            loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self.acquire()
        try:
            self._flush_on = None
            self._write_pending()
        finally:
            self.release()

    def defer(self, logger: logging.Logger, level: int, msg: str, args: tuple[object, ...], created_ns: int) -> None:
        """Queue a line whose record is made when it is written (``info_later``)."""
        self.acquire()
        try:
            self._pending.append((logger, level, msg, args, created_ns))
            self._write_soon(_running_loop())
        finally:
            self.release()

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        term = self.terminator
        lines = []
        for item in pending:
            record = _record_at(*item) if isinstance(item, tuple) else item
            try:
                lines.append(self.format(record) + term)
            except Exception:  # one bad line (arguments that do not fit) loses only itself
                self.handleError(record)
        try:
            self._write("".join(lines), True)
        except Exception:
            self.handleError(record)

    def _write(self, text: str, flush: bool) -> None:
        if self.stream is None:
            self.stream = self._open()
        self.stream.write(text)
        if flush:
            self.stream.flush()
        if self.max_bytes:
            self._size += len(text)
            if self._size >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        """``logging.handlers.RotatingFileHandler``'s scheme: the guide's clean-up finds the
        rotated files by ``-name "*.log.*"`` (§6.2)."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        base = self.baseFilename
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = f"{base}.{i}"
                if os.path.exists(src):
                    os.replace(src, f"{base}.{i + 1}")
            with contextlib.suppress(FileNotFoundError):
                os.replace(base, f"{base}.1")
        else:  # no backups kept: start the file again
            with contextlib.suppress(FileNotFoundError):
                os.remove(base)
        self._size = 0
        self.stream = self._open()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
            super().flush()
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            self._write_pending()
        finally:
            self.release()
        super().close()


def get_logger(component: str) -> logging.Logger:
    """The logger of one component: ``hft.<component>``."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown log component {component!r}; expected one of {COMPONENTS}")
    return logging.getLogger(f"hft.{component}")


def setup_logging(
    log_dir: str | os.PathLike[str] | None,
    level: int = logging.INFO,
    console: bool = False,
    buffered: bool = False,
    log_rotate_mb: float = 0.0,
    log_backups: int = 0,
) -> Path | None:
    """Attach one file per component plus ``errors.log``. ``None`` keeps logs in memory only.
    The values of the environment's credential variables are registered for redaction first.
    ``buffered`` (backtests): lines below ERROR are not flushed one by one (``flush_logs`` at the
    end of the run writes what is left); an operator tailing a live daemon's logs wants each line
    at once, so the live modes leave it off. ``log_rotate_mb`` > 0 rotates each file when it
    reaches that size, keeping ``log_backups`` old ones (``system.log.1`` newest; the daemon
    config's ``log_rotate_mb``/``log_backups``)."""
    register_env_secrets()
    root = logging.getLogger("hft")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for comp in COMPONENTS:
        lg = logging.getLogger(f"hft.{comp}")
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()
    root.setLevel(level)
    root.propagate = False
    # The format names no source location, thread or process: skip collecting them for every
    # record (the logging HOWTO's "Optimization" section). Finding the caller walks the stack,
    # the most expensive part of a record, and the order path logs every acceptance and expiry.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    fmt = RedactingFormatter(_FORMAT, _DATEFMT)
    if console:
        sh = logging.StreamHandler()
        sh.setLevel(logging.WARNING)
        sh.setFormatter(fmt)
        root.addHandler(sh)
    if log_dir is None:
        root.addHandler(logging.NullHandler())
        return None
    path = Path(log_dir)
    path.mkdir(parents=True, exist_ok=True)
    if log_rotate_mb < 0 or log_backups < 0:
        raise ValueError(f"log_rotate_mb and log_backups must be >= 0, got {log_rotate_mb}, {log_backups}")
    rotate = {"max_bytes": int(log_rotate_mb * 1024 * 1024), "backups": log_backups}
    for comp in COMPONENTS:
        fh = DeferredFileHandler(path / f"{comp}.log", buffered=buffered, **rotate)
        fh.setFormatter(fmt)
        logging.getLogger(f"hft.{comp}").addHandler(fh)
    eh = DeferredFileHandler(path / "errors.log", buffered=buffered, **rotate)
    eh.setLevel(logging.WARNING)
    eh.setFormatter(fmt)
    root.addHandler(eh)
    return path


def _record_at(
    logger: logging.Logger, level: int, msg: str, args: tuple[object, ...], created_ns: int
) -> logging.LogRecord:
    rec = logger.makeRecord(logger.name, level, "(unknown file)", 0, msg, args, None)
    rec.created = created_ns / 1e9
    rec.msecs = (created_ns // 1_000_000) % 1000
    rec.relativeCreated = (created_ns - logging._startTime * 1e9) / 1e6  # type: ignore[attr-defined]
    return rec


def info_later(logger: logging.Logger, msg: str, *args: object) -> None:
    """``logger.info(msg, *args)`` for the order path: with an event loop running and only
    deferred files to write to, even the record is made after the callback returns (making one
    costs microseconds the order's bytes would wait for on uvloop). The line keeps its place in
    the file and the time it was logged at. ``args`` must not change afterwards: pass values
    (ids, numbers, names), not objects."""
    if not logger.isEnabledFor(logging.INFO):
        return
    if _running_loop() is not None and not logger.filters:
        handlers = _deferred_handlers(logger)
        if handlers is not None:  # [] when no handler takes INFO (logs kept in memory only)
            now = time.time_ns()
            for h in handlers:
                h.defer(logger, logging.INFO, msg, args, now)
            return
    logger.info(msg, *args)


def _deferred_handlers(logger: logging.Logger) -> list[DeferredFileHandler] | None:
    """The handlers an INFO record of ``logger`` would reach, if all of them are deferred files
    (else None: some other handler, a test's capture say, wants a real record now)."""
    found: list[DeferredFileHandler] = []
    lg: logging.Logger | None = logger
    while lg is not None:
        for h in lg.handlers:
            if h.level > logging.INFO or isinstance(h, logging.NullHandler):
                continue
            if not isinstance(h, DeferredFileHandler) or h.filters:
                return None
            found.append(h)
        lg = lg.parent if lg.propagate else None
    return found


class _ThreadMute(logging.Filter):
    """Drops the records made on one thread; other threads' records pass."""

    def __init__(self, ident: int) -> None:
        super().__init__()
        self.ident = ident

    def filter(self, record: logging.LogRecord) -> bool:
        return threading.get_ident() != self.ident


class Muted:
    """While entered, every ``hft`` log record made on the entering thread is dropped, records of
    other threads (the recorder's writer, say) still reach the files. For work that runs the real
    code for no real purpose (``engine.warm``): what it does must not read as the system's doing.

    A filter on the loggers, present only while entered: outside, nothing on the logging path
    changes (``info_later`` keeps its fast path, which it takes only on loggers without filters).
    """

    __slots__ = ("_filter", "_known", "_loggers")

    def __init__(self) -> None:
        self._filter = _ThreadMute(threading.get_ident())
        self._loggers: list[logging.Logger] = []
        self._known = -1  # loggers that existed when ``_loggers`` was made

    def __enter__(self) -> Muted:
        self._filter.ident = threading.get_ident()
        loggers = logging.Logger.manager.loggerDict
        if len(loggers) != self._known:
            # every ``hft`` logger, children included: a filter on a parent does not see the
            # records of its children (a strategy at its own level, ``hft.strategies.<id>``)
            self._known = len(loggers)
            self._loggers = [logging.getLogger("hft")] + [
                lg for name, lg in list(loggers.items()) if name.startswith("hft.") and isinstance(lg, logging.Logger)
            ]
        f = self._filter
        for lg in self._loggers:
            lg.filters.append(f)
        return self

    def __exit__(self, *_exc: object) -> None:
        f = self._filter
        for lg in self._loggers:
            lg.filters.remove(f)


def flush_logs() -> None:
    """Write every component log line still waiting for its loop turn (end of a run)."""
    loggers = [logging.getLogger("hft")] + [logging.getLogger(f"hft.{c}") for c in COMPONENTS]
    for lg in loggers:
        for h in lg.handlers:
            h.flush()


def install_loop_exception_handler(loop: asyncio.AbstractEventLoop) -> None:
    """What escapes a callback or task of the trading loop goes to ``system.log`` (and so
    ``errors.log``); a ``MemoryError`` is said in the guide's words (``Memory allocation failed``,
    §12), which is what an operator greps for after an out-of-memory."""
    from engine.messages import MEMORY_ALLOCATION_FAILED

    log = get_logger("system")

    def handle(lp: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc = context.get("exception")
        where = context.get("message", "")
        if isinstance(exc, MemoryError):
            log.critical("%s: %s (%s); restart the daemon and look for a leak", MEMORY_ALLOCATION_FAILED, where, exc)
            return
        log.error("Unhandled exception in the event loop: %s: %r", where, exc)
        lp.default_exception_handler(context)

    loop.set_exception_handler(handle)
