"""Coinbase level2 book sync on the real BAND-GBP capture: snapshot + updates, the connection's
sequence chain, gaps, silence, crossed books and bad levels."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import msgspec
import numpy as np
import pytest

from engine.book import Book
from engine.events import Incident
from venues.coinbase import decode as d
from venues.coinbase.book_sync import SUBSCRIBING, SYNCED, BookSync, SequenceCheck
from venues.coinbase.filters import parse_product, to_instrument

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "venues" / "coinbase"


def need(name: str) -> bytes:
    p = FIXTURES / name
    if not p.exists():
        pytest.skip(f"fixture {p} not found")
    return p.read_bytes()


def capture() -> tuple[d.L2Message, list[d.L2Message]]:
    """The real snapshot and its 471 updates, numbered as one Advanced Trade connection would."""
    snap = d.exchange_to_common(d.exchange_frame.decode(need("exchange_level2_snapshot_BAND-GBP.json")))
    snap.seq = 0
    ups = []
    for i, line in enumerate(need("exchange_l2updates_BAND-GBP.jsonl").splitlines(), start=1):
        m = d.exchange_to_common(d.exchange_frame.decode(line))
        m.seq = i
        ups.append(m)
    return snap, ups


def instrument():
    p = msgspec.json.decode(need("exchange_product_BAND-GBP_2021.json"), type=d.Product)
    return to_instrument(parse_product(p))


class Harness:
    def __init__(self) -> None:
        self.book = Book(instrument())
        self.shown = 0
        self.invalid: list[str] = []
        self.incidents: list[Incident] = []
        self.resubscribed: list[str] = []
        self.levels: list[bool] = []
        self.sync = BookSync(
            self.book,
            self.resubscribed.append,
            self._shown,
            self.incidents.append,
            stale_after_ns=3_000_000_000,
            on_invalid=lambda b, r: self.invalid.append(r),
        )
        self.sync.on_levels = lambda b, bids, asks, snap: self.levels.append(snap)
        self.sync.subscribing()

    def _shown(self, book: Book) -> None:
        assert book.valid
        self.shown += 1


class Reference:
    """The book by the documented rule, in plain dicts."""

    def __init__(self, snap: d.L2Message) -> None:
        self.bids = {int(p): int(q) for p, q in snap.bids}
        self.asks = {int(p): int(q) for p, q in snap.asks}

    def apply(self, m: d.L2Message) -> None:
        for side, rows in ((self.bids, m.bids), (self.asks, m.asks)):
            for p, q in rows:
                if q == 0:
                    side.pop(int(p), None)
                else:
                    side[int(p)] = int(q)

    def top(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return sorted(self.bids.items(), reverse=True)[:n], sorted(self.asks.items())[:n]


def assert_same(book: Book, ref: Reference, n: int = 50) -> None:
    bids, asks = ref.top(n)
    assert book.levels(1, n) == bids
    assert book.levels(-1, n) == asks


def test_real_capture_rebuilds_the_book_message_by_message() -> None:
    snap, ups = capture()
    h = Harness()
    ref = Reference(snap)
    h.sync.on_message(snap)
    assert h.sync.state is SYNCED and h.book.valid and h.levels == [True]
    assert_same(h.book, ref)
    for m in ups:
        ref.apply(m)
        h.sync.on_message(m)
        assert h.book.valid
        assert_same(h.book, ref, 20)
    assert_same(h.book, ref, 1000)
    assert h.shown == 472 and h.invalid == [] and h.incidents == [] and h.book.update_id == 471


def test_top_of_book_matches_the_real_tickers() -> None:
    """Snapshot + updates reproduce best_bid/best_ask of the capture's ticker frames (all but the
    one sent on subscribe, which reports the state before the snapshot: fixtures SOURCES.md)."""
    h = Harness()
    matched = missed = 0
    seq = 0
    for line in need("exchange_capture_BAND-GBP_interleaved.jsonl").splitlines():
        frame = json.loads(line)["frame"]
        if frame.get("product_id") != "BAND-GBP":
            continue
        msg = d.exchange_frame.decode(json.dumps(frame).encode())
        if isinstance(msg, d.ExchangeTicker):
            if h.book.valid:
                bb = h.book.best_bid_fixed / 10**8
                ba = h.book.best_ask_fixed / 10**8
                ok = Decimal(msg.best_bid) == Decimal(str(bb)) and Decimal(msg.best_ask) == Decimal(str(ba))
                matched += ok
                missed += not ok
            continue
        m = d.exchange_to_common(msg)
        if isinstance(m, d.L2Message):
            m.seq = seq
            seq += 1
            h.sync.on_message(m)
    assert matched == 4 and missed == 1


def test_sequence_check() -> None:
    c = SequenceCheck()
    assert [c.check(s) for s in (0, 1, 2, 3)] == [0, 0, 0, 0]
    assert c.check(6) == 2 and c.gaps == 1
    assert c.check(7) == 0
    assert c.check(5) == -3  # out of order
    assert c.check(8) == 0
    c.reset()
    assert c.check(0) == 0


def test_gap_invalidates_resyncs_and_recovers_from_the_next_snapshot() -> None:
    snap, ups = capture()
    h = Harness()
    ref = Reference(snap)
    h.sync.on_message(snap)
    for m in ups[:100]:
        ref.apply(m)
        h.sync.on_message(m)
    h.sync.gap("expected=101 got=103", 1, 2)
    assert not h.book.valid and h.invalid == ["sequence_gap"] and h.sync.state is SUBSCRIBING
    assert [i.kind for i in h.incidents] == ["sequence_gap"] and h.incidents[0].value == 2
    shown = h.shown
    for m in ups[102:200]:  # updates before the new snapshot are dropped, never shown
        h.sync.on_message(m)
    assert h.shown == shown and not h.book.valid and h.sync.dropped == 98
    for m in ups[100:200]:
        ref.apply(m)
    fresh = d.L2Message(
        "BAND-GBP",
        True,
        300,
        np.array(sorted(ref.bids.items(), reverse=True), dtype=np.int64),
        np.array(sorted(ref.asks.items()), dtype=np.int64),
        0,
        0,
    )
    h.sync.on_message(fresh)
    assert h.book.valid and h.shown == shown + 1 and h.book.update_id == 300
    for m in ups[200:]:
        ref.apply(m)
        h.sync.on_message(m)
    assert_same(h.book, ref, 1000)
    assert h.invalid == ["sequence_gap"] and h.sync.gaps == 1 and h.sync.resyncs == 1


def test_silence_makes_the_book_stale_and_a_frame_shows_it_again() -> None:
    snap, _ = capture()
    h = Harness()
    h.sync.on_message(snap)
    assert not h.sync.check_stale(2_000_000_000, 1)
    assert h.sync.check_stale(4_000_000_000, 1)
    assert not h.book.valid and h.invalid == ["stale_data"] and h.incidents[-1].kind == "stale_data"
    assert h.sync.check_stale(5_000_000_000, 1)  # once: no second incident
    assert len(h.incidents) == 1
    h.sync.alive()
    assert h.book.valid and not h.sync.stale


def test_crossed_book_and_bad_levels_are_refused_and_rebuilt() -> None:
    snap, _ = capture()
    h = Harness()
    h.sync.on_message(snap)
    ask = int(snap.asks[0][0])
    cross = d.L2Message("BAND-GBP", False, 1, np.array([[ask, 10**8]], dtype=np.int64), d.levels([]), 0, 5)
    h.sync.on_message(cross)
    assert not h.book.valid and h.invalid == ["crossed_book"] and h.resubscribed == ["BAND-GBP"]
    assert [i.kind for i in h.incidents] == ["crossed_book"]
    h.sync.on_message(snap)
    assert h.book.valid
    bad = d.L2Message("BAND-GBP", False, 2, np.array([[0, 10**8]], dtype=np.int64), d.levels([]), 0, 6)
    h.sync.on_message(bad)
    assert not h.book.valid and h.invalid[-1] == "bad_level" and h.resubscribed == ["BAND-GBP", "BAND-GBP"]
    assert h.sync.bad_levels == 1


def test_disconnect_resets_until_the_next_snapshot() -> None:
    snap, ups = capture()
    h = Harness()
    h.sync.on_message(snap)
    h.sync.reset("disconnect")
    assert not h.book.valid and h.invalid == ["disconnect"]
    h.sync.on_message(ups[0])
    assert not h.book.valid and h.sync.dropped == 1
