"""Replays market data through the kernel and interleaves it with the engine's own timeline.

Three sources of work, handled in time order on one clock: market-data rows as we receive them
(local time), the same rows as the venue saw them (venue time, ``sim.venue_time``), and scheduled
events (orders reaching the venue, answers reaching us, timers). Rows run in compiled code
between scheduled events; at equal times a scheduled event goes first, then the venue's row,
then ours (``sim.kernel``).

The reader's batches are read once: each goes to the venue side first (which runs ahead of us by
the feed latency, and in ``data`` mode sorts rows by venue time) and is kept until the local side
has consumed it, so memory holds at most the largest feed latency's worth of rows beyond a batch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from engine.book import Book, BookSet
from engine.clock import SimClock
from engine.engine import Engine
from engine.events import Trade
from engine.timeline import NEVER, Timeline
from sim import kernel as K
from sim import kernel_state as KS
from sim.matching import F_COLS
from sim.venue import RestingOrders, dispatch_kernel_fills
from sim.venue_time import ConstantVenueTime, VenueChunk, VenueRows, VenueTime


def readonly(a: np.ndarray) -> np.ndarray:
    """``a`` as the kernel takes row arrays: read-only (a view when ``a`` is writable). numba
    compiles a function once per argument type, and read-only is part of the type: the reader
    hands out both kinds, so without this the kernel would compile (and cache) every mix."""
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v


def _row(a: np.ndarray) -> np.ndarray:
    """A row array as the kernel's state holds it: C-contiguous and read-only."""
    return readonly(a if a.flags.c_contiguous else np.ascontiguousarray(a))


_EMPTY64 = readonly(np.zeros(0, dtype=np.int64))
_EMPTY8 = readonly(np.zeros(0, dtype=np.int8))
_EMPTY32 = readonly(np.zeros(0, dtype=np.int32))
_EMPTYB = readonly(np.zeros(0, dtype=np.bool_))


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
        "warmup_rows",
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
        self.warmup_rows = 0  # rows before the window, replayed to rebuild the books
        self.wake_ns: list[int] | None = None


def replay_mode(venue_time: VenueTime | None) -> int:
    """``kernel.LOCAL`` without a venue, ``SHARED`` when the venue's clock reads ours (a constant
    feed latency of 0: one set of books serves both), ``DUAL`` otherwise."""
    if venue_time is None:
        return K.LOCAL
    if isinstance(venue_time, ConstantVenueTime) and venue_time.latency_ns == 0:
        return K.SHARED
    return K.DUAL


class ReplayDriver:
    def __init__(
        self,
        engine: Engine | None,
        books: BookSet,
        book_of_stream: list[Book],
        timeline: Timeline,
        clock: SimClock,
        resting: RestingOrders,
        venue_time: VenueTime | None = None,
        venue_books: BookSet | None = None,
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
        self.venue_time = venue_time
        self.mode = replay_mode(venue_time)
        if self.mode == K.DUAL and venue_books is None:
            raise ValueError("a venue on its own clock needs its own books")
        self.venue_books = venue_books if self.mode == K.DUAL else books
        n = len(book_of_stream)
        self.st = np.zeros((n, K.ST_COLS), dtype=np.int64)
        self.vst = np.zeros((n, K.VS_COLS), dtype=np.int64)
        if engine is not None:
            for i, b in enumerate(book_of_stream):
                key = (b.venue, b.symbol)
                self.st[i, K.ST_WAKE_BOOK] = engine.wants_book(key)
                self.st[i, K.ST_WAKE_TRADE] = 1 if engine.wants_trades(key) else 0
        self.fills = np.zeros((1024, F_COLS), dtype=np.int64)
        self.params = np.zeros(K.P_LEN, dtype=np.int64)
        self.params[K.P_QMODEL] = queue_model
        self.params[K.P_MODE] = self.mode
        self.power = float(queue_power)
        self.out = np.zeros(KS.OUT_LEN, dtype=np.int64)
        self.stats = ReplayStats()
        self.last_ts = 0
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

    def drain(self, until_ts: int) -> None:
        self.run_timeline_until(until_ts)
        if self.clock.ts < until_ts:
            self.clock.ts = until_ts

    def run(
        self,
        batches: Iterable[Any],
        on_progress: Callable[[int], None] | None = None,
        warmup_until: int | None = None,
        on_window: Callable[[int], None] | None = None,
    ) -> ReplayStats:
        """Replay ``batches``. Rows received before ``warmup_until`` rebuild the books only (no
        strategy sees them, no incident is raised for them); ``on_window(ts)`` is called where the
        window starts (the first row's time when there is no warm-up): the runner starts the
        engine there."""
        t0 = time.perf_counter()
        _Run(self, iter(batches), on_progress, warmup_until, on_window).go()
        self.stats.seconds = time.perf_counter() - t0
        return self.stats


class _Run:
    """One pass over the data: the two cursors' batches and the loop that feeds the kernel."""

    def __init__(
        self,
        d: ReplayDriver,
        src: Iterator[Any],
        on_progress: Callable[[int], None] | None,
        warmup_until: int | None = None,
        on_window: Callable[[int], None] | None = None,
    ) -> None:
        self.d = d
        self.src = src
        self.on_progress = on_progress
        self.warm_until = warmup_until
        self.on_window = on_window
        self.dual = d.mode == K.DUAL
        self.vrows = VenueRows(d.venue_time) if self.dual and d.venue_time is not None else None
        self.local: deque[Any] = deque()
        self.venue: deque[VenueChunk] = deque()
        self.src_done = False
        self.cb: Any = None  # the local batch being replayed, and its arrays as the kernel takes them
        self.la: tuple[np.ndarray, ...] = (_EMPTY64, _EMPTY8, _EMPTY8, _EMPTY64, _EMPTY64, _EMPTY32, _EMPTYB)
        self.va: tuple[np.ndarray, ...] = self.la
        self.lx: tuple[np.ndarray, ...] = (_EMPTY64, _EMPTY64)  # the local batch's ts_event and sequence
        self.li = self.ln = 0
        self.vi = self.vn = 0
        self.lend = False
        self.vend = not self.dual
        self.ks: KS.KernelState | None = None  # the kernel's arrays, once ``go`` starts

    def _pull(self) -> None:
        cb = next(self.src, None)
        while cb is not None and len(cb.ts_recv) == 0:
            cb = next(self.src, None)
        if cb is None:
            self.src_done = True
            if self.vrows is not None:
                self.venue.extend(self.vrows.finish())
            return
        self.local.append(cb)
        if self.vrows is not None:
            self.venue.extend(self.vrows.push(cb))

    def _next_local(self) -> None:
        if self.cb is not None:
            self.d.stats.rows += self.ln
            if self.warm_until is not None:
                self.d.stats.warmup_rows += int(np.searchsorted(self.cb.ts_recv, self.warm_until, "left"))
            self.d.last_ts = int(self.cb.ts_recv[-1])
            if self.on_progress is not None:
                self.on_progress(self.ln)
            self.cb = None
        while not self.local and not self.src_done:
            self._pull()
        if not self.local:
            self.lend = True
            self.li = self.ln = 0
            return
        cb = self.cb = self.local.popleft()
        stream = cb.stream if cb.stream.dtype == np.int32 else cb.stream.astype(np.int32)
        self.la = tuple(_row(a) for a in (cb.ts_recv, cb.kind, cb.side, cb.price, cb.size, stream, cb.batch_end))
        self.lx = (_row(cb.ts_event), _row(cb.sequence))
        self.li, self.ln = 0, len(cb.ts_recv)
        if self.ks is not None:
            self.ks = self._state()

    def _next_venue(self) -> None:
        while not self.venue and not self.src_done:
            self._pull()
        if not self.venue:
            self.vend = True
            self.vi = self.vn = 0
            return
        c = self.venue.popleft()
        self.va = tuple(_row(a) for a in (c.ts, c.kind, c.side, c.price, c.size, c.stream, c.batch_end))
        self.vi, self.vn = 0, len(c)
        if self.ks is not None:
            self.ks = self._state()

    def _state(self) -> KS.KernelState:
        d = self.d
        books, vbooks = d.books.arrays(), d.venue_books.arrays()
        return KS.new_state(*self.la, *self.lx, *books, d.st, *self.va, *vbooks, d.vst, d.resting.arr, d.fills)

    def _nxt(self) -> int:
        """The time of the next row either cursor holds (NEVER when neither holds one)."""
        ts_l = int(self.la[0][self.li]) if self.li < self.ln else NEVER
        ts_v = int(self.va[0][self.vi]) if self.vi < self.vn else NEVER
        return ts_l if ts_l < ts_v else ts_v

    def go(self) -> None:
        d = self.d
        engine = d.engine
        params = d.params
        out = d.out
        st = d.st
        tl = d.timeline
        next_ts = tl.next_ts
        clock = d.clock
        resting = d.resting
        stats = d.stats
        wake_ns = stats.wake_ns
        perf = time.perf_counter_ns
        run_state = KS.run_state
        power = d.power
        dual = self.dual
        self._next_local()
        if not self.vend:
            self._next_venue()
        rests = resting.arr
        self.ks = self._state()
        warming = self.warm_until is not None
        wakes = st[:, K.ST_WAKE_BOOK : K.ST_WAKE_TRADE + 1].copy()
        if warming:
            st[:, K.ST_WAKE_BOOK : K.ST_WAKE_TRADE + 1] = 0  # the books' history: nobody is woken
        elif self.ln:
            self._window(int(self.la[0][0]))
        # the common wakes (a book message or a trade a strategy listens to, nothing else) are
        # handled in this loop: this is where a strategy woken on every message spends its time
        fast = engine is not None and wake_ns is None
        books_of = d.book_of_stream
        vt = d.venue_time
        feed_latency = vt.feed_latency if vt is not None else None
        on_book = engine.on_book if engine is not None else None
        on_trade = engine.on_trade if engine is not None else None
        m_book, m_trade, m_need = K.M_BOOK, K.M_TRADE, K.M_LNEED | K.M_VNEED
        o_next, o_vnext, o_mask, o_stream = K.O_NEXT, K.O_VNEXT, K.O_MASK, K.O_STREAM
        x_nxt, x_ts, x_tse, x_seq, x_side, x_px, x_sz = (
            KS.X_NXT,
            KS.X_TS,
            KS.X_TS_EVENT,
            KS.X_SEQ,
            KS.X_SIDE,
            KS.X_PRICE,
            KS.X_SIZE,
        )
        x_bb = KS.X_BB
        nxt = self._nxt()
        while True:
            if self.li >= self.ln and not self.lend:
                self._next_local()
                nxt = self._nxt()
                continue
            if dual and self.vi >= self.vn and not self.vend:
                self._next_venue()
                nxt = self._nxt()
                continue
            if warming and nxt >= self.warm_until:  # type: ignore[operator]
                warming = False
                st[:, K.ST_WAKE_BOOK : K.ST_WAKE_TRADE + 1] = wakes
                self._end_warmup()
                continue
            if nxt == NEVER:
                break  # both cursors are done; ``drain`` handles what is still scheduled
            t_next = next_ts()
            if warming and self.warm_until < t_next:  # type: ignore[operator]
                t_next = self.warm_until  # type: ignore[assignment]
            if t_next <= nxt:
                self.run_timeline_until(nxt)
                continue
            if resting.arr is not rests:  # the order table grew
                rests = resting.arr
                self.ks = self._state()
            run_state(
                self.ks, params, power, out, self.li, self.ln, t_next, resting.n, self.vi, self.vn, self.lend, self.vend
            )
            o = out.tolist()
            self.li = o[o_next]
            self.vi = o[o_vnext]
            nxt = o[x_nxt]
            mask = o[o_mask]
            if mask == 0:
                continue
            if mask & m_need:
                mask &= ~m_need  # the loop's top fetches the next batch
                if mask == 0:
                    continue
            if fast and not warming:
                if mask == m_trade:
                    stats.wakes += 1
                    stats.trade_wakes += 1
                    t = o[x_ts]
                    if t > clock.ts:
                        clock.ts = t
                    book = books_of[o[o_stream]]
                    inst = book.instrument
                    px = o[x_px]
                    q = o[x_sz]
                    on_trade(
                        Trade(book.venue, book.symbol, o[x_tse], t, o[x_side], inst.price(px), inst.size(q), px, q)
                    )
                    continue
                if mask == m_book:
                    stats.wakes += 1
                    stats.book_wakes += 1
                    t = o[x_ts]
                    if t > clock.ts:
                        clock.ts = t
                    s = o[o_stream]
                    book = books_of[s]
                    book.best_bid_fixed, book.best_bid_size_fixed, book.best_ask_fixed, book.best_ask_size_fixed = o[
                        x_bb : x_bb + 4
                    ]
                    book.valid = True
                    book.ts_recv = t
                    ts_event = o[x_tse]
                    book.ts_event = ts_event
                    book.update_id = o[x_seq]
                    on_book(book, feed_latency(s, t, ts_event) if feed_latency is not None else 0)
                    continue
            if mask & (K.M_FULL | K.M_VFULL):
                if mask & K.M_FULL:
                    d.books.grow()
                if mask & K.M_VFULL and d.venue_books is not d.books:
                    d.venue_books.grow()
                self.ks = self._state()
                mask &= ~(K.M_FULL | K.M_VFULL)
                if mask == 0:
                    continue
            if warming:
                continue  # gaps, crossed books and bad rows of the history: the kernel's state says it
            self._wake(mask, engine, clock, resting, stats, wake_ns, perf, o)

    def run_timeline_until(self, ts: int) -> None:
        self.d.run_timeline_until(ts)

    def _window(self, ts: int) -> None:
        clock = self.d.clock
        if ts > clock.ts:
            clock.ts = ts
        if self.on_window is not None:
            self.on_window(ts)

    def _end_warmup(self) -> None:
        """The books stand as they did at the window's start: show that state to the engine's
        books, and make the first message of the window wake whoever listens."""
        d = self.d
        st = d.st
        for s, book in enumerate(d.book_of_stream):
            book.refresh_top()
            bb, ba = book.best_bid_fixed, book.best_ask_fixed
            book.valid = bool(st[s, K.ST_VALID]) and not (bb and ba and bb >= ba)
            st[s, K.ST_LAST_BID] = 0
            st[s, K.ST_LAST_ASK] = 0
        self._window(self.warm_until)  # type: ignore[arg-type]

    def _wake(
        self,
        mask: int,
        engine: Engine | None,
        clock: SimClock,
        resting: RestingOrders,
        stats: ReplayStats,
        wake_ns: list[int] | None,
        perf: Callable[[], int],
        o: list[int],
    ) -> None:
        d = self.d
        stats.wakes += 1
        w0 = perf() if wake_ns is not None else 0
        if mask & K.M_FILL:
            fill_ts = o[K.O_FILL_TS]
            if fill_ts > clock.ts:
                clock.ts = fill_ts
            stats.fill_wakes += 1
            dispatch_kernel_fills(resting, d.fills, o[K.O_NFILLS], fill_ts)
        if mask & ~K.M_FILL:
            self._local_wake(mask, engine, clock, stats, o)
        if wake_ns is not None:
            wake_ns.append(perf() - w0)

    def _local_wake(self, mask: int, engine: Engine | None, clock: SimClock, stats: ReplayStats, o: list[int]) -> None:
        d = self.d
        cb = self.cb
        row = o[K.O_ROW]
        s = o[K.O_STREAM]
        t = o[KS.X_TS]
        if t > clock.ts:
            clock.ts = t
        book = d.book_of_stream[s]
        if mask & K.M_BAD and engine is not None:
            stats.bad += 1
            engine.incident(
                t,
                book.venue,
                book.symbol,
                "bad_level",
                f"row price={int(cb.price[row])} size={int(cb.size[row])} seq={int(cb.sequence[row])}",
            )
        if mask & K.M_GAP:
            book.valid = False
            book.refresh_top()
            if engine is not None:
                engine.on_book_invalid(book, "sequence_gap")
                engine.incident(
                    t,
                    book.venue,
                    book.symbol,
                    "sequence_gap",
                    f"update chain broken in the recorded data before seq={int(cb.sequence[row])}; "
                    "book invalid until the next snapshot",
                )
        if mask & K.M_CROSSED:
            stats.crossed += 1
            book.valid = False
            book.refresh_top()
            if engine is not None:
                engine.on_book_invalid(book, "crossed_book")
                engine.incident(
                    t,
                    book.venue,
                    book.symbol,
                    "crossed_book",
                    f"bid={book.best_bid_fixed} ask={book.best_ask_fixed} seq={int(cb.sequence[row])}",
                )
        if mask & K.M_TRADE and engine is not None:
            stats.trade_wakes += 1
            inst = book.instrument
            px = int(cb.price[row])
            q = int(cb.size[row])
            engine.on_trade(
                Trade(
                    book.venue,
                    book.symbol,
                    int(cb.ts_event[row]),
                    t,
                    int(cb.side[row]),
                    inst.price(px),
                    inst.size(q),
                    px,
                    q,
                )
            )
        if mask & K.M_BOOK:
            stats.book_wakes += 1
            book.best_bid_fixed, book.best_bid_size_fixed, book.best_ask_fixed, book.best_ask_size_fixed = o[
                KS.X_BB : KS.X_BB + 4
            ]
            book.valid = True
            book.ts_recv = t
            ts_event = int(cb.ts_event[row])
            book.ts_event = ts_event
            book.update_id = int(cb.sequence[row])
            if engine is not None:
                vt = d.venue_time
                engine.on_book(book, vt.feed_latency(s, t, ts_event) if vt is not None else 0)
