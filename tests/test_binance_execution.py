"""BinanceExecutionClient: orders over a loopback REST server that answers with Binance's recorded
and documented messages; every outcome must reach the ExecSink once, in the guide's words."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from test_binance_support import CREDS, Sink, capture_log, fixture, http_server, loop_config, verify_signature

from engine import events as ev
from engine.model import OrderType, Side, TimeInForce
from engine.orders import Order
from venues.binance.decode import decode_exchange_info, decode_user_event
from venues.binance.execution import CLIENT_ID, BinanceExecutionClient, valid_client_id
from venues.binance.filters import parse_filters, to_instrument
from venues.binance.numbers import parse_fixed
from venues.binance.rest import BinanceRest

INFO = decode_exchange_info(fixture("exchange_info_btcusdt_ethusdt.json"))
FILTERS = {f.symbol: f for f in (parse_filters(s) for s in INFO.symbols)}
INSTRUMENTS = {s: to_instrument(f) for s, f in FILTERS.items()}
ER = json.loads(fixture("execution_report.json"))["event"]


def order(cid: str = "mm-1", qty: str = "0.002", price: str = "50000", side: Side = Side.BUY, **kw) -> Order:
    return Order(
        cid,
        "mm",
        "binance",
        "BTC-USDT",
        side,
        kw.pop("order_type", OrderType.LIMIT),
        parse_fixed(price),
        parse_fixed(qty),
        **kw,
    )


def exec_report(**fields):
    """The documented executionReport with some fields replaced (BTCUSDT instead of ETHBTC)."""
    e = dict(ER, s="BTCUSDT", **fields)
    return decode_user_event(json.dumps(e).encode())


class OrderDesk:
    """Loopback REST for /api/v3/order: a queue of canned answers per method, requests recorded."""

    def __init__(self) -> None:
        self.answers: dict[str, list] = {"POST": [], "DELETE": [], "GET": []}
        self.requests: list[tuple[str, dict[str, str]]] = []

    def routes(self) -> list[web.RouteDef]:
        async def handle(request: web.Request) -> web.StreamResponse:
            assert verify_signature(request.query_string), "bad signature"
            self.requests.append((request.method, dict(request.query)))
            queue = self.answers[request.method]
            status, body, delay = queue.pop(0) if len(queue) > 1 else queue[0]
            if delay:
                await asyncio.sleep(delay)
            return web.Response(body=body, status=status, content_type="application/json")

        async def time_(request: web.Request) -> web.Response:
            return web.json_response({"serverTime": int(time.time() * 1000)})

        return [web.route("*", "/api/v3/order", handle), web.get("/api/v3/time", time_)]

    def sent(self, method: str) -> list[dict[str, str]]:
        return [q for m, q in self.requests if m == method]


async def client(desk: OrderDesk, url: str, sink: Sink, **over) -> tuple[BinanceExecutionClient, BinanceRest]:
    cfg = loop_config(rest_url=url, **over)
    rest = BinanceRest(cfg, CREDS)
    await rest.start()
    ex = BinanceExecutionClient(cfg, rest, sink, INSTRUMENTS, FILTERS, query_delays_s=(0.0, 0.05, 0.05))
    return ex, rest


async def test_submit_is_non_blocking_and_ack_becomes_accepted() -> None:
    desk = OrderDesk()
    desk.answers["POST"] = [(200, fixture("order_new_response_ack.json"), 0.0)]
    sink = Sink()
    async with http_server(desk.routes()) as url:
        ex, rest = await client(desk, url, sink, new_order_resp_type="ACK")
        o = order("6gCrw2kRUAF9CvJDGP16IP", post_only=True)
        assert ex.submit_order(o) is None  # a plain call: nothing to await, no loop turn
        # no report yet: the request is on its way, on the wire or in its task (how fast that is,
        # is the hot-path benchmark's business, not a bound a loaded machine could break)
        assert sink.reports == [] and ex.written_now + ex.queued == 1
        await ex.drain()
        await rest.close()
    sent = desk.sent("POST")[0]
    assert sent["symbol"] == "BTCUSDT" and sent["side"] == "BUY" and sent["type"] == "LIMIT_MAKER"
    assert sent["price"] == "50000" and sent["quantity"] == "0.002" and sent["newClientOrderId"] == o.client_order_id
    assert sent["newOrderRespType"] == "ACK" and "timeInForce" not in sent
    assert [(r.kind, r.venue_order_id) for r in sink.reports] == [(ev.ACCEPTED, "28")]


async def test_full_response_fills_deduplicated_with_user_stream() -> None:
    desk = OrderDesk()
    full = json.loads(fixture("order_new_response_full.json"))
    full.update(side="BUY", type="LIMIT", clientOrderId="mm-7")
    desk.answers["POST"] = [(200, json.dumps(full).encode(), 0.0)]
    sink = Sink()
    async with http_server(desk.routes()) as url:
        ex, rest = await client(desk, url, sink)
        o = order("mm-7", qty="10", price="4000", tif=TimeInForce.IOC)
        ex.submit_order(o)
        # the user stream reports the first two trades before the REST answer lands
        ex.on_execution_report(
            exec_report(
                c="mm-7",
                x="TRADE",
                X="PARTIALLY_FILLED",
                i=28,
                l="1.00000000",
                z="1.00000000",
                L="4000.00000000",
                n="4",
                N="USDT",
                t=56,
                m=False,
                Z="4000.00000000",
            ),
            1,
        )
        await ex.drain()
        ex.on_execution_report(
            exec_report(
                c="mm-7",
                x="TRADE",
                X="FILLED",
                i=28,
                l="1.00000000",
                z="10.00000000",
                L="3995.00000000",
                n="3.995",
                N="USDT",
                t=60,
            ),
            2,
        )
        await rest.close()
    assert desk.sent("POST")[0]["timeInForce"] == "IOC"
    fills = [r for r in sink.reports if r.kind == ev.FILL]
    assert sum(r.qty for r in fills) == parse_fixed("10")
    assert [r.trade_id for r in fills] == ["56", "57", "58", "59", "60"]
    assert fills[0].fee == 4.0 and fills[0].fee_asset == "USDT" and fills[1].price == parse_fixed("3999")
    assert all(r.liquidity == "taker" for r in fills)
    assert ex.track_state("mm-7")["terminal"] == "filled"


async def test_order_life_from_user_stream() -> None:
    """new -> partial (maker) -> cancel, reported through executionReports; a cancel's report
    names the original order in ``C``."""
    desk = OrderDesk()
    desk.answers["POST"] = [(200, fixture("order_new_response_ack.json"), 0.0)]
    cancel = json.loads(fixture("order_cancel_response.json"))
    cancel.update(symbol="BTCUSDT", origClientOrderId="mm-9", executedQty="0.00100000", orderId=28)
    desk.answers["DELETE"] = [(200, json.dumps(cancel).encode(), 0.0)]
    sink = Sink()
    async with http_server(desk.routes()) as url:
        ex, rest = await client(desk, url, sink)
        o = order("mm-9")
        ex.submit_order(o)
        ex.on_execution_report(exec_report(c="mm-9", x="NEW", X="NEW", i=28), 1)
        ex.on_execution_report(
            exec_report(
                c="mm-9",
                x="TRADE",
                X="PARTIALLY_FILLED",
                i=28,
                l="0.00100000",
                z="0.00100000",
                L="50000.00000000",
                n="0.000001",
                N="BTC",
                t=901,
                m=True,
                Z="50.00000000",
            ),
            2,
        )
        await ex.drain()
        ex.cancel_order(o)
        await ex.drain()
        ex.on_execution_report(
            exec_report(c="cancel-xyz", C="mm-9", x="CANCELED", X="CANCELED", i=28, z="0.00100000", Z="50.00000000"), 3
        )
        await rest.close()
    assert desk.sent("DELETE")[0]["origClientOrderId"] == "mm-9"
    assert sink.kinds("mm-9") == [ev.ACCEPTED, ev.FILL, ev.CANCELED]
    fill = sink.reports[1]
    assert (fill.liquidity, fill.trade_id, fill.qty, fill.price) == (
        "maker",
        "901",
        parse_fixed("0.001"),
        parse_fixed("50000"),
    )
    assert fill.fee == pytest.approx(0.05) and fill.fee_asset == "BTC"  # 0.000001 BTC valued at the fill price


@pytest.mark.parametrize(
    ("name", "status", "reason", "code"),
    [
        ("error_-2010.json", 400, "Insufficient balance", -2010),
        ("error_-1013_lot_size.json", 400, "Filter failure: LOT_SIZE", -1013),
        ("error_-1121.json", 400, "Symbol not found", -1121),
        ("error_-1022.json", 400, "Invalid signature", -1022),
        ("error_-1003.json", 429, "Rate limit exceeded", -1003),
    ],
)
async def test_rejections_carry_guide_reason_and_code(name: str, status: int, reason: str, code: int) -> None:
    desk = OrderDesk()
    desk.answers["POST"] = [(status, fixture(name), 0.0)]
    sink = Sink()
    async with http_server(desk.routes()) as url:
        ex, rest = await client(desk, url, sink)
        with capture_log("orders") as orders_log, capture_log("exchanges") as ex_log:
            ex.submit_order(order("mm-r"))
            await ex.drain()
        await rest.close()
    assert [(r.kind, r.reason, r.code) for r in sink.reports] == [(ev.REJECTED, reason, code)]
    assert orders_log.grep(f"reason={reason}")
    assert ex_log.grep(reason)


async def test_local_filter_failure_sends_nothing() -> None:
    desk = OrderDesk()
    sink = Sink()
    async with http_server(desk.routes()) as url:
        ex, rest = await client(desk, url, sink)
        ex.submit_order(order("mm-l", qty="0.000015"))
        ex.submit_order(order("bad id with spaces"))
        await asyncio.sleep(0.01)
        await rest.close()
    assert desk.requests == []
    first = sink.reports[0]
    assert (first.kind, first.reason, first.code) == (ev.REJECTED, "Filter failure: LOT_SIZE", -1013)
    assert sink.reports[1].kind == ev.REJECTED and "client order id" in sink.reports[1].reason


async def test_5xx_means_query_not_failure() -> None:
    desk = OrderDesk()
    desk.answers["POST"] = [(503, b"<html>busy</html>", 0.0)]
    q = json.loads(fixture("order_query_response.json"))
    q.update(symbol="BTCUSDT", clientOrderId="mm-5", orderId=77)
    desk.answers["GET"] = [(200, json.dumps(q).encode(), 0.0)]
    sink = Sink()
    async with http_server(desk.routes()) as url:
        ex, rest = await client(desk, url, sink)
        with capture_log("orders") as logs:
            ex.submit_order(order("mm-5"))
            await ex.drain()
        await rest.close()
    assert desk.sent("GET")[0]["origClientOrderId"] == "mm-5"
    assert [(r.kind, r.venue_order_id) for r in sink.reports] == [(ev.ACCEPTED, "77")]
    assert [i.kind for i in sink.incidents] == ["order_state_unknown"]
    assert logs.grep("Order state unknown client_order_id=mm-5") and logs.grep("resolved by query")


async def test_lost_ack_resolved_by_query_with_fills() -> None:
    desk = OrderDesk()
    desk.answers["POST"] = [(200, fixture("order_new_response_ack.json"), 0.6)]  # answer too late
    q = json.loads(fixture("order_query_response.json"))
    q.update(
        symbol="BTCUSDT",
        clientOrderId="mm-6",
        orderId=78,
        status="PARTIALLY_FILLED",
        executedQty="0.001",
        cummulativeQuoteQty="50.00000000",
    )
    desk.answers["GET"] = [(200, json.dumps(q).encode(), 0.0)]
    sink = Sink()
    async with http_server(desk.routes()) as url:
        ex, rest = await client(desk, url, sink, order_timeout_s=0.2)
        ex.submit_order(order("mm-6"))
        await ex.drain()
        await rest.close()
    assert sink.kinds() == [ev.FILL, ev.ACCEPTED]
    fill = sink.reports[0]
    assert fill.qty == parse_fixed("0.001") and fill.price == parse_fixed("50000") and fill.fee == pytest.approx(0.05)


async def test_order_never_arrived_is_rejected_after_queries() -> None:
    desk = OrderDesk()
    desk.answers["POST"] = [(502, b"bad gateway", 0.0)]
    desk.answers["GET"] = [(400, fixture("error_-2013.json"), 0.0)]
    sink = Sink()
    async with http_server(desk.routes()) as url:
        ex, rest = await client(desk, url, sink)
        ex.submit_order(order("mm-x"))
        await ex.drain()
        await rest.close()
    assert len(desk.sent("GET")) == 3
    assert [(r.kind, r.reason, r.code) for r in sink.reports] == [(ev.REJECTED, "Order does not exist", -2013)]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("error_-2011_unknown_order.json", "Unknown order"),
        ("error_-2013.json", "Order does not exist"),
        ("error_-2011_cancel_restrictions.json", "Order was not canceled due to cancel restrictions."),
    ],
)
async def test_cancel_rejections(name: str, reason: str) -> None:
    desk = OrderDesk()
    desk.answers["DELETE"] = [(400, fixture(name), 0.0)]
    sink = Sink()
    async with http_server(desk.routes()) as url:
        ex, rest = await client(desk, url, sink)
        ex.cancel_order(order("mm-c"))
        await ex.drain()
        await rest.close()
    assert [(r.kind, r.reason) for r in sink.reports] == [(ev.CANCEL_REJECTED, reason)]


async def test_reconcile_queries_what_binance_does_not_list() -> None:
    desk = OrderDesk()
    desk.answers["POST"] = [(200, fixture("order_new_response_ack.json"), 0.0)]
    filled = json.loads(fixture("order_query_response.json"))
    filled.update(
        symbol="BTCUSDT",
        clientOrderId="6gCrw2kRUAF9CvJDGP16IP",
        orderId=28,
        status="FILLED",
        executedQty="0.002",
        cummulativeQuoteQty="100.00000000",
    )
    desk.answers["GET"] = [(200, json.dumps(filled).encode(), 0.0)]
    opens = json.loads(fixture("open_orders_response.json"))
    opens[0].update(symbol="BTCUSDT", clientOrderId="other-1", price="40000", origQty="0.5")

    async def open_orders(request: web.Request) -> web.Response:
        return web.json_response([o for o in opens if o["symbol"] == request.query["symbol"]])

    sink = Sink()
    async with http_server([*desk.routes(), web.get("/api/v3/openOrders", open_orders)]) as url:
        ex, rest = await client(desk, url, sink)
        ex.submit_order(order("6gCrw2kRUAF9CvJDGP16IP"))
        await ex.drain()
        listed = await ex.reconcile()
        await rest.close()
    assert [m.client_order_id for m in listed] == ["other-1"]
    assert sink.kinds("6gCrw2kRUAF9CvJDGP16IP") == [ev.ACCEPTED, ev.FILL]
    assert sink.kinds("other-1") == [ev.ACCEPTED]
    assert ex.track_state("6gCrw2kRUAF9CvJDGP16IP")["terminal"] == "filled"


def test_client_id_check_without_the_regex_agrees_with_it() -> None:
    """The execution client checks the order manager's ``<prefix>-<n>`` ids against prefixes it has
    seen valid instead of running the pattern on every order; it must judge every id as the
    pattern does, whatever came before."""
    known: set[str] = set()
    seen = ["mm-a1b2c3", "tick", "x_y-z"]
    for p in seen:
        assert valid_client_id(f"{p}-1", known)
    assert known == set(seen)
    alphabet = st.sampled_from([*"abcXYZ019-_", ".", " ", "é", "٣", "²", "\n"])
    tail = st.text(alphabet=alphabet, max_size=40)

    @settings(max_examples=400, deadline=None)
    @given(st.sampled_from([*seen, "new"]), tail)
    def check(prefix: str, rest: str) -> None:
        cid = f"{prefix}-{rest}"
        assert valid_client_id(cid, known) == bool(CLIENT_ID.match(cid))

    check()
    assert not valid_client_id("tick-" + "1" * 32, known)  # 37 characters
    assert valid_client_id("tick-" + "1" * 31, known)
