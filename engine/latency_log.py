"""Periodic latency lines in the component logs, in the shape the operator guide's greps read.

The guide averages latencies straight from the logs (§5.1)::

    grep "latency_us" market_data.log | tail -1000 | awk '{sum+=$NF; count++} END {...}'
    grep "order.*latency" orders.log | tail -1000 | awk -F'latency_us: ' '{sum+=$2; ...}'
    grep "risk check" risk.log | tail -100

so every line here ends in ``latency_us: <mean µs>``: the last field is the bare number and the
text after ``latency_us: `` is too. Lines are written once per interval from the daemon's latency
rings (``engine.daemon.telemetry``: one integer per event on the hot path, folded off it), never
per event: one line per market-data message would cost the hot path more than its 100 µs budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from engine.logs import get_logger


class Ring(Protocol):
    """What is read of a latency ring: cumulative bucket counts and sum (``fold`` keeps them)."""

    sum_ns: int
    count: Any  # per-bucket counts (numpy array); their sum is the events folded so far

    def fold(self) -> None: ...

    def quantiles_us(self) -> dict[str, float | None]: ...


#: stage -> (component log, line prefix). The prefixes match the guide's greps: ``latency_us``
#: (market_data.log), ``order.*latency`` (orders.log; not "order submit", which counts orders),
#: ``risk check`` (risk.log).
LINES: dict[str, tuple[str, str]] = {
    "market_data": ("market_data", "market_data latency stage=market_data"),
    "tick_to_order": ("orders", "order latency stage=tick_to_order"),
    "order_submit": ("orders", "order latency stage=order_submit"),
    "venue_ack": ("orders", "order latency stage=venue_ack"),
    "risk_check": ("risk", "risk check latency stage=risk_check"),
}


class LatencyLog:
    """Writes one line per stage that saw events since the last ``log``."""

    def __init__(self, rings: Mapping[str, Ring]) -> None:
        self.rings = {k: r for k, r in rings.items() if k in LINES}
        self._seen: dict[str, tuple[int, int]] = dict.fromkeys(self.rings, (0, 0))  # (events, sum_ns)

    def log(self) -> int:
        """Fold the rings and write the lines; returns how many were written."""
        written = 0
        for stage, ring in self.rings.items():
            ring.fold()
            events, total = int(ring.count.sum()), int(ring.sum_ns)
            n0, s0 = self._seen[stage]
            self._seen[stage] = (events, total)
            n = events - n0
            if n <= 0:
                continue
            q = ring.quantiles_us()
            comp, prefix = LINES[stage]
            get_logger(comp).info(
                "%s events=%d p50_us=%s p99_us=%s latency_us: %.3f",
                prefix,
                n,
                q.get("p50"),
                q.get("p99"),
                (total - s0) / n / 1e3,
            )
            written += 1
        return written

    async def run(self, interval_s: float = 10.0) -> None:
        """``log`` every ``interval_s`` until cancelled."""
        if interval_s <= 0:
            raise ValueError(f"latency log interval must be > 0 s, got {interval_s}")
        while True:
            await asyncio.sleep(interval_s)
            self.log()
