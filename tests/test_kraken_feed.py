"""The Kraken adapter's feed against the fake Kraken over loopback: instruments from AssetPairs, a
book equal to the fake's after every step of a real (re-labelled) capture, and recovery from an
injected bad checksum, lost updates and a disconnect: invalid at once, an incident, a new snapshot,
equal again."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.book import Book
from engine.errors import ConfigError
from engine.venue import FeedCallbacks
from sim.fake_kraken import FakeKraken
from venues.kraken.adapter import KrakenAdapter
from venues.kraken.config import parse_config
from venues.kraken.decode import to_fixed


def config(fk: FakeKraken, symbols=("BTC-USD",)):
    return parse_config(
        {
            "rest_url": fk.rest_url,
            "ws_url": fk.ws_url,
            "ws_auth_url": fk.ws_auth_url,
            "symbols": list(symbols),
            "reconnect": {"initial_delay_s": 0.05, "max_delay_s": 0.2},
        },
        "kraken-test.json",
        env={},
    )


async def until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def same_book(book: Book, fk: FakeKraken, wsname: str, depth: int = 10) -> bool:
    fb = fk.book(wsname)
    ps, ss = book.instrument.price_scale, book.instrument.size_scale
    want_b = [(to_fixed(p, ps), to_fixed(q, ss)) for p, q in fb.top("bid", depth)]
    want_a = [(to_fixed(p, ps), to_fixed(q, ss)) for p, q in fb.top("ask", depth)]
    return book.levels(1, depth + 5) == want_b and book.levels(-1, depth + 5) == want_a


class Recorder:
    def __init__(self):
        self.books = 0
        self.trades = []
        self.incidents = []
        self.invalid = []

    def callbacks(self):
        def on_book(b):
            assert b.valid
            self.books += 1

        return FeedCallbacks(
            on_book,
            self.trades.append,
            self.incidents.append,
            on_book_invalid=lambda b, r: self.invalid.append(r),
        )


@pytest.fixture
def run():
    def go(coro):
        return asyncio.run(asyncio.wait_for(coro, 60))

    return go


def test_instruments_from_asset_pairs_and_unknown_symbol(run):
    async def main():
        async with FakeKraken(data=None) as fk:
            ad = KrakenAdapter(config(fk, ("BTC-USD", "ETH-USD", "MATIC-USD")))
            inst = await ad.load_instruments()
            assert inst["BTC-USD"].price_scale == 2 and inst["MATIC-USD"].price_scale == 4
            assert inst["ETH-USD"].size_scale == 8 and inst["BTC-USD"].venue_symbol == "XBTUSD"
            bad = KrakenAdapter(config(fk, ("NOPE-USD",)))
            with pytest.raises(ConfigError, match="Symbol not found on kraken"):
                await bad.load_instruments()
            await ad.close()
            await bad.close()

    run(main())


def test_feed_keeps_the_fakes_book_through_the_replay_and_faults(run):
    async def main():
        async with FakeKraken(speed=0, start="manual", max_records=4000) as fk:
            ad = KrakenAdapter(config(fk))
            inst = await ad.load_instruments()
            book = Book(inst["BTC-USD"])
            rec = Recorder()
            feed = ad.market_data({"BTC-USD": book}, rec.callbacks())
            feed.start()
            await until(lambda: book.valid, what="first snapshot")
            assert same_book(book, fk, "BTC/USD")
            for _ in range(30):
                await fk.advance(20)
                await until(lambda: same_book(book, fk, "BTC/USD"), what="book equal after replay")
            assert rec.books > 10 and book.valid

            # a bad checksum: invalid, sequence_gap incident, resubscribed, equal again
            fk.bad_checksum(1)
            resyncs = feed.syncs["BTC-USD"].resyncs
            while feed.syncs["BTC-USD"].gaps == 0:
                await fk.advance(1)
                await asyncio.sleep(0.01)
            assert "sequence_gap" in rec.invalid
            assert any(i.kind == "sequence_gap" and "checksum" in i.detail for i in rec.incidents)
            await until(lambda: book.valid and feed.syncs["BTC-USD"].resyncs > resyncs, what="resync")
            await until(lambda: same_book(book, fk, "BTC/USD"), what="equal after checksum fault")

            # lost updates: the next checksum tells, and the book is rebuilt
            gaps = feed.syncs["BTC-USD"].gaps
            fk.drop_updates(2)
            while feed.syncs["BTC-USD"].gaps == gaps:
                await fk.advance(1)
                await asyncio.sleep(0.01)
            await until(lambda: book.valid, what="valid after lost updates")
            await fk.advance(40)
            await until(lambda: same_book(book, fk, "BTC/USD"), what="equal after lost updates")

            # a disconnect: invalid, reconnected, a new snapshot
            fk.disconnect()
            await until(lambda: "disconnect" in rec.invalid, what="disconnect seen")
            await until(lambda: book.valid and feed.ws.connects >= 2, what="reconnected")
            await fk.advance(40)
            await until(lambda: same_book(book, fk, "BTC/USD"), what="equal after reconnect")
            assert any(i.kind == "reconnect" for i in rec.incidents)
            assert rec.trades and all(t.symbol == "BTC-USD" and t.venue == "kraken" for t in rec.trades)
            st = ad.status()
            assert st.market_data.connected and st.market_data.books[0].valid
            await ad.close()

    run(main())


def test_fixture_books_and_a_deeper_subscription(run):
    async def main():
        async with FakeKraken(data=None) as fk:
            cfg = config(fk, ("ETH-USD", "MATIC-USD"))
            import dataclasses

            cfg = dataclasses.replace(cfg, book_depth=25)
            ad = KrakenAdapter(cfg)
            inst = await ad.load_instruments()
            books = {s: Book(i) for s, i in inst.items()}
            rec = Recorder()
            feed = ad.market_data(books, rec.callbacks())
            feed.start()
            await until(lambda: all(b.valid for b in books.values()), what="snapshots")
            assert same_book(books["ETH-USD"], fk, "ETH/USD", 25)
            # a level deleted at the touch brings a deeper one into view (Kraken sends it)
            best = fk.book("MATIC/USD").top("bid", 1)[0][0]
            await fk.set_levels("MATIC/USD", [(str(best), "0")], [])
            await until(lambda: same_book(books["MATIC-USD"], fk, "MATIC/USD", 25), what="delete at the touch")
            assert rec.incidents == []
            await ad.close()

    run(main())


def test_a_silent_connection_is_dropped_and_the_book_rebuilt(run):
    """Kraken sends a heartbeat every second when idle: silence means a dead connection."""

    async def main():
        async with FakeKraken(speed=0, start="manual", max_records=2000) as fk:
            import dataclasses

            cfg = dataclasses.replace(config(fk), silence_reconnect_s=0.8, stale_data_timeout_s=0.5)
            ad = KrakenAdapter(cfg)
            inst = await ad.load_instruments()
            book = Book(inst["BTC-USD"])
            rec = Recorder()
            feed = ad.market_data({"BTC-USD": book}, rec.callbacks())
            feed.start()
            await until(lambda: book.valid, what="snapshot")
            fk.silence(2.0)
            await until(lambda: feed.ws.connects >= 2, what="reconnect after silence")
            assert {"stale_data", "disconnect"} & set(rec.invalid)
            await asyncio.sleep(1.3)  # the silence ends
            await fk.advance(30)
            await until(lambda: book.valid and same_book(book, fk, "BTC/USD"), what="equal after silence")
            await ad.close()

    run(main())
