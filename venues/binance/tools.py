"""Binance's answers to the operator's venue scripts (``engine.venue.tools.VenueTools``).

Over the adapter's REST client, so its weight limiter, server-clock timestamps and error mapping
apply. Filters: exchangeInfo's ``filters`` array re-keyed by ``filterType`` (every filter Binance
lists, its fields unchanged: ``.filters.LOT_SIZE`` is ``{"minQty", "maxQty", "stepSize"}``), the
symbol object under ``raw``. Binance needs a symbol to find an order: ``query_order`` asks for it in
``symbol`` or in every symbol of the config. Latency probes: ``GET /api/v3/ping`` (weight 1) and a
signed ``GET /api/v3/openOrders`` of the config's first symbol (weight 6).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from engine.venue.account import VenueBalance
from engine.venue.tools import OrderView, SymbolInfo, ToolError
from venues.binance.account import _STATUS
from venues.binance.adapter import BinanceAdapter, open_adapter
from venues.binance.errors import BAD_SYMBOL, NO_SUCH_ORDER, BinanceApiError, BinanceError, guide_reason
from venues.binance.rest import W_ACCOUNT, W_EXCHANGE_INFO, W_OPEN_ORDERS_SYMBOL, W_ORDER_QUERY
from venues.binance.symbols import to_wire

VENUE = "binance"


def open_tools(config_path: Path | str | None, env: Mapping[str, str] | None = None) -> BinanceTools:
    """The registry's ``tools`` factory: the exchange config (``None``: the shipped one), keys from
    ``env`` (the process environment by default)."""
    return BinanceTools(open_adapter(config_path, [], env))


def reshape_filters(info: Mapping[str, Any]) -> dict[str, Any]:
    """An exchangeInfo symbol object -> the scripts' shape (``filters`` keyed by filter type)."""
    filters = {}
    for flt in info.get("filters") or ():
        kind = flt.get("filterType")
        if isinstance(kind, str):
            filters[kind] = {k: v for k, v in flt.items() if k != "filterType"}
    return {
        "venue": VENUE,
        "symbol": f"{info.get('baseAsset', '')}-{info.get('quoteAsset', '')}",
        "venue_symbol": info.get("symbol", ""),
        "status": info.get("status", ""),
        "filters": filters,
        "raw": dict(info),
    }


def order_view(o: Mapping[str, Any], symbol: str) -> OrderView:
    status = _STATUS.get(str(o.get("status", "")))
    return OrderView(
        venue=VENUE,
        symbol=symbol,
        venue_order_id=str(o.get("orderId", "")),
        client_order_id=str(o.get("clientOrderId", "")),
        side=str(o.get("side", "")),
        order_type=str(o.get("type", "")),
        status=status.name if status is not None else "UNKNOWN",
        venue_status=str(o.get("status", "")),
        price=str(o.get("price", "")),
        qty=str(o.get("origQty", "")),
        filled=str(o.get("executedQty", "")),
        time_in_force=str(o.get("timeInForce", "")),
        post_only=o.get("type") == "LIMIT_MAKER",
        created_ns=int(o.get("time") or 0) * 1_000_000,
        updated_ns=int(o.get("updateTime") or o.get("time") or 0) * 1_000_000,
        raw=dict(o),
    )


class BinanceTools:
    venue = VENUE
    public_probe = "GET /api/v3/ping"
    signed_probe = "GET /api/v3/openOrders"
    signed_probe_budget = 50  # weight 6 each: 300 of the 6,000 a minute
    public_probe_interval_s = 0.0

    def __init__(self, adapter: BinanceAdapter) -> None:
        self.adapter = adapter
        self.rest = adapter.rest
        self.endpoint = adapter.config.rest_url
        self._clock_synced = False

    def has_keys(self) -> bool:
        return self.adapter.credentials is not None

    @asynccontextmanager
    async def _venue(self) -> AsyncIterator[None]:
        """Binance's refusals and outages -> ``ToolError`` in the guide's words."""
        try:
            yield
        except BinanceApiError as exc:
            reason = guide_reason(exc.code, exc.msg)
            raise ToolError(f"{reason} (binance {exc.code}: {exc.msg})" if reason != exc.msg else reason) from None
        except BinanceError as exc:
            raise ToolError(str(exc)) from None

    async def _get(self, path: str, params: dict[str, Any] | None = None, *, weight: int, signed: bool = False) -> Any:
        if signed:
            self._require_keys()
            if not self._clock_synced:
                await self.rest.sync_time()  # signed requests carry Binance's clock
                self._clock_synced = True
        return json.loads(await self.rest.request("GET", path, params, signed=signed, weight=weight))

    def _require_keys(self) -> None:
        if self.adapter.credentials is None:
            self.adapter.credentials = self.adapter.config.require_credentials()
        self.rest.credentials = self.adapter.credentials

    async def list_symbols(self) -> list[SymbolInfo]:
        async with self._venue():
            info = await self._get("/api/v3/exchangeInfo", weight=W_EXCHANGE_INFO)
        out = []
        for s in info.get("symbols") or ():
            status = str(s.get("status", ""))
            out.append(SymbolInfo(f"{s.get('baseAsset', '')}-{s.get('quoteAsset', '')}", status, status == "TRADING"))
        return out

    async def filters(self, symbol: str) -> dict[str, Any]:
        wire = to_wire(symbol)
        async with self._venue():
            try:
                info = await self._get("/api/v3/exchangeInfo", {"symbol": wire}, weight=W_EXCHANGE_INFO)
            except BinanceApiError as exc:
                if exc.code == BAD_SYMBOL:
                    raise ToolError(f"Symbol not found on binance: {symbol}") from None
                raise
        symbols = [s for s in info.get("symbols") or () if s.get("symbol") == wire]
        if not symbols:
            raise ToolError(f"Symbol not found on binance: {symbol}")
        return reshape_filters(symbols[0])

    async def balances(self) -> dict[str, VenueBalance]:
        self._require_keys()
        async with self._venue():
            if not self._clock_synced:
                await self.rest.sync_time()
                self._clock_synced = True
            return await self.adapter.account().balances()

    async def test_key(self) -> str:
        async with self._venue():
            acct = await self._get("/api/v3/account", {"omitZeroBalances": "true"}, weight=W_ACCOUNT, signed=True)
        perms = ", ".join(str(p) for p in acct.get("permissions") or ()) or "none listed"
        return (
            f"signed GET /api/v3/account accepted: canTrade={acct.get('canTrade')}, "
            f"canWithdraw={acct.get('canWithdraw')}, permissions: {perms}"
        )

    async def query_order(self, order_id: str, client_id: bool = False, symbol: str | None = None) -> OrderView | None:
        if not client_id and not order_id.isdigit():
            raise ValueError(f"binance order ids are numbers, got {order_id!r} (a client order id: --client-id)")
        symbols = [symbol] if symbol else list(self.adapter.config.symbols)
        key = "origClientOrderId" if client_id else "orderId"
        for sym in symbols:
            params = {"symbol": to_wire(sym), key: order_id}
            async with self._venue():
                try:
                    got = await self._get("/api/v3/order", params, weight=W_ORDER_QUERY, signed=True)
                except BinanceApiError as exc:
                    if exc.code == NO_SUCH_ORDER:
                        continue
                    if exc.code == BAD_SYMBOL:
                        raise ToolError(f"Symbol not found on binance: {sym}") from None
                    raise
            return order_view(got, sym)
        return None

    async def probe_public(self) -> float:
        t0 = time.perf_counter()
        async with self._venue():
            await self.rest.request("GET", "/api/v3/ping", weight=1)
        return time.perf_counter() - t0

    async def probe_signed(self) -> float:
        wire = to_wire(self.adapter.config.symbols[0])
        self._require_keys()
        async with self._venue():
            if not self._clock_synced:
                await self.rest.sync_time()
                self._clock_synced = True
            t0 = time.perf_counter()
            await self.rest.request(
                "GET", "/api/v3/openOrders", {"symbol": wire}, signed=True, weight=W_OPEN_ORDERS_SYMBOL
            )
        return time.perf_counter() - t0

    async def close(self) -> None:
        await self.adapter.close()
