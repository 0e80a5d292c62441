"""Binance's documented order-book procedure on real data: the NKNUSDT fixture capture and the
BTCUSDT capture of 2024-08-08 (snapshot + 3,451 diffs + 28,040 bookTickers)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from test_binance_support import CAPTURE, FIXTURES, capture_log, fixture

from engine.book import Book
from engine.events import Incident
from venues.binance.book_sync import BUFFERING, MAX_ID_JUMP, SYNCED, BookSync
from venues.binance.decode import BookTop, DepthDiff, MarketFrameDecoder, Snapshot, decode_snapshot
from venues.binance.filters import SymbolFilters, to_instrument
from venues.binance.symbols import SymbolMap

BTC = to_instrument(SymbolFilters("BTC-USDT", "BTCUSDT", "BTC", "USDT", tick=1_000_000, step=1_000))
NKN = to_instrument(SymbolFilters("NKN-USDT", "NKNUSDT", "NKN", "USDT", tick=10_000, step=100_000_000))


class Harness:
    """A BookSync wired to lists: snapshot requests, served books, incidents, and the reasons of
    ``on_invalid`` (checked against the contract: once per valid -> invalid transition, with the
    book already invalid, before that moment's incident)."""

    def __init__(self, inst=BTC, stale_after_ns: int = 5_000_000_000, hook=None, max_id_jump: int = MAX_ID_JUMP):
        self.book = Book(inst)
        self.hook = hook
        self.requests: list[int] = []
        self.served: list[tuple[int, int, int, int, int, bool, bool]] = []
        self.incidents: list[Incident] = []
        self.invalid: list[str] = []
        self.invalid_at: list[int] = []  # how many incidents there were at each on_invalid
        self.shown_valid = False  # what the callbacks said last: on_book (True) or on_invalid (False)
        self.sync = BookSync(
            self.book,
            self.requests.append,
            self._on_book,
            self.incidents.append,
            stale_after_ns,
            on_invalid=self._on_invalid,
            max_id_jump=max_id_jump,
        )

    def _on_invalid(self, b: Book, reason: str) -> None:
        assert b is self.sync.book and not b.valid
        assert self.shown_valid, f"on_invalid({reason}) for a book that was not valid"
        self.shown_valid = False
        self.invalid_at.append(len(self.incidents))
        self.invalid.append(reason)

    def check_invalid_came_first(self) -> None:
        """Each on_invalid came before the incident of its moment (where that moment has one)."""
        for reason, n in zip(self.invalid, self.invalid_at, strict=True):
            if reason in ("sequence_gap", "crossed_book", "stale_data", "id_jump", "bad_level"):
                assert self.incidents[n].kind == reason, (reason, [i.kind for i in self.incidents[n:]])

    def _on_book(self, b: Book) -> None:
        assert b.valid
        self.shown_valid = True
        if self.hook is not None:
            self.hook(b)
        self.served.append(
            (
                b.update_id,
                b.best_bid_fixed,
                b.best_bid_size_fixed,
                b.best_ask_fixed,
                b.best_ask_size_fixed,
                b.valid,
                b.is_crossed(),
            )
        )

    def snapshot(self, snap: Snapshot) -> None:
        self.sync.on_snapshot(snap, self.requests[-1])

    def tops(self) -> dict[int, tuple[int, int, int, int]]:
        return {s[0]: s[1:5] for s in self.served}


def capture_lines(day: str = "20240808") -> list[tuple[int, bytes]]:
    out = []
    with gzip.open(CAPTURE / f"btcusdt_{day}.gz", "rb") as fh:
        for line in fh:
            ts, _, frame = line.rstrip(b"\n").partition(b" ")
            out.append((int(ts), frame))
    return out


@pytest.fixture(scope="module")
def btc_events() -> tuple[list[object], Snapshot]:
    """The 2024-08-08 capture decoded once: (diffs and tickers in arrival order, the REST snapshot)."""
    dec = MarketFrameDecoder(SymbolMap(["BTC-USDT"]))
    events: list[object] = []
    snap = None
    for ts, frame in capture_lines():
        if frame.startswith(b'{"lastUpdateId"'):
            snap = decode_snapshot(frame, ts)
            events.append(snap)
            continue
        ev = dec.decode(frame, ts)
        if isinstance(ev, (DepthDiff, BookTop)):
            events.append(ev)
    assert dec.malformed == 0 and snap is not None
    return events, snap


def replay(
    h: Harness, events: list[object], drop_first_id: int = 0, snapshot: Snapshot | None = None
) -> dict[int, tuple]:
    tickers: dict[int, tuple[int, int, int, int]] = {}
    for ev in events:
        if isinstance(ev, Snapshot):
            if h.requests and h.sync.state is BUFFERING:
                h.snapshot(ev)
        elif isinstance(ev, DepthDiff):
            if ev.first_id == drop_first_id:
                continue
            h.sync.on_diff(ev)
            if (
                snapshot is not None
                and h.sync.state is BUFFERING
                and h.requests
                and ev.last_id >= snapshot.last_update_id
            ):
                h.snapshot(snapshot)
                snapshot = None
        else:
            tickers[ev.update_id] = (ev.bid, ev.bid_qty, ev.ask, ev.ask_qty)
    return tickers


def test_nkn_fixture_chain_and_book_ticker() -> None:
    h = Harness(NKN)
    dec = MarketFrameDecoder(SymbolMap(["NKN-USDT"]))
    tickers = {}
    for line in (FIXTURES / "ws_capture_NKNUSDT_interleaved.jsonl").read_text().splitlines():
        ev = dec.decode(json.dumps(json.loads(line)["frame"]).encode(), 1)
        if isinstance(ev, DepthDiff):
            h.sync.on_diff(ev)
            if len(h.requests) == 1 and h.sync.snapshots == 0:
                h.snapshot(decode_snapshot(fixture("depth_snapshot_NKNUSDT.json"), 1))
        elif isinstance(ev, BookTop):
            tickers[ev.update_id] = (ev.bid, ev.bid_qty, ev.ask, ev.ask_qty)
    assert (h.sync.dropped, h.sync.applied, h.sync.gaps) == (1, 149, 0)
    assert h.book.update_id == 499870179 and h.book.valid
    tops = h.tops()
    shared = set(tops) & set(tickers)
    assert len(shared) == 19
    assert all(tops[u] == tickers[u] for u in shared)


def test_real_capture_book_equals_book_ticker(btc_events) -> None:
    events, _ = btc_events
    h = Harness()
    tickers = replay(h, events)
    assert h.sync.state is SYNCED and h.sync.gaps == 0 and h.sync.crossed == 0
    assert h.sync.applied == 3449 and h.sync.dropped == 2
    tops = h.tops()
    shared = set(tops) & set(tickers)
    mismatches = [u for u in shared if tops[u] != tickers[u]]
    assert len(shared) > 500
    assert len(mismatches) <= 2  # spot: a bookTicker may show a level that lived only inside one 100 ms batch
    assert all(valid and not crossed for *_, valid, crossed in h.served)


def test_dropped_diff_is_a_gap_then_resync(btc_events) -> None:
    events, _ = btc_events
    diffs = [e for e in events if isinstance(e, DepthDiff)]
    victim = diffs[1500]
    # reference: the full book right after diff #1600, used as the resync snapshot
    at = diffs[1600].last_id
    levels: dict[str, list] = {}

    def keep(b: Book) -> None:
        if b.update_id == at:
            levels.update(bids=b.levels(1, 100_000), asks=b.levels(-1, 100_000))

    replay(Harness(hook=keep), events)
    resync_snap = Snapshot(at, levels["bids"], levels["asks"], 1)

    h = Harness()
    with capture_log("market_data") as logs:
        replay(h, events, drop_first_id=victim.first_id, snapshot=resync_snap)
    gap_lines = logs.grep("Market data sequence gap")
    assert len(gap_lines) == 1
    assert f"expected={victim.first_id} got={diffs[1501].first_id}" in gap_lines[0]
    assert "venue=binance symbol=BTC-USDT" in gap_lines[0]
    assert h.sync.gaps == 1 and h.sync.resyncs == 1 and len(h.requests) == 2
    kinds = [i.kind for i in h.incidents]
    assert kinds == ["sequence_gap", "resync"]
    assert h.invalid == ["sequence_gap"]  # once, at the gap (not again when the resync starts)
    h.check_invalid_came_first()
    # nothing was served between the gap and the resync
    served_ids = [s[0] for s in h.served]
    assert not any(victim.last_id <= u <= at for u in served_ids)
    assert all(valid and not crossed for *_, valid, crossed in h.served)
    # after the resync the book is the reference book, level for level
    ref_final = Harness()
    replay(ref_final, events)
    assert h.book.update_id == ref_final.book.update_id
    assert h.book.levels(1, 100_000) == ref_final.book.levels(1, 100_000)
    assert h.book.levels(-1, 100_000) == ref_final.book.levels(-1, 100_000)


def test_snapshot_older_than_buffer_is_refetched(btc_events) -> None:
    events, snap = btc_events
    diffs = [e for e in events if isinstance(e, DepthDiff)]
    h = Harness()
    later = [d for d in diffs if d.first_id > snap.last_update_id + 10][:5]
    with capture_log("market_data") as logs:
        for d in later:
            h.sync.on_diff(d)
        h.snapshot(snap)  # lastUpdateId + 1 < first buffered U: go back to step 3
    assert h.sync.state is BUFFERING and len(h.requests) == 2 and h.sync.gaps == 0
    assert logs.grep("older than the buffered diffs")
    assert not h.served and not h.book.valid


def test_answer_for_an_old_request_is_ignored(btc_events) -> None:
    events, snap = btc_events
    h = Harness()
    first = next(e for e in events if isinstance(e, DepthDiff))
    h.sync.on_diff(first)
    h.sync.reset("disconnected")
    h.sync.on_snapshot(snap, h.requests[0])
    assert h.sync.snapshots == 0 and not h.book.valid and h.book.depth == (0, 0)


def test_stale_then_resumed(btc_events) -> None:
    events, _ = btc_events
    h = Harness(stale_after_ns=2_000_000_000)
    replay(h, events[:3000])
    assert h.book.valid
    last = h.sync.last_recv_ns
    assert not h.sync.check_stale(last + 1_000_000_000)
    with capture_log("market_data") as logs:
        assert h.sync.check_stale(last + 2_500_000_000)
        assert h.sync.check_stale(last + 9_000_000_000)  # one incident per stale episode
        assert not h.book.valid
        served_before = len(h.served)
        nxt = next(e for e in events[3000:] if isinstance(e, DepthDiff) and e.first_id == h.book.update_id + 1)
        h.sync.on_diff(nxt)
    assert [i.kind for i in h.incidents] == ["stale_data"]
    assert h.invalid == ["stale_data"]
    h.check_invalid_came_first()
    assert h.incidents[0].value == pytest.approx(2.5)
    assert logs.grep("Stale market data venue=binance symbol=BTC-USDT")
    assert logs.grep("Market data resumed")
    assert h.book.valid and len(h.served) == served_before + 1


def lv(*pairs: tuple[int, int]) -> np.ndarray:
    """Levels as the decoder gives them: int64 (n, 2)."""
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def test_crossed_book_never_served() -> None:
    h = Harness()
    h.sync.on_diff(DepthDiff("BTC-USDT", 11, 12, 0, 1, lv((100, 5)), lv()))
    h.snapshot(Snapshot(10, lv((99, 1)), lv((101, 1)), 1))
    assert h.book.valid and h.served[-1][0] == 12
    # an ask below the best bid: the venue would never publish this; we must not serve it
    h.sync.on_diff(DepthDiff("BTC-USDT", 13, 13, 0, 2, lv(), lv((98, 3))))
    assert not h.book.valid and h.sync.crossed == 1 and h.sync.state is BUFFERING
    assert [i.kind for i in h.incidents] == ["crossed_book"] and h.invalid == ["crossed_book"]
    h.check_invalid_came_first()
    assert len(h.served) == 1


def test_on_levels_sees_exactly_the_applied_messages_in_order(btc_events) -> None:
    """The paper-trading hook: the levels of every applied snapshot and diff, in order, once they
    are in the book and before it is shown; never a dropped (stale) diff, a diff lost to a gap, or
    one applied twice."""
    events, _ = btc_events
    diffs = [e for e in events if isinstance(e, DepthDiff)]
    victim = diffs[1500]
    at = diffs[1600].last_id
    ref: dict[str, list] = {}

    def keep(b: Book) -> None:
        if b.update_id == at:
            ref.update(bids=b.levels(1, 100_000), asks=b.levels(-1, 100_000))

    replay(Harness(hook=keep), events)
    resync_snap = Snapshot(at, lv(*ref["bids"]), lv(*ref["asks"]), 1)

    h = Harness()
    seen: list[tuple[bool, list, list]] = []
    served_ids: list[int] = []

    def hook(book: Book, bids: np.ndarray, asks: np.ndarray, snapshot: bool) -> None:
        assert book is h.book and bids.dtype == np.int64 and asks.dtype == np.int64
        # already applied: the book holds the sizes the message set (the last one, for a price given twice)
        for side, levels in ((1, bids), (-1, asks)):
            last = {int(p): int(q) for p, q in levels}
            assert all(book.size_at(side, p) == q for p, q in last.items())
        seen.append((snapshot, bids.tolist(), asks.tolist()))

    h.sync.on_levels = hook
    h.hook = lambda b: served_ids.append(b.update_id)
    replay(h, events, drop_first_id=victim.first_id, snapshot=resync_snap)

    assert h.sync.gaps == 1 and h.sync.snapshots == 2
    snaps = [s for s in seen if s[0]]
    assert len(snaps) == 2 and seen[0][0]
    assert sorted(map(tuple, snaps[1][1])) == sorted(tuple(x) for x in resync_snap.bids.tolist())
    applied = [s for s in seen if not s[0]]
    assert len(applied) == h.sync.applied == len(served_ids)
    # what the hook saw is what was served, message for message: a diff lost to the gap, a
    # stale diff dropped after a snapshot, or one applied twice would show up here
    by_id = {d.last_id: d for d in diffs}
    for (_, bids, asks), uid in zip(applied, served_ids, strict=True):
        d = by_id[uid]
        assert bids == d.bids.tolist() and asks == d.asks.tolist()
    assert victim.last_id not in served_ids
    assert h.book.update_id == served_ids[-1] == diffs[-1].last_id
