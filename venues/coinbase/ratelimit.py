"""Coinbase Exchange's REST limits as local token buckets (CB-EX rest-api/rate-limits).

Coinbase documents lazy-fill token buckets: private endpoints 15 requests/s per profile with a
burst of 30, public ones 10/s per IP with a burst of 15 (``/fills`` 10/s, burst 20). A bucket here
refills continuously at ``rate`` up to ``burst``; ``safety_margin`` keeps a fraction of both for
requests this process cannot see. A request that finds the bucket empty waits for the token
(``acquire``) or, on the order hot path, is told how long (``try_take``). A 429 from Coinbase
empties the bucket until ``Retry-After`` (``block``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self, rate: float, burst: int, safety_margin: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate * (1.0 - safety_margin)
        self.burst = max(1.0, burst * (1.0 - safety_margin))
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self._blocked_until = 0.0
        self.waits = 0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_time(self, n: float = 1.0) -> float:
        now = self._clock()
        if now < self._blocked_until:
            return self._blocked_until - now
        self._refill(now)
        return 0.0 if self._tokens >= n else (n - self._tokens) / self.rate

    def try_take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens now and return 0, or return the seconds until they are there."""
        wait = self.wait_time(n)
        if wait == 0.0:
            self._tokens -= n
        return wait

    async def acquire(self, n: float = 1.0) -> float:
        """Wait for ``n`` tokens; the seconds waited."""
        waited = 0.0
        while True:
            wait = self.try_take(n)
            if wait == 0.0:
                if waited:
                    self.waits += 1
                return waited
            await asyncio.sleep(wait)
            waited += wait

    def block(self, seconds: float) -> None:
        """Coinbase said 429: nothing before ``seconds`` from now, and an empty bucket after."""
        now = self._clock()
        self._blocked_until = max(self._blocked_until, now + seconds)
        self._tokens = 0.0
        self._at = self._blocked_until
