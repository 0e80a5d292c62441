"""Symbol rules (exchangeInfo) of the fake and the filter checks Binance applies to new orders.

Values are Binance's BTCUSDT/ETHUSDT rules as captured in
``../shared/fixtures/venues/binance/exchange_info_btcusdt_ethusdt.json`` (tick, step, price and
quantity bounds), with the 2021 ``MIN_NOTIONAL`` filter replaced by the current ``NOTIONAL`` filter
(min 5 USDT, as Binance lists BTCUSDT today). Prices and quantities are integers at Binance's
8-decimal scale (``SCALE``) so the checks are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.fake_binance.errors import filter_failure

SCALE = 10**8


def fmt(n: int) -> str:
    """Fixed-point integer -> Binance's 8-decimal string (``61837.63000000``)."""
    if n < 0:
        return "-" + fmt(-n)
    return f"{n // SCALE}.{n % SCALE:08d}"


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    base: str
    quote: str
    tick: int
    min_price: int
    max_price: int
    step: int
    min_qty: int
    max_qty: int
    market_min_qty: int = 0
    market_max_qty: int = 0
    market_step: int = 0
    min_notional: int = 5 * SCALE
    max_notional: int = 9_000_000 * SCALE
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    max_num_orders: int = 200
    #: exchangeInfo ``orderTypes``: a type not listed is refused with -1116 ``Invalid orderType.``
    order_types: tuple[str, ...] = ("LIMIT", "LIMIT_MAKER", "MARKET")

    def filters(self) -> list[dict]:
        return [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(self.min_price),
                "maxPrice": fmt(self.max_price),
                "tickSize": fmt(self.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(self.min_qty),
                "maxQty": fmt(self.max_qty),
                "stepSize": fmt(self.step),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": fmt(self.market_min_qty),
                "maxQty": fmt(self.market_max_qty),
                "stepSize": fmt(self.market_step),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(self.min_notional),
                "applyMinToMarket": self.apply_min_to_market,
                "maxNotional": fmt(self.max_notional),
                "applyMaxToMarket": self.apply_max_to_market,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": self.max_num_orders},
        ]

    def to_json(self) -> dict:
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": list(self.order_types),
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "amendAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": self.filters(),
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": ["NONE"],
        }

    # --- filter checks (-1013) ----------------------------------------------------------------
    def check_price(self, price: int) -> None:
        if (
            price < self.min_price
            or (self.max_price and price > self.max_price)
            or (price - self.min_price) % self.tick
        ):
            raise filter_failure("PRICE_FILTER")

    def check_lot(self, qty: int) -> None:
        if qty < self.min_qty or qty > self.max_qty or (qty - self.min_qty) % self.step:
            raise filter_failure("LOT_SIZE")

    def check_market_lot(self, qty: int) -> None:
        self.check_lot(qty)
        if qty < self.market_min_qty or (self.market_max_qty and qty > self.market_max_qty):
            raise filter_failure("MARKET_LOT_SIZE")
        if self.market_step and (qty - self.market_min_qty) % self.market_step:
            raise filter_failure("MARKET_LOT_SIZE")

    def check_notional(self, notional: int, market: bool) -> None:
        if (not market or self.apply_min_to_market) and notional < self.min_notional:
            raise filter_failure("NOTIONAL")
        if (not market or self.apply_max_to_market) and self.max_notional and notional > self.max_notional:
            raise filter_failure("NOTIONAL")


def _spec(symbol: str, base: str, quote: str, step: str, market_max: str) -> SymbolSpec:
    return SymbolSpec(
        symbol=symbol,
        base=base,
        quote=quote,
        tick=to_scaled("0.01"),
        min_price=to_scaled("0.01"),
        max_price=to_scaled("1000000"),
        step=to_scaled(step),
        min_qty=to_scaled(step),
        max_qty=to_scaled("9000"),
        market_max_qty=to_scaled(market_max),
    )


def to_scaled(value: str) -> int:
    whole, _, frac = value.partition(".")
    return int(whole or "0") * SCALE + int(frac[:8].ljust(8, "0") or "0")


DEFAULT_SPECS: dict[str, SymbolSpec] = {
    "BTCUSDT": _spec("BTCUSDT", "BTC", "USDT", "0.00001", "112.21108820"),
    "ETHUSDT": _spec("ETHUSDT", "ETH", "USDT", "0.0001", "1630.44517663"),
}

_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "BTC", "ETH", "BNB", "EUR")


def generic_spec(symbol: str) -> SymbolSpec:
    """Rules for a symbol found in a capture but not in ``DEFAULT_SPECS`` (BTCUSDT's steps)."""
    for q in _QUOTES:
        if symbol.endswith(q) and len(symbol) > len(q):
            return _spec(symbol, symbol[: -len(q)], q, "0.00001", "1000")
    raise ValueError(f"cannot split {symbol!r} into base and quote assets")


def exchange_info(
    specs: dict[str, SymbolSpec], rate_limits: list[dict], server_ms: int, only: list[str] | None = None
) -> dict:
    symbols = [specs[s].to_json() for s in (only if only is not None else specs)]
    return {
        "timezone": "UTC",
        "serverTime": server_ms,
        "rateLimits": rate_limits,
        "exchangeFilters": [],
        "symbols": symbols,
    }
