"""Binance spot as the engine's ``VenueAdapter``: one connection set (REST, market data, WS API user
stream, execution) from ``config/exchanges/binance.json``.

A node asks, in this order: ``load_instruments`` (the engine needs the filters to build its
books), ``market_data`` (a feed writing the engine's books), and for live trading
``connect_execution`` and ``account``. The REST client and the WS API share one weight limiter,
as Binance counts both against the same IP; every socket shares one connection-attempt budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from engine.book import Book
from engine.errors import ConfigError
from engine.events import Incident, Trade
from engine.model import Instrument
from engine.venue import ExecSink, FeedCallbacks, VenueStatus
from venues.binance.account import BinanceAccount
from venues.binance.capture import BinanceCapture
from venues.binance.config import BinanceConfig, Credentials, load_config
from venues.binance.decode import BookTop
from venues.binance.errors import BAD_SYMBOL, BinanceApiError, BinanceError
from venues.binance.execution import BinanceExecutionClient
from venues.binance.feed import BinanceMarketData
from venues.binance.filters import SymbolFilters, parse_filters, to_instrument
from venues.binance.profile import PROFILE
from venues.binance.rest import BinanceRest
from venues.binance.symbols import to_wire
from venues.binance.user_stream import BinanceUserStream
from venues.binance.warmup import warm_depth_path
from venues.binance.ws_api import BinanceWsApi
from venues.common.adapter import AdapterBase, with_symbols
from venues.common.loop import batches_writes

T = TypeVar("T")


def open_adapter(
    config_path: Path | str | None, symbols: list[str], env: Mapping[str, str] | None = None
) -> BinanceAdapter:
    """The registry's factory: the exchange config (``None``: the shipped one) for ``symbols``,
    keys from ``env`` (the process environment by default; none needed for market data)."""
    config = load_config(config_path) if config_path is not None else load_config()
    config = with_symbols(config, symbols)
    return BinanceAdapter(config, config.credentials(env))


class BinanceAdapter(AdapterBase[BinanceConfig, Credentials]):
    name = "binance"
    profile = PROFILE

    def __init__(
        self,
        config: BinanceConfig,
        credentials: Credentials | None = None,
        on_incident: Callable[[Incident], None] | None = None,
    ) -> None:
        super().__init__(config, credentials, on_incident)
        self.rest = BinanceRest(config, credentials, on_incident=self.incident)
        self.filters: dict[str, SymbolFilters] = {}
        self.instruments: dict[str, Instrument] = {}
        self.feed: BinanceMarketData | None = None
        self.ws_api: BinanceWsApi | None = None
        self.user_stream: BinanceUserStream | None = None
        self.execution: BinanceExecutionClient | None = None

    @property
    def endpoint(self) -> str:
        """Where this adapter's requests go (for an operator's error lines)."""
        return self.config.rest_url

    async def load_instruments(self, symbols: list[str] | None = None) -> dict[str, Instrument]:
        """Measure the server clock and read the symbols' filters from exchangeInfo (default: the
        config's symbols)."""
        wanted = list(symbols) if symbols else list(self.config.symbols)
        await self.rest.start()
        await self.rest.sync_time()
        try:
            info = await self.rest.exchange_info([to_wire(s) for s in wanted])
        except BinanceApiError as exc:
            if exc.code != BAD_SYMBOL:
                raise
            # Binance answers a list naming an unknown symbol with -1121 and no symbols at all
            self.log.error(f"Symbol not found on binance: one of {', '.join(wanted)} ({exc.msg})")
            raise ConfigError(
                self.config.path or "config/exchanges/binance.json",
                f"Symbol not found on binance: one of {', '.join(wanted)}",
            ) from None
        fees = self.config.fees
        for s in info.symbols:
            f = parse_filters(s)
            if f.symbol in wanted:
                self.filters[f.symbol] = f
                self.instruments[f.symbol] = to_instrument(f, fees.maker, fees.taker)
        missing = [s for s in wanted if s not in self.filters]
        if missing:
            self.log.error(f"Symbol not found on binance: {', '.join(missing)} (not in exchangeInfo)")
            raise ConfigError(
                self.config.path or "config/exchanges/binance.json",
                f"Symbol not found on binance: {', '.join(missing)}",
            )
        return dict(self.instruments)

    def market_data(
        self, books: dict[str, Book], callbacks: FeedCallbacks, on_top: Callable[[BookTop], None] | None = None
    ) -> BinanceMarketData:
        """The feed of ``books``' symbols, writing those books."""
        on_book, on_trade = callbacks.on_book, callbacks.on_trade
        if not batches_writes(asyncio.get_running_loop()):
            # uvloop already sends what one market event wrote together, after the event's callbacks
            on_book, on_trade = self._corked(on_book), self._corked(on_trade)
        for sym in books:  # before the feed connects: no frame waits while numba compiles
            inst = self.instruments.get(sym)
            if inst is not None:
                try:
                    took = warm_depth_path(inst)
                except (RuntimeError, ValueError) as exc:  # the first real message compiles instead
                    self.log.warning("depth path not warmed for %s: %s", sym, exc)
                else:
                    self.log.info("depth path ready for binance:%s in %.0f ms", sym, took * 1000)
        config = dataclasses.replace(self.config, symbols=tuple(books))
        self.feed = BinanceMarketData(
            config,
            self.rest,
            self.instruments,
            on_book,
            on_trade,
            callbacks.on_incident,
            on_top,
            books,
            self.attempts,
            on_book_invalid=callbacks.on_book_invalid,
        )
        if callbacks.on_levels is not None:
            for sync in self.feed.syncs.values():
                sync.on_levels = callbacks.on_levels
        return self.feed

    async def connect_execution(
        self,
        sink: ExecSink,
        on_balances: Callable[[dict[str, tuple[int, int]], int], None] | None = None,
        subscribe_timeout_s: float = 10.0,
    ) -> BinanceExecutionClient:
        """Order entry (WS API or REST, per ``order_entry``) and the user-data stream."""
        if not self.instruments:
            await self.load_instruments()
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
        self.user_stream.on_subscribed.append(self._after_subscribe())
        self.ws_api.start()
        pool = self.rest.open_order_connections()
        try:
            await asyncio.wait_for(self.user_stream.subscribed.wait(), subscribe_timeout_s)
        except TimeoutError:
            self.log.warning(f"binance user data stream not subscribed after {subscribe_timeout_s:.0f}s; retrying")
        rest_entry = pool is not None and self.config.order_entry == "rest"
        if rest_entry and pool is not None and not await pool.wait_ready(subscribe_timeout_s):
            self.log.warning("binance order connections not open yet; orders use the ordinary REST session")
        return self.execution

    def _after_subscribe(self) -> Callable[[], None]:
        """What to do when the user-data subscription is (back) in place: after a resubscribe,
        ask Binance about our orders, since whatever they did while the stream was down was told
        to nobody (``BinanceExecutionClient.reconcile`` books what they filled meanwhile)."""
        first = True
        tasks: set[asyncio.Task[None]] = set()

        async def catch_up() -> None:
            if self.execution is None:
                return
            try:
                await self.execution.reconcile()
            except (BinanceError, ValueError) as exc:
                self.log.warning(f"binance orders not reconciled after the user stream came back: {exc}")

        def subscribed() -> None:
            nonlocal first
            if first:
                first = False
                return
            task = asyncio.get_running_loop().create_task(catch_up())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        return subscribed

    def capture(self, out_dir: Path, symbols: list[str]) -> BinanceCapture:
        """The raw capture of ``hft record`` (``venues.binance.capture``); attach it to the feed."""
        return BinanceCapture(self.rest, out_dir, symbols)

    def account(self) -> BinanceAccount:
        if self.credentials is None:
            self.credentials = self.config.require_credentials()
            self.rest.credentials = self.credentials
        return BinanceAccount(self.rest, self.filters)

    def status(self) -> VenueStatus:
        md = self.feed.status() if self.feed is not None else None
        entry = None
        if self.execution is not None:
            entry = self.ws_api.connected if self.ws_api is not None and self.config.order_entry == "ws" else True
            # fills arrive on the user-data subscription: until it is back, order entry is not whole
            entry = entry and (self.user_stream is None or self.user_stream.subscribed.is_set())
        return VenueStatus(self.name, md, entry)

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
        """Everything at once, for tools and tests: market data for the config's symbols and, with
        a sink, order entry."""
        if not self.instruments:
            await self.load_instruments()
        if sink is not None:
            await self.connect_execution(sink, on_balances, subscribe_timeout_s)
        books = {s: (books or {}).get(s) or Book(self.instruments[s]) for s in self.config.symbols}
        feed = self.market_data(books, FeedCallbacks(on_book, on_trade, self.incident), on_top)
        feed.start()

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        if self.execution is not None:
            await self.execution.drain(timeout_s=5.0)
        if self.ws_api is not None:
            await self.ws_api.stop()
        await self.rest.close()

    stop = close

    def _corked(self, callback: Callable[[T], None]) -> Callable[[T], None]:
        """``callback`` with the order connections corked: the orders one market event causes leave
        together, in one write per connection, when the engine is done with the event."""

        def wrapped(arg: T) -> None:
            execution = self.execution
            if execution is None:
                callback(arg)
                return
            execution.cork()
            try:
                callback(arg)
            finally:
                execution.uncork()

        return wrapped
