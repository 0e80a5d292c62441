"""A check's result and the facts the checks decide on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
#: the doctor's sections, in the guide's order (``--only`` takes these names)
SECTIONS = (
    "baseline",
    "startup",
    "connectivity",
    "market_data",
    "orders",
    "latency",
    "memory",
    "database",
    "exchange",
    "strategy",
    "monitoring",
    "logs",
)

# The guide's thresholds (operator-surface §7.3)
STALE_DATA_S = 5.0  # §3.2 "Market data timestamps are old (> 5 seconds)"
PENDING_ORDER_S = 30.0  # §4.2 "pending" for "> 30 seconds"
P99_CRITICAL_US = 1000.0  # §5.1 "P99 latency > 1ms for critical operations"
MARKET_DATA_US = 100.0  # §5.1 market data average > 100 µs
ORDER_US = 500.0  # §5.1 order latency > 500 µs
MEMORY_PCT = 80.0  # §5.3 "> 80% of available"
DISK_PCT = 90.0  # §6.2 "Disk usage > 90%"
CPU_PCT = 80.0  # §5.2 "CPU usage > 80% sustained"
# A loop that runs its timers this late was held by something (a blocking call, a long callback, a
# GC pause). uvloop's timers have 1 ms resolution, so ~1 ms of lag is the timer, not the loop.
EVENT_LOOP_LAG_S = 0.005


@dataclass
class Result:
    """One check: ``status`` is pass/warn/fail/skip; ``next_step`` quotes the guide's section."""

    section: str
    check: str
    status: str
    detail: str
    next_step: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "section": self.section,
            "check": self.check,
            "status": self.status,
            "detail": self.detail,
            "next_step": self.next_step,
        }


@dataclass
class Facts:
    """What the daemon and its host answered; ``None`` means "could not be read" (the reason is in
    ``errors`` under the same name)."""

    url: str
    now: float  # wall clock (s) when the facts were gathered
    status: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] | None = None  # /api/v1/metrics JSON lines
    prometheus_text: str | None = None  # /metrics
    orders_pending: list[dict[str, Any]] | None = None
    orders_rejected: list[dict[str, Any]] | None = None
    strategies: list[dict[str, Any]] | None = None
    risk_violations: list[dict[str, Any]] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # host
    pid_file: Path | None = None
    pid_from_file: int | None = None
    pid_alive: bool | None = None
    port: int | None = None
    port_owner_pids: list[int] | None = None  # processes listening on the API port
    port_owner_cmdlines: dict[int, str] = field(default_factory=dict)
    config_path: Path | None = None
    config: dict[str, Any] | None = None
    config_error: str | None = None
    memory_threshold_pct: float = MEMORY_PCT  # daemon.memory_management.high_pressure_threshold
    memory_limit_config_bytes: int | None = None  # daemon.memory_management.memory_limit_mb
    exchange_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_dir: Path | None = None
    logs: dict[str, list[str]] = field(default_factory=dict)  # file name -> last lines
    rss_bytes: int | None = None
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    mem_limit_bytes: int | None = None  # cgroup memory.max, when set
    disk_used_pct: dict[str, float] = field(default_factory=dict)
    prometheus_url: str | None = None
    prometheus_up: list[dict[str, Any]] | None = None  # up{job="hft_system"} result vector
    venue_probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # venue -> venue_probe()
    database: list[dict[str, Any]] | str | None = None  # engine.store.ops.probe_config: checks, or why none

    def metric(self, name: str, **labels: str) -> list[dict[str, Any]]:
        """The metrics lines named ``name`` (with or without the ``hft_`` prefix) whose labels
        include ``labels``."""
        want = name.removeprefix("hft_")
        out = []
        for line in self.metrics or ():
            if str(line.get("name", "")).removeprefix("hft_") != want:
                continue
            have = line.get("labels") or {}
            if all(str(have.get(k)) == v for k, v in labels.items()):
                out.append(line)
        return out

    def metric_value(self, name: str, **labels: str) -> float | None:
        lines = self.metric(name, **labels)
        vals = [v for v in (_num(line.get("value")) for line in lines) if v is not None]
        return sum(vals) if vals else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
