"""The fake Binance's market streams: verbatim frames, control messages, book sync, faults, keepalive."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import json
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType

from sim.fake_binance import FakeBinance

pytestmark = pytest.mark.timeout(90)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "binance_spot_hftbacktest"
DAY1 = DATA / "btcusdt_20240808.gz"
ALL = "btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"


@contextlib.asynccontextmanager
async def serve(**kw):
    """A fake on loopback and an HTTP session to talk to it."""
    async with FakeBinance(data=DATA, **kw) as fb, aiohttp.ClientSession() as session:
        yield fb, session


def capture_lines(n: int) -> list[str]:
    with gzip.open(DAY1) as fh:
        return [ln.split(b" ", 1)[1].decode() for ln in fh.read().splitlines()[:n]]


async def recv_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 20.0):
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def collect(ws: aiohttp.ClientWebSocketResponse, n: int, timeout: float = 30.0) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        msg = await asyncio.wait_for(ws.receive(), max(0.01, deadline - time.monotonic()))
        if msg.type == WSMsgType.TEXT:
            out.append(msg.data)
    return out


async def test_frames_are_the_capture_verbatim() -> None:
    lines = capture_lines(400)
    async with (
        serve(speed=0, start="manual", restamp=False) as (fb, s),
        s.ws_connect(f"{fb.ws_url}/stream?streams={ALL}") as combined,
        s.ws_connect(f"{fb.ws_url}/ws/btcusdt@depth@100ms") as raw,
    ):
        await fb.advance(200)
        frames = await collect(combined, 200)
        start = lines.index(frames[0])
        expected = [ln for ln in lines[start:] if not ln.startswith('{"lastUpdateId"')][:200]
        assert frames == expected
        first = json.loads(frames[0])["data"]
        assert first["U"] <= fb.replayer.capture.snapshots["BTCUSDT"].last_update_id + 1 <= first["u"]
        depth = [json.loads(f) for f in frames if '"depthUpdate"' in f]
        raws = await collect(raw, len(depth))
        assert [json.loads(r) for r in raws] == [d["data"] for d in depth]


async def test_event_times_are_restamped_by_default() -> None:
    async with serve(speed=0, start="manual") as (fb, s), s.ws_connect(f"{fb.ws_url}/stream?streams={ALL}") as ws:
        await fb.advance(100)
        now = time.time() * 1000
        for f in map(json.loads, await collect(ws, 100)):
            d = f["data"]
            if "E" in d:
                assert abs(d["E"] - now) < 5000
            if d.get("e") == "trade":
                assert 0 <= d["E"] - d["T"] < 5000


async def test_control_messages() -> None:
    async with (
        FakeBinance(data=DATA, speed=0, start="manual", max_incoming_per_s=None) as fb,
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{fb.ws_url}/ws") as ws,
    ):
        await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@bookTicker"],"id":1}')
        assert await recv_json(ws) == {"result": None, "id": 1}
        await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":"a3"}')
        assert await recv_json(ws) == {"result": ["btcusdt@trade", "btcusdt@bookTicker"], "id": "a3"}
        await ws.send_str('{"method":"UNSUBSCRIBE","params":["btcusdt@bookTicker"],"id":2}')
        assert await recv_json(ws) == {"result": None, "id": 2}
        await ws.send_str('{"method":"GET_PROPERTY","params":["combined"],"id":3}')
        assert await recv_json(ws) == {"result": False, "id": 3}
        await fb.advance(60)
        frame = await recv_json(ws)
        assert frame["e"] == "trade"  # raw connection: bare payload, only the subscribed stream
        await ws.send_str('{"method":"SET_PROPERTY","params":["combined",true],"id":4}')
        while (reply := await recv_json(ws)).get("id") != 4:
            pass
        assert reply == {"result": None, "id": 4}
        await fb.advance(200)
        while "stream" not in (frame := await recv_json(ws)):
            pass
        assert frame["stream"] == "btcusdt@trade" and frame["data"]["e"] == "trade"
        errors = {
            "{not json": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"},
            '{"method":"SUBSCRIBE","params":[],"id":true}': {
                "code": 2,
                "msg": "Invalid request: request ID must be an unsigned integer",
            },
            '{"method":"GET_PROPERTY","params":["colour"],"id":9}': {"code": 0, "msg": "Unknown property", "id": 9},
            '{"method":"SET_PROPERTY","params":["combined","yes"],"id":9}': {
                "code": 1,
                "msg": "Invalid value type: expected Boolean",
            },
        }
        for text, expected in errors.items():
            await ws.send_str(text)
            while (reply := await recv_json(ws)).get("e") == "trade" or "stream" in reply:
                pass
            assert reply == expected, text
        await ws.send_str('{"method":"SUBSCRIBED","params":[],"id":5}')
        while "code" not in (reply := await recv_json(ws)):
            pass
        assert reply["code"] == 2 and reply["msg"].startswith("Invalid request: unknown variant `SUBSCRIBED`")


def _top(levels: dict[Decimal, Decimal], best) -> tuple[Decimal, Decimal]:
    p = best(levels)
    return p, levels[p]


async def test_binance_sync_algorithm_matches_book_ticker() -> None:
    """A client that follows Binance's documented sync procedure over the fake rebuilds a book whose
    top equals the bookTicker stream at every update id both carry."""
    async with (
        serve(speed=0, max_records=30000) as (fb, s),
        s.ws_connect(f"{fb.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker") as ws,
    ):
        frames = [await recv_json(ws)]
        while frames[-1]["stream"] != "btcusdt@depth@100ms":
            frames.append(await recv_json(ws))
        for _ in range(50):  # let the stream run ahead of the snapshot, as on the real venue
            frames.append(await recv_json(ws))
        async with s.get(f"{fb.rest_url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5000"}) as r:
            snap = await r.json()
        first_u = next(f["data"]["U"] for f in frames if f["stream"].endswith("@100ms"))
        assert snap["lastUpdateId"] >= first_u
        while True:
            try:
                frames.append(await recv_json(ws, timeout=1.0))
            except TimeoutError:
                if fb.replay_done.is_set():
                    break
    last = snap["lastUpdateId"]
    bids = {Decimal(p): Decimal(q) for p, q in snap["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snap["asks"]}
    # bookTicker is real time and the diff stream batches 100 ms, so a ticker usually arrives before
    # the diff that ends at its id: compare once the book has reached that id
    tickers = {f["data"]["u"]: f["data"] for f in frames if f["stream"].endswith("@bookTicker")}
    local_id = None
    matched = applied = 0
    for f in frames:
        d = f["data"]
        if f["stream"].endswith("@bookTicker") or d["u"] <= last:
            continue
        if local_id is None:
            assert d["U"] <= last + 1 <= d["u"]
        else:
            assert d["U"] == local_id + 1
        for side, levels in ((bids, d["b"]), (asks, d["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        local_id = d["u"]
        applied += 1
        t = tickers.get(local_id)
        if t is not None:
            assert _top(bids, max) == (Decimal(t["b"]), Decimal(t["B"])), t
            assert _top(asks, min) == (Decimal(t["a"]), Decimal(t["A"])), t
            matched += 1
    assert applied > 1000 and matched > 100
    assert max(bids) < min(asks)


async def test_dropped_diffs_make_a_gap() -> None:
    async with serve(speed=0, start="manual") as (fb, s), s.ws_connect(f"{fb.ws_url}/ws/btcusdt@depth@100ms") as ws:
        await fb.advance(300)
        fb.drop_diffs(2)
        await fb.advance(300)
        final = fb.last_update_id()
        diffs = []
        while not diffs or diffs[-1]["u"] != final:
            diffs.append(await recv_json(ws))
    breaks = [(a["u"], b["U"]) for a, b in itertools.pairwise(diffs) if b["U"] != a["u"] + 1]
    assert len(breaks) == 1
    prev_u, next_first = breaks[0]
    assert next_first > prev_u + 1  # U skips: the client must detect the gap and resync
    assert fb.replayer.diffs_dropped == 2


async def test_partial_depth_and_agg_trade_streams() -> None:
    async with (
        serve(speed=0, start="manual") as (fb, s),
        s.ws_connect(f"{fb.ws_url}/stream?streams=btcusdt@depth5@100ms/btcusdt@aggTrade") as ws,
    ):
        await fb.advance(400)
        frames = [json.loads(f) for f in await collect(ws, 20)]
    depth = [f["data"] for f in frames if f["stream"] == "btcusdt@depth5@100ms"]
    agg = [f["data"] for f in frames if f["stream"] == "btcusdt@aggTrade"]
    assert depth and agg
    assert len(depth[0]["bids"]) == 5 and len(depth[0]["asks"]) == 5
    assert float(depth[0]["bids"][0][0]) < float(depth[0]["asks"][0][0])
    assert agg[0]["e"] == "aggTrade" and agg[0]["f"] == agg[0]["l"] == agg[0]["a"]


async def test_server_pings_and_drops_silent_clients() -> None:
    """The fake pings every ``ping_interval`` and closes (1008) a connection that has not echoed a
    ping's payload within ``pong_timeout``; a client that answers stays. Checked on events, not
    on the clock: the bounds below are only there to end a broken run, and hold on a loaded
    machine. (The incoming-message limit, 5 a second, is off here: with pings every 0.2 s a
    polite client's pongs alone reached it, which made this test fail now and then; that limit
    has its own test.)"""
    async with (
        serve(speed=0, start="manual", ping_interval=0.3, pong_timeout=2.0, max_incoming_per_s=None) as (fb, s),
        s.ws_connect(f"{fb.ws_url}/ws/btcusdt@trade", autoping=False) as mute,
        s.ws_connect(f"{fb.ws_url}/ws/btcusdt@trade") as polite,
    ):
        replies: asyncio.Queue = asyncio.Queue()

        async def read_polite() -> None:  # aiohttp answers pings (same payload) while it reads
            async for m in polite:
                await replies.put(json.loads(m.data))

        reader = asyncio.create_task(read_polite())
        msg = await asyncio.wait_for(mute.receive(), 30)
        assert msg.type == WSMsgType.PING
        await mute.pong(b"not-the-payload")  # an unsolicited pong does not keep it alive
        while msg.type not in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            msg = await asyncio.wait_for(mute.receive(), 30)
        assert mute.close_code == 1008  # dropped for want of a pong
        # the polite client answered every one of those pings: still open, and served
        assert not polite.closed
        await polite.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        assert await asyncio.wait_for(replies.get(), 30) == {"result": ["btcusdt@trade"], "id": 1}
        assert not polite.closed
        reader.cancel()


async def test_connection_lifetime() -> None:
    async with (
        serve(speed=0, start="manual", max_lifetime=0.4) as (fb, s),
        s.ws_connect(f"{fb.ws_url}/ws/btcusdt@trade") as ws,
    ):
        t0 = time.monotonic()
        msg = await asyncio.wait_for(ws.receive(), 30)
        assert msg.type == WSMsgType.CLOSE and ws.close_code == 1001
        assert time.monotonic() - t0 > 0.3  # not before its lifetime (the upper bound: the wait's)


async def test_server_shutdown_event_then_close() -> None:
    async with (
        serve(speed=0, start="manual") as (fb, s),
        s.ws_connect(f"{fb.ws_url}/stream?streams=btcusdt@trade") as ws,
    ):
        fb.server_shutdown(close_after=0.2)
        event = await recv_json(ws)
        assert event["e"] == "serverShutdown" and abs(event["E"] - time.time() * 1000) < 5000
        msg = await asyncio.wait_for(ws.receive(), 20)
        assert msg.type == WSMsgType.CLOSE


async def test_disconnect_fault_and_reconnect() -> None:
    async with FakeBinance(data=DATA, speed=0, start="manual") as fb, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{fb.ws_url}/ws/btcusdt@depth@100ms")
        assert fb.disconnect() == 1
        msg = await asyncio.wait_for(ws.receive(), 20)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
        await ws.close()
        async with s.ws_connect(f"{fb.ws_url}/ws/btcusdt@depth@100ms") as again:
            await fb.advance(50)
            assert (await recv_json(again))["e"] == "depthUpdate"


async def test_silence_keeps_socket_open_without_data() -> None:
    """During a silence nothing is published and the socket stays open; the market stalls, so the
    first diff after it follows the last one before. (Checked on the fake's own counters: what the
    client still receives during the silence is whatever was queued before it, however much a
    loaded machine let pile up.)"""
    async with serve(speed=1, start="now") as (fb, s), s.ws_connect(f"{fb.ws_url}/ws/btcusdt@depth@100ms") as ws:
        before = await recv_json(ws)
        t0 = time.monotonic()
        fb.silence(2.0)
        published = fb.hub.frames_published
        last_sent = fb.last_update_id()
        frames = []
        while time.monotonic() - t0 < 1.0:  # well inside the silence
            with contextlib.suppress(TimeoutError):
                frames.append(await recv_json(ws, timeout=0.1))
        assert fb.hub.frames_published == published and not ws.closed
        assert all(f["u"] <= last_sent for f in frames)  # only what was sent before the silence
        after = await recv_json(ws, timeout=30)
        while after["u"] <= last_sent:  # the rest of the queue, if the client was behind
            after = await recv_json(ws, timeout=30)
        assert time.monotonic() - t0 >= 1.9
        assert after["U"] == last_sent + 1  # the market stalled: no gap after the silence
        assert before["u"] <= last_sent


async def test_incoming_message_limit() -> None:
    async with serve(speed=0, start="manual") as (fb, s), s.ws_connect(f"{fb.ws_url}/ws") as ws:
        for i in range(8):
            await ws.send_str(f'{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}')
        kinds = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 20)
            kinds.append(msg.type)
            if msg.type != WSMsgType.TEXT:
                break
        assert kinds.count(WSMsgType.TEXT) == 5 and kinds[-1] == WSMsgType.CLOSE
