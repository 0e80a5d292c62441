"""Kraken spot market data: one WebSocket v2 connection (``book`` at the configured depth and
``trade`` for every pair), a ``BookSync`` per pair writing the engine's books, synchronous engine
callbacks from the socket reader.

Book sync is Kraken's (``book_sync``): a snapshot after every subscribe, updates checked by their
CRC32. A checksum mismatch (the only gap signal Kraken gives) or a crossed book resubscribes that
pair's book: ``unsubscribe`` then ``subscribe`` with ``snapshot: true`` on the same connection, so
the other pairs go on. A disconnect makes every book invalid until its snapshot on the next
connection. Kraken sends a heartbeat every second when nothing else flows, so a connection silent
for ``silence_reconnect_s`` is dropped and opened again.

Trades reach ``on_trade`` only while their book is valid and within ``trade_band_pct`` of its mid
(``bad_trade`` incident otherwise), as on Binance.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

from engine.book import Book
from engine.events import Incident, Trade
from engine.logs import get_logger
from engine.model import Instrument
from engine.venue.feed import OnBookInvalid, OnLevels
from venues.common.backoff import AttemptWindow, ReconnectPolicy
from venues.common.feed import SocketFeed
from venues.common.ws import ReconnectingWebSocket, WsSettings
from venues.kraken import decode as kd
from venues.kraken.book_sync import BookSync
from venues.kraken.config import KrakenConfig
from venues.kraken.filters import PairRules
from venues.kraken.symbols import from_ws, to_ws

VENUE = "kraken"


def _ignore(_: object) -> None:
    return None


class KrakenMarketData(SocketFeed):
    """The ``MarketDataFeed`` of Kraken spot for ``books``' pairs (canonical symbol -> engine book)."""

    def __init__(
        self,
        config: KrakenConfig,
        rules: dict[str, PairRules],
        books: dict[str, Book],
        on_book: Callable[[Book], None],
        on_trade: Callable[[Trade], None] = _ignore,
        on_incident: Callable[[Incident], None] = _ignore,
        attempt_window: AttemptWindow | None = None,
        on_book_invalid: OnBookInvalid | None = None,
        on_levels: OnLevels | None = None,
    ) -> None:
        self.venue = VENUE
        self.config = config
        self.log = get_logger("market_data")
        self.xlog = get_logger("exchanges")
        missing = [s for s in books if s not in rules]
        if missing:
            raise ValueError(f"kraken market data: no pair rules for {missing}")
        self.books = books
        self.on_trade = on_trade
        self.on_incident = on_incident
        self.decoder = kd.FrameDecoder(self.log, "kraken market data")
        self.syncs: dict[str, BookSync] = {}
        self._by_wire: dict[str, str] = {}
        stale_ns = int(config.stale_data_timeout_s * 1e9)
        for sym, book in books.items():
            r = rules[sym]
            self._by_wire[to_ws(sym)] = sym
            self.syncs[sym] = BookSync(
                book,
                config.book_depth,
                r.price_decimals,
                r.qty_decimals,
                request_snapshot=lambda gen, s=sym: self._resubscribe(s),
                on_book=on_book,
                on_incident=on_incident,
                stale_after_ns=stale_ns,
                logger=self.log,
                on_invalid=on_book_invalid,
                on_levels=on_levels,
            )
        self._instruments: dict[str, Instrument] = {s: b.instrument for s, b in books.items()}
        self._req = itertools.count(1)
        self.ws = ReconnectingWebSocket(
            "kraken market data",
            lambda: self.config.ws_url,
            self._on_frame,
            ReconnectPolicy(config.reconnect, shared_window=attempt_window),
            self.xlog,
            WsSettings(
                ping_interval_s=config.ping_interval_s,
                ping_timeout_s=config.ping_timeout_s,
                max_silence_s=config.silence_reconnect_s,
                watchdog_interval_s=min(1.0, config.stale_data_timeout_s / 4),
            ),
            on_open=self._on_open,
            on_close=self._on_close,
            on_tick=self._on_tick,
        )
        self.trades = 0
        self.bad_trades = 0
        self.trades_unchecked = 0
        self.errors = 0
        self.resubscribes = 0
        self._band_k = config.trade_band_pct / 100.0

    # --- lifecycle ---------------------------------------------------------------------------------
    async def stop(self) -> None:
        await self.ws.stop()

    def warm(self) -> None:
        return None

    # --- requests ----------------------------------------------------------------------------------
    def _send(self, payload: dict) -> bool:
        try:
            self.ws.send_now(json.dumps(payload, separators=(",", ":")).encode())
        except ConnectionError:
            return False
        return True

    def _subscribe_book(self, symbols: list[str], method: str = "subscribe") -> bool:
        params: dict = {"channel": "book", "symbol": [to_ws(s) for s in symbols], "depth": self.config.book_depth}
        if method == "subscribe":
            params["snapshot"] = True
        return self._send({"method": method, "params": params, "req_id": next(self._req)})

    def _resubscribe(self, symbol: str) -> None:
        """A new snapshot for one pair: Kraken sends one only after a subscribe."""
        self.resubscribes += 1
        if self._subscribe_book([symbol], "unsubscribe"):
            self._subscribe_book([symbol])
            self.log.info(f"kraken {symbol}: book resubscribed for a new snapshot")
        # not connected: the next connection subscribes everything anyway

    # --- socket callbacks --------------------------------------------------------------------------
    async def _on_open(self, _ws: object) -> None:
        symbols = list(self.books)
        for sync in self.syncs.values():
            sync.subscribed()
        self._subscribe_book(symbols)
        self._send(
            {
                "method": "subscribe",
                "params": {"channel": "trade", "symbol": [to_ws(s) for s in symbols], "snapshot": False},
                "req_id": next(self._req),
            }
        )
        for sym in symbols:
            self.log.info(f"Subscribed to kraken:{sym}:orderbook (book depth {self.config.book_depth})")
            self.log.info(f"Subscribed to kraken:{sym}:trades")
        self._report_reconnect()

    def _on_close(self, reason: str) -> None:
        self._disconnected(reason)

    def _on_tick(self, now_ns: int) -> None:
        for sync in self.syncs.values():
            sync.check_stale(now_ns)

    def _on_frame(self, frame: bytes, ts_recv: int) -> None:
        msg = self.decoder.decode(frame)
        t = type(msg)
        if t is kd.BookMessage:
            for d in msg.data:  # type: ignore[union-attr]
                sym = self._by_wire.get(d.symbol)
                if sym is not None:
                    self.syncs[sym].on_message(msg.type, d, ts_recv)  # type: ignore[union-attr]
        elif t is kd.TradeMessage:
            for d in msg.data:  # type: ignore[union-attr]
                sym = self._by_wire.get(d.symbol)
                if sym is None:
                    continue
                inst = self._instruments[sym]
                try:
                    trades = kd.trades(
                        kd.TradeMessage("trade", "update", [d]), inst.price_scale, inst.size_scale, ts_recv
                    )
                except ValueError as exc:
                    self.log.warning(f"kraken {sym}: trade not in the pair's precision: {exc}")
                    continue
                for tr in trades:
                    self.trades += 1
                    if self._trade_ok(tr):
                        self.on_trade(tr)
        elif t is kd.Heartbeat:
            for sync in self.syncs.values():
                sync.touch(ts_recv)
        elif t is kd.MethodReply:
            if msg.success is False:  # type: ignore[union-attr]
                self.errors += 1
                self.xlog.warning(f"kraken market data: {msg.method} failed: {msg.error}")  # type: ignore[union-attr]
        elif t is kd.Status:
            for d in msg.data:  # type: ignore[union-attr]
                if d.system != "online":
                    self.xlog.warning(f"kraken system status: {d.system}")

    def _trade_ok(self, tr: Trade) -> bool:
        book = self.books.get(tr.symbol)
        if book is None or not book.valid:
            self.trades_unchecked += 1
            return False
        bb, ba = book.best_bid_fixed, book.best_ask_fixed
        ref2 = bb + ba if bb and ba else 2 * (bb or ba)
        p = tr.price_fixed
        if p > 0 and tr.size_fixed > 0 and ref2 > 0 and abs(2 * p - ref2) <= self._band_k * ref2:
            return True
        self.bad_trades += 1
        n = self.bad_trades
        if n <= 20 or n % 1000 == 0:
            detail = f"trade at {tr.price} size {tr.size} outside {self._band_k * 100:g}% of mid (#{n}); not passed on"
            self.log.warning(f"Implausible trade venue={VENUE} symbol={tr.symbol}: {detail}")
            self.on_incident(Incident(tr.ts_recv, VENUE, tr.symbol, "bad_trade", detail, tr.price))
        return False


__all__ = ["KrakenMarketData", "from_ws"]
