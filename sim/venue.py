"""The simulated venue: latency, matching, queue position, fees and the venue's own rejections.

Time: the venue lives in venue time, we live in local time, and both are read on one clock
(``sim.venue_time`` puts every market-data row on it twice: when it happened at the venue, ``v``,
and when we received it, ``ts_recv``). An order we send at local time ``t`` reaches the venue at
``a = t + order_latency``. The venue handles it then, against its own book as of ``a`` (every row
with venue time before ``a`` applied, none after), and its answer reaches us at ``a +
response_latency``. A resting order filled by a row at venue time ``v`` is reported at ``v +
response_latency``. Nothing here waits for the feed: an answer can reach us *before* we see the
market data of the moment the venue acted, as it does in reality when the response path is
faster than the market-data path.

Worked example (feed 4 ms, order 100 µs, response 100 µs): a depth update happens at the venue at
v = 10.000 ms; we receive it at 14.000 ms and quote at once. The order reaches the venue at
14.100 ms; the venue's book there already holds every update up to 14.100 ms, four milliseconds of
market we have not seen. The ack reaches us at 14.200 ms; had the order filled at arrival, so
would the fill. A model that acted on our clock would handle the order when *we* see venue time
14.100 ms, at 18.100 ms, and answer at 18.100 ms: a round trip of 4.1 ms instead of 0.2 ms, and a
matching against a book 4 ms too old.

In paper trading there is only one book, the live one, which the venue matches on as it stands
(``act_delay`` models the feed latency the venue is ahead of that book by: an order is handled
``act_delay`` after it reaches the venue, when its moment is in our book; the answer is never
earlier than that). ``act_delay`` is zero in a backtest.

Liquidity we take is not removed from the replayed book: the data already records what the real
market did next, and we model a participant small enough not to move it.

Rejections speak the venue's words (``engine.venue.VenueProfile``): the same code and text the
live venue would send, so a backtest's reject rows read like a live session's.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from engine import events as ev
from engine.book import BookSet, level_size, top_of_book, walk_book
from engine.events import ExecReport
from engine.model import Instrument, OrderType, Side, TimeInForce
from engine.orders import Order
from engine.venue import profile as vp
from engine.venue.profile import GENERIC_PROFILE, VenueProfile
from sim.latency import ConstantLatency, RandomLatency
from sim.matching import (
    F_PRICE,
    F_QTY,
    F_SLOT,
    R_ACTIVE,
    R_COLS,
    R_LEAVES,
    R_LEVEL,
    R_PRICE,
    R_QUEUE,
    R_SIDE,
    R_STREAM,
    R_TRADED,
)

Latency = ConstantLatency | RandomLatency
#: why a paper order is refused while its book is invalid (not a venue's words: the simulation's)
BLIND = "Paper trading: market data not in sync, order not simulated"


class Scheduler(Protocol):
    def schedule(self, ts: int, fn: Any, arg: Any = None) -> None: ...


class Clock(Protocol):
    def now(self) -> int: ...


class RestingOrders:
    """The venue's resting orders as a small int64 array the replay kernel scans per row."""

    def __init__(self, capacity: int = 64) -> None:
        self.arr = np.zeros((capacity, R_COLS), dtype=np.int64)
        self.orders: list[Order | None] = [None] * capacity
        self.venue_of: list[SimulatedVenue | None] = [None] * capacity
        self.n = 0  # high-water mark of used slots: the kernel scans [0, n)
        self._free: list[int] = []

    def add(self, order: Order, venue: SimulatedVenue, stream: int, queue: int, leaves: int) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            if self.n == self.arr.shape[0]:
                self._grow()
            slot = self.n
            self.n += 1
        a = self.arr[slot]
        a[R_ACTIVE] = 1
        a[R_STREAM] = stream
        a[R_SIDE] = int(order.side)
        a[R_PRICE] = order.price
        a[R_LEAVES] = leaves
        a[R_QUEUE] = queue
        a[R_LEVEL] = queue
        a[R_TRADED] = 0
        self.orders[slot] = order
        self.venue_of[slot] = venue
        return slot

    def remove(self, slot: int) -> None:
        self.arr[slot, R_ACTIVE] = 0
        self.orders[slot] = None
        self.venue_of[slot] = None
        self._free.append(slot)
        while self.n > 0 and self.orders[self.n - 1] is None:
            self.n -= 1
            if self.n in self._free:
                self._free.remove(self.n)

    def _grow(self) -> None:
        cap = self.arr.shape[0]
        arr = np.zeros((cap * 2, R_COLS), dtype=np.int64)
        arr[:cap] = self.arr
        self.arr = arr
        self.orders.extend([None] * cap)
        self.venue_of.extend([None] * cap)


class SimulatedVenue:
    """An ``ExecutionClient`` that matches against the venue's books (replayed in a backtest, the
    live ones in paper trading)."""

    def __init__(
        self,
        name: str,
        instruments: dict[str, Instrument],
        streams: dict[str, int],
        books: BookSet,
        resting: RestingOrders,
        timeline: Scheduler,
        clock: Clock,
        sink: Any,
        order_latency: Latency,
        response_latency: Latency,
        profile: VenueProfile | None = None,
        maker_fee: float | None = None,
        taker_fee: float | None = None,
        supports_modify: bool | None = None,
        act_delay: Latency | None = None,
    ) -> None:
        self.name = name
        self.instruments = instruments  # symbol -> instrument
        self.streams = streams  # symbol -> book index in ``books``
        self.books = books
        self.resting = resting
        self.timeline = timeline
        self.clock = clock
        self.sink = sink
        self.order_latency = order_latency
        self.response_latency = response_latency
        self.profile = profile or GENERIC_PROFILE
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.supports_modify = self.profile.supports_modify if supports_modify is None else supports_modify
        self.act_delay = act_delay
        self._slot_of: dict[str, int] = {}
        self._walk = np.zeros((256, 2), dtype=np.int64)
        self._top = np.zeros(4, dtype=np.int64)
        self._next_venue_id = 0
        self._next_trade_id = 0
        self.orders_received = 0

    # --- ExecutionClient -----------------------------------------------------------------------
    def _at_venue(self, sent: int, fn: Any, *args: Any) -> None:
        a = sent + self.order_latency.sample()
        delay = self.act_delay
        self.timeline.schedule(a if delay is None else a + delay.sample(), fn, (a, *args))

    def submit_order(self, order: Order) -> None:
        self._at_venue(order.ts_sent, self._arrive, order)

    def cancel_order(self, order: Order) -> None:
        self._at_venue(self.clock.now(), self._cancel_arrive, order)

    def modify_order(self, order: Order, price: int, qty: int) -> None:
        self._at_venue(self.clock.now(), self._modify_arrive, order, price, qty)

    # --- venue side ----------------------------------------------------------------------------
    def _respond(self, v: int, report_kw: dict) -> None:
        now = self.clock.now()
        t = v + self.response_latency.sample()
        if t < now:  # paper: the venue acted late on our book; its answer cannot be older than now
            t = now
        report = ExecReport(ts_event=v, ts_recv=t, venue=self.name, **report_kw)
        self.timeline.schedule(t, self._deliver, report)

    def _deliver(self, report: ExecReport) -> None:
        self.sink.on_exec_report(report)

    def _reject(self, order: Order, v: int, reason: str, kind: str = ev.REJECTED) -> None:
        err = self.profile.error(reason)
        self._respond(
            v,
            {
                "kind": kind,
                "symbol": order.symbol,
                "client_order_id": order.client_order_id,
                "reason": err.text,
                "code": err.code,
            },
        )

    def _fill_report(self, order: Order, v: int, price: int, qty: int, maker: bool) -> None:
        inst = self.instruments[order.symbol]
        rate = self.maker_fee if maker else self.taker_fee
        if rate is None:
            rate = inst.maker_fee if maker else inst.taker_fee
        fee = inst.notional(price, qty) * rate
        self._next_trade_id += 1
        self._respond(
            v,
            {
                "kind": ev.FILL,
                "symbol": order.symbol,
                "client_order_id": order.client_order_id,
                "venue_order_id": order.venue_order_id,
                "price": price,
                "qty": qty,
                "liquidity": "maker" if maker else "taker",
                "fee": fee,
                "fee_asset": inst.quote,
                "trade_id": str(self._next_trade_id),
            },
        )

    def _filter_failure(self, order: Order, inst: Instrument) -> str:
        limit = order.order_type is OrderType.LIMIT
        if limit and (order.price <= 0 or order.price % inst.tick or (inst.max_price and order.price > inst.max_price)):
            return vp.PRICE_FILTER
        if order.qty <= 0 or order.qty % inst.lot or order.qty < inst.min_qty:
            return vp.LOT_SIZE
        if limit and inst.min_notional and inst.notional(order.price, order.qty) < inst.min_notional:
            return vp.NOTIONAL
        return ""

    def _arrive(self, arg: tuple[int, Order]) -> None:
        v, order = arg
        self.orders_received += 1
        inst = self.instruments.get(order.symbol)
        if inst is None:
            self._reject(order, v, vp.UNKNOWN_SYMBOL)
            return
        if self.act_delay is not None and (self.name, order.symbol) in getattr(self.sink, "invalid_books", ()):
            # paper: the live book is this venue's only view of the market; while it is not valid
            # the venue cannot know what the order would have met, and must not invent it
            self._respond(
                v,
                {
                    "kind": ev.REJECTED,
                    "symbol": order.symbol,
                    "client_order_id": order.client_order_id,
                    "reason": BLIND,
                    "code": 0,
                },
            )
            return
        failure = self._filter_failure(order, inst)
        if failure:
            self._reject(order, v, failure)
            return
        b = self.streams[order.symbol]
        bs = self.books
        buy = order.side is Side.BUY
        top_of_book(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, b, self._top)
        best_opp = int(self._top[2] if buy else self._top[0])
        limit = order.price if order.order_type is OrderType.LIMIT else 0
        marketable = best_opp != 0 and (limit == 0 or (buy and limit >= best_opp) or (not buy and limit <= best_opp))
        self._next_venue_id += 1
        order_id = str(self._next_venue_id)
        if marketable and order.post_only:
            kind = ev.REJECTED if self.profile.post_only_rejects else ev.EXPIRED
            self._reject(order, v, vp.POST_ONLY_WOULD_TAKE, kind)
            return
        self._respond(
            v,
            {
                "kind": ev.ACCEPTED,
                "symbol": order.symbol,
                "client_order_id": order.client_order_id,
                "venue_order_id": order_id,
            },
        )
        leaves = order.qty
        if marketable:
            m = walk_book(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, b, buy, leaves, limit, self._walk)
            available = int(self._walk[:m, 1].sum())
            if order.tif is TimeInForce.FOK and available < leaves:
                self._respond(v, {"kind": ev.EXPIRED, "symbol": order.symbol, "client_order_id": order.client_order_id})
                return
            for k in range(m):
                px, q = int(self._walk[k, 0]), int(self._walk[k, 1])
                self._fill_report(order, v, px, q, maker=False)
                leaves -= q
        if leaves <= 0:
            return
        if order.order_type is OrderType.MARKET or order.tif in (TimeInForce.IOC, TimeInForce.FOK):
            self._respond(v, {"kind": ev.EXPIRED, "symbol": order.symbol, "client_order_id": order.client_order_id})
            return
        # the order joins the back of its level with what is left; the kernel tracks it from here
        queue = int(level_size(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, b, 0 if buy else 1, order.price))
        self._slot_of[order.client_order_id] = self.resting.add(order, self, b, queue, leaves)

    def _cancel_arrive(self, arg: tuple[int, Order]) -> None:
        v, order = arg
        slot = self._slot_of.pop(order.client_order_id, None)
        if slot is None:
            self._reject(order, v, vp.UNKNOWN_ORDER, ev.CANCEL_REJECTED)
            return
        self.resting.remove(slot)
        self._respond(v, {"kind": ev.CANCELED, "symbol": order.symbol, "client_order_id": order.client_order_id})

    def _modify_arrive(self, arg: tuple[int, Order, int, int]) -> None:
        v, order, price, qty = arg
        slot = self._slot_of.get(order.client_order_id)
        if slot is None:
            self._reject(order, v, vp.UNKNOWN_ORDER, ev.CANCEL_REJECTED)
            return
        a = self.resting.arr[slot]
        # an amend keeps priority only when it just reduces quantity at the same price
        if price != a[R_PRICE] or qty - order.filled > a[R_LEAVES]:
            bs = self.books
            side = 0 if a[R_SIDE] > 0 else 1
            a[R_QUEUE] = int(level_size(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, int(a[R_STREAM]), side, price))
            a[R_LEVEL] = a[R_QUEUE]
        a[R_PRICE] = price
        a[R_LEAVES] = max(qty - order.filled, 0)
        self._respond(
            v,
            {
                "kind": ev.MODIFIED,
                "symbol": order.symbol,
                "client_order_id": order.client_order_id,
                "price": price,
                "qty": qty,
            },
        )

    # --- fills found by the replay kernel -------------------------------------------------------
    def kernel_fill(self, slot: int, qty: int, price: int, v: int) -> None:
        order = self.resting.orders[slot]
        if order is not None:
            self._fill_report(order, v, price, qty, maker=True)

    def release_if_done(self, slot: int) -> None:
        order = self.resting.orders[slot]
        if order is not None and self.resting.arr[slot, R_ACTIVE] == 0:
            self._slot_of.pop(order.client_order_id, None)
            self.resting.remove(slot)


def dispatch_kernel_fills(resting: RestingOrders, fills: np.ndarray, nf: int, venue_ts: int) -> None:
    """Turn the kernel's fill rows into reports; ``venue_ts`` is when the venue filled them."""
    done = []
    for k in range(nf):
        slot = int(fills[k, F_SLOT])
        venue = resting.venue_of[slot]
        if venue is not None:
            venue.kernel_fill(slot, int(fills[k, F_QTY]), int(fills[k, F_PRICE]), venue_ts)
            done.append((venue, slot))
    for venue, slot in done:
        venue.release_if_done(slot)
