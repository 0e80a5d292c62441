"""Kraken's book procedure: snapshot + updates checked by the CRC32 over the top 10 levels at the
pair's precision. The guide's and the docs' worked examples and a live capture compute their
published checksums; a mismatch makes the book invalid at once (the engine is told before anything
else), raises a ``sequence_gap`` incident and asks for a new snapshot; a strategy never sees an
invalid book."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from engine.book import Book
from engine.model import Instrument
from venues.kraken import decode as kd
from venues.kraken.book_sync import BUFFERING, SYNCED, BookSync, LevelBook, checksum

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "venues" / "kraken"


def book_msg(name: str) -> kd.BookMessage:
    return kd.decode((FIX / name).read_bytes())


def inst(symbol: str, ps: int, ss: int) -> Instrument:
    return Instrument("kraken", symbol, symbol.replace("-", ""), ps, ss, 1, 1)


class Harness:
    def __init__(self, symbol: str, ps: int, ss: int, depth: int = 10) -> None:
        self.book = Book(inst(symbol, ps, ss))
        self.shown: list[tuple[bool, int, int]] = []
        self.incidents = []
        self.invalid: list[str] = []
        self.snapshot_requests: list[int] = []
        self.events: list[str] = []

        def on_book(b: Book) -> None:
            assert b.valid  # a strategy never sees an invalid book
            self.shown.append((b.valid, b.best_bid_fixed, b.best_ask_fixed))
            self.events.append("book")

        def on_invalid(b: Book, reason: str) -> None:
            self.invalid.append(reason)
            self.events.append("invalid")

        def on_incident(inc) -> None:
            self.incidents.append(inc)
            self.events.append(inc.kind)

        self.sync = BookSync(
            self.book,
            depth,
            ps,
            ss,
            request_snapshot=self.snapshot_requests.append,
            on_book=on_book,
            on_incident=on_incident,
            on_invalid=on_invalid,
        )
        self.sync.subscribed()

    def feed(self, msg: kd.BookMessage, ts: int = 1) -> None:
        for d in msg.data:
            self.sync.on_message(msg.type, d, ts)


def test_guide_example_computes_the_published_checksum():
    d = book_msg("ws_v2_book_snapshot_BTC-USD_checksum_guide.json").data[0]
    lb = LevelBook(10)
    lb.apply(lb.bids, d.bids, {})
    lb.apply(lb.asks, d.asks, {})
    assert lb.checksum(1, 8) == 3310070434 == d.checksum


def test_padding_to_the_pairs_precision_matters():
    d = book_msg("ws_v2_book_snapshot_MATIC-USD_docs.json").data[0]
    lb = LevelBook(10)
    lb.apply(lb.bids, d.bids, {})
    lb.apply(lb.asks, d.asks, {})
    assert lb.checksum(4, 8) == 2439117997
    # the digits as sent (no padding) give another number: the documented pitfall
    unpadded = "".join(
        f"{p}".replace(".", "").lstrip("0") + f"{q}".replace(".", "").lstrip("0")
        for p, q in lb.sorted_asks(10) + lb.sorted_bids(10)
    )
    import zlib

    assert zlib.crc32(unpadded.encode()) != 2439117997
    assert checksum([(Decimal("1.5"), Decimal("0.1"))], [], 2, 8) == zlib.crc32(b"15010000000")


@pytest.mark.parametrize(
    "snap,upd,ps,ss,symbol",
    [
        ("ws_v2_book_snapshot_MATIC-USD_docs.json", "ws_v2_book_update_MATIC-USD_docs.json", 4, 8, "MATIC-USD"),
        ("ws_v2_book_snapshot_ETH-USD_live.json", "ws_v2_book_update_ETH-USD_live.json", 2, 8, "ETH-USD"),
    ],
)
def test_snapshot_and_update_keep_the_book_in_sync(snap, upd, ps, ss, symbol):
    h = Harness(symbol, ps, ss)
    s = book_msg(snap)
    h.feed(s)
    assert h.sync.state is SYNCED and h.book.valid and h.incidents == []
    d = s.data[0]
    assert h.book.best_bid_fixed == kd.to_fixed(d.bids[0].price, ps)
    assert h.book.best_ask_fixed == kd.to_fixed(d.asks[0].price, ps)
    h.feed(book_msg(upd))
    assert h.book.valid and h.incidents == [] and len(h.shown) == 2
    # the engine's book holds exactly the Kraken book's levels
    lb = h.sync.levels
    assert h.book.levels(1, 50) == [(kd.to_fixed(p, ps), kd.to_fixed(q, ss)) for p, q in lb.sorted_bids()]
    assert h.book.levels(-1, 50) == [(kd.to_fixed(p, ps), kd.to_fixed(q, ss)) for p, q in lb.sorted_asks()]


def test_bad_checksum_invalidates_first_then_incident_then_resubscribe():
    h = Harness("ETH-USD", 2, 8)
    h.feed(book_msg("ws_v2_book_snapshot_ETH-USD_live.json"))
    upd = book_msg("ws_v2_book_update_ETH-USD_live.json")
    bad = msgspec.structs.replace(upd.data[0], checksum=upd.data[0].checksum ^ 1)
    h.events.clear()
    h.sync.on_message("update", bad, 2)
    assert not h.book.valid and h.sync.state is BUFFERING
    assert h.events[0] == "invalid" and "sequence_gap" in h.events and h.invalid[0] == "sequence_gap"
    inc = next(i for i in h.incidents if i.kind == "sequence_gap")
    assert "checksum mismatch" in inc.detail and inc.symbol == "ETH-USD"
    assert h.snapshot_requests == [h.sync.generation]
    # updates before the new snapshot are not applied, and nothing is shown
    shown = len(h.shown)
    h.sync.on_message("update", upd.data[0], 3)
    assert len(h.shown) == shown and not h.book.valid
    h.feed(book_msg("ws_v2_book_snapshot_ETH-USD_live.json"), ts=10)
    assert h.book.valid and any(i.kind == "resync" for i in h.incidents)


def test_levels_pushed_out_of_the_subscribed_depth_are_dropped():
    h = Harness("MATIC-USD", 4, 8)
    snap = book_msg("ws_v2_book_snapshot_MATIC-USD_docs.json")
    h.feed(snap)
    d = snap.data[0]
    better = d.bids[0].price + Decimal("0.0001")
    lb = LevelBook(10)
    lb.bids = {lv.price: lv.qty for lv in d.bids}
    lb.asks = {lv.price: lv.qty for lv in d.asks}
    lb.bids[better] = Decimal("5")
    lb.truncate({}, {})
    upd = kd.BookData("MATIC/USD", [kd.Level(better, Decimal("5"))], [], lb.checksum(4, 8), None)
    h.sync.on_message("update", upd, 2)
    assert h.book.valid and h.book.depth == (10, 10)
    worst = min(lv.price for lv in d.bids)
    assert h.book.size_at(1, kd.to_fixed(worst, 4)) == 0


def test_disconnect_and_stale():
    h = Harness("ETH-USD", 2, 8)
    h.sync.stale_after_ns = 1_000
    h.feed(book_msg("ws_v2_book_snapshot_ETH-USD_live.json"), ts=100)
    h.sync.check_stale(100 + 2_000)
    assert not h.book.valid and h.invalid == ["stale_data"]
    h.feed(book_msg("ws_v2_book_update_ETH-USD_live.json"), ts=5_000)
    assert h.book.valid
    h.sync.reset("disconnected")
    assert not h.book.valid and h.invalid[-1] == "disconnect" and h.book.depth == (0, 0)


def test_heartbeats_keep_a_quiet_book_fresh_but_do_not_revive_a_stale_one():
    h = Harness("ETH-USD", 2, 8)
    h.sync.stale_after_ns = 1_000
    h.feed(book_msg("ws_v2_book_snapshot_ETH-USD_live.json"), ts=100)
    h.sync.touch(900)
    assert not h.sync.check_stale(1_500) and h.book.valid
    assert h.sync.check_stale(3_000) and not h.book.valid
    h.sync.touch(3_100)
    assert not h.book.valid  # only a checked update shows it again
    h.feed(book_msg("ws_v2_book_update_ETH-USD_live.json"), ts=3_200)
    assert h.book.valid
