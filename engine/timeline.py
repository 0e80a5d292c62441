"""The engine's own scheduled events (venue responses, order arrivals, timers), kept in
``(ts, seq)`` order so ties resolve the same way on every run.

Market data is not queued here: the replay driver merges its rows with this queue by time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

NEVER = 2**63 - 1


class Timeline:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callable[[Any], None], Any]] = []
        self._seq = 0

    def schedule(self, ts: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (ts, self._seq, fn, arg))

    def next_ts(self) -> int:
        return self._heap[0][0] if self._heap else NEVER

    def pop(self) -> tuple[int, Callable[[Any], None], Any]:
        ts, _, fn, arg = heapq.heappop(self._heap)
        return ts, fn, arg

    def __len__(self) -> int:
        return len(self._heap)
