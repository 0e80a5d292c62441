"""Signed REST client for Binance spot: one keep-alive aiohttp session, local weight limiting,
server-clock timestamps, and the HTTP status rules Binance documents.

- Every request books its documented weight in a local sliding window before it is sent, so
  Binance never has to refuse; ``X-MBX-USED-WEIGHT-1M`` and ``X-MBX-ORDER-COUNT-*`` answers are
  folded back in. Waits are logged (``Rate limit wait ...`` in exchanges.log) and raised as
  ``rate_limit_wait`` incidents, repeats summarised.
- 429 and 418 carry ``Retry-After``: no request of any kind leaves before it expires. Each new
  ban is a ``rate_limit`` (429) or ``ip_banned`` (418) incident, ``Rate limit exceeded`` in its
  detail and in exchanges.log (REST and WS API answers alike: they share the gate).
- Every request has a timeout: ``order_timeout_s`` for new orders and cancels, ``http_timeout_s``
  for everything else.
- For an order or a cancel (anything but a GET), 5XX, -1007, a timeout and a lost answer mean the
  request's fate is unknown (``OrderStateUnknown``); the caller queries, it never assumes failure.
  For a GET (depth, exchangeInfo, order query, open orders, account, time) they mean Binance is
  unavailable (``VenueUnavailable``, in the guide's words: ``Exchange connection timeout``,
  ``Order book snapshot timeout``, ``Failed to connect to binance``, ``Exchange outage``).
- Failures (timeouts, refused or dropped connections, 5XX) are tracked as one outage
  (``venues.common.summary.Outage``): a ``venue_unreachable`` or ``venue_error`` incident and a
  line when it starts, the repeats summarised while it lasts, a ``venue_restored`` incident and a
  line with its duration at the first answer after it.
- -1021 (timestamp outside recvWindow) re-measures the server clock and retries once.

Orders take a faster road when it is open: ``request_now`` signs and writes the request on one of
a few raw keep-alive connections (``venues.common.http1``) before returning, so an order decided
in a market-data callback leaves in the same call stack; ``finish`` awaits and checks the answer
with exactly the rules above. Everything else (and orders, when no such connection is free or a
limit says wait) goes through aiohttp.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp
from yarl import URL

from engine.events import Incident
from engine.logs import get_logger
from venues.binance import decode as dec
from venues.binance.config import BinanceConfig, Credentials
from venues.binance.errors import (
    EXCHANGE_CONNECTION_TIMEOUT,
    EXCHANGE_OUTAGE,
    FAILED_TO_CONNECT,
    INVALID_SIGNATURE,
    INVALID_TIMESTAMP,
    RATE_LIMIT_EXCEEDED,
    SNAPSHOT_TIMEOUT,
    TIMEOUT,
    BinanceApiError,
    NotConnected,
    OrderStateUnknown,
    RateLimited,
    VenueUnavailable,
    log_api_error,
)
from venues.binance.order_wire import SignedTemplate
from venues.binance.signing import HmacSigner, encode_query, keyed_signer
from venues.binance.time_sync import ServerClock
from venues.common.http1 import Http1Connection, Http1Pool, Response, format_request, header_block
from venues.common.loop import check_write_batching, describe_write_batching
from venues.common.ratelimit import RequestLimiter, RetryAfterGate, Wait, WeightWindow
from venues.common.summary import Outage, Summary

_NO_PARAMS: Mapping[str, Any] = {}

USER_AGENT = "hft-system/0.1"

VENUE = "binance"
DEPTH_PATH = "/api/v3/depth"
#: incident kinds (``engine.eventlog_schema.INCIDENT_KINDS``)
RATE_LIMIT = "rate_limit"  # HTTP 429: a limit broken, Retry-After
IP_BANNED = "ip_banned"  # HTTP 418: the IP is banned, Retry-After
VENUE_UNREACHABLE = "venue_unreachable"  # no answer in time, connection refused or dropped
VENUE_ERROR = "venue_error"  # HTTP 5XX, -1007
VENUE_RESTORED = "venue_restored"  # the first answer after an outage (value: its seconds)
WEIGHT_WINDOW = "REQUEST_WEIGHT 1M"
ORDERS_10S = "ORDERS 10S"
ORDERS_1D = "ORDERS 1D"

# documented request weights (BDOCS rest-api.md)
W_TIME = 1
W_EXCHANGE_INFO = 20
W_ORDER_NEW = 1
W_ORDER_CANCEL = 1
W_ORDER_QUERY = 4
W_OPEN_ORDERS_SYMBOL = 6
W_OPEN_ORDERS_ALL = 80
W_ACCOUNT = 20
W_MY_TRADES = 20


def depth_weight(limit: int) -> int:
    """``GET /api/v3/depth`` weight by ``limit``."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def _retry_after_s(headers: Mapping[str, str], status: int) -> float:
    raw = headers.get("Retry-After")
    if raw is not None:
        try:
            return max(float(raw), 0.0)
        except ValueError:
            pass
    return 120.0 if status == 418 else 10.0  # 418 bans start at 2 minutes


@dataclass(slots=True)
class PendingRequest:
    """A request already written by ``request_now``; ``BinanceRest.finish`` awaits its answer."""

    conn: Http1Connection
    answer: asyncio.Future[Response]
    method: str
    path: str
    params: Mapping[str, Any]
    signed: bool
    weight: int
    orders: int
    timeout_s: float


class BinanceRest:
    """Binance spot REST. Create inside a running loop, ``await start()``, ``await close()`` at the end."""

    def __init__(
        self,
        config: BinanceConfig,
        credentials: Credentials | None = None,
        server_clock: ServerClock | None = None,
        on_incident: Callable[[Incident], None] | None = None,
        summary_interval_s: float = 60.0,
    ) -> None:
        self.config = config
        self.base = config.rest_url
        self.credentials = credentials
        self.clock = server_clock or ServerClock()
        self.on_incident = on_incident
        self.log = get_logger("exchanges")
        #: repeated warnings (429s of the requests in flight, waits, an outage's failures)
        self.summary = Summary(self.log, summary_interval_s)
        self.outage = Outage(VENUE, "REST", self.log, self.summary, self._incident)
        rl = config.rate_limits
        keep = 1.0 - rl.safety_margin
        self.gate = RetryAfterGate(on_block=self._on_ban)
        self.limiter = RequestLimiter(
            {
                "weight": [WeightWindow(WEIGHT_WINDOW, max(int(rl.request_weight_per_minute * keep), 1), 60.0)],
                "orders": [
                    WeightWindow(ORDERS_10S, max(int(rl.orders_per_10s * keep), 1), 10.0),
                    WeightWindow(ORDERS_1D, max(int(rl.orders_per_day * keep), 1), 86400.0, buckets=1440),
                ],
            },
            gate=self.gate,
            on_wait=self._on_wait,
        )
        self._session: aiohttp.ClientSession | None = None
        #: raw keep-alive connections for order entry (None: orders use aiohttp)
        self.fast: Http1Pool | None = None
        self._fast_head = (b"", "")  # (prepared header block, the API key it carries)
        #: sees every depth snapshot's raw body as received: (wire symbol, body, local receive ns)
        self.on_depth_body: Callable[[str, bytes, int], None] | None = None
        self.requests = 0
        self.status_counts: dict[int, int] = {}
        self.last_used_weight = 0

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the session; check how the running loop sends writes (``venues.common.loop``:
        the adapter corks its order connections unless the loop holds a callback's writes)."""
        if self._session is None or self._session.closed:
            loop = asyncio.get_running_loop()
            await check_write_batching(loop)  # once per loop (cached)
            self.log.info(f"binance adapter: {describe_write_batching(loop)}")
            connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=60.0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout(None),
                headers={"User-Agent": USER_AGENT},
            )

    def _timeout(self, timeout_s: float | None) -> aiohttp.ClientTimeout:
        """The whole request (connect, send, answer) within ``timeout_s``, ``http_timeout_s`` by
        default; the connection alone within the smaller of that and ``http_timeout_s``."""
        total = timeout_s or self.config.http_timeout_s
        return aiohttp.ClientTimeout(total=total, connect=min(total, self.config.http_timeout_s))

    def open_order_connections(self) -> Http1Pool | None:
        """Open the raw keep-alive order connections (in the background; idempotent). Only a
        client with API keys needs them; ``request_now`` also calls this on first use."""
        if self.fast is None and self.config.order_connections > 0 and self.credentials is not None:
            self.fast = Http1Pool(
                self.base,
                self.config.order_connections,
                connect_timeout_s=self.config.http_timeout_s,
                logger=self.log,
                answer_timeout_s=self.config.order_timeout_s,
                name=VENUE,
                summary=self.summary,
            )
            self.fast.start()
        return self.fast

    async def close(self) -> None:
        if self.fast is not None:
            await self.fast.close()
            self.fast = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.summary.close()

    async def __aenter__(self) -> BinanceRest:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- limits --------------------------------------------------------------------------------
    def apply_exchange_limits(self, rules: list[dec.RateLimitRule]) -> None:
        """Lower local limits to exchangeInfo's where those are lower (never raise them)."""
        rl = self.config.rate_limits
        if not rl.use_exchange_info:
            return
        keep = 1.0 - rl.safety_margin
        targets = {
            ("REQUEST_WEIGHT", "MINUTE", 1): ("weight", WEIGHT_WINDOW),
            ("ORDERS", "SECOND", 10): ("orders", ORDERS_10S),
            ("ORDERS", "DAY", 1): ("orders", ORDERS_1D),
        }
        for r in rules:
            hit = targets.get((r.rate_limit_type, r.interval, r.interval_num))
            if hit is None:
                continue
            kind, name = hit
            for w in self.limiter.windows[kind]:
                new = max(int(r.limit * keep), 1)
                if w.name == name and new < w.limit:
                    self.log.info(f"binance {name} limit lowered to {new} (exchangeInfo says {r.limit})")
                    w.limit = new

    def _incident(self, inc: Incident) -> None:
        if self.on_incident is not None:
            self.on_incident(inc)

    def _on_wait(self, wait: Wait) -> None:
        used = ""
        for w in self.limiter.windows["weight"]:
            used = f", weight used {w.used}/{w.limit} per minute"
        line = f"Rate limit wait {wait.seconds:.3f}s on binance before sending: {wait.limit} (local rate limit{used})"
        # every request waiting behind one full window or ban: one line and one incident, then a count
        if self.summary.info(f"wait {wait.limit}", line):
            self._incident(Incident(time.time_ns(), VENUE, "", "rate_limit_wait", wait.limit, wait.seconds))

    def _on_ban(self, seconds: float, reason: str, status: int) -> None:
        """A new Retry-After ban (``RetryAfterGate.on_block``), from a REST or a WS API answer."""
        kind = IP_BANNED if status == 418 else RATE_LIMIT
        what = "IP banned" if status == 418 else "request refused"
        detail = f"{RATE_LIMIT_EXCEEDED}: binance {what} ({reason}), no request before Retry-After {seconds:.0f} s"
        self._incident(Incident(time.time_ns(), VENUE, "", kind, detail, seconds))

    # --- core ----------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        signed: bool = False,
        weight: int = 1,
        orders: int = 0,
        timeout_s: float | None = None,
        _retried: bool = False,
    ) -> bytes:
        """Send one request and return its body; raise the adapter's errors for anything but 2XX."""
        if self._session is None:
            await self.start()
        session = self._session
        assert session is not None
        await self.limiter.acquire({"weight": weight, "orders": orders})
        headers = {}
        if signed:
            creds = self.credentials
            if creds is None:
                raise NotConnected(f"binance {path}: signed request without API keys")
            query = self._signed_query(params)
            headers["X-MBX-APIKEY"] = creds.api_key
        else:
            query = encode_query(params) if params else ""
        url = URL(f"{self.base}{path}?{query}" if query else f"{self.base}{path}", encoded=True)
        endpoint = f"{method} {path}"
        timeout = self._timeout(timeout_s)
        self.requests += 1
        try:
            async with session.request(method, url, headers=headers, timeout=timeout) as resp:
                body = await resp.read()
                status = resp.status
                resp_headers = resp.headers
        except aiohttp.ClientConnectorError as exc:
            self.outage.failure(VENUE_UNREACHABLE, FAILED_TO_CONNECT, f"{endpoint}: {exc}")
            raise NotConnected(f"{FAILED_TO_CONNECT} ({endpoint}): {exc}") from exc
        except TimeoutError:
            self._no_answer(
                method, path, EXCHANGE_CONNECTION_TIMEOUT, f"no answer within {timeout.total} s", waited_s=timeout.total
            )
        except (aiohttp.ClientError, OSError) as exc:
            self._no_answer(method, path, FAILED_TO_CONNECT, f"no answer ({type(exc).__name__}: {exc})", exc)
        return await self._answer(
            status, resp_headers, body, method, path, params, signed, weight, orders, timeout_s, _retried
        )

    def _no_answer(
        self,
        method: str,
        path: str,
        reason: str,
        detail: str,
        cause: BaseException | None = None,
        waited_s: float = 0.0,
    ) -> NoReturn:
        """A request that got no answer: an outage's failure, then the error its kind calls for
        (an order's fate is unknown; anything else just failed)."""
        endpoint = f"{method} {path}"
        if reason == EXCHANGE_CONNECTION_TIMEOUT and path == DEPTH_PATH:
            reason = SNAPSHOT_TIMEOUT
        self.outage.failure(VENUE_UNREACHABLE, reason, f"binance {endpoint} {detail}", waited_s)
        if method != "GET":
            raise OrderStateUnknown(f"{reason}: {detail}", endpoint) from cause
        raise VenueUnavailable(reason, detail, endpoint) from cause

    def _signer_for(self) -> HmacSigner:
        creds = self.credentials
        assert creds is not None
        return keyed_signer(creds.api_secret)

    def _signed_query(self, params: Mapping[str, Any] | None) -> str:
        signer = self._signer_for()
        p = dict(params or {})
        p["recvWindow"] = self.config.recv_window_ms
        p["timestamp"] = self.clock.now_ms()
        return signer.signed_query(p)

    async def _answer(
        self,
        status: int,
        resp_headers: Mapping[str, str],
        body: bytes,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        signed: bool,
        weight: int,
        orders: int,
        timeout_s: float | None,
        retried: bool,
    ) -> bytes:
        """The body of a 2XX answer; the adapter's errors (and the -1021 retry) for the rest."""
        endpoint = f"{method} {path}"
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        self._observe_headers(resp_headers)
        if 200 <= status < 300:
            self.outage.success()
            return body
        err = dec.decode_error(body)
        code, msg = (err.code, err.msg) if err is not None else (0, body[:200].decode("utf-8", "replace"))
        if status >= 500 or code == TIMEOUT:
            reason = EXCHANGE_CONNECTION_TIMEOUT if code == TIMEOUT else EXCHANGE_OUTAGE
            detail = f"HTTP {status} code={code} {msg!r}"
            self.outage.failure(VENUE_ERROR, reason, f"binance {endpoint} {detail}")
            if method != "GET":
                raise OrderStateUnknown(detail, endpoint, status, code)
            raise VenueUnavailable(reason, detail, endpoint, status, code)
        self.outage.success()  # it answered: whatever the answer, it is there
        if status in (429, 418):
            retry = _retry_after_s(resp_headers, status)
            self.gate.block(retry, f"HTTP {status} to {endpoint}", status)
            exc = RateLimited(status, code, msg, retry, endpoint)
            log_api_error(
                self.log, exc, f"HTTP {status}, no request before Retry-After {retry:.0f}s", summary=self.summary
            )
            raise exc
        exc = BinanceApiError(status, code, msg, endpoint)
        if code in (INVALID_TIMESTAMP, INVALID_SIGNATURE):
            log_api_error(self.log, exc, f"recvWindow={self.config.recv_window_ms}", self.clock.offset_ms)
            if code == INVALID_TIMESTAMP and signed and not retried:
                await self.sync_time()
                return await self.request(
                    method,
                    path,
                    params,
                    signed=signed,
                    weight=weight,
                    orders=orders,
                    timeout_s=timeout_s,
                    _retried=True,
                )
        raise exc

    # --- the order hot path ----------------------------------------------------------------------
    def request_now(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        *,
        weight: int = 1,
        orders: int = 0,
        timeout_s: float | None = None,
        conn: Http1Connection | None = None,
    ) -> PendingRequest | None:
        """Sign and write a signed request on a raw keep-alive connection before returning.

        ``conn``: the connection to use when it is still open (a cancel follows its order on the
        same connection, which Binance answers in order); otherwise the least busy one.
        None when that is not possible right now (no connection open or free, no keys, a rate
        limit or Retry-After ban says wait): the caller then uses the awaited ``request``.
        """
        conn = self._fast_conn(conn, weight, orders)
        if conn is None:
            return None
        return self._write_fast(conn, method, path, self._signed_query(params), params, weight, orders, timeout_s)

    def request_template_now(
        self,
        method: str,
        path: str,
        template: SignedTemplate,
        values: tuple[str, ...],
        *,
        weight: int = 1,
        orders: int = 0,
        timeout_s: float | None = None,
        conn: Http1Connection | None = None,
    ) -> PendingRequest | None:
        """``request_now`` for a request rendered from ``template`` (``order_wire``): the same
        request without building and encoding its parameters again. ``PendingRequest.params`` is
        empty: pass the parameters to ``finish`` (a -1021 answer is retried with them)."""
        conn = self._fast_pick(conn)
        if conn is None:
            return None
        limiter = self.limiter
        now = limiter.room_at(weight, orders)
        if now is None:
            return None
        query = self.render_template(template, values)
        sent = self._write_fast(conn, method, path, query, _NO_PARAMS, weight, orders, timeout_s)
        limiter.book_at(weight, orders, now)  # once the request is written (``room_at``)
        return sent

    def render_template(self, template: SignedTemplate, values: tuple[str, ...]) -> str:
        """The signed query string, timestamped now (``request_template_now`` sends it)."""
        return template.render_query(self._signer_for(), values, self.clock.now_ms())

    def fast_request(self, method: str, path: str, query: str) -> bytes:
        """The bytes of a request on the raw order connections (API key header included)."""
        pool = self.fast
        creds = self.credentials
        assert pool is not None and creds is not None
        block, key = self._fast_head
        if key != creds.api_key:
            block = header_block(pool.host_header, {"User-Agent": USER_AGENT, "X-MBX-APIKEY": creds.api_key})
            self._fast_head = (block, creds.api_key)
        return format_request(method, f"{pool.prefix}{path}?{query}", block)

    def _fast_conn(self, conn: Http1Connection | None, weight: int, orders: int) -> Http1Connection | None:
        conn = self._fast_pick(conn)
        if conn is None or not self.limiter.try_acquire(weight, orders):
            return None
        return conn

    def _fast_pick(self, conn: Http1Connection | None) -> Http1Connection | None:
        pool = self.fast
        if pool is None or self.credentials is None:
            self.open_order_connections()
            return None
        if conn is None or not conn.usable:
            conn = pool.pick()
        return conn

    def _write_fast(
        self,
        conn: Http1Connection,
        method: str,
        path: str,
        query: str,
        params: Mapping[str, Any],
        weight: int,
        orders: int,
        timeout_s: float | None,
    ) -> PendingRequest:
        self.requests += 1
        answer = conn.request(self.fast_request(method, path, query))
        return PendingRequest(
            conn, answer, method, path, params, True, weight, orders, timeout_s or self.config.order_timeout_s
        )

    async def finish(self, req: PendingRequest, params: Mapping[str, Any] | None = None) -> bytes:
        """The checked answer to a ``request_now`` request (same errors as ``request``);
        ``params`` replaces the request's own (a template request has none)."""
        endpoint = f"{req.method} {req.path}"
        conn = req.conn
        try:
            if req.timeout_s == conn.answer_timeout_s:  # the connection's own sweep enforces it
                status, headers, body = await req.answer
            else:
                status, headers, body = await asyncio.wait_for(req.answer, req.timeout_s)
        except TimeoutError:
            # later answers on this connection would be matched to the wrong requests: drop it
            conn.abort(f"no answer to {endpoint} within {req.timeout_s}s")
            self._no_answer(
                req.method,
                req.path,
                EXCHANGE_CONNECTION_TIMEOUT,
                f"no answer within {req.timeout_s} s",
                waited_s=req.timeout_s,
            )
        except ConnectionError as exc:
            self._no_answer(req.method, req.path, FAILED_TO_CONNECT, f"no answer ({exc})", exc)
        return await self._answer(
            status,
            headers,
            body,
            req.method,
            req.path,
            req.params if params is None else params,
            True,
            req.weight,
            req.orders,
            req.timeout_s,
            False,
        )

    def _observe_headers(self, headers: Mapping[str, str]) -> None:
        used = headers.get("X-MBX-USED-WEIGHT-1M") or headers.get("x-mbx-used-weight-1m")
        if used is not None and used.isdigit():
            self.last_used_weight = int(used)
            self.limiter.observe("weight", WEIGHT_WINDOW, int(used))
        for header, name in (("X-MBX-ORDER-COUNT-10S", ORDERS_10S), ("X-MBX-ORDER-COUNT-1D", ORDERS_1D)):
            v = headers.get(header)
            if v is not None and v.isdigit():
                self.limiter.observe("orders", name, int(v))
        # an API retirement announced on the wire (RFC 9745 Deprecation, RFC 8594 Sunset) is passed
        # to exchanges.log, where the guide looks for it (grep -i "deprecat", §8.4)
        get = headers.get
        notice = get("Deprecation") or get("deprecation") or get("Sunset") or get("sunset")
        if notice is not None:
            self.summary.warning("deprecation", f"binance API deprecation notice (Deprecation/Sunset header): {notice}")

    # --- endpoints -----------------------------------------------------------------------------
    async def server_time(self) -> int:
        return dec.decode_server_time(await self.request("GET", "/api/v3/time", weight=W_TIME))

    async def sync_time(self, samples: int = 3) -> ServerClock:
        """Measure the server clock offset; keep the sample with the shortest round trip."""
        best: tuple[float, float] | None = None
        for _ in range(max(samples, 1)):
            t0 = time.time_ns()
            server_ms = await self.server_time()
            t1 = time.time_ns()
            off, rtt = self.clock.sample(t0, server_ms, t1)
            if best is None or rtt < best[1]:
                best = (off, rtt)
        assert best is not None
        old = self.clock.offset_ms if self.clock.measured else None
        self.clock.adopt(*best)
        self.log.info(f"binance clock offset {best[0]:+.1f} ms (round trip {best[1]:.1f} ms)")
        if old is not None and abs(best[0] - old) > 100 and self.on_incident is not None:
            self.on_incident(
                Incident(time.time_ns(), VENUE, "", "clock_offset", f"offset {old:+.1f} -> {best[0]:+.1f} ms", best[0])
            )
        return self.clock

    async def exchange_info(self, wire_symbols: list[str] | None = None) -> dec.ExchangeInfoMsg:
        params: dict[str, Any] = {}
        if wire_symbols:
            if len(wire_symbols) == 1:
                params["symbol"] = wire_symbols[0]
            else:
                params["symbols"] = "[" + ",".join(f'"{s}"' for s in wire_symbols) + "]"
        body = await self.request("GET", "/api/v3/exchangeInfo", params, weight=W_EXCHANGE_INFO)
        info = dec.decode_exchange_info(body)
        self.apply_exchange_limits(info.rate_limits)
        return info

    async def depth(self, wire_symbol: str, limit: int = 1000) -> dec.Snapshot:
        body = await self.request(
            "GET", "/api/v3/depth", {"symbol": wire_symbol, "limit": limit}, weight=depth_weight(limit)
        )
        ts = time.time_ns()
        if self.on_depth_body is not None:
            self.on_depth_body(wire_symbol, body, ts)
        return dec.decode_snapshot(body, ts)

    async def new_order(self, params: Mapping[str, Any], timeout_s: float | None = None) -> dec.OrderMsg:
        body = await self.request(
            "POST",
            "/api/v3/order",
            params,
            signed=True,
            weight=W_ORDER_NEW,
            orders=1,
            timeout_s=timeout_s or self.config.order_timeout_s,
        )
        return dec.decode_order(body)

    async def cancel_order(
        self, wire_symbol: str, orig_client_order_id: str, timeout_s: float | None = None
    ) -> dec.OrderMsg:
        body = await self.request(
            "DELETE",
            "/api/v3/order",
            {"symbol": wire_symbol, "origClientOrderId": orig_client_order_id},
            signed=True,
            weight=W_ORDER_CANCEL,
            timeout_s=timeout_s or self.config.order_timeout_s,
        )
        return dec.decode_order(body)

    async def query_order(self, wire_symbol: str, orig_client_order_id: str) -> dec.OrderMsg:
        body = await self.request(
            "GET",
            "/api/v3/order",
            {"symbol": wire_symbol, "origClientOrderId": orig_client_order_id},
            signed=True,
            weight=W_ORDER_QUERY,
        )
        return dec.decode_order(body)

    async def open_orders(self, wire_symbol: str | None = None) -> list[dec.OrderMsg]:
        params = {"symbol": wire_symbol} if wire_symbol else {}
        weight = W_OPEN_ORDERS_SYMBOL if wire_symbol else W_OPEN_ORDERS_ALL
        return dec.decode_orders(await self.request("GET", "/api/v3/openOrders", params, signed=True, weight=weight))

    async def my_trades(self, wire_symbol: str, start_ms: int = 0) -> list[dec.MyTradeMsg]:
        params: dict[str, Any] = {"symbol": wire_symbol}
        if start_ms:
            params["startTime"] = start_ms
        body = await self.request("GET", "/api/v3/myTrades", params, signed=True, weight=W_MY_TRADES)
        return dec.decode_my_trades(body)

    async def account(self) -> dec.AccountMsg:
        body = await self.request("GET", "/api/v3/account", {"omitZeroBalances": "true"}, signed=True, weight=W_ACCOUNT)
        return dec.decode_account(body)
