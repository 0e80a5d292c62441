"""The read cache between HTTP requests and the bridge.

Every read op's answer is kept ``ttl`` seconds per (op, args), and concurrent identical reads
share one bridge call (single flight). Reads of one op with different arguments (``orders`` with
each status, ``orderbook`` of each symbol) are spaced ``ttl`` apart (at most 100 ms), so however
many GETs arrive and whatever they ask, one read endpoint costs the trading loop at most 10
bridge calls a second; a read that would wait more than ``MAX_WAIT_S`` for its turn is
answered 503 at once instead of piling up. A mutation clears the cache (and the spacing), and a
read that was in flight when it happened is not stored, so the next read sees the change at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from engine.daemon.bridge import BridgeError

#: the contract's bound: 10 bridge calls a second per read op at most
MAX_SPACING_S = 0.1
#: the longest a read waits for its op's turn at the bridge before it is refused (503)
MAX_WAIT_S = 2.0
#: entries kept before expired ones are swept (distinct symbols, ids and limits each take one)
MAX_ENTRIES = 4096

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


def _key(op: str, args: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return op, tuple(sorted((k, repr(v)) for k, v in args.items()))


class ReadCache:
    def __init__(self, call: Call, ttl: float, spacing: float | None = None) -> None:
        self._call = call
        self.ttl = ttl
        #: least time between two bridge calls of one op: ``ttl`` up to ``MAX_SPACING_S`` (a long
        #: cache period keeps answers longer, it does not make other reads wait longer)
        self.spacing = min(ttl, MAX_SPACING_S) if spacing is None else spacing
        # key -> (monotonic expiry, result or refusal)
        self._done: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, Any]] = {}
        self._flights: dict[tuple[str, tuple[tuple[str, str], ...]], asyncio.Future[Any]] = {}
        self._generation = 0
        self._next_slot: dict[str, float] = {}  # op -> monotonic time its next bridge call may go
        self.bridge_calls = 0

    def invalidate(self) -> None:
        self._generation += 1
        self._done.clear()
        self._next_slot.clear()  # the first read after a change goes at once

    async def get(self, op: str, args: dict[str, Any]) -> Any:
        key = _key(op, args)
        hit = self._done.get(key)
        now = time.monotonic()
        if hit is not None:
            if hit[0] > now:
                return _unwrap(hit[1])
            del self._done[key]
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._fetch(key, op, args))
            self._flights[key] = flight
        # shield: one waiter's cancelled request must not cancel the call the others wait on
        return _unwrap(await asyncio.shield(flight))

    async def _fetch(self, key: tuple[str, tuple[tuple[str, str], ...]], op: str, args: dict[str, Any]) -> Any:
        generation = self._generation
        try:
            try:
                await self._turn(op)
                self.bridge_calls += 1
                value: Any = await self._call(op, args)
            except BridgeError as exc:
                value = exc
            # refusals (404, 400) are answers too; an unreachable trading process is not cached so
            # the first request after it comes back sees it
            cacheable = not isinstance(value, BridgeError) or value.status < 500
            if cacheable and self.ttl > 0 and generation == self._generation:
                now = time.monotonic()
                if len(self._done) >= MAX_ENTRIES:  # many distinct arguments: drop what has expired
                    self._done = {k: v for k, v in self._done.items() if v[0] > now}
                self._done[key] = (now + self.ttl, value)
            return value
        finally:
            self._flights.pop(key, None)

    async def _turn(self, op: str) -> None:
        """Wait until ``op`` may reach the bridge again (``spacing`` after its previous call)."""
        if self.spacing <= 0:
            return
        now = time.monotonic()
        slot = max(now, self._next_slot.get(op, 0.0))
        if slot - now > MAX_WAIT_S:
            raise BridgeError(503, f"Too many different {op} reads at once: retry in a second")
        self._next_slot[op] = slot + self.spacing
        if slot > now:
            await asyncio.sleep(slot - now)


def _unwrap(value: Any) -> Any:
    if isinstance(value, BridgeError):
        raise BridgeError(value.status, value.error, value.field)
    return value
