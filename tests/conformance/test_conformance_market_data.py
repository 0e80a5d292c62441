"""Conformance, market data: every venue's feed against its fake over loopback keeps the engine's
book equal to the fake's, recovers from the venue's own integrity fault (Binance: dropped diffs,
Kraken: a bad checksum, Coinbase: a sequence gap) and from a disconnect, and never shows a
strategy an invalid book."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from harnesses import Market, VenueHarness, until

from engine.book import Book
from engine.runners import registry

DEPTH = 10


async def open_feed(h: VenueHarness) -> tuple[Any, Any, Book, Market]:
    adapter = h.adapter()
    assert adapter.name == h.venue and adapter.profile is registry.profile(h.venue)
    inst = (await adapter.load_instruments([h.symbol]))[h.symbol]
    book = Book(inst)
    market = Market()
    feed = adapter.market_data({h.symbol: book}, market.callbacks())
    feed.start()
    try:
        await until(lambda: feed.status().connected, what=f"{h.venue} market data connected")
        await settle(h, lambda: book.valid, f"{h.venue} first snapshot")
    except BaseException:
        await adapter.close()
        raise
    return adapter, feed, book, market


async def settle(h: VenueHarness, cond: Callable[[], bool], what: str) -> None:
    """Move the market a few events at a time until ``cond`` (a venue may need updates after its
    snapshot to be in sync, as Binance's procedure does)."""
    for _ in range(200):
        if cond():
            return
        await h.advance(5)
        await asyncio.sleep(0.01)
    await until(cond, 5, what)


def equal(h: VenueHarness, book: Book) -> bool:
    bids, asks = h.fake_levels(book.instrument, DEPTH)
    return book.valid and book.levels(1, DEPTH) == bids and book.levels(-1, DEPTH) == asks


async def test_book_equals_the_fakes_through_the_replay(harness: VenueHarness) -> None:
    h = harness
    adapter, feed, book, market = await open_feed(h)
    try:
        await until(lambda: equal(h, book), what="book equal after the snapshot")
        for _ in range(10):
            await h.advance(15)
            await until(lambda: equal(h, book), what="book equal after replayed updates")
        st = feed.status()
        assert st.venue == h.venue and st.connected
        (bs,) = st.books
        assert bs.symbol == h.symbol and bs.valid and bs.gaps == 0
        assert market.books > 0 and market.invalid == [] and market.invalid_served == 0
        assert adapter.status().status == "connected"
    finally:
        await adapter.close()


async def test_the_venues_own_integrity_fault_invalidates_resyncs_and_ends_equal(harness: VenueHarness) -> None:
    h = harness
    adapter, feed, book, market = await open_feed(h)
    try:
        await h.advance(10)
        await until(lambda: equal(h, book), what="book equal before the fault")
        h.inject_gap()
        for _ in range(400):
            if market.invalid:
                break
            await h.advance(1)
            await asyncio.sleep(0.005)
        await until(lambda: bool(market.invalid), 5, "the fault noticed")
        assert market.invalid[0] == h.gap_kind and market.valid_at_invalid == 0
        assert h.gap_kind in market.kinds()
        gap = next(i for i in market.incidents if i.kind == h.gap_kind)
        assert gap.venue == h.venue and gap.symbol in (h.symbol, "")
        await settle(h, lambda: book.valid, "book valid again")
        await h.advance(10)
        await until(lambda: equal(h, book), what="book equal after the resync")
        (bs,) = feed.status().books
        assert bs.gaps >= 1 and bs.resyncs >= 1 and bs.valid
        assert market.invalid_served == 0  # no strategy callback ever saw the invalid book
    finally:
        await adapter.close()


async def test_a_disconnect_invalidates_reconnects_and_ends_equal(harness: VenueHarness) -> None:
    h = harness
    adapter, feed, book, market = await open_feed(h)
    try:
        await h.advance(10)
        await until(lambda: equal(h, book), what="book equal before the disconnect")
        connects = feed.status().connects
        h.disconnect()
        await until(lambda: "disconnect" in market.invalid, what="disconnect seen")
        assert market.valid_at_invalid == 0 and "disconnect" in market.kinds()
        await until(lambda: feed.status().connects > connects, what="reconnected")
        await settle(h, lambda: book.valid, "a new snapshot after the reconnect")
        await h.advance(10)
        await until(lambda: equal(h, book), what="book equal after the reconnect")
        assert feed.status().connected and market.invalid_served == 0
    finally:
        await adapter.close()
