"""Quote at the touch: one post-only order at the best bid and one at the best ask, always.

The fidelity benchmark's strategy (``bench/fidelity_hftbacktest.py`` runs the same decisions in
hftbacktest). It acts after every book message (``book_updates = "every"``), by default never on trades,
and decides each side on its own, bid first, then ask:

* an order of ours on that side is *active* when it is live (not filled, cancelled, rejected or
  expired) and no cancel has been requested for it;
* an active order whose price is not the touch is cancelled, if the venue has acknowledged it;
  an order the venue has not acknowledged yet is left alone (neither cancelled nor replaced)
  until a book message after its acknowledgement;
* when the side has no active order left, one order of ``order_size`` is submitted at the touch.

So a side holds at most one active order, at the touch or on its way there; orders being
cancelled may still rest until the venue confirms. The rule about unacknowledged orders is
hftbacktest's: it refuses a cancel while an order's new-order request is in flight
(``OrderRequestInProcess``), and this strategy must make the same decisions in both engines.
No inventory limit, no timers, nothing on stop (orders still open at the end stay open, as the
hftbacktest loop leaves them).

Params: ``order_size`` (base units, default 0.001), ``post_only`` (default true),
``act_on_trades`` (default false: also act, with the current book, after every public trade;
what a loop around hftbacktest's ``wait_next_feed`` does when it does not skip trades),
``trace`` (default false: keep (time, side, price) of every submit in ``submitted``, for the
benchmark's decision-by-decision comparison).
"""

from __future__ import annotations

from typing import Any

from engine.book import Book
from engine.events import Fill, Trade
from engine.model import OrderStatus, Side
from engine.orders import Order
from engine.strategy import Strategy
from engine.strategy_params import Param, Params

PARAMS = Params(
    order_size=Param("number", 0.001, gt=0, doc="base units per order"),
    post_only=Param("bool", True),
    act_on_trades=Param("bool", False, doc="also act after every public trade"),
    trace=Param("bool", False, doc="keep (time, side, price) of every submit in ``submitted``"),
)
DEFAULTS: dict[str, Any] = PARAMS.defaults

_PENDING = OrderStatus.PENDING
_REJECTED = OrderStatus.REJECTED
_BUY = Side.BUY
_SELL = Side.SELL


class QuoteAtTouch(Strategy):
    book_updates = "every"
    params_schema = PARAMS

    def __init__(self, strategy_id: str, venue: str, symbols: list[str], params: dict | None = None) -> None:
        super().__init__(strategy_id, venue, symbols, PARAMS.parse(params))
        self.size = float(self.params["order_size"])
        self.post_only = self.params["post_only"]
        # read by the engine when the strategy is added: ask for trades only when acting on them
        self.wants_trades = self.params["act_on_trades"]
        # counters the benchmark compares with hftbacktest's
        self.wakes = 0
        self.submits = 0  # orders handed to the venue (not refused by our own risk/filters)
        self.local_rejects = 0
        self.cancels = 0
        self.rejects = 0  # orders the venue or our checks rejected (post-only would take, filters)
        self.fills = 0
        self.filled_qty = 0.0
        self.trace = self.params["trace"]
        self.submitted: list[tuple[int, int, int]] = []  # (local time ns, +1 buy / -1 sell, fixed price)

    def on_book(self, book: Book) -> None:
        self._quote(book)

    def on_trade(self, trade: Trade) -> None:
        book = self.book(trade.symbol, trade.venue)
        if book.valid:
            self._quote(book)

    def _quote(self, book: Book) -> None:
        bid = book.best_bid_fixed
        ask = book.best_ask_fixed
        if not bid or not ask:
            return
        self.wakes += 1
        orders = self.open_orders(self.symbols[0])
        self._side(_BUY, bid, orders, book)
        self._side(_SELL, ask, orders, book)

    def _side(self, side: Side, touch: int, orders: list[Order], book: Book) -> None:
        active = False
        for order in orders:
            if order.side is not side or order.cancel_requested or order.status.is_terminal:
                continue
            if order.status is _PENDING or order.price == touch:
                active = True
            else:
                self.cancel(order)
                self.cancels += 1
        if not active:
            order = self.submit_limit(side, book.instrument.price(touch), self.size, post_only=self.post_only)
            if order.status is _REJECTED:
                self.local_rejects += 1
            else:
                self.submits += 1
                if self.trace:
                    self.submitted.append((self.now, int(side), touch))

    def on_order_update(self, order: Order) -> None:
        if order.status is _REJECTED:
            self.rejects += 1

    def on_fill(self, fill: Fill) -> None:
        self.fills += 1
        self.filled_qty += fill.qty

    def stats(self) -> dict[str, Any]:
        """The counters and the final position, for reports and the fidelity benchmark."""
        return {
            "wakes": self.wakes,
            "submits": self.submits,
            "local_rejects": self.local_rejects,
            "cancels": self.cancels,
            "rejects": self.rejects,
            "fills": self.fills,
            "filled_qty": self.filled_qty,
            "position": self.position(),
        }
