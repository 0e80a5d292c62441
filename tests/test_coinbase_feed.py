"""The Coinbase adapter's feed against the loopback fake: the book stays equal to the fake's,
through an injected sequence gap, silence, a heartbeat stop and a disconnect."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from engine.book import Book
from engine.events import Incident, Trade
from engine.venue import FeedCallbacks
from sim.fake_coinbase import FakeCoinbase
from venues.coinbase.adapter import CoinbaseAdapter
from venues.coinbase.config import load_config

P = "BAND-GBP"


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Rec:
    def __init__(self) -> None:
        self.books = 0
        self.trades: list[Trade] = []
        self.incidents: list[Incident] = []
        self.invalid: list[str] = []
        self.levels = 0

    def callbacks(self) -> FeedCallbacks:
        return FeedCallbacks(
            on_book=self._book,
            on_trade=self.trades.append,
            on_incident=self.incidents.append,
            on_levels=lambda b, bids, asks, snap: self._levels(),
            on_book_invalid=lambda b, r: self.invalid.append(r),
        )

    def _book(self, book: Book) -> None:
        assert book.valid
        self.books += 1

    def _levels(self) -> None:
        self.levels += 1

    def kinds(self) -> list[str]:
        return [i.kind for i in self.incidents]


def same(book: Book, fc: FakeCoinbase, n: int = 50) -> bool:
    bids, asks = fc.book(P, n)
    e8 = Decimal(10**8)
    want_b = [(int(p * e8), int(q * e8)) for p, q in bids]
    want_a = [(int(p * e8), int(q * e8)) for p, q in asks]
    return book.levels(1, n) == want_b and book.levels(-1, n) == want_a


async def setup(fc: FakeCoinbase, **over) -> tuple[CoinbaseAdapter, Book, Rec]:
    config = load_config(overrides={"rest_url": fc.rest_url, "ws_url": fc.ws_url, "symbols": [P], **over})
    config = dataclasses.replace(config, reconnect=dataclasses.replace(config.reconnect, initial_s=0.05, max_s=0.2))
    adapter = CoinbaseAdapter(config)
    inst = await adapter.load_instruments()
    book = Book(inst[P])
    rec = Rec()
    feed = adapter.market_data({P: book}, rec.callbacks())
    feed.start()
    return adapter, book, rec


async def test_instruments_from_the_fake_products() -> None:
    async with FakeCoinbase(interval_s=0.005, heartbeat_interval_s=0.2) as fc:
        adapter, _, _ = await setup(fc)
        try:
            i = adapter.instruments[P]
            assert (i.tick, i.lot, i.min_notional, i.price_scale) == (10**4, 10**6, 1.0, 8)
        finally:
            await adapter.close()


async def test_book_follows_the_replay_and_equals_the_fakes() -> None:
    async with FakeCoinbase(interval_s=0.002, heartbeat_interval_s=0.2) as fc:
        adapter, book, rec = await setup(fc)
        try:
            await until(lambda: fc.done.is_set(), 20, "replay end")
            await until(lambda: same(book, fc, 1000), 5, "book equal to the fake's")
            assert book.valid and rec.invalid == [] and rec.books >= 470 and rec.levels == rec.books
            assert not [k for k in rec.kinds() if k != "reconnect"]
            assert len(rec.trades) == 4 and all(t.symbol == P for t in rec.trades)
            feed = adapter.feed
            assert feed is not None and feed.heartbeats >= 1 and feed.seq.gaps == 0
            st = feed.status()
            assert st.connected and st.books[0].state == "synced" and st.books[0].valid
        finally:
            await adapter.close()


async def test_gap_invalidates_resubscribes_and_ends_equal() -> None:
    async with FakeCoinbase(interval_s=0.004, heartbeat_interval_s=0.2) as fc:
        adapter, book, rec = await setup(fc)
        try:
            await until(lambda: fc.pos > 50 and book.valid, 10, "book synced")
            fc.drop_updates(3)
            await until(lambda: "sequence_gap" in rec.kinds(), 10, "gap detected")
            assert rec.invalid[0] == "sequence_gap"
            await until(lambda: book.valid, 10, "book valid again")
            await until(lambda: fc.done.is_set(), 20, "replay end")
            await until(lambda: same(book, fc, 1000), 5, "book equal after the gap")
            feed = adapter.feed
            assert feed is not None and feed.syncs[P].gaps == 1 and feed.syncs[P].resyncs == 1
            assert fc.dropped == 3 and feed.ws.connects == 1  # resubscribed on the same connection
        finally:
            await adapter.close()


async def test_silence_makes_the_book_stale_then_valid_without_loss() -> None:
    async with FakeCoinbase(interval_s=0.004, heartbeat_interval_s=0.1) as fc:
        adapter, book, rec = await setup(fc, stale_data_timeout_s=0.3, heartbeat_timeout_s=5.0)
        try:
            await until(lambda: fc.pos > 30 and book.valid, 10, "book synced")
            fc.silence(0.8)
            await until(lambda: "stale_data" in rec.kinds(), 5, "stale detected")
            assert not book.valid and rec.invalid == ["stale_data"]
            await until(lambda: book.valid, 5, "book shown again")
            await until(lambda: fc.done.is_set(), 20, "replay end")
            await until(lambda: same(book, fc, 1000), 5, "book equal")
            assert "sequence_gap" not in rec.kinds()  # the fake held its frames back: nothing lost
        finally:
            await adapter.close()


async def test_heartbeat_timeout_reconnects_and_rebuilds() -> None:
    async with FakeCoinbase(interval_s=0.004, heartbeat_interval_s=0.1) as fc:
        adapter, book, rec = await setup(fc, stale_data_timeout_s=0.3, heartbeat_timeout_s=0.6)
        try:
            await until(lambda: book.valid, 10, "book synced")
            fc.silence(1.5, drop=True)  # the market moves on, nothing arrives
            await until(lambda: "disconnect" in rec.kinds(), 5, "watchdog reconnect")
            await until(
                lambda: adapter.feed is not None and adapter.feed.ws.connects >= 2 and book.valid, 10, "rebuilt"
            )
            await until(lambda: fc.done.is_set(), 20, "replay end")
            await until(lambda: same(book, fc, 1000), 5, "book equal after reconnect")
            assert rec.invalid[0] == "stale_data"
        finally:
            await adapter.close()


async def test_disconnect_reconnects_and_rebuilds() -> None:
    async with FakeCoinbase(interval_s=0.004, heartbeat_interval_s=0.2) as fc:
        adapter, book, rec = await setup(fc)
        try:
            await until(lambda: fc.pos > 40 and book.valid, 10, "book synced")
            assert fc.disconnect() == 1
            await until(lambda: "disconnect" in rec.kinds(), 5, "disconnect seen")
            assert rec.invalid == ["disconnect"]
            await until(lambda: "reconnect" in rec.kinds() and book.valid, 10, "reconnected")
            await until(lambda: fc.done.is_set(), 20, "replay end")
            await until(lambda: same(book, fc, 1000), 5, "book equal after reconnect")
        finally:
            await adapter.close()


async def test_unknown_product_is_symbol_not_found() -> None:
    from engine.errors import ConfigError

    async with FakeCoinbase(interval_s=0.005) as fc:
        config = load_config(overrides={"rest_url": fc.rest_url, "ws_url": fc.ws_url, "symbols": ["NOPE-USD"]})
        adapter = CoinbaseAdapter(config)
        try:
            with pytest.raises(ConfigError, match="Symbol not found on coinbase: NOPE-USD"):
                await adapter.load_instruments()
        finally:
            await adapter.close()


async def test_btc_usd_from_binance_data_relabelled_and_two_products_on_one_chain() -> None:
    """Both products on one connection: one sequence chain, a gap resyncs both, both books end
    equal to the fake's."""
    async with FakeCoinbase(
        interval_s=0.002, heartbeat_interval_s=0.2, products=("BAND-GBP", "BTC-USD"), btc_events=500
    ) as fc:
        config = load_config(
            overrides={"rest_url": fc.rest_url, "ws_url": fc.ws_url, "symbols": [P, "BTC-USD"]}, env={}
        )
        adapter = CoinbaseAdapter(config)
        inst = await adapter.load_instruments()
        assert (inst["BTC-USD"].tick, inst["BTC-USD"].lot) == (10**6, 1)
        books = {s: Book(inst[s]) for s in (P, "BTC-USD")}
        rec = Rec()
        feed = adapter.market_data(books, rec.callbacks())
        feed.start()
        try:
            await until(lambda: fc.pos > 100 and all(b.valid for b in books.values()), 10, "both synced")
            fc.drop_updates(1)
            await until(lambda: rec.kinds().count("sequence_gap") == 2, 10, "gap on both books")
            await until(lambda: fc.done.is_set(), 20, "replay end")
            e8 = Decimal(10**8)

            def equal(sym: str) -> bool:
                bids, asks = fc.book(sym, 1000)
                return books[sym].levels(1, 1000) == [(int(p * e8), int(q * e8)) for p, q in bids] and books[
                    sym
                ].levels(-1, 1000) == [(int(p * e8), int(q * e8)) for p, q in asks]

            await until(lambda: equal(P) and equal("BTC-USD"), 5, "both books equal")
            assert 60_000 < books["BTC-USD"].best_bid < books["BTC-USD"].best_ask < 63_000
            assert any(t.symbol == "BTC-USD" for t in rec.trades)
        finally:
            await adapter.close()
