"""Kraken order entry: WebSocket v2 ``add_order`` / ``cancel_order`` / ``amend_order`` on the private
connection (``ws-auth.kraken.com/v2``), reports from its ``executions`` channel on the same socket.

Why WebSocket and not REST ``AddOrder``: no nonce and no signature per order (the connection is
authenticated once by a token from ``GetWebSocketsToken``), one socket for requests and their
reports, so an order's fills never overtake its acknowledgement on another connection.

Reports to the engine's ``ExecSink``, always after the call that caused them returned:

* ``add_order`` success, or the executions ``new`` event, whichever comes first -> ``accepted``
  (once, with Kraken's ``order_id``); error -> ``rejected`` with
  the guide's reason (``Insufficient balance``, ``Rate limit exceeded``...);
* executions ``trade`` -> ``fill`` (``last_qty`` at ``last_price``, fee in quote, maker/taker from
  ``liquidity_ind``); ``canceled`` -> ``canceled``; ``expired`` -> ``expired``; ``amended`` ->
  ``modified``;
* ``cancel_order`` error -> ``cancel_rejected``; ``amend_order`` error is logged (the order stays
  as it was, which is what the engine believes until ``modified``).

Before sending, each order passes the pair's rules (``filters.check_order``), the client-id rules
(UUID or 18 characters) and the trading rate counter of its pair (Kraken's per-pair counter:
+1 per order, +8..+1 per cancel by the order's age, decaying by ``order_decay_per_s``); what fails
is rejected locally with Kraken's own words, and nothing is sent.

A request that gets no answer within ``order_timeout_s`` is not assumed failed: an
``order_state_unknown`` incident is raised and the executions channel (or the start-up
reconciliation) tells the truth.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from engine import events as ev
from engine.events import ExecReport, Incident
from engine.logs import get_logger
from engine.model import Instrument, OrderType, Side, TimeInForce
from engine.orders import Order
from engine.venue.execution import ExecSink
from venues.common.backoff import AttemptWindow, ReconnectPolicy
from venues.common.ws import ReconnectingWebSocket, WsSettings
from venues.kraken import decode as kd
from venues.kraken import errors as ke
from venues.kraken.config import KrakenConfig
from venues.kraken.filters import PairRules, check_order
from venues.kraken.profile import PROFILE
from venues.kraken.rest import DecayingCounter, KrakenRest
from venues.kraken.symbols import to_ws

VENUE = "kraken"
_TIF = {TimeInForce.GTC: "gtc", TimeInForce.IOC: "ioc", TimeInForce.GTX: "gtc", TimeInForce.FOK: "ioc"}


def cancel_cost(age_s: float) -> int:
    """Kraken's trading-counter cost of cancelling an order of this age (KDOCS guides/spot-ratelimits)."""
    for limit, cost in ((5, 8), (10, 6), (15, 5), (45, 4), (90, 2), (300, 1)):
        if age_s < limit:
            return cost
    return 0


@dataclass
class _Track:
    cid: str
    symbol: str
    qty: int
    price: int
    sent_mono: float
    venue_order_id: str = ""
    cum: int = 0
    done: bool = False
    acked: bool = False
    #: trade ids reported (TradesHistory's keys): a fill seen by the stream and by a catch-up is one
    trades: set[str] = field(default_factory=set)


class KrakenExecutionClient:
    name = VENUE
    supports_modify = True

    def __init__(
        self,
        config: KrakenConfig,
        rest: KrakenRest,
        sink: ExecSink,
        instruments: dict[str, Instrument],
        rules: dict[str, PairRules],
        attempt_window: AttemptWindow | None = None,
        on_incident: Callable[[Incident], None] | None = None,
    ) -> None:
        self.config = config
        self.rest = rest
        self.sink = sink
        self.instruments = instruments
        self.rules = rules
        self.log = get_logger("exchanges")
        self.on_incident = on_incident or sink.on_incident
        self.decoder = kd.FrameDecoder(self.log, "kraken private")
        rl = config.rate_limits
        self.counters = {s: DecayingCounter(rl.order_max, rl.order_decay_per_s) for s in instruments}
        self.tracks: dict[str, _Track] = {}
        self._by_venue_id: dict[str, str] = {}
        self._pending: dict[int, tuple[str, str, float]] = {}  # req_id -> (method, cid, sent)
        self._req = itertools.count(1)
        self.token = ""
        self.subscribed = asyncio.Event()
        self.sequence = 0
        self.ws = ReconnectingWebSocket(
            "kraken private",
            lambda: config.ws_auth_url,
            self._on_frame,
            ReconnectPolicy(config.reconnect, shared_window=attempt_window),
            self.log,
            WsSettings(
                ping_interval_s=config.ping_interval_s,
                ping_timeout_s=config.ping_timeout_s,
                max_silence_s=config.silence_reconnect_s,
            ),
            on_open=self._on_open,
            on_close=self._on_close,
            on_tick=self._on_tick,
        )
        self.sent = 0
        self.rejected_locally = 0
        self.unanswered = 0
        self.subscriptions = 0
        self.caught_up = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self, subscribe_timeout_s: float = 10.0) -> None:
        self.ws.start()
        try:
            await asyncio.wait_for(self.subscribed.wait(), subscribe_timeout_s)
        except TimeoutError:
            self.log.warning(f"kraken executions not subscribed after {subscribe_timeout_s:.0f}s; retrying")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.ws.stop()

    @property
    def connected(self) -> bool:
        return self.ws.connected.is_set() and self.subscribed.is_set()

    async def _on_open(self, _ws: object) -> None:
        self.subscribed.clear()
        # a token is good for 15 minutes until used, and for as long as a subscription holds it
        self.token = await self.rest.ws_token()
        self._send(
            {
                "method": "subscribe",
                "params": {"channel": "executions", "token": self.token, "snap_orders": True, "snap_trades": False},
                "req_id": next(self._req),
            }
        )

    def _on_close(self, reason: str) -> None:
        self.subscribed.clear()
        if not self.ws.stopping:
            self.on_incident(Incident(time.time_ns(), VENUE, "", "disconnect", f"private stream: {reason}"))

    def _on_tick(self, _now_ns: int) -> None:
        now = time.monotonic()
        limit = self.config.order_timeout_s
        for req_id, (method, cid, sent) in list(self._pending.items()):
            if now - sent > limit:
                del self._pending[req_id]
                self.unanswered += 1
                track = self.tracks.get(cid)
                detail = f"{method} for {cid} unanswered after {limit:.0f}s; the executions channel decides"
                self.log.warning(f"Order state unknown venue=kraken: {detail}")
                self.on_incident(
                    Incident(time.time_ns(), VENUE, track.symbol if track else "", "order_state_unknown", detail)
                )

    def _send(self, payload: dict) -> None:
        self.ws.send_now(json.dumps(payload, separators=(",", ":")).encode())

    # --- orders ------------------------------------------------------------------------------------
    def submit_order(self, order: Order) -> None:
        cid = order.client_order_id
        rules = self.rules.get(order.symbol)
        if rules is None:
            self._reject_later(order, PROFILE.error("unknown_symbol").text)
            return
        reason = check_order(rules, order.order_type, order.price, order.qty)
        if reason:
            self._reject_later(order, PROFILE.error(reason).text)
            return
        if not PROFILE.client_ids.valid(cid):
            self._reject_later(order, PROFILE.error("invalid_client_id").text)
            return
        counter = self.counters[order.symbol]
        if not counter.try_acquire(1):
            # Kraken would answer EOrder:Rate limit exceeded: refused here instead, and said once
            wait = counter.wait_time(1)
            detail = f"{order.symbol} trading counter {counter.count:.1f}/{counter.max:g}: order refused"
            self.on_incident(Incident(time.time_ns(), VENUE, order.symbol, "rate_limit", detail, wait))
            self._reject_later(order, ke.ORDER_RATE_LIMIT)
            return
        inst = self.instruments[order.symbol]
        params = {
            "order_type": "market" if order.order_type is OrderType.MARKET else "limit",
            "side": "buy" if order.side is Side.BUY else "sell",
            "order_qty": _Num(order.qty, inst.size_scale),
            "symbol": to_ws(order.symbol),
            "cl_ord_id": cid,
            "token": self.token,
        }
        if order.order_type is not OrderType.MARKET:
            params["limit_price"] = _Num(order.price, inst.price_scale)
            params["time_in_force"] = _TIF.get(order.tif, "gtc")
            if order.post_only or order.tif is TimeInForce.GTX:
                params["post_only"] = True
        req_id = next(self._req)
        self.tracks[cid] = _Track(cid, order.symbol, order.qty, order.price, time.monotonic())
        try:
            self._send_raw("add_order", params, req_id)
        except ConnectionError:
            del self.tracks[cid]
            self._reject_later(order, f"{ke.EXCHANGE_OUTAGE}: kraken private connection down")
            return
        self._pending[req_id] = ("add_order", cid, time.monotonic())
        self.sent += 1
        self.log.info(
            f"kraken add_order client_order_id={cid} {params['side']} {params['order_qty']} {order.symbol} "
            f"@ {params.get('limit_price', 'market')}"
        )

    def cancel_order(self, order: Order) -> None:
        cid = order.client_order_id
        track = self.tracks.get(cid)
        if track is not None:
            counter = self.counters.get(order.symbol)
            if counter is not None:
                counter.book(cancel_cost(time.monotonic() - track.sent_mono))
        params: dict = {"token": self.token}
        if order.venue_order_id:
            params["order_id"] = [order.venue_order_id]
        else:
            params["cl_ord_id"] = [cid]
        req_id = next(self._req)
        try:
            self._send_raw("cancel_order", params, req_id)
        except ConnectionError:
            self._later(ExecReport(ev.CANCEL_REJECTED, VENUE, order.symbol, cid, 0, 0, reason="connection down"))
            return
        self._pending[req_id] = ("cancel_order", cid, time.monotonic())

    def modify_order(self, order: Order, price: int, qty: int) -> None:
        inst = self.instruments[order.symbol]
        params: dict = {"token": self.token, "order_qty": _Num(qty, inst.size_scale)}
        if order.order_type is not OrderType.MARKET:
            params["limit_price"] = _Num(price, inst.price_scale)
        if order.venue_order_id:
            params["order_id"] = order.venue_order_id
        else:
            params["cl_ord_id"] = order.client_order_id
        counter = self.counters.get(order.symbol)
        if counter is not None:
            counter.book(1)
        req_id = next(self._req)
        track = self.tracks.get(order.client_order_id)
        if track is not None:
            track.price, track.qty = price, qty
        try:
            self._send_raw("amend_order", params, req_id)
        except ConnectionError:
            self.log.warning(f"kraken amend_order {order.client_order_id}: connection down, not sent")
            return
        self._pending[req_id] = ("amend_order", order.client_order_id, time.monotonic())

    def _send_raw(self, method: str, params: dict, req_id: int) -> None:
        body = ",".join(f'"{k}":{_json(v)}' for k, v in params.items())
        self.ws.send_now(f'{{"method":"{method}","params":{{{body}}},"req_id":{req_id}}}'.encode())

    def _reject_later(self, order: Order, text: str) -> None:
        self.rejected_locally += 1
        self._later(
            ExecReport(ev.REJECTED, VENUE, order.symbol, order.client_order_id, 0, 0, reason=ke.guide_reason(text))
        )

    def _later(self, report: ExecReport) -> None:
        asyncio.get_running_loop().call_soon(self._report, report)

    def _report(self, report: ExecReport) -> None:
        if not report.ts_recv:
            report.ts_recv = time.time_ns()
        if not report.ts_event:
            report.ts_event = report.ts_recv
        self.sink.on_exec_report(report)

    # --- frames ------------------------------------------------------------------------------------
    def _on_frame(self, frame: bytes, ts_recv: int) -> None:
        msg = self.decoder.decode(frame)
        t = type(msg)
        if t is kd.ExecutionsMessage:
            self.sequence = msg.sequence or self.sequence  # type: ignore[union-attr]
            if msg.type == "snapshot":  # type: ignore[union-attr]
                return  # open orders at (re)connect: the reconciliation's business, not new events
            for e in msg.data:  # type: ignore[union-attr]
                self._on_execution(e, ts_recv)
        elif t is kd.MethodReply:
            self._on_reply(msg, ts_recv)  # type: ignore[arg-type]

    def _on_reply(self, r: kd.MethodReply, ts_recv: int) -> None:
        if r.method == "subscribe":
            if r.success:
                self.subscribed.set()
                self.subscriptions += 1
                self.log.info("kraken executions subscribed")
                if self.subscriptions > 1:  # what our orders did while the stream was down
                    task = asyncio.get_running_loop().create_task(self.catch_up())
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            else:
                self.log.error(f"kraken executions subscribe failed: {ke.guide_reason(r.error or '')} ({r.error})")
            return
        pending = self._pending.pop(r.req_id, None) if r.req_id is not None else None
        if pending is None:
            return
        method, cid, _ = pending
        track = self.tracks.get(cid)
        symbol = track.symbol if track else ""
        ts = kd.ts_ns(r.time_out) or ts_recv
        if method == "add_order":
            if r.success:
                oid = str((r.result or {}).get("order_id", ""))
                if track is not None and oid:
                    track.venue_order_id = oid
                    self._by_venue_id[oid] = cid
                if track is None or not track.acked:  # the executions channel may have said it first
                    if track is not None:
                        track.acked = True
                    self._report(ExecReport(ev.ACCEPTED, VENUE, symbol, cid, ts, ts_recv, oid))
            else:
                if track is not None:
                    track.done = True
                reason = ke.guide_reason(r.error or "")
                self.log.warning(f"kraken add_order rejected client_order_id={cid}: {r.error}")
                self._report(ExecReport(ev.REJECTED, VENUE, symbol, cid, ts, ts_recv, reason=reason))
        elif method == "cancel_order":
            if not r.success:
                reason = ke.guide_reason(r.error or "")
                self._report(ExecReport(ev.CANCEL_REJECTED, VENUE, symbol, cid, ts, ts_recv, reason=reason))
        elif method == "amend_order" and not r.success:
            self.log.warning(f"kraken amend_order refused client_order_id={cid}: {ke.guide_reason(r.error or '')}")

    def _on_execution(self, e: kd.ExecutionData, ts_recv: int) -> None:
        cid = e.cl_ord_id or self._by_venue_id.get(e.order_id, "")
        track = self.tracks.get(cid)
        if track is None:
            return  # not ours (another session on the same key): reconciliation's business
        if e.order_id and not track.venue_order_id:
            track.venue_order_id = e.order_id
            self._by_venue_id[e.order_id] = cid
        inst = self.instruments[track.symbol]
        ts = kd.ts_ns(e.timestamp) or ts_recv
        kind = e.exec_type
        if kind == "trade" and e.last_qty is not None and e.last_price is not None:
            if e.exec_id and e.exec_id in track.trades:
                return  # reported already (by a catch-up after a reconnect)
            qty = kd.to_fixed(e.last_qty, inst.size_scale)
            price = kd.to_fixed(e.last_price, inst.price_scale)
            if e.cum_qty is not None:
                # what the order filled beyond what is booked already: an adopted order's fills
                # that reconciliation booked, or a trade event seen twice, are not booked again
                qty = min(qty, kd.to_fixed(e.cum_qty, inst.size_scale) - track.cum)
                if qty <= 0:
                    return
            track.cum += qty
            if e.exec_id:
                track.trades.add(e.exec_id)
            fee = float(sum((f.qty for f in e.fees or []), Decimal(0)))
            fee_asset = (e.fees or [kd.Fee(inst.quote, Decimal(0))])[0].asset
            liq = "maker" if e.liquidity_ind == "m" else "taker"
            self._report(
                ExecReport(
                    ev.FILL,
                    VENUE,
                    track.symbol,
                    cid,
                    ts,
                    ts_recv,
                    track.venue_order_id,
                    price,
                    qty,
                    liq,
                    fee,
                    fee_asset,
                    # the trade's id as TradesHistory keys it (``exec_id``), so that a fill the
                    # stream reported and the one reconciliation lists are recognised as one
                    str(e.exec_id or (e.trade_id if e.trade_id is not None else "")),
                )
            )
        elif kind == "canceled":
            track.done = True
            reason = e.reason or e.cancel_reason or ""
            self._report(
                ExecReport(ev.CANCELED, VENUE, track.symbol, cid, ts, ts_recv, track.venue_order_id, reason=reason)
            )
        elif kind == "expired":
            track.done = True
            self._report(ExecReport(ev.EXPIRED, VENUE, track.symbol, cid, ts, ts_recv, track.venue_order_id))
        elif kind == "amended":
            price = kd.to_fixed(e.limit_price, inst.price_scale) if e.limit_price is not None else 0
            qty = kd.to_fixed(e.order_qty, inst.size_scale) if e.order_qty is not None else 0
            self._report(
                ExecReport(ev.MODIFIED, VENUE, track.symbol, cid, ts, ts_recv, track.venue_order_id, price, qty)
            )
        elif kind == "new" and not track.acked:
            # the order is on the book: the ack when the add_order answer is late or lost
            track.acked = True
            self._report(ExecReport(ev.ACCEPTED, VENUE, track.symbol, cid, ts, ts_recv, track.venue_order_id))
        elif kind == "filled":
            track.done = True

    async def catch_up(self) -> None:
        """After a resubscribe: the executions of our live orders while the stream was down were
        sent to nobody (the new snapshot lists open orders only). Their trades come from
        ``TradesHistory`` (reported once: trade ids and ``cum`` are checked), their ends from
        ``QueryOrders``."""
        live = [t for t in self.tracks.values() if not t.done and t.venue_order_id]
        if not live:
            return
        now_wall, now_mono = time.time(), time.monotonic()
        start = min(now_wall - (now_mono - t.sent_mono) for t in live) - 60.0  # the clocks may differ a little
        try:
            trades = await self.rest.trades_history(start)
        except ke.KrakenError as exc:
            self.log.warning(f"kraken fills not caught up after the reconnect: {exc}")
            trades = {}
        by_id = {t.venue_order_id: t for t in live}
        for tid, tr in sorted(trades.items(), key=lambda kv: float(kv[1].get("time", 0))):
            track = by_id.get(str(tr.get("ordertxid", "")))
            if track is None or tid in track.trades:
                continue
            inst = self.instruments[track.symbol]
            qty = min(kd.to_fixed(Decimal(str(tr.get("vol", "0"))), inst.size_scale), track.qty - track.cum)
            if qty <= 0:
                continue
            track.trades.add(tid)
            track.cum += qty
            ts = int(float(tr.get("time", 0)) * 1e9) or time.time_ns()
            self.log.warning(f"kraken fill of {track.cid} while the private stream was down: trade {tid}")
            self._report(
                ExecReport(
                    ev.FILL,
                    VENUE,
                    track.symbol,
                    track.cid,
                    ts,
                    time.time_ns(),
                    track.venue_order_id,
                    kd.to_fixed(Decimal(str(tr.get("price", "0"))), inst.price_scale),
                    qty,
                    "maker" if tr.get("maker") else "taker",
                    float(tr.get("fee", 0) or 0),
                    inst.quote,
                    tid,
                )
            )
        try:
            orders = await self.rest.query_orders([t.venue_order_id for t in live if not t.done])
        except ke.KrakenError as exc:
            self.log.warning(f"kraken orders not caught up after the reconnect: {exc}")
            return
        self.caught_up += 1
        for txid, o in orders.items():
            track = by_id.get(txid)
            status = str(o.get("status", ""))
            if track is None or track.done or status in ("open", "pending"):
                continue
            track.done = True
            now = time.time_ns()
            if status == "canceled":
                self._report(ExecReport(ev.CANCELED, VENUE, track.symbol, track.cid, now, now, txid, reason="canceled"))
            elif status == "expired":
                self._report(ExecReport(ev.EXPIRED, VENUE, track.symbol, track.cid, now, now, txid))

    def track_adopted(self, order: Order) -> None:
        """An order this client did not send (restart reconciliation took it over, or booked its
        fills from the trade list): its executions are reported from now on, and only what it
        fills beyond ``order.filled`` (the executions' ``cum_qty`` says how much that is)."""
        if order.symbol not in self.instruments:
            self.log.warning(f"kraken: adopted order {order.client_order_id} on unknown symbol {order.symbol}")
            return
        cid = order.client_order_id
        track = self.tracks.get(cid)
        if track is None:
            # its age is unknown: counted as new, the dearest cancel, so the counter errs on the safe side
            track = _Track(cid, order.symbol, order.qty, order.price, time.monotonic())
            self.tracks[cid] = track
        if order.venue_order_id:
            track.venue_order_id = order.venue_order_id
            self._by_venue_id[order.venue_order_id] = cid
        track.acked = True
        track.cum = max(track.cum, order.filled)

    async def drain(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


class _Num:
    """A fixed-point value written as a JSON number with exactly its scale's decimals."""

    __slots__ = ("scale", "value")

    def __init__(self, value: int, scale: int) -> None:
        self.value = value
        self.scale = scale

    def __str__(self) -> str:
        return format(Decimal(self.value).scaleb(-self.scale), f".{self.scale}f")


def _json(v: object) -> str:
    if isinstance(v, _Num):
        return str(v)
    return json.dumps(v, separators=(",", ":"))
