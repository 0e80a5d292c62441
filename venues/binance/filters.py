"""Symbol rules from exchangeInfo (PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE, NOTIONAL, MIN_NOTIONAL)
as exact fixed-point numbers, the ``Instrument`` they describe, and the pre-send order check.

``check_order`` answers with Binance's own wording (``"Filter failure: LOT_SIZE"``) so an order
we refuse locally reads the same in logs and reports as one Binance would have refused.
Rules as documented (BDOCS filters.md): a 0 bound disables that bound; price must be a multiple
of ``tickSize``, quantity a multiple of ``stepSize``; notional = price x quantity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.model import Instrument, OrderType
from venues.binance.decode import SymbolInfo
from venues.binance.numbers import SCALE, parse_fixed

VENUE = "binance"


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """One symbol's trading rules; prices/quantities fixed-point at ``scale``, notionals at ``scale``."""

    symbol: str
    wire: str
    base: str
    quote: str
    status: str = "TRADING"
    scale: int = SCALE
    tick: int = 0
    min_price: int = 0
    max_price: int = 0
    step: int = 0
    min_qty: int = 0
    max_qty: int = 0
    market_step: int = 0
    market_min_qty: int = 0
    market_max_qty: int = 0
    min_notional: int = 0
    max_notional: int = 0
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    notional_filter: str = "NOTIONAL"  # or the legacy MIN_NOTIONAL, whichever the symbol has
    order_types: tuple[str, ...] = ()


def _fx(flt: Mapping[str, Any], key: str, scale: int) -> int:
    raw = flt.get(key)
    if raw is None:
        return 0
    if not isinstance(raw, str):
        raw = str(raw)
    try:
        return parse_fixed(raw, scale)
    except ValueError as exc:
        raise ValueError(f"{flt.get('filterType', '?')}.{key}: {exc}") from None


def parse_filters(info: SymbolInfo, scale: int = SCALE) -> SymbolFilters:
    """exchangeInfo symbol object -> ``SymbolFilters`` (ValueError names the bad field)."""
    if not info.base_asset or not info.quote_asset:
        raise ValueError(f"{info.symbol}: exchangeInfo lacks baseAsset/quoteAsset")
    kw: dict[str, Any] = {}
    for flt in info.filters:
        kind = flt.get("filterType")
        if kind == "PRICE_FILTER":
            kw["tick"] = _fx(flt, "tickSize", scale)
            kw["min_price"] = _fx(flt, "minPrice", scale)
            kw["max_price"] = _fx(flt, "maxPrice", scale)
        elif kind == "LOT_SIZE":
            kw["step"] = _fx(flt, "stepSize", scale)
            kw["min_qty"] = _fx(flt, "minQty", scale)
            kw["max_qty"] = _fx(flt, "maxQty", scale)
        elif kind == "MARKET_LOT_SIZE":
            kw["market_step"] = _fx(flt, "stepSize", scale)
            kw["market_min_qty"] = _fx(flt, "minQty", scale)
            kw["market_max_qty"] = _fx(flt, "maxQty", scale)
        elif kind == "NOTIONAL":
            kw["min_notional"] = _fx(flt, "minNotional", scale)
            kw["max_notional"] = _fx(flt, "maxNotional", scale)
            kw["apply_min_to_market"] = bool(flt.get("applyMinToMarket", True))
            kw["apply_max_to_market"] = bool(flt.get("applyMaxToMarket", False))
            kw["notional_filter"] = "NOTIONAL"
        elif kind == "MIN_NOTIONAL" and "min_notional" not in kw:
            kw["min_notional"] = _fx(flt, "minNotional", scale)
            kw["apply_min_to_market"] = bool(flt.get("applyToMarket", True))
            kw["notional_filter"] = "MIN_NOTIONAL"
    base, quote = info.base_asset.upper(), info.quote_asset.upper()
    return SymbolFilters(
        symbol=f"{base}-{quote}",
        wire=info.symbol,
        base=base,
        quote=quote,
        status=info.status or "TRADING",
        scale=scale,
        order_types=tuple(info.order_types),
        **kw,
    )


def to_instrument(f: SymbolFilters, maker_fee: float = 0.001, taker_fee: float = 0.001) -> Instrument:
    """The engine's view of the symbol. A disabled tick/step (0) becomes one fixed-point unit."""
    return Instrument(
        venue=VENUE,
        symbol=f.symbol,
        venue_symbol=f.wire,
        price_scale=f.scale,
        size_scale=f.scale,
        tick=f.tick or 1,
        lot=f.step or 1,
        min_qty=f.min_qty,
        min_notional=f.min_notional / 10**f.scale,
        maker_fee=maker_fee,
        taker_fee=taker_fee,
        max_price=f.max_price,
        min_price=f.min_price,
    )


def _lot_failure(qty: int, lo: int, hi: int, step: int) -> bool:
    return qty <= 0 or (lo and qty < lo) or (hi and qty > hi) or bool(step and qty % step)


def check_order(f: SymbolFilters, order_type: OrderType, price: int, qty: int, ref_price: int = 0) -> str:
    """``""`` if Binance would accept the order's price/quantity, else ``"Filter failure: <FILTER>"``.

    ``price``/``qty`` are fixed-point at ``f.scale``; ``ref_price`` is the price a MARKET order's
    notional is judged at (Binance uses its average price; the mid is the caller's best guess, 0
    skips the notional check for market orders).
    """
    if order_type is _LIMIT:
        if price <= 0 or price < f.min_price or (f.max_price and price > f.max_price) or (f.tick and price % f.tick):
            return "Filter failure: PRICE_FILTER"
        if _lot_failure(qty, f.min_qty, f.max_qty, f.step):
            return "Filter failure: LOT_SIZE"
        return _notional_failure(f, price, qty, True, True)
    # MARKET
    if _lot_failure(qty, f.min_qty, f.max_qty, f.step):
        return "Filter failure: LOT_SIZE"
    if (f.market_step or f.market_min_qty or f.market_max_qty) and _lot_failure(
        qty, f.market_min_qty, f.market_max_qty, f.market_step
    ):
        return "Filter failure: MARKET_LOT_SIZE"
    if ref_price <= 0:
        return ""
    return _notional_failure(f, ref_price, qty, f.apply_min_to_market, f.apply_max_to_market)


def _notional_failure(f: SymbolFilters, price: int, qty: int, check_min: bool, check_max: bool) -> str:
    notional = price * qty  # scale 2*scale
    unit = 10**f.scale
    if check_min and f.min_notional and notional < f.min_notional * unit:
        return f"Filter failure: {f.notional_filter}"
    if check_max and f.max_notional and notional > f.max_notional * unit:
        return f"Filter failure: {f.notional_filter}"
    return ""


_LIMIT = OrderType.LIMIT
