"""ccxt held against the fake where it used to deviate from Binance: the ticker endpoints, the
``@ticker`` stream, UUID request ids, a WS API request signed with ``returnRateLimits``, and
ccxt.pro's WebSocket order book, which must stay equal to the fake's across an injected gap."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import websockets

ccxt = pytest.importorskip("ccxt.async_support")
ccxtpro = pytest.importorskip("ccxt.pro")

from sim.fake_binance import FakeBinance  # noqa: E402

pytestmark = pytest.mark.timeout(90)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "binance_spot_hftbacktest"
KEY = "ccxt-test-key"
SECRET = "ccxt-test-secret"
OPTIONS = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False, "defaultType": "spot"}


def point_at(client, fb: FakeBinance) -> None:
    api = client.urls["api"]
    for name in list(api):
        if name == "ws":
            continue
        api[name] = f"{fb.rest_url}/api/v3" if name in ("public", "private") else f"{fb.rest_url}/not-served/{name}"
    if "ws" in api:
        api["ws"]["spot"] = f"{fb.ws_url}/ws"
        api["ws"]["ws-api"]["spot"] = fb.ws_api_url


@pytest.fixture
async def fb():
    fake = FakeBinance(
        data=DATA, api_key=KEY, api_secret=SECRET, speed=0, start="manual", balances={"BTC": "2", "USDT": "250000"}
    )
    async with fake:
        await fake.advance(2000)
        yield fake


def levels(book, side: int, n: int) -> list[list[float]]:
    """The fake's top ``n`` levels as ccxt holds them (floats; the fake keeps 8-decimal integers)."""
    return [[p / 1e8, q / 1e8] for p, q in book.levels(side, n)]


async def test_ticker_endpoints_answer_as_binance(fb) -> None:
    client = ccxt.binance({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False, "options": dict(OPTIONS)})
    point_at(client, fb)
    try:
        await client.load_markets()
        ticker = await client.fetch_ticker("BTC/USDT")  # GET /api/v3/ticker/24hr
        book = fb.book()
        assert ticker["bid"] == book.best_bid and ticker["ask"] == book.best_ask
        assert ticker["high"] >= ticker["last"] >= ticker["low"] > 0
        stats = fb.replayer.ticker.stats_json("BTCUSDT", fb.now_ms())
        assert ticker["last"] == float(stats["lastPrice"]) and ticker["baseVolume"] == float(stats["volume"])
        prices = await client.fetch_tickers(["BTC/USDT"])
        assert prices["BTC/USDT"]["last"] == ticker["last"]
        raw_price = await client.publicGetTickerPrice({"symbol": "BTCUSDT"})
        assert raw_price == {"symbol": "BTCUSDT", "price": stats["lastPrice"]}
        avg = await client.publicGetAvgPrice({"symbol": "BTCUSDT"})
        assert avg["mins"] == 5 and ticker["low"] <= float(avg["price"]) <= ticker["high"]
        with pytest.raises(ccxt.BadSymbol):
            await client.publicGetTickerPrice({"symbol": "NOPEUSDT"})
    finally:
        await client.close()


async def test_uuid_request_ids_and_ticker_stream(fb) -> None:
    rid = str(uuid.uuid4())
    async with websockets.connect(f"{fb.ws_url}/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@ticker"], "id": rid}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"result": None, "id": rid}
        await fb.advance(50)
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert event["e"] == "24hrTicker" and event["s"] == "BTCUSDT"
    assert float(event["h"]) >= float(event["c"]) >= float(event["l"]) > 0
    assert float(event["b"]) < float(event["a"])


async def test_ws_api_signature_covers_return_rate_limits(fb) -> None:
    client = ccxtpro.binance({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False, "options": dict(OPTIONS)})
    point_at(client, fb)
    try:
        await client.load_markets()
        price = round(fb.book().best_bid - 100, 2)
        # ccxt signs every parameter, returnRateLimits among them, as Binance specifies
        order = await client.create_order_ws("BTC/USDT", "limit", "buy", 0.001, price, {"returnRateLimits": True})
        assert order["status"] == "open" and order["price"] == price
        assert len(fb.exchange.open_orders({"symbol": "BTCUSDT"})) == 1
    finally:
        await client.close()


async def _caught_up(client, fb: FakeBinance) -> dict:
    """ccxt's book once it has applied every diff the fake sent (the replay only moves on
    ``advance``, so the fake's book holds still meanwhile)."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        ob = client.orderbooks.get("BTC/USDT")
        if ob is not None and ob["nonce"] == fb.last_update_id():
            return ob
        assert asyncio.get_running_loop().time() < deadline, "ccxt's book never caught up with the fake's"
        await asyncio.sleep(0.02)


async def _watch(client, fb: FakeBinance) -> None:
    """Start watching; ccxt takes its REST snapshot once the first diffs have arrived."""
    watch = asyncio.ensure_future(client.watch_order_book("BTC/USDT"))
    deadline = asyncio.get_running_loop().time() + 20
    while not watch.done():
        await fb.advance(5)
        await asyncio.sleep(0.02)
        assert asyncio.get_running_loop().time() < deadline, "ccxt never delivered an order book"
    watch.result()


async def test_ccxt_pro_order_book_equals_the_fakes_across_a_gap(fb) -> None:
    client = ccxtpro.binance({"enableRateLimit": False, "options": dict(OPTIONS)})
    point_at(client, fb)
    try:
        await client.load_markets()
        await _watch(client, fb)
        await fb.advance(200)
        ob = await _caught_up(client, fb)
        book = fb.book()
        assert ob["bids"][:20] == levels(book, 1, 20) and ob["asks"][:20] == levels(book, -1, 20)

        fb.drop_diffs(3)
        await fb.advance(300)  # diffs come every 100 ms among many trades: some are sent after the gap
        # ccxt finds the gap in U/u (ChecksumError, an InvalidNonce) and drops its book; watching
        # again takes a new snapshot
        deadline = asyncio.get_running_loop().time() + 20
        while "BTC/USDT" in client.orderbooks:
            assert asyncio.get_running_loop().time() < deadline, "ccxt did not notice the gap"
            await asyncio.sleep(0.02)
        with pytest.raises(ccxt.InvalidNonce):
            await _watch(client, fb)
        await _watch(client, fb)
        await fb.advance(200)
        ob = await _caught_up(client, fb)
        book = fb.book()
        assert ob["bids"][:20] == levels(book, 1, 20) and ob["asks"][:20] == levels(book, -1, 20)
    finally:
        await client.close()
