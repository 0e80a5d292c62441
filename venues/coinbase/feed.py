"""Coinbase market data: one Advanced Trade WebSocket (``level2``, ``heartbeats``,
``market_trades``), a synced book per product, plain synchronous callbacks into the engine.

On connect the feed subscribes one channel per message (Advanced Trade takes one channel per
subscribe; within the 5 s Coinbase allows): ``heartbeats`` first (it keeps the other channels
open, as Coinbase closes idle channels after 60-90 s), then ``level2`` and ``market_trades`` for
every product. Every frame's ``sequence_num`` is checked against the connection's chain before
anything else (``book_sync.SequenceCheck``); a break invalidates every book and resubscribes
``level2`` (unsubscribe + subscribe: a new snapshot per product; Coinbase has no replay).
Nothing is awaited between a frame's arrival and the callbacks it causes.

Silence: heartbeats arrive every second, so the books go stale (invalid) after
``stale_data_timeout_s`` without any frame, and after ``heartbeat_timeout_s`` the watchdog logs
``Heartbeat timeout`` and reconnects. The heartbeat counter's own continuity is logged when it
skips (the server missed beats; the sequence says whether we lost anything).

Trades reach ``on_trade`` only when their book is valid and the print lies within
``trade_band_pct`` of the mid (``bad_trade`` otherwise); the snapshot of recent trades Coinbase
sends on subscribe is history and is not passed on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from engine.book import Book
from engine.events import Incident, Trade
from engine.logs import get_logger
from engine.messages import SYMBOL_NOT_FOUND
from engine.model import Instrument
from engine.venue.feed import OnBookInvalid
from venues.coinbase.book_sync import SUBSCRIBING, BookSync, SequenceCheck
from venues.coinbase.config import CoinbaseConfig
from venues.coinbase.decode import ErrorFrame, Heartbeat, MarketFrameDecoder, Subscriptions, TradeBatch
from venues.coinbase.errors import guide_reason
from venues.common.backoff import AttemptWindow, ReconnectPolicy
from venues.common.feed import SocketFeed
from venues.common.summary import Summary
from venues.common.ws import ReconnectingWebSocket, WsSettings

VENUE = "coinbase"
CHANNELS = ("heartbeats", "level2", "market_trades")


def _ignore(_: object) -> None:
    return None


def subscribe_message(channel: str, product_ids: list[str] | None, kind: str = "subscribe") -> bytes:
    msg: dict[str, object] = {"type": kind, "channel": channel}
    if product_ids is not None:
        msg["product_ids"] = product_ids
    return json.dumps(msg, separators=(",", ":")).encode()


class CoinbaseMarketData(SocketFeed):
    """The ``MarketDataFeed`` of Coinbase: ``books`` (canonical symbol -> the engine's book) kept in
    sync from Advanced Trade's level2 channel."""

    def __init__(
        self,
        config: CoinbaseConfig,
        instruments: dict[str, Instrument],
        on_book: Callable[[Book], None],
        on_trade: Callable[[Trade], None] = _ignore,
        on_incident: Callable[[Incident], None] = _ignore,
        books: dict[str, Book] | None = None,
        attempt_window: AttemptWindow | None = None,
        on_book_invalid: OnBookInvalid | None = None,
    ) -> None:
        self.venue = VENUE
        self.config = config
        self.log = get_logger("market_data")
        self.xlog = get_logger("exchanges")
        self.summary = Summary(self.xlog)
        missing = [s for s in config.symbols if s not in instruments]
        if missing:
            raise ValueError(f"coinbase market data: no instrument for {missing}")
        self.decoder = MarketFrameDecoder(self.log, VENUE)
        self.decoder.on_malformed = self._on_malformed
        self.on_trade = on_trade
        self.on_incident = on_incident
        self.books: dict[str, Book] = {}
        self.syncs: dict[str, BookSync] = {}
        stale_ns = int(config.stale_data_timeout_s * 1e9)
        for sym in config.symbols:
            book = (books or {}).get(sym) or Book(instruments[sym])
            self.books[sym] = book
            self.syncs[sym] = BookSync(
                book,
                self._resubscribe,
                on_book,
                on_incident,
                stale_after_ns=stale_ns,
                logger=self.log,
                on_invalid=on_book_invalid,
            )
        self.seq = SequenceCheck()
        self.last_frame_ns = 0
        self.last_heartbeat = -1
        self.heartbeats = 0
        self.missed_heartbeats = 0
        self.trades = 0
        self.bad_trades = 0
        self.trades_unchecked = 0
        self.errors = 0
        self._band_k = round(config.trade_band_pct * 1000)
        self.ws = ReconnectingWebSocket(
            "coinbase market data",
            lambda: config.ws_url,
            self._on_frame,
            ReconnectPolicy(config.reconnect, shared_window=attempt_window),
            self.xlog,
            WsSettings(
                ping_interval_s=config.ping_interval_s,
                ping_timeout_s=config.ping_timeout_s,
                max_silence_s=config.heartbeat_timeout_s,
                watchdog_interval_s=min(0.25, config.stale_data_timeout_s / 4),
            ),
            on_open=self._on_open,
            on_close=self._on_close,
            on_tick=self._on_tick,
        )

    # --- lifecycle -------------------------------------------------------------------------------
    async def stop(self) -> None:
        await self.ws.stop()
        self.summary.close()

    def warm(self) -> None:
        """Nothing compiled on this feed's path to warm."""
        return None

    # --- subscriptions ---------------------------------------------------------------------------
    async def _on_open(self, _ws: object) -> None:
        self.seq.reset()
        self.last_heartbeat = -1
        self.last_frame_ns = time.time_ns()
        products = list(self.config.symbols)
        for sync in self.syncs.values():
            sync.subscribing()
        for channel in CHANNELS:
            ids = None if channel == "heartbeats" else products
            self.ws.send_now(subscribe_message(channel, ids))
            for sym in products:
                self.log.info(f"Subscribed to coinbase:{sym}:{channel}")
        self._report_reconnect()

    def _resubscribe(self, *symbols: str) -> None:
        """Unsubscribe + subscribe ``level2`` for ``symbols``: Coinbase answers with a new snapshot."""
        ids = list(symbols)
        try:
            self.ws.send_now(subscribe_message("level2", ids, "unsubscribe"))
            self.ws.send_now(subscribe_message("level2", ids))
        except ConnectionError:
            return  # the reconnect subscribes afresh
        for s in ids:
            self.syncs[s].subscribing()

    def _on_close(self, reason: str) -> None:
        self._disconnected(reason, "disconnect")

    def _on_tick(self, now_ns: int) -> None:
        for sync in self.syncs.values():
            sync.check_stale(now_ns, self.last_frame_ns)

    # --- frames -----------------------------------------------------------------------------------
    def _on_frame(self, frame: bytes, ts_recv: int) -> None:
        self.last_frame_ns = ts_recv
        for sync in self.syncs.values():
            if sync.stale:
                sync.alive()
        ev = self.decoder.decode(frame, ts_recv)
        if ev is None:
            return
        seq = ev[0].seq if type(ev) is list else getattr(ev, "seq", -1)
        if seq >= 0:
            missed = self.seq.check(seq)
            if missed:
                self._gap(seq, missed, ts_recv)
        if type(ev) is list:
            for m in ev:
                sync = self.syncs.get(m.symbol)
                if sync is not None:
                    sync.on_message(m)
        elif type(ev) is Heartbeat:
            self.heartbeats += 1
            last = self.last_heartbeat
            if last >= 0 and ev.counter != last + 1:
                self.missed_heartbeats += abs(ev.counter - last - 1)
                self.summary.warning("heartbeat", f"coinbase heartbeats: counter {ev.counter} after {last}")
            self.last_heartbeat = ev.counter
        elif type(ev) is TradeBatch:
            if not ev.snapshot:
                for tr in ev.trades:
                    self.trades += 1
                    if self._trade_ok(tr):
                        self.on_trade(tr)
        elif type(ev) is Subscriptions:
            got = set(ev.channels.get("level2", ()))
            if "level2" in ev.channels:
                for sym in self.config.symbols:
                    if sym not in got and self.syncs[sym].state is SUBSCRIBING:
                        self.summary.warning(f"sub {sym}", f"{SYMBOL_NOT_FOUND}: coinbase did not subscribe {sym}")
        elif type(ev) is ErrorFrame:
            self.errors += 1
            self.xlog.warning(f"coinbase market data: {guide_reason(0, ev.message)} ({ev.message!r})")

    def _gap(self, seq: int, missed: int, ts: int) -> None:
        expected = seq - missed
        detail = f"expected sequence_num={expected} got={seq}"
        for sync in self.syncs.values():
            sync.gap(detail, ts, missed)
        self._resubscribe(*self.syncs)

    def _trade_ok(self, tr: Trade) -> bool:
        book = self.books.get(tr.symbol)
        if book is None or not book.valid:
            self.trades_unchecked += 1
            return False
        bb, ba = book.best_bid_fixed, book.best_ask_fixed
        ref2 = bb + ba if bb and ba else 2 * (bb or ba)
        p = tr.price_fixed
        if p > 0 and tr.size_fixed > 0 and ref2 > 0 and abs(2 * p - ref2) * 100_000 <= self._band_k * ref2:
            return True
        self.bad_trades += 1
        n = self.bad_trades
        if n <= 20 or n % 1000 == 0:
            detail = f"trade at {tr.price} size {tr.size} outside {self.config.trade_band_pct:g}% of mid (#{n})"
            self.log.warning(f"Implausible trade venue={VENUE} symbol={tr.symbol}: {detail}; not passed on")
            self.on_incident(Incident(tr.ts_recv, VENUE, tr.symbol, "bad_trade", detail, tr.price))
        return False

    def _on_malformed(self, n: int, what: str) -> None:
        self.on_incident(Incident(time.time_ns(), VENUE, "", "decode_error", f"malformed frame #{n}: {what}", float(n)))
