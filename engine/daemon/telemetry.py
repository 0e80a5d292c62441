"""The metrics snapshot the API process serves (``docs/daemon-contract.md``, op ``metrics``).

The hot path records a latency as one C-level call: ``LatencyRing.add`` is a bounded deque's
``append`` (no Python frame, no formatting), and an order handed to a venue is appended whole
to ``Telemetry.sent`` (the order manager's ``on_order_sent`` *is* that deque's ``append``).
Everything else is read from the engine's own counters when a snapshot is asked for.
:meth:`Telemetry.fold` empties the deques into cumulative histogram buckets (exact) and a
reservoir of the latest ``RECENT`` samples per stage (the quantiles); it runs on each snapshot
and once a second off the hot path. A deque holds ``PENDING_MAX`` samples: a stage recording
more than that between two folds loses the oldest from its histogram.

Stages (``hft_latency_seconds{stage=...}``), every one from timestamps the path takes anyway
except ``market_data``, whose one extra clock read is in the session's feed callback:

- ``market_data``: frame receipt (the socket read) to the book applied and handed to the engine;
- ``risk_check``: the pre-trade checks of one order (``RiskEngine.check``, its own timer);
- ``order_submit``: the strategy's order call to the order handed to the venue's client (ids,
  rounding, filters, risk): ``ts_sent - ts_decided``;
- ``tick_to_order``: the receipt of the market data the order was decided on to the order handed
  to the venue's client: ``ts_sent - ts_tick``;
- ``venue_ack``: the order handed to the venue's client to its acknowledgement received.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.model import OrderStatus

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.orders import Order

PENDING_MAX = 1 << 16
RECENT = 1 << 13
STAGES = ("market_data", "risk_check", "order_submit", "tick_to_order", "venue_ack")
#: bucket upper bounds, seconds: around the guide's thresholds (100 µs, 500 µs, 1 ms)
BUCKETS = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_BOUNDS_NS = np.array([round(b * 1e9) for b in BUCKETS], dtype=np.int64)


class LatencyRing:
    """One stage's latencies (ns): ``add`` on the hot path, ``fold`` off it."""

    __slots__ = ("_q", "_recent", "_recent_n", "add", "count", "pending", "sum_ns", "total")

    def __init__(self) -> None:
        self.pending: deque[int] = deque(maxlen=PENDING_MAX)
        #: the deque's own append: a C call, no Python frame
        self.add = self.pending.append
        self.count = np.zeros(len(BUCKETS) + 1, dtype=np.int64)  # per bucket (not cumulative), +Inf last
        self.sum_ns = 0
        self.total = 0
        self._recent = np.zeros(RECENT, dtype=np.int64)
        self._recent_n = 0  # samples ever put in the reservoir
        self._q: tuple[int, dict[str, float | None]] = (-1, {})

    def fold(self) -> None:
        n = len(self.pending)
        if not n:
            return
        samples = np.maximum(np.fromiter(self.pending, dtype=np.int64, count=n), 0)
        self.pending.clear()  # the loop runs nothing else meanwhile: no sample slips between
        idx = np.searchsorted(_BOUNDS_NS, samples, side="left")
        self.count += np.bincount(idx, minlength=len(BUCKETS) + 1)
        self.sum_ns += int(samples.sum())
        self.total += n
        keep = samples[-RECENT:]
        k = len(keep)
        start = self._recent_n % RECENT
        first = min(k, RECENT - start)
        self._recent[start : start + first] = keep[:first]
        self._recent[: k - first] = keep[first:]
        self._recent_n += k

    def quantiles_us(self) -> dict[str, float | None]:
        if self._q[0] == self.total:
            return self._q[1]
        k = min(self._recent_n, RECENT)
        if k == 0:
            out: dict[str, float | None] = {"p50": None, "p99": None, "p999": None}
        else:
            # nearest rank on a partial sort: cheaper than np.percentile on the trading loop
            ranks = [min(k - 1, int(q * k)) for q in (0.5, 0.99, 0.999)]
            part = np.partition(self._recent[:k], ranks)
            out = {name: round(float(part[r]) / 1e3, 3) for name, r in zip(("p50", "p99", "p999"), ranks, strict=True)}
        self._q = (self.total, out)
        return out


class Telemetry:
    """The rings of one engine and the snapshot built from the engine's state. ``attach``
    hooks the rings into the engine (order path); the session's feed callback adds to
    ``market_data``."""

    def __init__(self) -> None:
        self.rings = {stage: LatencyRing() for stage in STAGES}
        self.market_data = self.rings["market_data"]
        #: orders handed to a venue since the last fold (``OrderManager.on_order_sent``)
        self.sent: deque[Order] = deque(maxlen=PENDING_MAX)
        self.loop_lag_s = 0.0
        self._lag_task: asyncio.Task[None] | None = None
        #: more samples the service adds (memory pressure, API restarts): each called per snapshot
        self.extra: list[Callable[[], list[dict[str, Any]]]] = []
        #: orders handed to a venue, per strategy
        self.submitted_by: dict[str, int] = {}

    def attach(self, engine: Engine) -> None:
        oms = engine.oms
        engine.risk.latency_ring = self.rings["risk_check"]
        oms.ack_ring = self.rings["venue_ack"]
        if oms.on_order_sent is not None:
            previous, append = oms.on_order_sent, self.sent.append

            def both(order: Order) -> None:
                append(order)
                previous(order)

            oms.on_order_sent = both
        else:
            oms.on_order_sent = self.sent.append

    def fold(self) -> None:
        sent = self.sent
        if sent:
            t2o = self.rings["tick_to_order"].add
            sub = self.rings["order_submit"].add
            by = self.submitted_by
            for _ in range(len(sent)):
                o = sent.popleft()
                t2o(o.ts_sent - o.ts_tick)
                sub(o.ts_sent - o.ts_decided)
                by[o.strategy_id] = by.get(o.strategy_id, 0) + 1
        for ring in self.rings.values():
            ring.fold()

    # --- event-loop lag (a timer off the hot path) ----------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, interval_s: float = 1.0) -> None:
        self._lag_task = loop.create_task(self._watch_lag(interval_s))

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task

    async def _watch_lag(self, interval_s: float) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(interval_s)
            lag = time.perf_counter() - t0 - interval_s
            self.loop_lag_s = max(lag, 0.0)
            self.fold()

    # --- the snapshot ----------------------------------------------------------------------------
    def snapshot(self, engine: Engine, feeds: dict[str, Any], adapters: dict[str, Any]) -> dict[str, Any]:
        self.fold()
        samples: list[dict[str, Any]] = []

        def add(name: str, mtype: str, help_: str, value: float, /, **labels: str) -> None:
            samples.append({"name": name, "type": mtype, "help": help_, "labels": labels, "value": value})

        help_lat = "Latency of each stage of the trading path, seconds"
        for stage, ring in self.rings.items():
            cum = np.cumsum(ring.count)
            buckets: list[list[Any]] = [[b, int(c)] for b, c in zip(BUCKETS, cum[:-1], strict=True)]
            buckets.append(["+Inf", int(cum[-1])])
            samples.append(
                {
                    "name": "hft_latency_seconds",
                    "type": "histogram",
                    "help": help_lat,
                    "labels": {"stage": stage},
                    "buckets": buckets,
                    "sum": ring.sum_ns / 1e9,
                    "count": int(cum[-1]),
                    "quantiles_us": ring.quantiles_us(),
                }
            )
        for venue, feed in feeds.items():
            # frames are applied as they are read, with no queue between: what waits is the rest
            # of a socket read the feed handed back to the loop to finish on its next turn
            ws = getattr(getattr(feed, "ws", None), "ws", None)
            pending = getattr(ws, "_deferred", None)
            waiting = len(pending) if isinstance(pending, bytes | bytearray) else 0
            add(
                "hft_market_data_queue_depth",
                "gauge",
                "Socket reads of market data waiting to be applied (0: frames are applied as read)",
                int(waiting > 0),
                exchange=venue,
            )
            add(
                "hft_market_data_pending_bytes",
                "gauge",
                "Bytes of market data read and not yet applied",
                waiting,
                exchange=venue,
            )
        books_bytes = 0
        seen: set[int] = set()
        for book in engine.books.values():
            bs = book.books
            if id(bs) not in seen:
                seen.add(id(bs))
                books_bytes += sum(a.nbytes for a in bs.arrays())
        add("hft_orderbook_memory_mb", "gauge", "Memory held by the order books, MB", round(books_bytes / 1e6, 3))
        oms = engine.oms
        add("hft_order_count", "gauge", "Orders held in memory (open and recently closed)", len(oms.orders))
        help_orders = "Orders by outcome"
        add("hft_orders_total", "counter", help_orders, oms.submitted, status="submitted")
        add("hft_orders_total", "counter", help_orders, oms.filled_orders, status="filled")
        add("hft_orders_total", "counter", help_orders, getattr(oms, "canceled", 0), status="cancelled")
        add("hft_orders_total", "counter", help_orders, oms.rejected, status="rejected")
        fills_by = getattr(oms, "fills_by_strategy", {})
        for sid in engine.strategies:
            add("hft_fills_total", "counter", "Fills per strategy", fills_by.get(sid, 0), strategy_id=sid)
        pf = engine.portfolio
        for sid, pos in pf.positions():
            add(
                "hft_position_quantity",
                "gauge",
                "Position, base units",
                pos.qty_float,
                strategy_id=sid,
                symbol=pos.symbol,
            )
        for sid in engine.strategies:
            realized, unrealized, fees = pf.strategy_pnl(sid)
            for kind, v in (("realized", realized), ("unrealized", unrealized), ("net", realized + unrealized - fees)):
                add("hft_pnl_usd", "gauge", "P&L per strategy, USD", _finite(v), strategy_id=sid, kind=kind)
        for check, n in sorted(engine.risk._failed.items()):
            add("hft_risk_violations_total", "counter", "Orders refused by a risk check", n, check=check)
        for venue, adapter in adapters.items():
            feed = feeds.get(venue)
            st = feed.status() if feed is not None else None
            connected = st.connected if st is not None else False
            add(
                "hft_exchange_connected",
                "gauge",
                "1 when the venue's market data is connected",
                int(connected),
                exchange=venue,
            )
            gaps = sum(b.gaps for b in st.books) if st is not None else 0
            add("hft_sequence_gaps_total", "counter", "Sequence gaps in the venue's depth stream", gaps, exchange=venue)
            reconnects = max(st.connects - 1, 0) if st is not None else 0
            add("hft_reconnects_total", "counter", "Market data reconnections", reconnects, exchange=venue)
            weight = getattr(getattr(adapter, "rest", None), "last_used_weight", 0)
            add("hft_rate_limit_weight_used", "gauge", "Request weight used (venue's count)", weight, exchange=venue)
        for kind, n in sorted(engine.incident_counts.items()):
            add("hft_incidents_total", "counter", "Incidents by kind", n, kind=kind)
        add("hft_event_loop_lag_seconds", "gauge", "How late the trading loop ran a timer", round(self.loop_lag_s, 6))
        add("hft_trading_enabled", "gauge", "1 when new orders may be sent", int(engine.risk.trading_enabled))
        for (venue, symbol), book in engine.books.items():
            add("hft_book_valid", "gauge", "1 when the book is in sync", int(book.valid), exchange=venue, symbol=symbol)
        for source in self.extra:
            samples.extend(source())
        return {"ts": time.time(), "pid": os.getpid(), "samples": samples}


def order_status_name(status: OrderStatus) -> str:
    """The API's word for an order status (``cancelled``, the guide's spelling)."""
    return "cancelled" if status is OrderStatus.CANCELED else status.value


def _finite(x: float) -> float:
    return x if x == x and abs(x) != float("inf") else 0.0
