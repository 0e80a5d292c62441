"""The simulated venue: latency, matching, queue position, fees and the venue's own rejections.

Time: the engine's timeline is keyed by *local* time. The venue saw a market-data row
``feed_latency`` before we did, so the venue's state at venue time ``v`` is the replayed book
after every row with ``ts_recv <= v + feed_latency``. An order sent at local ``t`` reaches the venue
at ``v = t + order_latency`` and is handled at timeline key ``v + feed_latency``, against exactly
that book; its answer reaches us at ``v + response_latency`` (never before the present, when the
response path is faster than the feed). An order therefore never fills on data older than its
arrival, and never on data the venue had not seen.

Liquidity we take is not removed from the replayed book: the data already records what the real
market did next, and we model a participant small enough not to move it.
"""

from __future__ import annotations

import numpy as np

from engine import events as ev
from engine.book import BookSet, level_size, top_of_book, walk_book
from engine.events import ExecReport
from engine.model import Instrument, OrderType, Side, TimeInForce
from engine.orders import Order
from engine.timeline import Timeline
from sim.kernel import (
    F_PRICE,
    F_QTY,
    F_SLOT,
    R_ACTIVE,
    R_LEAVES,
    R_PRICE,
    R_QUEUE,
    R_SIDE,
    R_STREAM,
    R_TRADED,
)
from sim.latency import ConstantLatency, RandomLatency

Latency = ConstantLatency | RandomLatency

MSG_WOULD_TAKE = "Order would immediately match and take."
MSG_UNKNOWN_ORDER = "Unknown order sent."


class RestingOrders:
    """The venue's resting orders as a small int64 array the replay kernel scans per row."""

    def __init__(self, capacity: int = 64) -> None:
        self.arr = np.zeros((capacity, 7), dtype=np.int64)
        self.orders: list[Order | None] = [None] * capacity
        self.venue_of: list[SimulatedVenue | None] = [None] * capacity
        self.n = 0  # high-water mark of used slots: the kernel scans [0, n)
        self._free: list[int] = []

    def add(self, order: Order, venue: SimulatedVenue, stream: int, queue: int) -> int:
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
        a[R_LEAVES] = order.qty - order.filled
        a[R_QUEUE] = queue
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
        arr = np.zeros((cap * 2, 7), dtype=np.int64)
        arr[:cap] = self.arr
        self.arr = arr
        self.orders.extend([None] * cap)
        self.venue_of.extend([None] * cap)


class SimulatedVenue:
    """An ``ExecutionVenue`` that matches against replayed (or live, in paper mode) books."""

    def __init__(
        self,
        name: str,
        instruments: dict[str, Instrument],
        streams: dict[str, int],
        books: BookSet,
        resting: RestingOrders,
        timeline: Timeline,
        clock,
        sink,
        feed_latency: Latency,
        order_latency: Latency,
        response_latency: Latency,
        maker_fee: float | None = None,
        taker_fee: float | None = None,
        supports_modify: bool = False,
    ) -> None:
        self.name = name
        self.instruments = instruments  # symbol -> instrument
        self.streams = streams  # symbol -> book index in ``books``
        self.books = books
        self.resting = resting
        self.timeline = timeline
        self.clock = clock
        self.sink = sink
        self.feed_latency = feed_latency
        self.order_latency = order_latency
        self.response_latency = response_latency
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.supports_modify = supports_modify
        self._slot_of: dict[str, int] = {}
        self._walk = np.zeros((256, 2), dtype=np.int64)
        self._top = np.zeros(4, dtype=np.int64)
        self._next_venue_id = 0
        self._next_trade_id = 0
        self.orders_received = 0

    # --- ExecutionVenue ------------------------------------------------------------------------
    def submit_order(self, order: Order) -> None:
        v = order.ts_sent + self.order_latency.sample()
        self.timeline.schedule(v + self.feed_latency.sample(), self._arrive, (order, v))

    def cancel_order(self, order: Order) -> None:
        v = self.clock.now() + self.order_latency.sample()
        self.timeline.schedule(v + self.feed_latency.sample(), self._cancel_arrive, (order, v))

    def modify_order(self, order: Order, price: int, qty: int) -> None:
        v = self.clock.now() + self.order_latency.sample()
        self.timeline.schedule(v + self.feed_latency.sample(), self._modify_arrive, (order, v, price, qty))

    # --- venue side ----------------------------------------------------------------------------
    def _respond(self, v: int, report_kw: dict) -> None:
        now = self.clock.now()
        t = v + self.response_latency.sample()
        if t < now:
            t = now
        report = ExecReport(ts_event=v, ts_recv=t, venue=self.name, **report_kw)
        self.timeline.schedule(t, self._deliver, report)

    def _deliver(self, report: ExecReport) -> None:
        self.sink.on_exec_report(report)

    def _reject(self, order: Order, v: int, reason: str, code: int) -> None:
        self._respond(
            v,
            {
                "kind": ev.REJECTED,
                "symbol": order.symbol,
                "client_order_id": order.client_order_id,
                "reason": reason,
                "code": code,
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
            return "Filter failure: PRICE_FILTER"
        if order.qty <= 0 or order.qty % inst.lot or order.qty < inst.min_qty:
            return "Filter failure: LOT_SIZE"
        if (
            order.order_type is OrderType.LIMIT
            and inst.min_notional
            and inst.notional(order.price, order.qty) < inst.min_notional
        ):
            return "Filter failure: NOTIONAL"
        return ""

    def _arrive(self, arg: tuple[Order, int]) -> None:
        order, v = arg
        self.orders_received += 1
        inst = self.instruments.get(order.symbol)
        if inst is None:
            self._reject(order, v, "Invalid symbol.", -1121)
            return
        failure = self._filter_failure(order, inst)
        if failure:
            self._reject(order, v, failure, -1013)
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
            self._reject(order, v, MSG_WOULD_TAKE, -2010)
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
        queue = int(level_size(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, b, 0 if buy else 1, order.price))
        # the order rests with what is left; the kernel tracks leaves from here
        slot = self.resting.add(order, self, b, queue)
        self.resting.arr[slot, R_LEAVES] = leaves
        self._slot_of[order.client_order_id] = slot

    def _cancel_arrive(self, arg: tuple[Order, int]) -> None:
        order, v = arg
        slot = self._slot_of.pop(order.client_order_id, None)
        if slot is None:
            self._respond(
                v,
                {
                    "kind": ev.CANCEL_REJECTED,
                    "symbol": order.symbol,
                    "client_order_id": order.client_order_id,
                    "reason": MSG_UNKNOWN_ORDER,
                    "code": -2011,
                },
            )
            return
        self.resting.remove(slot)
        self._respond(v, {"kind": ev.CANCELED, "symbol": order.symbol, "client_order_id": order.client_order_id})

    def _modify_arrive(self, arg: tuple[Order, int, int, int]) -> None:
        order, v, price, qty = arg
        slot = self._slot_of.get(order.client_order_id)
        if slot is None:
            self._respond(
                v,
                {
                    "kind": ev.CANCEL_REJECTED,
                    "symbol": order.symbol,
                    "client_order_id": order.client_order_id,
                    "reason": MSG_UNKNOWN_ORDER,
                    "code": -2011,
                },
            )
            return
        a = self.resting.arr[slot]
        # an amend keeps priority only when it just reduces quantity at the same price
        if price != a[R_PRICE] or qty - order.filled > a[R_LEAVES]:
            bs = self.books
            a[R_QUEUE] = int(
                level_size(
                    bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, int(a[R_STREAM]), 0 if a[R_SIDE] > 0 else 1, price
                )
            )
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
    def kernel_fill(self, slot: int, qty: int, price: int, row_ts: int) -> None:
        order = self.resting.orders[slot]
        if order is None:
            return
        v = row_ts - self.feed_latency.sample()
        self._fill_report(order, v, price, qty, maker=True)

    def release_if_done(self, slot: int) -> None:
        order = self.resting.orders[slot]
        if order is not None and self.resting.arr[slot, R_ACTIVE] == 0:
            self._slot_of.pop(order.client_order_id, None)
            self.resting.remove(slot)


def dispatch_kernel_fills(resting: RestingOrders, fills: np.ndarray, nf: int, row_ts: int) -> None:
    slots = []
    for k in range(nf):
        slot = int(fills[k, F_SLOT])
        venue = resting.venue_of[slot]
        if venue is not None:
            venue.kernel_fill(slot, int(fills[k, F_QTY]), int(fills[k, F_PRICE]), row_ts)
            slots.append((venue, slot))
    for venue, slot in slots:
        venue.release_if_done(slot)
