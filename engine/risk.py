"""Pre-trade risk: every new order passes these checks before the order manager sends it.

Checks run in this order and stop at the first failure (the ``check`` names are the event log's):

``trading_enabled``  the global kill switch (and a strategy's own ``trading_enabled``)
``strategy_halted``  halted by the operator or by the daily loss limit
``max_order_size``   order notional > ``max_order_size_usd``
``price_band``       limit price further than ``price_band_pct`` percent from mid (also: a market
                     order when there is no mid to value it at)
``position_limit``   the strategy's gross position after a full fill > ``max_position_usd``
``global_position_limit``  all strategies' gross position after a full fill > ``max_global_position_usd``
``daily_loss``       today's (UTC) net P&L <= ``-daily_loss_limit_usd``: also halts the strategy
``order_rate``       orders accepted in the last second (engine clock) >= ``max_orders_per_second``
``balance``          not enough free balance / margin (see ``Portfolio.order_hold``); free is what
                     open orders do not hold: an order that passes gets ``hold_asset``/``held``
                     set, and the order manager moves that amount from free to held until the
                     order fills, is cancelled, rejected or expires

Orders are valued at their limit price (market orders at mid); inverse contracts at
``contracts * contract_size`` USD. Orders that reduce the position (without flipping it) always
pass both position limits. A strategy halted by the daily loss limit resumes by itself at the next
UTC day; a strategy halted by the operator stays halted until ``resume``.

Rejections are logged to ``risk.log`` at WARNING in the operator guide's wording
(``Risk check failed: Position limit exceeded strategy_id=... value=... limit=... (risk check
failed)``, the lower-case tag for the guide's case-sensitive grep); passes are
only counted, to keep the hot path free of formatting. ``log_stats`` writes a periodic
``risk check latency`` line with counts and timings.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from engine.config import unknown_field
from engine.errors import ConfigError
from engine.logs import get_logger
from engine.model import Instrument, OrderType, Side
from engine.orders import Order
from engine.portfolio import Portfolio

DAY_NS = 86_400 * 1_000_000_000
_WINDOW_NS = 1_000_000_000
# Hot-path constants: enum member and module attribute lookups are surprisingly costly per order.
_BUY = Side.BUY
_LIMIT = OrderType.LIMIT
_INF = math.inf
_NAN = math.nan
_perf_ns = time.perf_counter_ns

PREFIX = "Risk check failed: "
REASONS: dict[str, str] = {
    "trading_enabled": PREFIX + "Trading disabled",
    "strategy_halted": PREFIX + "Strategy halted",
    "max_order_size": PREFIX + "Order size too large",
    "price_band": PREFIX + "Price outside band",
    "position_limit": PREFIX + "Position limit exceeded",
    "global_position_limit": PREFIX + "Global position limit exceeded",
    "daily_loss": PREFIX + "Daily loss limit reached",
    "order_rate": PREFIX + "Order rate limit exceeded",
    "balance": PREFIX + "Insufficient balance",
}
CHECKS = tuple(REASONS)
# Halt reason (without the prefix, so grepping "risk check failed" counts each breach once).
_DAILY_LOSS_HALT = "Daily loss limit reached"

# Names the operator guide uses for the same limits (``POST /api/v1/risk/limits``).
ALIASES = {"position_limit_usd": "max_position_usd"}

_log = get_logger("risk")


@dataclass
class RiskLimits:
    """Limits in USD (quote) unless named otherwise; 0 (or null in a config) disables a check."""

    trading_enabled: bool = True
    max_order_size_usd: float = 0.0
    max_position_usd: float = 0.0  # per strategy
    max_global_position_usd: float = 0.0  # all strategies
    daily_loss_limit_usd: float = 0.0  # halts the strategy when breached
    max_orders_per_second: float = 0.0  # per strategy, sliding 1 s window on the engine clock
    price_band_pct: float = 0.0  # limit price must be within +-pct percent of mid
    check_balance: bool = True
    leverage: float = 1.0  # derivatives margin = notional / leverage

    @classmethod
    def from_dict(cls, d: Any, where: str, base: RiskLimits | None = None) -> RiskLimits:
        """Validated limits from a config mapping; fields not given come from ``base`` (or defaults).

        Raises ``ConfigError(where, "risk.<field>: ...")`` naming the offending field.
        """
        return replace(base or cls(), **cls.parse_updates(d, where))

    @classmethod
    def parse_updates(cls, d: Any, where: str) -> dict[str, Any]:
        """Validate a (partial) mapping of limits; returns canonical field name -> value."""
        if not isinstance(d, dict):
            raise ConfigError(where, f"risk: must be an object, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        out: dict[str, Any] = {}
        for key, value in d.items():
            name = ALIASES.get(key, key)
            if name not in known:
                raise ConfigError(where, f"risk.{key}: {unknown_field(key, [*known, *ALIASES])}")
            if name in ("trading_enabled", "check_balance"):
                if not isinstance(value, bool):
                    raise ConfigError(where, f"risk.{key}: must be true or false")
                out[name] = value
                continue
            if value is None and name != "leverage":
                out[name] = 0.0
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                bound = "> 0" if name == "leverage" else ">= 0"
                raise ConfigError(where, f"risk.{key}: must be a number {bound}")
            if name == "leverage":
                if value <= 0:
                    raise ConfigError(where, f"risk.{key}: must be a number > 0")
            elif value < 0:
                raise ConfigError(where, f"risk.{key}: must be a number >= 0")
            out[name] = float(value)
        return out


@dataclass(slots=True)
class RiskDecision:
    passed: bool
    check: str
    reason: str
    value: float = 0.0
    limit: float = 0.0


#: The one decision object every passing check returns (no allocation on the hot path): do not mutate.
PASSED = RiskDecision(True, "ok", "")


class _Halt:
    __slots__ = ("auto_day", "reason")

    def __init__(self, reason: str, auto_day: int) -> None:
        self.reason = reason
        self.auto_day = auto_day  # >= 0: lifted automatically once the engine clock passes this UTC day


class RiskEngine:
    """Pre-trade checks against global and per-strategy limits, using the portfolio's state.

    ``strategy_limits`` values are either full ``RiskLimits`` (every field fixed for that
    strategy) or partial dicts of overrides; fields a strategy does not override follow the global
    limits, including later ``set_limits`` updates. ``max_global_position_usd`` and the kill
    switch are always global.
    """

    def __init__(
        self,
        limits: RiskLimits,
        portfolio: Portfolio,
        strategy_limits: dict[str, RiskLimits | dict[str, Any]] | None = None,
        violations_kept: int = 1000,
    ) -> None:
        self._limits = limits
        self.portfolio = portfolio
        self._overrides: dict[str, dict[str, Any]] = {}
        self._effective: dict[str, RiskLimits] = {}
        for sid, lim in (strategy_limits or {}).items():
            if isinstance(lim, RiskLimits):
                self._overrides[sid] = asdict(lim)
            else:
                self._overrides[sid] = RiskLimits.parse_updates(lim, f"strategy_limits.{sid}")
        self._rebuild()
        self._halted: dict[str, _Halt] = {}
        self._recent: dict[str, deque[int]] = {}
        self._violations: deque[dict[str, Any]] = deque(maxlen=violations_kept)
        self._last_now = 0
        self._checks = 0
        self._passed = 0
        self._failed: dict[str, int] = dict.fromkeys(CHECKS, 0)
        # Timing of check() in wall-clock ns since the last log_stats (or start).
        self._lat_n = 0
        self._lat_sum = 0
        self._lat_max = 0
        #: Called as ``on_halt(strategy_id, reason, now_ns)`` when the risk engine halts a strategy by
        #: itself (daily loss), so the engine can cancel its open orders and raise an incident.
        self.on_halt: Callable[[str, str, int], None] | None = None
        #: the daemon's ring of check timings (``engine.daemon.telemetry.LatencyRing``): ``add(ns)``
        self.latency_ring: Any = None

    # -- limits ----------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        self._effective = {sid: replace(self._limits, **ov) for sid, ov in self._overrides.items()}

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    def limits_for(self, strategy_id: str) -> RiskLimits:
        return self._effective.get(strategy_id, self._limits)

    @property
    def trading_enabled(self) -> bool:
        return self._limits.trading_enabled

    @trading_enabled.setter
    def trading_enabled(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"trading_enabled must be a bool, got {type(enabled).__name__}")
        if enabled != self._limits.trading_enabled:
            _log.warning("Trading %s by operator", "enabled" if enabled else "disabled")
        self._limits = replace(self._limits, trading_enabled=enabled)
        self._rebuild()

    def set_limits(
        self, updates: dict[str, Any], strategy_id: str | None = None, where: str = "risk limits update"
    ) -> RiskLimits:
        """Validated partial update of the global limits or of one strategy's overrides.

        Returns the limits now in force (global, or the strategy's effective limits). Raises
        ``ConfigError`` naming the field; nothing changes when any field is invalid.
        """
        parsed = RiskLimits.parse_updates(updates, where)
        if strategy_id is None:
            self._limits = replace(self._limits, **parsed)
            self._rebuild()
            result = self._limits
        else:
            self._overrides.setdefault(strategy_id, {}).update(parsed)
            self._rebuild()
            result = self._effective[strategy_id]
        _log.info(
            "Risk limits updated strategy_id=%s %s",
            strategy_id or "*",
            " ".join(f"{k}={v}" for k, v in sorted(parsed.items())),
        )
        return result

    def replace_strategy_limits(self, strategy_id: str, overrides: dict[str, Any]) -> RiskLimits:
        """A strategy's overrides replaced whole (a config reload): fields it no longer names
        follow the global limits again."""
        parsed = RiskLimits.parse_updates(overrides, f"strategy_limits.{strategy_id}")
        if parsed:
            self._overrides[strategy_id] = parsed
        else:
            self._overrides.pop(strategy_id, None)
        self._rebuild()
        _log.info(
            "Risk limits replaced strategy_id=%s %s",
            strategy_id,
            " ".join(f"{k}={v}" for k, v in sorted(parsed.items())) or "(global limits)",
        )
        return self.limits_for(strategy_id)

    # -- halts -----------------------------------------------------------------------------------

    def halt(self, strategy_id: str, reason: str, *, until_day: int = -1) -> None:
        """Stop the strategy's new orders; ``until_day`` >= 0 lifts the halt after that UTC day."""
        self._halted[strategy_id] = _Halt(reason, until_day)
        _log.warning("Strategy halted strategy_id=%s reason=%s", strategy_id, reason)

    def resume(self, strategy_id: str) -> None:
        if self._halted.pop(strategy_id, None) is not None:
            _log.info("Strategy resumed strategy_id=%s", strategy_id)

    def halted(self) -> list[str]:
        """The strategies halted now."""
        return list(self._halted)

    def clear_order_rate(self) -> None:
        """Empty every strategy's order-rate window (``engine.warm``'s shadow, between passes)."""
        self._recent.clear()

    def is_halted(self, strategy_id: str) -> bool:
        return strategy_id in self._halted

    def halt_reason(self, strategy_id: str) -> str:
        h = self._halted.get(strategy_id)
        return h.reason if h is not None else ""

    # -- the checks ------------------------------------------------------------------------------

    def _fail(self, order: Order, check: str, value: float, limit: float, t0: int) -> RiskDecision:
        reason = REASONS[check]
        self._failed[check] += 1
        self._violations.append(
            {
                "ts": self._last_now,
                "strategy_id": order.strategy_id,
                "venue": order.venue,
                "symbol": order.symbol,
                "client_order_id": order.client_order_id,
                "check": check,
                "reason": reason,
                "value": value if math.isfinite(value) else None,
                "limit": limit,
            }
        )
        _log.warning(  # the guide greps risk.log for lower-case "risk check failed" (§4.1)
            "%s strategy_id=%s venue=%s symbol=%s client_order_id=%s value=%.6g limit=%.6g (risk check failed)",
            reason,
            order.strategy_id,
            order.venue,
            order.symbol,
            order.client_order_id,
            value,
            limit,
        )
        self._timed(t0)
        return RiskDecision(False, check, reason, value, limit)

    def _timed(self, t0: int) -> None:
        dt = _perf_ns() - t0
        if self.latency_ring is not None:
            self.latency_ring.add(dt)
        self._lat_n += 1
        self._lat_sum += dt
        if dt > self._lat_max:
            self._lat_max = dt

    def check(self, order: Order, instrument: Instrument, mid: float, now_ns: int) -> RiskDecision:
        """Run every check on a new order; the first failure is returned (and logged)."""
        t0 = _perf_ns()
        self._checks += 1
        self._last_now = now_ns
        sid = order.strategy_id
        glob = self._limits
        lim = self._effective.get(sid, glob)

        if not glob.trading_enabled or not lim.trading_enabled:
            return self._fail(order, "trading_enabled", 0.0, 0.0, t0)

        if self._halted:
            halt = self._halted.get(sid)
            if halt is not None:
                if 0 <= halt.auto_day < now_ns // DAY_NS:
                    self.resume(sid)
                else:
                    return self._fail(order, "strategy_halted", 0.0, 0.0, t0)

        pf = self.portfolio
        # the portfolio's own lookups (spec, find, free), inlined: this runs for every order
        spec = pf._specs.get(id(instrument))
        if spec is None or spec.instrument is not instrument:
            spec = pf.spec(instrument)
        is_limit = order.order_type is _LIMIT and order.price > 0
        mid_ok = 0.0 < mid < _INF  # False for NaN too
        if is_limit:
            px = order.price / spec.pdiv
        elif mid_ok:
            px = mid
        else:
            # A market order with no mid cannot be valued, so none of the limits can be tested.
            return self._fail(order, "price_band", _NAN, lim.price_band_pct, t0)

        qty = order.qty
        sdiv = spec.sdiv
        unit = spec.cs if spec.inverse else spec.cs * px  # quote per size unit
        notional = qty / sdiv * unit
        limit = lim.max_order_size_usd
        if limit > 0.0 and notional > limit:
            return self._fail(order, "max_order_size", notional, limit, t0)

        band = lim.price_band_pct
        if band > 0.0 and is_limit:
            if not mid_ok:
                return self._fail(order, "price_band", _NAN, band, t0)
            dev = abs(px - mid) / mid * 100.0
            if dev > band:
                return self._fail(order, "price_band", dev, band, t0)

        buy = order.side is _BUY
        pos = pf._positions.get((sid, order.venue, order.symbol))
        q = pos.qty if pos is not None else 0
        max_pos = lim.max_position_usd
        max_glob = glob.max_global_position_usd
        if max_pos > 0.0 or max_glob > 0.0:
            new_q = q + qty if buy else q - qty
            # Reducing without flipping always passes: it can only bring the position down.
            reducing = q != 0 and (q > 0) != buy and (new_q == 0 or (new_q > 0) == (q > 0))
            if not reducing:
                current = pos.notional if pos is not None else 0.0
                after = (new_q if new_q > 0 else -new_q) / sdiv * unit
                if max_pos > 0.0:
                    total = pf.position_usd(sid) - current + after
                    if total > max_pos:
                        return self._fail(order, "position_limit", total, max_pos, t0)
                if max_glob > 0.0:
                    total = pf.position_usd(None) - current + after
                    if total > max_glob:
                        return self._fail(order, "global_position_limit", total, max_glob, t0)

        loss_limit = lim.daily_loss_limit_usd
        if loss_limit > 0.0:
            day = now_ns // DAY_NS
            pnl = pf.daily_pnl(sid, day)
            if pnl <= -loss_limit:
                self.halt(sid, _DAILY_LOSS_HALT, until_day=day)
                decision = self._fail(order, "daily_loss", pnl, -loss_limit, t0)
                if self.on_halt is not None:
                    self.on_halt(sid, _DAILY_LOSS_HALT, now_ns)
                return decision

        recent = self._recent.get(sid)
        if recent is None:
            recent = self._recent[sid] = deque()
        cutoff = now_ns - _WINDOW_NS
        while recent and recent[0] <= cutoff:
            recent.popleft()
        rate = lim.max_orders_per_second
        if rate > 0.0 and len(recent) >= rate:
            return self._fail(order, "order_rate", float(len(recent) + 1), rate, t0)

        # what the order could spend while it is open: the order manager holds it (free -> held)
        asset, need = spec.hold(buy, px, qty, q, lim.leverage, spec.hold_fee(order.post_only, is_limit))
        if lim.check_balance and need > 0.0:
            if spec.spot:
                free = pf._free.get(order.venue)
                have = free.get(asset, 0.0) if free is not None else 0.0
            else:
                have = pf.available_margin(order.venue, asset, lim.leverage)
            if have < need:
                return self._fail(order, "balance", need, have, t0)
        order.hold_asset = asset
        order.held = need

        recent.append(now_ns)
        self._passed += 1
        dt = _perf_ns() - t0
        if self.latency_ring is not None:
            self.latency_ring.add(dt)
        self._lat_n += 1
        self._lat_sum += dt
        if dt > self._lat_max:
            self._lat_max = dt
        return PASSED

    def on_fill(self, strategy_id: str, now_ns: int) -> RiskDecision | None:
        """Re-evaluate the daily loss after a fill; a breach halts the strategy and is returned."""
        self._last_now = now_ns
        lim = self._effective.get(strategy_id, self._limits)
        loss_limit = lim.daily_loss_limit_usd
        day = now_ns // DAY_NS
        halt = self._halted.get(strategy_id)
        if halt is not None and 0 <= halt.auto_day < day:
            self.resume(strategy_id)
            halt = None
        if loss_limit <= 0.0:
            return None
        pnl = self.portfolio.daily_pnl(strategy_id, day)
        if pnl > -loss_limit or halt is not None:
            return None
        reason = REASONS["daily_loss"]
        self.halt(strategy_id, _DAILY_LOSS_HALT, until_day=day)
        _log.warning(
            "%s strategy_id=%s value=%.6g limit=%.6g (risk check failed)", reason, strategy_id, pnl, -loss_limit
        )
        self._violations.append(
            {
                "ts": now_ns,
                "strategy_id": strategy_id,
                "venue": "",
                "symbol": "",
                "client_order_id": "",
                "check": "daily_loss",
                "reason": reason,
                "value": pnl,
                "limit": -loss_limit,
            }
        )
        if self.on_halt is not None:
            self.on_halt(strategy_id, _DAILY_LOSS_HALT, now_ns)
        return RiskDecision(False, "daily_loss", reason, pnl, -loss_limit)

    # -- reporting -------------------------------------------------------------------------------

    def violations(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent failed checks, newest last (``GET /api/v1/risk/violations``)."""
        if limit <= 0:
            return []
        items = list(self._violations)
        return items[-limit:]

    def order_rate(self, strategy_id: str, now_ns: int | None = None) -> int:
        """Orders accepted for the strategy in the last second of engine time."""
        recent = self._recent.get(strategy_id)
        if not recent:
            return 0
        cutoff = (self._last_now if now_ns is None else now_ns) - _WINDOW_NS
        return sum(1 for t in recent if t > cutoff)

    def log_stats(self) -> dict[str, float]:
        """Log one ``risk check latency`` line (counts, mean/max µs) and restart the timing window."""
        n = self._lat_n
        stats = {
            "checks": float(self._checks),
            "passed": float(self._passed),
            "failed": float(self._checks - self._passed),
            "mean_us": self._lat_sum / n / 1000.0 if n else 0.0,
            "max_us": self._lat_max / 1000.0,
        }
        _log.info(
            "risk check latency checks=%d passed=%d failed=%d window=%d mean_us=%.2f max_us=%.2f",
            self._checks,
            self._passed,
            self._checks - self._passed,
            n,
            stats["mean_us"],
            stats["max_us"],
        )
        self._lat_n = self._lat_sum = self._lat_max = 0
        return stats

    def summary(self, now_ns: int | None = None) -> dict[str, Any]:
        """JSON-able limits and usage (``GET /api/v1/risk/summary``).

        ``now_ns`` (engine clock) picks the UTC day for daily P&L and the order-rate window;
        default: the last time the engine saw (a check or a fill).
        """
        now = self._last_now if now_ns is None else now_ns
        day = now // DAY_NS
        pf = self.portfolio
        sids = sorted(set(pf.strategies()) | set(self._overrides) | set(self._halted) | set(self._recent))
        strategies: dict[str, Any] = {}
        for sid in sids:
            lim = self.limits_for(sid)
            realized, unrealized, fees = pf.strategy_pnl(sid)
            halt = self._halted.get(sid)
            strategies[sid] = {
                "limits": asdict(lim),
                "position_usd": pf.position_usd(sid),
                "daily_pnl": _finite(pf.daily_pnl(sid, day, roll=False)),
                "realized_pnl": _finite(realized),
                "unrealized_pnl": _finite(unrealized),
                "fees": _finite(fees),
                "halted": halt is not None,
                "halt_reason": halt.reason if halt is not None else "",
                "orders_last_second": self.order_rate(sid, now),
            }
        return {
            "trading_enabled": self._limits.trading_enabled,
            "limits": asdict(self._limits),
            "usage": {
                "global_position_usd": pf.position_usd(None),
                "daily_pnl": _finite(pf.daily_pnl(None, day, roll=False)),
            },
            "strategies": strategies,
            "checks": {
                "total": self._checks,
                "passed": self._passed,
                "failed": self._checks - self._passed,
                "by_check": dict(self._failed),
            },
            "latency_us": {
                "mean": self._lat_sum / self._lat_n / 1000.0 if self._lat_n else 0.0,
                "max": self._lat_max / 1000.0,
            },
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
