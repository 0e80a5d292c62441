"""The fake Kraken's market: a full-depth book per pair and the WebSocket v2 ``book`` messages each
subscription sees.

Kraken streams a book of the subscribed depth: a snapshot of the top N levels, then updates. An
update carries every level of the top N that changed, was deleted (``qty`` 0) or came into view
because a better one was deleted; a level pushed *out* of view by a better one gets no message
(the client truncates it: KDOCS websocket-v2/book). Each message carries the CRC32 of the top 10
(``protocol.checksum``, checked against Kraken's worked examples). Here every
subscription keeps the view it was last sent, so the updates are exactly the difference between
two views, and a client that applies them and truncates holds the same book as the server.

Prices and quantities go out as JSON numbers with exactly the pair's decimals (``45283.5``,
``0.10000000``), as Kraken writes them.

Market data sources: the real fixtures (``../shared/fixtures/venues/kraken``: snapshots of
MATIC/USD, ETH/USD and the guide's BTC/USD, static), and a real Binance BTCUSDT capture
re-labelled BTC/USD (price decimals 2, quantity decimals 8) for a market that moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sim.fake_kraken.protocol import checksum


@dataclass
class PairSpec:
    wsname: str  # v2 name, BTC/USD
    altname: str  # XBTUSD
    key: str  # XXBTZUSD
    base_id: str
    quote_id: str
    price_decimals: int
    qty_decimals: int
    ordermin: str = "0.0001"
    costmin: str = "0.5"
    tick_size: str | None = None

    def asset_pair(self) -> dict:
        tick = self.tick_size or str(Decimal(1).scaleb(-self.price_decimals))
        return {
            "altname": self.altname,
            "wsname": self.wsname.replace("BTC/", "XBT/"),
            "aclass_base": "currency",
            "base": self.base_id,
            "aclass_quote": "currency",
            "quote": self.quote_id,
            "lot": "unit",
            "cost_decimals": 5,
            "pair_decimals": self.price_decimals,
            "lot_decimals": self.qty_decimals,
            "lot_multiplier": 1,
            "leverage_buy": [],
            "leverage_sell": [],
            "fees": [[0, 0.4]],
            "fees_maker": [[0, 0.25]],
            "fee_volume_currency": "ZUSD",
            "margin_call": 80,
            "margin_stop": 40,
            "ordermin": self.ordermin,
            "costmin": self.costmin,
            "tick_size": tick,
            "status": "online",
        }


DEFAULT_SPECS = {
    "BTC/USD": PairSpec("BTC/USD", "XBTUSD", "XXBTZUSD", "XXBT", "ZUSD", 2, 8, "0.0001", "0.5", "0.01"),
    "ETH/USD": PairSpec("ETH/USD", "ETHUSD", "XETHZUSD", "XETH", "ZUSD", 2, 8, "0.002", "0.5"),
    "MATIC/USD": PairSpec("MATIC/USD", "MATICUSD", "MATICUSD", "MATIC", "ZUSD", 4, 8, "10", "0.5"),
}


def num(value: Decimal, places: int) -> str:
    """A JSON number with exactly ``places`` decimals."""
    return f"{value:.{places}f}"


@dataclass
class PairBook:
    spec: PairSpec
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)

    def set(self, side: str, price: Decimal, qty: Decimal) -> None:
        levels = self.bids if side == "bid" else self.asks
        if qty <= 0:
            levels.pop(price, None)
        else:
            levels[price] = qty

    def top(self, side: str, n: int) -> list[tuple[Decimal, Decimal]]:
        if side == "bid":
            keys = sorted(self.bids, reverse=True)[:n]
            return [(p, self.bids[p]) for p in keys]
        keys = sorted(self.asks)[:n]
        return [(p, self.asks[p]) for p in keys]

    def best(self) -> tuple[Decimal | None, Decimal | None]:
        return (max(self.bids) if self.bids else None, min(self.asks) if self.asks else None)


class View:
    """What one subscription was last sent of one pair: the top ``depth`` per side."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def snapshot(self, book: PairBook) -> tuple[list, list, int]:
        b = book.top("bid", self.depth)
        a = book.top("ask", self.depth)
        self.bids, self.asks = dict(b), dict(a)
        return b, a, self._checksum(book.spec)

    def update(self, book: PairBook) -> tuple[list, list, int] | None:
        """The update taking this view to the book's current top, or None when nothing in view changed."""
        db = self._diff(self.bids, book.top("bid", self.depth), book.bids)
        da = self._diff(self.asks, book.top("ask", self.depth), book.asks)
        if not db and not da:
            return None
        self.bids = dict(book.top("bid", self.depth))
        self.asks = dict(book.top("ask", self.depth))
        return db, da, self._checksum(book.spec)

    @staticmethod
    def _diff(
        old: dict[Decimal, Decimal], new: list[tuple[Decimal, Decimal]], full: dict[Decimal, Decimal]
    ) -> list[tuple[Decimal, Decimal]]:
        out = [(p, Decimal(0)) for p in old if p not in full]  # deleted (not merely pushed out of view)
        out += [(p, q) for p, q in new if old.get(p) != q]
        return out

    def _checksum(self, spec: PairSpec) -> int:
        return checksum(list(self.bids.items()), list(self.asks.items()), spec.price_decimals, spec.qty_decimals)


def book_message(kind: str, spec: PairSpec, bids: list, asks: list, cks: int, timestamp: str) -> bytes:
    pd, qd = spec.price_decimals, spec.qty_decimals
    lv = ",".join
    b = lv(f'{{"price":{num(p, pd)},"qty":{num(q, qd)}}}' for p, q in bids)
    a = lv(f'{{"price":{num(p, pd)},"qty":{num(q, qd)}}}' for p, q in asks)
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{spec.wsname}","bids":[{b}],"asks":[{a}],'
        f'"checksum":{cks},"timestamp":"{timestamp}"}}]}}'
    ).encode()


def trade_message(spec: PairSpec, trades: list[tuple[str, Decimal, Decimal, int, str]], kind: str = "update") -> bytes:
    pd, qd = spec.price_decimals, spec.qty_decimals
    rows = ",".join(
        f'{{"symbol":"{spec.wsname}","side":"{side}","price":{num(p, pd)},"qty":{num(q, qd)},'
        f'"ord_type":"limit","trade_id":{tid},"timestamp":"{ts}"}}'
        for side, p, q, tid, ts in trades
    )
    return f'{{"channel":"trade","type":"{kind}","data":[{rows}]}}'.encode()
