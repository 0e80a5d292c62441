"""Binance account queries as the engine's ``AccountClient``: open orders, balances, our trades.

REST, signed (``GET /api/v3/openOrders`` weight 6 per symbol, ``GET /api/v3/account`` 20,
``GET /api/v3/myTrades`` 20 per page of up to 1000, ``GET /api/v3/order`` 4, ``DELETE /api/v3/order``
1; ``../shared/docs/venues.md`` §1.5), through the adapter's REST client and so through its weight
limiter.
"""

from __future__ import annotations

from typing import Any

from engine.model import OrderStatus, OrderType, Side, TimeInForce
from engine.venue.account import VenueBalance, VenueFill, VenueOrder
from venues.binance import decode as dec
from venues.binance.errors import CANCEL_REJECTED, NO_SUCH_ORDER, BinanceApiError
from venues.binance.filters import SymbolFilters
from venues.binance.numbers import parse_fixed
from venues.binance.rest import W_MY_TRADES, W_ORDER_QUERY, BinanceRest

VENUE = "binance"
MS = 1_000_000
MY_TRADES_PAGE = 1000  # Binance's largest ``limit`` for myTrades
_STATUS = {
    "NEW": OrderStatus.OPEN,
    "PENDING_NEW": OrderStatus.PENDING,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.OPEN,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}
_TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}


def venue_order(m: dec.OrderMsg, symbol: str) -> VenueOrder:
    """A Binance order object in the engine's units (``ValueError`` names a field it cannot read)."""
    post_only = m.type == "LIMIT_MAKER"
    status = _STATUS.get(m.status)
    if status is None:
        raise ValueError(f"order {m.client_order_id}: unknown status {m.status!r}")
    return VenueOrder(
        venue=VENUE,
        symbol=symbol,
        client_order_id=m.client_order_id,
        venue_order_id=str(m.order_id),
        side=Side.BUY if m.side == "BUY" else Side.SELL,
        order_type=OrderType.MARKET if m.type == "MARKET" else OrderType.LIMIT,
        tif=TimeInForce.GTX if post_only else _TIF.get(m.time_in_force, TimeInForce.GTC),
        price=parse_fixed(m.price),
        qty=parse_fixed(m.orig_qty),
        filled=parse_fixed(m.executed_qty),
        status=status,
        post_only=post_only,
        ts_created=m.time * MS,
        ts_updated=(m.update_time or m.time) * MS,
    )


class BinanceAccount:
    """``AccountClient`` over the adapter's REST client; ``filters`` maps canonical symbol -> its
    filters (wire name and the symbol's assets)."""

    def __init__(self, rest: BinanceRest, filters: dict[str, SymbolFilters]) -> None:
        self.rest = rest
        self.filters = filters
        self._by_wire = {f.wire: f.symbol for f in filters.values()}

    async def open_orders(self, symbols: list[str]) -> list[VenueOrder]:
        out: list[VenueOrder] = []
        for symbol in symbols:
            f = self.filters.get(symbol)
            if f is None:
                raise ValueError(f"binance: {symbol} is not among this adapter's symbols")
            out += [venue_order(m, symbol) for m in await self.rest.open_orders(f.wire)]
        return out

    async def balances(self) -> dict[str, VenueBalance]:
        acct = await self.rest.account()
        out = {}
        for b in acct.balances:
            free, locked = parse_fixed(b.free) / 10**8, parse_fixed(b.locked) / 10**8
            if free or locked:
                out[b.asset] = VenueBalance(b.asset, free, locked)
        return out

    async def recent_fills(self, symbol: str, since_ns: int) -> list[VenueFill]:
        """Every trade of ours in ``symbol`` since ``since_ns`` (0: ever), oldest first, however
        many: the first page by ``startTime``, the next ones by ``fromId`` (Binance refuses the
        two together, and pages hold at most ``MY_TRADES_PAGE``)."""
        f = self.filters[symbol]
        params: dict[str, Any] = {"symbol": f.wire, "limit": MY_TRADES_PAGE}
        if since_ns > 0:
            params["startTime"] = since_ns // MS
        else:  # from the first trade on: without a bound Binance lists the most recent ones
            params["fromId"] = 0
        fills: list[VenueFill] = []
        seen: set[int] = set()
        while True:
            body = await self.rest.request("GET", "/api/v3/myTrades", params, signed=True, weight=W_MY_TRADES)
            page = [t for t in dec.decode_my_trades(body) if t.id not in seen]
            for t in page:
                seen.add(t.id)
                fills.append(self._fill(f, symbol, t))
            if len(page) < MY_TRADES_PAGE:
                return fills
            params = {"symbol": f.wire, "limit": MY_TRADES_PAGE, "fromId": max(seen) + 1}

    @staticmethod
    def _fill(f: SymbolFilters, symbol: str, t: dec.MyTradeMsg) -> VenueFill:
        qty = parse_fixed(t.qty)
        price = parse_fixed(t.price)
        commission = parse_fixed(t.commission) / 10**8
        # the fee in quote currency, as in every ExecReport: a commission in base is worth its price
        fee = commission * price / 10**8 if t.commission_asset == f.base else commission
        return VenueFill(
            venue=VENUE,
            symbol=symbol,
            client_order_id="",
            venue_order_id=str(t.order_id),
            trade_id=str(t.id),
            side=Side.BUY if t.is_buyer else Side.SELL,
            price=price,
            qty=qty,
            fee=fee,
            fee_asset=t.commission_asset,
            liquidity="maker" if t.is_maker else "taker",
            ts_event=t.time * MS,
        )

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """One order as the venue knows it (``GET /api/v3/order``); None when it does not know it
        (the operator API's reconcile)."""
        f = self.filters[symbol]
        try:
            m = await self.rest.query_order(f.wire, client_order_id)
        except BinanceApiError as exc:
            if exc.code == NO_SUCH_ORDER:
                return None
            raise
        return venue_order(m, symbol)

    async def query_order_by_id(self, symbol: str, venue_order_id: str) -> VenueOrder | None:
        """One order by Binance's order id (``GET /api/v3/order?orderId=``): what reconciliation asks
        of a trade whose order it does not know (``myTrades`` names no client id). None when
        Binance does not know it."""
        f = self.filters[symbol]
        params = {"symbol": f.wire, "orderId": int(venue_order_id)}
        try:
            body = await self.rest.request("GET", "/api/v3/order", params, signed=True, weight=W_ORDER_QUERY)
        except BinanceApiError as exc:
            if exc.code == NO_SUCH_ORDER:
                return None
            raise
        return venue_order(dec.decode_order(body), symbol)

    async def cancel(self, order: VenueOrder) -> bool:
        f = self.filters[order.symbol]
        try:
            await self.rest.cancel_order(f.wire, order.client_order_id)
        except BinanceApiError as exc:
            if exc.code in (CANCEL_REJECTED, NO_SUCH_ORDER) and "unknown" in exc.msg.lower():
                return True  # already gone: what a cancel wants
            raise
        return True
