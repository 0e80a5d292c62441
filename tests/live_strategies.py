"""Strategies the live-trading tests run in an ``hft live`` subprocess (``tests/`` on its path)."""

from __future__ import annotations

from engine.model import Side, TimeInForce
from engine.strategy import Strategy


class Ladder(Strategy):
    """Keeps ``levels`` post-only bids resting ``gap`` (quote) apart below the best bid; on its first
    book buys ``size`` at the ask with an IOC (a fill), and after ``replace_after`` books cancels its
    deepest bid and places it again (a cancel). Bids it finds open (adopted at start-up) count as
    its own: it only ever tops the ladder up to ``levels``."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        p = self.params
        self.levels = int(p.get("levels", 3))
        self.gap = float(p.get("gap", 150.0))
        self.size = float(p.get("size", 0.0002))
        self.take = bool(p.get("take", True))
        self.replace_after = int(p.get("replace_after", 20))
        self.books = 0
        self.replaced = False

    def _resting(self) -> list:
        return [o for o in self.open_orders() if o.side is Side.BUY and o.post_only and not o.cancel_requested]

    def on_start(self) -> None:
        self.log.info("ladder %s starts with %d open orders", self.strategy_id, len(self.open_orders()))

    def on_book(self, book) -> None:
        self.books += 1
        if self.take:
            self.take = False
            self.submit_limit(Side.BUY, book.best_ask * 1.0005, self.size, tif=TimeInForce.IOC)
        resting = sorted(self._resting(), key=lambda o: o.price)
        if self.books >= self.replace_after and not self.replaced and len(resting) == self.levels:
            self.replaced = True
            self.cancel(resting[0])
            resting = resting[1:]
        for k in range(len(resting) + 1, self.levels + 1):
            self.submit_limit(Side.BUY, book.best_bid - self.gap * k, self.size, post_only=True)
