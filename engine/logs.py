"""Component log files named by the operator guide (section 1.3).

``system.log, errors.log, market_data.log, orders.log, strategies.log, risk.log, exchanges.log``
under the log directory (``HFT_LOG_DIR``, default ``/var/log/hft_system`` for the daemon and
``<run_dir>/logs`` for backtests). Every WARNING or worse also goes to ``errors.log``.
Log lines never carry secrets: ``redact`` strips anything that looks like a key or signature.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

COMPONENTS = ("system", "market_data", "orders", "strategies", "risk", "exchanges")
DEFAULT_LOG_DIR = "/var/log/hft_system"
_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s [%(name)s] %(message)s"
_DATEFMT = "%Y-%m-%dT%H:%M:%S"

_SECRET = re.compile(
    r"(?i)(signature|api[_-]?key|secret|x-mbx-apikey|passphrase)([\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9+/=_\-]{8,})"
)


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and not record.args:
            record.msg = redact(record.msg)
        return True


def get_logger(component: str) -> logging.Logger:
    """The logger of one component: ``hft.<component>``."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown log component {component!r}; expected one of {COMPONENTS}")
    return logging.getLogger(f"hft.{component}")


def setup_logging(
    log_dir: str | os.PathLike[str] | None, level: int = logging.INFO, console: bool = False
) -> Path | None:
    """Attach one file per component plus ``errors.log``. ``None`` keeps logs in memory only."""
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
    redactor = _RedactFilter()
    if console:
        sh = logging.StreamHandler()
        sh.setLevel(logging.WARNING)
        sh.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
        sh.addFilter(redactor)
        root.addHandler(sh)
    if log_dir is None:
        root.addHandler(logging.NullHandler())
        return None
    path = Path(log_dir)
    path.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(_FORMAT, _DATEFMT)
    for comp in COMPONENTS:
        fh = logging.FileHandler(path / f"{comp}.log")
        fh.setFormatter(fmt)
        fh.addFilter(redactor)
        logging.getLogger(f"hft.{comp}").addHandler(fh)
    eh = logging.FileHandler(path / "errors.log")
    eh.setLevel(logging.WARNING)
    eh.setFormatter(fmt)
    eh.addFilter(redactor)
    root.addHandler(eh)
    return path
