"""A live venue as the node sees it: the parts every venue package provides, the same for all.

The composition root (``engine.runners``) gets one ``VenueAdapter`` per venue from the venue
registry and builds a node from its parts: instruments first (the books need their ticks), then
a market-data feed writing the engine's books, then, for live trading, an execution client and
account queries for the start-up reconciliation. Nothing here knows a wire format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from engine.book import Book
    from engine.events import Incident
    from engine.model import Instrument
    from engine.venue.account import AccountClient
    from engine.venue.execution import ExecSink, ExecutionClient
    from engine.venue.feed import FeedCallbacks, FeedStatus, MarketDataFeed
    from engine.venue.profile import VenueProfile


@dataclass(frozen=True, slots=True)
class VenueStatus:
    """What an operator reads about a venue connection set."""

    venue: str
    market_data: FeedStatus | None
    order_entry_connected: bool | None  # None: no order entry in this mode
    detail: str = ""

    @property
    def status(self) -> str:
        """``connected`` when everything this mode uses is up, else ``degraded``/``disconnected``."""
        md = self.market_data
        parts = [md.connected] if md is not None else []
        if self.order_entry_connected is not None:
            parts.append(self.order_entry_connected)
        if parts and all(parts):
            return "connected"
        return "degraded" if any(parts) else "disconnected"


class VenueAdapter(Protocol):
    name: str
    profile: VenueProfile

    def set_incident_sink(self, on_incident: Callable[[Incident], None]) -> None:
        """Where the adapter's own incidents go from now on: rate limits, bans, outages of its
        REST API, drops of its private stream (the feed's go through ``FeedCallbacks``). The node
        points it at its engine as soon as the engine exists, so each becomes an incident row."""

    async def load_instruments(self, symbols: list[str]) -> dict[str, Instrument]:
        """Canonical symbol -> instrument with the venue's current filters; raises ``HftError``
        naming what is missing."""

    def market_data(self, books: dict[str, Book], callbacks: FeedCallbacks) -> MarketDataFeed:
        """A feed that keeps ``books`` (canonical symbol -> the engine's book) in sync."""

    async def connect_execution(self, sink: ExecSink) -> ExecutionClient:
        """Order entry and the private stream (orders, fills) reporting to ``sink``; needs keys."""

    def account(self) -> AccountClient:
        """Account queries (open orders, balances, recent fills) with the same keys."""

    def status(self) -> VenueStatus: ...

    async def close(self) -> None:
        """Stop every connection; pending answers are waited for briefly, not dropped silently."""
