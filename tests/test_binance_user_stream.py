"""User data over the WebSocket API against a loopback server that checks the HMAC signature of
``userDataStream.subscribe.signature`` and ``order.place`` the way Binance does, and pushes the
documented user-data events."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web
from test_binance_support import (
    API_KEY,
    API_SECRET,
    CREDS,
    Sink,
    capture_log,
    fixture,
    http_server,
    loop_config,
    wait_until,
    ws_route,
)

from engine import events as ev
from engine.events import Incident
from engine.model import OrderType, Side
from engine.orders import Order
from venues.binance.decode import decode_exchange_info
from venues.binance.errors import OrderStateUnknown
from venues.binance.execution import BinanceExecutionClient
from venues.binance.filters import parse_filters, to_instrument
from venues.binance.numbers import parse_fixed
from venues.binance.rest import BinanceRest
from venues.binance.signing import sign_ws_params
from venues.binance.time_sync import ServerClock
from venues.binance.user_stream import BinanceUserStream
from venues.binance.ws_api import BinanceWsApi

FILTERS = {
    f.symbol: f
    for f in (parse_filters(s) for s in decode_exchange_info(fixture("exchange_info_btcusdt_ethusdt.json")).symbols)
}
INSTRUMENTS = {s: to_instrument(f) for s, f in FILTERS.items()}


def event(name: str, **fields) -> str:
    msg = json.loads(fixture(name))
    msg["event"].update(fields)
    return json.dumps(msg)


class WsApiServer:
    def __init__(self) -> None:
        self.subscribes = 0
        self.bad_signatures = 0
        self.methods: list[str] = []
        self.orders: list[dict] = []

    def route(self) -> web.RouteDef:
        async def handler(ws: web.WebSocketResponse, request: web.Request) -> None:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                req = json.loads(msg.data)
                method, params, rid = req["method"], req["params"], req["id"]
                self.methods.append(method)
                if params.get("apiKey") != API_KEY or sign_ws_params(API_SECRET, params) != params.get("signature"):
                    self.bad_signatures += 1
                    await ws.send_str(
                        json.dumps({"id": rid, "status": 400, "error": json.loads(fixture("error_-1022.json"))})
                    )
                    continue
                if method == "userDataStream.subscribe.signature":
                    sub = self.subscribes
                    self.subscribes += 1
                    await ws.send_str(json.dumps({"id": rid, "status": 200, "result": {"subscriptionId": sub}}))
                    if sub == 0:
                        await ws.send_str(event("execution_report.json", s="BTCUSDT", c="ws-1", i=5))
                        await ws.send_str(event("outbound_account_position.json"))
                        await ws.send_str(event("balance_update.json"))
                        await ws.send_str(event("event_stream_terminated.json"))
                elif method == "order.place":
                    self.orders.append(params)
                    if len(self.orders) == 1:
                        reply = json.loads(fixture("ws_api_order_place_response.json"))
                        reply["result"].update(symbol="BTCUSDT", clientOrderId=params["newClientOrderId"])
                    else:
                        reply = json.loads(fixture("ws_api_error_-2010.json"))
                    reply["id"] = rid
                    await ws.send_str(json.dumps(reply))

        return ws_route("/ws-api/v3", handler)


async def test_subscribe_events_and_resubscribe_after_termination() -> None:
    srv = WsApiServer()
    sink = Sink()
    balances: list[dict] = []
    incidents: list[Incident] = []
    async with http_server([srv.route()]) as url:
        cfg = loop_config(ws_api_url=url.replace("http", "ws") + "/ws-api/v3")
        api = BinanceWsApi(cfg, CREDS, ServerClock())
        rest = BinanceRest(cfg, CREDS)
        ex = BinanceExecutionClient(cfg, rest, sink, INSTRUMENTS, FILTERS)
        stream = BinanceUserStream(api, ex.on_execution_report, lambda b, ts: balances.append(b), incidents.append)
        with capture_log("exchanges") as logs:
            api.start()
            await wait_until(lambda: srv.subscribes == 2 and stream.subscribed.is_set(), what="resubscribed")
            sub_id = stream.subscription_id
            await api.stop()
        await rest.close()
    assert srv.bad_signatures == 0
    assert sub_id == 1 and stream.terminations == 1 and stream.subscription_id is None
    assert [(r.kind, r.client_order_id, r.venue_order_id) for r in sink.reports] == [(ev.ACCEPTED, "ws-1", "5")]
    assert balances == [{"ETH": (parse_fixed("10000"), 0)}]
    assert logs.grep("Subscribed to binance user data stream (subscriptionId=0)")
    assert logs.grep("eventStreamTerminated")
    assert incidents == []  # an orderly stop is not an incident


async def test_order_entry_over_ws_api() -> None:
    srv = WsApiServer()
    sink = Sink()
    async with http_server([srv.route()]) as url:
        cfg = loop_config(ws_api_url=url.replace("http", "ws") + "/ws-api/v3", order_entry="ws")
        api = BinanceWsApi(cfg, CREDS, ServerClock())
        rest = BinanceRest(cfg, CREDS)
        ex = BinanceExecutionClient(cfg, rest, sink, INSTRUMENTS, FILTERS, ws_api=api)
        api.start()
        assert await api.wait_connected(5)
        for cid in ("ws-a", "ws-b"):
            ex.submit_order(
                Order(
                    cid,
                    "mm",
                    "binance",
                    "BTC-USDT",
                    Side.BUY,
                    OrderType.LIMIT,
                    parse_fixed("50000"),
                    parse_fixed("0.001"),
                )
            )
            assert sink.reports == []  # nothing is reported from inside the call
        await asyncio.sleep(0)  # one loop turn: both requests are on the wire
        assert api.in_flight == 2
        await ex.drain()
        await api.stop()
        await rest.close()
    assert srv.bad_signatures == 0 and [o["newClientOrderId"] for o in srv.orders] == ["ws-a", "ws-b"]
    assert srv.orders[0]["price"] == "50000" and srv.orders[0]["timeInForce"] == "GTC"
    assert [(r.kind, r.client_order_id, r.reason) for r in sink.reports] == [
        (ev.ACCEPTED, "ws-a", ""),
        (ev.REJECTED, "ws-b", "Insufficient balance"),
    ]
    assert sink.reports[0].venue_order_id == "12510053279"


async def test_pending_request_fails_as_unknown_when_connection_drops() -> None:
    async def handler(ws: web.WebSocketResponse, request: web.Request) -> None:
        async for _ in ws:
            await ws.close()  # read the request, never answer
            return

    async with http_server([ws_route("/ws-api/v3", handler)]) as url:
        cfg = loop_config(ws_api_url=url.replace("http", "ws") + "/ws-api/v3")
        api = BinanceWsApi(cfg, CREDS, ServerClock())
        api.start()
        assert await api.wait_connected(5)
        try:
            await api.call("order.place", {"symbol": "BTCUSDT"}, signed=True)
        except OrderStateUnknown as exc:
            outcome = str(exc)
        await api.stop()
    assert "connection closed before the answer" in outcome
    await asyncio.sleep(0)
