"""Coinbase Exchange REST: one keep-alive aiohttp session, signed requests, local token buckets.

Every request has a timeout. Signed ones (``CB-ACCESS-*``, ``signing.ExchangeSigner``) carry a
timestamp on Coinbase's clock: ``sync_time`` measures the offset from ``GET /time`` (RTT/2), and
an answer ``request timestamp expired`` re-measures it once and retries. Answers:

* 2xx: the body, decoded into the caller's msgspec type;
* 4xx ``{"message"}``: ``CoinbaseApiError`` with the guide's wording (``Invalid passphrase``,
  ``Invalid signature``, ``Insufficient balance``...); 429: ``RateLimited`` after blocking the
  bucket for ``Retry-After`` (1 s when absent) with a ``rate_limit`` incident;
* 5xx, timeouts, refused connections: ``VenueUnavailable``, tracked as an outage from its first
  failure to the next answer (``venue_unreachable`` / ``venue_error`` / ``venue_restored``). For an
  order this means its state is unknown: the caller queries, it never assumes a failure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import msgspec

from engine.events import Incident
from engine.logs import get_logger
from venues.coinbase import decode as d
from venues.coinbase.config import CoinbaseConfig, Credentials
from venues.coinbase.errors import (
    CB_TIMESTAMP_EXPIRED,
    EXCHANGE_OUTAGE,
    CoinbaseApiError,
    RateLimited,
    VenueUnavailable,
)
from venues.coinbase.ratelimit import TokenBucket
from venues.coinbase.signing import ExchangeSigner, timestamp_now
from venues.common.summary import Outage, Summary

T = TypeVar("T")
VENUE = "coinbase"


class CoinbaseRest:
    def __init__(
        self,
        config: CoinbaseConfig,
        credentials: Credentials | None = None,
        on_incident: Callable[[Incident], None] | None = None,
    ) -> None:
        self.config = config
        self.log = get_logger("exchanges")
        self.summary = Summary(self.log)
        self._on_incident = on_incident
        self.outage = Outage(VENUE, "REST", self.log, self.summary, self._incident)
        rl = config.rate_limits
        self.private = TokenBucket(rl.private_per_s, rl.private_burst, rl.safety_margin)
        self.public = TokenBucket(rl.public_per_s, rl.public_burst, rl.safety_margin)
        self.signer: ExchangeSigner | None = None
        self.credentials = credentials
        self.clock_offset_s = 0.0
        self.session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.rate_limited = 0

    @property
    def credentials(self) -> Credentials | None:
        return self._credentials

    @credentials.setter
    def credentials(self, creds: Credentials | None) -> None:
        self._credentials = creds
        self.signer = ExchangeSigner(creds.api_key, creds.api_secret, creds.passphrase) if creds else None

    def _incident(self, inc: Incident) -> None:
        if self._on_incident is not None:
            self._on_incident(inc)

    async def start(self) -> None:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.http_timeout_s),
                headers={"User-Agent": "hft-system", "Accept": "application/json"},
            )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
        self.summary.close()

    # --- the request ------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        type_: type[T] | Any = Any,
        body: dict[str, Any] | None = None,
        signed: bool = False,
        _retry: bool = True,
    ) -> T:
        """``path`` includes the query string (Coinbase signs it)."""
        await self.start()
        assert self.session is not None
        bucket = self.private if signed else self.public
        waited = await bucket.acquire()
        if waited > 0.05:
            self.summary.warning("wait", f"coinbase REST: local rate limit held a request {waited:.2f}s")
        text = json.dumps(body, separators=(",", ":")) if body is not None else ""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if signed:
            if self.signer is None:
                raise CoinbaseApiError(401, "invalid api key", path)
            headers.update(self.signer.headers(method, path, text, timestamp_now(self.clock_offset_s)))
        self.requests += 1
        sent = time.monotonic()
        try:
            async with self.session.request(
                method, self.config.rest_url + path, data=text or None, headers=headers
            ) as r:
                raw = await r.read()
                status = r.status
                retry_after = r.headers.get("Retry-After")
        except TimeoutError:
            self.outage.failure(
                "venue_unreachable", "Exchange connection timeout", f"{method} {path}", time.monotonic() - sent
            )
            raise VenueUnavailable(f"Exchange connection timeout: coinbase {method} {path}") from None
        except aiohttp.ClientError as exc:
            self.outage.failure("venue_unreachable", "Failed to connect to coinbase", f"{method} {path}: {exc}")
            raise VenueUnavailable(f"Failed to connect to coinbase: {method} {path}: {exc}") from None
        if status >= 500:
            self.outage.failure("venue_error", EXCHANGE_OUTAGE, f"HTTP {status} on {method} {path}")
            raise VenueUnavailable(f"{EXCHANGE_OUTAGE}: coinbase HTTP {status} on {method} {path}")
        self.outage.success()
        if status >= 400:
            try:
                message = msgspec.json.decode(raw, type=d.ErrorBody).message
            except (msgspec.DecodeError, msgspec.ValidationError):
                message = raw[:200].decode("utf-8", "replace")
            if status == 429:
                self.rate_limited += 1
                try:
                    wait = float(retry_after) if retry_after else 1.0
                except ValueError:
                    wait = 1.0
                bucket.block(wait)
                self.log.warning(f"Rate limit exceeded: coinbase {method} {path}, waiting {wait:.1f}s ({message!r})")
                self._incident(Incident(time.time_ns(), VENUE, "", "rate_limit", f"{method} {path}: {message}", wait))
                raise RateLimited(message, wait, path)
            if _retry and signed and CB_TIMESTAMP_EXPIRED in message.lower():
                await self.sync_time()
                return await self.request(method, path, type_, body, signed, _retry=False)
            raise CoinbaseApiError(status, message, path)
        if type_ is Any:
            return msgspec.json.decode(raw)  # type: ignore[no-any-return]
        try:
            return msgspec.json.decode(raw, type=type_)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CoinbaseApiError(status, f"unexpected answer: {exc}", path) from None

    # --- endpoints ----------------------------------------------------------------------------------
    async def sync_time(self) -> float:
        t0 = time.time()
        st = await self.request("GET", "/time", d.ServerTime)
        t1 = time.time()
        self.clock_offset_s = st.epoch - (t0 + t1) / 2
        if abs(self.clock_offset_s) > 1.0:
            self.log.warning(f"coinbase clock offset {self.clock_offset_s:+.3f}s (requests are stamped on its clock)")
        return self.clock_offset_s

    async def product(self, product_id: str) -> d.Product:
        return await self.request("GET", f"/products/{product_id}", d.Product)

    async def products(self) -> list[d.Product]:
        return await self.request("GET", "/products", list[d.Product])

    async def place_order(self, body: dict[str, Any]) -> d.ExchangeOrder:
        return await self.request("POST", "/orders", d.ExchangeOrder, body, signed=True)

    async def cancel_order(self, order_id: str = "", client_oid: str = "", product_id: str = "") -> str:
        ref = order_id or f"client:{client_oid}"
        q = f"?product_id={product_id}" if product_id else ""
        return await self.request("DELETE", f"/orders/{ref}{q}", str, signed=True)

    async def get_order(self, order_id: str = "", client_oid: str = "") -> d.ExchangeOrder:
        ref = order_id or f"client:{client_oid}"
        return await self.request("GET", f"/orders/{ref}", d.ExchangeOrder, signed=True)

    async def open_orders(self, product_id: str = "") -> list[d.ExchangeOrder]:
        q = f"&product_id={product_id}" if product_id else ""
        return await self.request("GET", f"/orders?status=open{q}", list[d.ExchangeOrder], signed=True)

    async def accounts(self) -> list[d.Account]:
        return await self.request("GET", "/accounts", list[d.Account], signed=True)

    async def fills(self, product_id: str, order_id: str = "") -> list[d.ExchangeFill]:
        q = f"order_id={order_id}" if order_id else f"product_id={product_id}"
        return await self.request("GET", f"/fills?{q}", list[d.ExchangeFill], signed=True)
