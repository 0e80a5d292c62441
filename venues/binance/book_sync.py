"""Binance spot's documented local order book procedure, for one symbol.

1. Buffer diff-depth events; ask for a REST snapshot.
2. Drop buffered events with ``u <= lastUpdateId``; the first one applied must straddle the
   snapshot (``U <= lastUpdateId + 1 <= u``). If even the oldest buffered event starts after
   ``lastUpdateId + 1`` the snapshot is too old: fetch another.
3. From then on every event must continue the chain, ``U == previous u + 1``; anything else is a
   sequence gap: logged as ``Market data sequence gap``, counted, raised as an incident, the book
   marked invalid and rebuilt from a new snapshot.

Spot diff depth has no ``pu`` field (that is futures), so continuity is checked on ``U``.
The book is shown to the engine (``on_book``) only after a whole message is applied, and only
while it is valid: in sync, not crossed and not stale.

``on_levels(book, bids, asks, snapshot)``, when set, sees the (price, size) rows of every snapshot
and diff right after they were applied and before the book is shown: paper trading runs its
simulated venue's queues on exactly what the book got, on the same fast path live trading uses.
Each side of a message is applied with one compiled call (``Book.apply_levels`` on the decoder's
int64 arrays).

``on_frame`` is the live feed's fast path for the common case, a synced book receiving the next
message: the frame's bytes go to one compiled call (``depth_apply.apply_depth``) that checks the
chain, applies both sides and reads the top of book. Anything else is left to ``on_diff``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import numpy as np

from engine.book import Book
from engine.events import Incident
from engine.logs import get_logger
from engine.venue.feed import OnBookInvalid, OnLevels
from venues.binance.decode import DepthDiff, Snapshot
from venues.binance.depth_apply import (
    APPLIED,
    FULL_STOP,
    R_NA,
    R_NB,
    R_ROW,
    R_SIDE,
    R_TOP,
    R_U,
    RES_LEN,
    apply_depth,
    compiled_apply,
    scratch_for,
)
from venues.binance.numbers import SCALE

MS = 1_000_000
_SCRATCH_BYTES = 64 * 1024  # a 100 ms diff is a few kB; larger frames get a larger scratch

IDLE = "idle"  # nothing received since start / reset
BUFFERING = "buffering"  # waiting for a snapshot, diffs buffered
SYNCED = "synced"


class BookSync:
    """Keeps ``book`` in sync with Binance. ``request_snapshot(generation)`` must (eventually) call
    ``on_snapshot(snapshot, generation)``; answers for an older generation are ignored."""

    def __init__(
        self,
        book: Book,
        request_snapshot: Callable[[int], None],
        on_book: Callable[[Book], None],
        on_incident: Callable[[Incident], None],
        stale_after_ns: int = 5_000_000_000,
        max_buffer: int = 10_000,
        logger: logging.Logger | None = None,
        on_invalid: OnBookInvalid | None = None,
    ) -> None:
        self.book = book
        #: told once each time the book stops being valid (``engine.venue.feed``)
        self._on_invalid = on_invalid
        self.venue = book.venue
        self.symbol = book.symbol
        self._request_snapshot = request_snapshot
        self._on_book = on_book
        self._on_incident = on_incident
        self.stale_after_ns = stale_after_ns
        self.log = logger or get_logger("market_data")
        self.state = IDLE
        self.generation = 0
        self._buffer: deque[DepthDiff] = deque(maxlen=max_buffer)
        self.stale = False
        self.last_recv_ns = 0
        self._resync_started_ns = 0
        self._resyncing = False
        self._bridging = False
        # counters (metrics, tests)
        self.gaps = 0
        self.resyncs = 0
        self.snapshots = 0
        self.applied = 0
        self.dropped = 0
        self.crossed = 0
        self.stale_events = 0
        #: called with the levels of each snapshot or diff once applied (``engine.venue.OnLevels``)
        self.on_levels: OnLevels | None = None
        self.fast_applied = 0  # messages the fast path applied (``on_frame``)
        self.scale = SCALE
        self._scratch = scratch_for(_SCRATCH_BYTES)
        self._scratch_bytes = _SCRATCH_BYTES
        self._res = np.zeros(RES_LEN, dtype=np.int64)
        self._apply_frame: Callable[..., int] = apply_depth  # its compiled entry after the first call
        # ``warm``: the last frame the fast path applied, and a scratch copy of the book's arrays
        self._warm_src: tuple[bytes, int, int] | None = None
        self._warm_arrays: tuple[np.ndarray, ...] | None = None
        self._warm_res = np.zeros(RES_LEN, dtype=np.int64)
        self._warm_uses = 0

    # --- the fast path -----------------------------------------------------------------------
    def on_frame(self, frame: bytes, lo: int, hi: int, ts_recv: int) -> bool:
        """``frame[lo:hi]`` is a depthUpdate payload. Apply it if the book is synced and it is the
        next message, in one compiled call; False (nothing done, nothing counted) otherwise: the
        caller decodes the frame and hands it to ``on_diff``."""
        if self.state is not SYNCED or self._bridging:
            return False
        if hi - lo > self._scratch_bytes:
            self._scratch = scratch_for(hi - lo)
            self._scratch_bytes = hi - lo
        book = self.book
        bs = book.books
        res = self._res
        apply = self._apply_frame if type(frame) is bytes else apply_depth  # the entry takes bytes only
        status = apply(
            frame, lo, hi, self._scratch, self.scale, bs.lad, bs.keys, bs.sizes, bs.cnt, bs.dead, bs.meta,
            book.idx, book.update_id, res,
        )  # fmt: skip
        if apply is apply_depth:
            self._apply_frame = compiled_apply((
                frame, lo, hi, self._scratch, self.scale, bs.lad, bs.keys, bs.sizes, bs.cnt, bs.dead, bs.meta,
                book.idx, book.update_id, res,
            ))  # fmt: skip
        if status != APPLIED:
            if status != FULL_STOP:
                return False
            self._finish_full()
        ev, _first, last, nb_, na, _side, _row, bb, bbs, ba, bas = res.tolist()
        self._warm_src = (frame, lo, hi)
        self.last_recv_ns = ts_recv
        book.best_bid_fixed = bb
        book.best_bid_size_fixed = bbs
        book.best_ask_fixed = ba
        book.best_ask_size_fixed = bas
        self.fast_applied += 1
        on_levels = self.on_levels
        if on_levels is not None:
            scratch = self._scratch
            on_levels(book, scratch[:nb_], scratch[nb_ : nb_ + na], False)
        self._applied(last, ev * MS, ts_recv)
        return True

    def warm(self, refresh_every: int = 4096) -> bool:
        """Run the compiled apply of the last diff the fast path applied once more, on a scratch
        copy of the book's arrays (the book itself is not touched): for the path warmer
        (``engine.warm``), so that the next diff finds this code in the caches. A diff sets
        absolute quantities, so applying it again to the copy changes nothing there either; the
        copy is taken again every ``refresh_every`` calls, and whenever the book's overflow grew."""
        src = self._warm_src
        if src is None or self.state is not SYNCED:
            return False
        bs = self.book.books
        arrays = self._warm_arrays
        self._warm_uses += 1
        if arrays is None or arrays[1].shape != bs.keys.shape or self._warm_uses >= refresh_every:
            arrays = self._warm_arrays = tuple(a.copy() for a in bs.arrays())
            self._warm_uses = 0
        frame, lo, hi = src
        if hi - lo > self._scratch_bytes:
            return False
        lad, keys, sizes, cnt, dead, meta = arrays
        prev = int(self._res[R_U]) - 1  # the chain check passes: the diff is applied as before
        self._apply_frame(
            frame, lo, hi, self._scratch, self.scale, lad, keys, sizes, cnt, dead, meta,
            self.book.idx, prev, self._warm_res,
        )  # fmt: skip
        return True

    def _finish_full(self) -> None:
        """The overflow filled up mid-message: grow it and apply the rest of the scratch rows."""
        res = self._res
        nb_, na, side, row = int(res[R_NB]), int(res[R_NA]), int(res[R_SIDE]), int(res[R_ROW])
        book = self.book
        book.books.grow()
        scratch = self._scratch
        if side == 0:
            book.apply_levels(1, scratch[row:nb_])
            book.apply_levels(-1, scratch[nb_ : nb_ + na])
        else:
            book.apply_levels(-1, scratch[row : nb_ + na])
        book.refresh_top()
        top = (book.best_bid_fixed, book.best_bid_size_fixed, book.best_ask_fixed, book.best_ask_size_fixed)
        res[R_TOP : R_TOP + 4] = top

    # --- input -------------------------------------------------------------------------------
    def on_diff(self, d: DepthDiff) -> None:
        self.last_recv_ns = d.ts_recv
        if self.state is SYNCED:
            book = self.book
            if d.last_id <= book.update_id:
                self.dropped += 1
                return
            if d.first_id != book.update_id + 1 and not (self._bridging and d.first_id <= book.update_id + 1):
                self._gap(d)
                return
            self._bridging = False
            self._apply(d)
            return
        self._buffer.append(d)
        if self.state is IDLE:
            self._start_resync(d.ts_recv)

    def on_snapshot(self, snap: Snapshot, generation: int) -> None:
        """Apply a REST snapshot, then the buffered diffs that follow it."""
        if generation != self.generation or self.state is not BUFFERING:
            return
        self.snapshots += 1
        book = self.book
        lid = snap.last_update_id
        buf = self._buffer
        while buf and buf[0].last_id <= lid:
            buf.popleft()
            self.dropped += 1
        if buf and buf[0].first_id > lid + 1:
            self.log.info(
                f"orderbook snapshot for binance {self.symbol}: lastUpdateId={lid} is older than the buffered diffs "
                f"(first U={buf[0].first_id}); fetching another"
            )
            self._ask_snapshot()
            return
        book.clear()
        bids, asks = _as_levels(snap.bids), _as_levels(snap.asks)
        book.apply_levels(1, bids)
        book.apply_levels(-1, asks)
        book.refresh_top()
        if self.on_levels is not None:
            self.on_levels(book, bids, asks, True)
        book.update_id = lid
        book.ts_event = 0
        book.ts_recv = snap.ts_recv
        book.valid = False
        self.state = SYNCED
        # the first event applied may straddle lastUpdateId + 1; it is not served before that event
        self._bridging = True
        pending = list(buf)
        buf.clear()
        for d in pending:
            if self.state is SYNCED:
                self.on_diff(d)
            else:  # a gap inside the buffer restarted the procedure: keep the rest for the next try
                self._buffer.append(d)
        if self.state is SYNCED:
            self.log.info(
                f"orderbook synced venue=binance symbol={self.symbol} at update id {book.update_id} "
                f"(snapshot {lid}, {len(pending)} buffered diffs)"
            )
            if self._resyncing:
                self._resyncing = False
                took_ms = max((book.ts_recv or snap.ts_recv) - self._resync_started_ns, 0) / 1e6
                self._incident(
                    book.ts_recv or snap.ts_recv,
                    "resync",
                    f"book rebuilt at update id {book.update_id} in {took_ms:.0f} ms",
                    took_ms,
                )

    def reset(self, reason: str) -> None:
        """Forget everything (disconnect): the book is invalid until a new snapshot."""
        self.generation += 1
        self._buffer.clear()
        self.state = IDLE
        self._bridging = False
        self.book.clear()
        self.book.update_id = 0
        self.log.info(f"orderbook reset venue=binance symbol={self.symbol} ({reason})")

    def resync(self, reason: str, ts: int) -> None:
        """Operator/API request: rebuild from a fresh snapshot."""
        self.book.valid = False
        self.log.info(f"orderbook resync requested venue=binance symbol={self.symbol} ({reason})")
        self._buffer.clear()
        self._start_resync(ts)

    def check_stale(self, now_ns: int) -> bool:
        """Called periodically; marks the book stale (invalid) when no diff came for too long."""
        if self.stale or self.last_recv_ns == 0:
            return self.stale
        silent = now_ns - self.last_recv_ns
        if silent > self.stale_after_ns:
            self.stale = True
            self.stale_events += 1
            self.book.valid = False
            secs = silent / 1e9
            self.log.warning(
                f"Stale market data venue={self.venue} symbol={self.symbol}: no update for {secs:.1f}s "
                f"(limit {self.stale_after_ns / 1e9:.1f}s); book invalid until data flows"
            )
            self._incident(now_ns, "stale_data", f"no order book update for {secs:.1f}s", secs)
        return self.stale

    # --- internals ---------------------------------------------------------------------------
    def _apply(self, d: DepthDiff) -> None:
        book = self.book
        if len(d.bids):
            book.apply_levels(1, d.bids)
        if len(d.asks):
            book.apply_levels(-1, d.asks)
        book.refresh_top()
        if self.on_levels is not None:
            self.on_levels(book, _as_levels(d.bids), _as_levels(d.asks), False)
        self._applied(d.last_id, d.ts_event, d.ts_recv)

    def _applied(self, last_id: int, ts_event: int, ts_recv: int) -> None:
        """A whole message is in the book (and its top read): serve it unless it crossed."""
        book = self.book
        book.update_id = last_id
        book.ts_event = ts_event
        book.ts_recv = ts_recv
        self.applied += 1
        if self.stale:
            self.stale = False
            self.log.info(f"Market data resumed venue={self.venue} symbol={self.symbol} at update id {last_id}")
        bb = book.best_bid_fixed
        if bb and bb >= book.best_ask_fixed and book.best_ask_fixed:
            self.crossed += 1
            book.valid = False
            detail = f"bid {bb} >= ask {book.best_ask_fixed} at update id {last_id}"
            self.log.warning(f"Crossed order book venue={self.venue} symbol={self.symbol}: {detail}; resyncing")
            self._incident(ts_recv, "crossed_book", detail)
            self._buffer.clear()
            self._start_resync(ts_recv)
            return
        book.valid = True
        self._on_book(book)

    def _gap(self, d: DepthDiff) -> None:
        book = self.book
        expected = book.update_id + 1
        self.gaps += 1
        book.valid = False
        detail = f"expected={expected} got={d.first_id}"
        self.log.warning(
            f"Market data sequence gap venue={self.venue} symbol={self.symbol} {detail} (u={d.last_id}); resyncing"
        )
        self._incident(d.ts_recv, "sequence_gap", detail, float(d.first_id - expected))
        self._buffer.clear()
        self._buffer.append(d)
        self._start_resync(d.ts_recv)

    def _start_resync(self, ts: int) -> None:
        if self.state is not IDLE:
            self.resyncs += 1
            self._resyncing = True
        self._resync_started_ns = ts
        self.book.valid = False
        self.state = BUFFERING
        self._ask_snapshot()

    def _ask_snapshot(self) -> None:
        self.state = BUFFERING
        self.generation += 1
        self._request_snapshot(self.generation)

    def _incident(self, ts: int, kind: str, detail: str, value: float = 0.0) -> None:
        self._on_incident(Incident(ts, self.venue, self.symbol, kind, detail, value))


def _as_levels(levels: object) -> np.ndarray:
    """Snapshots built by hand (tests, operator tools) may carry lists of pairs."""
    if isinstance(levels, np.ndarray) and levels.dtype == np.int64 and levels.ndim == 2:
        return levels
    arr = np.asarray(levels, dtype=np.int64)
    return arr.reshape(-1, 2)
