"""Book integrity (issue 13, "A session survives a bad day"), on the real BTCUSDT capture:

* ids and fixed-point values are bounded at decode (both the compiled scan and msgspec's path);
* an implausible id (in a diff, or a snapshot's ``lastUpdateId``) is an ``id_jump`` incident and
  a resync, never a frozen "valid" book;
* staleness counts from the last *applied* message;
* non-positive levels are ``bad_level`` incidents, never applied;
* trade prints outside the band around the book are ``bad_trade`` incidents and never reach
  ``on_trade`` (so never a paper fill);
* ``on_book_invalid`` comes once per valid -> invalid transition, before that moment's incident;
* an invalid UTF-8 text frame closes the connection with 1007 and the feed reconnects.

``FeedRig`` (also used by the fuzz test) drives ``BinanceMarketData._on_frame`` by hand, in the
live wiring (``on_book`` only) or paper trading's (``on_levels`` set, a ``PaperMatching`` with
resting orders far from the market: any fill is a bad print or level that got through).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import struct
from types import SimpleNamespace

import numpy as np
import pytest
from test_binance_book_sync import BTC, Harness, lv
from test_binance_depth_fast import _lines, book_state, payload_span, synced_pair
from test_binance_support import capture_log, loop_config, wait_until
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from engine.book import Book
from engine.errors import ConfigError
from engine.events import Incident, Trade
from engine.venue.feed import FeedCallbacks
from sim.paper import PaperMatching
from sim.venue import RestingOrders
from venues.binance.book_sync import BUFFERING, SYNCED
from venues.binance.config import parse_config
from venues.binance.decode import DepthDiff, MarketFrameDecoder, Snapshot, decode_snapshot, levels_fixed
from venues.binance.depth_apply import NOT_NEXT, NOT_PLAIN, R_MAXJ, apply_depth
from venues.binance.feed import BinanceMarketData
from venues.binance.numbers import MAX_WIRE, depth_from_json, levels_array
from venues.binance.symbols import SymbolMap

SYM = "BTC-USDT"
DEC = MarketFrameDecoder(SymbolMap([SYM]))
E8 = 10**8


def ids(frame: bytes) -> tuple[int, int]:
    m = re.search(rb'"U":(\d+),"u":(\d+)', frame)
    assert m is not None
    return int(m[1]), int(m[2])


def set_field(frame: bytes, key: str, value: object) -> bytes:
    """``"key":<integer>`` -> ``"key":value`` (the first one in the frame)."""
    out, n = re.subn(rb'"%s":-?\d+' % key.encode(), b'"%s":%s' % (key.encode(), str(value).encode()), frame, count=1)
    assert n == 1
    return out


def feed(h: Harness, frame: bytes, ts: int = 1, fast: bool = True) -> None:
    """A depth frame to a harness the way the feed hands it over: the fast path first."""
    if fast and h.sync.on_frame(frame, *payload_span(frame), ts):
        return
    ev = DEC.decode(frame, ts)
    if isinstance(ev, DepthDiff):
        h.sync.on_diff(ev)


def clean_replay(want: set[int]) -> tuple[dict[int, Snapshot], tuple, list[tuple[int, bytes]]]:
    """The clean capture after its snapshot: full-depth snapshots of the book at the ids in
    ``want``, the final book state, and the depth frames."""
    _, ref, frames = synced_pair()
    snaps: dict[int, Snapshot] = {}

    def keep(b: Book) -> None:
        if b.update_id in want:
            snaps[b.update_id] = Snapshot(b.update_id, lv(*b.levels(1, 100_000)), lv(*b.levels(-1, 100_000)), 1)

    ref.hook = keep
    for ts, f in frames:
        feed(ref, f, ts)
    return snaps, book_state(ref.book), frames


def fresh() -> tuple[Harness, list[tuple[int, bytes]], Snapshot, list[tuple[int, bytes]]]:
    """A new harness, the capture's depth frames before its REST snapshot, the snapshot, the rest."""
    lines = _lines()
    i = next(i for i, (_, f) in enumerate(lines) if f.startswith(b'{"lastUpdateId"'))
    before = [(ts, f) for ts, f in lines[:i] if b"@depth" in f[:40]]
    after = [(ts, f) for ts, f in lines[i + 1 :] if b"@depth" in f[:40]]
    return Harness(), before, decode_snapshot(lines[i][1], lines[i][0]), after


def replay_with_snapshots(h: Harness, frames, snaps: dict[int, Snapshot]) -> None:
    """Feed ``frames``; whenever the harness waits for a snapshot and one of ``snaps`` is due (its
    id reached by the frames fed so far), answer with it."""
    pending = sorted(snaps)
    for ts, f in frames:
        feed(h, f, ts)
        u = ids(f)[1]
        while pending and pending[0] <= u:
            at = pending.pop(0)
            if h.sync.state is BUFFERING and at == u:
                h.snapshot(snaps[at])


# --- decode bounds --------------------------------------------------------------------------


def test_ids_and_values_are_bounded_at_decode_on_both_paths() -> None:
    ts, frame = synced_pair()[2][10]
    U, _ = ids(frame)
    spaced = lambda f: json.dumps(json.loads(f)).encode()  # noqa: E731 - not compact: msgspec's path
    cases = {
        "u beyond int64": set_field(frame, "u", 2**63 + 5),
        "u = 10**30": set_field(frame, "u", 10**30),
        "U beyond 2**62": set_field(set_field(frame, "u", 2**62 + 10), "U", 2**62 + 1),
        "u < U": set_field(frame, "u", U - 1),
        "negative U": set_field(frame, "U", -5),
        "E beyond": set_field(frame, "E", 10**17),
        "price beyond 2**62": re.sub(rb'"a":\[\["[0-9.]+"', b'"a":[["99999999999.00000000"', frame, count=1),
        "size beyond 2**62": re.sub(
            rb'"a":\[\["([0-9.]+)","[0-9.]+"', rb'"a":[["\1","46116860184.27387905"', frame, count=1
        ),
    }
    for name, bad in cases.items():
        for f in (bad, spaced(bad)):
            dec = MarketFrameDecoder(SymbolMap([SYM]))
            assert dec.decode(f, ts) is None, name
            assert dec.malformed == 1 and dec.lost_depth == SYM, name
    # the compiled scan declines what it cannot hold exactly; msgspec's path refuses it
    assert depth_from_json(b'{"e":"depthUpdate","E":1,"s":"X","U":1,"u":10000000000000000000,"b":[],"a":[]}') is None
    # at the bound and below: accepted
    ok = set_field(set_field(frame, "u", 2**62), "U", 2**62 - 5)
    ev = DEC.decode(spaced(ok), ts)
    assert isinstance(ev, DepthDiff) and ev.last_id == 2**62 and ev.first_id == 2**62 - 5
    with pytest.raises(ValueError, match="2\\*\\*62"):
        levels_array([["46116860184.27387905", "1"]])  # 2**62 + 1 at scale 8
    assert levels_array([["46116860184.27387904", "1"]]).tolist() == [[2**62, E8]]
    # a zero price is well-formed (the sync refuses it); the scan leaves it to the general path
    assert levels_fixed(b'[["0.00000000","1.5"]]').tolist() == [[0, 150_000_000]]


@pytest.mark.parametrize("lid", [2**62 + 1, 2**63 + 5, 10**30, -1])
def test_decode_snapshot_refuses_ids_beyond_the_bound(lid: int) -> None:
    body = json.dumps({"lastUpdateId": lid, "bids": [["1.00", "1.0"]], "asks": []}).encode()
    with pytest.raises(ValueError):
        decode_snapshot(body)


def test_decode_snapshot_refuses_values_beyond_the_bound() -> None:
    body = json.dumps({"lastUpdateId": 5, "bids": [["99999999999.00", "1.0"]], "asks": []}).encode()
    with pytest.raises(ValueError):
        decode_snapshot(body)
    assert decode_snapshot(json.dumps({"lastUpdateId": 2**62, "bids": [], "asks": []}).encode()).last_update_id == 2**62


def test_compiled_apply_declines_span_and_event_time_beyond_its_limits() -> None:
    fast, _, frames = synced_pair()
    for ts, f in frames[:20]:
        feed(fast, f, ts)
    sync = fast.sync
    assert sync._res[R_MAXJ] == sync.max_id_jump == 1_000_000
    ts, frame = frames[20]
    U, _ = ids(frame)
    bs = fast.book.books
    for bad, status in ((set_field(frame, "u", U + 10**6 + 1), NOT_NEXT), (set_field(frame, "E", 10**13), NOT_PLAIN)):
        res = sync._res.copy()
        got = apply_depth(
            bad, *payload_span(bad), sync._scratch, sync.scale, bs.lad.copy(), bs.keys.copy(), bs.sizes.copy(),
            bs.cnt.copy(), bs.dead.copy(), bs.meta.copy(), fast.book.idx, fast.book.update_id, res,
        )  # fmt: skip
        assert got == status
    # at the limit: applied
    at_limit = set_field(frame, "u", U + 10**6)
    assert sync.on_frame(at_limit, *payload_span(at_limit), ts) and fast.book.update_id == U + 10**6


# --- implausible ids ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_diff_with_an_implausible_id_jump_is_refused_and_the_book_rebuilt(path: str) -> None:
    """The issue's case: a diff continuing the chain with ``u = U + 10**9``. Before, it was applied:
    every later diff was "old", the book stayed valid, synced and never stale, and quotes rested
    on it. Now: refused, ``id_jump``, invalid, rebuilt from the next snapshot."""
    h, _, frames = synced_pair()
    for ts, f in frames[:100]:
        feed(h, f, ts)
    assert h.book.valid and h.sync.state is SYNCED
    uid, served = h.book.update_id, len(h.served)
    ts, victim = frames[100]
    U, _ = ids(victim)
    with capture_log("market_data") as logs:
        feed(h, set_field(victim, "u", U + 10**9), ts, fast=path == "fast")
    assert h.invalid == ["id_jump"] and h.incidents[-1].kind == "id_jump"
    h.check_invalid_came_first()
    assert logs.grep("Implausible update id venue=binance symbol=BTC-USDT")
    assert h.book.update_id == uid and not h.book.valid and h.sync.state is BUFFERING and len(h.requests) == 2
    assert h.sync.id_jumps == 1 and len(h.served) == served
    at = ids(frames[110][1])[1]
    snaps, final, _ = clean_replay({at})
    replay_with_snapshots(h, frames[101:], snaps)
    assert book_state(h.book) == final and h.book.valid
    assert not any(uid < s[0] < at for s in h.served[served:])  # nothing shown while it was rebuilt
    assert h.invalid == ["id_jump"] and [i.kind for i in h.incidents] == ["id_jump", "resync"]


@pytest.mark.parametrize("lid", ["2**62", "+10**9", "0"])
def test_a_snapshot_far_from_the_buffered_diffs_is_refused(lid: str) -> None:
    h, before, snap, after = fresh()
    for ts, f in before:
        feed(h, f, ts)
    assert h.sync.state is BUFFERING and len(h.requests) == 1
    value = {"2**62": 2**62, "+10**9": snap.last_update_id + 10**9, "0": 0}[lid]
    h.snapshot(Snapshot(value, snap.bids, snap.asks, 1))
    assert h.sync.state is BUFFERING and len(h.requests) == 2 and h.sync.snapshots_applied == 0
    assert not h.book.valid and not h.served and h.incidents[-1].kind == "id_jump"
    h.snapshot(snap)
    for ts, f in after[:50]:
        feed(h, f, ts)
    assert h.book.valid and len(h.served) > 40 and h.invalid == []


def test_a_snapshot_far_ahead_with_nothing_buffered_cannot_freeze_the_book() -> None:
    """Nothing buffered to compare a snapshot with: it is taken, and the next diff shows the
    book's id is implausibly far ahead of the venue's (before: every diff "old", forever)."""
    h, _, frames = synced_pair()
    for ts, f in frames[:20]:
        feed(h, f, ts)
    h.sync.resync("operator", 1)  # empties the buffer
    assert h.invalid == ["resync"] and len(h.sync._buffer) == 0
    h.snapshot(Snapshot(2**62, lv((6_000_000_000_000, E8)), lv((6_100_000_000_000, E8)), 1))
    assert h.sync.state is SYNCED and not h.book.valid
    served = len(h.served)
    ts, f = frames[20]
    feed(h, f, ts)
    assert h.sync.state is BUFFERING and h.incidents[-1].kind == "id_jump" and len(h.served) == served
    assert h.invalid == ["resync"]  # it was never valid again, so no second call


def test_a_plausible_but_wrong_id_is_caught_at_the_next_diff() -> None:
    """An id that is wrong by less than the bound passes the message's own checks; the next diff
    overlaps it (two real messages never share ids): ``id_jump`` and a rebuild, not a book frozen
    until the venue's ids catch up."""
    h, _, frames = synced_pair()
    for ts, f in frames[:100]:
        feed(h, f, ts)
    ts, victim = frames[100]
    _, u = ids(victim)
    feed(h, set_field(victim, "u", u + 5000), ts)
    assert h.book.valid and h.book.update_id == u + 5000  # nothing to tell it apart yet
    ts, nxt = frames[101]
    feed(h, nxt, ts)
    assert h.invalid == ["id_jump"] and "overlaps the last applied message" in h.incidents[-1].detail
    assert h.sync.state is BUFFERING


def test_a_diff_far_past_the_book_is_not_kept_for_the_resync() -> None:
    h, _, frames = synced_pair()
    for ts, f in frames[:100]:
        feed(h, f, ts)
    uid = h.book.update_id
    ts, victim = frames[100]
    far = set_field(set_field(victim, "u", uid + 10**7 + 5), "U", uid + 10**7)
    feed(h, far, ts)
    assert h.invalid == ["id_jump"] and h.sync.state is BUFFERING and len(h.sync._buffer) == 0
    at = ids(frames[105][1])[1]
    snaps, final, _ = clean_replay({at})
    replay_with_snapshots(h, frames[100:], snaps)
    assert book_state(h.book) == final


def test_while_buffering_the_latest_diff_wins() -> None:
    """A wrong diff in the buffer would make every snapshot "older than the buffered diffs"; the
    next good diff flushes it (and a wrong new one is flushed by the good one after it)."""
    h, before, _, after = fresh()
    for ts, f in before:
        feed(h, f, ts)
    n = len(h.sync._buffer)
    h.sync.on_diff(DepthDiff(SYM, 10**15, 10**15 + 3, 0, 1, lv(), lv()))
    assert [d.first_id for d in h.sync._buffer] == [10**15] and h.incidents[-1].kind == "id_jump"
    for ts, f in after[:3]:
        feed(h, f, ts)
    assert h.sync._buffer[0].first_id != 10**15 and len(h.sync._buffer) == 3 and n > 0
    at = ids(after[1][1])[1]  # what was buffered before the wrong diff is gone: a later snapshot
    snaps, _, _ = clean_replay({at})
    h.snapshot(snaps[at])
    for ts, f in after[3:60]:
        feed(h, f, ts)
    assert h.book.valid and h.sync.gaps == 0 and [i.kind for i in h.incidents] == ["id_jump", "id_jump"]


# --- staleness ------------------------------------------------------------------------------


def test_staleness_counts_from_the_last_applied_message() -> None:
    """Dropped diffs (here: the last one again and again) used to refresh the staleness clock, so
    a book that no longer moved was never stale. Now it goes stale, and since diffs keep coming
    but none applies, it is rebuilt."""
    h, _, frames = synced_pair()
    h.sync.stale_after_ns = 2_000_000_000
    for ts, f in frames[:100]:
        feed(h, f, ts)
    last = h.sync.last_recv_ns
    ts, dup = frames[99]
    for k in range(1, 30):
        feed(h, dup, last + k * 100_000_000)  # 0.1 .. 2.9 s later
    assert h.sync.dropped >= 29 and h.sync.last_recv_ns == last
    assert not h.sync.check_stale(last + 1_500_000_000)
    assert h.sync.check_stale(last + 2_950_000_000)
    assert h.invalid == ["stale_data"] and h.incidents[-1].kind == "stale_data"
    assert h.sync.state is BUFFERING and len(h.requests) == 2


# --- bad levels -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["fast", "general"])
@pytest.mark.parametrize("price", [b"0.00000000", b"0"])
def test_a_zero_price_level_is_refused(path: str, price: bytes) -> None:
    h, _, frames = synced_pair()
    for ts, f in frames[:100]:
        feed(h, f, ts)
    seen: list[np.ndarray] = []
    h.sync.on_levels = lambda book, bids, asks, snap: seen.append(np.concatenate([bids, asks]))
    before = book_state(h.book)
    ts, victim = frames[100]
    bad = re.sub(rb'"b":\[\["[0-9.]+"', b'"b":[["' + price + b'"', victim, count=1)
    if bad == victim:
        bad = re.sub(rb'"a":\[\["[0-9.]+"', b'"a":[["' + price + b'"', victim, count=1)
    assert bad != victim
    feed(h, bad, ts, fast=path == "fast")
    assert h.invalid == ["bad_level"] and h.incidents[-1].kind == "bad_level" and h.sync.bad_levels == 1
    h.check_invalid_came_first()
    assert not seen and book_state(h.book)[7:] == before[7:]  # nothing of it applied, nothing to paper's hook
    assert h.sync.state is BUFFERING and len(h.requests) == 2


def test_negative_sizes_and_bad_snapshots_are_refused() -> None:
    h, _, frames = synced_pair()
    for ts, f in frames[:10]:
        feed(h, f, ts)
    uid = h.book.update_id
    h.sync.on_diff(DepthDiff(SYM, uid + 1, uid + 1, 0, 1, lv((6_000_000_000_000, -5)), lv()))
    assert h.invalid == ["bad_level"] and "size=-5" in h.incidents[-1].detail
    # a snapshot with a zero price is refused and fetched again
    at = ids(frames[12][1])[1]
    snaps, _, _ = clean_replay({at})
    for ts, f in frames[10:13]:
        feed(h, f, ts)
    good = snaps[at]
    bad = Snapshot(at, np.concatenate([good.bids, lv((0, E8))]), good.asks, 1)
    n = len(h.requests)
    h.snapshot(bad)
    assert h.sync.state is BUFFERING and len(h.requests) == n + 1 and h.incidents[-1].kind == "bad_level"
    h.snapshot(good)
    for ts, f in frames[13:30]:
        feed(h, f, ts)
    assert h.book.valid and h.invalid == ["bad_level"]


# --- on_book_invalid: once per transition ---------------------------------------------------


def test_on_invalid_comes_once_per_transition_with_its_reason() -> None:
    h, _, frames = synced_pair()
    u = [ids(f)[1] for _, f in frames]
    snaps, _, _ = clean_replay({u[22], u[23], u[28], u[31], u[33], u[35]})

    def go(i: int) -> None:
        feed(h, frames[i][1], frames[i][0])

    for i in range(20):
        go(i)
    assert h.book.valid
    go(21)  # 20 skipped: a gap
    go(22)  # buffered: no second call
    h.snapshot(snaps[u[22]])
    go(23)
    assert h.book.valid and h.invalid == ["sequence_gap"]
    h.sync.resync("operator", 1)
    h.sync.resync("operator again", 1)
    h.snapshot(snaps[u[23]])
    go(24)
    n = len(h.requests)
    h.sync.lost(1)  # a depth frame that did not decode
    assert h.invalid[-1] == "decode_error" and not h.book.valid and len(h.requests) == n  # no snapshot yet
    go(25)  # continues the chain: nothing was lost, shown again without a snapshot
    assert h.book.valid and h.served[-1][0] == u[25]
    h.sync.check_stale(frames[25][0] + 10**10)
    go(26)
    assert h.book.valid
    U27, _ = ids(frames[27][1])
    feed(h, set_field(frames[27][1], "u", U27 + 10**9))
    go(28)
    h.snapshot(snaps[u[28]])
    go(29)
    assert h.book.valid
    go(30)
    bad = re.sub(rb'\[\["[0-9.]+","', b'[["0","', frames[31][1], count=1)
    feed(h, bad)
    h.snapshot(snaps[u[31]])  # lastUpdateId = u[31]: the refused message is covered
    go(32)
    assert h.book.valid
    ask = h.book.best_ask_fixed
    uid = h.book.update_id
    h.sync.on_diff(DepthDiff(SYM, uid + 1, uid + 1, 0, 1, lv((ask + 1_000_000, E8)), lv()))  # crosses
    go(33)
    h.snapshot(snaps[u[33]])
    go(34)
    assert h.book.valid
    h.sync.reset("disconnected")
    h.sync.reset("disconnected")
    go(35)
    h.snapshot(snaps[u[35]])
    go(36)
    assert h.book.valid
    assert h.invalid == [
        "sequence_gap",
        "resync",
        "decode_error",
        "stale_data",
        "id_jump",
        "bad_level",
        "crossed_book",
        "disconnect",
    ]
    h.check_invalid_came_first()


def test_a_lost_frame_then_a_gap_is_one_transition() -> None:
    h, _, frames = synced_pair()
    for ts, f in frames[:30]:
        feed(h, f, ts)
    h.sync.lost(1)
    feed(h, frames[31][1])  # 30 is missing: a gap, but the book is already invalid
    assert h.invalid == ["decode_error"] and h.sync.gaps == 1 and h.sync.state is BUFFERING


# --- the feed: frames by hand, both wirings -------------------------------------------------


class Fills:
    """A stand-in for the simulated venue behind ``PaperMatching``: records the kernel's fills."""

    def __init__(self) -> None:
        self.fills: list[tuple[int, int, int]] = []

    def kernel_fill(self, slot: int, qty: int, price: int, ts: int) -> None:
        self.fills.append((slot, qty, price))

    def release_if_done(self, slot: int) -> None:
        return None


class FeedRig:
    """``BinanceMarketData`` with no sockets: frames go to ``_on_frame`` by hand; snapshot requests
    are collected in ``requests`` for the test to answer. Checks on every callback: no invalid
    book is shown; ``on_book_invalid`` only for a book that was shown valid, with the book
    already invalid; trades only within the band of a valid book; paper's hook only sees
    levels with positive prices and sizes >= 0."""

    def __init__(self, paper: bool, **cfg: object) -> None:
        self.config = parse_config({"symbols": [SYM], **cfg}, "<test>", env={})
        self.served: list[int] = []
        self.invalid: list[str] = []
        self.incidents: list[Incident] = []
        self.trades: list[Trade] = []
        self.requests: list[tuple[str, int]] = []
        self.level_calls = 0
        self.violations: list[str] = []
        self.shown_valid = False
        self.paper = paper
        self.venue = Fills()
        self.matching: PaperMatching | None = None
        on_levels = None
        if paper:
            resting = RestingOrders()
            clock = SimpleNamespace(now=lambda: 0)
            self.matching = PaperMatching(resting, {("binance", SYM): 0}, clock, 0, 1.0)
            # far from any real BTCUSDT price: a fill means a bad print or level got through
            resting.add(SimpleNamespace(side=1, price=30_000 * E8), self.venue, 0, 0, E8)  # type: ignore[arg-type]
            resting.add(SimpleNamespace(side=-1, price=120_000 * E8), self.venue, 0, 0, E8)  # type: ignore[arg-type]
            on_levels = self.on_levels
        cb = FeedCallbacks(self.on_book, self.on_trade, self.incidents.append, on_levels, self.on_invalid)
        # wired as ``BinanceAdapter.market_data`` wires it
        self.feed = BinanceMarketData(
            self.config, None, {SYM: BTC}, cb.on_book, cb.on_trade, cb.on_incident,  # type: ignore[arg-type]
            on_book_invalid=cb.on_book_invalid,
        )  # fmt: skip
        if cb.on_levels is not None:
            for sync in self.feed.syncs.values():
                sync.on_levels = cb.on_levels
        self.feed._request_snapshot = lambda sym, gen: self.requests.append((sym, gen))  # type: ignore[method-assign]
        self.sync = self.feed.syncs[SYM]
        self.book = self.feed.books[SYM]

    # callbacks
    def check(self, ok: bool, what: str) -> None:
        """A failed check is kept (``BookSync`` logs and swallows what ``on_book_invalid`` raises)
        and raised."""
        if not ok:
            self.violations.append(what)
            raise AssertionError(what)

    def on_book(self, b: Book) -> None:
        self.check(b.valid and not b.is_crossed(), f"shown invalid or crossed at {b.update_id}")
        self.shown_valid = True
        self.served.append(b.update_id)

    def on_invalid(self, b: Book, reason: str) -> None:
        self.check(not b.valid, f"on_book_invalid({reason}) with the book still valid")
        self.check(self.shown_valid, f"on_book_invalid({reason}) for a book that was not valid")
        self.shown_valid = False
        self.invalid.append(reason)

    def on_trade(self, t: Trade) -> None:
        b = self.book
        mid2 = b.best_bid_fixed + b.best_ask_fixed
        self.check(b.valid, "a trade passed on while its book was invalid")
        self.check(t.price_fixed > 0 and t.size_fixed > 0, f"a trade at {t.price_fixed} size {t.size_fixed}")
        band = self.config.trade_band_pct / 100 * mid2
        self.check(abs(2 * t.price_fixed - mid2) <= band, f"a trade at {t.price_fixed} outside the band")
        self.trades.append(t)
        if self.matching is not None:
            self.matching.on_trade(t)

    def on_levels(self, book: Book, bids: np.ndarray, asks: np.ndarray, snapshot: bool) -> None:
        for side in (bids, asks):
            if len(side):
                self.check(side[:, 0].min() > 0 and side[:, 1].min() >= 0, "a non-positive level for paper")
                self.check(side.max() <= MAX_WIRE, "a level beyond 2**62 for paper")
        self.level_calls += 1
        assert self.matching is not None
        self.matching.on_levels(book, bids, asks, snapshot)

    # driving
    def frame(self, frame: bytes, ts: int = 1) -> None:
        self.feed._on_frame(frame, ts)
        assert not self.violations, self.violations[:3]
        assert self.book.valid == self.shown_valid, "the book's validity changed without a callback"

    def answer(self, snap: Snapshot) -> None:
        sym, gen = self.requests[-1]
        self.feed.syncs[sym].on_snapshot(snap, gen)

    def kinds(self) -> list[str]:
        return [i.kind for i in self.incidents]

    def sync_on_capture(self, n_after: int = 200) -> list[tuple[int, bytes]]:
        """Every capture line up to the snapshot, the snapshot, ``n_after`` lines after it; the
        lines after those are returned."""
        lines = _lines()
        i = next(i for i, (_, f) in enumerate(lines) if f.startswith(b'{"lastUpdateId"'))
        for ts, f in lines[:i]:
            self.frame(f, ts)
        self.answer(decode_snapshot(lines[i][1], lines[i][0]))
        for ts, f in lines[i + 1 : i + 1 + n_after]:
            self.frame(f, ts)
        assert self.book.valid
        return list(lines[i + 1 + n_after :])


def test_a_disconnect_tells_the_engine_but_the_sessions_own_stop_does_not() -> None:
    """A dropped connection is a transition (``disconnect``: the engine pulls its quotes); the
    feed's own close when the session stops is not: what happens to resting orders then is the
    session's ``cancel_on_stop`` decision, not the feed's."""
    rig = FeedRig(paper=False)
    rig.sync_on_capture()
    rig.feed._on_close("connection lost")
    assert rig.invalid == ["disconnect"] and rig.kinds()[-1] == "disconnect" and not rig.book.valid
    rig2 = FeedRig(paper=False)
    rig2.sync_on_capture()
    rig2.feed.ws._stopping = True
    rig2.feed._on_close("closed by client")
    assert rig2.invalid == [] and "disconnect" not in rig2.kinds() and not rig2.book.valid


def trade_frame(price: str, qty: str = "0.01000000", maker: bool = True, t: int = 3735683259) -> bytes:
    data = {"e": "trade", "E": 1723161255343, "s": "BTCUSDT", "t": t, "p": price, "q": qty}
    data.update({"T": 1723161255342, "m": maker, "M": True})
    return json.dumps({"stream": "btcusdt@trade", "data": data}, separators=(",", ":")).encode()


@pytest.mark.parametrize("wiring", ["live", "paper"])
def test_u_beyond_int64_on_the_live_wiring_no_longer_breaks_every_later_frame(wiring: str) -> None:
    """Before: msgspec's path took ``u = 2**63 + 5``, the book's id went beyond int64, and every
    later frame raised OverflowError in ``BookSync.on_frame``. Now a malformed frame: counted,
    ``decode_error``, the book invalid until the next diff shows the chain (a gap: rebuilt)."""
    rig = FeedRig(paper=wiring == "paper")
    rest = rig.sync_on_capture()
    depth = [(ts, f) for ts, f in rest if b"@depth" in f[:40]]
    ts, victim = depth[0]
    with capture_log("market_data") as logs:
        rig.frame(set_field(victim, "u", 2**63 + 5), ts)
    assert rig.feed.decoder.malformed == 1 and logs.grep("Malformed market data frame dropped")
    assert rig.kinds()[-1] == "decode_error" and rig.invalid == ["decode_error"]
    at = ids(depth[5][1])[1]
    snaps, _, _ = clean_replay({at})
    for ts, f in rest:
        if f is victim:
            continue  # lost: the venue sent it, we could not read it
        rig.frame(f, ts)
        if b"@depth" in f[:40] and ids(f)[1] == at:
            rig.answer(snaps[at])
    assert rig.book.valid and rig.sync.gaps == 1 and rig.invalid == ["decode_error"]
    assert rig.book.update_id == ids(depth[-1][1])[1]
    assert not rig.venue.fills


@pytest.mark.parametrize("wiring", ["live", "paper"])
def test_trade_prints_outside_the_band_never_reach_on_trade(wiring: str) -> None:
    """The issue's prints at 0.00000001 and 99,999,999 made paper fills 2 ms later; one beyond
    int64 crashed the paper kernel per frame. Now: ``bad_trade`` (or ``decode_error``) incidents,
    never ``on_trade``, never a simulated fill."""
    rig = FeedRig(paper=wiring == "paper")
    # before the book is valid there is nothing to check a print against: held back, no incident
    rig.frame(trade_frame("61837.63000000"))
    assert not rig.trades and rig.feed.trades_unchecked == 1 and "bad_trade" not in rig.kinds()
    rig.sync_on_capture()
    real = len(rig.trades)
    assert real > 0  # the capture's own trades passed
    mid = (rig.book.best_bid_fixed + rig.book.best_ask_fixed) / 2 / E8
    with capture_log("market_data") as logs:
        for price, qty, maker in (
            ("0.00000001", "1.00000000", True),  # a sell print through our bid at 30,000
            ("99999999.00000000", "1.00000000", False),  # a buy print through our ask at 120,000
            (f"{mid * 0.85:.2f}", "0.01000000", True),  # 15 % off: outside the default 10 % band
            (f"{mid:.2f}", "0.00000000", True),  # no quantity
            ("0.00000000", "1.00000000", True),
        ):
            rig.frame(trade_frame(price, qty, maker))
    assert rig.kinds().count("bad_trade") == 5 and rig.feed.bad_trades == 5
    assert len(logs.grep("Implausible trade venue=binance symbol=BTC-USDT")) == 5
    for price in ("92233720368.54775808", "-1.00000000", "1e5"):  # beyond int64 / signs / exponents
        rig.frame(trade_frame(price))
    rig.frame(trade_frame("61837.63000000", t=2**64))
    assert rig.feed.decoder.malformed == 4 and rig.kinds().count("decode_error") == 4
    assert len(rig.trades) == real and not rig.venue.fills
    rig.frame(trade_frame(f"{mid * 1.05:.2f}"))  # inside the band: passed on
    assert len(rig.trades) == real + 1
    if wiring == "paper":
        # the positive control: an in-band sell print at a resting bid fills it
        assert rig.matching is not None
        bid = rig.book.best_bid_fixed
        rig.matching.resting.add(SimpleNamespace(side=1, price=bid), rig.venue, 0, 0, E8)  # type: ignore[arg-type]
        rig.frame(trade_frame(f"{bid / E8:.2f}", "5.00000000", True))
        assert rig.venue.fills == [(2, E8, bid)]


def test_the_band_is_configurable() -> None:
    rig = FeedRig(paper=False, trade_band_pct=0.5)
    rig.sync_on_capture()
    mid = (rig.book.best_bid_fixed + rig.book.best_ask_fixed) / 2 / E8
    n = len(rig.trades)
    rig.frame(trade_frame(f"{mid * 1.01:.2f}"))  # 1 %: outside 0.5 %
    rig.frame(trade_frame(f"{mid * 1.004:.2f}"))
    assert len(rig.trades) == n + 1 and rig.kinds().count("bad_trade") == 1


def test_a_flood_of_bad_frames_is_logged_and_raised_on_a_schedule() -> None:
    rig = FeedRig(paper=False)
    with capture_log("market_data") as logs:
        for _ in range(2500):
            rig.frame(b'{"stream":"btcusdt@trade","data":{"p":"x"}}')
    assert rig.feed.decoder.malformed == 2500
    assert rig.kinds().count("decode_error") == 22  # the first 20, the 1000th, the 2000th
    assert len(logs.grep("Malformed market data frame dropped")) == 22


# --- config ---------------------------------------------------------------------------------


def test_integrity_settings_in_the_config() -> None:
    c = loop_config()
    assert (c.max_update_id_jump, c.trade_band_pct) == (1_000_000, 10.0)
    c = loop_config(max_update_id_jump=5000, trade_band_pct=2.5)
    assert (c.max_update_id_jump, c.trade_band_pct) == (5000, 2.5)
    with pytest.raises(ConfigError, match="max_update_id_jump: must be between"):
        loop_config(max_update_id_jump=10)
    with pytest.raises(ConfigError, match="trade_band_pct: must be a number"):
        loop_config(trade_band_pct="10%")
    rig = FeedRig(paper=False, max_update_id_jump=5000)
    assert rig.sync.max_id_jump == 5000 and rig.sync._res[R_MAXJ] == 5000


# --- invalid UTF-8: close 1007, reconnect ---------------------------------------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    head += bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n)
    return head + payload


class Utf8Venue:
    """A raw WebSocket server: connection ``n`` gets ``script(n)`` right after the handshake; the
    client's close frames are collected, and the server ends TCP once it has one (as a server
    answering a close does)."""

    def __init__(self, script) -> None:
        self.script = script
        self.connections = 0
        self.close_codes: list[int] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + self.script(self.connections)
        )
        buf = bytearray()
        while data := await reader.read(65536):
            buf += data
            r = StreamReader()
            r.feed_data(bytes(buf))
            r.feed_eof()
            while True:
                try:
                    next(Frame.parse(r.read_exact, mask=True))
                except StopIteration as done:
                    if done.value.opcode is Opcode.CLOSE:
                        self.close_codes.append(struct.unpack("!H", done.value.data[:2])[0])
                        writer.close()
                        return
                except EOFError:
                    break
        writer.close()


@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "fragmented"])
async def test_invalid_utf8_text_closes_with_1007_and_the_feed_reconnects(fragmented: bool) -> None:
    good = b'{"stream":"btcusdt@trade","data":{"x":"caf\xc3\xa9"}}'  # valid UTF-8, not ASCII: passes

    def script(n: int) -> bytes:
        if n > 1:
            return server_frame(good)
        if fragmented:
            bad = server_frame(b'{"stream":"btc', fin=False) + server_frame(b'usdt\xff"}', opcode=0x0)
        else:
            bad = server_frame(b'{"stream":"btcusdt@trade","data":{"p":"\xff\xfe"}}')
        return server_frame(good) + server_frame(b"\xff", opcode=0x2) + bad + server_frame(b'{"never":1}')

    venue = Utf8Venue(script)
    srv = await asyncio.start_server(venue.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    cfg = loop_config(ws_url=f"ws://127.0.0.1:{port}", symbols=[SYM])
    incidents: list[Incident] = []
    feed = BinanceMarketData(cfg, None, {SYM: BTC}, lambda b: None, on_incident=incidents.append)  # type: ignore[arg-type]
    got: list[bytes] = []
    on_frame = feed._on_frame
    feed.ws.on_message = lambda data, ts: (got.append(data), on_frame(data, ts))  # type: ignore[method-assign]
    try:
        with capture_log("exchanges") as ex:
            feed.start()
            await wait_until(lambda: venue.connections >= 2 and len(got) >= 3, what="reconnected after 1007")
    finally:
        await feed.stop()
        srv.close()
    assert venue.close_codes[0] == 1007
    assert got == [good, b"\xff", good]  # binary frames carry no UTF-8 rule; nothing after the bad one
    assert ex.grep("closed by client code=1007")
    kinds = [i.kind for i in incidents]
    assert "disconnect" in kinds and "reconnect" in kinds
    assert any("code=1007" in i.detail for i in incidents if i.kind == "disconnect")
    assert feed.ws.handler_errors == 0
