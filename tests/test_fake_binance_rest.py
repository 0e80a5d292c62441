"""The fake Binance's REST API over loopback: endpoints, weights, signing, errors, orders and faults."""

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

pytestmark = pytest.mark.timeout(60)

DATA = CAPTURE
KEY = "test-key-rest"
SECRET = "test-secret-rest"


def fixture_json(name: str):
    return json.loads((FIXTURES / name).read_text())


class Client:
    """A minimal signed Binance REST client (written from the docs, independent of the fake)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def public(self, path: str, **params) -> tuple[int, dict, object]:
        async with self.session.get(self.base + path, params=params) as r:
            return r.status, dict(r.headers), await r.json(content_type=None)

    async def signed(
        self,
        method: str,
        path: str,
        params: dict | None = None,
        *,
        key: str | None = KEY,
        secret: str = SECRET,
        timestamp: int | None = None,
        in_body: bool = False,
        signature: str | None = None,
    ) -> tuple[int, dict, object]:
        p = dict(params or {})
        p["timestamp"] = timestamp if timestamp is not None else int(time.time() * 1000)
        query = urlencode(p)
        sig = signature if signature is not None else sign(secret, query)
        headers = {"X-MBX-APIKEY": key} if key is not None else {}
        full = f"{query}&signature={sig}"
        if in_body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            req = self.session.request(method, self.base + path, data=full, headers=headers)
        else:
            req = self.session.request(method, f"{self.base}{path}?{full}", headers=headers)
        async with req as r:
            return r.status, dict(r.headers), await r.json(content_type=None)


@pytest.fixture
async def fb():
    fake = FakeBinance(
        data=DATA,
        api_key=KEY,
        api_secret=SECRET,
        speed=0,
        start="manual",
        balances={"BTC": "10", "USDT": "1000000"},
        max_incoming_per_s=None,
    )
    async with fake:
        await fake.advance(3000)
        yield fake


@pytest.fixture
async def client(fb):
    async with aiohttp.ClientSession() as session:
        yield Client(session, fb.rest_url)


def top(fb: FakeBinance) -> tuple[int, int, int, int]:
    b = fb.book()
    return b.best_bid_fixed, b.best_bid_size_fixed, b.best_ask_fixed, b.best_ask_size_fixed


def wait_for_window(period: float, margin: float) -> None:
    """Keep a rate-limit test inside one fixed window (they reset on the clock's boundaries)."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.05)


async def test_public_endpoints_and_weight_header(fb, client) -> None:
    status, headers, body = await client.public("/api/v3/ping")
    assert (status, body) == (200, {})
    used = int(headers["X-MBX-USED-WEIGHT-1M"])
    status, headers, body = await client.public("/api/v3/time")
    assert abs(body["serverTime"] - time.time() * 1000) < 5000
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) == used + 1
    status, headers, info = await client.public("/api/v3/exchangeInfo")
    assert status == 200 and int(headers["X-MBX-USED-WEIGHT-1M"]) == used + 21
    assert {s["symbol"] for s in info["symbols"]} >= {"BTCUSDT", "ETHUSDT"}
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    real = fixture_json("exchange_info_btcusdt_ethusdt.json")["symbols"][0]
    assert set(real) - {"ocoAllowed"} <= set(btc) | {"permissions"}
    limits = {(r["rateLimitType"], r["interval"]): r["limit"] for r in info["rateLimits"]}
    assert limits[("REQUEST_WEIGHT", "MINUTE")] == 6000
    status, _, one = await client.public("/api/v3/exchangeInfo", symbol="ETHUSDT")
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
    status, _, err = await client.public("/api/v3/exchangeInfo", symbol="NOPEUSDT")
    assert (status, err) == (400, {"code": -1121, "msg": "Invalid symbol."})


@pytest.mark.parametrize(("limit", "weight"), [(5, 5), (100, 5), (500, 25), (1000, 50), (5000, 250)])
async def test_depth_weight_and_consistency(fb, client, limit: int, weight: int) -> None:
    _, before, _ = await client.public("/api/v3/ping")
    status, headers, depth = await client.public("/api/v3/depth", symbol="BTCUSDT", limit=limit)
    assert status == 200
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) - int(before["X-MBX-USED-WEIGHT-1M"]) == weight
    assert depth["lastUpdateId"] == fb.last_update_id()
    bids = [float(p) for p, _ in depth["bids"]]
    asks = [float(p) for p, _ in depth["asks"]]
    assert 0 < len(bids) <= limit and 0 < len(asks) <= limit
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    bb, bq, ba, aq = top(fb)
    assert depth["bids"][0] == [fmt(bb), fmt(bq)] and depth["asks"][0] == [fmt(ba), fmt(aq)]
    status, _, err = await client.public("/api/v3/depth")
    assert (status, err["code"]) == (400, -1102)


async def test_signed_request_errors(fb, client) -> None:
    status, _, body = await client.signed("GET", "/api/v3/account", key=None)
    assert (status, body) == (401, {"code": -2014, "msg": "API-key format invalid."})
    status, _, body = await client.signed("GET", "/api/v3/account", key="someone-else")
    assert (status, body) == (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
    status, _, body = await client.signed("GET", "/api/v3/account", secret="wrong-secret")
    assert (status, body) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    status, _, body = await client.signed("GET", "/api/v3/account", timestamp=int(time.time() * 1000) - 6000)
    assert (status, body) == (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    status, _, body = await client.signed("GET", "/api/v3/account", timestamp=int(time.time() * 1000) + 3000)
    assert (status, body["msg"]) == (400, "Timestamp for this request was 1000ms ahead of the server's time.")
    status, _, body = await client.signed(
        "GET", "/api/v3/account", {"recvWindow": 10000}, timestamp=int(time.time() * 1000) - 6000
    )
    assert status == 200 and body["accountType"] == "SPOT"
    status, _, body = await client.signed("GET", "/api/v3/account", in_body=False, signature="")
    assert (status, body["code"]) == (400, -1102)


async def test_clock_skew_fault(fb, client) -> None:
    fb.set_clock_skew(-10_000, visible=False)
    status, _, body = await client.signed("GET", "/api/v3/account")
    assert (status, body["code"]) == (400, -1021)
    assert body["msg"] == "Timestamp for this request was 1000ms ahead of the server's time."
    fb.set_clock_skew(-10_000, visible=True)
    _, _, t = await client.public("/api/v3/time")
    assert abs(t["serverTime"] - (time.time() * 1000 - 10_000)) < 2000
    status, _, body = await client.signed("GET", "/api/v3/account", timestamp=t["serverTime"])
    assert status == 200  # a client that follows the server clock gets through


async def test_account_shape_and_balances(fb, client) -> None:
    status, _, acct = await client.signed("GET", "/api/v3/account", {"omitZeroBalances": "true"})
    assert status == 200
    assert set(acct) == set(fixture_json("account_response.json"))
    balances = {b["asset"]: b for b in acct["balances"]}
    assert balances["BTC"] == {"asset": "BTC", "free": "10.00000000", "locked": "0.00000000"}
    assert acct["commissionRates"]["taker"] == "0.00100000" and acct["takerCommission"] == 10


async def test_order_rejections(fb, client) -> None:
    bb, _, ba, _ = top(fb)
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    cases = [
        ({**base, "symbol": "NOPE", "quantity": "0.001", "price": fmt(bb)}, -1121, "Invalid symbol."),
        ({**base, "quantity": "0.001", "price": fmt(bb + 500_000)}, -1013, "Filter failure: PRICE_FILTER"),
        ({**base, "quantity": "0.000015", "price": fmt(bb)}, -1013, "Filter failure: LOT_SIZE"),
        ({**base, "quantity": "0.00001", "price": fmt(bb)}, -1013, "Filter failure: NOTIONAL"),
        (
            {**base, "quantity": "100", "price": fmt(bb)},
            -2010,
            "Account has insufficient balance for requested action.",
        ),
        (
            {**base, "type": "LIMIT_MAKER", "timeInForce": None, "quantity": "0.001", "price": fmt(ba)},
            -2010,
            "Order would immediately match and take.",
        ),
        (
            {**base, "timeInForce": None, "quantity": "0.001", "price": fmt(bb)},
            -1102,
            "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
        ),
        ({**base, "side": "HOLD", "quantity": "0.001", "price": fmt(bb)}, -1117, "Invalid side."),
        (
            {**base, "quantity": "1x", "price": fmt(bb)},
            -1100,
            "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        ),
        (
            {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET"},
            -1102,
            "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
        ),
    ]
    for params, code, msg in cases:
        params = {k: v for k, v in params.items() if v is not None}
        status, _, body = await client.signed("POST", "/api/v3/order", params, in_body=True)
        assert (status, body) == (400, {"code": code, "msg": msg}), params
    status, _, body = await client.signed("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 999999})
    assert (status, body) == (400, {"code": -2011, "msg": "Unknown order sent."})
    status, _, body = await client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "nope"})
    assert (status, body) == (400, {"code": -2013, "msg": "Order does not exist."})
    status, _, body = await client.signed("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert (status, body["code"]) == (400, -2011)
    # nothing of the rejected orders touched the account
    _, _, acct = await client.signed("GET", "/api/v3/account")
    assert {b["asset"]: b["locked"] for b in acct["balances"]}["USDT"] == "0.00000000"


async def test_duplicate_client_order_id(fb, client) -> None:
    bb, _, _, _ = top(fb)
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": fmt(bb - 100_000_000),
        "newClientOrderId": "dup-1",
    }
    status, _, first = await client.signed("POST", "/api/v3/order", params)
    assert status == 200 and first["status"] == "NEW"
    status, _, body = await client.signed("POST", "/api/v3/order", params)
    assert (status, body) == (400, {"code": -2010, "msg": "Duplicate order sent."})


async def test_response_shapes_match_binance(fb, client) -> None:
    bb, _, _, _ = top(fb)
    resting = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": fmt(bb - 100_000_000),
    }
    for resp_type, fixture in (
        ("ACK", "order_new_response_ack.json"),
        ("RESULT", "order_new_response_result.json"),
        ("FULL", "order_new_response_full.json"),
    ):
        status, headers, body = await client.signed("POST", "/api/v3/order", {**resting, "newOrderRespType": resp_type})
        assert status == 200
        assert set(body) == set(fixture_json(fixture)), resp_type
        assert int(headers["X-MBX-ORDER-COUNT-10S"]) >= 1 and int(headers["X-MBX-ORDER-COUNT-1D"]) >= 1
    status, _, default = await client.signed("POST", "/api/v3/order", resting)
    assert "fills" in default and default["fills"] == []  # LIMIT defaults to FULL
    status, _, q = await client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": default["orderId"]})
    assert set(q) == set(fixture_json("order_query_response.json"))
    assert q["status"] == "NEW" and q["price"] == fmt(bb - 100_000_000) and q["origQty"] == "0.00100000"
    status, _, oo = await client.signed("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert len(oo) == 4 and set(oo[0]) == set(fixture_json("open_orders_response.json")[0])
    status, _, c = await client.signed(
        "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": default["clientOrderId"]}
    )
    assert status == 200 and set(c) == set(fixture_json("order_cancel_response.json"))
    assert c["status"] == "CANCELED" and c["origClientOrderId"] == default["clientOrderId"]
    status, _, all_c = await client.signed("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert status == 200 and len(all_c) == 3 and {x["status"] for x in all_c} == {"CANCELED"}
    _, _, acct = await client.signed("GET", "/api/v3/account")
    assert {b["asset"]: b["locked"] for b in acct["balances"]}["USDT"] == "0.00000000"


async def test_market_order_walks_the_book(fb, client) -> None:
    asks = fb.book().levels(-1, 5)
    qty = asks[0][1] + asks[1][1] + asks[2][1] // 2
    qty -= qty % 1000  # the 0.00001 step
    status, _, body = await client.signed(
        "POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": fmt(qty)}
    )
    assert status == 200 and body["status"] == "FILLED"
    fills = body["fills"]
    assert [f["price"] for f in fills] == [fmt(asks[0][0]), fmt(asks[1][0]), fmt(asks[2][0])]
    assert [f["qty"] for f in fills[:2]] == [fmt(asks[0][1]), fmt(asks[1][1])]
    assert sum(int(f["qty"].replace(".", "")) for f in fills) == qty
    quote = sum(
        p * q // 10**8
        for p, q in [(asks[0][0], asks[0][1]), (asks[1][0], asks[1][1]), (asks[2][0], qty - asks[0][1] - asks[1][1])]
    )
    assert body["cummulativeQuoteQty"] == fmt(quote)
    commission = sum(int(f["commission"].replace(".", "")) for f in fills)
    assert all(f["commissionAsset"] == "BTC" for f in fills)
    _, _, acct = await client.signed("GET", "/api/v3/account")
    bal = {b["asset"]: b["free"] for b in acct["balances"]}
    assert bal["BTC"] == fmt(10 * 10**8 + qty - commission)
    assert bal["USDT"] == fmt(1_000_000 * 10**8 - quote)


async def test_ioc_and_fok(fb, client) -> None:
    _, _, ba, aq = top(fb)
    too_much = aq + 1000 - aq % 1000
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": fmt(too_much), "price": fmt(ba)}
    status, _, fok = await client.signed("POST", "/api/v3/order", {**order, "timeInForce": "FOK"})
    assert status == 200 and fok["status"] == "EXPIRED" and fok["executedQty"] == "0.00000000" and fok["fills"] == []
    status, _, ioc = await client.signed("POST", "/api/v3/order", {**order, "timeInForce": "IOC"})
    assert ioc["status"] == "EXPIRED" and ioc["executedQty"] == fmt(aq) and len(ioc["fills"]) == 1


async def test_weight_limit_429_then_418() -> None:
    async with (
        FakeBinance(
            data=DATA, api_key=KEY, api_secret=SECRET, speed=0, start="manual", weight_limit=45, ban_seconds=7
        ) as fake,
        aiohttp.ClientSession() as session,
    ):
        client = Client(session, fake.rest_url)
        wait_for_window(60, 3)
        statuses = []
        for _ in range(5):
            status, headers, body = await client.public("/api/v3/exchangeInfo")
            statuses.append(status)
            if status != 200:
                break
        assert statuses == [200, 200, 429]
        assert body["code"] == -1003
        assert body["msg"].startswith("Too much request weight used; current limit is 45 request weight per 1 MINUTE.")
        assert 1 <= int(headers["Retry-After"]) <= 60 and int(headers["X-MBX-USED-WEIGHT-1M"]) > 45
        status, headers, body = await client.public("/api/v3/ping")
        assert status == 418 and int(headers["Retry-After"]) == 7
        assert body["code"] == -1003 and body["msg"].startswith("Way too much request weight used; IP banned until ")
        status, headers, _ = await client.public("/api/v3/time")
        assert status == 418 and 1 <= int(headers["Retry-After"]) <= 7


async def test_forced_rate_limit_answers(fb, client) -> None:
    fb.fail_next_requests(2, status=429, retry_after=9)
    for _ in range(2):
        status, headers, body = await client.public("/api/v3/ping")
        assert (status, headers["Retry-After"], body["code"]) == (429, "9", -1003)
    fb.fail_next_requests(1, status=418, retry_after=30)
    status, headers, _ = await client.public("/api/v3/ping")
    assert (status, headers["Retry-After"]) == (418, "30")
    status, _, _ = await client.public("/api/v3/ping")
    assert status == 200


async def test_order_count_limit() -> None:
    async with (
        FakeBinance(data=DATA, api_key=KEY, api_secret=SECRET, speed=0, start="manual", orders_per_10s=2) as fake,
        aiohttp.ClientSession() as session,
    ):
        await fake.advance(500)
        client = Client(session, fake.rest_url)
        bb = fake.book().best_bid_fixed
        order = {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": fmt(bb - 100_000_000),
        }
        wait_for_window(10, 2)
        assert (await client.signed("POST", "/api/v3/order", order))[0] == 200
        status, headers, _ = await client.signed("POST", "/api/v3/order", order)
        assert status == 200 and headers["X-MBX-ORDER-COUNT-10S"] == "2"
        status, headers, body = await client.signed("POST", "/api/v3/order", order)
        assert status == 429 and body == {
            "code": -1015,
            "msg": "Too many new orders; current limit is 2 orders per 10 SECOND.",
        }
        assert 1 <= int(headers["Retry-After"]) <= 10


async def test_lost_ack_order_is_still_executed(fb, client) -> None:
    bb, _, _, _ = top(fb)
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": fmt(bb - 100_000_000),
        "newClientOrderId": "lost-1",
    }
    fb.lose_next_acks(1, mode="drop")
    with pytest.raises(aiohttp.ClientError):
        await client.signed("POST", "/api/v3/order", order, in_body=True)
    status, _, q = await client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "lost-1"})
    assert status == 200 and q["status"] == "NEW"
    fb.lose_next_acks(1, mode="timeout")
    status, _, body = await client.signed("POST", "/api/v3/order", {**order, "newClientOrderId": "lost-2"})
    assert status == 503 and body["code"] == -1007
    assert body["msg"] == (
        "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
    )
    status, _, q = await client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "lost-2"})
    assert status == 200 and q["status"] == "NEW"


async def test_slow_ack(fb, client) -> None:
    bb, _, _, _ = top(fb)
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": fmt(bb - 100_000_000),
    }
    fb.set_ack_delay(1500)
    t0 = time.monotonic()
    slow = asyncio.create_task(client.signed("POST", "/api/v3/order", order))
    # the order is live at once; only its answer is held back
    while not fb.exchange.orders:
        assert time.monotonic() - t0 < 30
        await asyncio.sleep(0.01)
    fb.set_ack_delay(0)
    status, _, fast = await client.signed("POST", "/api/v3/order", order)
    assert status == 200 and not slow.done()  # the undelayed order was answered first
    status, _, body = await slow
    assert status == 200 and time.monotonic() - t0 >= 1.5
    assert fb.exchange.orders[body["orderId"]].time <= fb.exchange.orders[fast["orderId"]].time  # live first


async def test_book_keeps_replaying_under_orders(fb, client) -> None:
    before = fb.last_update_id()
    await fb.advance(200)
    _, _, depth = await client.public("/api/v3/depth", symbol="BTCUSDT", limit=5)
    assert depth["lastUpdateId"] == fb.last_update_id() > before
    await asyncio.sleep(0)
