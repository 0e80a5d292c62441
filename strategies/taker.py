"""A trade-flow imbalance taker: the aggressive path (market orders, taker fees, slippage).

Keeps an exponentially decayed sum of signed aggressor volume (half-life ``half_life_ms``). When
it exceeds ``threshold`` base units it buys (or sells below ``-threshold``) with a market order,
up to ``max_position``; it closes the position after ``hold_ms``.
"""

from __future__ import annotations

import math

from engine.events import Fill, Trade
from engine.model import Side
from engine.strategy import Strategy
from engine.strategy_params import Param, Params

PARAMS = Params(
    half_life_ms=Param("number", 500, gt=0, doc="half-life of the signed trade-flow sum"),
    threshold=Param("number", 3.0, gt=0, doc="flow (base units) that triggers a market order"),
    order_size=Param("number", 0.01, gt=0, doc="base units per order"),
    max_position=Param("number", 0.03, gt=0, doc="largest position, either side"),
    hold_ms=Param("number", 2000, gt=0, doc="time after which a position is closed"),
    cooldown_ms=Param("number", 1000, ge=0, doc="minimum time between orders"),
)
DEFAULTS = PARAMS.defaults


class TradeFlowTaker(Strategy):
    wants_trades = True
    book_updates = "top"
    params_schema = PARAMS

    def __init__(self, strategy_id: str, venue: str, symbols: list[str], params: dict | None = None) -> None:
        super().__init__(strategy_id, venue, symbols, PARAMS.parse(params))
        p = self.params
        self.decay_per_ns = math.log(2) / (float(p["half_life_ms"]) * 1e6)
        self.threshold = float(p["threshold"])
        self.size = float(p["order_size"])
        self.max_pos = float(p["max_position"])
        self.hold_ns = int(float(p["hold_ms"]) * 1e6)
        self.cooldown_ns = int(float(p["cooldown_ms"]) * 1e6)
        self.flow = 0.0
        self.flow_ts = 0
        self.position_qty = 0.0
        self.opened_ts = 0
        self.last_order_ts = -(2**62)
        self.signals = 0

    def on_trade(self, trade: Trade) -> None:
        t = trade.ts_recv
        if self.flow_ts:
            self.flow *= math.exp(-self.decay_per_ns * (t - self.flow_ts))
        self.flow_ts = t
        self.flow += trade.side * trade.size
        if t - self.last_order_ts < self.cooldown_ns:
            return
        if self.position_qty != 0.0 and t - self.opened_ts >= self.hold_ns:
            self._send(Side.SELL if self.position_qty > 0 else Side.BUY, abs(self.position_qty), t)
            return
        if self.flow > self.threshold and self.position_qty + self.size <= self.max_pos + 1e-12:
            self.signals += 1
            self._send(Side.BUY, self.size, t)
        elif self.flow < -self.threshold and self.position_qty - self.size >= -self.max_pos - 1e-12:
            self.signals += 1
            self._send(Side.SELL, self.size, t)

    def _send(self, side: Side, qty: float, t: int) -> None:
        self.submit_market(side, qty)
        self.last_order_ts = t

    def on_fill(self, fill: Fill) -> None:
        was_flat = self.position_qty == 0.0
        self.position_qty = fill.position_after
        if was_flat and self.position_qty != 0.0:
            self.opened_ts = fill.ts_recv
