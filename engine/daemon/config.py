"""The ``daemon`` section of a run config (``config/production.json``): the API's address and
auth settings, where the daemon writes (logs, pid file, heap dumps, order archives) and the
memory management of the operator guide (section 6.1). Every key is typed; a typo or a bad
value is ``Failed to load configuration from <path>: daemon.<field>: ...``.

Relative paths are taken from the config file's directory, except ``log_dir``, ``pid_file`` and
``heap_dump_dir``, which an operator gives as absolute paths (``/var/log/hft_system``,
``/var/run/hft_system.pid``, ``/tmp``) and a relative one is taken from the working directory,
as the command line's ``--log-dir``/``--pid-file`` are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Section, resolve_path
from engine.errors import ConfigError

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
DEFAULT_LOG_DIR = "/var/log/hft_system"
DEFAULT_PID_FILE = "/var/run/hft_system.pid"
DEFAULT_HEAP_DIR = "/tmp"
MEMORY_ACTIONS = ("reduce_order_book_depth", "archive_old_orders", "sample_market_data")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass
class ApiSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: reads need a signature too (always so when ``host`` is not loopback)
    auth_reads: bool = False
    #: environment variable holding a key -> the one holding its secret
    keys_env: dict[str, str] = field(default_factory=lambda: {"HFT_API_KEY": "HFT_API_SECRET"})
    max_clock_skew_ms: int = 5000
    read_cache_ms: int = 100
    #: the API process's niceness: below the trading process, so that serving a flood of requests
    #: on a 2-core machine takes CPU from the hot path's tail less (docs/daemon-bench.md)
    nice: int = 10


@dataclass
class MemorySettings:
    """Guide §6.1: above ``high_pressure_threshold`` of the memory limit, each of ``actions``."""

    enable_pressure_handling: bool = True
    high_pressure_threshold: float = 0.8
    actions: tuple[str, ...] = MEMORY_ACTIONS
    #: the limit usage is measured against, MB; 0: the cgroup's memory.max when set, else RAM
    memory_limit_mb: float = 0.0
    max_book_depth: int = 1000
    reduced_book_depth: int = 100
    order_archive_after_hours: float = 24.0
    #: market data rows are sampled in the event log above this percentage of the limit
    market_data_sample_above_pct: float = 80.0
    #: one market row kept in this many while sampling
    market_data_sample_every: int = 10
    check_interval_s: float = 10.0
    #: start tracemalloc at start-up (else at the first SIGUSR1: tracing costs the hot path)
    tracemalloc: bool = False


@dataclass
class DaemonSettings:
    api: ApiSettings = field(default_factory=ApiSettings)
    log_dir: Path = Path(DEFAULT_LOG_DIR)
    log_rotate_mb: float = 100.0
    log_backups: int = 10
    pid_file: Path = Path(DEFAULT_PID_FILE)
    heap_dump_dir: Path = Path(DEFAULT_HEAP_DIR)
    #: None: ``<run directory>/archive``
    archive_dir: Path | None = None
    memory: MemorySettings = field(default_factory=MemorySettings)
    #: every venue connection's ping interval and pong timeout (guide §10.2 "heartbeat"), over the
    #: exchange files' ``websocket.ping_*``; None: each exchange file's own
    heartbeat_interval_s: float | None = None
    heartbeat_timeout_s: float | None = None
    #: a ``latency_us`` line per stage in the component logs every this many seconds (guide §5.1)
    latency_log_interval_s: float = 10.0
    #: the section was in the config (else these are the defaults)
    present: bool = False


_KEYS = {
    "api",
    "log_dir",
    "log_rotate_mb",
    "log_backups",
    "pid_file",
    "heap_dump_dir",
    "archive_dir",
    "memory_management",
    "heartbeat",
    "latency_log_interval_s",
}
_API_KEYS = {"host", "port", "auth_reads", "keys_env", "max_clock_skew_ms", "read_cache_ms", "nice"}
_MEM_KEYS = {
    "enable_pressure_handling",
    "high_pressure_threshold",
    "actions",
    "memory_limit_mb",
    "max_book_depth",
    "reduced_book_depth",
    "order_archive_after_hours",
    "market_data_sample_above_pct",
    "market_data_sample_every",
    "check_interval_s",
    "tracemalloc",
}


def parse_daemon(raw: Any, path: str, base: Path) -> DaemonSettings:
    """The ``daemon`` section (``raw``; None: absent) of the config at ``path`` in ``base``."""
    if raw is None:
        return DaemonSettings()
    d = Section(raw, path, "daemon")
    d.known(_KEYS)
    a = d.section("api")
    a.known(_API_KEYS)
    keys_env: dict[str, str] = {"HFT_API_KEY": "HFT_API_SECRET"}
    if a.has("keys_env"):
        ke = a.section("keys_env")
        if not ke.data:
            raise a.fail("keys_env", "must name at least one key variable")
        keys_env = {k: ke.str(k) for k in ke.data}
    port = a.int("port", DEFAULT_PORT, minimum=0)
    if port > 65535:
        raise a.fail("port", f"must be a port number 0..65535, got {port}")
    api = ApiSettings(
        host=a.str("host", DEFAULT_HOST),
        port=port,
        auth_reads=a.bool("auth_reads", False),
        keys_env=keys_env,
        max_clock_skew_ms=a.int("max_clock_skew_ms", 5000, minimum=1),
        read_cache_ms=a.int("read_cache_ms", 100, minimum=0),
        nice=a.int("nice", 10, minimum=0),
    )
    if api.nice > 19:
        raise a.fail("nice", f"must be 0..19, got {api.nice}")
    m = d.section("memory_management")
    m.known(_MEM_KEYS)
    threshold = m.number("high_pressure_threshold", 0.8, positive=True)
    if threshold > 1:
        raise m.fail("high_pressure_threshold", f"must be a fraction of the limit in (0, 1], got {threshold!r}")
    actions = tuple(m.str_list("actions", list(MEMORY_ACTIONS)))
    for i, act in enumerate(actions):
        if act not in MEMORY_ACTIONS:
            raise m.fail(f"actions[{i}]", f"must be one of {', '.join(MEMORY_ACTIONS)}, got {act!r}")
    sample_pct = m.number("market_data_sample_above_pct", threshold * 100, positive=True)
    if sample_pct > 100:
        raise m.fail("market_data_sample_above_pct", f"must be a percentage in (0, 100], got {sample_pct!r}")
    max_depth = m.int("max_book_depth", 1000, minimum=1)
    reduced = m.int("reduced_book_depth", 100, minimum=1)
    if reduced > max_depth:
        raise m.fail("reduced_book_depth", f"must be <= max_book_depth ({max_depth}), got {reduced}")
    memory = MemorySettings(
        enable_pressure_handling=m.bool("enable_pressure_handling", True),
        high_pressure_threshold=threshold,
        actions=actions,
        memory_limit_mb=m.number("memory_limit_mb", 0.0, minimum=0),
        max_book_depth=max_depth,
        reduced_book_depth=reduced,
        order_archive_after_hours=m.number("order_archive_after_hours", 24.0, minimum=0),
        market_data_sample_above_pct=sample_pct,
        market_data_sample_every=m.int("market_data_sample_every", 10, minimum=2),
        check_interval_s=m.number("check_interval_s", 10.0, positive=True),
        tracemalloc=m.bool("tracemalloc", False),
    )
    hb = d.section("heartbeat")
    hb.known({"interval_s", "timeout_s"})
    return DaemonSettings(
        api=api,
        log_dir=Path(d.str("log_dir", DEFAULT_LOG_DIR)),
        log_rotate_mb=d.number("log_rotate_mb", 100.0, positive=True),
        log_backups=d.int("log_backups", 10, minimum=0),
        pid_file=Path(d.str("pid_file", DEFAULT_PID_FILE)),
        heap_dump_dir=Path(d.str("heap_dump_dir", DEFAULT_HEAP_DIR)),
        archive_dir=resolve_path(d.str("archive_dir"), base) if d.has("archive_dir") else None,
        memory=memory,
        heartbeat_interval_s=hb.number("interval_s", 20.0, positive=True) if hb.has("interval_s") else None,
        heartbeat_timeout_s=hb.number("timeout_s", 20.0, positive=True) if hb.has("timeout_s") else None,
        latency_log_interval_s=d.number("latency_log_interval_s", 10.0, positive=True),
        present=True,
    )


def load_daemon_settings(path: str | Path) -> DaemonSettings:
    """The daemon section of the run config at ``path`` alone (the API process reads its auth
    settings here; the trading process gets them with the whole spec)."""
    from engine.config import load_json

    data = load_json(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "top level: must be an object")
    return parse_daemon(data.get("daemon"), str(path), Path(path).resolve().parent)
