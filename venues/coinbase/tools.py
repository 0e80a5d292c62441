"""Coinbase's answers to the operator's venue scripts (``engine.venue.tools.VenueTools``).

Coinbase Exchange REST through the adapter's client (key + secret + passphrase, requests stamped
on Coinbase's clock, its token buckets and error mapping: ``Invalid passphrase``, ``Invalid
signature``, ``Invalid API key``).

Filters: the product (``GET /products/{id}``) mapped onto the guide's filter names (the product
itself under ``raw``):

| scripts' key | Coinbase field |
|---|---|
| ``PRICE_FILTER.tickSize`` | ``quote_increment`` |
| ``LOT_SIZE.stepSize`` | ``base_increment`` |
| ``LOT_SIZE.minQty`` / ``maxQty`` | ``base_min_size`` / ``base_max_size`` (only where present: gone since 2022) |
| ``NOTIONAL.minNotional`` / ``maxNotional`` | ``min_market_funds`` / ``max_market_funds`` (quote currency) |

Coinbase has no price bounds (``minPrice``/``maxPrice`` absent). ``status``: the product's
``status``; it takes new orders when ``online`` and neither ``trading_disabled`` nor
``cancel_only``.

Latency probes: public ``GET /time`` and signed ``GET /accounts`` (private bucket: 15/s, burst 30).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from engine.venue.account import VenueBalance
from engine.venue.tools import OrderView, SymbolInfo, ToolError
from venues.coinbase import decode as d
from venues.coinbase.account import order_status
from venues.coinbase.adapter import CoinbaseAdapter, open_adapter
from venues.coinbase.errors import CoinbaseApiError, CoinbaseError
from venues.coinbase.symbols import to_wire

VENUE = "coinbase"


def open_tools(config_path: Path | str | None, env: Mapping[str, str] | None = None) -> CoinbaseTools:
    """The registry's ``tools`` factory: the exchange config (``None``: the shipped one), keys from
    ``env`` (the process environment by default)."""
    return CoinbaseTools(open_adapter(config_path, [], env))


def _present(p: Mapping[str, Any], key: str) -> bool:
    v = p.get(key)
    return v is not None and v != ""


def tradable(p: Mapping[str, Any]) -> bool:
    return p.get("status", "online") == "online" and not p.get("trading_disabled") and not p.get("cancel_only")


def reshape_filters(p: Mapping[str, Any]) -> dict[str, Any]:
    """A Coinbase product -> the scripts' shape (mapping in the module docstring)."""
    lot: dict[str, Any] = {"stepSize": str(p.get("base_increment", ""))}
    for ours, theirs in (("minQty", "base_min_size"), ("maxQty", "base_max_size")):
        if _present(p, theirs):
            lot[ours] = str(p[theirs])
    filters: dict[str, Any] = {"PRICE_FILTER": {"tickSize": str(p.get("quote_increment", ""))}, "LOT_SIZE": lot}
    notional = {
        ours: str(p[theirs])
        for ours, theirs in (("minNotional", "min_market_funds"), ("maxNotional", "max_market_funds"))
        if _present(p, theirs)
    }
    if notional:
        filters["NOTIONAL"] = notional
    return {
        "venue": VENUE,
        "symbol": str(p.get("id", "")),
        "venue_symbol": str(p.get("id", "")),
        "status": str(p.get("status", "online")),
        "filters": filters,
        "raw": dict(p),
    }


def order_view(raw: Mapping[str, Any]) -> OrderView:
    o = msgspec.convert(raw, d.ExchangeOrder)
    return OrderView(
        venue=VENUE,
        symbol=o.product_id,
        venue_order_id=o.id,
        client_order_id=o.client_oid,
        side=o.side.upper(),
        order_type=o.type.upper(),
        status=order_status(o).name,
        venue_status=o.status + (f" ({o.done_reason})" if o.done_reason else ""),
        price=o.price,
        qty=o.size,
        filled=o.filled_size,
        time_in_force=o.time_in_force,
        post_only=o.post_only,
        created_ns=d.parse_time_ns(o.created_at) if o.created_at else 0,
        updated_ns=d.parse_time_ns(o.done_at or o.created_at) if (o.done_at or o.created_at) else 0,
        raw=dict(raw),
    )


class CoinbaseTools:
    venue = VENUE
    public_probe = "GET /time"
    signed_probe = "GET /accounts"
    signed_probe_budget = 25  # the private bucket's burst is 30
    public_probe_interval_s = 0.0

    def __init__(self, adapter: CoinbaseAdapter) -> None:
        self.adapter = adapter
        self.rest = adapter.rest
        self.endpoint = adapter.config.rest_url
        self._clock_synced = False

    def has_keys(self) -> bool:
        return self.adapter.credentials is not None

    @asynccontextmanager
    async def _venue(self) -> AsyncIterator[None]:
        """Coinbase's refusals and outages -> ``ToolError`` in the guide's words."""
        try:
            yield
        except CoinbaseApiError as exc:
            raise ToolError(f"{exc.reason} (coinbase HTTP {exc.status}: {exc.message})") from None
        except CoinbaseError as exc:
            raise ToolError(str(exc)) from None

    async def _prepare(self) -> None:
        """Keys from the environment (``ConfigError`` naming the variables) and Coinbase's clock,
        which every signature carries."""
        if self.adapter.credentials is None:
            self.adapter.credentials = self.adapter.config.require_credentials()
        self.rest.credentials = self.adapter.credentials
        if not self._clock_synced:
            await self.rest.sync_time()
            self._clock_synced = True

    async def _signed(self, method: str, path: str) -> Any:
        await self._prepare()
        return await self.rest.request(method, path, Any, signed=True)

    async def list_symbols(self) -> list[SymbolInfo]:
        async with self._venue():
            products = await self.rest.request("GET", "/products")
        return [SymbolInfo(str(p.get("id", "")), str(p.get("status", "")), tradable(p)) for p in products]

    async def filters(self, symbol: str) -> dict[str, Any]:
        product_id = to_wire(symbol)
        async with self._venue():
            try:
                p = await self.rest.request("GET", f"/products/{product_id}")
            except CoinbaseApiError as exc:
                if exc.status == 404:
                    raise ToolError(f"Symbol not found on coinbase: {symbol}") from None
                raise
        return reshape_filters(p)

    async def balances(self) -> dict[str, VenueBalance]:
        async with self._venue():
            await self._prepare()
            return await self.adapter.account().balances()

    async def test_key(self) -> str:
        async with self._venue():
            accounts = await self._signed("GET", "/accounts")
        return f"signed GET /accounts accepted (key, secret and passphrase; {len(accounts)} accounts)"

    async def query_order(self, order_id: str, client_id: bool = False, symbol: str | None = None) -> OrderView | None:
        ref = f"client:{order_id}" if client_id else order_id
        async with self._venue():
            try:
                raw = await self._signed("GET", f"/orders/{ref}")
            except CoinbaseApiError as exc:
                if exc.status == 404:
                    return None
                raise
        return order_view(raw)

    async def probe_public(self) -> float:
        t0 = time.perf_counter()
        async with self._venue():
            await self.rest.request("GET", "/time")
        return time.perf_counter() - t0

    async def probe_signed(self) -> float:
        async with self._venue():
            await self._prepare()
            t0 = time.perf_counter()
            await self._signed("GET", "/accounts")
        return time.perf_counter() - t0

    async def close(self) -> None:
        await self.adapter.close()
