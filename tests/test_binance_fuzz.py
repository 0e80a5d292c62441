"""Property-based fuzzing of the decoders and the feed's frame handler: malformed frames (random
bytes, truncated JSON, wrong types, missing fields, bad numbers) are counted and logged, never
raised, and never reach a book."""

from __future__ import annotations

import json
import random

import msgspec
import numpy as np
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_binance_support import FIXTURES, capture_log, fixture, http_server, loop_config, wait_until

from engine.book import Book
from venues.binance import decode as d
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
