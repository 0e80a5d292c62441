"""The fake exchange's market: replays a capture into its own books and out to the streams.

There is one market timeline shared by every connection, as on the real venue: a client that
connects late sees the stream from where the market is. Each record is applied to the fake's book
(depth diffs with Binance's spot rules, at the capture's real ``U``/``u``), offered to the matching
engine (resting orders), then published. Because all of this happens between two awaits, the
REST depth snapshot always has ``lastUpdateId`` = the ``u`` of the last diff already queued to
every subscriber, so the next diff a client receives satisfies ``U <= lastUpdateId + 1 <= u``.

Pacing follows the capture's local receive timestamps divided by ``speed``; ``speed = 0`` means as
fast as the slowest subscriber reads. Event times (``E``, and ``T`` of trades) are re-stamped with
the server clock by default, so the replay looks live; ``restamp=False`` sends the captured bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec

from engine.book import Book
from sim.fake_binance.capture import BBO, DEPTH, TRADE, Capture, Record
from sim.fake_binance.exchange import Exchange
from sim.fake_binance.streams import StreamHub
from sim.fake_binance.symbols import SCALE, fmt
from sim.fake_binance.ticker import TickerStats

log = logging.getLogger(__name__)

PARTIAL_LEVELS = (5, 10, 20)


def fx(s: str) -> int:
    """Binance decimal string -> integer at 8 decimals (fast path for the 8-decimal wire format)."""
    i = s.find(".")
    if i < 0:
        return int(s) * SCALE
    frac = s[i + 1 :]
    if len(frac) == 8:
        return int(s[:i] + frac)
    if len(frac) > 8:
        if frac[8:].strip("0"):
            raise ValueError(f"{s!r} has more than 8 decimals")
        frac = frac[:8]
    return int(s[:i] or "0") * SCALE + int(frac.ljust(8, "0"))


class Replayer:
    def __init__(
        self,
        capture: Capture,
        books: dict[str, Book],
        exchange: Exchange,
        hub: StreamHub,
        clock_ms: Callable[[], int],
        speed: float,
        restamp: bool = True,
    ) -> None:
        self.capture = capture
        self.records = capture.records
        self.books = books
        self.exchange = exchange
        self.hub = hub
        self.clock_ms = clock_ms
        self.speed = float(speed)
        self.restamp = restamp
        self.pos = 0
        self.done = asyncio.Event()
        self.started = asyncio.Event()
        self._resume = asyncio.Event()
        self._resume.set()
        self._paused = False
        self._silent_until = 0.0  # monotonic; no frames are published before it
        self._silence_pauses = True
        self._drop: dict[str | None, int] = {}
        self._anchor_wall = 0.0
        self._anchor_ts = 0
        self.diffs_dropped = 0
        self.records_applied = 0
        self.last_update_id: dict[str, int] = {}
        for symbol, snap in capture.snapshots.items():
            book = books[symbol]
            book.apply_snapshot([(fx(p), fx(q)) for p, q in snap.bids], [(fx(p), fx(q)) for p, q in snap.asks])
            book.update_id = snap.last_update_id
            book.valid = True
            self.last_update_id[symbol] = snap.last_update_id
        self._names: dict[tuple[str, int], tuple[str, ...]] = {}
        self.ticker = TickerStats(books)
        self._ticker_names: dict[str, str] = {}

    @property
    def max_speed(self) -> bool:
        return self.speed <= 0

    # --- controls -----------------------------------------------------------------------------
    def pause(self) -> None:
        self._paused = True
        self._resume.clear()

    def resume(self) -> None:
        self._paused = False
        self._resume.set()

    def silence(self, seconds: float, keep_replaying: bool = False) -> None:
        """Stop publishing market data for ``seconds`` while sockets stay open (a stale feed).

        By default the market stalls too (the replay pauses and resumes where it stopped, so the
        update-id chain stays whole); ``keep_replaying=True`` lets the market move on unseen, so the
        first diff after the silence skips ahead.
        """
        self._silent_until = time.monotonic() + float(seconds)
        self._silence_pauses = not keep_replaying

    def drop_diffs(self, n: int, symbol: str | None = None) -> None:
        """Do not publish the next ``n`` depth diffs (of ``symbol`` or any): subscribers see a gap."""
        self._drop[symbol] = self._drop.get(symbol, 0) + int(n)

    # --- the timeline -------------------------------------------------------------------------
    def _anchor(self) -> None:
        self._anchor_wall = time.monotonic()
        self._anchor_ts = self.records[self.pos].ts if self.pos < len(self.records) else 0

    async def run(self) -> None:
        """Paced replay to the end of the capture (the server runs it as a task)."""
        await self.started.wait()
        recs = self.records
        n = len(recs)
        self._anchor()
        since_yield = 0
        while self.pos < n:
            if self._paused:
                await self._resume.wait()
                self._anchor()
            now = time.monotonic()
            if self._silence_pauses and now < self._silent_until:
                await asyncio.sleep(self._silent_until - now)
                self._anchor()
                continue
            if not self.max_speed:
                due = self._anchor_wall + (recs[self.pos].ts - self._anchor_ts) / 1e9 / self.speed
                delay = due - time.monotonic()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                    continue
            self.step()
            since_yield += 1
            if self.max_speed:
                await self._backpressure()
                if since_yield >= 8:
                    since_yield = 0
                    await asyncio.sleep(0)
            elif since_yield >= 64:
                since_yield = 0
                self._drop_slow_readers()
                await asyncio.sleep(0)
        self.done.set()
        log.info("capture exhausted after %d records", self.records_applied)

    def _drop_slow_readers(self) -> None:
        """At real-time speed a reader that falls too far behind is cut off, as Binance does."""
        for conn in list(self.hub.connections):
            if conn.backlog > conn.max_backlog and not conn.closed:
                log.warning("dropping a stream reader %d frames behind", conn.backlog)
                conn.abort()

    async def _backpressure(self) -> None:
        for conn in list(self.hub.connections):
            if not conn.drained.is_set() and not conn.closed:
                await conn.drained.wait()

    async def advance(self, n: int | None = None, until: Callable[[], bool] | None = None) -> int:
        """Apply the next ``n`` records (or until ``until()`` is true) now, ignoring pacing."""
        count = 0
        while self.pos < len(self.records) and (n is None or count < n):
            self.step()
            count += 1
            if until is not None and until():
                break
            if count % 8 == 0:
                await self._backpressure()
                await asyncio.sleep(0)
        if self.pos >= len(self.records):
            self.done.set()
        return count

    # --- one record ---------------------------------------------------------------------------
    def step(self) -> None:
        rec = self.records[self.pos]
        self.pos += 1
        self.records_applied += 1
        silent = time.monotonic() < self._silent_until
        if rec.kind == DEPTH:
            self._apply_depth(rec)
            if self._take_drop(rec.symbol):
                self.diffs_dropped += 1
            elif not silent:
                self._publish(rec)
            if not silent:
                self._publish_partial(rec.symbol)
        elif rec.kind == TRADE:
            price, qty = fx(rec.price), fx(rec.qty)
            self.exchange.on_trade(rec.symbol, price, qty, rec.buyer_maker)
            ts = self.clock_ms() - (rec.event_ms - rec.trade_ms) if self.restamp else rec.trade_ms
            self.ticker.on_trade(rec.symbol, price, qty, rec.seq, ts)
            if not silent:
                self._publish(rec)
        elif rec.kind == BBO and not silent:
            self._publish(rec)
        if not silent:
            self._publish_ticker(rec.symbol)

    def _publish_ticker(self, symbol: str) -> None:
        name = self._ticker_names.get(symbol)
        if name is None:
            name = self._ticker_names[symbol] = symbol.lower() + "@ticker"
        if self.hub.wanted(name):
            now = self.clock_ms()
            if self.ticker.due(symbol, now):
                self.hub.publish(name, msgspec.json.encode(self.ticker.event(symbol, now)))

    def _take_drop(self, symbol: str) -> bool:
        for key in (symbol, None):
            left = self._drop.get(key, 0)
            if left > 0:
                self._drop[key] = left - 1
                return True
        return False

    def _apply_depth(self, rec: Record) -> None:
        book = self.books[rec.symbol]
        if rec.seq <= book.update_id:
            return  # already in the book (Binance's rule: ignore u <= local update id)
        ex = self.exchange
        watch = ex.watch
        sym = rec.symbol
        for side, levels in ((1, rec.bids), (-1, rec.asks)):
            for p, q in levels:
                price = fx(p)
                size = fx(q)
                if watch and (sym, side, price) in watch:
                    ex.on_level(sym, side, price, book.size_at(side, price), size)
                book.apply_level(side, price, size)
        book.refresh_top()
        book.update_id = rec.seq
        book.ts_event = rec.event_ms * 1_000_000
        self.last_update_id[sym] = rec.seq
        ex.after_depth(sym)

    def _stream_names(self, rec: Record) -> tuple[str, ...]:
        key = (rec.stream, rec.kind)
        names = self._names.get(key)
        if names is None:
            base = rec.stream.split("@", 1)[0]
            if rec.kind == DEPTH:
                names = (rec.stream, f"{base}@depth") if rec.stream != f"{base}@depth" else (rec.stream,)
            elif rec.kind == TRADE:
                names = (rec.stream,)
            else:
                names = (rec.stream,)
            self._names[key] = names
        return names

    def _payload(self, rec: Record) -> bytes:
        if not self.restamp or rec.kind == BBO:
            return rec.raw
        now = self.clock_ms()
        raw = rec.raw.replace(b'"E":%d' % rec.event_ms, b'"E":%d' % now, 1)
        if rec.kind == TRADE:
            raw = raw.replace(b'"T":%d' % rec.trade_ms, b'"T":%d' % (now - (rec.event_ms - rec.trade_ms)), 1)
        return raw

    def _publish(self, rec: Record) -> None:
        hub = self.hub
        names = self._stream_names(rec)
        payload = None
        for name in names:
            if hub.wanted(name):
                if payload is None:
                    payload = self._payload(rec)
                hub.publish(name, payload)
        if rec.kind == TRADE:
            agg = rec.stream.split("@", 1)[0] + "@aggTrade"
            if hub.wanted(agg):
                hub.publish(agg, self._agg_trade(rec))

    def _agg_trade(self, rec: Record) -> bytes:
        now = self.clock_ms() if self.restamp else rec.event_ms
        trade_ms = now - (rec.event_ms - rec.trade_ms)
        return b'{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s,"M":true}' % (
            now,
            rec.symbol.encode(),
            rec.seq,
            rec.price.encode(),
            rec.qty.encode(),
            rec.seq,
            rec.seq,
            trade_ms,
            b"true" if rec.buyer_maker else b"false",
        )

    def _publish_partial(self, symbol: str) -> None:
        hub = self.hub
        base = symbol.lower()
        book = None
        for n in PARTIAL_LEVELS:
            for name in (f"{base}@depth{n}", f"{base}@depth{n}@100ms"):
                if hub.wanted(name):
                    if book is None:
                        book = self.books[symbol]
                    hub.publish(name, partial_depth(book, n))

    # --- REST view ----------------------------------------------------------------------------
    def depth_json(self, symbol: str, limit: int) -> dict:
        book = self.books[symbol]
        return {
            "lastUpdateId": book.update_id,
            "bids": [[fmt(p), fmt(q)] for p, q in book.levels(1, limit)],
            "asks": [[fmt(p), fmt(q)] for p, q in book.levels(-1, limit)],
        }


def partial_depth(book: Book, n: int) -> bytes:
    bids = ",".join(f'["{fmt(p)}","{fmt(q)}"]' for p, q in book.levels(1, n))
    asks = ",".join(f'["{fmt(p)}","{fmt(q)}"]' for p, q in book.levels(-1, n))
    return f'{{"lastUpdateId":{book.update_id},"bids":[{bids}],"asks":[{asks}]}}'.encode()
