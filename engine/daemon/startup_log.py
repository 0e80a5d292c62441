"""Start-up failures in ``system.log``, where the guide's §2.1 looks for them.

A daemon that refuses to start (``Failed to load configuration from ...``, ``Failed to bind to
port 8080: Address already in use``) has not set up its component logs yet, so the line would
reach only stderr, which systemd may not keep. ``record_startup_failure`` appends it to
``system.log`` and ``errors.log`` of the log directory the daemon would have used: ``--log-dir``,
else the config's ``daemon.log_dir`` if the file is readable JSON, else ``$HFT_LOG_DIR``, else
``/var/log/hft_system`` when it exists. Not knowing where is not an error: stderr has the line.

``enable_crash_log`` points Python's fault handler at ``system.log``: a segmentation fault leaves
``Fatal Python error: Segmentation fault`` and the stacks there (§2.1's "Segmentation fault").
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from engine.logs import DEFAULT_LOG_DIR, redact

_crash_file: IO[str] | None = None


def wants_daemon_log(args: Any) -> bool:
    """Whether this ``hft paper|live`` invocation asked for the daemon (flags or a daemon section)."""
    if getattr(args, "api", False) or any(getattr(args, k, None) is not None for k in ("port", "log_dir", "pid_file")):
        return True
    return _config_daemon(getattr(args, "config", "")) is not None


def _config_daemon(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    section = data.get("daemon") if isinstance(data, dict) else None
    return section if isinstance(section, dict) else None


def log_dir_for(args: Any) -> Path | None:
    given = getattr(args, "log_dir", None)
    if given:
        return Path(given)
    section = _config_daemon(getattr(args, "config", "")) or {}
    if isinstance(section.get("log_dir"), str):
        return Path(section["log_dir"])
    if os.environ.get("HFT_LOG_DIR"):
        return Path(os.environ["HFT_LOG_DIR"])
    default = Path(DEFAULT_LOG_DIR)
    return default if default.is_dir() else None


def record_startup_failure(args: Any, message: str) -> Path | None:
    """Append ``message`` as an ERROR line to system.log and errors.log; the directory used, or None."""
    where = log_dir_for(args)
    if where is None:
        return None
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    line = f"{stamp} ERROR [hft.system] {redact(message)}\n"
    try:
        where.mkdir(parents=True, exist_ok=True)
        for name in ("system.log", "errors.log"):
            with (where / name).open("a") as f:
                f.write(line)
    except OSError:
        return None
    return where


def enable_crash_log(log_dir: Path) -> None:
    """Fatal signals (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL) dump every thread's stack into system.log."""
    global _crash_file
    with contextlib.suppress(OSError):
        f = (log_dir / "system.log").open("a")
        faulthandler.enable(file=f, all_threads=True)
        if _crash_file is not None:
            _crash_file.close()
        _crash_file = f
