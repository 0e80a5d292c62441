"""The connection lifecycle and status every venue's market-data feed shares.

A venue feed owns one ``ReconnectingWebSocket`` (``ws``) and one book sync per symbol
(``syncs``, writing ``books``). Starting, reconnecting on request, a resync on request, the
``FeedStatus`` the operator API shows, and what a reconnect and a disconnect report are the same
on every venue and live in ``SocketFeed``; decoding and applying frames stay in each venue's feed,
so nothing here is on the per-frame path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from engine.book import Book
from engine.events import Incident
from engine.venue.feed import BookStatus, FeedStatus
from venues.common.ws import ReconnectingWebSocket


class Sync(Protocol):
    """What ``SocketFeed`` reads and asks of a venue's per-symbol book sync."""

    state: str
    stale: bool
    last_recv_ns: int
    gaps: int
    resyncs: int

    def resync(self, reason: str, ts: int) -> None: ...

    def reset(self, reason: str, notify: bool = True) -> None: ...


class SocketFeed:
    """Mixin for a venue feed class: set ``venue``, ``ws``, ``books``, ``syncs`` and
    ``on_incident`` in ``__init__``; ``stop`` and the socket callbacks stay the venue's own."""

    venue: str
    ws: ReconnectingWebSocket
    books: dict[str, Book]
    syncs: dict[str, Sync]
    on_incident: Callable[[Incident], None]

    def start(self) -> asyncio.Task[None]:
        return self.ws.start()

    def reconnect(self, reason: str = "operator request") -> None:
        self.ws.reconnect_now(reason)

    def resync(self, symbol: str, reason: str = "operator request") -> None:
        """Rebuild one book from a fresh snapshot (the operator API's snapshot endpoint)."""
        self.syncs[symbol].resync(reason, time.time_ns())

    @property
    def connected(self) -> bool:
        return self.ws.connected.is_set()

    def status(self) -> FeedStatus:
        return FeedStatus(
            self.venue,
            self.connected,
            self.ws.connects,
            tuple(
                BookStatus(
                    sym,
                    sync.state,
                    self.books[sym].valid,
                    sync.stale,
                    self.books[sym].update_id,
                    sync.last_recv_ns,
                    sync.gaps,
                    sync.resyncs,
                )
                for sym, sync in self.syncs.items()
            ),
        )

    def _report_reconnect(self) -> None:
        """From ``on_open``: every connection after the first is a ``reconnect`` incident."""
        if self.ws.connects > 1:
            self.on_incident(
                Incident(time.time_ns(), self.venue, "", "reconnect", f"market data connection {self.ws.connects}")
            )

    def _disconnected(self, reason: str, book_reason: str = "disconnected") -> None:
        """From ``on_close``: every book is invalid until resynced; a ``disconnect`` incident
        unless the session is stopping (then no incident and no ``on_book_invalid`` either)."""
        now = time.time_ns()
        ours = self.ws.stopping
        for sync in self.syncs.values():
            sync.reset(book_reason, notify=not ours)
        if not ours:
            self.on_incident(Incident(now, self.venue, "", "disconnect", f"market data: {reason}"))
