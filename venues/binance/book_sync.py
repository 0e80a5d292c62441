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
while it is valid: in sync, not crossed and not stale. ``on_invalid(book, reason)`` is told once
each time a valid book stops being valid, before the incident and log line of that moment
(``sequence_gap``, ``crossed_book``, ``stale_data``, ``disconnect``, ``resync``, ``id_jump``,
``bad_level``, ``decode_error``).

Integrity (what a venue never sends is refused, never applied, and the book is rebuilt):

* *Implausible ids* (incident ``id_jump``; ``max_id_jump``, the config's ``max_update_id_jump``):
  a diff whose ``u - U`` exceeds the bound; a diff starting more than the bound past the book's
  id (a gap, but the diff is not kept for the resync); a diff ending more than the bound *behind*
  the book's id (the book's id is wrong: every later diff would be "old" and the book would
  freeze); a diff that overlaps the last applied message without being it (two messages can
  not share ids: the one applied was wrong); while buffering, a diff that does not follow the
  buffered ones within the bound (the buffer restarts from it: the latest wins); a snapshot whose
  ``lastUpdateId`` is more than the bound away from the latest buffered diff (refused, fetched
  again). Real BTCUSDT data: at most 1,465 ids in one 100 ms message, 500-900 ids/s; the
  default bound, 10**6, is about 700 times the largest message.
* *Bad levels* (incident ``bad_level``): a price <= 0 or a size < 0 in a diff or a snapshot.
* *Lost messages* (``lost``): after a depth frame that did not decode the book is invalid until the
  next diff shows whether the chain holds (then it is shown again) or has a hole (a gap).

Otherwise the book is invalid until a snapshot rebuilt it (a diff refused while buffering empties
the buffer: nothing buffered before the hole can bridge it). Staleness counts from the
last *applied* message: diffs that are dropped or refused do not keep a book fresh, and a stale
book that keeps receiving diffs none of which applies is rebuilt.

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
    R_MAXJ,
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
from venues.binance.numbers import MAX_WIRE, SCALE, bad_level
from venues.common.book_sync import invalidate

MS = 1_000_000
#: the default ``max_id_jump``: about 700 times the largest message of the real BTCUSDT capture
MAX_ID_JUMP = 1_000_000
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
        max_id_jump: int = MAX_ID_JUMP,
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
        #: receipt time of the last *applied* message: staleness counts from here
        self.last_recv_ns = 0
        self._last_drop_ns = 0  # receipt time of the last diff dropped as old
        #: ``U`` of the last applied message (``lastUpdateId + 1`` right after a snapshot)
        self._last_first = 0
        self.max_id_jump = max_id_jump
        self._resync_started_ns = 0
        self._resyncing = False
        self._bridging = False
        # counters (metrics, tests)
        self.gaps = 0
        self.resyncs = 0
        self.snapshots = 0
        self.snapshots_applied = 0  # snapshots the book was rebuilt from
        self.applied = 0
        self.dropped = 0
        self.crossed = 0
        self.stale_events = 0
        self.id_jumps = 0
        self.bad_levels = 0
        self.lost_messages = 0
        #: called with the levels of each snapshot or diff once applied (``engine.venue.OnLevels``)
        self.on_levels: OnLevels | None = None
        self.fast_applied = 0  # messages the fast path applied (``on_frame``)
        self.scale = SCALE
        self._scratch = scratch_for(_SCRATCH_BYTES)
        self._scratch_bytes = _SCRATCH_BYTES
        self._res = np.zeros(RES_LEN, dtype=np.int64)
        self._res[R_MAXJ] = max_id_jump
        self._apply_frame: Callable[..., int] = apply_depth  # its compiled entry after the first call
        # ``warm``: the last frame the fast path applied, and a scratch copy of the book's arrays
        self._warm_src: tuple[bytes, int, int] | None = None
        self._warm_arrays: tuple[np.ndarray, ...] | None = None
        self._warm_res = np.zeros(RES_LEN, dtype=np.int64)
        self._warm_res[R_MAXJ] = max_id_jump
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
        ev, first, last, nb_, na, _side, _row, bb, bbs, ba, bas, _maxj = res.tolist()
        self._warm_src = (frame, lo, hi)
        book.best_bid_fixed = bb
        book.best_bid_size_fixed = bbs
        book.best_ask_fixed = ba
        book.best_ask_size_fixed = bas
        self.fast_applied += 1
        on_levels = self.on_levels
        if on_levels is not None:
            scratch = self._scratch
            on_levels(book, scratch[:nb_], scratch[nb_ : nb_ + na], False)
        self._applied(first, last, ev * MS, ts_recv)
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
        first, last = d.first_id, d.last_id
        maxj = self.max_id_jump
        if last < first or last - first > maxj:
            self._refuse(d, "id_jump", f"U={first} u={last}: a message of {last - first + 1} ids (limit {maxj})")
            return
        bad = bad_level(d.bids)
        side = "bid"
        if bad is None:
            bad = bad_level(d.asks)
            side = "ask"
        if bad is not None:
            self._refuse(d, "bad_level", f"{side} level price={bad[0]} size={bad[1]} at u={last}")
            return
        if self.state is SYNCED:
            book = self.book
            uid = book.update_id
            if last <= uid:
                lf = self._last_first
                if uid - last > maxj:
                    self._refuse(d, "id_jump", f"u={last} is {uid - last} ids behind the book's {uid} (limit {maxj})")
                elif not self._bridging and last >= lf and not (first == lf and last == uid):
                    self._refuse(d, "id_jump", f"U={first} u={last} overlaps the last applied message [{lf}, {uid}]")
                else:  # a message the book already holds (a duplicate, or one the snapshot covers)
                    self.dropped += 1
                    self._last_drop_ns = d.ts_recv
                return
            if first != uid + 1 and not (self._bridging and first <= uid + 1):
                if first - uid - 1 > maxj:
                    ahead = first - uid - 1
                    self._refuse(d, "id_jump", f"U={first} is {ahead} ids past the book's {uid} (limit {maxj})")
                else:
                    self._gap(d)
                return
            self._bridging = False
            self._apply(d)
            return
        buf = self._buffer
        if buf:
            tail = buf[-1].last_id
            if abs(first - tail - 1) > maxj:
                # one of the two is wrong; the latest wins (a wrong buffered diff is flushed by the
                # next good one, and a wrong new one by the good one after it)
                self._jump_incident(
                    d.ts_recv, f"U={first} does not follow the buffered u={tail} (limit {maxj}); buffer restarted"
                )
                self.dropped += len(buf)
                buf.clear()
        buf.append(d)
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
        ts = snap.ts_recv
        try:
            bids, asks = _as_levels(snap.bids), _as_levels(snap.asks)
        except (ValueError, TypeError, OverflowError) as exc:  # a snapshot built by hand, not decoded
            self._snapshot_refused(ts, "bad_level", f"levels that are not (price, size) integers: {exc}")
            return
        if not 0 <= lid <= MAX_WIRE or (buf and abs(lid - buf[-1].last_id) > self.max_id_jump):
            near = f"the buffered diffs (u={buf[-1].last_id})" if buf else "[0, 2**62]"
            self.id_jumps += 1
            self._snapshot_refused(ts, "id_jump", f"snapshot lastUpdateId={lid} is implausibly far from {near}")
            return
        bad = bad_level(bids)
        if bad is None:
            bad = bad_level(asks)
        if bad is not None:
            self.bad_levels += 1
            self._snapshot_refused(ts, "bad_level", f"snapshot level price={bad[0]} size={bad[1]}")
            return
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
        book.apply_levels(1, bids)
        book.apply_levels(-1, asks)
        book.refresh_top()
        self.snapshots_applied += 1
        if self.on_levels is not None:
            self.on_levels(book, bids, asks, True)
        book.update_id = lid
        book.ts_event = 0
        book.ts_recv = ts
        book.valid = False
        self.state = SYNCED
        self._last_first = lid + 1
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
                took_ms = max((book.ts_recv or ts) - self._resync_started_ns, 0) / 1e6
                self._incident(
                    book.ts_recv or ts,
                    "resync",
                    f"book rebuilt at update id {book.update_id} in {took_ms:.0f} ms",
                    took_ms,
                )

    def reset(self, reason: str, notify: bool = True) -> None:
        """Forget everything (disconnect): the book is invalid until a new snapshot. ``notify=False``
        for a deliberate stop (the feed's own close at the end of a session): not a market-data
        failure, so ``on_invalid`` is not told (the session's stop decides about resting orders)."""
        if notify:
            self._invalidate("disconnect")
        self.generation += 1
        self._buffer.clear()
        self.state = IDLE
        self._bridging = False
        self.book.clear()
        self.book.update_id = 0
        self.log.info(f"orderbook reset venue=binance symbol={self.symbol} ({reason})")

    def resync(self, reason: str, ts: int) -> None:
        """Operator/API request: rebuild from a fresh snapshot."""
        self._invalidate("resync")
        self.log.info(f"orderbook resync requested venue=binance symbol={self.symbol} ({reason})")
        self._buffer.clear()
        self._start_resync(ts)

    def lost(self, ts: int, why: str = "a depth message did not decode") -> None:
        """A frame of this book's depth stream did not decode: a message may be lost. A synced book
        stops being valid at once (quotes are pulled now, not at the next diff); the next diff
        decides: if it continues the chain nothing was lost and the book is shown again, otherwise
        it is a gap and the book is rebuilt. While buffering, the snapshot procedure's own chain
        checks catch a hole."""
        self.lost_messages += 1
        if self.state is SYNCED and self.book.valid:
            self._invalidate("decode_error")
            self.log.warning(
                f"Market data message lost venue={self.venue} symbol={self.symbol} after update id "
                f"{self.book.update_id} ({why}); book invalid until the next message shows the chain"
            )

    def check_stale(self, now_ns: int) -> bool:
        """Called periodically; marks the book stale (invalid) when no message was applied for too
        long. When diffs keep coming but none applies, the book cannot recover by itself: rebuilt."""
        if self.stale or self.last_recv_ns == 0:
            return self.stale
        silent = now_ns - self.last_recv_ns
        if silent > self.stale_after_ns:
            self.stale = True
            self.stale_events += 1
            self._invalidate("stale_data")
            secs = silent / 1e9
            self.log.warning(
                f"Stale market data venue={self.venue} symbol={self.symbol}: no update for {secs:.1f}s "
                f"(limit {self.stale_after_ns / 1e9:.1f}s); book invalid until data flows"
            )
            self._incident(now_ns, "stale_data", f"no order book update for {secs:.1f}s", secs)
            if self.state is SYNCED and self._last_drop_ns > self.last_recv_ns:
                self.log.warning(
                    f"orderbook venue=binance symbol={self.symbol}: diffs arrive but none continues the book "
                    f"at update id {self.book.update_id}; resyncing"
                )
                self._buffer.clear()
                self._start_resync(now_ns)
        return self.stale

    # --- internals ---------------------------------------------------------------------------
    def _invalidate(self, reason: str) -> None:
        """The book stops being valid: ``on_invalid`` once per valid -> invalid transition."""
        invalidate(self.book, self._on_invalid, self.log, self.venue, self.symbol, reason)

    def _refuse(self, d: DepthDiff, kind: str, detail: str) -> None:
        """A diff no venue sends (``id_jump``, ``bad_level``): never applied, never buffered. The
        message it stood for is lost, so the book is rebuilt (a synced one from a new snapshot; a
        buffer is dropped, as it cannot bridge the hole)."""
        if kind == "id_jump":
            self.id_jumps += 1
        else:
            self.bad_levels += 1
        synced = self.state is SYNCED
        if synced:
            self._invalidate(kind)
        what = "Implausible update id" if kind == "id_jump" else "Bad order book level"
        self.log.warning(
            f"{what} venue={self.venue} symbol={self.symbol}: {detail}; message refused"
            + ("; resyncing" if synced else "")
        )
        self._incident(d.ts_recv, kind, detail)
        self.dropped += len(self._buffer)
        self._buffer.clear()
        if synced:
            self._start_resync(d.ts_recv)

    def _jump_incident(self, ts: int, detail: str) -> None:
        self.id_jumps += 1
        self.log.warning(f"Implausible update id venue={self.venue} symbol={self.symbol}: {detail}")
        self._incident(ts, "id_jump", detail)

    def _snapshot_refused(self, ts: int, kind: str, detail: str) -> None:
        self.log.warning(
            f"Order book snapshot refused venue={self.venue} symbol={self.symbol}: {detail}; fetching another"
        )
        self._incident(ts, kind, detail)
        self._ask_snapshot()

    def _apply(self, d: DepthDiff) -> None:
        book = self.book
        if len(d.bids):
            book.apply_levels(1, d.bids)
        if len(d.asks):
            book.apply_levels(-1, d.asks)
        book.refresh_top()
        if self.on_levels is not None:
            self.on_levels(book, _as_levels(d.bids), _as_levels(d.asks), False)
        self._applied(d.first_id, d.last_id, d.ts_event, d.ts_recv)

    def _applied(self, first_id: int, last_id: int, ts_event: int, ts_recv: int) -> None:
        """A whole message is in the book (and its top read): serve it unless it crossed."""
        book = self.book
        book.update_id = last_id
        book.ts_event = ts_event
        book.ts_recv = ts_recv
        self._last_first = first_id
        self.last_recv_ns = ts_recv
        self.applied += 1
        if self.stale:
            self.stale = False
            self.log.info(f"Market data resumed venue={self.venue} symbol={self.symbol} at update id {last_id}")
        bb = book.best_bid_fixed
        if bb and bb >= book.best_ask_fixed and book.best_ask_fixed:
            self.crossed += 1
            self._invalidate("crossed_book")
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
        self._invalidate("sequence_gap")
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
        self._invalidate("resync")
        self._bridging = False
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
