"""Replays market data through the kernel and interleaves it with the engine's own timeline.

Rows and scheduled events are handled in ``(ts, seq)`` order: rows with ``ts_recv`` earlier than
the next scheduled event run in compiled code; at equal times the scheduled event goes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from engine.book import Book, BookSet
from engine.clock import SimClock
from engine.engine import Engine
from engine.events import Trade
from engine.timeline import NEVER, Timeline
from sim import kernel as K
from sim.venue import RestingOrders, dispatch_kernel_fills


class ReplayStats:
    __slots__ = (
        "bad",
        "book_wakes",
        "crossed",
        "events",
        "fill_wakes",
        "rows",
        "seconds",
        "trade_wakes",
        "wake_ns",
        "wakes",
    )

    def __init__(self) -> None:
        self.rows = 0
        self.wakes = 0
        self.book_wakes = 0
        self.trade_wakes = 0
        self.fill_wakes = 0
        self.crossed = 0
        self.bad = 0
        self.events = 0
        self.seconds = 0.0
        self.wake_ns: list[int] | None = None


class ReplayDriver:
    def __init__(
        self,
        engine: Engine | None,
        books: BookSet,
        book_of_stream: list[Book],
        timeline: Timeline,
        clock: SimClock,
        resting: RestingOrders,
        feed_latency_of_stream: list[Any] | None = None,
        queue_model: int = 0,
        queue_power: float = 2.0,
        measure_wakes: bool = False,
    ) -> None:
        self.engine = engine
        self.books = books
        self.book_of_stream = book_of_stream
        self.timeline = timeline
        self.clock = clock
        self.resting = resting
        self.feed_latency = feed_latency_of_stream or [None] * len(book_of_stream)
        n = len(book_of_stream)
        self.st = np.zeros((n, K.ST_COLS), dtype=np.int64)
        if engine is not None:
            for i, b in enumerate(book_of_stream):
                key = (b.venue, b.symbol)
                self.st[i, K.ST_WAKE_BOOK] = engine.wants_book(key)
                self.st[i, K.ST_WAKE_TRADE] = 1 if engine.wants_trades(key) else 0
        self.fills = np.zeros((1024, 3), dtype=np.int64)
        self.params = np.zeros(5, dtype=np.int64)
        self.params[3] = queue_model
        self.power = float(queue_power)
        self.out = np.zeros(5, dtype=np.int64)
        self.stats = ReplayStats()
        if measure_wakes:
            self.stats.wake_ns = []

    def run_timeline_until(self, ts: int) -> None:
        """Handle every scheduled event with key <= ts (events may schedule more)."""
        tl = self.timeline
        clock = self.clock
        n = 0
        while tl.next_ts() <= ts:
            t, fn, arg = tl.pop()
            if t > clock.ts:
                clock.ts = t
            fn(arg)
            n += 1
        self.stats.events += n

    def run(self, batches: Iterable[Any], on_progress: Callable[[int], None] | None = None) -> ReplayStats:
        t0 = time.perf_counter()
        stats = self.stats
        last_ts = 0
        for cb in batches:
            n = len(cb.ts_recv)
            if n == 0:
                continue
            last_ts = self._run_batch(cb, n)
            stats.rows += n
            if on_progress is not None:
                on_progress(n)
        stats.seconds = time.perf_counter() - t0
        self.last_ts = last_ts
        return stats

    def drain(self, until_ts: int) -> None:
        self.run_timeline_until(until_ts)
        if self.clock.ts < until_ts:
            self.clock.ts = until_ts

    def _run_batch(self, cb: Any, n: int) -> int:
        ts_recv = cb.ts_recv
        kind = cb.kind
        side = cb.side
        price = cb.price
        size = cb.size
        stream = cb.stream if cb.stream.dtype == np.int32 else cb.stream.astype(np.int32)
        batch_end = cb.batch_end
        ts_event = cb.ts_event
        sequence = cb.sequence
        books = self.books
        params = self.params
        out = self.out
        st = self.st
        clock = self.clock
        tl = self.timeline
        engine = self.engine
        resting = self.resting
        stats = self.stats
        wake_ns = stats.wake_ns
        perf = time.perf_counter_ns
        run_rows = K.run_rows
        i = 0
        while i < n:
            t_next = tl.next_ts()
            if t_next <= ts_recv[i]:
                self.run_timeline_until(int(ts_recv[i]))
                continue
            params[0] = i
            params[1] = n
            params[2] = t_next if t_next != NEVER else NEVER
            params[4] = resting.n
            run_rows(
                ts_recv,
                kind,
                side,
                price,
                size,
                stream,
                batch_end,
                books.lad,
                books.keys,
                books.sizes,
                books.cnt,
                books.dead,
                books.meta,
                st,
                resting.arr,
                self.fills,
                params,
                self.power,
                out,
            )
            j = int(out[K.O_NEXT])
            mask = int(out[K.O_MASK])
            i = j
            if mask == 0:
                continue
            if mask & K.M_FULL:
                books.grow()
                for b in self.book_of_stream:
                    b.books = books
                mask &= ~K.M_FULL
                if mask == 0:
                    continue
            row = int(out[K.O_ROW])
            s = int(out[K.O_STREAM])
            t = int(ts_recv[row])
            if t > clock.ts:
                clock.ts = t
            stats.wakes += 1
            w0 = perf() if wake_ns is not None else 0
            book = self.book_of_stream[s]
            if mask & K.M_BAD and engine is not None:
                stats.bad += 1
                engine.incident(
                    t,
                    book.venue,
                    book.symbol,
                    "bad_level",
                    f"row price={int(price[row])} size={int(size[row])} seq={int(sequence[row])}",
                )
            if mask & K.M_GAP:
                book.valid = False
                book.refresh_top()
                if engine is not None:
                    engine.incident(
                        t,
                        book.venue,
                        book.symbol,
                        "sequence_gap",
                        f"update chain broken in the recorded data before seq={int(sequence[row])}; "
                        "book invalid until the next snapshot",
                    )
            if mask & K.M_FILL:
                stats.fill_wakes += 1
                dispatch_kernel_fills(resting, self.fills, int(out[K.O_NFILLS]), t)
            if mask & K.M_CROSSED:
                stats.crossed += 1
                book.valid = False
                book.refresh_top()
                if engine is not None:
                    engine.incident(
                        t,
                        book.venue,
                        book.symbol,
                        "crossed_book",
                        f"bid={book.best_bid_fixed} ask={book.best_ask_fixed} seq={int(sequence[row])}",
                    )
            if mask & K.M_TRADE and engine is not None:
                stats.trade_wakes += 1
                inst = book.instrument
                px = int(price[row])
                q = int(size[row])
                engine.on_trade(
                    Trade(
                        book.venue,
                        book.symbol,
                        int(ts_event[row]),
                        t,
                        int(side[row]),
                        inst.price(px),
                        inst.size(q),
                        px,
                        q,
                    )
                )
            if mask & K.M_BOOK:
                stats.book_wakes += 1
                book.refresh_top()
                book.valid = True
                book.ts_recv = t
                book.ts_event = int(ts_event[row])
                book.update_id = int(sequence[row])
                if engine is not None:
                    fl = self.feed_latency[s]
                    engine.on_book(book, fl.sample() if fl is not None else 0)
            if wake_ns is not None:
                wake_ns.append(perf() - w0)
        return int(ts_recv[n - 1])
