"""Market data: a venue's feed keeps the engine's books in sync with the venue's own algorithm.

A feed writes the ``Book`` objects it was given (the engine's), so strategies read the memory
the feed writes. It calls, synchronously and in this order for every venue message it applies:
``on_levels`` (when set: the levels the message set, for a simulated venue matching on the same
book in paper trading), then ``on_book`` when the book is valid (in sync, not crossed, not stale).
``on_book_invalid(book, reason)`` comes once each time a valid book stops being valid (a gap, a
crossed book, stale data, a disconnect, a resync, an implausible update id), before anything else
of that moment: the engine pulls the quotes that rest on it. The next ``on_book`` means it is valid
again. Trades go to ``on_trade``; gaps, resyncs, disconnects and stale data also to ``on_incident``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from engine.book import Book
    from engine.events import Incident, Trade

#: ``on_levels(book, bids, asks, snapshot)``: the (price, size) rows a message set on each side,
#: fixed point, after they were applied; ``snapshot`` when the book was rebuilt from them
OnLevels = Callable[["Book", np.ndarray, np.ndarray, bool], None]


@dataclass(frozen=True, slots=True)
class BookStatus:
    symbol: str
    state: str  # idle | buffering | synced (the venue's sync procedure)
    valid: bool  # shown to strategies
    stale: bool
    update_id: int
    last_recv_ns: int
    gaps: int
    resyncs: int


@dataclass(frozen=True, slots=True)
class FeedStatus:
    venue: str
    connected: bool
    connects: int
    books: tuple[BookStatus, ...]


#: ``on_book_invalid(book, reason)``: ``reason`` is an incident kind (``sequence_gap``, ...)
OnBookInvalid = Callable[["Book", str], None]


@dataclass(frozen=True, slots=True)
class FeedCallbacks:
    on_book: Callable[[Book], None]
    on_trade: Callable[[Trade], None]
    on_incident: Callable[[Incident], None]
    on_levels: OnLevels | None = None
    on_book_invalid: OnBookInvalid | None = None


class MarketDataFeed(Protocol):
    venue: str
    books: dict[str, Book]  # canonical symbol -> the book this feed keeps in sync

    def start(self) -> asyncio.Task[None]:
        """Connect and subscribe; the task runs until ``stop``."""

    async def stop(self) -> None: ...

    def reconnect(self, reason: str = "operator request") -> None:
        """Drop the connection and connect again (every book is rebuilt)."""

    def resync(self, symbol: str, reason: str = "operator request") -> None:
        """Rebuild one book from a fresh snapshot."""

    def status(self) -> FeedStatus: ...

    def warm(self) -> None:
        """The feed's part of a path-warmer pass: its book-update code on a scratch copy (may do
        nothing)."""
