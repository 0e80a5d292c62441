"""The live feed's fast path for an in-sync depth message (``BookSync.on_frame`` ->
``depth_apply.apply_depth``) against the general path (decoder -> ``DepthDiff`` -> ``on_diff``),
on the real BTCUSDT capture: the same book after every message, and every case the fast path
does not take is left untouched for the general one."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from test_binance_book_sync import BTC, Harness, capture_lines

from engine.book import Book, BookSet
from venues.binance.book_sync import SYNCED
from venues.binance.decode import DepthDiff, MarketFrameDecoder, decode_snapshot
from venues.binance.depth_apply import apply_depth
from venues.binance.symbols import SymbolMap

_DATA = b'","data":'


def payload_span(frame: bytes) -> tuple[int, int]:
    i = frame.find(_DATA, 11, 96)
    assert i > 0 and frame.endswith(b"}")
    return i + 9, len(frame) - 1


def book_state(book: Book) -> tuple:
    return (
        book.update_id,
        book.ts_event,
        book.best_bid_fixed,
        book.best_bid_size_fixed,
        book.best_ask_fixed,
        book.best_ask_size_fixed,
        book.valid,
        tuple(book.levels(1, 200)),
        tuple(book.levels(-1, 200)),
    )


@functools.cache
def _lines() -> tuple[tuple[int, bytes], ...]:
    return tuple(capture_lines())


def synced_pair(capacity: int = 4096) -> tuple[Harness, Harness, list[tuple[int, bytes]]]:
    """Two harnesses synced on the 2024-08-08 snapshot; the depth frames that follow it."""
    lines = _lines()
    dec = MarketFrameDecoder(SymbolMap(["BTC-USDT"]))
    fast, slow = Harness(), Harness()
    for h in (fast, slow):
        h.book = Book(BTC, BookSet(1, capacity=capacity))
        h.sync.book = h.book
    frames: list[tuple[int, bytes]] = []
    snap_at = next(i for i, (_, f) in enumerate(lines) if f.startswith(b'{"lastUpdateId"'))
    for ts, frame in lines[:snap_at]:
        ev = dec.decode(frame, ts)
        if isinstance(ev, DepthDiff):
            fast.sync.on_diff(ev)
            slow.sync.on_diff(ev)
    snap = decode_snapshot(lines[snap_at][1], lines[snap_at][0])
    fast.snapshot(snap)
    slow.snapshot(snap)
    frames = [(ts, f) for ts, f in lines[snap_at + 1 :] if b"@depth" in f[:40]]
    return fast, slow, frames


@pytest.mark.parametrize("capacity", [4096, 16])
def test_fast_path_builds_the_same_book_as_the_general_path(capacity: int) -> None:
    """capacity=16: the overflow fills up mid-message again and again (the FULL_STOP branch)."""
    fast, slow, frames = synced_pair(capacity)
    dec = MarketFrameDecoder(SymbolMap(["BTC-USDT"]))
    taken = 0
    for ts, frame in frames:
        lo, hi = payload_span(frame)
        if fast.sync.on_frame(frame, lo, hi, ts):
            taken += 1
        else:
            ev = dec.decode(frame, ts)
            assert isinstance(ev, DepthDiff)
            fast.sync.on_diff(ev)
        ev = dec.decode(frame, ts)
        assert isinstance(ev, DepthDiff)
        slow.sync.on_diff(ev)
        assert book_state(fast.book) == book_state(slow.book)
    assert taken >= len(frames) - 2  # everything but the bridging message after the snapshot
    # after its first call the fast path calls the compiled entry point, not numba's dispatcher
    assert fast.sync._apply_frame is not apply_depth
    assert fast.served == slow.served and len(fast.served) > 3000
    assert (fast.sync.applied, fast.sync.gaps) == (slow.sync.applied, 0)
    if capacity == 16:
        assert fast.book.books.capacity > 16  # it did have to grow


@pytest.mark.parametrize("capacity", [4096, 16])
def test_paper_tradings_hook_sees_every_message_the_fast_path_applied(capacity: int) -> None:
    """With ``on_levels`` set (paper trading) the fast path still applies every plain message, and
    the hook gets that message's levels, as the general path's decoder reads them, after the apply."""
    fast, slow, frames = synced_pair(capacity)
    dec = MarketFrameDecoder(SymbolMap(["BTC-USDT"]))
    got: list[tuple[list, list, bool]] = []
    fast.sync.on_levels = lambda book, bids, asks, snap: got.append((bids.tolist(), asks.tolist(), snap))
    applied_before = fast.sync.applied
    taken = 0
    for ts, frame in frames:
        ev = dec.decode(frame, ts)
        assert isinstance(ev, DepthDiff)
        n = len(got)
        if fast.sync.on_frame(frame, *payload_span(frame), ts):
            taken += 1
        else:
            fast.sync.on_diff(ev)
        slow.sync.on_diff(ev)
        if len(got) > n:
            assert got[-1] == (ev.bids.tolist(), ev.asks.tolist(), False)
    assert book_state(fast.book) == book_state(slow.book)
    assert taken >= len(frames) - 2 and fast.sync.fast_applied == taken
    assert len(got) == fast.sync.applied - applied_before  # one call per applied message, none for dropped ones


def test_fast_path_leaves_everything_else_untouched() -> None:
    fast, _, frames = synced_pair()
    assert fast.sync.state is SYNCED and not fast.sync._bridging
    before = book_state(fast.book)
    served = len(fast.served)
    nxt = next(i for i, (_, f) in enumerate(frames) if f'"U":{fast.book.update_id + 1}'.encode() in f)
    ts, frame = frames[nxt + 1]  # skips one message: a gap, for the general path to report
    lo, hi = payload_span(frame)
    assert not fast.sync.on_frame(frame, lo, hi, ts)
    ts, frame = frames[nxt]
    i = frame.index(b'"E":') + 4
    j = frame.index(b",", i)
    odd = frame[:j] + b".0" + frame[j:]  # valid JSON, but an event time that is not an integer
    assert not fast.sync.on_frame(odd, *payload_span(odd), ts)
    truncated = frame[: len(frame) // 2] + b"}"
    assert not fast.sync.on_frame(truncated, *payload_span(truncated), ts)
    assert book_state(fast.book) == before and len(fast.served) == served and fast.sync.gaps == 0
    # the bridging message after a snapshot: the general path
    lo, hi = payload_span(frame)
    fast.sync._bridging = True
    assert not fast.sync.on_frame(frame, lo, hi, ts)
    fast.sync._bridging = False
    assert fast.sync.on_frame(frame, lo, hi, ts) and len(fast.served) == served + 1
    # not synced (a reset): nothing to apply to
    fast.sync.reset("test")
    assert not fast.sync.on_frame(frames[nxt + 1][1], *payload_span(frames[nxt + 1][1]), ts)


def test_fast_path_serves_no_crossed_book() -> None:
    """A message that crosses the book: applied, never served, resync started, like on_diff."""
    fast, _, frames = synced_pair()
    dec = MarketFrameDecoder(SymbolMap(["BTC-USDT"]))
    for ts, frame in frames[:40]:
        lo, hi = payload_span(frame)
        if not fast.sync.on_frame(frame, lo, hi, ts):
            ev = dec.decode(frame, ts)
            assert isinstance(ev, DepthDiff)
            fast.sync.on_diff(ev)
    book = fast.book
    uid = book.update_id
    ask = book.best_ask_fixed
    cross = (
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT",'
        + f'"U":{uid + 1},"u":{uid + 1},"b":[["{ask / 1e8 + 1:.2f}","1.00000000"]],"a":[]'.encode()
        + b"}}"
    )
    served = len(fast.served)
    assert fast.sync.on_frame(cross, *payload_span(cross), 1)
    assert len(fast.served) == served and not book.valid and fast.sync.crossed == 1
    assert fast.sync.state != SYNCED and fast.requests  # resync asked for
    assert np.int64(book.update_id) == uid + 1


def test_fast_path_keeps_its_entry_point_when_other_signatures_exist() -> None:
    """A second compiled signature of ``apply_depth`` (here: a payload passed as a uint8 array, as
    a test or a tool may) must not send the feed back to numba's per-call dispatcher: the entry
    point is looked up by the types the feed passes."""
    fast, slow, frames = synced_pair()
    ts, frame = frames[0]
    lo, hi = payload_span(frame)
    sync = fast.sync
    bs = fast.book.books
    res = np.zeros_like(sync._res)
    scratch = sync._scratch.copy()
    # a copy of the book's arrays: the other signature is compiled without touching the book
    apply_depth(
        np.frombuffer(frame, dtype=np.uint8), lo, hi, scratch, sync.scale, bs.lad.copy(), bs.keys.copy(),
        bs.sizes.copy(), bs.cnt.copy(), bs.dead.copy(), bs.meta.copy(), fast.book.idx, 0, res,
    )  # fmt: skip
    dec = MarketFrameDecoder(SymbolMap(["BTC-USDT"]))
    for ts, frame in frames[:50]:
        for h in (fast, slow):
            if h is slow or not h.sync.on_frame(frame, *payload_span(frame), ts):
                ev = dec.decode(frame, ts)
                assert isinstance(ev, DepthDiff)
                h.sync.on_diff(ev)
    assert len(apply_depth.signatures) >= 2
    assert sync._apply_frame is not apply_depth
    assert book_state(fast.book) == book_state(slow.book)


def test_warm_applies_the_last_diff_to_a_copy_and_leaves_the_book_alone() -> None:
    """``BookSync.warm`` (the path warmer's feed part) runs the compiled apply of the last diff on
    a scratch copy: after any number of calls, between real diffs, the book, its arrays and its
    counters are what the same diffs give without it, and the copy holds the book the diff made."""
    fast, slow, frames = synced_pair()
    assert not fast.sync.warm()  # nothing applied by the fast path yet
    taken = 0
    for n, (ts, frame) in enumerate(frames[:400]):
        lo, hi = payload_span(frame)
        for h in (fast, slow):
            if not h.sync.on_frame(frame, lo, hi, ts):
                ev = MarketFrameDecoder(SymbolMap(["BTC-USDT"])).decode(frame, ts)
                assert isinstance(ev, DepthDiff)
                h.sync.on_diff(ev)
        if fast.sync.warm(refresh_every=50):
            taken += 1
            if n % 7 == 0:
                fast.sync.warm(refresh_every=50)  # twice in a row: the same again
        assert book_state(fast.book) == book_state(slow.book)
        assert (fast.sync.applied, fast.sync.dropped, fast.sync.gaps) == (slow.sync.applied, slow.sync.dropped, 0)
        assert fast.served == slow.served
    assert taken >= 390
    for a, b in zip(fast.book.books.arrays(), slow.book.books.arrays(), strict=True):
        assert np.array_equal(a, b)
    # the copy, refreshed from the book and given the last diff again, is the book
    lad, _keys, _sizes, cnt, _dead, meta = fast.sync._warm_arrays  # type: ignore[misc]
    real = fast.book.books
    assert np.array_equal(lad, real.lad) and np.array_equal(cnt, real.cnt) and np.array_equal(meta, real.meta)
    # paper trading's hook changes neither: the fast path applies and the warmer still warms
    fast.sync.on_levels = lambda *_: None
    assert fast.sync.warm()
