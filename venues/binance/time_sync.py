"""The server clock as seen from here: offset measured against ``/api/v3/time``.

Binance accepts a signed request only if ``timestamp < serverTime + 1000`` and
``serverTime - timestamp <= recvWindow``; a local clock that drifts makes every order fail with
-1021. Each sample assumes the server read its clock half-way through the round trip; of a round
of samples the one with the shortest round trip is kept, as its midpoint is the least uncertain.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ServerClock:
    __slots__ = ("_local_ns", "measured_at_ns", "offset_ms", "rtt_ms", "samples")

    def __init__(self, local_ns: Callable[[], int] = time.time_ns) -> None:
        self._local_ns = local_ns
        self.offset_ms = 0.0  # server minus local
        self.rtt_ms = float("inf")
        self.measured_at_ns = 0
        self.samples = 0

    @property
    def measured(self) -> bool:
        return self.samples > 0

    def sample(self, sent_ns: int, server_ms: int, received_ns: int) -> tuple[float, float]:
        """One round trip: returns (offset_ms, rtt_ms) of this sample without adopting it."""
        rtt_ns = max(received_ns - sent_ns, 0)
        midpoint_ms = (sent_ns + rtt_ns / 2) / 1e6
        return server_ms - midpoint_ms, rtt_ns / 1e6

    def adopt(self, offset_ms: float, rtt_ms: float) -> None:
        self.offset_ms = offset_ms
        self.rtt_ms = rtt_ms
        self.measured_at_ns = self._local_ns()
        self.samples += 1

    def now_ms(self) -> int:
        """Estimated server time in ms (what goes into ``timestamp``)."""
        local_ns = self._local_ns  # a slot read then a call: ``self._local_ns()`` is not specialised
        return int(local_ns() / 1e6 + self.offset_ms)
