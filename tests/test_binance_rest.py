"""The signed REST client against loopback servers: signatures and timestamps checked the way
Binance checks them, clock offset measurement, -1021 recovery, Retry-After, weight limiting."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from test_binance_support import API_KEY, CREDS, capture_log, fixture, http_server, loop_config, verify_signature

from venues.binance.errors import BinanceApiError, OrderStateUnknown, RateLimited
from venues.binance.rest import WEIGHT_WINDOW, BinanceRest


class Server:
    """Checks every signed request like Binance (API key, HMAC, timestamp vs recvWindow) on a
    clock ``skew_ms`` away from ours; records (time, method, path) of every request."""

    def __init__(self, skew_ms: float = 0.0) -> None:
        self.skew_ms = skew_ms
        self.log: list[tuple[float, str, str]] = []
        self.bad_signatures = 0

    def now_ms(self) -> float:
        return time.time() * 1000 + self.skew_ms

    def check(self, request: web.Request) -> web.Response | None:
        self.log.append((time.monotonic(), request.method, request.path))
        if "signature" not in request.query:
            return None
        if request.headers.get("X-MBX-APIKEY") != API_KEY:
            return web.json_response(
                {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, status=401
            )
        if not verify_signature(request.query_string):
            self.bad_signatures += 1
            return web.Response(body=fixture("error_-1022.json"), status=400, content_type="application/json")
        ts = int(request.query["timestamp"])
        window = int(request.query.get("recvWindow", 5000))
        server = self.now_ms()
        if not (ts < server + 1000 and server - ts <= window):
            return web.Response(body=fixture("error_-1021.json"), status=400, content_type="application/json")
        return None

    def routes(self, extra: list[web.RouteDef] | None = None) -> list[web.RouteDef]:
        async def time_(request: web.Request) -> web.Response:
            self.check(request)
            return web.json_response({"serverTime": int(self.now_ms())}, headers={"X-MBX-USED-WEIGHT-1M": "1"})

        async def order(request: web.Request) -> web.Response:
            bad = self.check(request)
            if bad is not None:
                return bad
            return web.Response(body=fixture("order_new_response_ack.json"), content_type="application/json")

        return [web.get("/api/v3/time", time_), web.post("/api/v3/order", order), *(extra or [])]


NEW = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "50000"}


async def test_clock_offset_measured_and_used() -> None:
    srv = Server(skew_ms=-3000)  # the server runs 3 s behind us: unsynced timestamps are "ahead"
    async with http_server(srv.routes()) as url, BinanceRest(loop_config(rest_url=url), CREDS) as rest:
        clock = await rest.sync_time()
        assert clock.offset_ms == pytest.approx(-3000, abs=50)
        assert clock.rtt_ms < 1000
        m = await rest.new_order(NEW)
        assert m.order_id == 28
    assert srv.bad_signatures == 0


async def test_1021_remeasures_clock_and_retries_once() -> None:
    srv = Server(skew_ms=-3000)
    async with http_server(srv.routes()) as url, BinanceRest(loop_config(rest_url=url), CREDS) as rest:
        with capture_log("exchanges") as logs:
            m = await rest.new_order(NEW)  # no sync yet: -1021, then measure, then accepted
        assert m.client_order_id == "6gCrw2kRUAF9CvJDGP16IP"
        assert rest.clock.measured
    lines = logs.grep("Invalid signature")
    assert lines and "clock_offset_ms=" in lines[0] and "recvWindow=5000" in lines[0]
    assert [p for _, meth, p in srv.log if meth == "POST"] == ["/api/v3/order", "/api/v3/order"]


async def test_bad_secret_is_invalid_signature() -> None:
    srv = Server()
    bad = type(CREDS)(API_KEY, "not-the-secret")
    async with http_server(srv.routes()) as url, BinanceRest(loop_config(rest_url=url), bad) as rest:
        with pytest.raises(BinanceApiError) as err:
            await rest.new_order(NEW)
    assert err.value.code == -1022 and err.value.reason == "Invalid signature"
    assert srv.bad_signatures == 1


@pytest.mark.parametrize("status", [429, 418])
async def test_retry_after_holds_every_request(status: int) -> None:
    srv = Server()
    answered = []

    async def open_orders(request: web.Request) -> web.Response:
        srv.check(request)
        answered.append(time.monotonic())
        body = fixture("error_-1003.json")
        return web.Response(body=body, status=status, headers={"Retry-After": "1"}, content_type="application/json")

    incidents = []
    async with (
        http_server(srv.routes([web.get("/api/v3/openOrders", open_orders)])) as url,
        BinanceRest(loop_config(rest_url=url), CREDS, on_incident=incidents.append) as rest,
    ):
        await rest.sync_time(samples=1)
        with capture_log("exchanges") as logs, pytest.raises(RateLimited) as err:
            await rest.open_orders("BTCUSDT")
        assert err.value.retry_after_s == 1.0 and err.value.reason == "Rate limit exceeded"
        await rest.server_time()  # must wait for Retry-After
    next_request = [t for t, _, p in srv.log if p == "/api/v3/time"][-1]
    assert next_request - answered[0] >= 1.0
    assert logs.grep("Rate limit exceeded") and logs.grep("rate limit")
    # the ban (one incident in the guide's words), then the wait it imposed on the next request
    assert [i.kind for i in incidents] == ["ip_banned" if status == 418 else "rate_limit", "rate_limit_wait"]
    assert incidents[0].detail.startswith("Rate limit exceeded: binance") and incidents[0].value == 1.0


async def test_server_errors_mean_unknown_state() -> None:
    srv = Server()

    async def order(request: web.Request) -> web.Response:
        srv.check(request)
        return web.Response(text="upstream timeout", status=503)

    async def cancel(request: web.Request) -> web.Response:
        srv.check(request)
        msg = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
        return web.json_response({"code": -1007, "msg": msg}, status=408)

    routes = [web.post("/api/v3/order", order), web.delete("/api/v3/order", cancel)]
    async with http_server(routes) as url, BinanceRest(loop_config(rest_url=url), CREDS) as rest:
        with pytest.raises(OrderStateUnknown, match="HTTP 503"):
            await rest.new_order(NEW)
        with pytest.raises(OrderStateUnknown, match="-1007"):
            await rest.cancel_order("BTCUSDT", "x1")


async def test_used_weight_header_feeds_the_limiter() -> None:
    async def time_(request: web.Request) -> web.Response:
        return web.json_response({"serverTime": 1}, headers={"X-MBX-USED-WEIGHT-1M": "5390"})

    cfg = loop_config(rate_limits={"request_weight_per_minute": 6000, "safety_margin": 0.1})
    async with (
        http_server([web.get("/api/v3/time", time_)]) as url,
        BinanceRest(cfg.with_endpoints(url, cfg.ws_url, cfg.ws_api_url)) as rest,
    ):
        await rest.server_time()
        window = rest.limiter.windows["weight"][0]
        assert window.name == WEIGHT_WINDOW and window.limit == 5400
        assert window.used == 5390 and rest.last_used_weight == 5390
        assert window.wait_time(20) > 0  # another exchangeInfo would now wait


async def test_burst_never_draws_a_429() -> None:
    """40 depth requests (weight 5 each) against a 100-per-minute server: the client sends what
    fits and waits for the rest; the server never has to refuse."""
    got: list[float] = []
    refused = []
    window = {"minute": -1, "used": 0}

    async def depth(request: web.Request) -> web.Response:
        minute = int(time.time() // 60)
        if minute != window["minute"]:
            window.update(minute=minute, used=0)
        window["used"] += 5
        if window["used"] > 100:
            refused.append(1)
            return web.Response(body=fixture("error_-1003.json"), status=429, headers={"Retry-After": "60"})
        got.append(time.monotonic())
        headers = {"X-MBX-USED-WEIGHT-1M": str(window["used"])}
        return web.Response(body=fixture("depth_snapshot_docs.json"), headers=headers, content_type="application/json")

    cfg = loop_config(rate_limits={"request_weight_per_minute": 100, "safety_margin": 0.0})
    incidents = []
    async with (
        http_server([web.get("/api/v3/depth", depth)]) as url,
        BinanceRest(cfg.with_endpoints(url, cfg.ws_url, cfg.ws_api_url), on_incident=incidents.append) as rest,
    ):
        with capture_log("exchanges") as logs:
            tasks = [asyncio.create_task(rest.depth("BTCUSDT", 100)) for _ in range(40)]
            deadline = time.monotonic() + 30
            while sum(t.done() for t in tasks) < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # room for a 21st, which the limit must hold back
            done = sum(t.done() for t in tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert refused == []
    assert len(got) == done == 20
    assert logs.grep("Rate limit wait") and logs.grep("local rate limit")
    assert any(i.kind == "rate_limit_wait" for i in incidents)
