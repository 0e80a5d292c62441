"""Ticker statistics of the fake's market: ``/api/v3/ticker/price``, ``/api/v3/ticker/24hr``,
``/api/v3/avgPrice`` and the ``<symbol>@ticker`` stream (``24hrTicker`` events).

Statistics come from the trades the replay publishes, over a rolling 24 hours of event time (a
capture rarely spans a day, so in practice since the replay began), the bid and ask from the
fake's book. The stream pushes at most once a second per symbol, as Binance's does (1000 ms).
Prices and quantities stay 8-decimal fixed-point integers until they are formatted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine.book import Book
from sim.fake_binance.symbols import SCALE, fmt

DAY_MS = 86_400_000
AVG_PRICE_MINS = 5  # /api/v3/avgPrice: Binance averages the last 5 minutes of trades
PUSH_EVERY_MS = 1000


@dataclass
class _Trade:
    ts_ms: int
    price: int
    qty: int
    trade_id: int


@dataclass
class _Symbol:
    trades: deque[_Trade] = field(default_factory=deque)
    last_push_ms: int = -PUSH_EVERY_MS


class TickerStats:
    def __init__(self, books: dict[str, Book]) -> None:
        self.books = books
        self._sym: dict[str, _Symbol] = {s: _Symbol() for s in books}

    def on_trade(self, symbol: str, price: int, qty: int, trade_id: int, ts_ms: int) -> None:
        st = self._sym.setdefault(symbol, _Symbol())
        st.trades.append(_Trade(ts_ms, price, qty, trade_id))
        cutoff = ts_ms - DAY_MS
        while st.trades and st.trades[0].ts_ms < cutoff:
            st.trades.popleft()

    def due(self, symbol: str, now_ms: int) -> bool:
        """Whether the ``@ticker`` stream of ``symbol`` pushes now (and note that it did)."""
        st = self._sym.setdefault(symbol, _Symbol())
        if now_ms - st.last_push_ms < PUSH_EVERY_MS:
            return False
        st.last_push_ms = now_ms
        return True

    def _last(self, symbol: str) -> int:
        trades = self._sym[symbol].trades
        if trades:
            return trades[-1].price
        book = self.books[symbol]
        bid, ask = book.best_bid_fixed, book.best_ask_fixed
        return (bid + ask) // 2 if bid and ask else bid or ask

    def price_json(self, symbol: str) -> dict:
        return {"symbol": symbol, "price": fmt(self._last(symbol))}

    def avg_price_json(self, symbol: str, now_ms: int) -> dict:
        since = now_ms - AVG_PRICE_MINS * 60_000
        recent = [t for t in self._sym[symbol].trades if t.ts_ms >= since]
        qty = sum(t.qty for t in recent)
        price = sum(t.price * t.qty for t in recent) // qty if qty else self._last(symbol)
        close = recent[-1].ts_ms if recent else now_ms
        return {"mins": AVG_PRICE_MINS, "price": fmt(price), "closeTime": close}

    def stats_json(self, symbol: str, now_ms: int) -> dict:
        """``/api/v3/ticker/24hr`` (FULL) for one symbol."""
        trades = self._sym[symbol].trades
        book = self.books[symbol]
        last = self._last(symbol)
        if trades:
            first = trades[0]
            open_ = first.price
            high = max(t.price for t in trades)
            low = min(t.price for t in trades)
            volume = sum(t.qty for t in trades)
            quote = sum(t.price * t.qty for t in trades) // SCALE
            vwap = quote * SCALE // volume if volume else 0
            first_id, last_id, count, open_ms = first.trade_id, trades[-1].trade_id, len(trades), first.ts_ms
            last_qty = trades[-1].qty
        else:
            open_ = high = low = last
            volume = quote = vwap = last_qty = 0
            first_id, last_id, count, open_ms = -1, -1, 0, now_ms - DAY_MS
        change = last - open_
        pct = f"{change * 100 / open_:.3f}" if open_ else "0.000"
        return {
            "symbol": symbol,
            "priceChange": fmt(change),
            "priceChangePercent": pct,
            "weightedAvgPrice": fmt(vwap),
            "prevClosePrice": fmt(open_),
            "lastPrice": fmt(last),
            "lastQty": fmt(last_qty),
            "bidPrice": fmt(book.best_bid_fixed),
            "bidQty": fmt(book.best_bid_size_fixed),
            "askPrice": fmt(book.best_ask_fixed),
            "askQty": fmt(book.best_ask_size_fixed),
            "openPrice": fmt(open_),
            "highPrice": fmt(high),
            "lowPrice": fmt(low),
            "volume": fmt(volume),
            "quoteVolume": fmt(quote),
            "openTime": open_ms,
            "closeTime": now_ms,
            "firstId": first_id,
            "lastId": last_id,
            "count": count,
        }

    def event(self, symbol: str, now_ms: int) -> dict:
        """The ``24hrTicker`` stream event: the REST statistics under the stream's one-letter keys."""
        s = self.stats_json(symbol, now_ms)
        return {
            "e": "24hrTicker",
            "E": now_ms,
            "s": symbol,
            "p": s["priceChange"],
            "P": s["priceChangePercent"],
            "w": s["weightedAvgPrice"],
            "x": s["prevClosePrice"],
            "c": s["lastPrice"],
            "Q": s["lastQty"],
            "b": s["bidPrice"],
            "B": s["bidQty"],
            "a": s["askPrice"],
            "A": s["askQty"],
            "o": s["openPrice"],
            "h": s["highPrice"],
            "l": s["lowPrice"],
            "v": s["volume"],
            "q": s["quoteVolume"],
            "O": s["openTime"],
            "C": s["closeTime"],
            "F": s["firstId"],
            "L": s["lastId"],
            "n": s["count"],
        }
