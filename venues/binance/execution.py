"""``BinanceExecutionClient``: the engine's ``ExecutionVenue`` for Binance spot.

``submit_order`` / ``cancel_order`` never wait, yet the request's bytes are on the socket when
they return: the request is rendered from a ``SignedTemplate`` (one per symbol, side, type and
time in force), signed and written synchronously (WS API ``send_template_now``, or REST
``request_template_now`` on a raw keep-alive connection), and only the wait for the answer runs as
a task. When that is not possible at this instant (connection down or busy, a rate limit says
wait) the whole request runs as a task instead, as aiohttp needs. Every outcome comes back as an
``ExecReport`` through the ``ExecSink``, never from inside the call itself. Reports for one order
can come from three places - the REST/WS API answer, the user-data stream, a query - in any
order; they are merged per order on the cumulative filled quantity, so each fill reaches the
engine exactly once and each state change (accepted, canceled, expired, rejected) at most once.

A request whose answer is lost (5XX, -1007, timeout, dropped connection) leaves the order's state
unknown: an ``order_state_unknown`` incident is raised and the order is queried by
``origClientOrderId`` until Binance says what happened; only if Binance keeps saying the order
does not exist is it reported rejected.

Binance spot has no amend that changes price: ``supports_modify`` is False and the order manager
cancels and replaces.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from engine import events as ev
from engine.events import ExecReport, Incident
from engine.logs import get_logger, info_later
from engine.messages import FILL_NOT_FOUND_FOR_ORDER
from engine.model import Instrument, OrderType, Side, TimeInForce
from engine.orders import Order
from engine.venue import ExecSink
from venues.binance import decode as dec
from venues.binance.config import BinanceConfig
from venues.binance.errors import (
    BAD_SYMBOL,
    INVALID_MESSAGE,
    INVALID_ORDER_TYPE,
    INVALID_ORDER_TYPE_CODE,
    NO_SUCH_ORDER,
    SYMBOL_NOT_FOUND,
    BinanceApiError,
    BinanceError,
    NotConnected,
    OrderStateUnknown,
    RateLimited,
    log_api_error,
)
from venues.binance.filters import SymbolFilters, check_order
from venues.binance.numbers import format_fixed, parse_fixed
from venues.binance.order_wire import SignedTemplate
from venues.binance.rest import W_ORDER_CANCEL, W_ORDER_NEW, BinanceRest, PendingRequest
from venues.binance.ws_api import BinanceWsApi
from venues.common.http1 import Http1Connection
from venues.common.ws import client_frame

VENUE = "binance"
MS = 1_000_000
_MARKET = OrderType.MARKET
CLIENT_ID = re.compile(r"^[a-zA-Z0-9\-_]{1,36}$")


def valid_client_id(cid: str, known: set[str]) -> bool:
    """``CLIENT_ID.match(cid)``, without the regular expression for the order manager's ids:
    ``<prefix>-<n>`` with ``prefix`` in ``known`` (prefixes of ids found valid before, added here)
    and ``n`` ASCII digits is valid whenever it is 36 characters or fewer."""
    head, _, n = cid.rpartition("-")
    if head in known and n.isdigit() and n.isascii() and len(cid) <= 36:
        return True
    if not CLIENT_ID.match(cid):
        return False
    if head and n.isdigit() and n.isascii():
        if len(known) >= 1024:  # a strategy's prefix per session: few; this bounds a misuse
            known.clear()
        known.add(head)
    return True


_OPEN_STATES = frozenset({"", "NEW", "PARTIALLY_FILLED", "PENDING_NEW"})
_EXPIRED_STATES = frozenset({"EXPIRED", "EXPIRED_IN_MATCH"})
#: a request already on the wire: (WS API method, request id, answer future) or a REST request
_Sent = tuple[str, str, "asyncio.Future[dec.WsApiMessage]"] | PendingRequest | None


class _TypeRefused(ValueError):
    """The symbol does not take this order type (``Invalid order type``)."""


class _Track:
    """What this client knows about one order, merged from every source."""

    __slots__ = (
        "accepted",
        "cid",
        "conn",
        "cum",
        "cum_quote",
        "order",
        "price",
        "qty",
        "queued",
        "sending",
        "symbol",
        "task",
        "terminal",
        "venue_order_id",
        "wire",
    )

    def __init__(self, cid: str, symbol: str, wire: str, order: Order | None, price: int, qty: int) -> None:
        self.cid = cid
        self.symbol = symbol
        self.wire = wire
        self.order = order
        self.price = price
        self.qty = qty
        self.venue_order_id = ""
        self.accepted = False
        self.terminal = ""  # "" while live, else the final state
        self.cum = 0  # filled quantity reported to the engine (fixed point)
        self.cum_quote = 0  # quote amount of those fills (fixed point)
        self.sending = False
        self.queued = False  # the new order waits in its task: its bytes are not out yet
        self.task: asyncio.Task[None] | None = None
        self.conn: Http1Connection | None = None  # REST connection the new order went out on


def _new_values(order: Order, f: SymbolFilters) -> tuple[str, ...]:
    """A new order's template slots: client id, price (not for MARKET), quantity."""
    scale = f.scale
    if order.order_type is _MARKET:
        return (order.client_order_id, format_fixed(order.qty, scale))
    return (order.client_order_id, format_fixed(order.price, scale), format_fixed(order.qty, scale))


class BinanceExecutionClient:
    name = VENUE
    supports_modify = False

    def __init__(
        self,
        config: BinanceConfig,
        rest: BinanceRest,
        sink: ExecSink,
        instruments: dict[str, Instrument],
        filters: dict[str, SymbolFilters],
        ws_api: BinanceWsApi | None = None,
        query_delays_s: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0),
        keep_terminal: int = 10_000,
    ) -> None:
        self.config = config
        self._ws_entry = config.order_entry == "ws"
        self.rest = rest
        self.sink = sink
        self.instruments = instruments
        self.filters = filters
        self.ws_api = ws_api
        self.query_delays_s = tuple(query_delays_s)
        self.log = get_logger("orders")
        self.xlog = get_logger("exchanges")
        self._tracks: dict[str, _Track] = {}
        self._done: deque[str] = deque()
        self._keep_terminal = keep_terminal
        self._tasks: set[asyncio.Future[Any]] = set()
        self._later: list[Any] = []  # answer waits whose tasks are created after the hot path
        self._corks = 0
        self._corked: list[Any] = []
        self._templates: dict[Any, SignedTemplate] = {}
        self._id_prefixes: set[str] = set()  # prefixes of client ids found valid (``valid_client_id``)
        self._templates_for: Any = None  # the credentials the templates were built with
        self.sent = 0
        self.written_now = 0  # requests on the wire before submit/cancel returned
        self.queued = 0  # requests that had to be sent from a task (connection busy, limit wait)
        self.unknown_resolved = 0

    # --- ExecutionVenue ------------------------------------------------------------------------
    def submit_order(self, order: Order) -> None:
        cid = order.client_order_id
        f = self.filters.get(order.symbol)
        if f is None:
            self._reject_soon(order, SYMBOL_NOT_FOUND, BAD_SYMBOL)
            return
        if not valid_client_id(cid, self._id_prefixes):
            self._reject_soon(order, f"Invalid client order id {cid!r}", INVALID_MESSAGE)
            return
        reason = check_order(f, order.order_type, order.price, order.qty)
        if reason:
            self._reject_soon(order, reason, INVALID_MESSAGE)
            return
        try:
            sent = self._write_new(order, f)
        except _TypeRefused as exc:  # only ever from a template's first build (_new_template)
            self.log.warning(f"{INVALID_ORDER_TYPE}: client_order_id={cid} {exc}")
            self._reject_soon(order, INVALID_ORDER_TYPE, INVALID_ORDER_TYPE_CODE)
            return
        # answers and reports are read in later loop iterations: the order is on the wire first
        track = _Track(cid, order.symbol, f.wire, order, order.price, order.qty)
        track.sending = True
        self._tracks[cid] = track
        if sent is None:
            track.queued = True
            track.task = self._spawn(self._send_new(track, self.order_params(order, f), None))
            return
        if type(sent) is PendingRequest:
            track.conn = sent.conn
        self._spawn_later(self._answer_new, track, sent)

    def _reject_soon(self, order: Order, reason: str, code: int) -> None:
        # never from inside the call: the order manager has not finished recording the submit
        asyncio.get_running_loop().call_soon(self._emit_reject_local, order, reason, code, time.time_ns())

    def cancel_order(self, order: Order) -> None:
        track = self._tracks.get(order.client_order_id)
        if track is None:
            f = self.filters.get(order.symbol)
            if f is None:
                asyncio.get_running_loop().call_soon(
                    self._emit,
                    ev.CANCEL_REJECTED,
                    order.client_order_id,
                    order.symbol,
                    time.time_ns(),
                    SYMBOL_NOT_FOUND,
                    BAD_SYMBOL,
                )
                return
            track = _Track(order.client_order_id, order.symbol, f.wire, order, order.price, order.qty)
            self._tracks[track.cid] = track
        new = track.task
        if track.queued and new is not None and not new.done():
            # the order itself has not left yet: a cancel overtaking it would find nothing
            self._spawn(self._send_cancel(track, None, after=new))
            return
        sent = self._write_cancel(track)
        if sent is None:
            self._spawn(self._send_cancel(track, None))
        else:
            self._spawn_later(self._send_cancel, track, sent)

    def modify_order(self, order: Order, price: int, qty: int) -> None:
        # never called while supports_modify is False; an explicit answer beats silence
        self.log.warning(
            "Order modification not supported on binance spot (cancel and replace): "
            f"client_order_id={order.client_order_id}"
        )
        asyncio.get_running_loop().call_soon(
            self._emit,
            ev.CANCEL_REJECTED,
            order.client_order_id,
            order.symbol,
            time.time_ns(),
            "Order modification not supported",
            0,
        )

    def dry_run(self) -> BinanceDryRun:
        """An ``ExecutionVenue`` that prepares requests as this client would and sends none
        (``engine.warm``)."""
        return BinanceDryRun(self)

    # --- batching ------------------------------------------------------------------------------
    def cork(self) -> None:
        """Until ``uncork``, requests are prepared but held, then written together: what one market
        event makes a strategy send (a cancel and its replacement) costs one system call per
        connection. Calls nest; the adapter wraps the engine's market-data callbacks in them, so
        this runs for every market event: a connection itself is corked only when a request is
        about to be written on it (``_hold``)."""
        self._corks += 1

    def uncork(self) -> None:
        self._corks -= 1
        if self._corks > 0:
            return
        self._corks = 0
        conns = self._corked
        if conns:
            self._corked = []
            for c in conns:
                c.uncork()

    def _hold(self, conn: Any) -> None:
        """Cork ``conn`` (a WS API connection or the REST order pool) until the market event ends."""
        if conn is not None and conn not in self._corked:
            conn.cork()
            self._corked.append(conn)

    # --- wire parameters -----------------------------------------------------------------------
    def order_params(self, order: Order, f: SymbolFilters) -> dict[str, str]:
        p = self._order_shape(order, f)
        p["newClientOrderId"] = order.client_order_id
        if "price" in p:
            p["price"] = format_fixed(order.price, f.scale)
        p["quantity"] = format_fixed(order.qty, f.scale)
        return p

    def _order_shape(self, order: Order, f: SymbolFilters) -> dict[str, Any]:
        """The new-order parameters with None where each order has its own value. The per-order
        ones come in sorted order, so a template needs no reordering for the WS API signature."""
        p: dict[str, Any] = {"symbol": f.wire, "side": "BUY" if order.side is Side.BUY else "SELL"}
        if order.order_type is OrderType.MARKET:
            p["type"] = "MARKET"
        elif order.post_only or order.tif is TimeInForce.GTX:
            p["type"] = "LIMIT_MAKER"
        else:
            p["type"] = "LIMIT"
            p["timeInForce"] = order.tif.value
        p["newClientOrderId"] = None
        if order.order_type is not OrderType.MARKET:
            p["price"] = None
        p["quantity"] = None
        p["newOrderRespType"] = self.config.new_order_resp_type
        return p

    def _new_template(self, order: Order, f: SymbolFilters) -> SignedTemplate:
        # enum members hash in Python (Enum.__hash__); their ids are as unique and hash in C
        key = (f.wire, order.side, id(order.order_type), id(order.tif), order.post_only)
        tpl = self._templates.get(key)
        if tpl is None or self._creds() is not self._templates_for:
            shape = self._order_shape(order, f)
            # checked once per template, not per order: a template exists only for a type the
            # symbol takes (exchangeInfo ``orderTypes``; empty: not listed, Binance decides)
            if f.order_types and shape["type"] not in f.order_types:
                raise _TypeRefused(f"binance {f.symbol} takes {', '.join(f.order_types)}, not {shape['type']}")
            tpl = self._template(key, shape)
        return tpl

    def _cancel_template(self, wire: str) -> SignedTemplate:
        tpl = self._templates.get(wire)
        if tpl is None or self._creds() is not self._templates_for:
            tpl = self._template(wire, {"symbol": wire, "origClientOrderId": None})
        return tpl

    def _template(self, key: Any, params: dict[str, Any]) -> SignedTemplate:
        creds = self._creds()
        if creds is not self._templates_for:  # new API keys: every template embeds the old one
            self._templates.clear()
            self._templates_for = creds
        api_key = creds.api_key if creds is not None else ""
        tpl = self._templates[key] = SignedTemplate(params, api_key, self.config.recv_window_ms)
        return tpl

    def _creds(self) -> Any:
        return self.rest.credentials if self.ws_api is None else self.ws_api.credentials

    # --- requests ------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn_later(self, wait: Callable[[_Track, _Sent], Any], track: _Track, sent: _Sent) -> None:
        """Start the wait for an answer (``wait(track, sent)``) once the current callback is done:
        the request is on the wire already, and creating a coroutine and its task costs
        microseconds the next order should not wait for."""
        later = self._later
        if not later:
            asyncio.get_running_loop().call_soon(self._spawn_pending)
        later.append((wait, track, sent))

    def _answer_new(self, track: _Track, sent: _Sent) -> Any:
        return self._send_new(track, None, sent)

    def _spawn_pending(self) -> None:
        later, self._later = self._later, []
        for wait, track, sent in later:
            self._spawn(wait(track, sent))

    def _report(self, report: ExecReport) -> None:
        self.sink.on_exec_report(report)

    def _incident(self, incident: Incident) -> None:
        self.sink.on_incident(incident)

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait for every request in flight (tests, orderly shutdown); with ``timeout_s``, cancel
        what is still running after it. Returns True when everything finished by itself."""
        loop = asyncio.get_running_loop()
        end = None if timeout_s is None else loop.time() + timeout_s
        self._spawn_pending()
        while self._tasks:
            left = None if end is None else end - loop.time()
            if left is not None and left <= 0:
                for t in list(self._tasks):
                    t.cancel()
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
                return False
            await asyncio.wait(list(self._tasks), timeout=left)
        return True

    def _use_ws(self) -> bool:
        return self._ws_entry and self.ws_api is not None and self.ws_api.connected

    def _write_new(self, order: Order, f: SymbolFilters) -> _Sent:
        """Put a new order on the wire now if a connection can take it (None: send it from a task)."""
        tpl = self._new_template(order, f)
        return self._write_template("order.place", "POST", tpl, _new_values(order, f), W_ORDER_NEW, 1, None)

    def _write_cancel(self, track: _Track) -> _Sent:
        """The cancel on the wire now if possible, on the connection its order went out on when that
        is still open: one connection answers in order, so Binance sees the order before its cancel."""
        tpl = self._cancel_template(track.wire)
        return self._write_template("order.cancel", "DELETE", tpl, (track.cid,), W_ORDER_CANCEL, 0, track.conn)

    def _write_template(
        self,
        ws_method: str,
        http_method: str,
        tpl: SignedTemplate,
        values: tuple[str, ...],
        weight: int,
        orders: int,
        conn: Http1Connection | None,
    ) -> _Sent:
        try:
            api = self.ws_api
            live = api.ws.live if self._ws_entry and api is not None else None
            if live is not None:
                if self._corks:
                    self._hold(live)
                ws = api.send_template_now(ws_method, tpl, values, weight, orders, live)  # type: ignore[union-attr]
                sent: _Sent = None if ws is None else (ws_method, *ws)
            else:
                if self._corks:
                    self._hold(self.rest.fast)
                sent = self.rest.request_template_now(
                    http_method, "/api/v3/order", tpl, values, weight=weight, orders=orders, conn=conn
                )
        except NotConnected:
            sent = None  # the task's own attempt reports the failure
        if sent is None:
            self.queued += 1
        else:
            self.written_now += 1
        return sent

    async def _answer(self, sent: _Sent, params: Any = None) -> dec.OrderMsg:
        """The answer to a request already on the wire; ``params`` (REST) are what a -1021 answer
        is retried with."""
        assert sent is not None
        if isinstance(sent, tuple):
            assert self.ws_api is not None
            msg = await self.ws_api.answer(*sent)
            return dec.decode_order(msg.result)
        return dec.decode_order(await self.rest.finish(sent, params))

    async def _place(self, params: dict[str, str], sent: _Sent = None) -> dec.OrderMsg:
        if sent is not None:
            return await self._answer(sent, params)
        if self._use_ws():
            assert self.ws_api is not None
            msg = await self.ws_api.call("order.place", params, signed=True, weight=W_ORDER_NEW, orders=1)
            return dec.decode_order(msg.result)
        return await self.rest.new_order(params)

    async def _cancel(self, wire: str, cid: str, sent: _Sent = None) -> dec.OrderMsg:
        if sent is not None:
            return await self._answer(sent, {"symbol": wire, "origClientOrderId": cid})
        if self._use_ws():
            assert self.ws_api is not None
            msg = await self.ws_api.call(
                "order.cancel", {"symbol": wire, "origClientOrderId": cid}, signed=True, weight=W_ORDER_CANCEL
            )
            return dec.decode_order(msg.result)
        return await self.rest.cancel_order(wire, cid)

    async def _send_new(self, track: _Track, params: dict[str, str] | None, sent: _Sent = None) -> None:
        """``params`` None: the request went out from a template; they are built here, after the
        bytes have left, for a retry."""
        self.sent += 1
        if params is None:
            assert track.order is not None
            params = self.order_params(track.order, self.filters[track.symbol])
        try:
            m = await self._place(params, sent)
        except RateLimited as exc:
            self._reject(track, exc.reason, exc.code)
        except BinanceApiError as exc:
            log_api_error(self.xlog, exc, f"new order {track.cid}", self.rest.clock.offset_ms)
            self._reject(track, exc.reason, exc.code)
        except NotConnected as exc:
            self.xlog.warning(f"binance new order {track.cid} not sent: {exc}")
            self._reject(track, "Exchange connection timeout", 0)
        except OrderStateUnknown as exc:
            track.sending = False
            await self._resolve(track, str(exc))
        except (BinanceError, ValueError) as exc:  # an answer we cannot read: the order may exist
            track.sending = False
            await self._resolve(track, f"unreadable answer: {exc}")
        else:
            self._apply_order(track, m, time.time_ns())
        finally:
            track.sending = False

    async def _send_cancel(self, track: _Track, sent: _Sent = None, after: asyncio.Task[None] | None = None) -> None:
        if after is not None:
            await asyncio.wait([after])
        try:
            m = await self._cancel(track.wire, track.cid, sent)
        except BinanceApiError as exc:
            log_api_error(self.xlog, exc, f"cancel {track.cid}", self.rest.clock.offset_ms)
            self._emit(ev.CANCEL_REJECTED, track.cid, track.symbol, time.time_ns(), exc.reason, exc.code)
        except NotConnected as exc:
            self.xlog.warning(f"binance cancel {track.cid} not sent: {exc}")
            self._emit(ev.CANCEL_REJECTED, track.cid, track.symbol, time.time_ns(), "Exchange connection timeout", 0)
        except (OrderStateUnknown, BinanceError, ValueError) as exc:
            await self._resolve(track, f"cancel: {exc}")
            if not track.terminal:
                self._emit(ev.CANCEL_REJECTED, track.cid, track.symbol, time.time_ns(), "Cancel state unknown", 0)
        else:
            self._apply_order(track, m, time.time_ns())

    async def _resolve(self, track: _Track, why: str) -> None:
        """Query the order until Binance tells us its state (never assume a failure)."""
        now = time.time_ns()
        self.log.warning(
            f"Order state unknown client_order_id={track.cid} symbol={track.symbol} ({why}); querying binance"
        )
        self._incident(Incident(now, VENUE, track.symbol, "order_state_unknown", f"{track.cid}: {why}"))
        missing = 0
        for delay in self.query_delays_s:
            if delay:
                await asyncio.sleep(delay)
            if track.terminal:
                return
            try:
                m = await self.rest.query_order(track.wire, track.cid)
            except BinanceApiError as exc:
                if exc.code == NO_SUCH_ORDER:
                    missing += 1
                else:
                    log_api_error(self.xlog, exc, f"query {track.cid}", self.rest.clock.offset_ms)
                continue
            except BinanceError as exc:  # Binance unavailable: try again (repeats summarised)
                self.rest.summary.warning("order query failed", f"binance query {track.cid} failed: {exc}")
                continue
            self.unknown_resolved += 1
            self.log.info(f"Order state resolved by query client_order_id={track.cid} status={m.status}")
            self._apply_order(track, m, time.time_ns())
            return
        if track.terminal or track.accepted or track.cum:
            return
        if missing:
            self._reject(track, "Order does not exist", NO_SUCH_ORDER)
        else:
            self.log.error(
                f"Order state still unknown client_order_id={track.cid} after {len(self.query_delays_s)} queries"
            )

    async def reconcile(self) -> list[dec.OrderMsg]:
        """Compare with Binance: open orders per symbol, then a query for every order we think is
        live but Binance does not list. Returns Binance's open orders."""
        opens: list[dec.OrderMsg] = []
        for f in self.filters.values():
            opens += await self.rest.open_orders(f.wire)
        now = time.time_ns()
        listed = set()
        for m in opens:
            listed.add(m.client_order_id)
            track = self._tracks.get(m.client_order_id)
            if track is None:
                track = self._adopt(m.client_order_id, m.symbol, parse_fixed(m.price), parse_fixed(m.orig_qty))
                self.log.info(f"reconcile: open binance order {m.client_order_id} was not known to this session")
            self._apply_order(track, m, now)
        for cid, track in list(self._tracks.items()):
            if track.terminal or track.sending or cid in listed:
                continue
            try:
                m = await self.rest.query_order(track.wire, cid)
            except BinanceApiError as exc:
                if exc.code == NO_SUCH_ORDER and not track.accepted and not track.cum:
                    self._reject(track, "Order does not exist", NO_SUCH_ORDER)
                continue
            self._apply_order(track, m, time.time_ns())
        self.log.info(f"reconcile binance: {len(opens)} open orders")
        return opens

    def track_adopted(self, order: Order) -> None:
        """An order reconciliation took over (or booked fills of): later reports book only what it
        fills beyond ``order.filled``. Fills are counted from the venue's cumulative quantity, so
        without this the fills reconciliation booked would be booked again by the next report."""
        f = self.filters.get(order.symbol)
        if f is None:
            return
        track = self._tracks.get(order.client_order_id) or self._adopt(
            order.client_order_id, f.wire, order.price, order.qty
        )
        if order.venue_order_id:
            track.venue_order_id = order.venue_order_id
        track.accepted = True
        if order.filled > track.cum:
            track.cum = order.filled
            track.cum_quote = order.fill_cost // 10**8  # fill_cost is price x qty, both at scale 8

    # --- merging answers -----------------------------------------------------------------------
    def _adopt(self, cid: str, wire: str, price: int, qty: int) -> _Track:
        symbol = next((f.symbol for f in self.filters.values() if f.wire == wire), wire)
        track = _Track(cid, symbol, wire, None, price, qty)
        self._tracks[cid] = track
        return track

    def _apply_order(self, track: _Track, m: dec.OrderMsg, ts_recv: int) -> None:
        """A REST / WS API order object (new, cancel, query, open orders)."""
        if m.order_id:
            track.venue_order_id = str(m.order_id)
        ts_event = (m.transact_time or m.update_time or m.time) * MS
        status = m.status
        if m.fills:
            running = 0
            for fl in m.fills:
                q = parse_fixed(fl.qty)
                running += q
                new = running - track.cum
                if new > 0:
                    self._fill(
                        track,
                        parse_fixed(fl.price),
                        min(new, q),
                        "taker",
                        fl.commission,
                        fl.commission_asset,
                        str(fl.trade_id),
                        ts_event,
                        ts_recv,
                    )
        else:
            self._sync_cum(track, parse_fixed(m.executed_qty), parse_fixed(m.cum_quote), ts_event, ts_recv)
        if status in _OPEN_STATES:
            self._accept(track, ts_event, ts_recv)
        elif status == "FILLED":
            self._finish(track, "filled")
        elif status == "CANCELED":
            self._terminal(track, ev.CANCELED, ts_event, ts_recv)
        elif status in _EXPIRED_STATES:
            self._terminal(track, ev.EXPIRED, ts_event, ts_recv)
        elif status == "REJECTED":
            self._reject(track, "Order rejected", 0, ts_event)

    def on_execution_report(self, m: dec.ExecutionReportMsg, ts_recv: int) -> None:
        """An executionReport from the user-data stream."""
        x = m.exec_type
        cid = m.orig_client_order_id if x == "CANCELED" and m.orig_client_order_id else m.client_order_id
        track = self._tracks.get(cid)
        try:
            if track is None:
                track = self._adopt(cid, m.symbol, parse_fixed(m.price), parse_fixed(m.qty))
            if m.order_id:
                track.venue_order_id = str(m.order_id)
            ts_event = m.transact_time * MS
            if x == "TRADE":
                cum = parse_fixed(m.cum_qty)
                last = parse_fixed(m.last_qty)
                new = cum - track.cum
                if new > 0:
                    if new == last:
                        price = parse_fixed(m.last_price)
                    else:  # earlier trades were missed: the rest at the average price
                        price = self._avg_price(parse_fixed(m.cum_quote) - track.cum_quote, new)
                        self.log.warning(
                            f"{FILL_NOT_FOUND_FOR_ORDER} {cid}: trade {m.trade_id} brings the filled quantity "
                            f"to {m.cum_qty}, fills received {format_fixed(track.cum)}; booking the missing "
                            f"{format_fixed(new)} at the average price"
                        )
                    self._fill(
                        track,
                        price,
                        new,
                        "maker" if m.maker else "taker",
                        m.commission,
                        m.commission_asset or "",
                        str(m.trade_id),
                        ts_event,
                        ts_recv,
                    )
                if m.status == "FILLED":
                    self._finish(track, "filled")
                return
            self._sync_cum(track, parse_fixed(m.cum_qty), parse_fixed(m.cum_quote), ts_event, ts_recv)
            if x == "NEW":
                self._accept(track, ts_event, ts_recv)
            elif x == "CANCELED":
                self._terminal(track, ev.CANCELED, ts_event, ts_recv)
            elif x in ("EXPIRED", "TRADE_PREVENTION"):
                self._terminal(track, ev.EXPIRED, ts_event, ts_recv)
            elif x == "REJECTED":
                self._reject(track, m.reject_reason if m.reject_reason != "NONE" else "Order rejected", 0, ts_event)
        except ValueError as exc:
            self.xlog.warning(f"binance executionReport for {cid} unreadable: {exc}")

    @staticmethod
    def _avg_price(quote: int, qty: int) -> int:
        return (quote * 10**8 + qty // 2) // qty if qty > 0 else 0

    def _sync_cum(self, track: _Track, cum: int, cum_quote: int, ts_event: int, ts_recv: int) -> None:
        new = cum - track.cum
        if new <= 0:
            return
        price = self._avg_price(cum_quote - track.cum_quote, new)
        inst = self.instruments.get(track.symbol)
        fee = 0.0
        if inst is not None:  # the real commission is unknown here; book the taker rate
            fee = price / 1e8 * new / 1e8 * inst.taker_fee
        # the order's state says more was filled than the fills we were told of: a missed report
        self.log.warning(
            f"{FILL_NOT_FOUND_FOR_ORDER} {track.cid}: binance reports filled {format_fixed(cum)}, fills received "
            f"{format_fixed(track.cum)}; booking the missing {format_fixed(new)} from the order state "
            "(fee estimated at the taker rate)"
        )
        inst_quote = inst.quote if inst is not None else ""
        self._fill(
            track,
            price,
            new,
            "taker",
            str(fee),
            inst_quote,
            f"sync-{track.venue_order_id}-{cum}",
            ts_event,
            ts_recv,
            fee_is_quote=True,
        )

    def _fill(
        self,
        track: _Track,
        price: int,
        qty: int,
        liquidity: str,
        commission: str,
        commission_asset: str,
        trade_id: str,
        ts_event: int,
        ts_recv: int,
        fee_is_quote: bool = False,
    ) -> None:
        track.cum += qty
        track.cum_quote += price * qty // 10**8
        fee, fee_asset = self._fee(track.symbol, commission, commission_asset, price, fee_is_quote)
        self.log.info(
            f"binance fill client_order_id={track.cid} price={format_fixed(price)} quantity={format_fixed(qty)} "
            f"liquidity={liquidity} commission={commission} {commission_asset} trade_id={trade_id}"
        )
        self._report(
            ExecReport(
                ev.FILL,
                VENUE,
                track.symbol,
                track.cid,
                ts_event,
                ts_recv,
                track.venue_order_id,
                price,
                qty,
                liquidity,
                fee,
                fee_asset,
                trade_id,
            )
        )
        if track.cum >= track.qty > 0:
            self._finish(track, "filled")

    def _fee(self, symbol: str, commission: str, asset: str, price: int, is_quote: bool) -> tuple[float, str]:
        """Commission -> (quote value, asset it is taken from), as ``ExecReport.fee`` wants it."""
        try:
            n = float(commission or 0)
        except ValueError:
            n = 0.0
        inst = self.instruments.get(symbol)
        if is_quote or inst is None:
            return n, asset
        if asset == inst.quote:
            return n, asset
        if asset == inst.base:
            return n * price / 1e8, asset
        # paid in a third asset (BNB): no price for it here; balances sync from the venue
        return 0.0, asset

    def _accept(self, track: _Track, ts_event: int, ts_recv: int) -> None:
        if track.accepted or track.terminal:
            return
        track.accepted = True
        info_later(self.log, "binance order accepted client_order_id=%s order_id=%s", track.cid, track.venue_order_id)
        self._report_state(track, ev.ACCEPTED, ts_event, ts_recv)

    def _finish(self, track: _Track, state: str) -> None:
        if not track.terminal:
            track.terminal = state
            self._retire(track.cid)

    def _terminal(self, track: _Track, kind: str, ts_event: int, ts_recv: int) -> None:
        if track.terminal:
            return
        track.terminal = kind
        self._retire(track.cid)
        info_later(self.log, "binance order %s client_order_id=%s filled=%s", kind, track.cid, format_fixed(track.cum))
        self._report_state(track, kind, ts_event, ts_recv)

    def _reject(self, track: _Track, reason: str, code: int, ts_event: int = 0) -> None:
        track.sending = False
        if track.terminal:
            return
        track.terminal = ev.REJECTED
        self._retire(track.cid)
        now = time.time_ns()
        self.log.warning(f"Order rejected by binance client_order_id={track.cid} code={code} reason={reason}")
        self._report_state(track, ev.REJECTED, ts_event or now, now, reason, code)

    def _report_state(
        self, track: _Track, kind: str, ts_event: int, ts_recv: int, reason: str = "", code: int = 0
    ) -> None:
        """A state change of ``track``'s order (accepted, canceled, expired, rejected) to the engine."""
        self._report(
            ExecReport(
                kind,
                VENUE,
                track.symbol,
                track.cid,
                ts_event,
                ts_recv,
                track.venue_order_id,
                track.price,
                track.qty,
                reason=reason,
                code=code,
            )
        )

    def _emit_reject_local(self, order: Order, reason: str, code: int, ts: int) -> None:
        self.log.warning(
            f"Order rejected before sending client_order_id={order.client_order_id} code={code} reason={reason}"
        )
        self._report(
            ExecReport(
                ev.REJECTED,
                VENUE,
                order.symbol,
                order.client_order_id,
                ts,
                time.time_ns(),
                "",
                order.price,
                order.qty,
                reason=reason,
                code=code,
            )
        )

    def _emit(self, kind: str, cid: str, symbol: str, ts: int, reason: str, code: int) -> None:
        self._report(ExecReport(kind, VENUE, symbol, cid, ts, time.time_ns(), reason=reason, code=code))

    def _retire(self, cid: str) -> None:
        self._done.append(cid)
        while len(self._done) > self._keep_terminal:
            self._tracks.pop(self._done.popleft(), None)

    def track_state(self, client_order_id: str) -> dict[str, Any] | None:
        """What this client knows about one order (operator API, tests)."""
        t = self._tracks.get(client_order_id)
        if t is None:
            return None
        return {
            "client_order_id": t.cid,
            "symbol": t.symbol,
            "venue_order_id": t.venue_order_id,
            "accepted": t.accepted,
            "terminal": t.terminal,
            "filled": t.cum,
            "qty": t.qty,
        }


class BinanceDryRun:
    """``BinanceExecutionClient``'s order path without the send: the same filters, client-id check,
    template, timestamp, signature and framing, on the client's own templates, signer and rate
    limiter (checked, never booked), with the result thrown away. Nothing is written, tracked,
    counted or reported. For the path warmer (``engine.warm``), which runs it while the market is
    quiet so that the next real order finds this code and its data in the caches."""

    supports_modify = False

    def __init__(self, client: BinanceExecutionClient) -> None:
        self.client = client
        self.name = client.name
        self.prepared = 0  # requests prepared (and dropped)

    def submit_order(self, order: Order) -> None:
        c = self.client
        f = c.filters.get(order.symbol)
        if f is None or not valid_client_id(order.client_order_id, c._id_prefixes):
            return
        if check_order(f, order.order_type, order.price, order.qty):
            return
        try:
            tpl = c._new_template(order, f)
        except _TypeRefused:
            return
        self._prepare("order.place", "POST", tpl, _new_values(order, f), W_ORDER_NEW, 1)

    def cancel_order(self, order: Order) -> None:
        c = self.client
        f = c.filters.get(order.symbol)
        if f is not None:
            tpl = c._cancel_template(f.wire)
            self._prepare("order.cancel", "DELETE", tpl, (order.client_order_id,), W_ORDER_CANCEL, 0)

    def modify_order(self, order: Order, price: int, qty: int) -> None:
        return None  # supports_modify is False: the order manager cancels and submits instead

    def _prepare(
        self, ws_method: str, http_method: str, tpl: SignedTemplate, values: tuple[str, ...], weight: int, orders: int
    ) -> None:
        c = self.client
        api = c.ws_api
        if c._ws_entry and api is not None and api.ws.live is not None and api.credentials is not None:
            if api.limiter is not None:
                api.limiter.room_at(weight, orders)
            client_frame(api.render_template(ws_method, tpl, values, "warm"), True)
        else:
            rest = c.rest
            if rest.fast is None or rest.credentials is None:
                return
            rest.limiter.room_at(weight, orders)
            rest.fast_request(http_method, "/api/v3/order", rest.render_template(tpl, values))
        self.prepared += 1
