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
from typing import TYPE_CHECKING, Any, Protocol

from engine import events as ev
from engine.events import ExecReport, Fill
from engine.logs import get_logger, info_later
from engine.model import Instrument, OrderStatus, OrderType, Side, TimeInForce
from engine.orders import Order
from engine.venue import profile as vp
from engine.venue.profile import GENERIC_PROFILE, ClientIdRules, VenueProfile

if TYPE_CHECKING:
    from engine.book import Book
    from engine.eventlog import EventLog
    from engine.portfolio import Portfolio
    from engine.risk import RiskEngine
    from engine.venue.execution import ExecutionClient


class Clock(Protocol):
    def now(self) -> int: ...


class OrderEvents(Protocol):
    """What the order manager tells its owner (the engine): state changes and fills to hand to
    the strategy that owns the order, and a breach that must halt a strategy."""

    def dispatch_order_update(self, order: Order) -> None: ...

    def dispatch_fill(self, fill: Fill) -> None: ...

    def halt_strategy(self, strategy_id: str, reason: str, now: int) -> None: ...


_log = get_logger("orders")

RETAIN_CLOSED_NS = 600 * 1_000_000_000
#: the reject reason of an order on a book that is not valid (``OrderManager.blind``)
TRADING_PAUSED = "Trading paused"
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
    """Orders of every strategy: ids, rounding, local filters, risk, holds, the venue call, and
    the state each venue report moves them to.

    It owns the venues' execution clients (``add_venue``) and writes the event log, and tells the
    engine what strategies must hear through ``events`` (``OrderEvents``); it knows nothing else
    of the engine. ``ts_tick`` is set by whoever shows a strategy market data (the engine), so
    an order records the tick it was decided on.
    """

    def __init__(
        self,
        clock: Clock,
        instruments: dict[tuple[str, str], Instrument],
        books: dict[tuple[str, str], Book],
        portfolio: Portfolio,
        risk: RiskEngine,
        log: EventLog,
        events: OrderEvents,
        decision_latency_ns: int = 0,
        log_orders: bool = True,
        live_ids: bool | None = None,
    ) -> None:
        self.clock = clock
        self.instruments = instruments
        self.books = books
        self.portfolio = portfolio
        self.risk = risk
        self.log = log
        self.events = events
        self.decision_latency_ns = decision_latency_ns
        self.log_orders = log_orders
        self.venues: dict[str, ExecutionClient] = {}
        self.profiles: dict[str, VenueProfile] = {}
        self.ts_tick = 0
        #: books strategies must not trade on, (venue, symbol) -> why (the engine's ``invalid_books``)
        self.blind: dict[tuple[str, str], str] = {}
        self.orders: dict[str, Order] = {}
        self._open: dict[str, dict[str, Order]] = {}  # strategy_id -> client id -> order
        self._next_id = 0
        self.submitted = 0
        self.rejected_local = 0
        self.fills = 0
        self.on_order_sent: Callable[[Order], None] | None = None
        #: (venue, strategy) -> (id prefix, the rules when ids are UUIDs)
        self._prefixes: dict[tuple[str, str], tuple[str, ClientIdRules | None]] = {}
        if live_ids is None:
            live_ids = getattr(clock, "is_live", False)
        #: on a live clock, a tag of this process's start in every client id (``ClientIdRules``)
        self.session = session_tag(time.time_ns()) if live_ids else ""
        #: a closed order stays in ``orders`` this long (engine clock) for late venue reports,
        #: then leaves it (the event log keeps its whole life): a session of days would otherwise
        #: hold every order it ever sent
        self.retain_closed_ns = RETAIN_CLOSED_NS
        #: given closed orders as they leave memory (the daemon archives them: none is lost)
        self.on_evict: Callable[[list[Order]], None] | None = None
        self._closed: deque[tuple[int, str]] = deque()  # (closed at, client id), oldest first
        self.filled_orders = 0  # orders with at least one fill
        self.rejected = 0  # orders rejected, locally or by the venue
        self.canceled = 0  # orders the venue confirmed cancelled
        self.fills_by_strategy: dict[str, int] = {}
        #: the daemon's ring of sent -> acknowledged times (``engine.daemon.telemetry``): ``add(ns)``
        self.ack_ring: Any = None

    def add_venue(self, client: ExecutionClient, profile: VenueProfile | None = None) -> None:
        """Route orders for ``client.name`` to ``client``; ``profile`` gives the venue's id rules and
        the words of its rejections (a generic profile when None)."""
        self.venues[client.name] = client
        self.profiles[client.name] = profile or GENERIC_PROFILE
        for key in [k for k in self._prefixes if k[0] == client.name]:
            del self._prefixes[key]

    def forget_all(self) -> None:
        """Drop every order, give back their holds and start the ids again, as if nothing had been
        sent; the counters stay. For a scratch order manager only (``engine.warm``'s shadow): a
        real one would lose the orders the venue still reports on."""
        for book in self._open.values():
            for order in book.values():
                self._release(order)
        self.orders.clear()
        self._open.clear()
        self._closed.clear()
        self._next_id = 0

    # --- ids ---------------------------------------------------------------------------------
    def _prefix(self, venue: str, strategy_id: str) -> tuple[str, ClientIdRules | None]:
        # A venue wants client ids unique among its *open* orders only, and reports an order by
        # its id: a live process that restarted and counted from 1 again would reuse the id of an
        # order the last process left open (rejected as a duplicate, or worse, taking that
        # order's fills for its own). So on a live clock the prefix carries the session tag; a
        # run-unique counter keeps a backtest's ids deterministic.
        rules = self.profiles.get(venue, GENERIC_PROFILE).client_ids
        got = (rules.prefix(strategy_id, self.session), rules if rules.uses_uuid else None)
        self._prefixes[(venue, strategy_id)] = got
        return got

    def _client_id(self, venue: str, strategy_id: str) -> str:
        self._next_id += 1
        got = self._prefixes.get((venue, strategy_id))
        prefix, uuids = got if got is not None else self._prefix(venue, strategy_id)
        return f"{prefix}-{self._next_id}" if uuids is None else uuids.make(prefix, self._next_id)

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
        key = (venue, symbol)
        inst = self.instruments[key]
        clock = self.clock
        now = clock.now()
        if order_type is _LIMIT:
            px = inst.round_price(price, side) if math.isfinite(price) else 0
        else:
            px = 0
        order = Order(
            self._client_id(venue, strategy_id),
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
        order.ts_tick = self.ts_tick or now
        order.ts_decided = now
        book = self.books.get(key)
        mid = book.mid_price() if book is not None and book.valid else math.nan
        order.mid_at_decision = mid
        self.orders[order.client_order_id] = order
        log = self.log
        if self.blind and key in self.blind:
            # never a new order on a book that is not valid (a gap, a resync, a disconnect, stale)
            self.rejected_local += 1
            self._reject(order, f"{TRADING_PAUSED}: {venue} {symbol} order book not valid ({self.blind[key]})", now)
            return order
        reason = self._validate(order, inst, mid)
        if reason:
            self.rejected_local += 1
            err = self.profiles.get(venue, GENERIC_PROFILE).error(reason)
            self._reject(order, err.text, now, code=err.code)
            return order
        risk = self.risk
        decision = risk.check(order, inst, mid, now)
        if not decision.passed:
            log.risk(order, decision, now)
            self._reject(order, decision.reason, now)
            return order
        order.ts_sent = clock.now() + self.decision_latency_ns
        live = self._open.get(strategy_id)
        if live is None:
            live = self._open[strategy_id] = {}
        live[order.client_order_id] = order
        self.submitted += 1
        # The risk and submit rows are numbered before the send and built after it: venues report
        # through the engine later, never from inside ``submit_order``, and do not change the
        # order there, so the rows and their order in the log are what recording first would give.
        risk_seq = log.next_seq()
        submit_seq = log.next_seq()
        try:
            self.venues[venue].submit_order(order)
        finally:
            if order.held > 0.0:
                self.portfolio.reserve(venue, order.hold_asset, order.held)
            log.risk(order, decision, now, seq=risk_seq)
            log.order("submit", order, now, seq=submit_seq)
        if self.log_orders:
            info_later(
                _log,
                # both word orders: the guide greps "submit order" (§4.1) and "order submit" (§4.3)
                "submit order order_id: %s strategy_id: %s venue=%s symbol=%s side=%s type=%s "
                "price=%s quantity=%s (order submit)",
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
        """The canonical reason (``engine.venue.profile``) the venue's filters would refuse it."""
        if order.qty <= 0 or order.qty < inst.min_qty:
            return vp.LOT_SIZE
        if order.order_type is _LIMIT:
            if order.price <= 0 or (inst.max_price and order.price > inst.max_price) or order.price < inst.min_price:
                return vp.PRICE_FILTER
            notional = inst.notional(order.price, order.qty)
        else:
            notional = inst.size(order.qty) * mid * inst.contract_size if math.isfinite(mid) else math.inf
            if inst.inverse:
                notional = inst.size(order.qty) * inst.contract_size
        if inst.min_notional and notional < inst.min_notional:
            return vp.NOTIONAL
        return ""

    def _reject(self, order: Order, reason: str, now: int, code: int = 0) -> None:
        order.status = OrderStatus.REJECTED
        order.reason = reason
        order.ts_last = now
        self.rejected += 1
        self._close(order)
        self.log.order("rejected", order, now, reason=reason, code=code)
        if self.log_orders:  # a backtest's rejections are its event log's rows, not text lines
            _log.warning(
                "Order rejected order_id: %s strategy_id: %s symbol=%s reason=%s",
                order.client_order_id,
                order.strategy_id,
                order.symbol,
                reason,
            )
        self.events.dispatch_order_update(order)

    def cancel(self, order: Order) -> None:
        if order.status.is_terminal or order.cancel_requested:
            return
        now = self.clock.now()
        order.cancel_requested = True
        log = self.log
        seq = log.next_seq()  # numbered before the send, built after it (``submit``)
        try:
            self.venues[order.venue].cancel_order(order)
        finally:
            log.order("cancel_request", order, now, seq=seq)

    def modify(self, order: Order, price: float | None, qty: float | None) -> Order:
        inst = self.instruments[(order.venue, order.symbol)]
        new_px = inst.round_price(price, order.side) if price is not None else order.price
        new_qty = inst.round_size(qty) if qty is not None else order.qty
        venue = self.venues[order.venue]
        if venue.supports_modify and not order.status.is_terminal:
            self.log.order("modify_request", order, self.clock.now())
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
        live = self._open.get(strategy_id)
        if not live:
            return []
        if symbol is None:
            return list(live.values())
        return [o for o in live.values() if o.symbol == symbol]

    def all_open(self) -> list[Order]:
        """Every open order of every strategy."""
        return [o for book in self._open.values() for o in book.values()]

    def adopt(self, order: Order, now: int) -> None:
        """Take charge of an order that is open at the venue but was not sent by this process
        (start-up reconciliation): it is tracked, holds its balance and is reported on like any
        other. ``order.status`` is the venue's (open or partially filled)."""
        self._hold(order)
        self.orders[order.client_order_id] = order
        self._open.setdefault(order.strategy_id, {})[order.client_order_id] = order
        order.ts_last = now
        self.log.order("adopted", order, now)

    # --- venue reports -----------------------------------------------------------------------
    def on_exec_report(self, r: ExecReport) -> None:
        order = self.orders.get(r.client_order_id)
        now = self.clock.now()
        if order is None:
            self.log.incident(
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
                if self.ack_ring is not None and order.ts_sent:
                    self.ack_ring.add(now - order.ts_sent)
            self._transition(order, OrderStatus.OPEN, "accepted", r, now)
        elif kind == ev.REJECTED:
            order.reason = r.reason
            self._transition(order, OrderStatus.REJECTED, "rejected", r, now)
            if self.log_orders:
                _log.warning(
                    "Order rejected order_id: %s symbol=%s code=%s reason=%s",
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
            self.log.order("cancel_rejected", order, now, reason=r.reason, code=r.code, ts_venue=r.ts_event)
            self.events.dispatch_order_update(order)
        elif kind == ev.MODIFIED:
            order.price = r.price or order.price
            order.qty = r.qty or order.qty
            self._rehold(order)
            self.log.order("modified", order, now, ts_venue=r.ts_event)
            self.events.dispatch_order_update(order)

    def _transition(self, order: Order, new: OrderStatus, event: str, r: ExecReport, now: int) -> None:
        if new is OrderStatus.OPEN and order.status in (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
            return  # a late ack after fills: the fills already said more
        if not can_transition(order.status, new):
            self.log.incident(
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
            elif new is OrderStatus.CANCELED:
                self.canceled += 1
            self._close(order)
        self.log.order(event, order, now, reason=r.reason, code=r.code, ts_venue=r.ts_event)
        self.events.dispatch_order_update(order)

    # --- balance holds -------------------------------------------------------------------------
    def _release(self, order: Order, part: float | None = None) -> None:
        """Give back ``part`` of the order's hold (all of it when None)."""
        held = order.held
        if held <= 0.0:
            return
        amount = held if part is None or part >= held else part
        order.held = held - amount
        self.portfolio.release(order.venue, order.hold_asset, amount)

    def _hold(self, order: Order) -> None:
        """Hold what the order's unfilled part could spend (an order the risk check did not see:
        adopted, or amended)."""
        inst = self.instruments[(order.venue, order.symbol)]
        fee = self.portfolio.spec(inst).hold_fee(order.post_only, order.order_type is _LIMIT)
        leverage = self.risk.limits_for(order.strategy_id).leverage
        asset, need = self.portfolio.order_hold(
            order.strategy_id, inst, order.side, inst.price(order.price), order.qty - order.filled, leverage, fee
        )
        order.hold_asset = asset
        order.held = need
        if need > 0.0:
            self.portfolio.reserve(order.venue, asset, need)

    def _rehold(self, order: Order) -> None:
        """An amend changed price or size: hold what the order needs now."""
        self._release(order)
        if not order.status.is_terminal:
            self._hold(order)

    def _close(self, order: Order) -> None:
        self._release(order)
        book = self._open.get(order.strategy_id)
        if book is not None:
            book.pop(order.client_order_id, None)
        now = order.ts_last
        closed = self._closed
        closed.append((now, order.client_order_id))
        cutoff = now - self.retain_closed_ns
        orders = self.orders
        if closed[0][0] >= cutoff:
            return
        evicted: list[Order] = []
        while closed[0][0] < cutoff:
            cid = closed.popleft()[1]
            o = orders.get(cid)
            if o is not None and o.status.is_terminal:
                del orders[cid]
                evicted.append(o)
        if evicted and self.on_evict is not None:
            self.on_evict(evicted)

    def _on_fill(self, order: Order, r: ExecReport, now: int) -> None:
        inst = self.instruments[(order.venue, order.symbol)]
        qty = r.qty
        if order.ts_acked == 0:
            order.ts_acked = now  # the fill is the first we hear of it: it is the ack
            if self.ack_ring is not None and order.ts_sent:
                self.ack_ring.add(now - order.ts_sent)
        if order.filled == 0 and qty > 0:
            self.filled_orders += 1
        leaves = order.qty - order.filled
        if order.held > 0.0 and leaves > 0:
            # the filled part's hold goes back to free before the fill spends it
            self._release(order, order.held * qty / leaves)
        order.filled += qty
        order.fill_cost += r.price * qty
        portfolio = self.portfolio
        realized = portfolio.on_fill(order.strategy_id, inst, order.side, r.price, qty, r.fee, r.fee_asset)
        pos = portfolio.position(order.strategy_id, order.venue, order.symbol)
        new = OrderStatus.FILLED if order.filled >= order.qty else OrderStatus.PARTIALLY_FILLED
        log = self.log
        if order.status.is_terminal:
            log.incident(
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
        self.fills += 1
        sid = order.strategy_id
        self.fills_by_strategy[sid] = self.fills_by_strategy.get(sid, 0) + 1
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
        log.fill(order, r, fill, inst, now)
        if self.log_orders:
            info_later(
                _log,
                "fill order_id: %s strategy_id: %s symbol=%s side=%s price=%s quantity=%s filled=%s/%s",
                order.client_order_id,
                order.strategy_id,
                order.symbol,
                order.side.name,
                fill.price,
                fill.qty,
                inst.size(order.filled),
                inst.size(order.qty),
            )
        log.order("filled" if new is OrderStatus.FILLED else "partially_filled", order, now, ts_venue=r.ts_event)
        log.position(order.strategy_id, inst, pos, now, "fill")
        halt = self.risk.on_fill(order.strategy_id, now)
        events = self.events
        if halt is not None:
            events.halt_strategy(order.strategy_id, halt.reason, now)
        events.dispatch_fill(fill)
        events.dispatch_order_update(order)
