"""Property-based fuzzing of the decoders and the feed's frame handler: malformed frames (random
bytes, truncated JSON, wrong types, missing fields, bad numbers) are counted and logged, never
raised, and never reach a book; and a seeded fuzz of the real capture through the feed's frame
handler in both wirings (live and paper), every book shown compared with the truth."""

from __future__ import annotations

import json
import random
import re
from bisect import bisect_left, insort
from collections import Counter, deque
from decimal import Decimal
from functools import cache

import msgspec
import numpy as np
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_binance_book_sync import capture_lines
from test_binance_integrity import E8, SYM, FeedRig
from test_binance_support import FIXTURES, capture_log, fixture, http_server, loop_config, wait_until

from engine.book import Book
from venues.binance import decode as d
from venues.binance.decode import Snapshot
from venues.binance.feed import BinanceMarketData
from venues.binance.filters import SymbolFilters, to_instrument
from venues.binance.numbers import depth_from_json, levels_array, parse_fixed
from venues.binance.rest import BinanceRest
from venues.binance.symbols import SymbolMap

FRAMES = [
    json.dumps(json.loads(line)["frame"]).encode()
    for line in (FIXTURES / "ws_capture_NKNUSDT_interleaved.jsonl").read_text().splitlines()
]
DEPTH = [f for f in FRAMES if b"@depth" in f]
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=8,
)


def decoder() -> d.MarketFrameDecoder:
    return d.MarketFrameDecoder(SymbolMap(["NKN-USDT"]))


@given(st.binary(max_size=300))
@SETTINGS
def test_random_bytes_never_raise(data: bytes) -> None:
    dec = decoder()
    ev = dec.decode(data, 1)
    assert ev is None or isinstance(ev, (d.DepthDiff, d.BookTop, d.ServerShutdown, d.ControlReply))
    if ev is None:
        assert dec.malformed + dec.unknown_streams == 1


@given(st.sampled_from(FRAMES), st.data())
@SETTINGS
def test_truncated_frames_counted(frame: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(frame) - 1))
    dec = decoder()
    assert dec.decode(frame[:cut], 1) is None
    assert dec.malformed == 1


@given(st.sampled_from(DEPTH), st.data())
@SETTINGS
def test_wrong_types_and_missing_fields(frame: bytes, data: st.DataObject) -> None:
    obj = json.loads(frame)
    payload = obj["data"]
    key = data.draw(st.sampled_from(sorted(payload)))
    if data.draw(st.booleans()):
        del payload[key]
    else:
        payload[key] = data.draw(json_values)
    dec = decoder()
    ev = dec.decode(json.dumps(obj).encode(), 1)
    if ev is None:
        assert dec.malformed == 1
    else:  # the mutation happened to keep the frame valid ("e" is not checked, values may coincide)
        assert isinstance(ev, d.DepthDiff)
        assert all(p >= 0 and q >= 0 for p, q in [*ev.bids, *ev.asks])


@given(st.sampled_from(DEPTH), st.text(min_size=1, max_size=10))
@SETTINGS
def test_bad_numbers_in_levels(frame: bytes, junk: str) -> None:
    obj = json.loads(frame)
    levels = obj["data"]["b"] or obj["data"]["a"]
    levels[0][random.Random(len(junk)).randrange(2)] = junk
    dec = decoder()
    ev = dec.decode(json.dumps(obj).encode(), 1)
    try:
        valid = all(c in "0123456789." for c in junk) and junk.count(".") <= 1 and junk != "."
        if valid:
            d.levels_fixed(json.dumps([[junk, "1"]]).encode())
    except ValueError:
        valid = False
    assert (ev is not None) == valid
    assert dec.malformed == (0 if valid else 1)


@given(st.binary(max_size=200) | json_values.map(lambda v: msgspec.json.encode({"subscriptionId": 0, "event": v})))
@SETTINGS
def test_user_frames_never_raise(data: bytes) -> None:
    u = d.UserFrameDecoder()
    r = u.decode(data)
    assert r is None or isinstance(r[0], d.WsApiMessage)


async def test_feed_survives_garbage_and_logs_it() -> None:
    """Through the feed's real frame handler: garbage between real frames is counted and logged,
    the book still syncs (snapshot from a loopback REST server), and no callback ever sees an
    invalid book."""
    inst = to_instrument(SymbolFilters("NKN-USDT", "NKNUSDT", "NKN", "USDT", tick=10_000, step=100_000_000))

    async def depth(request: web.Request) -> web.Response:
        assert request.query["symbol"] == "NKNUSDT"
        return web.Response(body=fixture("depth_snapshot_NKNUSDT.json"), content_type="application/json")

    async with http_server([web.get("/api/v3/depth", depth)]) as url:
        cfg = loop_config(rest_url=url, symbols=["NKN-USDT"])
        served: list[bool] = []
        async with BinanceRest(cfg) as rest:
            feed = BinanceMarketData(cfg, rest, {"NKN-USDT": inst}, on_book=lambda b: served.append(b.valid))
            sync = feed.syncs["NKN-USDT"]
            rng = random.Random(7)
            garbage = [rng.randbytes(rng.randrange(1, 60)) for _ in range(50)]
            garbage.append(b'{"stream":"nknusdt@depth@100ms","data":{}}')
            with capture_log("market_data") as logs:
                for i, frame in enumerate(DEPTH):
                    feed._on_frame(frame, i + 1)
                    feed._on_frame(garbage[i % len(garbage)], i + 1)
                await wait_until(lambda: sync.applied == 149, what="book synced from the snapshot")
            await feed.stop()
    assert feed.decoder.malformed == len(DEPTH)
    assert logs.grep("Malformed market data frame dropped")
    assert sync.gaps == 0 and sync.dropped == 1
    assert served and all(served)
    assert isinstance(feed.books["NKN-USDT"], Book) and feed.books["NKN-USDT"].valid


decimal_strings = st.builds(
    lambda w, f: f"{w}.{f}" if f is not None else str(w),
    st.integers(0, 10**10 - 1),
    st.none() | st.text("0123456789", min_size=0, max_size=12),
)


@given(st.lists(st.tuples(decimal_strings, decimal_strings), max_size=30))
@SETTINGS
def test_compiled_level_scan_equals_exact_parser(levels: list[tuple[str, str]]) -> None:
    compact = json.dumps(levels, separators=(",", ":")).encode()
    spaced = json.dumps(levels, indent=1).encode()  # not compact: takes the general path
    try:
        want = [[parse_fixed(p), parse_fixed(q)] for p, q in levels]
    except ValueError:
        want = None
    for raw in (compact, spaced):
        if want is None:
            try:
                d.levels_fixed(raw)
            except ValueError:
                continue
            raise AssertionError(f"{raw!r} should have been refused")
        assert d.levels_fixed(raw).tolist() == want


def _slow_depth(payload: bytes) -> tuple[int, int, int, list, list]:
    """The general path: msgspec struct + the exact string parser for every level."""
    m = d._depth.decode(payload)
    bids = levels_array(msgspec.json.decode(bytes(m.bids), type=list[tuple[str, str]]))
    asks = levels_array(msgspec.json.decode(bytes(m.asks), type=list[tuple[str, str]]))
    return m.event_time, m.first_id, m.last_id, bids.tolist(), asks.tolist()


@given(st.sampled_from(DEPTH), st.randoms(use_true_random=False), st.booleans(), st.booleans())
@SETTINGS
def test_compiled_depth_scan_equals_msgspec_path(frame: bytes, rnd: random.Random, spaced: bool, extra: bool) -> None:
    """Any key order, extra fields and (outside the level arrays) whitespace: the compiled scan
    either gives exactly what msgspec + the exact parser give, or declines (never a wrong value)."""
    payload = json.loads(frame)["data"]
    if extra:
        payload.update({"x": 1.5e3, "y": None, "z": 'q"uote', "w": True})
    items = list(payload.items())
    rnd.shuffle(items)
    obj = dict(items)
    raw = json.dumps(obj, separators=(", ", ": ") if spaced else (",", ":")).encode()
    fast = depth_from_json(raw)
    want = _slow_depth(raw)
    if fast is None:
        assert spaced  # the compact form Binance sends always takes the compiled scan
        return
    ev, first, last, bids, asks = fast
    assert (ev, first, last, bids.tolist(), asks.tolist()) == want
    assert bids.dtype == asks.dtype == np.int64


def test_compiled_depth_scan_declines_what_it_does_not_know() -> None:
    base = json.loads(DEPTH[0])["data"]
    for change in (
        {"U": -1},  # negative ids: msgspec decides
        {"U": 1.0},  # a float is not an id
        {"E": "1"},
        {"e": 5},  # e and s must be strings
        {"x": {"nested": 1}},
        {"U": 10**19},  # beyond int64
    ):
        raw = json.dumps({**base, **change}, separators=(",", ":")).encode()
        assert depth_from_json(raw) is None, change
    dup = json.dumps(base, separators=(",", ":")).encode()[:-1] + b',"u":5}'
    assert depth_from_json(dup) is None
    escaped = json.dumps(base, separators=(",", ":")).encode().replace(b'"U"', b'"\\u0055"')
    assert depth_from_json(escaped) is None
    assert d._depth.decode(escaped).first_id == base["U"]  # and msgspec still reads it


# --- the seeded fuzz of the feed's frame handler on the real capture ---------------------------
#
# Both days of the real BTCUSDT capture (one continuous chain: 6,490 diffs, about 20,000 trades
# and 56,000 bookTickers after the REST snapshot) go through ``BinanceMarketData._on_frame`` with
# mutations in "storm" stretches between clean ones. The truth is an independent book (dicts,
# Decimal parsing) built from the clean capture; the venue's REST snapshot is answered from it at
# the venue's position when the feed asks (sometimes older, sometimes wrong, sometimes late).
#
# Mutations never make a well-formed message with other values: a bit flip that turns one digit
# into another is drawn again (a price of 61837.63 read as 61837.73 in a well-formed message
# that continues the chain cannot be told from the truth without a checksum, which Binance spot
# does not send), and id mutations are either implausible (beyond the bound) or break the chain.
# A plausible-but-wrong id within the bound is caught at the next diff
# (``test_binance_integrity.test_a_plausible_but_wrong_id_is_caught_at_the_next_diff``).

DEPTH_K, TRADE_K, TICKER_K = 0, 1, 2
N_TOP = 20


def _fx(s: str) -> int:
    return int(Decimal(s) * E8)


class RefBook:
    """The truth: price -> size per side, with sorted prices for the top of book."""

    def __init__(self, bids: dict[int, int], asks: dict[int, int]) -> None:
        self.side = {1: dict(bids), -1: dict(asks)}
        self.keys = {1: sorted(bids), -1: sorted(asks)}

    def set(self, s: int, p: int, q: int) -> int | None:
        d, k = self.side[s], self.keys[s]
        old = d.get(p)
        if q == 0:
            if old is not None:
                del d[p]
                k.pop(bisect_left(k, p))
        else:
            if old is None:
                insort(k, p)
            d[p] = q
        return old

    def apply(self, bids, asks) -> list[tuple[int, int, int | None]]:
        undo = []
        for s, levels in ((1, bids), (-1, asks)):
            for p, q in levels:
                undo.append((s, p, self.set(s, p, q)))
        return undo

    def undo(self, undo) -> None:
        for s, p, old in reversed(undo):
            self.set(s, p, old or 0)

    def top(self) -> tuple[list, list]:
        b, a = self.side[1], self.side[-1]
        return [(p, b[p]) for p in reversed(self.keys[1][-N_TOP:])], [(p, a[p]) for p in self.keys[-1][:N_TOP]]

    def snapshot(self, lid: int) -> Snapshot:
        b, a = self.side[1], self.side[-1]
        bids = np.array([(p, b[p]) for p in reversed(self.keys[1])], dtype=np.int64).reshape(-1, 2)
        asks = np.array([(p, a[p]) for p in self.keys[-1]], dtype=np.int64).reshape(-1, 2)
        return Snapshot(lid, bids, asks, 1)


@cache
def _capture() -> tuple:
    """(snapshot id, bids, asks), [(ts, frame, kind, (U, u, bids, asks) | None)] for every line but
    the snapshot, tops by update id. The truth starts at the REST snapshot and takes every diff
    ending after its id, in arrival order: the one that bridges it arrived before it."""
    lines = capture_lines("20240808") + capture_lines("20240809")
    i = next(i for i, (_, f) in enumerate(lines) if f.startswith(b'{"lastUpdateId"'))
    snap = json.loads(lines[i][1])
    lid = snap["lastUpdateId"]
    bids = {_fx(p): _fx(q) for p, q in snap["bids"]}
    asks = {_fx(p): _fx(q) for p, q in snap["asks"]}
    ref = RefBook(bids, asks)
    tops = {lid: ref.top()}
    items = []
    for ts, f in lines[:i] + lines[i + 1 :]:
        head = f[:40]
        if b"@depth" in head:
            d = json.loads(f)["data"]
            diff = (d["U"], d["u"], [(_fx(p), _fx(q)) for p, q in d["b"]], [(_fx(p), _fx(q)) for p, q in d["a"]])
            items.append((ts, f, DEPTH_K, diff))
            if diff[1] > lid:
                ref.apply(diff[2], diff[3])
                lid = diff[1]
                tops[lid] = ref.top()
        elif b"@trade" in head:
            items.append((ts, f, TRADE_K, None))
        else:
            items.append((ts, f, TICKER_K, None))
    assert not any(b and a and b[0][0] >= a[0][0] for b, a in tops.values())  # the truth never crosses
    return (snap["lastUpdateId"], bids, asks), items, tops


_STREAMS = [
    b"ethusdt@depth@100ms", b"btcusdt@depth", b"btcusdt@trade", b"btcusdt@bookTicker", b"btcusdt@kline_1m",
    b"", b"BTCUSDT@depth@100ms", b"btcusdt@depth@100ms@x", b"btcusdt@depth5",
]  # fmt: skip
_BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]
_BAD_PRICES = [b"0.00000000", b"0", b"-1.00000000", b"99999999999.00000000", b"46116860184.27387905", b"1e5",
               b"1.000000001", b"9" * 30, b""]  # fmt: skip
_BAD_TRADE_PRICES = [b"0.00000001", b"99999999.00000000", b"0.00000000", b"92233720368.54775808", b"-1",
                     b"1e3", b"30000.00000000", b"120000.00000000"]  # fmt: skip


class Fuzz:
    """One seeded pass over the capture through one wiring of the feed."""

    def __init__(self, paper: bool, seed: int) -> None:
        self.rng = random.Random(seed)
        (lid, bids, asks), self.items, self.tops = _capture()
        self.truth = RefBook(bids, asks)
        self.tuid = lid
        self.history: deque[tuple[int, list]] = deque(maxlen=6)  # (id before, undo) of the last diffs
        self.rig = rig = FeedRig(paper=paper)
        self.sync = rig.sync
        self.stats: Counter[str] = Counter()
        self.mutations: Counter[str] = Counter()
        self.scheduled: list[tuple[int, str, int]] = []  # (due frame index, symbol, generation)
        self.seen_requests = 0
        self.recent: deque[bytes] = deque(maxlen=200)
        self.held: bytes | None = None
        self.last_invalid: str | None = None
        self.applied_at_invalid = 0
        self.idx = 0
        # the truth check on every book shown, on top of the rig's own checks
        shown = rig.on_book
        invalid = rig.on_invalid

        def on_book(b) -> None:
            shown(b)
            want = self.tops.get(b.update_id)
            rig.check(want is not None, f"shown at update id {b.update_id}, which no real message ends at")
            rig.check((b.levels(1, N_TOP), b.levels(-1, N_TOP)) == want, f"shown book != truth at {b.update_id}")
            if self.last_invalid is not None:
                # invalid until rebuilt; after stale data or a frame that did not decode the next
                # diff may show the chain held (then the book is the truth again, checked above)
                rebuilt = self.sync.snapshots_applied > self.applied_at_invalid
                rig.check(rebuilt or self.last_invalid in ("stale_data", "decode_error"), "shown before a rebuild")
                self.stats["shown_again_without_snapshot"] += not rebuilt
                self.last_invalid = None
            self.stats["books_compared"] += 1

        def on_invalid(b, reason: str) -> None:
            invalid(b, reason)
            self.last_invalid = reason
            self.applied_at_invalid = self.sync.snapshots_applied

        rig.feed.syncs[SYM]._on_book = on_book
        rig.feed.syncs[SYM]._on_invalid = on_invalid

    # --- the venue ---------------------------------------------------------------------------
    def venue_sends(self, item) -> None:
        _, _, kind, diff = item
        if kind == DEPTH_K and diff[1] > self.tuid:
            self.history.append((self.tuid, self.truth.apply(diff[2], diff[3])))
            self.tuid = diff[1]

    def snapshot_of(self, back: int) -> Snapshot:
        if back == 0 or not self.history:
            return self.truth.snapshot(self.tuid)
        back = min(back, len(self.history))
        ref = RefBook({}, {})
        ref.side = {1: dict(self.truth.side[1]), -1: dict(self.truth.side[-1])}
        ref.keys = {1: list(self.truth.keys[1]), -1: list(self.truth.keys[-1])}
        hist = list(self.history)
        for _, undo in reversed(hist[-back:]):
            ref.undo(undo)
        return ref.snapshot(hist[-back][0])

    def answer_snapshots(self, clean: bool) -> None:
        reqs = self.rig.requests
        while self.seen_requests < len(reqs):
            sym, gen = reqs[self.seen_requests]
            self.seen_requests += 1
            self.scheduled.append(
                (self.idx + (self.rng.randrange(1, 4) if clean else self.rng.randrange(0, 40)), sym, gen)
            )
        due = [s for s in self.scheduled if s[0] <= self.idx]
        if not due:
            return
        self.scheduled = [s for s in self.scheduled if s[0] > self.idx]
        for _, sym, gen in due:
            sync = self.rig.feed.syncs[sym]
            if gen != sync.generation and self.rng.random() < 0.9:
                continue  # the fetch loop stops when the generation moved on (sometimes it answers anyway)
            self.stats["snapshots_answered"] += 1
            r = self.rng.random()
            if clean or r < 0.55:
                snap = self.snapshot_of(0)
            elif r < 0.75:
                snap = self.snapshot_of(self.rng.randrange(1, 4))
            elif r < 0.80:
                snap = self.snapshot_of(6)
            else:
                kind = self.rng.randrange(6)
                self.mutations[f"snapshot_{['far', '2**62', 'zero', 'json_big', 'json_cut', 'lid0'][kind]}"] += 1
                snap = self.snapshot_of(0)
                if kind == 0:
                    snap = Snapshot(snap.last_update_id + 10**9, snap.bids, snap.asks, 1)
                elif kind == 1:
                    snap = Snapshot(2**62, snap.bids, snap.asks, 1)
                elif kind == 2:
                    snap = Snapshot(snap.last_update_id, np.concatenate([snap.bids, [[0, E8]]]), snap.asks, 1)
                elif kind == 5:
                    snap = Snapshot(0, snap.bids, snap.asks, 1)
                else:  # a body that does not decode: the fetch loop retries (ValueError)
                    body = json.dumps(
                        {"lastUpdateId": 2**63 + 5 if kind == 3 else self.tuid, "bids": [["1.00", "1.0"]], "asks": []}
                    ).encode()
                    if kind == 4:
                        body = body[: len(body) // 2]
                    try:
                        snap = d.decode_snapshot(body)
                    except ValueError:
                        self.stats["snapshot_decode_errors"] += 1
                        self.scheduled.append((self.idx + self.rng.randrange(1, 10), sym, gen))
                        continue
                    raise AssertionError("a malformed snapshot body decoded")
            sync.on_snapshot(snap, gen)

    # --- mutations ---------------------------------------------------------------------------
    def bitflip(self, f: bytes) -> bytes:
        rng = self.rng
        while True:
            i = rng.randrange(len(f))
            b = f[i] ^ (1 << rng.randrange(8))
            if 48 <= f[i] <= 57 and 48 <= b <= 57:
                self.stats["digit_flips_redrawn"] += 1
                continue
            return f[:i] + bytes([b]) + f[i + 1 :]

    def mutate(self, f: bytes, kind: int, diff) -> list[bytes]:
        rng = self.rng
        choices = ["bitflip", "bitflip", "truncate", "drop", "dup", "swap", "replay", "utf8", "garbage", "stream",
                   "respace"]  # fmt: skip
        if kind == DEPTH_K:
            choices += ["u_jump", "u_huge", "U_huge", "U_far", "u_lt_U", "U_back", "level_price", "level_qty",
                        "E_huge", "levels_type"] * 2  # fmt: skip
        elif kind == TRADE_K:
            choices += ["trade_price"] * 6 + ["trade_qty", "trade_t", "trade_T"]
        m = rng.choice(choices)
        self.mutations[m] += 1
        if m == "bitflip":
            return [self.bitflip(f)]
        if m == "truncate":
            return [f[: rng.randrange(len(f))]]
        if m == "drop":
            return []
        if m == "dup":
            return [f, f]
        if m == "swap":
            self.held = f
            return []
        if m == "replay":
            old = rng.choice(self.recent) if self.recent else f
            return [old, f]
        if m == "utf8":
            i = rng.randrange(len(f))
            return [f[:i] + rng.choice(_BAD_UTF8) + f[i:]]
        if m == "garbage":
            return [rng.randbytes(rng.randrange(1, 120)), f]
        if m == "stream":
            i = f.find(b'","data":')
            return [b'{"stream":"' + rng.choice(_STREAMS) + f[i:]]
        if m == "respace":
            return [json.dumps(json.loads(f)).encode()]  # the same message, not compact: msgspec's path
        if m.startswith("trade_"):
            key, values = {
                "trade_price": (b"p", _BAD_TRADE_PRICES),
                "trade_qty": (b"q", [b"0.00000000", b"-1", b"99999999999999.0", b""]),
                "trade_t": (b"t", [str(2**64).encode(), b"-1", b"1.5"]),
                "trade_T": (b"T", [str(10**20).encode(), b"-7"]),
            }[m]
            v = rng.choice(values)
            if key in (b"p", b"q"):
                if key == b"p" and v in (b"0.00000001", b"30000.00000000"):
                    f = f.replace(b'"m":false', b'"m":true')  # a sell print: through our resting bid
                elif key == b"p":
                    f = f.replace(b'"m":true', b'"m":false')  # a buy print: through our resting ask
                return [re.sub(rb'"%s":"[^"]*"' % key, b'"%s":"%s"' % (key, v), f, count=1)]
            return [re.sub(rb'"%s":\d+' % key, b'"%s":%s' % (key, v), f, count=1)]
        U = diff[0]
        if m in ("u_jump", "u_huge", "u_lt_U"):
            nu = {"u_jump": U + rng.choice([10**6 + 1, 10**9]), "u_lt_U": U - 1}.get(m)
            if nu is None:
                nu = rng.choice([2**62, 2**63 + 5, 2**64, 10**19, 10**30])
            return [re.sub(rb'"u":\d+', b'"u":%d' % nu, f, count=1)]
        if m in ("U_huge", "U_far", "U_back"):
            nU = {"U_far": self.tuid + 10**7, "U_back": U - 3}.get(m)
            if nU is None:
                nU = rng.choice([2**63, 10**25, -5])
            g = re.sub(rb'"U":\d+', b'"U":%d' % nU, f, count=1)
            if m == "U_far":
                g = re.sub(rb'"u":\d+', b'"u":%d' % (nU + 5), g, count=1)
            return [g]
        if m == "E_huge":
            return [re.sub(rb'"E":\d+', b'"E":%d' % rng.choice([10**17, 2**63]), f, count=1)]
        if m == "levels_type":
            return [f.replace(b'"b":[', b'"b":{"x":[', 1)]
        # a level's price or size
        spans = [mm.span(1 if m == "level_price" else 2) for mm in re.finditer(rb'\["([0-9.]+)","([0-9.]+)"\]', f)]
        if not spans:
            return [f.replace(b'"b":[]', b'"b":[["0","1"]]', 1)]
        lo, hi = rng.choice(spans)
        v = rng.choice(_BAD_PRICES if m == "level_price" else [b"-1.00000000", b"99999999999.0", b"1e2", b""])
        return [f[:lo] + v + f[hi:]]

    # --- the run -----------------------------------------------------------------------------
    def deliver(self, f: bytes, ts: int) -> None:
        self.stats["frames_delivered"] += 1
        self.rig.frame(f, ts)  # raises whatever escapes, and checks the rig's invariants

    def run(self, clean_tail: int = 2500) -> None:
        rng = self.rng
        rig = self.rig
        items = self.items
        n = len(items)
        storm, until = False, rng.randrange(300, 700)
        rates = {DEPTH_K: 0.5, TRADE_K: 0.5, TICKER_K: 0.22}
        for i, item in enumerate(items):
            self.idx = i
            ts, f, kind, diff = item
            self.venue_sends(item)
            clean = i >= n - clean_tail
            if i >= until:
                storm = not storm
                until = i + (rng.randrange(400, 1100) if storm else rng.randrange(250, 600))
            out = [f]
            if storm and not clean and rng.random() < rates[kind]:
                self.stats["mutated_frames"] += 1
                out = self.mutate(f, kind, diff)
            for g in out:
                self.deliver(g, ts)
            if self.held is not None and self.held is not f:
                self.deliver(self.held, ts)  # the swapped frame, after the one that followed it
                self.held = None
            self.recent.append(f)
            self.answer_snapshots(clean)
            if not clean and storm:
                r = rng.random()
                if r < 0.0004:
                    self.stats["stale_ticks"] += 1
                    rig.feed._on_tick(ts + 10**10)
                elif r < 0.0006:
                    self.stats["operator_resyncs"] += 1
                    rig.feed.resync(SYM, "fuzz")
                elif r < 0.0008:
                    self.stats["disconnects"] += 1
                    rig.feed._on_close("fuzz")
                elif r < 0.003:
                    rig.feed.top(SYM)  # decodes the latest (perhaps mutated) bookTicker
        if self.held is not None:
            self.deliver(self.held, items[-1][0])
            self.held = None


@pytest.mark.parametrize("wiring", ["live", "paper"])
def test_mutated_real_capture_through_the_feed_in_both_wirings(wiring: str) -> None:
    """At least 10,000 mutated real frames through the feed's frame handler, seeded: nothing
    escapes, every book shown equals the truth at its update id, no invalid book is shown, every
    ``on_book_invalid`` is followed by no ``on_book`` until the book was rebuilt (or, after stale
    data or an undecodable frame, until the next diff shows the chain held), trades reach
    ``on_trade`` only within the band of a valid book, and paper trading's resting orders far from
    the market are never filled. After a clean stretch the book is the truth again."""
    fz = Fuzz(paper=wiring == "paper", seed=13)
    fz.run()
    rig, sync = fz.rig, fz.sync
    kinds = Counter(rig.kinds())
    stats = {
        **fz.stats,
        "mutations": dict(fz.mutations),
        "incidents": dict(kinds),
        "on_book_invalid": dict(Counter(rig.invalid)),
        "resyncs": sync.resyncs,
        "snapshots_applied": sync.snapshots_applied,
        "gaps": sync.gaps,
        "id_jumps": sync.id_jumps,
        "bad_levels": sync.bad_levels,
        "malformed": rig.feed.decoder.malformed,
        "trades_passed": len(rig.trades),
        "bad_trades": rig.feed.bad_trades,
        "paper_level_calls": rig.level_calls,
    }
    print(f"\nfuzz {wiring}: {json.dumps(stats, sort_keys=True)}")
    assert fz.stats["mutated_frames"] >= 10_000
    assert not rig.violations and not rig.venue.fills
    assert fz.stats["books_compared"] >= 1500
    for kind in ("decode_error", "id_jump", "bad_level", "bad_trade", "sequence_gap", "resync", "stale_data"):
        assert kinds[kind] > 0, kind
    # recovered: the book is the truth at the venue's last message
    assert rig.book.valid and rig.book.update_id == fz.tuid
    assert (rig.book.levels(1, N_TOP), rig.book.levels(-1, N_TOP)) == fz.truth.top()
    if wiring == "paper":
        assert rig.level_calls > 1000
