"""Paper trading's half of the simulated venue: the live feed's messages through our resting orders.

A live feed applies each message to the book once (the same fast path as live trading) and then
hands its levels to ``on_levels``; trades come through ``on_trade``. Both go through the compiled
venue logic of a backtest (``sim.matching``): queue positions from the size each order last saw
at its price (``R_LEVEL``), fills from trades at or through our price, and fills when the book
moves through a resting order. Fills are reported as happening ``act_delay`` before now (the
venue is ahead of our book by the feed latency) and reach us after the response latency, never
before now (``SimulatedVenue._respond``).

Nothing fills while the book is not valid (out of sync, crossed, stale, disconnected): the live
book is the simulated venue's only view of the market, and a fill on a book we cannot trust is
exactly the fiction paper trading must not produce. Queue positions still follow the levels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.book import Book
from engine.events import Trade
from sim.matching import F_COLS, cross_resting, on_levels, on_trade
from sim.venue import RestingOrders, dispatch_kernel_fills


class PaperMatching:
    """The feed callbacks (``on_levels``, ``on_trade``) that move a paper session's resting orders."""

    def __init__(
        self,
        resting: RestingOrders,
        streams: dict[tuple[str, str], int],
        clock: Any,
        queue_model: int,
        queue_power: float,
        act_delay_ns: int = 0,
    ) -> None:
        self.resting = resting
        self.streams = streams
        self.clock = clock
        self.queue_model = queue_model
        self.queue_power = float(queue_power)
        self.act_delay_ns = act_delay_ns
        self.fills = np.zeros((1024, F_COLS), dtype=np.int64)
        #: the live books, as the feed hands them over (a trade asks whether its book is valid)
        self.books: dict[tuple[str, str], Book] = {}
        self.messages = 0
        self.trades = 0
        self.blind_trades = 0  # trades not matched because the book was not valid

    def _dispatch(self, nf: int) -> None:
        dispatch_kernel_fills(self.resting, self.fills, nf, self.clock.now() - self.act_delay_ns)

    def on_levels(self, book: Book, bids: np.ndarray, asks: np.ndarray, snapshot: bool) -> None:
        self.messages += 1
        self.books[(book.venue, book.symbol)] = book
        resting = self.resting
        n = resting.n
        if n == 0:
            return
        s = self.streams.get((book.venue, book.symbol))
        if s is None:
            return
        rests = resting.arr
        qm, qp = self.queue_model, self.queue_power
        on_levels(rests, n, s, 0, bids, 0, len(bids), qm, qp)
        on_levels(rests, n, s, 1, asks, 0, len(asks), qm, qp)
        if not book.valid:
            # the feed marks a book valid after this hook: the message that ends a resync (and the
            # snapshot itself) moves queues but fills nothing; every later one finds it valid
            return
        bb, ba = book.best_bid_fixed, book.best_ask_fixed
        if bb and ba and bb >= ba:
            return  # a crossed book is not a market: the feed resyncs it, nobody trades on it
        nf = cross_resting(rests, n, s, bb, ba, self.fills, 0)
        if nf:
            self._dispatch(nf)

    def on_trade(self, trade: Trade) -> None:
        self.trades += 1
        resting = self.resting
        n = resting.n
        if n == 0:
            return
        s = self.streams.get((trade.venue, trade.symbol))
        if s is None:
            return
        book = self.books.get((trade.venue, trade.symbol))
        if book is None or not book.valid:
            self.blind_trades += 1
            return
        nf = on_trade(resting.arr, n, s, trade.price_fixed, trade.size_fixed, trade.side, self.fills, 0)
        if nf:
            self._dispatch(nf)
