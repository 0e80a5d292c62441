"""Request weight and order-count limits, with Binance's 429-then-418 escalation.

Intervals are fixed windows aligned to the clock, as Binance counts them: the 1-minute weight
window resets at every full minute, the 10-second order window at :00, :10, ..., the daily one at
00:00 UTC. Weight is per IP (everything on loopback shares one counter, REST and WS API alike).

Going over the weight limit answers 429 with ``Retry-After`` = seconds to the window's end. A
client that keeps sending before that moment is banned: 418 with ``Retry-After`` = ban length,
starting at ``ban_seconds`` and doubling for repeat offenders (capped at 3 days, as documented).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from sim.fake_binance.errors import MSG_BANNED, MSG_WEIGHT, BinanceError

MAX_BAN_SECONDS = 3 * 24 * 3600


class RateLimiter:
    def __init__(
        self,
        weight_limit: int = 6000,
        orders_per_10s: int = 50,
        orders_per_day: int = 160000,
        ban_seconds: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.weight_limit = int(weight_limit)
        self.orders_per_10s = int(orders_per_10s)
        self.orders_per_day = int(orders_per_day)
        self.ban_seconds = float(ban_seconds)
        self._clock = clock
        self._minute = -1
        self._weight = 0
        self._limited_until = 0.0
        self._banned_until = 0.0
        self._bans = 0
        self._ten = -1
        self._orders_10s = 0
        self._day = -1
        self._orders_day = 0
        # (status, retry_after, path or None) for the next requests (to that REST path only)
        self._forced: list[tuple[int, int, str | None]] = []
        self.rejections = 0  # 429 and 418 answers given

    # --- counters ---------------------------------------------------------------------------
    def _roll(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self._minute:
            self._minute = minute
            self._weight = 0
        ten = int(now // 10)
        if ten != self._ten:
            self._ten = ten
            self._orders_10s = 0
        day = int(now // 86400)
        if day != self._day:
            self._day = day
            self._orders_day = 0

    def used_weight(self) -> int:
        self._roll(self._clock())
        return self._weight

    def order_counts(self) -> tuple[int, int]:
        self._roll(self._clock())
        return self._orders_10s, self._orders_day

    # --- faults -------------------------------------------------------------------------------
    def force(self, n: int, status: int = 429, retry_after: int = 1, path: str | None = None) -> None:
        """Answer the next ``n`` requests (REST requests to ``path`` only, when given) with
        ``status`` (429 or 418) and ``Retry-After``."""
        if status not in (429, 418):
            raise ValueError(f"forced status must be 429 or 418, not {status}")
        self._forced.extend([(status, int(retry_after), path)] * int(n))

    def reset(self) -> None:
        self._weight = 0
        self._limited_until = 0.0
        self._banned_until = 0.0
        self._forced.clear()

    # --- checks -------------------------------------------------------------------------------
    def _error(self, status: int, retry_after: float, now: float) -> BinanceError:
        self.rejections += 1
        seconds = max(1, math.ceil(retry_after))
        until_ms = int((now + seconds) * 1000)
        if status == 418:
            msg = MSG_BANNED.format(until=until_ms)
        else:
            msg = MSG_WEIGHT.format(limit=self.weight_limit)
        return BinanceError(
            -1003, msg, status, retry_after=seconds, data={"serverTime": int(now * 1000), "retryAfter": until_ms}
        )

    def charge(self, weight: int, path: str | None = None) -> None:
        """Count a request's weight (``path``: a REST request's); raises the 429/418 error when the
        request is refused."""
        now = self._clock()
        self._roll(now)
        for i, (status, retry_after, only) in enumerate(self._forced):
            if only is None or only == path:
                del self._forced[i]
                raise self._error(status, retry_after, now)
        if now < self._banned_until:
            raise self._error(418, self._banned_until - now, now)
        self._weight += int(weight)
        if self._weight <= self.weight_limit:
            return
        if now < self._limited_until:
            # the client ignored Retry-After: ban, longer each time
            length = min(self.ban_seconds * (2**self._bans), MAX_BAN_SECONDS)
            self._bans += 1
            self._banned_until = now + length
            raise self._error(418, length, now)
        window_end = (self._minute + 1) * 60.0
        self._limited_until = window_end
        raise self._error(429, window_end - now, now)

    def check_orders(self) -> None:
        """Refuse a new order when the 10 s or daily order count is used up (-1015, 429)."""
        now = self._clock()
        self._roll(now)
        if self._orders_10s >= self.orders_per_10s:
            self.rejections += 1
            msg = f"Too many new orders; current limit is {self.orders_per_10s} orders per 10 SECOND."
            raise BinanceError(-1015, msg, 429, retry_after=max(1, math.ceil((self._ten + 1) * 10 - now)))
        if self._orders_day >= self.orders_per_day:
            self.rejections += 1
            msg = f"Too many new orders; current limit is {self.orders_per_day} orders per 1 DAY."
            raise BinanceError(-1015, msg, 429, retry_after=max(1, math.ceil((self._day + 1) * 86400 - now)))

    def count_order(self) -> None:
        self._roll(self._clock())
        self._orders_10s += 1
        self._orders_day += 1

    # --- reporting ----------------------------------------------------------------------------
    def headers(self, orders: bool = False) -> dict[str, str]:
        self._roll(self._clock())
        h = {"X-MBX-USED-WEIGHT": str(self._weight), "X-MBX-USED-WEIGHT-1M": str(self._weight)}
        if orders:
            h["X-MBX-ORDER-COUNT-10S"] = str(self._orders_10s)
            h["X-MBX-ORDER-COUNT-1D"] = str(self._orders_day)
        return h

    def rate_limits(self, orders: bool = False) -> list[dict]:
        """The WS API ``rateLimits`` array."""
        self._roll(self._clock())
        out = []
        if orders:
            out.append(
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 10,
                    "limit": self.orders_per_10s,
                    "count": self._orders_10s,
                }
            )
            out.append(
                {
                    "rateLimitType": "ORDERS",
                    "interval": "DAY",
                    "intervalNum": 1,
                    "limit": self.orders_per_day,
                    "count": self._orders_day,
                }
            )
        out.append(
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.weight_limit,
                "count": self._weight,
            }
        )
        return out

    def exchange_limits(self) -> list[dict]:
        """The ``rateLimits`` of ``exchangeInfo``."""
        return [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self.orders_per_10s},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": self.orders_per_day},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ]
