"""Coinbase Exchange order entry as the engine's ``ExecutionClient``, over signed REST.

``submit_order`` checks the product's rules (``filters.check_order``; a refusal is reported in
Coinbase's words without a request) and sends ``POST /orders`` with a UUID ``client_oid``
(``profile``); ``cancel_order`` sends ``DELETE /orders/{id}`` (``client:<oid>`` before the ack).
Both return at once; answers come back through the sink as ``ExecReport``s on a later loop turn,
never from inside the call (the contract's rule).

Order state comes from three places, deduplicated by trade id:

* each answer: ``rejected`` (``post only``...) -> ``rejected``; anything else -> ``accepted``, and
  a ``done`` order's fills and end (``expired`` for the unfilled rest of an IOC/FOK/market order);
* the authenticated ``user`` channel (``user_stream``, ``on_user_message``): ``received`` ties our
  ``client_oid`` to Coinbase's order id, ``match`` is a fill (fee from our side's fee rate),
  ``done`` ends the order. Events that arrive before the order's own answer are held and
  reported right after its ``accepted``, so the order manager sees them in order;
* a poll every ``poll_interval_s`` while orders are open (``GET /fills?product_id=``, and
  ``GET /orders/{id}`` for orders that left the open list): Coinbase says authenticated messages
  carry no sequence number, so a lost one could not be noticed otherwise.

Errors: a 4xx is a ``rejected`` / ``cancel_rejected`` report in the guide's words (``Insufficient
balance``, ``Invalid passphrase``, ``Invalid signature``, ``Rate limit exceeded``...). A 5xx,
timeout or lost answer leaves the order's state unknown: an ``order_state_unknown`` incident, then
``GET /orders/client:<oid>`` until Coinbase answers (found: its state is reported; 404: it was
never placed -> ``rejected``). Coinbase Exchange has no amend: ``supports_modify`` is False and a
direct ``modify_order`` gets ``Order modification not supported``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from engine import events as ev
from engine.events import ExecReport, Incident
from engine.logs import get_logger
from engine.messages import ORDER_MODIFICATION_NOT_SUPPORTED
from engine.model import Instrument, OrderType, Side, TimeInForce
from engine.orders import Order
from engine.venue.execution import ExecSink
from venues.coinbase import decode as d
from venues.coinbase.config import CoinbaseConfig
from venues.coinbase.errors import CoinbaseApiError, VenueUnavailable
from venues.coinbase.filters import ProductRules, check_order
from venues.coinbase.rest import CoinbaseRest

VENUE = "coinbase"
E8 = 10**8


def fmt(v: int) -> str:
    """Fixed point (scale 8) -> Coinbase's decimal string, without trailing zeros."""
    s = f"{v // E8}.{v % E8:08d}".rstrip("0")
    return s[:-1] if s.endswith(".") else s


def order_body(order: Order, product_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_oid": order.client_order_id,
        "product_id": product_id,
        "side": "buy" if order.side is Side.BUY else "sell",
        "size": fmt(order.qty),
    }
    if order.order_type is OrderType.MARKET:
        body["type"] = "market"
        return body
    body["type"] = "limit"
    body["price"] = fmt(order.price)
    post_only = order.post_only or order.tif is TimeInForce.GTX
    body["time_in_force"] = "GTC" if post_only else order.tif.value
    if post_only:
        body["post_only"] = True
    return body


class _Tracked:
    __slots__ = ("accepted", "cid", "done", "ends_as", "filled", "held", "oid", "skip", "symbol", "trades")

    def __init__(self, cid: str, symbol: str, ends_as: str) -> None:
        self.cid = cid
        self.symbol = symbol
        self.ends_as = ends_as  # the report when Coinbase ends it unfilled: canceled | expired
        self.oid = ""
        self.filled = 0
        self.trades: set[str] = set()
        self.done = False
        self.accepted = False
        #: stream events that came before the order's answer: reported right after its ``accepted``
        self.held: list[object] = []
        #: fill quantity booked elsewhere whose trade ids are unknown (an adopted order, when its
        #: fills could not be listed): the oldest fills up to it are not reported again
        self.skip = 0


class CoinbaseExecutionClient:
    name = VENUE
    supports_modify = False

    def __init__(
        self,
        config: CoinbaseConfig,
        rest: CoinbaseRest,
        sink: ExecSink,
        instruments: dict[str, Instrument],
        rules: dict[str, ProductRules],
        poll_interval_s: float = 0.5,
    ) -> None:
        self.config = config
        self.rest = rest
        self.sink = sink
        self.instruments = instruments
        self.rules = rules
        self.poll_interval_s = poll_interval_s
        self.log = get_logger("exchanges")
        self.orders: dict[str, _Tracked] = {}
        self.by_oid: dict[str, _Tracked] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self.sent = 0
        self.unknown = 0

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll_loop(), name="coinbase orders poll")

    async def drain(self, timeout_s: float | None = None) -> bool:
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        return not pending

    async def stop(self) -> None:
        await self.drain(5.0)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
            self._poller = None

    # --- the contract ----------------------------------------------------------------------------
    def submit_order(self, order: Order) -> None:
        sym = order.symbol
        cid = order.client_order_id
        rules = self.rules.get(sym)
        if rules is None:
            self._later(ev.REJECTED, cid, sym, f"Symbol not found: {sym} is not loaded on coinbase", 404)
            return
        refusal = check_order(rules, order.order_type, order.price, order.qty)
        if refusal:
            self._later(ev.REJECTED, cid, sym, refusal, 400)
            return
        gtc = order.order_type is OrderType.LIMIT and order.tif in (TimeInForce.GTC, TimeInForce.GTX)
        t = _Tracked(cid, sym, ev.CANCELED if gtc else ev.EXPIRED)
        self.orders[cid] = t
        self.sent += 1
        self._spawn(self._place(t, order_body(order, sym)))

    def cancel_order(self, order: Order) -> None:
        t = self.orders.get(order.client_order_id)
        oid = order.venue_order_id or (t.oid if t else "")
        self._spawn(self._cancel(order.client_order_id, order.symbol, oid))

    def modify_order(self, order: Order, price: int, qty: int) -> None:
        self.log.warning(f"{ORDER_MODIFICATION_NOT_SUPPORTED} on coinbase: client_order_id={order.client_order_id}")
        self._later(ev.CANCEL_REJECTED, order.client_order_id, order.symbol, ORDER_MODIFICATION_NOT_SUPPORTED, 0)

    def track_adopted(self, order: Order) -> None:
        """An order this client did not send (restart reconciliation took it over, or booked its
        fills from the trade list): its stream events and polled fills are reported from now on,
        and only fills beyond ``order.filled``. The order's fills are listed first and the oldest
        ones up to ``order.filled`` marked as booked; events that come meanwhile wait."""
        if not order.venue_order_id:
            self.log.warning(f"coinbase: adopted order {order.client_order_id} has no order id; not tracked")
            return
        t = self.orders.get(order.client_order_id)
        if t is None:
            gtc = order.order_type is OrderType.LIMIT and order.tif in (TimeInForce.GTC, TimeInForce.GTX)
            t = _Tracked(order.client_order_id, order.symbol, ev.CANCELED if gtc else ev.EXPIRED)
            self.orders[order.client_order_id] = t
        self._bind(t, order.venue_order_id)
        if order.filled <= t.filled:
            t.accepted = True
            return
        t.accepted = False  # hold stream events until the booked fills are known
        self._spawn(self._seed_adopted(t, order.filled))

    async def _seed_adopted(self, t: _Tracked, booked: int) -> None:
        try:
            fills = list(reversed(await self.rest.fills(t.symbol, order_id=t.oid)))  # oldest first
        except (CoinbaseApiError, VenueUnavailable) as exc:
            self.log.warning(f"coinbase: fills of adopted order {t.cid} not listed ({exc}); skipping {booked} by size")
            t.skip = booked - t.filled
            fills = []
        for f in fills:
            if t.filled >= booked:
                break
            if str(f.trade_id) not in t.trades:  # those this client reported are counted already
                t.trades.add(str(f.trade_id))
                t.filled += d.fixed(f.size)
        t.accepted = True
        held, t.held = t.held, []
        for msg in held:
            self.on_user_message(msg)

    # --- requests --------------------------------------------------------------------------------
    async def _place(self, t: _Tracked, body: dict[str, Any]) -> None:
        try:
            o = await self.rest.place_order(body)
        except CoinbaseApiError as exc:
            self.log.warning(f"Order rejected by coinbase: {exc.reason} client_order_id={t.cid} ({exc.message!r})")
            t.done = True
            self._emit(ev.REJECTED, t.cid, t.symbol, exc.reason, exc.status)
            return
        except VenueUnavailable as exc:
            await self._unknown(t, str(exc))
            return
        await self._on_order(t, o)

    async def _unknown(self, t: _Tracked, why: str) -> None:
        """No usable answer: the order may or may not exist. Ask until Coinbase says."""
        self.unknown += 1
        self.log.warning(f"Order state unknown on coinbase: client_order_id={t.cid} ({why}); querying")
        self.sink.on_incident(Incident(time.time_ns(), VENUE, t.symbol, "order_state_unknown", f"{t.cid}: {why}"))
        delay = 0.2
        for _ in range(30):
            await asyncio.sleep(delay)
            try:
                o = await self.rest.get_order(client_oid=t.cid)
            except CoinbaseApiError as exc:
                if exc.status == 404:
                    t.done = True
                    self._emit(ev.REJECTED, t.cid, t.symbol, "Order rejected: not placed (no answer from coinbase)", 0)
                    return
            except VenueUnavailable:
                delay = min(delay * 2, 5.0)
                continue
            else:
                await self._on_order(t, o)
                return
        self.log.error(f"Order state unknown on coinbase after 30 queries: client_order_id={t.cid}")

    async def _on_order(self, t: _Tracked, o: d.ExchangeOrder) -> None:
        self._bind(t, o.id)
        now = time.time_ns()
        ts = d.parse_time_ns(o.created_at) or now
        if o.status == "rejected":
            if not t.done:
                t.done = True
                self._emit(ev.REJECTED, t.cid, t.symbol, o.reject_reason or "Order rejected", 400, o.id)
            t.held.clear()
            return
        if not t.accepted:
            t.accepted = True
            self.sink.on_exec_report(
                ExecReport(
                    ev.ACCEPTED, VENUE, t.symbol, t.cid, ts, now, venue_order_id=o.id, price=d.fixed(o.price or "0")
                )
            )
            held, t.held = t.held, []
            for msg in held:
                self.on_user_message(msg)
        if d.fixed_trunc(o.filled_size) > t.filled:
            await self._fills_of(t)
        if o.status == "done":
            self._end(t, o.done_reason)

    def _bind(self, t: _Tracked, oid: str) -> None:
        if oid and not t.oid:
            t.oid = oid
            self.by_oid[oid] = t

    def _end(self, t: _Tracked, reason: str) -> None:
        """Coinbase says the order is done: ``filled`` needs no report of its own (its fills are
        the report); otherwise the rest of it ended unfilled."""
        if t.done:
            return
        t.done = True
        if reason != "filled":
            self._emit(t.ends_as, t.cid, t.symbol, reason or "canceled", 0, t.oid)

    # --- the user channel -------------------------------------------------------------------------
    def on_user_message(self, msg: object) -> None:
        """One message of the authenticated user channel (``user_stream``)."""
        if isinstance(msg, d.ExchangeReceived):
            t = self.orders.get(msg.client_oid)
            if t is not None:
                self._bind(t, msg.order_id)
            return
        if isinstance(msg, d.UserMatch):
            t = self.by_oid.get(msg.maker_order_id) or self.by_oid.get(msg.taker_order_id)
        elif isinstance(msg, d.ExchangeDone):
            t = self.by_oid.get(msg.order_id)
        else:
            return
        if t is None:
            return
        if not t.accepted:
            t.held.append(msg)  # the order's answer has not come: its ``accepted`` goes first
            return
        if isinstance(msg, d.UserMatch):
            maker = msg.maker_order_id == t.oid
            rate = msg.maker_fee_rate if maker else msg.taker_fee_rate
            fees = self.config.fees
            fee_rate = float(rate) if rate else (fees.maker if maker else fees.taker)
            price, size = d.fixed(msg.price), d.fixed(msg.size)
            self._fill(
                t,
                str(msg.trade_id),
                msg.time,
                price,
                size,
                "maker" if maker else "taker",
                price * size / E8 / E8 * fee_rate,
            )
        else:
            self._end(t, msg.reason)

    async def _fills_of(self, t: _Tracked) -> None:
        for f in reversed(await self.rest.fills(t.symbol, order_id=t.oid)):
            self._on_fill(t, f)

    def _on_fill(self, t: _Tracked, f: d.ExchangeFill) -> None:
        if not t.accepted:
            return  # an adopted order whose booked fills are being listed: the next poll has it
        self._fill(
            t,
            str(f.trade_id),
            f.created_at,
            d.fixed(f.price),
            d.fixed(f.size),
            "maker" if f.liquidity == "M" else "taker",
            d.fixed_trunc(f.fee) / E8,
        )

    def _fill(self, t: _Tracked, tid: str, when: str, price: int, qty: int, liquidity: str, fee: float) -> None:
        if tid in t.trades:
            return
        t.trades.add(tid)
        t.filled += qty
        if t.skip > 0:  # booked before this client knew the order (see ``track_adopted``)
            skipped = min(t.skip, qty)
            t.skip -= skipped
            qty -= skipped
            if qty <= 0:
                return
        self.sink.on_exec_report(
            ExecReport(
                ev.FILL,
                VENUE,
                t.symbol,
                t.cid,
                d.parse_time_ns(when) or time.time_ns(),
                time.time_ns(),
                venue_order_id=t.oid,
                price=price,
                qty=qty,
                liquidity=liquidity,
                fee=fee,
                fee_asset=t.symbol.split("-")[1],
                trade_id=tid,
            )
        )

    async def _cancel(self, cid: str, symbol: str, oid: str) -> None:
        t = self.orders.get(cid)
        try:
            await self.rest.cancel_order(oid, cid, symbol)
        except CoinbaseApiError as exc:
            if t is not None and t.oid:
                with contextlib.suppress(CoinbaseApiError, VenueUnavailable):
                    o = await self.rest.get_order(t.oid)
                    if o.status == "done":  # filled (or gone) before the cancel: report what happened
                        await self._fills_of(t)
                        self._end(t, o.done_reason)
            self._emit(ev.CANCEL_REJECTED, cid, symbol, exc.reason, exc.status, oid)
            return
        except VenueUnavailable as exc:
            self._emit(ev.CANCEL_REJECTED, cid, symbol, str(exc), 0, oid)
            return
        if t is not None:
            if not t.done:
                with contextlib.suppress(CoinbaseApiError, VenueUnavailable):
                    await self._fills_of(t)  # fills that came before the cancel
                if not t.done:
                    t.done = True
                    self._emit(ev.CANCELED, cid, symbol, "canceled", 0, oid or t.oid)
        else:
            self._emit(ev.CANCELED, cid, symbol, "canceled", 0, oid)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            live = [t for t in self.orders.values() if t.oid and t.accepted and not t.done]
            if not live:
                continue
            try:
                await self._poll(live)
            except (CoinbaseApiError, VenueUnavailable) as exc:
                self.log.warning(f"coinbase order poll failed: {exc}")

    async def _poll(self, live: list[_Tracked]) -> None:
        for sym in {t.symbol for t in live}:
            for f in reversed(await self.rest.fills(sym)):
                t = self.by_oid.get(f.order_id)
                if t is not None:
                    self._on_fill(t, f)
            open_ids = {o.id for o in await self.rest.open_orders(sym)}
            for t in live:
                if t.symbol == sym and t.oid not in open_ids and not t.done:
                    o = await self.rest.get_order(t.oid)
                    if o.status == "done":
                        await self._fills_of(t)
                        self._end(t, o.done_reason)

    # --- reports ---------------------------------------------------------------------------------
    def _emit(self, kind: str, cid: str, symbol: str, reason: str, code: int, oid: str = "") -> None:
        now = time.time_ns()
        self.sink.on_exec_report(
            ExecReport(kind, VENUE, symbol, cid, now, now, venue_order_id=oid, reason=reason, code=code)
        )

    def _later(self, kind: str, cid: str, symbol: str, reason: str, code: int) -> None:
        asyncio.get_running_loop().call_soon(self._emit, kind, cid, symbol, reason, code)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
