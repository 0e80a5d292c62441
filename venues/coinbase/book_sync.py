"""Coinbase Advanced Trade's level2 book for one product, and the connection's sequence check.

Coinbase's rules (venues.md §2.2), which differ from Binance's:

* ``sequence_num`` is **one counter per connection, across every channel** (snapshot, acks,
  heartbeats, trades are numbered 0, 1, 2, ... on one socket). ``SequenceCheck`` follows it: any
  number but the previous + 1 means a message was dropped (higher) or came out of order (lower),
  and since the lost message may have been any product's level2 update, **every** book of the
  connection is out of sync: each becomes invalid (``sequence_gap``, logged ``Market data
  sequence gap``) and the feed resubscribes ``level2`` for a fresh snapshot (no replay exists).
* A ``snapshot`` event replaces the book; ``update`` events set each level's new size
  (``new_quantity``; 0 removes it). Updates before the first snapshot of a subscription are dropped.
* Silence is the other way to lose data unnoticed: the ``heartbeats`` channel sends a frame every
  second, so a connection that brought nothing for ``stale_after_ns`` makes every book stale
  (invalid, ``stale_data``); the feed's watchdog reconnects after the longer heartbeat timeout.
  A book that went stale without a sequence gap is shown again with the next frame: nothing was
  lost, the sequence proves it.

A book is shown (``on_book``) only after a whole message is applied and only while it is valid:
synced, not crossed, not stale. ``on_invalid(book, reason)`` comes once per valid -> invalid
transition, before the incident and the log line of that moment. A level with a price <= 0 or a
size < 0 is refused (``bad_level``) and the book is rebuilt, as is a crossed book
(``crossed_book``). ``on_levels`` (paper trading's simulated venue) sees every applied message's
rows before the book is shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from engine.book import Book
from engine.events import Incident
from engine.logs import get_logger
from engine.messages import MARKET_DATA_SEQUENCE_GAP
from engine.venue.feed import OnBookInvalid, OnLevels
from venues.coinbase.decode import L2Message
from venues.common.book_sync import invalidate

IDLE = "idle"  # not subscribed
SUBSCRIBING = "subscribing"  # subscribed, waiting for the snapshot
SYNCED = "synced"


class SequenceCheck:
    """The per-connection ``sequence_num`` chain. ``check(seq)`` returns 0 when ``seq`` follows,
    else ``seq - expected`` (negative: out of order). A new connection starts a new chain."""

    def __init__(self) -> None:
        self.last = -1
        self.gaps = 0

    def reset(self) -> None:
        self.last = -1

    def check(self, seq: int) -> int:
        last = self.last
        self.last = seq if seq > last else last
        if last < 0 or seq == last + 1:
            return 0
        self.gaps += 1
        return seq - (last + 1)


class BookSync:
    """Keeps ``book`` in sync from level2 messages. ``request_resubscribe(symbol)`` must (eventually)
    lead to a new snapshot message for the product."""

    def __init__(
        self,
        book: Book,
        request_resubscribe: Callable[[str], None],
        on_book: Callable[[Book], None],
        on_incident: Callable[[Incident], None],
        stale_after_ns: int = 3_000_000_000,
        logger: logging.Logger | None = None,
        on_invalid: OnBookInvalid | None = None,
    ) -> None:
        self.book = book
        self.venue = book.venue
        self.symbol = book.symbol
        self._request_resubscribe = request_resubscribe
        self._on_book = on_book
        self._on_incident = on_incident
        self._on_invalid = on_invalid
        self.on_levels: OnLevels | None = None
        self.stale_after_ns = stale_after_ns
        self.log = logger or get_logger("market_data")
        self.state = IDLE
        self.stale = False
        self.last_recv_ns = 0  # receipt time of the last applied message
        self.gaps = 0
        self.resyncs = 0
        self.applied = 0
        self.dropped = 0  # updates before a snapshot
        self.crossed = 0
        self.bad_levels = 0

    # --- messages ---------------------------------------------------------------------------------
    def subscribing(self) -> None:
        """A (re)subscription was sent: wait for its snapshot."""
        self.state = SUBSCRIBING

    def on_message(self, m: L2Message) -> None:
        book = self.book
        if m.snapshot:
            if _bad(m.bids) or _bad(m.asks):
                self._refuse(m, "snapshot")
                return
            book.clear()
            if len(m.bids):
                book.apply_levels(1, m.bids)
            if len(m.asks):
                book.apply_levels(-1, m.asks)
            book.refresh_top()
            if self.state is not SYNCED:
                self.log.info(f"Order book synced venue={self.venue} symbol={self.symbol} at sequence {m.seq}")
            self.state = SYNCED
            self._applied(m, True)
            return
        if self.state is not SYNCED:
            self.dropped += 1
            return
        if _bad(m.bids) or _bad(m.asks):
            self._refuse(m, "update")
            return
        if len(m.bids):
            book.apply_levels(1, m.bids)
        if len(m.asks):
            book.apply_levels(-1, m.asks)
        book.refresh_top()
        self._applied(m, False)

    def _applied(self, m: L2Message, snapshot: bool) -> None:
        book = self.book
        book.update_id = m.seq
        book.ts_event = m.ts_event
        book.ts_recv = m.ts_recv
        self.last_recv_ns = m.ts_recv
        self.applied += 1
        self.stale = False
        if self.on_levels is not None:
            self.on_levels(book, m.bids, m.asks, snapshot)
        bb, ba = book.best_bid_fixed, book.best_ask_fixed
        if bb and ba and bb >= ba:
            self.crossed += 1
            self._invalidate("crossed_book")
            detail = f"bid {bb} >= ask {ba} at sequence {m.seq}"
            self.log.warning(f"Crossed order book venue={self.venue} symbol={self.symbol}: {detail}; resyncing")
            self._incident(m.ts_recv, "crossed_book", detail)
            self.resync("crossed book", m.ts_recv, notify=False)
            return
        book.valid = True
        self._on_book(book)

    # --- the connection's events ------------------------------------------------------------------
    def gap(self, detail: str, ts: int, missed: int) -> None:
        """A ``sequence_num`` gap on the connection: this book may have lost an update."""
        self.gaps += 1
        was_synced = self.state is SYNCED
        self._invalidate("sequence_gap")
        self.log.warning(
            f"{MARKET_DATA_SEQUENCE_GAP} venue={self.venue} symbol={self.symbol} {detail}; resubscribing level2"
        )
        self._incident(ts, "sequence_gap", detail, float(missed))
        if was_synced:
            self.resyncs += 1
        self.state = SUBSCRIBING

    def resync(self, reason: str, ts: int, notify: bool = True) -> None:
        """Rebuild from a new snapshot (an operator's request, a crossed book, a refused level)."""
        self.resyncs += 1
        self._invalidate("resync")
        if notify:
            self.log.warning(f"Order book resync venue={self.venue} symbol={self.symbol}: {reason}")
            self._incident(ts, "resync", reason)
        self.state = SUBSCRIBING
        self._request_resubscribe(self.symbol)

    def reset(self, reason: str, notify: bool = True) -> None:
        """The connection is gone: invalid until the next connection's snapshot."""
        if notify:
            self._invalidate(reason)
        else:
            self.book.valid = False
        self.state = IDLE
        self.stale = False

    def check_stale(self, now_ns: int, last_frame_ns: int) -> bool:
        """Stale when the connection brought nothing (heartbeats included) for ``stale_after_ns``."""
        if self.state is SYNCED and not self.stale and last_frame_ns and now_ns - last_frame_ns > self.stale_after_ns:
            self.stale = True
            self._invalidate("stale_data")
            detail = f"no data for {(now_ns - last_frame_ns) / 1e9:.1f}s (heartbeats included)"
            self.log.warning(f"Stale market data venue={self.venue} symbol={self.symbol}: {detail}")
            self._incident(now_ns, "stale_data", detail)
        return self.stale

    def alive(self) -> None:
        """A frame arrived after the connection was silent: with an unbroken sequence nothing was
        lost, so a stale synced book is shown again."""
        if self.stale and self.state is SYNCED:
            self.stale = False
            self.log.info(f"Market data resumed venue={self.venue} symbol={self.symbol}")
            book = self.book
            if not (book.best_bid_fixed and book.best_ask_fixed and book.best_bid_fixed >= book.best_ask_fixed):
                book.valid = True
                self._on_book(book)

    # --- internals --------------------------------------------------------------------------------
    def _refuse(self, m: L2Message, what: str) -> None:
        self.bad_levels += 1
        self._invalidate("bad_level")
        detail = f"non-positive price or negative size in a level2 {what} at sequence {m.seq}"
        self.log.warning(f"Bad order book level venue={self.venue} symbol={self.symbol}: {detail}; resyncing")
        self._incident(m.ts_recv, "bad_level", detail)
        self.resync("bad level", m.ts_recv, notify=False)

    def _invalidate(self, reason: str) -> None:
        invalidate(self.book, self._on_invalid, self.log, self.venue, self.symbol, reason)

    def _incident(self, ts: int, kind: str, detail: str, value: float = 0.0) -> None:
        self._on_incident(Incident(ts, self.venue, self.symbol, kind, detail, value))


def _bad(levels: np.ndarray) -> bool:
    return bool(len(levels)) and bool((levels[:, 0] <= 0).any() or (levels[:, 1] < 0).any())
