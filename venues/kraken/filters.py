"""Kraken AssetPairs -> the engine's ``Instrument`` and the pair's order rules.

Per pair (KDOCS rest-api/get-tradable-asset-pairs): ``pair_decimals`` (price decimals, also the
book checksum's price precision), ``lot_decimals`` (volume decimals, the checksum's quantity
precision), ``tick_size`` (when present; else one unit of ``pair_decimals``), ``ordermin`` (least
base volume), ``costmin`` (least quote cost), ``status`` (online | cancel_only | post_only |
limit_only | reduce_only). Prices and sizes are fixed point at exactly those decimals, so every
price Kraken sends is an integer of the instrument.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.model import Instrument, OrderType
from engine.venue import profile as vp
from venues.kraken.decode import to_fixed
from venues.kraken.symbols import from_ws


@dataclass(frozen=True, slots=True)
class PairRules:
    symbol: str  # canonical
    key: str  # AssetPairs key (XXBTZUSD)
    altname: str  # XBTUSD (REST pair)
    wsname: str  # v1 name (XBT/USD)
    base_id: str
    quote_id: str
    price_decimals: int
    qty_decimals: int
    tick: int  # fixed at price_decimals
    min_qty: int  # fixed at qty_decimals
    min_cost: Decimal
    status: str = "online"


def _dec(raw: Any, what: str, key: str) -> Decimal:
    try:
        return Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise ValueError(f"AssetPairs {key}: {what} is not a number: {raw!r}") from None


def parse_pair(key: str, info: dict[str, Any]) -> PairRules:
    """One AssetPairs entry; ``ValueError`` naming the pair and field when one is missing or bad."""
    try:
        pd = int(info["pair_decimals"])
        ld = int(info["lot_decimals"])
        wsname = str(info["wsname"])
        altname = str(info["altname"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"AssetPairs {key}: missing or bad field {exc}") from None
    tick_raw = info.get("tick_size")
    tick = to_fixed(_dec(tick_raw, "tick_size", key), pd) if tick_raw is not None else 1
    min_qty = to_fixed(_dec(info.get("ordermin", "0"), "ordermin", key), ld)
    return PairRules(
        symbol=from_ws(wsname),
        key=key,
        altname=altname,
        wsname=wsname,
        base_id=str(info.get("base", "")),
        quote_id=str(info.get("quote", "")),
        price_decimals=pd,
        qty_decimals=ld,
        tick=max(tick, 1),
        min_qty=min_qty,
        min_cost=_dec(info.get("costmin", "0"), "costmin", key),
        status=str(info.get("status", "online")),
    )


def parse_asset_pairs(result: dict[str, Any]) -> dict[str, PairRules]:
    """AssetPairs ``result`` -> canonical symbol -> rules."""
    out = {}
    for key, info in result.items():
        rules = parse_pair(key, info)
        out[rules.symbol] = rules
    return out


def to_instrument(r: PairRules, maker_fee: float, taker_fee: float) -> Instrument:
    return Instrument(
        venue="kraken",
        symbol=r.symbol,
        venue_symbol=r.altname,
        price_scale=r.price_decimals,
        size_scale=r.qty_decimals,
        tick=r.tick,
        lot=1,
        min_qty=r.min_qty,
        min_notional=float(r.min_cost),
        maker_fee=maker_fee,
        taker_fee=taker_fee,
    )


def check_order(r: PairRules, order_type: OrderType, price: int, qty: int) -> str:
    """The canonical reason an order breaks the pair's rules, or ``""``."""
    if qty <= 0:
        return vp.LOT_SIZE
    if qty < r.min_qty:
        return vp.NOTIONAL  # Kraken: EOrder:Order minimum not met
    if order_type is not OrderType.MARKET:
        if price <= 0 or price % r.tick:
            return vp.PRICE_FILTER
        cost = Decimal(price).scaleb(-r.price_decimals) * Decimal(qty).scaleb(-r.qty_decimals)
        if cost < r.min_cost:
            return vp.NOTIONAL
    return ""
