"""The fake Binance's WebSocket API: envelope, signed order methods and the user data stream."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlencode

import aiohttp
import pytest
from test_binance_support import CAPTURE, FIXTURES

from sim.fake_binance import FakeBinance
from sim.fake_binance.signing import sign
from sim.fake_binance.symbols import fmt

pytestmark = pytest.mark.timeout(90)

DATA = CAPTURE
KEY = "ws-api-test-key"
SECRET = "ws-api-test-secret"


def fixture_json(name: str):
    return json.loads((FIXTURES / name).read_text())


class WsApiClient:
    """Requests with Binance's envelope; user events that arrive in between are kept in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.n = 0
        self.events: list[dict] = []

    async def _read(self, timeout: float) -> dict:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return json.loads(msg.data)

    async def send(
        self, method: str, params: dict | None = None, signed: bool = False, secret: str = SECRET, key: str | None = KEY
    ) -> str:
        self.n += 1
        rid = f"req-{self.n}"
        p = dict(params or {})
        if signed:
            if key is not None:
                p["apiKey"] = key
            p.setdefault("timestamp", int(time.time() * 1000))
            p["signature"] = sign(secret, "&".join(f"{k}={p[k]}" for k in sorted(p)))
        await self.ws.send_str(json.dumps({"id": rid, "method": method, "params": p}))
        return rid

    async def call(
        self, method: str, params: dict | None = None, signed: bool = False, timeout: float = 20.0, **kw
    ) -> dict:
        rid = await self.send(method, params, signed, **kw)
        return await self.response(rid, timeout)

    async def response(self, rid: str, timeout: float = 20.0) -> dict:
        while True:
            msg = await self._read(timeout)
            if "event" in msg:
                self.events.append(msg)
            elif msg.get("id") == rid:
                return msg

    async def event(self, timeout: float = 20.0) -> dict:
        while not self.events:
            msg = await self._read(timeout)
            if "event" in msg:
                self.events.append(msg)
        return self.events.pop(0)


async def rest_signed(session: aiohttp.ClientSession, fb: FakeBinance, method: str, path: str, params: dict) -> dict:
    q = urlencode({**params, "timestamp": int(time.time() * 1000)})
    url = f"{fb.rest_url}{path}?{q}&signature={sign(SECRET, q)}"
    async with session.request(method, url, headers={"X-MBX-APIKEY": KEY}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body


@pytest.fixture
async def fb():
    fake = FakeBinance(
        data=DATA, api_key=KEY, api_secret=SECRET, speed=0, start="manual", balances={"BTC": "10", "USDT": "1000000"}
    )
    async with fake:
        await fake.advance(3000)
        yield fake


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def api(fb, session):
    async with session.ws_connect(fb.ws_api_url) as ws:
        yield WsApiClient(ws)


async def test_envelope_and_public_methods(fb, api) -> None:
    pong = await api.call("ping")
    assert pong["status"] == 200 and pong["result"] == {}
    limits = pong["rateLimits"][0]
    assert (limits["rateLimitType"], limits["interval"], limits["intervalNum"], limits["limit"]) == (
        "REQUEST_WEIGHT",
        "MINUTE",
        1,
        6000,
    )
    t = await api.call("time")
    assert abs(t["result"]["serverTime"] - time.time() * 1000) < 5000
    quiet = await api.call("v3/time", {"returnRateLimits": False})
    assert set(quiet) == {"id", "status", "result"}
    depth = await api.call("depth", {"symbol": "BTCUSDT", "limit": 5})
    assert depth["result"]["lastUpdateId"] == fb.last_update_id() and len(depth["result"]["bids"]) == 5
    bad = await api.call("order.amendKeepPriority")
    assert bad["status"] == 400 and bad["error"]["code"] == -1020
    await api.ws.send_str("{oops")
    broken = await api._read(5)
    assert broken["status"] == 400 and broken["error"]["code"] == -1135


async def test_signed_method_errors(fb, api) -> None:
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": fmt(fb.book().best_bid_fixed),
    }
    r = await api.call("order.place", order, signed=True, secret="wrong")
    assert (r["status"], r["error"]) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    r = await api.call("order.place", order, signed=True, key="not-my-key")
    assert (r["status"], r["error"]["code"]) == (401, -2015)
    r = await api.call("order.place", {**order, "timestamp": int(time.time() * 1000) - 10_000}, signed=True)
    assert r["error"] == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    r = await api.call("order.place", {**order, "quantity": "100"}, signed=True)
    assert r["status"] == 400
    assert set(r) == set(fixture_json("ws_api_error_-2010.json"))
    assert r["error"] == fixture_json("ws_api_error_-2010.json")["error"]
    assert [x["rateLimitType"] for x in r["rateLimits"]] == ["ORDERS", "ORDERS", "REQUEST_WEIGHT"]
    r = await api.call("order.status", {"symbol": "BTCUSDT", "orderId": 1}, signed=True)
    assert r["error"] == {"code": -2013, "msg": "Order does not exist."}
    r = await api.call("order.cancel", {"symbol": "BTCUSDT", "orderId": 1}, signed=True)
    assert r["error"] == {"code": -2011, "msg": "Unknown order sent."}


async def test_order_methods(fb, api) -> None:
    bb = fb.book().best_bid_fixed
    placed = await api.call(
        "order.place",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.00100000",
            "price": fmt(bb - 10**9),
            "recvWindow": 5000,
            "newOrderRespType": "RESULT",
        },
        signed=True,
    )
    assert placed["status"] == 200
    assert set(placed["result"]) == set(fixture_json("ws_api_order_place_response.json")["result"])
    assert [x["rateLimitType"] for x in placed["rateLimits"]] == ["ORDERS", "ORDERS", "REQUEST_WEIGHT"]
    oid = placed["result"]["orderId"]
    status = await api.call("order.status", {"symbol": "BTCUSDT", "orderId": oid}, signed=True)
    assert status["result"]["status"] == "NEW" and status["result"]["price"] == fmt(bb - 10**9)
    opened = await api.call("openOrders.status", {"symbol": "BTCUSDT"}, signed=True)
    assert [o["orderId"] for o in opened["result"]] == [oid]
    canceled = await api.call("order.cancel", {"symbol": "BTCUSDT", "orderId": oid}, signed=True)
    assert canceled["result"]["status"] == "CANCELED"
    account = await api.call("account.status", {"omitZeroBalances": "true"}, signed=True)
    assert {b["asset"] for b in account["result"]["balances"]} == {"BTC", "USDT"}


async def test_user_stream_order_lifecycle(fb, api, session) -> None:
    sub = await api.call("userDataStream.subscribe.signature", {}, signed=True)
    assert sub["status"] == 200 and sub["result"] == {"subscriptionId": 0}
    assert set(sub) - {"rateLimits"} == set(fixture_json("ws_api_user_data_subscribe_signature_response.json"))
    report_keys = set(fixture_json("execution_report.json")["event"]) - {"v"}  # v appears only on STP expiry
    position_keys = set(fixture_json("outbound_account_position.json")["event"])

    # a marketable limit buy larger than the best ask: partial fill, the rest rests on the book
    ask, ask_qty = fb.book().best_ask_fixed, fb.book().best_ask_size_fixed
    qty = ask_qty + 100_000 - ask_qty % 1000
    body = await rest_signed(
        session,
        fb,
        "POST",
        "/api/v3/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": fmt(qty),
            "price": fmt(ask),
            "newClientOrderId": "life-1",
        },
    )
    assert body["status"] == "PARTIALLY_FILLED"
    new = await api.event()
    assert new["subscriptionId"] == 0 and set(new["event"]) == report_keys
    ev = new["event"]
    assert (ev["e"], ev["x"], ev["X"], ev["c"], ev["S"], ev["o"], ev["f"]) == (
        "executionReport",
        "NEW",
        "NEW",
        "life-1",
        "BUY",
        "LIMIT",
        "GTC",
    )
    assert ev["q"] == fmt(qty) and ev["p"] == fmt(ask) and ev["t"] == -1 and ev["N"] is None
    trade = (await api.event())["event"]
    assert (trade["x"], trade["X"], trade["m"]) == ("TRADE", "PARTIALLY_FILLED", False)
    assert trade["l"] == fmt(ask_qty) and trade["L"] == fmt(ask) and trade["z"] == fmt(ask_qty)
    assert trade["N"] == "BTC" and trade["n"] == fmt(ask_qty // 1000) and trade["t"] > 0
    assert trade["Y"] == fmt(ask * ask_qty // 10**8) and trade["i"] == ev["i"]
    pos = (await api.event())["event"]
    assert set(pos) == position_keys and pos["e"] == "outboundAccountPosition"
    assert {b["a"] for b in pos["B"]} == {"BTC", "USDT"} and set(pos["B"][0]) == {"a", "f", "l"}
    usdt = next(b for b in pos["B"] if b["a"] == "USDT")
    assert usdt["l"] == fmt(ask * (qty - ask_qty) // 10**8)  # the resting remainder stays locked

    # cancel the rest
    await rest_signed(
        session,
        fb,
        "DELETE",
        "/api/v3/order",
        {"symbol": "BTCUSDT", "origClientOrderId": "life-1", "newClientOrderId": "cancel-1"},
    )
    canceled = (await api.event())["event"]
    assert (canceled["x"], canceled["X"], canceled["c"], canceled["C"]) == (
        "CANCELED",
        "CANCELED",
        "cancel-1",
        "life-1",
    )
    assert canceled["z"] == fmt(ask_qty)
    pos = (await api.event())["event"]
    assert next(b for b in pos["B"] if b["a"] == "USDT")["l"] == fmt(0)

    # a market order that fills completely, placed over the WS API
    placed = await api.call(
        "order.place", {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.00200000"}, signed=True
    )
    assert placed["result"]["status"] == "FILLED"
    kinds = [(e["event"]["e"], e["event"].get("x"), e["event"].get("X")) for e in [await api.event() for _ in range(3)]]
    assert kinds == [
        ("executionReport", "NEW", "NEW"),
        ("executionReport", "TRADE", "FILLED"),
        ("outboundAccountPosition", None, None),
    ]


async def test_resting_orders_fill_from_the_replay(fb, api) -> None:
    await api.call("userDataStream.subscribe.signature", {}, signed=True)
    book = fb.book()
    for side, price in (("BUY", book.best_bid_fixed), ("SELL", book.best_ask_fixed)):
        r = await api.call(
            "order.place",
            {
                "symbol": "BTCUSDT",
                "side": side,
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.01",
                "price": fmt(price),
            },
            signed=True,
        )
        assert r["result"]["status"] == "NEW"
    ids = {o.order_id for o in fb.exchange.orders.values()}
    await fb.advance(until=lambda: any(not o.is_open for o in fb.exchange.orders.values()))
    done = [o for o in fb.exchange.orders.values() if o.order_id in ids and not o.is_open]
    assert done, "neither resting order was reached by the replayed market"
    events = []
    while len(events) < 4 + 2 * len(done):  # NEW + position for each order, then the fills
        events.append((await api.event())["event"])
    trades = [e for e in events if e.get("x") == "TRADE"]
    assert trades and all(t["m"] is True and t["L"] == t["p"] for t in trades)  # maker fills at our price
    last = trades[-1]
    assert last["X"] == "FILLED" and last["z"] == "0.01000000"
    if last["S"] == "BUY":  # maker commission 0.1 % of the base bought
        assert (last["N"], last["n"]) == ("BTC", "0.00001000")
    else:  # 0.1 % of the quote received
        assert last["N"] == "USDT" and last["n"] == fmt(int(last["L"].replace(".", "")) * 10**6 // 10**8 // 1000)


async def test_unsubscribe_terminates_the_stream(fb, api, session) -> None:
    await api.call("userDataStream.subscribe.signature", {}, signed=True)
    second = await api.call("userDataStream.subscribe.signature", {}, signed=True)
    assert second["result"] == {"subscriptionId": 1}
    subs = await api.call("session.subscriptions")
    assert subs["result"] == [{"subscriptionId": 0}, {"subscriptionId": 1}]
    r = await api.call("userDataStream.unsubscribe", {"subscriptionId": 0})
    assert r["status"] == 200 and r["result"] == {}
    ended = api.events.pop(0)
    assert set(ended) == set(fixture_json("event_stream_terminated.json"))
    assert ended["subscriptionId"] == 0 and ended["event"]["e"] == "eventStreamTerminated"
    await rest_signed(
        session,
        fb,
        "POST",
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.001"},
    )
    ev = await api.event()
    assert ev["subscriptionId"] == 1  # only the remaining subscription hears it
    r = await api.call("userDataStream.unsubscribe", {"subscriptionId": 7})
    assert r["status"] == 400


async def test_lost_and_slow_acks(fb, api) -> None:
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": fmt(fb.book().best_bid_fixed - 10**9),
    }
    fb.lose_next_acks(1, mode="drop")
    rid = await api.send("order.place", {**order, "newClientOrderId": "ws-lost"}, signed=True)
    with pytest.raises(TimeoutError):
        await api.response(rid, timeout=0.5)
    q = await api.call("order.status", {"symbol": "BTCUSDT", "origClientOrderId": "ws-lost"}, signed=True)
    assert q["result"]["status"] == "NEW"
    fb.lose_next_acks(1, mode="timeout")
    r = await api.call("order.place", order, signed=True)
    assert r["status"] == 503 and r["error"]["code"] == -1007
    fb.set_ack_delay(1500)
    t0 = time.monotonic()
    slow = await api.send("order.place", order, signed=True)
    ping = await api.send("ping")  # the connection keeps answering while the ack is held back
    answers = []
    while len(answers) < 2:
        msg = await api._read(30)
        if msg.get("id") in (slow, ping):
            answers.append((msg["id"], msg["status"]))
    assert answers == [(ping, 200), (slow, 200)]  # the ping overtook the held-back ack
    assert time.monotonic() - t0 >= 1.5


async def test_rate_limit_answers_and_ban_disconnects(fb, api) -> None:
    fb.fail_next_requests(1, status=429, retry_after=3)
    r = await api.call("time")
    assert r["status"] == 429 and r["error"]["code"] == -1003
    assert r["error"]["data"]["retryAfter"] >= r["error"]["data"]["serverTime"] + 3000 - 5
    fb.fail_next_requests(1, status=418, retry_after=60)
    r = await api.call("time")
    assert r["status"] == 418 and r["error"]["msg"].startswith("Way too much request weight used; IP banned until")
    assert set(r) == set(fixture_json("ws_api_error_-1003_banned.json"))
    msg = await asyncio.wait_for(api.ws.receive(), 20)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
