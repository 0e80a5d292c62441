"""Coinbase Exchange product rules -> the engine's ``Instrument``, and the order checks Coinbase
applies (venues.md §2.1 "Product rules").

``quote_increment`` is the price tick, ``base_increment`` the size step, ``min_market_funds`` the
notional minimum of every order (since 2022; the guide's "$1 minimum" on BTC-USD / ETH-USD).
``base_min_size`` / ``base_max_size`` were removed on 2022-06-30 but older answers (the 2021
capture) carry them; when present they are kept. A product whose ``status`` is not ``online`` or
that is ``trading_disabled`` / ``cancel_only`` still loads (market data works) but orders are
refused locally with Coinbase's words.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.model import Instrument, OrderType
from venues.coinbase.decode import SCALE, Product, fixed

VENUE = "coinbase"


@dataclass(frozen=True, slots=True)
class ProductRules:
    symbol: str
    base: str
    quote: str
    tick: int  # fixed point at SCALE
    step: int
    min_size: int
    max_size: int
    min_funds: int
    tradable: bool
    post_only_mode: bool
    limit_only: bool
    status: str


def parse_product(p: Product) -> ProductRules:
    return ProductRules(
        symbol=p.id,
        base=p.base_currency,
        quote=p.quote_currency,
        tick=fixed(p.quote_increment),
        step=fixed(p.base_increment),
        min_size=fixed(p.base_min_size or "0"),
        max_size=fixed(p.base_max_size or "0"),
        min_funds=fixed(p.min_market_funds or "0"),
        tradable=p.status == "online" and not p.trading_disabled and not p.cancel_only,
        post_only_mode=p.post_only,
        limit_only=p.limit_only,
        status=p.status,
    )


def to_instrument(r: ProductRules, maker_fee: float = 0.004, taker_fee: float = 0.006) -> Instrument:
    return Instrument(
        venue=VENUE,
        symbol=r.symbol,
        venue_symbol=r.symbol,
        price_scale=SCALE,
        size_scale=SCALE,
        tick=r.tick or 1,
        lot=r.step or 1,
        min_qty=max(r.min_size, r.step),
        min_notional=r.min_funds / 10**SCALE,
        maker_fee=maker_fee,
        taker_fee=taker_fee,
    )


def check_order(r: ProductRules, order_type: OrderType, price: int, qty: int, ref_price: int = 0) -> str:
    """``""`` if Coinbase would take the order's price/size, else its refusal text."""
    if not r.tradable:
        return f"Trading is disabled for {r.symbol} (status {r.status})"
    if order_type is not OrderType.LIMIT and r.limit_only:
        return "Limit only mode"
    if qty <= 0 or (r.step and qty % r.step):
        return f"size is too accurate. Smallest unit is {r.step / 10**SCALE:.8f}"
    if r.min_size and qty < r.min_size:
        return f"size is too small. Minimum size is {r.min_size / 10**SCALE:.8f}"
    if r.max_size and qty > r.max_size:
        return f"size is too large. Maximum size is {r.max_size / 10**SCALE:.8f}"
    if order_type is OrderType.LIMIT:
        if price <= 0 or (r.tick and price % r.tick):
            return f"price is too accurate. Smallest unit is {r.tick / 10**SCALE:.8f}"
        ref_price = price
    if r.min_funds and ref_price and qty * ref_price < r.min_funds * 10**SCALE:
        return f"size is too small. Minimum funds is {r.min_funds / 10**SCALE:.8f}"
    return ""
