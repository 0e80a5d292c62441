"""Binance spot market data: one combined-stream WebSocket (diff depth, trades, bookTicker per
symbol), a synced local book per symbol, and plain synchronous callbacks into the engine.

Nothing is awaited between a frame's arrival and the callbacks it causes: the socket reader
decodes the frame, applies it, and calls ``on_book`` / ``on_trade`` / ``on_incident`` in one go.
Only the REST snapshot fetch (for a (re)sync) runs as a separate task.

Connection handling: the server's pings are answered by ``websockets``; ``serverShutdown`` and
the 24 h cut-off lead to a prompt reconnect; every other disconnect reconnects with exponential
backoff and jitter, never more than the configured attempts per window (Binance: 300 / 5 min).
While disconnected every book is invalid; after reconnecting each is rebuilt from a snapshot.

Sanity checks on what reaches the engine (the book's own are in ``book_sync``):

* A frame that does not decode is counted and logged (``MarketFrameDecoder``) and raises a
  ``decode_error`` incident on the same schedule (the first 20, then every 1000th); when it was a
  depth message of a known book, that book is invalid until its next diff shows the chain holds
  (``BookSync.lost``).
* A trade reaches ``on_trade`` (and so paper trading's simulated fills) only when its book is
  valid and the print lies within ``trade_band_pct`` of the book's mid (of the one side there is,
  for a one-sided book), with a price and a quantity above zero. One outside the band is dropped
  with a ``bad_trade`` incident (logged and raised for the first 20, then every 1000th); while the
  book is invalid (syncing, a gap, stale) there is nothing to check a print against and trades
  are held back without an incident (counted in ``trades_unchecked``). Real BTCUSDT prints lie
  within 0.09 % of the bookTicker's mid; the default band is 10 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from engine.book import Book
from engine.events import Incident, Trade
from engine.logs import get_logger
from engine.model import Instrument
from engine.venue.feed import OnBookInvalid
from venues.binance.book_sync import BookSync
from venues.binance.config import BinanceConfig
from venues.binance.decode import BookTop, ControlReply, DepthDiff, MarketFrameDecoder, ServerShutdown
from venues.binance.errors import BinanceError, RateLimited
from venues.binance.rest import BinanceRest
from venues.binance.symbols import SymbolMap, to_stream, to_wire
from venues.common.backoff import AttemptWindow, BackoffSettings, ExponentialBackoff, ReconnectPolicy
from venues.common.feed import SocketFeed
from venues.common.summary import Summary
from venues.common.ws import ReconnectingWebSocket, WsSettings

VENUE = "binance"
CHANNELS = (("orderbook", "depth"), ("trades", "trade"), ("ticker", "bookTicker"))
_ENVELOPE = b'{"stream":"'  # Binance's combined-stream frames, compact and in this key order
_DATA = b'","data":'
_STREAM_AT = len(_ENVELOPE)


def _ignore(_: object) -> None:
    return None


class BinanceMarketData(SocketFeed):
    """The ``MarketDataFeed`` of Binance spot: market data for ``config.symbols``. ``instruments``
    maps canonical symbol -> Instrument.

    ``attempt_window`` shares one connection-attempt budget between all of an adapter's sockets.

    ``books`` may be supplied (e.g. the engine's own ``Book`` objects, so strategies read the
    same memory the feed writes); otherwise one is created per symbol.
    """

    def __init__(
        self,
        config: BinanceConfig,
        rest: BinanceRest,
        instruments: dict[str, Instrument],
        on_book: Callable[[Book], None],
        on_trade: Callable[[Trade], None] = _ignore,
        on_incident: Callable[[Incident], None] = _ignore,
        on_top: Callable[[BookTop], None] | None = None,
        books: dict[str, Book] | None = None,
        attempt_window: AttemptWindow | None = None,
        on_book_invalid: OnBookInvalid | None = None,
    ) -> None:
        self.venue = VENUE
        self.config = config
        self.rest = rest
        self.log = get_logger("market_data")
        self.xlog = get_logger("exchanges")
        #: repeated warnings (a burst of serverShutdown, a snapshot failing through an outage)
        self.summary = Summary(self.xlog)
        self.md_summary = Summary(self.log)
        self._shutdown_conn: object = None  # the connection a serverShutdown already dropped
        missing = [s for s in config.symbols if s not in instruments]
        if missing:
            raise ValueError(f"binance market data: no instrument for {missing}")
        self.symbols = SymbolMap(list(config.symbols))
        self.decoder = MarketFrameDecoder(self.symbols, instruments[config.symbols[0]].price_scale, self.log)
        self.decoder.on_malformed = self._on_malformed
        self.on_trade = on_trade
        self.on_incident = on_incident
        self.on_top = on_top
        self.books: dict[str, Book] = {}
        self.syncs: dict[str, BookSync] = {}
        # the latest bookTicker frame per symbol, decoded when asked for (``top``): nothing here
        # reads every one of them, and they are most of the feed's frames
        self._top_frames: dict[str, tuple[bytes, int]] = {}
        self.top_frames = 0
        stale_ns = int(config.stale_data_timeout_s * 1e9)
        for sym in config.symbols:
            book = (books or {}).get(sym) or Book(instruments[sym])
            self.books[sym] = book
            self.syncs[sym] = BookSync(
                book,
                request_snapshot=lambda gen, s=sym: self._request_snapshot(s, gen),
                on_book=on_book,
                on_incident=on_incident,
                stale_after_ns=stale_ns,
                logger=self.log,
                on_invalid=on_book_invalid,
                max_id_jump=config.max_update_id_jump,
            )
        depth = "depth@100ms" if config.depth_update_ms == 100 else "depth"
        self.streams = []
        #: depth stream name (as bytes, the way it appears in the frame) -> its book's sync
        self._depth_routes: dict[bytes, BookSync] = {}
        self._top_routes: dict[bytes, str] = {}
        for sym in config.symbols:
            s = to_stream(sym)
            self.streams += [f"{s}@{depth}", f"{s}@trade", f"{s}@bookTicker"]
            self._depth_routes[f"{s}@{depth}".encode()] = self.syncs[sym]
            self._top_routes[f"{s}@bookTicker".encode()] = sym
        self.ws = ReconnectingWebSocket(
            "binance market data",
            self.url,
            self._on_frame,
            ReconnectPolicy(config.reconnect, shared_window=attempt_window),
            self.xlog,
            WsSettings(
                ping_interval_s=config.ping_interval_s,
                ping_timeout_s=config.ping_timeout_s,
                max_silence_s=config.silence_reconnect_s,
                max_age_s=config.max_connection_age_s,
                watchdog_interval_s=min(1.0, config.stale_data_timeout_s / 4),
            ),
            on_open=self._on_open,
            on_close=self._on_close,
            on_tick=self._on_tick,
        )
        self._snapshot_tasks: set[asyncio.Task[None]] = set()
        self.trades = 0
        self.bad_trades = 0
        self.trades_unchecked = 0  # held back while their book was invalid
        self._band = config.trade_band_pct / 100.0
        self._band_k = round(config.trade_band_pct * 1000)  # the band in units of 1e-5
        self.server_shutdowns = 0
        self.snapshot_failures = 0

    def url(self) -> str:
        return f"{self.config.ws_url}/stream?streams={'/'.join(self.streams)}"

    # --- lifecycle -----------------------------------------------------------------------------
    async def stop(self) -> None:
        await self.ws.stop()
        self.summary.close()
        self.md_summary.close()
        for t in list(self._snapshot_tasks):
            t.cancel()
        for t in list(self._snapshot_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def top(self, symbol: str) -> BookTop | None:
        """The latest bookTicker of ``symbol`` (None before the first, or when it is malformed:
        then counted and logged like any malformed frame)."""
        got = self._top_frames.get(symbol)
        if got is None:
            return None
        ev = self.decoder.decode(*got)
        return ev if type(ev) is BookTop else None

    def warm(self) -> None:
        """``BookSync.warm`` for every book: the path warmer's (``engine.warm``) part of the feed."""
        for sync in self.syncs.values():
            sync.warm()

    # --- socket callbacks ----------------------------------------------------------------------
    async def _on_open(self, _ws: object) -> None:
        for sym in self.config.symbols:
            for channel, stream in CHANNELS:
                self.log.info(f"Subscribed to binance:{sym}:{channel} (subscribe {to_stream(sym)}@{stream})")
        self._report_reconnect()

    def _on_close(self, reason: str) -> None:
        self._disconnected(reason)

    def _on_tick(self, now_ns: int) -> None:
        for sync in self.syncs.values():
            sync.check_stale(now_ns)

    def _on_frame(self, frame: bytes, ts_recv: int) -> None:
        # the in-sync depth message, straight from the frame's bytes to the book (BookSync.on_frame);
        # anything it does not take, and every other frame, goes through the decoder
        if frame.startswith(_ENVELOPE):
            i = frame.find(_DATA, _STREAM_AT, 96)
            if i > 0 and frame[-1] == 125:  # }
                stream = frame[_STREAM_AT:i]
                sync = self._depth_routes.get(stream)
                if sync is not None:
                    if sync.on_frame(frame, i + len(_DATA), len(frame) - 1, ts_recv):
                        return
                elif self.on_top is None:
                    sym = self._top_routes.get(stream)
                    if sym is not None:
                        self._top_frames[sym] = (frame, ts_recv)
                        self.top_frames += 1
                        return
        ev = self.decoder.decode(frame, ts_recv)
        t = type(ev)
        if t is DepthDiff:
            sync = self.syncs.get(ev.symbol)
            if sync is not None:
                sync.on_diff(ev)
        elif t is Trade:
            self.trades += 1
            # the common case inline: a valid two-sided book and a print within the band (integer
            # compares: twice the print against the sum of the touch)
            book = self.books.get(ev.symbol)
            if book is not None and book.valid:
                s2 = book.best_bid_fixed + book.best_ask_fixed
                d = 2 * ev.price_fixed - s2
                if d < 0:
                    d = -d
                if (
                    d * 100_000 <= self._band_k * s2
                    and book.best_bid_fixed
                    and book.best_ask_fixed
                    and ev.price_fixed > 0
                    and ev.size_fixed > 0
                ):
                    self.on_trade(ev)
                    return
            if self._trade_ok(ev):
                self.on_trade(ev)
        elif t is BookTop:
            self.top_frames += 1
            self._top_frames[ev.symbol] = (frame, ts_recv)
            if self.on_top is not None:
                self.on_top(ev)
        elif t is ServerShutdown:
            self.server_shutdowns += 1
            self.summary.warning("serverShutdown", "binance market data: serverShutdown received, reconnecting")
            conn = self.ws.ws
            if conn is not self._shutdown_conn:  # a burst on one connection is one reconnect
                self._shutdown_conn = conn
                self.ws.reconnect_now("serverShutdown")
        elif t is ControlReply and ev.code is not None:
            self.xlog.warning(f"binance market data: control error code={ev.code} msg={ev.msg!r}")
        elif ev is None:
            lost = self.decoder.lost_depth
            if lost is not None:
                self.decoder.lost_depth = None
                sync = self.syncs.get(lost)
                if sync is not None:
                    sync.lost(ts_recv)

    def _trade_ok(self, tr: Trade) -> bool:
        """A print within the band around its book's mid (see the module's docstring); the common
        case (a valid two-sided book, a print within the band) is decided inline in ``_on_frame``."""
        book = self.books.get(tr.symbol)
        if book is None or not book.valid:
            self.trades_unchecked += 1
            return False
        bb = book.best_bid_fixed
        ba = book.best_ask_fixed
        ref2 = bb + ba if bb and ba else 2 * (bb or ba)  # twice the mid
        p = tr.price_fixed
        if p > 0 and tr.size_fixed > 0 and ref2 > 0 and abs(2 * p - ref2) * 100_000 <= self._band_k * ref2:
            return True
        self.bad_trades += 1
        n = self.bad_trades
        if n <= 20 or n % 1000 == 0:
            mid = ref2 / 2 / 10**book.instrument.price_scale
            detail = (
                f"trade at {tr.price} size {tr.size} outside {self._band * 100:g}% of mid {mid:g} (#{n}); not passed on"
            )
            self.log.warning(f"Implausible trade venue={VENUE} symbol={tr.symbol}: {detail}")
            self.on_incident(Incident(tr.ts_recv, VENUE, tr.symbol, "bad_trade", detail, tr.price))
        return False

    def _on_malformed(self, n: int, what: str) -> None:
        self.on_incident(Incident(time.time_ns(), VENUE, "", "decode_error", f"malformed frame #{n}: {what}", float(n)))

    # --- snapshots -----------------------------------------------------------------------------
    def _request_snapshot(self, symbol: str, generation: int) -> None:
        task = asyncio.get_running_loop().create_task(self._fetch_snapshot(symbol, generation))
        self._snapshot_tasks.add(task)
        task.add_done_callback(self._snapshot_tasks.discard)

    async def _fetch_snapshot(self, symbol: str, generation: int) -> None:
        sync = self.syncs[symbol]
        wire = to_wire(symbol)
        backoff = ExponentialBackoff(BackoffSettings(initial_s=0.2, max_s=10.0, jitter=0.3))
        while sync.generation == generation:
            try:
                snap = await self.rest.depth(wire, self.config.depth_snapshot_limit)
            except (TimeoutError, BinanceError, ValueError, OSError) as exc:
                self.snapshot_failures += 1
                delay = exc.retry_after_s if isinstance(exc, RateLimited) else backoff.next_delay()
                # the error says why in the guide's words ("Order book snapshot timeout", "Exchange
                # outage", "Rate limit exceeded"); through an outage, one line a minute
                self.md_summary.warning(
                    f"snapshot {symbol}", f"{exc}; binance {symbol} snapshot not loaded, retrying in {delay:.1f}s"
                )
                await asyncio.sleep(delay)
                continue
            sync.on_snapshot(snap, generation)
            return
