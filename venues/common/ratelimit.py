"""Local request-weight limiting, so the venue never has to refuse us.

``WeightWindow`` is a sliding window of per-bucket counts: the sum over any ``interval_s`` never
exceeds ``limit``. A sliding window is stricter than the calendar windows venues usually count
in, so staying inside it stays inside theirs whichever way the venue aligns its windows.
The venue's own count (e.g. Binance ``X-MBX-USED-WEIGHT-1M``) is folded in with ``observe``:
weight it saw that we did not send (another process on the same IP, a restart) is booked too.

``RetryAfterGate`` holds every request back until a venue-imposed ban (429/418 ``Retry-After``)
has expired. ``RequestLimiter`` combines windows and the gate behind one ``acquire``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass


class WeightWindow:
    """At most ``limit`` weight in any ``interval_s`` seconds (sliding, in ``buckets`` steps).

    Weight is counted per bucket of ``interval_s / buckets`` seconds in a ring, so booking is a
    few integer operations with no allocation, and memory stays fixed however many requests a
    window holds (a day's order count included). Weight booked in a bucket is released one whole
    interval after that bucket *ends*: up to one bucket later than an exact log would, never
    earlier, so the window stays on the safe side of the venue's.
    """

    __slots__ = ("_bucket_s", "_clock", "_counts", "_edge", "_head", "_slot", "_used", "interval_s", "limit", "name")

    def __init__(
        self,
        name: str,
        limit: int,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        buckets: int = 60,
    ) -> None:
        if limit <= 0 or interval_s <= 0 or buckets < 1:
            raise ValueError(
                f"rate limit {name!r} needs limit > 0, interval_s > 0 and buckets >= 1, "
                f"got {limit}, {interval_s}, {buckets}"
            )
        self.name = name
        self.limit = limit
        self.interval_s = interval_s
        self._clock = clock
        self._bucket_s = interval_s / buckets
        self._counts = [0] * (buckets + 1)  # the window's buckets and the current one
        self._head = -(2**62)  # absolute number of the newest bucket
        self._slot = 0  # its index in the ring
        self._edge = float("-inf")  # when the next bucket starts: until then booking is one add
        self._used = 0

    def _advance(self, idx: int) -> None:
        """Make bucket ``idx`` the newest, releasing the buckets that left the window."""
        counts = self._counts
        n = len(counts)
        if idx - self._head >= n:
            for k in range(n):
                counts[k] = 0
            self._used = 0
        else:
            for k in range(self._head + 1, idx + 1):
                slot = k % n
                self._used -= counts[slot]
                counts[slot] = 0
        self._head = idx
        self._slot = idx % n
        self._edge = (idx + 1) * self._bucket_s

    def _trim(self, now: float) -> None:
        idx = int(now // self._bucket_s)
        if idx > self._head:
            self._advance(idx)

    @property
    def used(self) -> int:
        self._trim(self._clock())
        return self._used

    def wait_time(self, weight: int) -> float:
        """Seconds until ``weight`` more fits (0 if it fits now)."""
        if weight > self.limit:
            raise ValueError(f"request weight {weight} exceeds the {self.name} limit {self.limit}")
        now = self._clock()
        self._trim(now)
        excess = self._used + weight - self.limit
        if excess <= 0:
            return 0.0
        counts = self._counts
        n = len(counts)
        freed = 0
        for j in range(self._head - n + 1, self._head + 1):  # oldest bucket first
            freed += counts[j % n]
            if freed >= excess:
                return max((j + n) * self._bucket_s - now, 0.0)
        return self.interval_s

    def fits(self, weight: int, now: float | None = None) -> bool:
        """Whether ``weight`` more fits now (no waiting time computed: the hot path's check)."""
        if self._used + weight <= self.limit:
            return True  # trimming only frees room
        self._trim(self._clock() if now is None else now)
        return self._used + weight <= self.limit

    def consume(self, weight: int) -> None:
        self.book(weight, self._clock())

    def book(self, weight: int, now: float) -> None:
        """``consume`` at a time the caller already read (one clock read for several windows)."""
        if now >= self._edge:
            idx = int(now // self._bucket_s)
            if idx > self._head:
                self._advance(idx)
        self._counts[self._slot] += weight
        self._used += weight

    def observe(self, venue_count: int) -> None:
        """Fold in the venue's own count for the current window: book what we did not see."""
        now = self._clock()
        self._trim(now)
        missing = venue_count - self._used
        if missing > 0:
            self._counts[self._slot] += missing
            self._used += missing


class RetryAfterGate:
    """No request before ``blocked_until`` (monotonic seconds), set from Retry-After answers.

    ``on_block(seconds, reason, status)`` hears of each new ban: one that starts while none is in
    force, or a 418 (IP banned) while a 429 holds. The answers of the requests already in flight
    when the first 429 came (all 429 too, often) extend the ban without being news."""

    __slots__ = ("_clock", "blocked_until", "on_block", "reason", "status")

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_block: Callable[[float, str, int], None] | None = None,
    ) -> None:
        self._clock = clock
        self.blocked_until = 0.0
        self.reason = ""
        self.status = 0  # HTTP status of the ban in force (429, 418; 0 when unknown)
        self.on_block = on_block

    def block(self, seconds: float, reason: str, status: int = 0) -> bool:
        """Hold every request for ``seconds``; True when this is a new ban (``on_block`` was told)."""
        now = self._clock()
        until = now + max(seconds, 0.0)
        fresh = self.blocked_until <= now
        escalated = not fresh and status == 418 and self.status != 418
        if fresh or escalated:
            self.status = status
        if until > self.blocked_until:
            self.blocked_until = until
            self.reason = reason
        if (fresh or escalated) and self.on_block is not None:
            self.on_block(seconds, reason, status)
        return fresh or escalated

    def wait_time(self) -> float:
        return max(self.blocked_until - self._clock(), 0.0)


@dataclass(frozen=True, slots=True)
class Wait:
    """One wait the limiter imposed: how long, and which limit caused it."""

    seconds: float
    limit: str


class RequestLimiter:
    """Windows plus a Retry-After gate; ``acquire`` sleeps until a request of some weight may go.

    ``on_wait`` is called once per sleep (the adapter logs it and raises an incident).
    Windows are keyed by kind (``weight``, ``orders``) so order entry also counts unfilled orders.
    """

    def __init__(
        self,
        windows: dict[str, list[WeightWindow]],
        gate: RetryAfterGate | None = None,
        on_wait: Callable[[Wait], None] | None = None,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        #: the set of windows is fixed here (their limits may change): the hot path keeps tuples
        self.windows = windows
        self._weight = tuple(windows.get("weight", ()))
        self._orders = tuple(windows.get("orders", ()))
        self.gate = gate or RetryAfterGate()
        self.on_wait = on_wait
        self._sleep = sleep
        self.waits = 0
        self.waited_s = 0.0

    def wait_time(self, costs: dict[str, int]) -> Wait:
        best = Wait(self.gate.wait_time(), "retry-after")
        for kind, cost in costs.items():
            if cost <= 0:
                continue
            for w in self.windows.get(kind, ()):
                t = w.wait_time(cost)
                if t > best.seconds:
                    best = Wait(t, w.name)
        return best

    def try_acquire(self, weight: int, orders: int = 0) -> bool:
        """Book ``weight`` (and ``orders``) now if every window has room and no ban is active;
        False (nothing booked) otherwise. The order hot path's non-waiting ``acquire``."""
        now = self.room_at(weight, orders)
        if now is None:
            return False
        self.book_at(weight, orders, now)
        return True

    def room_at(self, weight: int, orders: int = 0) -> float | None:
        """``try_acquire`` without the booking: the windows' clock reading at which ``weight``
        and ``orders`` fit, None when a window is full or a ban is active. The order hot path
        checks here before it writes and books with ``book_at`` after: with no await between the
        two nothing else can book in between, and the booking does not hold the bytes back."""
        gate = self.gate
        if gate.blocked_until and gate.wait_time() > 0:
            return None
        ws = self._weight if weight > 0 else ()
        os_ = self._orders if orders > 0 else ()
        if not ws and not os_:
            return 0.0
        clock = (ws or os_)[0]._clock  # windows of one limiter share a clock
        now = clock()
        for w in ws:
            if not w.fits(weight, now):
                return None
        for w in os_:
            if not w.fits(orders, now):
                return None
        return now

    def book_at(self, weight: int, orders: int, now: float) -> None:
        """Book what ``room_at`` found room for, at its clock reading ``now``."""
        if weight > 0:
            for w in self._weight:
                w.book(weight, now)
        if orders > 0:
            for w in self._orders:
                w.book(orders, now)

    def consume(self, costs: dict[str, int]) -> None:
        for kind, cost in costs.items():
            if cost > 0:
                for w in self.windows.get(kind, ()):
                    w.consume(cost)

    async def acquire(self, costs: dict[str, int]) -> float:
        """Wait until every window has room and no ban is active, then book the costs.

        Returns the seconds waited. Check and booking happen without an await between them,
        so concurrent callers on one loop cannot overbook a window.
        """
        waited = 0.0
        while True:
            wait = self.wait_time(costs)
            if wait.seconds <= 0:
                self.consume(costs)
                return waited
            self.waits += 1
            self.waited_s += wait.seconds
            if self.on_wait is not None:
                self.on_wait(wait)
            # asyncio may wake a timer up to one clock tick early; the margin avoids a second wait
            await self._sleep(wait.seconds + 0.001)
            waited += wait.seconds

    def observe(self, kind: str, name: str, venue_count: int) -> None:
        for w in self.windows.get(kind, ()):
            if w.name == name:
                w.observe(venue_count)
