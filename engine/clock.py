"""Clocks. The engine reads time only through a clock, which is what makes backtests replayable."""

from __future__ import annotations

import time


class SimClock:
    """Simulated time, advanced by the event loop to the timestamp of the event being handled."""

    __slots__ = ("ts",)
    is_live = False

    def __init__(self, start_ns: int = 0) -> None:
        self.ts = start_ns

    def now(self) -> int:
        return self.ts


class LiveClock:
    """Wall-clock nanoseconds (UTC epoch)."""

    __slots__ = ()
    is_live = True

    def now(self) -> int:
        return time.time_ns()
