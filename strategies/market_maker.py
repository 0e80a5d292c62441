"""A two-sided market maker: quotes around mid, skews both quotes against its inventory.

reservation = mid * (1 - skew_bps/1e4 * inventory/max_inventory)
bid = reservation * (1 - half_spread_bps/1e4), ask = reservation * (1 + half_spread_bps/1e4),
never inside the touch: the bid is at most the best bid and the ask at least the best ask
(post-only, so a quote that would cross is rejected rather than taking).
Quotes are refreshed at most every ``refresh_ms`` and only when the wanted price moved by at least
``requote_bps``; at ``max_inventory`` the side that would add to the position is pulled.
"""

from __future__ import annotations

from engine.book import Book
from engine.events import Fill
from engine.model import Side
from engine.orders import Order
from engine.strategy import Strategy
from engine.strategy_params import Param, Params

PARAMS = Params(
    half_spread_bps=Param("number", 0.5, gt=0, doc="distance of each quote from the reservation price"),
    order_size=Param("number", 0.01, gt=0, doc="base units per quote"),
    max_inventory=Param("number", 0.1, gt=0, doc="position (base units) at which the adding side is pulled"),
    skew_bps=Param("number", 1.0, ge=0, doc="reservation shift at max_inventory"),
    refresh_ms=Param("number", 250, gt=0, doc="minimum time between requotes"),
    requote_bps=Param("number", 0.2, ge=0, doc="move (of mid) that makes a live quote worth replacing"),
    post_only=Param("bool", True),
)
DEFAULTS = PARAMS.defaults


class MarketMaker(Strategy):
    book_updates = "top"
    warm = True  # acts only through the strategy API
    params_schema = PARAMS

    def __init__(self, strategy_id: str, venue: str, symbols: list[str], params: dict | None = None) -> None:
        super().__init__(strategy_id, venue, symbols, PARAMS.parse(params))
        p = self.params
        self.half_spread = float(p["half_spread_bps"]) / 1e4
        self.size = float(p["order_size"])
        self.max_inv = float(p["max_inventory"])
        self.skew = float(p["skew_bps"]) / 1e4
        self.refresh_ns = int(float(p["refresh_ms"]) * 1_000_000)
        self.requote = float(p["requote_bps"]) / 1e4
        self.post_only = bool(p["post_only"])
        self.bid: Order | None = None
        self.ask: Order | None = None
        self.inventory = 0.0
        self.last_quote_ts = -(2**62)
        self.quotes = 0

    def on_start(self) -> None:
        self.log.info("strategy_id: %s started: %s", self.strategy_id, self.params)

    def on_book(self, book: Book) -> None:
        now = book.ts_recv
        if now - self.last_quote_ts < self.refresh_ns:
            return
        mid = book.mid
        if mid != mid:  # NaN: one side empty
            return
        inv_ratio = self.inventory / self.max_inv
        reservation = mid * (1.0 - self.skew * inv_ratio)
        want_bid = min(reservation * (1.0 - self.half_spread), book.best_bid)
        want_ask = max(reservation * (1.0 + self.half_spread), book.best_ask)
        quoted = False
        if self.inventory < self.max_inv:
            quoted |= self._quote(Side.BUY, want_bid, mid)
        elif self.bid is not None:
            self.cancel(self.bid)
        if self.inventory > -self.max_inv:
            quoted |= self._quote(Side.SELL, want_ask, mid)
        elif self.ask is not None:
            self.cancel(self.ask)
        if quoted:
            self.last_quote_ts = now

    def _quote(self, side: Side, price: float, mid: float) -> bool:
        live = self.bid if side is Side.BUY else self.ask
        if live is not None and live.is_open:
            if live.cancel_requested:
                return False
            inst = self.engine.instruments[(self.venue, self.symbols[0])]
            if abs(inst.price(live.price) - price) < self.requote * mid:
                return False
            order = self.modify(live, price=price)
        else:
            order = self.submit_limit(side, price, self.size, post_only=self.post_only)
        if side is Side.BUY:
            self.bid = order
        else:
            self.ask = order
        self.quotes += 1
        return True

    def on_order_update(self, order: Order) -> None:
        if not order.is_open:
            if self.bid is order:
                self.bid = None
            elif self.ask is order:
                self.ask = None

    def on_fill(self, fill: Fill) -> None:
        self.inventory = fill.position_after
        # inventory changed: let the next book update requote immediately
        self.last_quote_ts = -(2**62)

    def on_stop(self) -> None:
        self.cancel_all()
        self.log.info(
            "strategy_id: %s stopped: quotes=%d inventory=%.6f", self.strategy_id, self.quotes, self.inventory
        )
