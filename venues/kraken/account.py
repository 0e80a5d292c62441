"""Kraken account queries for reconciliation (``AccountClient``), over signed REST.

``OpenOrders`` -> open orders of the wanted pairs; ``BalanceEx`` -> balances with what open orders
hold (``hold_trade``); ``TradesHistory`` -> our fills since a time; ``CancelOrder`` by order id.
Orders placed with a ``cl_ord_id`` carry it in their ``cl_ord_id`` field; older ones only their
``userref``, which is not ours to interpret, so they show an empty client id.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.model import Instrument, OrderStatus, OrderType, Side, TimeInForce
from engine.venue.account import VenueBalance, VenueFill, VenueOrder
from venues.kraken.errors import KrakenApiError
from venues.kraken.filters import PairRules
from venues.kraken.rest import KrakenRest
from venues.kraken.symbols import asset_name

_STATUS = {
    "pending": OrderStatus.PENDING,
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
}


def _fx(raw: Any, scale: int) -> int:
    d = Decimal(str(raw or "0"))
    return int(d.scaleb(scale).to_integral_value())


class KrakenAccount:
    def __init__(self, rest: KrakenRest, rules: dict[str, PairRules], instruments: dict[str, Instrument]) -> None:
        self.rest = rest
        self.rules = rules
        self.instruments = instruments
        self._by_pair = {}
        for sym, r in rules.items():
            for name in (r.altname, r.key, r.wsname, r.wsname.replace("XBT/", "BTC/")):
                self._by_pair[name] = sym

    def symbol_of(self, pair: str) -> str | None:
        return self._by_pair.get(pair)

    def to_order(self, txid: str, o: dict[str, Any]) -> VenueOrder | None:
        d = o.get("descr", {})
        sym = self.symbol_of(str(d.get("pair", "")))
        if sym is None:
            return None
        inst = self.instruments[sym]
        qty = _fx(o.get("vol"), inst.size_scale)
        filled = _fx(o.get("vol_exec"), inst.size_scale)
        status = _STATUS.get(str(o.get("status")), OrderStatus.OPEN)
        if status is OrderStatus.OPEN and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        if status is OrderStatus.FILLED and filled < qty:
            status = OrderStatus.CANCELED
        oflags = str(o.get("oflags", ""))
        return VenueOrder(
            venue="kraken",
            symbol=sym,
            client_order_id=str(o.get("cl_ord_id") or ""),
            venue_order_id=txid,
            side=Side.BUY if d.get("type") == "buy" else Side.SELL,
            order_type=OrderType.MARKET if d.get("ordertype") == "market" else OrderType.LIMIT,
            tif=TimeInForce.GTC,
            price=_fx(d.get("price"), inst.price_scale),
            qty=qty,
            filled=filled,
            status=status,
            post_only="post" in oflags,
            ts_created=int(float(o.get("opentm") or 0) * 1e9),
            ts_updated=int(float(o.get("closetm") or o.get("opentm") or 0) * 1e9),
        )

    async def open_orders(self, symbols: list[str]) -> list[VenueOrder]:
        out = []
        for txid, o in (await self.rest.open_orders()).items():
            vo = self.to_order(txid, o)
            if vo is not None and vo.symbol in symbols:
                out.append(vo)
        return out

    async def query_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """One order by our client id, as reconciliation asks for it (``engine.reconcile``): open
        orders first, then the recent closed ones (both carry ``cl_ord_id``); None when Kraken lists
        it in neither."""
        for listing in (self.rest.open_orders, lambda: self.rest.closed_orders(client_order_id)):
            for txid, o in (await listing()).items():
                if str(o.get("cl_ord_id") or "") == client_order_id:
                    vo = self.to_order(txid, o)
                    if vo is not None and vo.symbol == symbol:
                        return vo
        return None

    async def query_order_by_id(self, symbol: str, venue_order_id: str) -> VenueOrder | None:
        """One order by Kraken's txid (``QueryOrders``); None when Kraken does not know it."""
        try:
            got = await self.rest.query_orders([venue_order_id])
        except KrakenApiError as exc:
            if exc.key == "EOrder:Unknown order":
                return None
            raise
        o = got.get(venue_order_id)
        vo = self.to_order(venue_order_id, o) if o is not None else None
        return vo if vo is not None and vo.symbol == symbol else None

    async def balances(self) -> dict[str, VenueBalance]:
        raw = await self.rest.private("BalanceEx")
        out: dict[str, VenueBalance] = {}
        for aid, b in raw.items():
            total = float(b.get("balance", 0)) if isinstance(b, dict) else float(b)
            held = float(b.get("hold_trade", 0)) if isinstance(b, dict) else 0.0
            if total == 0:
                continue
            name = asset_name(aid)
            prev = out.get(name)
            free, locked = total - held, held
            if prev is not None:
                free, locked = free + prev.free, locked + prev.locked
            out[name] = VenueBalance(name, free, locked)
        return out

    async def recent_fills(self, symbol: str, since_ns: int) -> list[VenueFill]:
        inst = self.instruments[symbol]
        trades = await self.rest.trades_history(since_ns / 1e9)
        out = []
        for tid, t in trades.items():
            if self.symbol_of(str(t.get("pair", ""))) != symbol:
                continue
            ts = int(float(t.get("time", 0)) * 1e9)
            if ts < since_ns:
                continue
            out.append(
                VenueFill(
                    venue="kraken",
                    symbol=symbol,
                    client_order_id=str(t.get("cl_ord_id") or ""),
                    venue_order_id=str(t.get("ordertxid", "")),
                    trade_id=tid,
                    side=Side.BUY if t.get("type") == "buy" else Side.SELL,
                    price=_fx(t.get("price"), inst.price_scale),
                    qty=_fx(t.get("vol"), inst.size_scale),
                    fee=float(t.get("fee", 0)),
                    fee_asset=inst.quote,
                    liquidity="maker" if t.get("maker") else "taker",
                    ts_event=ts,
                )
            )
        out.sort(key=lambda f: f.ts_event)
        return out

    async def cancel(self, order: VenueOrder) -> bool:
        try:
            if order.venue_order_id:
                await self.rest.cancel_order(txid=order.venue_order_id)
            else:
                await self.rest.cancel_order(cl_ord_id=order.client_order_id)
        except KrakenApiError as exc:
            return exc.key == "EOrder:Unknown order"  # already gone
        return True
