"""Wiring of one Binance spot connection set: REST, market data, WS API user stream, execution.

The live and paper runners build one ``BinanceAdapter`` from ``config/exchanges/binance.json``:
``load_instruments()`` first (the engine needs the instruments and their filters to build its
books), then ``start()`` with the engine's callbacks. The REST client and the WS API share one
weight limiter, as Binance counts both against the same IP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from engine.book import Book
from engine.events import Incident, Trade
from engine.logs import get_logger
from engine.model import Instrument
from engine.venue import ExecSink
from venues.binance.config import BinanceConfig, Credentials
from venues.binance.decode import BookTop
from venues.binance.execution import BinanceExecutionClient
from venues.binance.feed import BinanceMarketData
from venues.binance.filters import SymbolFilters, parse_filters, to_instrument
from venues.binance.rest import BinanceRest
from venues.binance.symbols import to_wire
from venues.binance.user_stream import BinanceUserStream
from venues.binance.ws_api import BinanceWsApi
from venues.common.backoff import AttemptWindow
from venues.common.loop import batches_writes

T = TypeVar("T")


class BinanceAdapter:
    def __init__(
        self,
        config: BinanceConfig,
        credentials: Credentials | None = None,
        on_incident: Callable[[Incident], None] | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.log = get_logger("exchanges")
        self._on_incident = on_incident
        self.rest = BinanceRest(config, credentials, on_incident=self.incident)
        # one connection-attempt budget per IP for every socket this adapter opens
        rc = config.reconnect
        self.attempts = AttemptWindow(rc.max_attempts_per_window, rc.window_s)
        self.filters: dict[str, SymbolFilters] = {}
        self.instruments: dict[str, Instrument] = {}
        self.feed: BinanceMarketData | None = None
        self.ws_api: BinanceWsApi | None = None
        self.user_stream: BinanceUserStream | None = None
        self.execution: BinanceExecutionClient | None = None

    def incident(self, inc: Incident) -> None:
        if self._on_incident is not None:
            self._on_incident(inc)

    async def load_instruments(self) -> dict[str, Instrument]:
        """Measure the server clock and read the configured symbols' filters from exchangeInfo."""
        await self.rest.start()
        await self.rest.sync_time()
        info = await self.rest.exchange_info([to_wire(s) for s in self.config.symbols])
        fees = self.config.fees
        for s in info.symbols:
            f = parse_filters(s)
            if f.symbol in self.config.symbols:
                self.filters[f.symbol] = f
                self.instruments[f.symbol] = to_instrument(f, fees.maker, fees.taker)
        missing = [s for s in self.config.symbols if s not in self.filters]
        if missing:
            raise ValueError(f"Symbol not found on binance: {', '.join(missing)}")
        return self.instruments

    async def start(
        self,
        on_book: Callable[[Book], None],
        on_trade: Callable[[Trade], None],
        sink: ExecSink | None = None,
        books: dict[str, Book] | None = None,
        on_top: Callable[[BookTop], None] | None = None,
        on_balances: Callable[[dict[str, tuple[int, int]], int], None] | None = None,
        subscribe_timeout_s: float = 10.0,
    ) -> None:
        """Start market data and, with a sink and API keys, the user stream and order entry."""
        if not self.instruments:
            await self.load_instruments()
        if sink is not None:
            if self.credentials is None:
                self.credentials = self.config.require_credentials()
                self.rest.credentials = self.credentials
            self.ws_api = BinanceWsApi(
                self.config, self.credentials, self.rest.clock, self.rest.limiter, attempt_window=self.attempts
            )
            self.execution = BinanceExecutionClient(
                self.config, self.rest, sink, self.instruments, self.filters, ws_api=self.ws_api
            )
            self.user_stream = BinanceUserStream(
                self.ws_api, self.execution.on_execution_report, on_balances, self.incident
            )
            self.ws_api.start()
            pool = self.rest.open_order_connections()
            try:
                await asyncio.wait_for(self.user_stream.subscribed.wait(), subscribe_timeout_s)
            except TimeoutError:
                self.log.warning(f"binance user data stream not subscribed after {subscribe_timeout_s:.0f}s; retrying")
            rest_entry = pool is not None and self.config.order_entry == "rest"
            if rest_entry and pool is not None and not await pool.wait_ready(subscribe_timeout_s):
                self.log.warning("binance order connections not open yet; orders use the ordinary REST session")
        if self.execution is not None and not batches_writes(asyncio.get_running_loop()):
            # uvloop already sends what one market event wrote together, after the event's callbacks
            on_book, on_trade = _corked(self.execution, on_book), _corked(self.execution, on_trade)
        self.feed = BinanceMarketData(
            self.config, self.rest, self.instruments, on_book, on_trade, self.incident, on_top, books, self.attempts
        )
        self.feed.start()

    async def stop(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        if self.execution is not None:
            await self.execution.drain(timeout_s=5.0)
        if self.ws_api is not None:
            await self.ws_api.stop()
        await self.rest.close()


def _corked(execution: BinanceExecutionClient, callback: Callable[[T], None]) -> Callable[[T], None]:
    """``callback`` with the order connections corked: the orders one market event causes leave
    together, in one write per connection, when the engine is done with the event."""
    cork, uncork = execution.cork, execution.uncork

    def wrapped(arg: T) -> None:
        cork()
        try:
            callback(arg)
        finally:
            uncork()

    return wrapped
