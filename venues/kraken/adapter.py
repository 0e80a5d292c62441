"""Kraken spot as the engine's ``VenueAdapter``: REST (instruments, account), the public WebSocket
v2 feed and, for trading, the private WebSocket v2 (order entry and the ``executions`` channel),
from ``config/exchanges/kraken.json``.

A node asks, in this order: ``load_instruments`` (AssetPairs: the pairs' decimals, which are both
the engine's fixed-point scales and the book checksum's precision), ``market_data``, and for live
trading ``connect_execution`` and ``account``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from engine.book import Book
from engine.errors import ConfigError
from engine.events import Incident
from engine.messages import SYMBOL_NOT_FOUND
from engine.model import Instrument
from engine.venue import ExecSink, FeedCallbacks, VenueStatus
from venues.common.adapter import AdapterBase, with_symbols
from venues.kraken.account import KrakenAccount
from venues.kraken.capture import KrakenCapture
from venues.kraken.config import Credentials, KrakenConfig, load_config
from venues.kraken.errors import KrakenApiError
from venues.kraken.execution import KrakenExecutionClient
from venues.kraken.feed import KrakenMarketData
from venues.kraken.filters import PairRules, parse_pair, to_instrument
from venues.kraken.profile import PROFILE
from venues.kraken.rest import KrakenRest
from venues.kraken.signing import NonceSource
from venues.kraken.symbols import from_ws, to_altname


def open_adapter(
    config_path: Path | str | None, symbols: list[str], env: Mapping[str, str] | None = None
) -> KrakenAdapter:
    """The registry's factory: the exchange config (``None``: the shipped one) for ``symbols``,
    keys from ``env`` (the process environment by default; none needed for market data)."""
    config = load_config(config_path, env=env) if config_path is not None else load_config(env=env)
    config = with_symbols(config, symbols)
    return KrakenAdapter(config, config.credentials(env))


class KrakenAdapter(AdapterBase[KrakenConfig, Credentials]):
    name = "kraken"
    profile = PROFILE

    def __init__(
        self,
        config: KrakenConfig,
        credentials: Credentials | None = None,
        on_incident: Callable[[Incident], None] | None = None,
        nonces: NonceSource | None = None,
    ) -> None:
        super().__init__(config, credentials, on_incident)
        self.rest = KrakenRest(config, credentials, on_incident=self.incident, nonces=nonces)
        self.rules: dict[str, PairRules] = {}
        self.instruments: dict[str, Instrument] = {}
        self.feed: KrakenMarketData | None = None
        self.execution: KrakenExecutionClient | None = None

    async def load_instruments(self, symbols: list[str] | None = None) -> dict[str, Instrument]:
        wanted = list(symbols) if symbols else list(self.config.symbols)
        where = self.config.path or "config/exchanges/kraken.json"
        try:
            result = await self.rest.asset_pairs([to_altname(s) for s in wanted])
        except KrakenApiError as exc:
            self.log.error(f"{SYMBOL_NOT_FOUND} on kraken: one of {', '.join(wanted)} ({exc.text})")
            raise ConfigError(where, f"{SYMBOL_NOT_FOUND} on kraken: one of {', '.join(wanted)}") from None
        fees = self.config.fees
        for key, info in result.items():
            try:
                rules = parse_pair(key, info)
            except ValueError as exc:
                self.log.warning(f"kraken AssetPairs: {exc}")
                continue
            if rules.symbol in wanted:
                self.rules[rules.symbol] = rules
                self.instruments[rules.symbol] = to_instrument(rules, fees.maker, fees.taker)
        missing = [s for s in wanted if s not in self.rules]
        if missing:
            self.log.error(f"{SYMBOL_NOT_FOUND} on kraken: {', '.join(missing)} (not in AssetPairs)")
            raise ConfigError(where, f"{SYMBOL_NOT_FOUND} on kraken: {', '.join(missing)}")
        return dict(self.instruments)

    def market_data(self, books: dict[str, Book], callbacks: FeedCallbacks) -> KrakenMarketData:
        self.feed = KrakenMarketData(
            self.config,
            self.rules,
            books,
            callbacks.on_book,
            callbacks.on_trade,
            callbacks.on_incident,
            self.attempts,
            on_book_invalid=callbacks.on_book_invalid,
            on_levels=callbacks.on_levels,
        )
        return self.feed

    async def connect_execution(self, sink: ExecSink, subscribe_timeout_s: float = 10.0) -> KrakenExecutionClient:
        if not self.instruments:
            await self.load_instruments()
        self._require_credentials()
        self.execution = KrakenExecutionClient(
            self.config, self.rest, sink, self.instruments, self.rules, self.attempts, self.incident
        )
        await self.execution.start(subscribe_timeout_s)
        return self.execution

    def capture(self, out_dir: Path, symbols: list[str]) -> KrakenCapture:
        """The raw capture of ``hft record`` (``venues.kraken.capture``); attach it to the feed."""
        return KrakenCapture(out_dir, self.rules, symbols, self.config.book_depth)

    def account(self) -> KrakenAccount:
        self._require_credentials()
        return KrakenAccount(self.rest, self.rules, self.instruments)

    def _require_credentials(self) -> None:
        if self.credentials is None:
            self.credentials = self.config.require_credentials()
        self.rest.credentials = self.credentials

    def status(self) -> VenueStatus:
        md = self.feed.status() if self.feed is not None else None
        entry = self.execution.connected if self.execution is not None else None
        return VenueStatus(self.name, md, entry)

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        if self.execution is not None:
            await self.execution.stop()
        await self.rest.close()

    stop = close


__all__ = ["KrakenAdapter", "from_ws", "open_adapter"]
