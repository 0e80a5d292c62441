"""Coinbase Exchange account queries as the engine's ``AccountClient``: open orders, balances,
our fills, one order, cancel; signed REST through the adapter's client (and its private bucket).
"""

from __future__ import annotations

from engine.model import Instrument, OrderStatus, OrderType, Side, TimeInForce
from engine.venue.account import VenueBalance, VenueFill, VenueOrder
from venues.coinbase import decode as d
from venues.coinbase.errors import CoinbaseApiError
from venues.coinbase.rest import CoinbaseRest

VENUE = "coinbase"
E8 = 10**8
_TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK, "GTT": TimeInForce.GTC}


def order_status(o: d.ExchangeOrder) -> OrderStatus:
    filled = d.fixed_trunc(o.filled_size)
    if o.status == "rejected":
        return OrderStatus.REJECTED
    if o.status == "done":
        if o.done_reason == "filled":
            return OrderStatus.FILLED
        return OrderStatus.CANCELED
    if o.status in ("open", "active"):
        return OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.OPEN
    return OrderStatus.PENDING


def venue_order(o: d.ExchangeOrder) -> VenueOrder:
    return VenueOrder(
        venue=VENUE,
        symbol=o.product_id,
        client_order_id=o.client_oid,
        venue_order_id=o.id,
        side=Side.BUY if o.side == "buy" else Side.SELL,
        order_type=OrderType.MARKET if o.type == "market" else OrderType.LIMIT,
        tif=TimeInForce.GTX if o.post_only else _TIF.get(o.time_in_force, TimeInForce.GTC),
        price=d.fixed(o.price or "0"),
        qty=d.fixed(o.size or "0"),
        filled=d.fixed_trunc(o.filled_size),
        status=order_status(o),
        post_only=o.post_only,
        ts_created=d.parse_time_ns(o.created_at),
        ts_updated=d.parse_time_ns(o.done_at or o.created_at),
    )


def venue_fill(f: d.ExchangeFill, client_order_id: str = "") -> VenueFill:
    return VenueFill(
        venue=VENUE,
        symbol=f.product_id,
        client_order_id=client_order_id,
        venue_order_id=f.order_id,
        trade_id=str(f.trade_id),
        side=Side.BUY if f.side == "buy" else Side.SELL,
        price=d.fixed(f.price),
        qty=d.fixed(f.size),
        fee=d.fixed_trunc(f.fee) / E8,  # Coinbase charges in the quote currency
        fee_asset=f.product_id.split("-")[1],
        liquidity="maker" if f.liquidity == "M" else "taker",
        ts_event=d.parse_time_ns(f.created_at),
    )


class CoinbaseAccount:
    def __init__(self, rest: CoinbaseRest, instruments: dict[str, Instrument]) -> None:
        self.rest = rest
        self.instruments = instruments

    async def open_orders(self, symbols: list[str]) -> list[VenueOrder]:
        out: list[VenueOrder] = []
        for sym in symbols:
            out += [venue_order(o) for o in await self.rest.open_orders(sym)]
        return out

    async def balances(self) -> dict[str, VenueBalance]:
        out = {}
        for a in await self.rest.accounts():
            free, hold = d.fixed_trunc(a.available) / E8, d.fixed_trunc(a.hold) / E8
            if free or hold:
                out[a.currency] = VenueBalance(a.currency, free, hold)
        return out

    async def recent_fills(self, symbol: str, since_ns: int) -> list[VenueFill]:
        fills = [venue_fill(f) for f in await self.rest.fills(symbol)]
        return sorted((f for f in fills if f.ts_event >= since_ns), key=lambda f: (f.ts_event, f.trade_id))

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        try:
            return venue_order(await self.rest.get_order(client_oid=client_order_id))
        except CoinbaseApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def query_order_by_id(self, symbol: str, venue_order_id: str) -> VenueOrder | None:
        """One order by Coinbase's order id (``GET /orders/{id}``): what reconciliation asks of a
        trade whose order it does not know. None when Coinbase does not know it."""
        try:
            vo = venue_order(await self.rest.get_order(order_id=venue_order_id))
        except CoinbaseApiError as exc:
            if exc.status == 404:
                return None
            raise
        return vo if vo.symbol == symbol else None

    async def cancel(self, order: VenueOrder) -> bool:
        try:
            await self.rest.cancel_order(order.venue_order_id, order.client_order_id, order.symbol)
        except CoinbaseApiError as exc:
            if exc.status == 404:
                return True  # already gone
            raise
        return True
