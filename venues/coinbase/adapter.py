"""Coinbase as the engine's ``VenueAdapter``: one connection set from ``config/exchanges/coinbase.json``.

Market data comes from Advanced Trade's public WebSocket (level2 with its per-connection
sequence numbers, heartbeats); instruments, orders and account queries from Coinbase Exchange's
REST API with the key + secret + passphrase the operator guide describes (README: why both).
A node asks, in this order: ``load_instruments``, ``market_data``, and for live trading
``connect_execution`` and ``account``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

from engine.book import Book
from engine.errors import ConfigError
from engine.events import Incident
from engine.messages import SYMBOL_NOT_FOUND
from engine.model import Instrument
from engine.venue import ExecSink, FeedCallbacks, VenueStatus
from venues.coinbase.account import CoinbaseAccount
from venues.coinbase.capture import CoinbaseCapture
from venues.coinbase.config import CoinbaseConfig, Credentials, load_config
from venues.coinbase.errors import CoinbaseApiError
from venues.coinbase.execution import CoinbaseExecutionClient
from venues.coinbase.feed import CoinbaseMarketData
from venues.coinbase.filters import ProductRules, parse_product, to_instrument
from venues.coinbase.profile import PROFILE
from venues.coinbase.rest import CoinbaseRest
from venues.coinbase.symbols import to_wire
from venues.coinbase.user_stream import CoinbaseUserStream
from venues.common.adapter import AdapterBase, with_symbols


def open_adapter(
    config_path: Path | str | None, symbols: list[str], env: Mapping[str, str] | None = None
) -> CoinbaseAdapter:
    """The registry's factory: the exchange config (``None``: the shipped one) for ``symbols``, keys
    from ``env`` (the process environment by default; none needed for market data)."""
    config = load_config(config_path) if config_path is not None else load_config()
    config = with_symbols(config, symbols)
    return CoinbaseAdapter(config, config.credentials(env))


class CoinbaseAdapter(AdapterBase[CoinbaseConfig, Credentials]):
    name = "coinbase"
    profile = PROFILE

    def __init__(
        self,
        config: CoinbaseConfig,
        credentials: Credentials | None = None,
        on_incident: Callable[[Incident], None] | None = None,
    ) -> None:
        super().__init__(config, credentials, on_incident)
        self.rest = CoinbaseRest(config, credentials, on_incident=self.incident)
        self.rules: dict[str, ProductRules] = {}
        self.instruments: dict[str, Instrument] = {}
        self.feed: CoinbaseMarketData | None = None
        self.execution: CoinbaseExecutionClient | None = None
        self.user_stream: CoinbaseUserStream | None = None

    async def load_instruments(self, symbols: list[str] | None = None) -> dict[str, Instrument]:
        """Each product's rules from ``GET /products/{id}`` (and the server clock from ``/time``)."""
        wanted = list(symbols) if symbols else list(self.config.symbols)
        where = self.config.path or "config/exchanges/coinbase.json"
        await self.rest.sync_time()
        fees = self.config.fees
        for sym in wanted:
            try:
                product = await self.rest.product(to_wire(sym))
            except ValueError as exc:
                raise ConfigError(where, f"symbols: {exc}") from None
            except CoinbaseApiError as exc:
                if exc.status != 404:
                    raise
                self.log.error(f"{SYMBOL_NOT_FOUND} on coinbase: {sym} ({exc.message})")
                raise ConfigError(where, f"{SYMBOL_NOT_FOUND} on coinbase: {sym}") from None
            rules = parse_product(product)
            self.rules[sym] = rules
            self.instruments[sym] = to_instrument(rules, fees.maker, fees.taker)
        return {s: self.instruments[s] for s in wanted}

    def market_data(self, books: dict[str, Book], callbacks: FeedCallbacks) -> CoinbaseMarketData:
        config = dataclasses.replace(self.config, symbols=tuple(books))
        self.feed = CoinbaseMarketData(
            config,
            self.instruments,
            callbacks.on_book,
            callbacks.on_trade,
            callbacks.on_incident,
            books,
            self.attempts,
            on_book_invalid=callbacks.on_book_invalid,
        )
        if callbacks.on_levels is not None:
            for sync in self.feed.syncs.values():
                sync.on_levels = callbacks.on_levels
        return self.feed

    def _require_credentials(self) -> None:
        if self.credentials is None:
            self.credentials = self.config.require_credentials()
            self.rest.credentials = self.credentials

    async def connect_execution(self, sink: ExecSink, subscribe_timeout_s: float = 10.0) -> CoinbaseExecutionClient:
        """Order entry on Coinbase Exchange REST, the authenticated ``user`` channel for order and
        fill events, and the poll under it (``execution``)."""
        if not self.instruments:
            await self.load_instruments()
        self._require_credentials()
        assert self.rest.signer is not None
        self.execution = CoinbaseExecutionClient(
            self.config, self.rest, sink, self.instruments, self.rules, self.config.poll_interval_s
        )
        self.user_stream = CoinbaseUserStream(
            self.config,
            self.rest.signer,
            list(self.instruments),
            self.execution.on_user_message,
            self.incident,
            lambda: self.rest.clock_offset_s,
            self.attempts,
        )
        self.user_stream.start()
        self.execution.start()
        try:
            await asyncio.wait_for(self.user_stream.subscribed.wait(), subscribe_timeout_s)
        except TimeoutError:
            self.log.warning(
                f"coinbase user channel not subscribed after {subscribe_timeout_s:.0f}s; "
                "order state is polled meanwhile"
            )
        return self.execution

    def capture(self, out_dir: Path, symbols: list[str]) -> CoinbaseCapture:
        """The raw capture of ``hft record`` (``venues.coinbase.capture``); attach it to the feed."""
        return CoinbaseCapture(out_dir, symbols)

    def account(self) -> CoinbaseAccount:
        self._require_credentials()
        return CoinbaseAccount(self.rest, self.instruments)

    def status(self) -> VenueStatus:
        md = self.feed.status() if self.feed is not None else None
        entry = None
        if self.execution is not None:
            stream = self.user_stream is not None and self.user_stream.connected
            entry = stream and not self.rest.outage.is_down
        return VenueStatus(self.name, md, entry)

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        if self.execution is not None:
            await self.execution.stop()
        if self.user_stream is not None:
            await self.user_stream.stop()
        await self.rest.close()

    stop = close
