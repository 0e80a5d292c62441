"""The order manager: turns strategy intents into venue orders and venue reports into state.

State machine (anything else is logged as an incident and ignored, except fills, which always
reach the portfolio because money moved whatever our bookkeeping thought):

    pending -> open | partially_filled | filled | rejected | canceled | expired
    open -> partially_filled | filled | canceled | expired
    partially_filled -> partially_filled | filled | canceled | expired
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine import events as ev
from engine.events import ExecReport, Fill
from engine.logs import get_logger, info_later
from engine.model import Instrument, OrderStatus, OrderType, Side, TimeInForce
from engine.orders import Order

if TYPE_CHECKING:
    from engine.engine import Engine

_log = get_logger("orders")

RETAIN_CLOSED_NS = 600 * 1_000_000_000
# read on every order: a global, where ``OrderType.LIMIT`` goes through EnumType.__getattr__ on 3.11
_LIMIT = OrderType.LIMIT

_ALLOWED = {
    OrderStatus.PENDING: frozenset(
        {
            OrderStatus.OPEN,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.REJECTED,
            OrderStatus.CANCELED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.OPEN: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED}
    ),
}


def session_tag(now_ns: int) -> str:
    """Six base-36 characters of the wall clock in milliseconds (they repeat after 25 days)."""
    n = now_ns // 1_000_000 % 36**6
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(6):
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out


def can_transition(old: OrderStatus, new: OrderStatus) -> bool:
    return new in _ALLOWED.get(old, ())


class OrderManager:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.orders: dict[str, Order] = {}
        self._open: dict[str, dict[str, Order]] = {}  # strategy_id -> client id -> order
        self._next_id = 0
        self.submitted = 0
        self.rejected_local = 0
        self.on_order_sent: Callable[[Order], None] | None = None
        self._prefixes: dict[str, str] = {}
        #: on a live clock, a tag of this process's start in every client id (see ``_prefix``)
        self.session = session_tag(time.time_ns()) if getattr(engine.clock, "is_live", False) else ""
        #: a closed order stays in ``orders`` this long (engine clock) for late venue reports,
        #: then leaves it (the event log keeps its whole life): a session of days would otherwise
        #: hold every order it ever sent
        self.retain_closed_ns = RETAIN_CLOSED_NS
        self._closed: deque[tuple[int, str]] = deque()  # (closed at, client id), oldest first
        self.filled_orders = 0  # orders with at least one fill
        self.rejected = 0  # orders rejected, locally or by the venue

    def forget_all(self) -> None:
        """Drop every order and start the ids again, as if nothing had been sent; the counters
        stay. For a scratch order manager only (``engine.warm``'s shadow): a real one would lose
        the orders the venue still reports on."""
        self.orders.clear()
        self._open.clear()
        self._closed.clear()
        self._next_id = 0

    # --- ids ---------------------------------------------------------------------------------
    def _prefix(self, strategy_id: str) -> str:
        # client ids are "<prefix>-<n>": Binance allows ^[a-zA-Z0-9-_]{1,36}$, and a run-unique
        # counter keeps them deterministic. A venue wants them unique among its *open* orders
        # only, and reports an order by its id: a live process that restarted and counted from 1
        # again would reuse the id of an order the last process left open (rejected as a
        # duplicate, or worse, taking that order's fills for its own). So on a live clock the
        # prefix carries the session tag; 18 + 1 + 6 characters leave 10 digits for the counter.
        clean = "".join(c if c.isalnum() or c in "-_" else "_" for c in strategy_id)
        prefix = f"{clean[:18]}-{self.session}" if self.session else clean[:22]
        self._prefixes[strategy_id] = prefix
        return prefix

    # --- commands ----------------------------------------------------------------------------
    def submit(
        self,
        strategy_id: str,
        venue: str,
        symbol: str,
        side: Side,
        order_type: OrderType,
        price: float,
        qty: float,
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
    ) -> Order:
        eng = self.engine
        key = (venue, symbol)
        inst = eng.instruments[key]
        now = eng.clock.now()
        if order_type is _LIMIT:
            px = inst.round_price(price, side) if math.isfinite(price) else 0
        else:
            px = 0
        self._next_id += 1
        prefix = self._prefixes.get(strategy_id)  # ``_client_id``, inlined for the order path
        if prefix is None:
            prefix = self._prefix(strategy_id)
        order = Order(
            f"{prefix}-{self._next_id}",
            strategy_id,
            venue,
            symbol,
            side,
            order_type,
            px,
            inst.round_size(qty) if math.isfinite(qty) else 0,
            tif,
            post_only,
        )
        order.ts_tick = eng.ts_tick or now
        order.ts_decided = now
        book = eng.books.get(key)
        mid = book.mid_price() if book is not None and book.valid else math.nan
        order.mid_at_decision = mid
        self.orders[order.client_order_id] = order
        reason = self._validate(order, inst, mid)
        if reason:
            self.rejected_local += 1
            self._reject(order, reason, now, code=-1013 if reason.startswith("Filter failure") else 0)
            return order
        decision = eng.risk.check(order, inst, mid, now)
        if not decision.passed:
            eng.record_risk(order, decision, now)
            self._reject(order, decision.reason, now)
            return order
        order.ts_sent = eng.clock.now() + eng.decision_latency_ns
        live = self._open.get(strategy_id)
        if live is None:
            live = self._open[strategy_id] = {}
        live[order.client_order_id] = order
        self.submitted += 1
        # The risk and submit rows are numbered before the send and built after it: venues report
        # through the engine later, never from inside ``submit_order``, and do not change the
        # order there, so the rows and their order in the log are what recording first would give.
        rec = eng.recorder
        risk_seq = rec.next_seq() if rec.enabled else 0
        submit_seq = rec.next_seq() if rec.enabled else 0
        try:
            eng.venues[venue].submit_order(order)
        finally:
            eng.record_risk(order, decision, now, seq=risk_seq)
            eng.record_order("submit", order, now, seq=submit_seq)
        if eng.log_orders:
            info_later(
                _log,
                "submit order client_order_id=%s strategy_id=%s venue=%s symbol=%s side=%s type=%s "
                "price=%s quantity=%s",
                order.client_order_id,
                strategy_id,
                venue,
                symbol,
                side.name,
                order_type.value,
                inst.price(px),
                inst.size(order.qty),
            )
        if self.on_order_sent is not None:
            self.on_order_sent(order)
        return order

    def _validate(self, order: Order, inst: Instrument, mid: float) -> str:
        if order.qty <= 0 or order.qty < inst.min_qty:
            return "Filter failure: LOT_SIZE"
        if order.order_type is _LIMIT:
            if order.price <= 0 or (inst.max_price and order.price > inst.max_price) or order.price < inst.min_price:
                return "Filter failure: PRICE_FILTER"
            notional = inst.notional(order.price, order.qty)
        else:
            notional = inst.size(order.qty) * mid * inst.contract_size if math.isfinite(mid) else math.inf
            if inst.inverse:
                notional = inst.size(order.qty) * inst.contract_size
        if inst.min_notional and notional < inst.min_notional:
            return "Filter failure: NOTIONAL"
        return ""

    def _reject(self, order: Order, reason: str, now: int, code: int = 0) -> None:
        order.status = OrderStatus.REJECTED
        order.reason = reason
        order.ts_last = now
        self.rejected += 1
        self._close(order)
        self.engine.record_order("rejected", order, now, reason=reason, code=code)
        _log.warning(
            "Order rejected client_order_id=%s strategy_id=%s symbol=%s reason=%s",
            order.client_order_id,
            order.strategy_id,
            order.symbol,
            reason,
        )
        self.engine.dispatch_order_update(order)

    def cancel(self, order: Order) -> None:
        if order.status.is_terminal or order.cancel_requested:
            return
        eng = self.engine
        now = eng.clock.now()
        order.cancel_requested = True
        rec = eng.recorder
        seq = rec.next_seq() if rec.enabled else 0  # numbered before the send, built after it (``submit``)
        try:
            eng.venues[order.venue].cancel_order(order)
        finally:
            eng.record_order("cancel_request", order, now, seq=seq)

    def modify(self, order: Order, price: float | None, qty: float | None) -> Order:
        eng = self.engine
        inst = eng.instruments[(order.venue, order.symbol)]
        new_px = inst.round_price(price, order.side) if price is not None else order.price
        new_qty = inst.round_size(qty) if qty is not None else order.qty
        venue = eng.venues[order.venue]
        if venue.supports_modify and not order.status.is_terminal:
            eng.record_order("modify_request", order, eng.clock.now())
            venue.modify_order(order, new_px, new_qty)
            return order
        # cancel-replace: the replacement carries the remaining quantity at the new price
        self.cancel(order)
        remaining = new_qty - order.filled if qty is None else new_qty
        replacement = self.submit(
            order.strategy_id,
            order.venue,
            order.symbol,
            order.side,
            order.order_type,
            inst.price(new_px),
            inst.size(max(remaining, 0)),
            order.tif,
            order.post_only,
        )
        replacement.replaces = order.client_order_id
        return replacement

    def open_orders(self, strategy_id: str, symbol: str | None = None) -> list[Order]:
        orders = self._open.get(strategy_id, {}).values()
        if symbol is None:
            return list(orders)
        return [o for o in orders if o.symbol == symbol]

    # --- venue reports -----------------------------------------------------------------------
    def on_exec_report(self, r: ExecReport) -> None:
        eng = self.engine
        order = self.orders.get(r.client_order_id)
        now = eng.clock.now()
        if order is None:
            eng.incident(
                now, r.venue, r.symbol, "order_state_unknown", f"report {r.kind} for unknown order {r.client_order_id}"
            )
            return
        kind = r.kind
        if kind == ev.FILL:
            self._on_fill(order, r, now)
            return
        if kind == ev.ACCEPTED:
            if r.venue_order_id:
                order.venue_order_id = r.venue_order_id
            if order.ts_acked == 0:
                order.ts_acked = now
            self._transition(order, OrderStatus.OPEN, "accepted", r, now)
        elif kind == ev.REJECTED:
            order.reason = r.reason
            self._transition(order, OrderStatus.REJECTED, "rejected", r, now)
            _log.warning(
                "Order rejected client_order_id=%s symbol=%s code=%s reason=%s",
                order.client_order_id,
                order.symbol,
                r.code,
                r.reason,
            )
        elif kind == ev.CANCELED:
            self._transition(order, OrderStatus.CANCELED, "canceled", r, now)
        elif kind == ev.EXPIRED:
            self._transition(order, OrderStatus.EXPIRED, "expired", r, now)
        elif kind == ev.CANCEL_REJECTED:
            order.cancel_requested = False
            eng.record_order("cancel_rejected", order, now, reason=r.reason, code=r.code, ts_venue=r.ts_event)
            eng.dispatch_order_update(order)
        elif kind == ev.MODIFIED:
            order.price = r.price or order.price
            order.qty = r.qty or order.qty
            eng.record_order("modified", order, now, ts_venue=r.ts_event)
            eng.dispatch_order_update(order)

    def _transition(self, order: Order, new: OrderStatus, event: str, r: ExecReport, now: int) -> None:
        eng = self.engine
        if new is OrderStatus.OPEN and order.status in (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
            return  # a late ack after fills: the fills already said more
        if not can_transition(order.status, new):
            eng.incident(
                now,
                order.venue,
                order.symbol,
                "order_state_unknown",
                f"{order.client_order_id}: {order.status.value} -> {new.value} ignored",
            )
            return
        order.status = new
        order.ts_last = now
        if new.is_terminal:
            if new is OrderStatus.REJECTED:
                self.rejected += 1
            self._close(order)
        eng.record_order(event, order, now, reason=r.reason, code=r.code, ts_venue=r.ts_event)
        eng.dispatch_order_update(order)

    def _close(self, order: Order) -> None:
        book = self._open.get(order.strategy_id)
        if book is not None:
            book.pop(order.client_order_id, None)
        now = order.ts_last
        closed = self._closed
        closed.append((now, order.client_order_id))
        cutoff = now - self.retain_closed_ns
        orders = self.orders
        while closed[0][0] < cutoff:
            cid = closed.popleft()[1]
            o = orders.get(cid)
            if o is not None and o.status.is_terminal:
                del orders[cid]

    def _on_fill(self, order: Order, r: ExecReport, now: int) -> None:
        eng = self.engine
        inst = eng.instruments[(order.venue, order.symbol)]
        qty = r.qty
        if order.ts_acked == 0:
            order.ts_acked = now  # the fill is the first we hear of it: it is the ack
        if order.filled == 0 and qty > 0:
            self.filled_orders += 1
        order.filled += qty
        order.fill_cost += r.price * qty
        realized = eng.portfolio.on_fill(order.strategy_id, inst, order.side, r.price, qty, r.fee, r.fee_asset)
        pos = eng.portfolio.position(order.strategy_id, order.venue, order.symbol)
        new = OrderStatus.FILLED if order.filled >= order.qty else OrderStatus.PARTIALLY_FILLED
        if order.status.is_terminal:
            eng.incident(
                now,
                order.venue,
                order.symbol,
                "order_state_unknown",
                f"fill for {order.status.value} order {order.client_order_id}",
            )
        else:
            order.status = new
            order.ts_last = now
            if new is OrderStatus.FILLED:
                self._close(order)
        fill = Fill(
            order.client_order_id,
            order.strategy_id,
            order.venue,
            order.symbol,
            int(order.side),
            inst.price(r.price),
            inst.size(qty),
            r.fee,
            r.liquidity,
            r.ts_event,
            now,
            realized,
            pos.qty_float,
        )
        eng.record_fill(order, r, fill, inst, now)
        eng.record_order("filled" if new is OrderStatus.FILLED else "partially_filled", order, now, ts_venue=r.ts_event)
        eng.record_position(order.strategy_id, inst, pos, now, "fill")
        halt = eng.risk.on_fill(order.strategy_id, now)
        if halt is not None:
            eng.halt_strategy(order.strategy_id, halt.reason, now)
        eng.dispatch_fill(fill)
        eng.dispatch_order_update(order)
