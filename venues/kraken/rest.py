"""Kraken REST: public and signed private calls on one keep-alive aiohttp session.

Every answer is HTTP 200 with ``{"error": [...], "result": {...}}``; a non-empty ``error`` is a
``KrakenApiError`` (its ``reason`` in the guide's words). No answer in time, a refused connection,
an HTTP 5XX or ``EService:Unavailable`` is ``VenueUnavailable`` and counts towards an outage
(``venue_unreachable`` / ``venue_error`` incidents, ``venue_restored`` at the first answer); on an
order that means the state is unknown and must be queried, never assumed.

Rate limit (KDOCS guides/spot-rest-ratelimits): a counter per API key that every private call
raises by 1 (2 for ledger and trade-history queries; AddOrder/CancelOrder count against the
trading engine's own limiter instead) and that *decays* by ``rest_decay_per_s`` (Starter: 0.33/s)
down to 0; over ``rest_max`` (Starter: 15) Kraken answers ``EAPI:Rate limit exceeded``.
``DecayingCounter`` keeps our own copy and waits before a call would cross it (a
``rate_limit_wait`` incident); an ``EAPI:Rate limit exceeded`` from Kraken all the same (another
process on the same key) fills our counter and blocks until it has decayed.

Nonces come from ``signing.NonceSource`` (persisted high-water mark): one process per key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from engine.events import Incident
from engine.logs import get_logger
from venues.common.summary import Outage, Summary
from venues.kraken import errors as ke
from venues.kraken.config import Credentials, KrakenConfig
from venues.kraken.signing import NonceSource, encode_body, sign

#: private calls that cost 2 on the REST counter
#: calls kept free below the REST counter's maximum (see ``KrakenRest.__init__``)
REST_MARGIN = 1.0
HEAVY = {"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"}
#: private calls counted by the trading engine's limiter, not the REST counter
TRADING = {"AddOrder", "AddOrderBatch", "CancelOrder", "CancelOrderBatch", "EditOrder", "AmendOrder", "CancelAll"}


class DecayingCounter:
    """Kraken's counter: +cost per call, -``decay_per_s`` continuously, never below 0; a call may
    go when ``count + cost <= max``."""

    def __init__(self, maximum: float, decay_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max = maximum
        self.decay = decay_per_s
        self.clock = clock
        self._count = 0.0
        self._at = clock()

    def _now(self) -> float:
        t = self.clock()
        self._count = max(0.0, self._count - (t - self._at) * self.decay)
        self._at = t
        return t

    @property
    def count(self) -> float:
        self._now()
        return self._count

    def wait_time(self, cost: float) -> float:
        self._now()
        over = self._count + cost - self.max
        return over / self.decay if over > 0 else 0.0

    def try_acquire(self, cost: float) -> bool:
        if self.wait_time(cost) > 0:
            return False
        self._count += cost
        return True

    def book(self, cost: float) -> None:
        self._now()
        self._count += cost

    def fill(self) -> None:
        """The venue said we are over: assume the counter is full."""
        self._now()
        self._count = max(self._count, self.max)


class _Reply(msgspec.Struct):
    error: list[str] = []
    result: Any = None


_reply = msgspec.json.Decoder(_Reply)


class KrakenRest:
    def __init__(
        self,
        config: KrakenConfig,
        credentials: Credentials | None = None,
        on_incident: Callable[[Incident], None] | None = None,
        nonces: NonceSource | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.log = get_logger("exchanges")
        self.on_incident = on_incident or (lambda _i: None)
        self.nonces = nonces
        rl = config.rate_limits
        # one call below Kraken's maximum: Kraken counts a call when it arrives, we when we send,
        # so a call that travelled faster than the one before it finds Kraken's counter a little
        # higher than ours; at the very limit that is a refusal
        self.counter = DecayingCounter(max(rl.rest_max - REST_MARGIN, 1.0), rl.rest_decay_per_s)
        self.summary = Summary(self.log)
        self.outage = Outage("kraken", "REST API", self.log, self.summary, lambda inc: self.on_incident(inc))
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.waits = 0

    def _incident(self, kind: str, detail: str, value: float = 0.0) -> None:
        self.on_incident(Incident(time.time_ns(), "kraken", "", kind, detail, value))

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.http_timeout_s),
                headers={"User-Agent": "hft-system/kraken"},
            )

    async def close(self) -> None:
        self.summary.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _nonce_source(self) -> NonceSource:
        if self.nonces is None:
            self.nonces = NonceSource(self.config.nonce_file)
        return self.nonces

    # --- transport ---------------------------------------------------------------------------------
    async def public(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self._call("GET", f"/0/public/{method}", params or {}, None)

    async def private(self, method: str, params: dict[str, Any] | None = None) -> Any:
        creds = self.credentials
        if creds is None:
            creds = self.credentials = self.config.require_credentials()
        cost = 0 if method in TRADING else (2 if method in HEAVY else 1)
        if cost:
            wait = self.counter.wait_time(cost)
            if wait > 0:
                self.waits += 1
                self._incident(
                    "rate_limit_wait", f"REST counter {self.counter.count:.2f}: {method} waits {wait:.2f}s", wait
                )
                await asyncio.sleep(wait)
            self.counter.book(cost)
        path = f"/0/private/{method}"
        body = {"nonce": self._nonce_source().next(), **(params or {})}
        postdata = encode_body(body)
        headers = {
            "API-Key": creds.api_key,
            "API-Sign": sign(path, postdata, body["nonce"], creds.api_secret),
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        }
        return await self._call("POST", path, None, postdata, headers)

    async def _call(
        self,
        verb: str,
        path: str,
        query: dict[str, Any] | None,
        body: str | None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        await self.start()
        assert self._session is not None
        url = self.config.rest_url + path
        self.requests += 1
        try:
            async with self._session.request(verb, url, params=query, data=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            why = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            self.outage.failure("venue_unreachable", why, f"{verb} {path}: {exc or why}")
            raise ke.VenueUnavailable(f"Failed to connect to kraken: {verb} {path}: {why}") from None
        if status >= 500:
            self.outage.failure("venue_error", f"HTTP {status}", f"{verb} {path}")
            raise ke.VenueUnavailable(f"{ke.EXCHANGE_OUTAGE}: kraken {verb} {path} answered HTTP {status}")
        try:
            reply = _reply.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.outage.failure("venue_error", f"HTTP {status}", f"{verb} {path}: not a Kraken answer")
            raise ke.VenueUnavailable(
                f"kraken {verb} {path}: HTTP {status}, not a Kraken answer: {raw[:120]!r}"
            ) from None
        self.outage.success()
        if reply.error:
            text = reply.error[0]
            if ke.is_rate_limit(text):
                self.counter.fill()
                wait = self.counter.wait_time(1)
                self._incident("rate_limit", f"{text} on {path}", wait)
                raise ke.RateLimited(wait, text)
            if ke.is_outage(text):
                self.outage.failure("venue_error", text, f"{verb} {path}")
                raise ke.VenueUnavailable(f"{ke.EXCHANGE_OUTAGE}: {text} ({path})")
            raise ke.KrakenApiError(reply.error, path)
        return reply.result

    # --- calls -------------------------------------------------------------------------------------
    async def server_time(self) -> int:
        """Kraken's clock, ns."""
        r = await self.public("Time")
        return int(r["unixtime"]) * 1_000_000_000

    async def asset_pairs(self, altnames: list[str]) -> dict[str, Any]:
        return await self.public("AssetPairs", {"pair": ",".join(altnames)})

    async def ws_token(self) -> str:
        r = await self.private("GetWebSocketsToken")
        return str(r["token"])

    async def balances(self) -> dict[str, str]:
        return await self.private("Balance")

    async def open_orders(self) -> dict[str, Any]:
        return (await self.private("OpenOrders", {"trades": "true"}))["open"]

    async def closed_orders(self, cl_ord_id: str = "") -> dict[str, Any]:
        """The most recent closed orders (50), only those of ``cl_ord_id`` when given."""
        params = {"trades": "true", **({"cl_ord_id": cl_ord_id} if cl_ord_id else {})}
        return (await self.private("ClosedOrders", params))["closed"]

    async def query_orders(self, txids: list[str]) -> dict[str, Any]:
        return await self.private("QueryOrders", {"txid": ",".join(txids), "trades": "true"})

    async def trades_history(self, start_s: float) -> dict[str, Any]:
        return (await self.private("TradesHistory", {"start": f"{start_s:.6f}"}))["trades"]

    async def cancel_order(self, txid: str | None = None, cl_ord_id: str | None = None) -> int:
        params = {"txid": txid} if txid else {"cl_ord_id": cl_ord_id}
        return int((await self.private("CancelOrder", params))["count"])
