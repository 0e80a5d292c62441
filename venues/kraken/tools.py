"""Kraken's answers to the operator's venue scripts (``engine.venue.tools.VenueTools``).

Over the adapter's REST client (its decaying counter and error mapping apply).

Filters: Kraken's ``AssetPairs`` entry mapped onto the guide's filter names (the entry itself under
``raw``):

| scripts' key | Kraken field |
|---|---|
| ``PRICE_FILTER.tickSize`` | ``tick_size`` (else one unit of ``pair_decimals``) |
| ``PRICE_FILTER.decimals`` | ``pair_decimals`` |
| ``LOT_SIZE.minQty`` | ``ordermin`` |
| ``LOT_SIZE.stepSize`` | one unit of ``lot_decimals`` |
| ``LOT_SIZE.decimals`` | ``lot_decimals`` |
| ``NOTIONAL.minNotional`` | ``costmin`` (quote currency) |
| ``NOTIONAL.decimals`` | ``cost_decimals`` |

Kraken has no price bounds nor a largest order size, so ``minPrice``/``maxPrice``/``maxQty`` are
absent. ``status``: Kraken's pair status (online, cancel_only, post_only, limit_only,
reduce_only); ``online``, ``post_only`` and ``limit_only`` take new orders.

Nonces: these tools keep their own in memory (µs since the epoch, strictly increasing) and never
write the trading process's high-water mark (``nonce_file``): a script run next to a trading
daemon on the same key then sends nonces from the clock, which the daemon's next ones exceed, so
the daemon is never refused for a nonce the script used. (Right after a daemon restart its nonces
may run ahead of the clock: the script is then the one refused, with ``Invalid nonce``.)

Latency probes: public ``Time`` (Kraken asks for about one public call a second, hence
``public_probe_interval_s``) and private ``Balance`` (1 on the REST counter; the wait for our copy
of the counter happens before the clock starts). The counter is per key, shared with a daemon
trading on it, so a latency run makes only a few signed calls by default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.venue.account import VenueBalance
from engine.venue.tools import OrderView, SymbolInfo, ToolError
from venues.kraken import errors as ke
from venues.kraken.account import KrakenAccount
from venues.kraken.adapter import KrakenAdapter
from venues.kraken.config import load_config
from venues.kraken.signing import NonceSource
from venues.kraken.symbols import from_ws, is_canonical, to_altname

VENUE = "kraken"
TRADABLE = ("online", "post_only", "limit_only")
#: what Kraken answers a query for an order it does not have
UNKNOWN_ORDER_KEYS = (ke.UNKNOWN_ORDER, "EOrder:Invalid order")
_STATUS = {"pending": "PENDING", "open": "OPEN", "closed": "FILLED", "canceled": "CANCELED", "expired": "EXPIRED"}


def open_tools(config_path: Path | str | None, env: Mapping[str, str] | None = None) -> KrakenTools:
    """The registry's ``tools`` factory: the exchange config (``None``: the shipped one), keys from
    ``env`` (the process environment by default)."""
    config = load_config(config_path, env=env) if config_path is not None else load_config(env=env)
    return KrakenTools(KrakenAdapter(config, config.credentials(env), nonces=NonceSource(None)))


def _unit(decimals: int) -> str:
    return f"{Decimal(1).scaleb(-decimals):f}"


def reshape_filters(key: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """One AssetPairs entry -> the scripts' shape (mapping in the module docstring)."""
    pd, ld = int(info.get("pair_decimals", 0)), int(info.get("lot_decimals", 0))
    filters: dict[str, Any] = {
        "PRICE_FILTER": {"tickSize": str(info.get("tick_size") or _unit(pd)), "decimals": pd},
        "LOT_SIZE": {"stepSize": _unit(ld), "decimals": ld},
    }
    if info.get("ordermin") is not None:
        filters["LOT_SIZE"]["minQty"] = str(info["ordermin"])
    if info.get("costmin") is not None:
        filters["NOTIONAL"] = {"minNotional": str(info["costmin"])}
        if info.get("cost_decimals") is not None:
            filters["NOTIONAL"]["decimals"] = int(info["cost_decimals"])
    return {
        "venue": VENUE,
        "symbol": from_ws(str(info.get("wsname", ""))),
        "venue_symbol": str(info.get("altname", key)),
        "status": str(info.get("status", "online")),
        "filters": filters,
        "raw": {key: dict(info)},
    }


def order_view(txid: str, o: Mapping[str, Any], symbol: str) -> OrderView:
    d = o.get("descr") or {}
    filled = Decimal(str(o.get("vol_exec") or 0))
    venue_status = str(o.get("status", ""))
    status = _STATUS.get(venue_status, "UNKNOWN")
    if status == "OPEN" and filled > 0:
        status = "PARTIALLY_FILLED"
    return OrderView(
        venue=VENUE,
        symbol=symbol,
        venue_order_id=txid,
        client_order_id=str(o.get("cl_ord_id") or ""),
        side=str(d.get("type", "")).upper(),
        order_type=str(d.get("ordertype", "")).upper(),
        status=status,
        venue_status=venue_status,
        price=str(d.get("price", "")),
        qty=str(o.get("vol", "")),
        filled=str(o.get("vol_exec", "")),
        post_only="post" in str(o.get("oflags", "")),
        created_ns=int(float(o.get("opentm") or 0) * 1e9),
        updated_ns=int(float(o.get("closetm") or o.get("opentm") or 0) * 1e9),
        raw=dict(o),
    )


class KrakenTools:
    venue = VENUE
    public_probe = "GET /0/public/Time"
    signed_probe = "POST /0/private/Balance"
    signed_probe_budget = 5
    public_probe_interval_s = 1.0

    def __init__(self, adapter: KrakenAdapter) -> None:
        self.adapter = adapter
        self.rest = adapter.rest
        self.endpoint = adapter.config.rest_url

    def has_keys(self) -> bool:
        return self.adapter.credentials is not None

    @asynccontextmanager
    async def _venue(self) -> AsyncIterator[None]:
        """Kraken's refusals and outages -> ``ToolError`` in the guide's words."""
        try:
            yield
        except ke.KrakenError as exc:
            raise ToolError(str(exc)) from None

    def _require_keys(self) -> None:
        if self.adapter.credentials is None:
            self.adapter.credentials = self.adapter.config.require_credentials()
        self.rest.credentials = self.adapter.credentials

    async def list_symbols(self) -> list[SymbolInfo]:
        async with self._venue():
            pairs = await self.rest.public("AssetPairs")
        out = []
        for info in pairs.values():
            if not info.get("wsname"):  # dark-pool and other pairs with no public book
                continue
            status = str(info.get("status", "online"))
            out.append(SymbolInfo(from_ws(str(info["wsname"])), status, status in TRADABLE))
        return out

    async def _pair(self, altname: str, symbol: str) -> tuple[str, dict[str, Any]]:
        async with self._venue():
            try:
                got = await self.rest.asset_pairs([altname])
            except ke.KrakenApiError as exc:
                if exc.key == ke.UNKNOWN_PAIR:
                    raise ToolError(f"Symbol not found on kraken: {symbol}") from None
                raise
        if not got:
            raise ToolError(f"Symbol not found on kraken: {symbol}")
        key, info = next(iter(got.items()))
        return key, info

    async def filters(self, symbol: str) -> dict[str, Any]:
        if not is_canonical(symbol):
            raise ValueError(f"symbol {symbol!r} is not in BASE-QUOTE form (e.g. BTC-USD)")
        key, info = await self._pair(to_altname(symbol), symbol)
        return reshape_filters(key, info)

    async def balances(self) -> dict[str, VenueBalance]:
        self._require_keys()
        async with self._venue():
            return await KrakenAccount(self.rest, {}, {}).balances()

    async def test_key(self) -> str:
        self._require_keys()
        async with self._venue():
            got = await self.rest.private("Balance")
        return f"signed Balance accepted ({len(got)} assets)"

    async def query_order(self, order_id: str, client_id: bool = False, symbol: str | None = None) -> OrderView | None:
        self._require_keys()
        found: tuple[str, dict[str, Any]] | None = None
        async with self._venue():
            if client_id:
                # Kraken finds orders by client id in the open and the closed lists
                for method, part in (("OpenOrders", "open"), ("ClosedOrders", "closed")):
                    got = (await self.rest.private(method, {"cl_ord_id": order_id}))[part]
                    hit = [(t, o) for t, o in got.items() if o.get("cl_ord_id") == order_id]
                    if hit:
                        found = hit[0]
                        break
            else:
                try:
                    got = await self.rest.query_orders([order_id])
                except ke.KrakenApiError as exc:
                    if exc.key not in UNKNOWN_ORDER_KEYS:
                        raise
                    got = {}
                if order_id in got:
                    found = (order_id, got[order_id])
        if found is None:
            return None
        txid, o = found
        altname = str((o.get("descr") or {}).get("pair", ""))
        _, info = await self._pair(altname, altname)
        return order_view(txid, o, from_ws(str(info.get("wsname", altname))))

    async def probe_public(self) -> float:
        t0 = time.perf_counter()
        async with self._venue():
            await self.rest.public("Time")
        return time.perf_counter() - t0

    async def probe_signed(self) -> float:
        self._require_keys()
        # our copy of Kraken's counter may make the call wait: that wait is ours, not the venue's
        await asyncio.sleep(self.rest.counter.wait_time(1))
        t0 = time.perf_counter()
        async with self._venue():
            await self.rest.private("Balance")
        return time.perf_counter() - t0

    async def close(self) -> None:
        await self.adapter.close()
