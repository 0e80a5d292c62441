"""Kraken's L2 book procedure for one pair (WebSocket v2 ``book`` channel), and its CRC32 checksum.

Kraken sends a ``snapshot`` after each subscribe, then ``update`` messages. There are no sequence
numbers: every message carries ``checksum``, the CRC32 of the top 10 levels per side after the
message, and a mismatch is the only sign that something was lost. So, per message:

1. apply every level in order (a message may touch the same price twice; ``qty`` 0 deletes);
2. truncate each side to the subscribed depth: Kraken sends no delete for a level pushed out of
   range, and a level left behind would later surface into the top 10 and break the checksum;
3. compute the checksum (``checksum``) and compare; on a mismatch the book is invalid at once
   (``on_invalid``, a ``sequence_gap`` incident with ``Market data sequence gap ... checksum``),
   and the feed resubscribes for a new snapshot (``request_snapshot``);
4. otherwise mirror the changed levels into the engine's ``Book`` (fixed point) and show it.

The local state is kept in ``Decimal`` (the wire's exact digits) per side; the engine's book gets
the same levels as integers at the instrument's scales. The checksum formats each price and
quantity at the pair's precision (``price_precision`` / ``qty_precision``, AssetPairs
``pair_decimals`` / ``lot_decimals``): the padding matters (qty 18097.1547 at 8 decimals is
``1809715470000``).

A book is also invalid while no snapshot has arrived, after a disconnect, when crossed, and when
nothing arrived for ``stale_after_ns``: neither a book message nor a heartbeat (``touch``; a quiet
book on a live connection is not stale).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from decimal import Decimal

import numpy as np

from engine.book import Book
from engine.events import Incident
from engine.logs import get_logger
from engine.messages import MARKET_DATA_SEQUENCE_GAP
from engine.venue.feed import OnBookInvalid, OnLevels
from venues.common.book_sync import invalidate
from venues.kraken.decode import BookData, Level, to_fixed, ts_ns

IDLE = "idle"
BUFFERING = "buffering"  # subscribed, waiting for the snapshot
SYNCED = "synced"
CHECKSUM_LEVELS = 10


def _digits(value: Decimal, places: int) -> str:
    s = f"{value:.{places}f}".replace(".", "").lstrip("0")
    return s


def checksum(
    bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]], price_precision: int, qty_precision: int
) -> int:
    """Kraken v2 book checksum. ``bids`` best (highest) first, ``asks`` best (lowest) first; only the
    first 10 of each count: asks string, then bids string, CRC32 unsigned."""
    parts = [_digits(p, price_precision) + _digits(q, qty_precision) for p, q in asks[:CHECKSUM_LEVELS]]
    parts += [_digits(p, price_precision) + _digits(q, qty_precision) for p, q in bids[:CHECKSUM_LEVELS]]
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF


class LevelBook:
    """The pair's book as Kraken defines it: price -> qty per side, at most ``depth`` levels."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def apply(self, side: dict[Decimal, Decimal], levels: list[Level], touched: dict[Decimal, Decimal]) -> None:
        for lv in levels:
            if lv.qty == 0:
                side.pop(lv.price, None)
                touched[lv.price] = Decimal(0)
            else:
                side[lv.price] = lv.qty
                touched[lv.price] = lv.qty

    def truncate(self, touched_b: dict[Decimal, Decimal], touched_a: dict[Decimal, Decimal]) -> None:
        if len(self.bids) > self.depth:
            for p in sorted(self.bids, reverse=True)[self.depth :]:
                del self.bids[p]
                touched_b[p] = Decimal(0)
        if len(self.asks) > self.depth:
            for p in sorted(self.asks)[self.depth :]:
                del self.asks[p]
                touched_a[p] = Decimal(0)

    def sorted_bids(self, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
        keys = sorted(self.bids, reverse=True)[:n]
        return [(p, self.bids[p]) for p in keys]

    def sorted_asks(self, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
        keys = sorted(self.asks)[:n]
        return [(p, self.asks[p]) for p in keys]

    def checksum(self, price_precision: int, qty_precision: int) -> int:
        return checksum(
            self.sorted_bids(CHECKSUM_LEVELS), self.sorted_asks(CHECKSUM_LEVELS), price_precision, qty_precision
        )


class BookSync:
    """Keeps ``book`` (the engine's) equal to Kraken's book of one pair.

    ``request_snapshot(generation)`` asks the feed for a new snapshot (unsubscribe + subscribe);
    snapshots arriving while not ``BUFFERING`` for the current generation are still taken: on
    Kraken a snapshot is the whole truth, whenever it comes.
    """

    def __init__(
        self,
        book: Book,
        depth: int,
        price_precision: int,
        qty_precision: int,
        request_snapshot: Callable[[int], None],
        on_book: Callable[[Book], None],
        on_incident: Callable[[Incident], None],
        stale_after_ns: int = 5_000_000_000,
        logger: logging.Logger | None = None,
        on_invalid: OnBookInvalid | None = None,
        on_levels: OnLevels | None = None,
    ) -> None:
        self.book = book
        self.venue = book.venue
        self.symbol = book.symbol
        self.levels = LevelBook(depth)
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self._ps = book.instrument.price_scale
        self._ss = book.instrument.size_scale
        self._request_snapshot = request_snapshot
        self._on_book = on_book
        self._on_incident = on_incident
        self._on_invalid = on_invalid
        self.on_levels = on_levels
        self.stale_after_ns = stale_after_ns
        self.log = logger or get_logger("market_data")
        self.state = IDLE
        self.generation = 0
        self.stale = False
        self.last_recv_ns = 0
        self.messages = 0  # every book message applied (the book's ``update_id``)
        self.snapshots = 0
        self.applied = 0
        self.gaps = 0  # checksum mismatches
        self.resyncs = 0
        self.crossed = 0
        self.ignored = 0  # updates before a snapshot
        self.last_checksum = 0
        self._resyncing = False
        self._resync_started_ns = 0

    # --- messages ----------------------------------------------------------------------------------
    def on_message(self, kind: str, data: BookData, ts_recv: int) -> None:
        if kind == "snapshot":
            self.on_snapshot(data, ts_recv)
        elif self.state is SYNCED:
            self.on_update(data, ts_recv)
        else:
            self.ignored += 1

    def on_snapshot(self, data: BookData, ts_recv: int) -> None:
        self.snapshots += 1
        lb = self.levels
        lb.clear()
        tb: dict[Decimal, Decimal] = {}
        ta: dict[Decimal, Decimal] = {}
        lb.apply(lb.bids, data.bids, tb)
        lb.apply(lb.asks, data.asks, ta)
        lb.truncate(tb, ta)
        got = lb.checksum(self.price_precision, self.qty_precision)
        if got != data.checksum:
            self._mismatch(data, got, ts_recv, "snapshot")
            return
        book = self.book
        book.clear()
        bids = self._fixed(lb.bids)
        asks = self._fixed(lb.asks)
        if len(bids):
            book.apply_levels(1, bids)
        if len(asks):
            book.apply_levels(-1, asks)
        book.refresh_top()
        self.state = SYNCED
        if self.on_levels is not None:
            self.on_levels(book, bids, asks, True)
        self.log.info(
            f"orderbook synced venue=kraken symbol={self.symbol} from a snapshot of {len(lb.bids)}/{len(lb.asks)} "
            f"levels (checksum {data.checksum})"
        )
        if self._resyncing:
            self._resyncing = False
            took_ms = max(ts_recv - self._resync_started_ns, 0) / 1e6
            self._incident(ts_recv, "resync", f"book rebuilt from a new snapshot in {took_ms:.0f} ms", took_ms)
        self._applied(data, ts_recv)

    def on_update(self, data: BookData, ts_recv: int) -> None:
        lb = self.levels
        tb: dict[Decimal, Decimal] = {}
        ta: dict[Decimal, Decimal] = {}
        lb.apply(lb.bids, data.bids, tb)
        lb.apply(lb.asks, data.asks, ta)
        lb.truncate(tb, ta)
        got = lb.checksum(self.price_precision, self.qty_precision)
        if got != data.checksum:
            self._mismatch(data, got, ts_recv, "update")
            return
        book = self.book
        bids = self._fixed(tb)
        asks = self._fixed(ta)
        if len(bids):
            book.apply_levels(1, bids)
        if len(asks):
            book.apply_levels(-1, asks)
        book.refresh_top()
        if self.on_levels is not None:
            self.on_levels(book, bids, asks, False)
        self._applied(data, ts_recv)

    # --- lifecycle ---------------------------------------------------------------------------------
    def subscribed(self) -> None:
        """The feed (re)subscribed: the next snapshot rebuilds the book."""
        if self.state is IDLE:
            self.state = BUFFERING

    def reset(self, reason: str, notify: bool = True) -> None:
        if notify:
            self._invalidate("disconnect")
        self.generation += 1
        self.state = IDLE
        self.levels.clear()
        self.book.clear()
        self.book.update_id = 0
        self.log.info(f"orderbook reset venue=kraken symbol={self.symbol} ({reason})")

    def resync(self, reason: str, ts: int) -> None:
        self._invalidate("resync")
        self.log.info(f"orderbook resync requested venue=kraken symbol={self.symbol} ({reason})")
        self._start_resync(ts)

    def touch(self, ts_recv: int) -> None:
        """A heartbeat: the connection is alive, so a quiet book is not stale (Kraken sends nothing
        for a book that does not change). A book already stale stays invalid until its next update
        passes the checksum."""
        if not self.stale and self.state is SYNCED:
            self.last_recv_ns = ts_recv

    def check_stale(self, now_ns: int) -> bool:
        if self.stale or self.last_recv_ns == 0 or self.state is not SYNCED:
            return self.stale
        silent = now_ns - self.last_recv_ns
        if silent > self.stale_after_ns:
            self.stale = True
            self._invalidate("stale_data")
            secs = silent / 1e9
            self.log.warning(
                f"Stale market data venue=kraken symbol={self.symbol}: no update for {secs:.1f}s "
                f"(limit {self.stale_after_ns / 1e9:.1f}s); book invalid until data flows"
            )
            self._incident(now_ns, "stale_data", f"no order book update for {secs:.1f}s", secs)
        return self.stale

    # --- internals ---------------------------------------------------------------------------------
    def _fixed(self, side: dict[Decimal, Decimal]) -> np.ndarray:
        ps, ss = self._ps, self._ss
        arr = np.empty((len(side), 2), dtype=np.int64)
        for i, (p, q) in enumerate(side.items()):
            arr[i, 0] = to_fixed(p, ps)
            arr[i, 1] = to_fixed(q, ss)
        return arr

    def _applied(self, data: BookData, ts_recv: int) -> None:
        book = self.book
        self.messages += 1
        self.applied += 1
        self.last_checksum = data.checksum
        book.update_id = self.messages
        book.ts_event = ts_ns(data.timestamp)
        book.ts_recv = ts_recv
        self.last_recv_ns = ts_recv
        if self.stale:
            self.stale = False
            self.log.info(f"Market data resumed venue=kraken symbol={self.symbol}")
        bb, ba = book.best_bid_fixed, book.best_ask_fixed
        if bb and ba and bb >= ba:
            self.crossed += 1
            self._invalidate("crossed_book")
            detail = f"bid {bb} >= ask {ba}"
            self.log.warning(f"Crossed order book venue=kraken symbol={self.symbol}: {detail}; resyncing")
            self._incident(ts_recv, "crossed_book", detail)
            self._start_resync(ts_recv)
            return
        book.valid = True
        self._on_book(book)

    def _mismatch(self, data: BookData, got: int, ts_recv: int, what: str) -> None:
        self.gaps += 1
        self._invalidate("sequence_gap")
        detail = f"checksum mismatch on {what}: expected={data.checksum} computed={got}"
        self.log.warning(f"{MARKET_DATA_SEQUENCE_GAP} venue=kraken symbol={self.symbol} {detail}; resyncing")
        self._incident(ts_recv, "sequence_gap", detail)
        self.levels.clear()
        self._start_resync(ts_recv)

    def _start_resync(self, ts: int) -> None:
        if self.state is not IDLE:
            self.resyncs += 1
            self._resyncing = True
        self._resync_started_ns = ts
        self._invalidate("resync")
        self.state = BUFFERING
        self.generation += 1
        self._request_snapshot(self.generation)

    def _invalidate(self, reason: str) -> None:
        invalidate(self.book, self._on_invalid, self.log, self.venue, self.symbol, reason)

    def _incident(self, ts: int, kind: str, detail: str, value: float = 0.0) -> None:
        self._on_incident(Incident(ts, self.venue, self.symbol, kind, detail, value))
