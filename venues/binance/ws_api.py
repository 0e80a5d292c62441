"""Binance WebSocket API session: signed requests matched to responses by ``id``, and the
user-data events (``{"subscriptionId":..,"event":{..}}``) that arrive on the same connection.

Requests book their weight in the adapter's shared limiter (Binance counts REST and WS API
weight together per IP), and a 429/418 answer blocks its shared Retry-After gate (the REST
client raises the incident for a new ban). A request whose connection drops before its answer
arrives, or that gets no answer in time, fails with ``OrderStateUnknown`` when it places or
cancels orders ("query it", never "it failed"), and with ``VenueUnavailable`` when it only reads
(``Exchange connection timeout``). Repeated warnings (``serverShutdown`` bursts, 429s) are
summarised (``venues.common.summary``); a ``serverShutdown`` reconnects once per connection.

``send_now`` is the order hot path: it signs, encodes and writes the request frame to the socket
before returning (``None`` when the limiter says wait, so the caller takes the awaited ``call``);
``answer`` then awaits the response. ``call`` is the two together, with a wait for the limiter.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from engine.logs import get_logger
from venues.binance.config import BinanceConfig, Credentials
from venues.binance.decode import ServerShutdownMsg, UserFrameDecoder, WsApiMessage
from venues.binance.errors import (
    EXCHANGE_CONNECTION_TIMEOUT,
    EXCHANGE_OUTAGE,
    INVALID_SIGNATURE,
    INVALID_TIMESTAMP,
    TIMEOUT,
    BinanceApiError,
    NotConnected,
    OrderStateUnknown,
    RateLimited,
    VenueUnavailable,
    log_api_error,
)
from venues.binance.order_wire import SignedTemplate
from venues.binance.signing import HmacSigner, keyed_signer
from venues.binance.time_sync import ServerClock
from venues.common.backoff import AttemptWindow, ReconnectPolicy
from venues.common.ratelimit import RequestLimiter
from venues.common.summary import Summary
from venues.common.ws import DirectConnection, ReconnectingWebSocket, WsSettings

_encode = msgspec.json.encode


_SWEEP_S = 0.05  # how often answered and timed-out requests are swept; how late a timeout may fire


def changes_state(method: str) -> bool:
    """Whether a WS API method may place or cancel orders (its fate matters when unanswered)."""
    if method in ("order.status", "order.test", "orderList.status", "openOrders.status", "allOrders"):
        return False
    return method.startswith(("order.", "orderList.", "sor.order", "openOrders.cancel"))


class BinanceWsApi:
    """One WS API connection, kept alive. ``on_event(msg, event, ts_recv)`` gets user-data events;
    ``on_connected()`` callbacks run (synchronously) after every (re)connect."""

    def __init__(
        self,
        config: BinanceConfig,
        credentials: Credentials | None,
        server_clock: ServerClock,
        limiter: RequestLimiter | None = None,
        on_event: Callable[[WsApiMessage, msgspec.Struct, int], None] | None = None,
        name: str = "binance ws api",
        attempt_window: AttemptWindow | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.clock = server_clock
        self.limiter = limiter
        self.on_event = on_event
        self.on_connected: list[Callable[[], None]] = []
        self.on_disconnected: list[Callable[[str], None]] = []
        self.log = get_logger("exchanges")
        self.summary = Summary(self.log)
        self._shutdown_conn: object = None  # the connection a serverShutdown was acted on for
        self.server_shutdowns = 0
        self.decoder = UserFrameDecoder(self.log)
        self._pending: dict[str, asyncio.Future[WsApiMessage]] = {}
        self._prefix = f"h{os.getpid() % 10000}x"
        self._ids = itertools.count(1)
        self._deadlines: deque[tuple[float, asyncio.Future[WsApiMessage]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.ws = ReconnectingWebSocket(
            name,
            lambda: self.config.ws_api_url,
            self._on_frame,
            ReconnectPolicy(config.reconnect, shared_window=attempt_window),
            self.log,
            WsSettings(
                ping_interval_s=config.ping_interval_s,
                ping_timeout_s=config.ping_timeout_s,
                max_age_s=config.max_connection_age_s,
            ),
            on_open=self._on_open,
            on_close=self._on_close,
        )

    def start(self) -> asyncio.Task[None]:
        return self.ws.start()

    async def stop(self) -> None:
        await self.ws.stop()
        self._fail_pending("session stopped")
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._deadlines.clear()
        self.summary.close()

    @property
    def connected(self) -> bool:
        return self.ws.live is not None

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending)

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self.ws.connected.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # --- requests ------------------------------------------------------------------------------
    def signed_params(self, params: dict[str, Any]) -> dict[str, Any]:
        signer = self.signer()
        creds = self.credentials
        assert creds is not None
        p = dict(params)
        p["apiKey"] = creds.api_key
        p.setdefault("recvWindow", self.config.recv_window_ms)
        p["timestamp"] = self.clock.now_ms()
        p["signature"] = signer.sign_ws_params(p)
        return p

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        signed: bool = False,
        weight: int = 1,
        orders: int = 0,
        timeout_s: float | None = None,
    ) -> WsApiMessage:
        """Send one request and wait for its response (raises the adapter's errors on failure)."""
        if not self.connected:
            raise NotConnected(f"binance WS API not connected ({method})")
        if self.limiter is not None:
            await self.limiter.acquire({"weight": weight, "orders": orders})
        rid, fut = self._send(method, params, signed)
        return await self.answer(method, rid, fut, timeout_s)

    def send_now(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        signed: bool = False,
        weight: int = 1,
        orders: int = 0,
    ) -> tuple[str, asyncio.Future[WsApiMessage]] | None:
        """Write the request to the socket before returning; ``answer(method, *result)`` awaits the
        response. None when a rate limit (or a Retry-After ban) says wait: use ``call`` then.
        Raises ``NotConnected`` when the connection is down."""
        if not self.connected:
            raise NotConnected(f"binance WS API not connected ({method})")
        if self.limiter is not None and not self.limiter.try_acquire(weight, orders):
            return None
        return self._send(method, params, signed)

    def send_template_now(
        self,
        method: str,
        template: SignedTemplate,
        values: tuple[str, ...],
        weight: int = 1,
        orders: int = 0,
        conn: DirectConnection | None = None,
    ) -> tuple[str, asyncio.Future[WsApiMessage]] | None:
        """``send_now`` for a signed request rendered from ``template`` (``order_wire``): the same
        request, without building, sorting and encoding its parameters again. The template's
        apiKey must be this session's (the execution client rebuilds its templates on new keys).
        ``conn`` is ``self.ws.live`` when the caller has read it already (the tick-to-order path)."""
        if conn is None:
            conn = self.ws.live
            if conn is None:
                raise NotConnected(f"binance WS API not connected ({method})")
        limiter = self.limiter
        at = 0.0
        if limiter is not None:
            room = limiter.room_at(weight, orders)
            if room is None:
                return None
            at = room
        rid = self._prefix + str(next(self._ids))
        # ``render_template``, inline: a call less on the tick-to-order path
        data = template.render_ws(self.signer(), method, rid, values, self.clock.now_ms())
        sent = self._post(method, rid, data, conn)
        if limiter is not None:  # booked once the request is on the wire (``room_at``)
            limiter.book_at(weight, orders, at)
        return sent

    def render_template(self, method: str, template: SignedTemplate, values: tuple[str, ...], rid: str) -> bytes:
        """The signed request's text, timestamped now (``send_template_now`` writes it; a dry run
        only builds it)."""
        return template.render_ws(self.signer(), method, rid, values, self.clock.now_ms())

    def signer(self) -> HmacSigner:
        creds = self.credentials
        if creds is None:
            raise NotConnected("binance WS API: signed request without API keys")
        return keyed_signer(creds.api_secret)

    def _send(
        self, method: str, params: dict[str, Any] | None, signed: bool
    ) -> tuple[str, asyncio.Future[WsApiMessage]]:
        p = self.signed_params(params or {}) if signed else dict(params or {})
        rid = f"{self._prefix}{next(self._ids)}"
        return self._post(method, rid, _encode({"id": rid, "method": method, "params": p}))

    def _post(
        self, method: str, rid: str, data: bytes, conn: DirectConnection | None = None
    ) -> tuple[str, asyncio.Future[WsApiMessage]]:
        """Write one request frame now (on ``conn`` when the caller holds the live connection);
        its answer will resolve the returned future."""
        try:
            (self.ws if conn is None else conn).send_now(data)
        except Exception as exc:
            raise NotConnected(f"binance WS API send failed ({method}): {exc}") from exc
        # answers are read in a later loop iteration: the future is made after the write, so
        # the order's bytes do not wait for it
        fut: asyncio.Future[WsApiMessage] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        return rid, fut

    async def answer(
        self, method: str, rid: str, fut: asyncio.Future[WsApiMessage], timeout_s: float | None = None
    ) -> WsApiMessage:
        """The response to a request sent with ``send_now``, checked (raises the adapter's errors)."""
        endpoint = f"ws {method}"
        try:
            try:
                if timeout_s is None or timeout_s == self.config.order_timeout_s:
                    self._expire_at(fut)
                    msg = await fut
                else:
                    msg = await asyncio.wait_for(fut, timeout_s)
            except TimeoutError:
                if changes_state(method):
                    raise OrderStateUnknown("no response in time", endpoint) from None
                raise VenueUnavailable(EXCHANGE_CONNECTION_TIMEOUT, "no response in time", endpoint) from None
            except OrderStateUnknown as exc:  # the connection closed before the answer
                if changes_state(method):
                    raise
                raise VenueUnavailable(EXCHANGE_CONNECTION_TIMEOUT, exc.detail, endpoint) from exc
        finally:
            self._pending.pop(rid, None)
        self._observe(msg)
        if msg.status == 200 and msg.error is None:
            return msg
        err = msg.error
        code, text = (err.code, err.msg) if err is not None else (0, "")
        if msg.status in (429, 418):
            retry = 10.0
            data = err.data if err is not None else None
            if data and isinstance(data.get("retryAfter"), int):
                server_now = data.get("serverTime") or self.clock.now_ms()
                retry = max((data["retryAfter"] - server_now) / 1000.0, 0.0)
            if self.limiter is not None:
                self.limiter.gate.block(retry, f"WS API status {msg.status} to {method}", msg.status)
            exc = RateLimited(msg.status, code, text, retry, endpoint)
            log_api_error(
                self.log, exc, f"WS API status {msg.status}, no request before {retry:.0f}s", summary=self.summary
            )
            raise exc
        if msg.status >= 500 or code == TIMEOUT:
            detail = f"status {msg.status} code={code} {text!r}"
            if changes_state(method):
                raise OrderStateUnknown(detail, endpoint, msg.status, code)
            reason = EXCHANGE_CONNECTION_TIMEOUT if code == TIMEOUT else EXCHANGE_OUTAGE
            raise VenueUnavailable(reason, detail, endpoint, msg.status, code)
        exc = BinanceApiError(msg.status, code, text, endpoint)
        if code in (INVALID_TIMESTAMP, INVALID_SIGNATURE):
            log_api_error(self.log, exc, f"recvWindow={self.config.recv_window_ms}", self.clock.offset_ms)
        raise exc

    def _observe(self, msg: WsApiMessage) -> None:
        if self.limiter is None or not msg.rate_limits:
            return
        for r in msg.rate_limits:
            if r.count is None:
                continue
            if r.rate_limit_type == "REQUEST_WEIGHT" and r.interval == "MINUTE" and r.interval_num == 1:
                self.limiter.observe("weight", "REQUEST_WEIGHT 1M", r.count)
            elif r.rate_limit_type == "ORDERS" and r.interval == "SECOND" and r.interval_num == 10:
                self.limiter.observe("orders", "ORDERS 10S", r.count)

    # --- socket callbacks ----------------------------------------------------------------------
    async def _on_open(self, _ws: object) -> None:
        # callbacks only schedule work: responses are read by the loop that starts after this
        for cb in self.on_connected:
            cb()

    def _on_close(self, reason: str) -> None:
        self._fail_pending(reason)
        for cb in self.on_disconnected:
            cb(reason)

    def _expire_at(self, fut: asyncio.Future[WsApiMessage]) -> None:
        """Fail ``fut`` with ``TimeoutError`` if no answer came within ``order_timeout_s``.

        Every order waits with the same timeout, so deadlines come in order: one deque swept every
        ``_SWEEP_S`` while requests are in flight replaces a timer, a waiter future and a callback
        per order (``asyncio.wait_for``), several microseconds of CPU per order. A timeout may
        fire up to ``_SWEEP_S`` late; answered requests leave the deque at the next sweep."""
        loop = asyncio.get_running_loop()
        self._deadlines.append((loop.time() + self.config.order_timeout_s, fut))
        if self._sweeper is None:
            self._sweeper = loop.call_later(_SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        deadlines = self._deadlines
        loop = asyncio.get_running_loop()
        now = loop.time()
        while deadlines and (deadlines[0][1].done() or deadlines[0][0] <= now):
            fut = deadlines.popleft()[1]
            if not fut.done():
                fut.set_exception(TimeoutError())
        if deadlines:
            self._sweeper = loop.call_later(_SWEEP_S, self._sweep)

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for rid, fut in pending.items():
            if not fut.done():
                fut.set_exception(OrderStateUnknown(f"connection closed before the answer ({reason})", f"ws id {rid}"))

    def _on_frame(self, frame: bytes, ts_recv: int) -> None:
        r = self.decoder.decode(frame)
        if r is None:
            return
        msg, event = r
        if event is not None:
            if type(event) is ServerShutdownMsg:
                self.server_shutdowns += 1
                self.summary.warning("serverShutdown", f"{self.ws.name}: serverShutdown received, reconnecting")
                live = self.ws.ws
                if live is not self._shutdown_conn:  # one reconnect per connection, however many notices
                    self._shutdown_conn = live
                    self.ws.reconnect_now("serverShutdown")
                return
            if self.on_event is not None:
                self.on_event(msg, event, ts_recv)
            return
        fut = self._pending.get(str(msg.id)) if msg.id is not None else None
        if fut is not None and not fut.done():
            fut.set_result(msg)
        elif msg.id is not None:
            self.log.info(f"binance WS API: answer for unknown request id {msg.id!r} (status {msg.status})")
