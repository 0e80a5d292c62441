"""A bad day at Binance, against the adapter over loopback (``sim.fake_binance``'s REST faults:
``hang_next_requests``, 5XX ``fail_next_requests``, ``outage``; 429/418; ``serverShutdown``
bursts): every REST request has a timeout, a read that fails says "Binance unavailable" in the
guide's words (never "Order state unknown"), an order keeps its "state unknown, query it"
semantics, rate limits, bans, 5XX and outages become incidents, and repeated warnings are
summarised (``venues.common.summary``).

Timing: every wait is on a condition or has a generous upper bound; what a test claims about
time is a lower bound (a timeout cannot fire early) or a count of lines per interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from test_binance_support import API_KEY, API_SECRET, CREDS, Sink, capture_log, http_server, loop_config, ws_route

from engine import events as ev
from engine.events import Incident
from engine.model import OrderType, Side
from engine.orders import Order
from engine.venue import FeedCallbacks
from venues.binance.adapter import BinanceAdapter
from venues.binance.errors import BinanceApiError, NotConnected, OrderStateUnknown, RateLimited, VenueUnavailable
from venues.binance.execution import BinanceExecutionClient
from venues.binance.numbers import parse_fixed
from venues.binance.rest import BinanceRest
from venues.binance.time_sync import ServerClock
from venues.binance.ws_api import BinanceWsApi, changes_state
from venues.common.ratelimit import RetryAfterGate
from venues.common.summary import Outage, Summary

server = pytest.importorskip("sim.fake_binance.server")
FakeBinance = server.FakeBinance

pytestmark = pytest.mark.timeout(120)

ORDER = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.001",
    "price": "20000",
}


@contextlib.asynccontextmanager
async def fake(**kw) -> AsyncIterator:
    async with FakeBinance(api_key=API_KEY, api_secret=API_SECRET, start="manual", **kw) as fb:
        yield fb


@contextlib.asynccontextmanager
async def rest_for(fb, incidents: list[Incident], **over) -> AsyncIterator[BinanceRest]:
    interval = over.pop("summary_interval_s", 60.0)
    cfg = loop_config(rest_url=fb.rest_url, ws_url=fb.ws_url, ws_api_url=fb.ws_api_url, **over)
    async with BinanceRest(cfg, CREDS, on_incident=incidents.append, summary_interval_s=interval) as rest:
        await rest.sync_time(samples=1)
        yield rest


def kinds(incidents: list[Incident]) -> list[str]:
    return [i.kind for i in incidents]


# --- every request has a timeout ------------------------------------------------------------------
READS = [
    ("/api/v3/time", lambda r: r.server_time(), "Exchange connection timeout"),
    ("/api/v3/exchangeInfo", lambda r: r.exchange_info(["BTCUSDT"]), "Exchange connection timeout"),
    ("/api/v3/depth", lambda r: r.depth("BTCUSDT", 100), "Order book snapshot timeout"),
    ("/api/v3/order", lambda r: r.query_order("BTCUSDT", "nope"), "Exchange connection timeout"),
    ("/api/v3/openOrders", lambda r: r.open_orders("BTCUSDT"), "Exchange connection timeout"),
    ("/api/v3/account", lambda r: r.account(), "Exchange connection timeout"),
    ("/api/v3/myTrades", lambda r: r.my_trades("BTCUSDT"), "Exchange connection timeout"),
]


@pytest.mark.parametrize(("path", "call", "reason"), READS, ids=[p for p, _, _ in READS])
async def test_a_read_that_gets_no_answer_times_out_as_unavailable(path, call, reason) -> None:
    incidents: list[Incident] = []
    async with fake() as fb, rest_for(fb, incidents, http_timeout_s=0.5) as rest:
        fb.hang_next_requests(1, path)
        t0 = time.monotonic()
        with capture_log("exchanges") as logs, pytest.raises(VenueUnavailable) as err:
            await asyncio.wait_for(call(rest), 30)  # the client's own timeout must fire first
        waited = time.monotonic() - t0
        assert waited >= 0.45  # not before http_timeout_s
        assert err.value.reason == reason and err.value.endpoint.endswith(path)
        assert str(err.value).startswith(f"{reason}: binance no answer within 0.5 s")
        assert "Order state unknown" not in str(err.value) and not logs.grep("Order state unknown")
        assert logs.grep(reason) and logs.grep("binance")
        assert kinds(incidents) == ["venue_unreachable"] and reason in incidents[0].detail
        with contextlib.suppress(BinanceApiError):  # "nope" is no order: an answer all the same
            await call(rest)  # Binance answers again: the outage is over
        assert fb.rest_faults_served == 1
    assert kinds(incidents) == ["venue_unreachable", "venue_restored"]
    assert incidents[1].value >= 0.45 and "answering again after" in incidents[1].detail


async def test_orders_keep_order_timeout_and_state_unknown() -> None:
    """New orders and cancels wait ``order_timeout_s`` (not ``http_timeout_s``), and a lost
    answer leaves their fate unknown: the caller queries."""
    incidents: list[Incident] = []
    async with fake() as fb, rest_for(fb, incidents, http_timeout_s=60.0, order_timeout_s=0.5) as rest:
        fb.hang_next_requests(1, "/api/v3/order")
        t0 = time.monotonic()
        with pytest.raises(OrderStateUnknown) as err:
            await asyncio.wait_for(rest.new_order(ORDER), 30)
        assert 0.45 <= time.monotonic() - t0 < 30
        assert "Exchange connection timeout" in str(err.value) and "POST /api/v3/order" in str(err.value)
        fb.hang_next_requests(1, "/api/v3/order")
        with pytest.raises(OrderStateUnknown):
            await asyncio.wait_for(rest.cancel_order("BTCUSDT", "x"), 30)
    assert kinds(incidents) == ["venue_unreachable"]


async def test_raw_order_connection_times_out_and_the_order_is_queried() -> None:
    """An order on a raw keep-alive connection whose answer never comes: the connection gives up
    after ``order_timeout_s`` by itself, the execution client raises ``order_state_unknown``
    and queries; Binance never saw it, so it ends rejected as not existing."""
    sink = Sink()
    incidents: list[Incident] = []
    async with fake(balances={"BTC": "1", "USDT": "100000"}) as fb:
        cfg = loop_config(rest_url=fb.rest_url, order_timeout_s=0.5, order_connections=1)
        adapter = BinanceAdapter(cfg, CREDS, on_incident=incidents.append)
        try:
            await adapter.load_instruments()
            rest = adapter.rest
            pool = rest.open_order_connections()
            assert pool is not None and await pool.wait_ready(10)
            assert pool.answer_timeout_s == 0.5
            ex = BinanceExecutionClient(
                cfg, rest, sink, adapter.instruments, adapter.filters, query_delays_s=(0.0, 0.05, 0.05)
            )
            fb.hang_next_requests(1, "/api/v3/order")
            o = Order("lost-1", "mm", "binance", "BTC-USDT", Side.BUY, OrderType.LIMIT, parse_fixed("20000"), 10**5)
            with capture_log("orders") as logs:
                ex.submit_order(o)
                assert ex.written_now == 1  # on the raw connection, before submit_order returned
                await asyncio.wait_for(ex.drain(), 30)
        finally:
            await adapter.close()
    assert sink.kinds("lost-1") == [ev.REJECTED] and sink.reports[0].reason == "Order does not exist"
    assert [i.kind for i in sink.incidents] == ["order_state_unknown"]
    assert "no answer within 0.5 s" in sink.incidents[0].detail
    assert logs.grep("Order state unknown client_order_id=lost-1")
    assert kinds(incidents)[:2] == ["venue_unreachable", "venue_restored"]  # the queries got answers


async def test_5xx_is_unavailable_for_a_read_and_unknown_for_an_order() -> None:
    incidents: list[Incident] = []
    async with fake() as fb, rest_for(fb, incidents) as rest:
        fb.fail_next_requests(1, 503, path="/api/v3/depth")
        with capture_log("exchanges") as logs, pytest.raises(VenueUnavailable) as err:
            await rest.depth("BTCUSDT", 100)
        assert err.value.reason == "Exchange outage" and err.value.status == 503
        assert logs.grep("Exchange outage: binance GET /api/v3/depth HTTP 503 code=-1001")
        await rest.depth("BTCUSDT", 100)
        fb.fail_next_requests(1, 502, path="/api/v3/order")
        with pytest.raises(OrderStateUnknown, match="HTTP 502"):
            await rest.new_order(ORDER)
    assert kinds(incidents) == ["venue_error", "venue_restored", "venue_error"]
    assert "Exchange outage" in incidents[0].detail


# --- rate limits and bans ------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limit"), (418, "ip_banned")])
async def test_rate_limit_and_ban_are_incidents(status: int, kind: str) -> None:
    incidents: list[Incident] = []
    async with fake() as fb, rest_for(fb, incidents) as rest:
        fb.fail_next_requests(1, status, retry_after=1)
        with capture_log("exchanges") as logs, pytest.raises(RateLimited):
            await rest.server_time()
        t0 = time.monotonic()
        await rest.server_time()  # waits for Retry-After
        assert time.monotonic() - t0 >= 0.95
    assert kinds(incidents) == [kind, "rate_limit_wait"]
    assert incidents[0].detail.startswith("Rate limit exceeded: binance") and incidents[0].value == 1.0
    assert ("IP banned" in incidents[0].detail) == (status == 418)
    line = logs.grep("Rate limit exceeded")
    assert len(line) == 1 and "rate limit" in line[0] and f"status={status}" in line[0]


async def test_429s_of_requests_in_flight_are_one_incident_and_one_line() -> None:
    """Five requests in flight when the limit breaks are all refused: one ban, one incident, one
    line, and the other four counted into a summary line (written at close)."""
    incidents: list[Incident] = []
    async with fake() as fb:
        with capture_log("exchanges") as logs:
            async with rest_for(fb, incidents) as rest:
                fb.fail_next_requests(5, 429, retry_after=1)
                results = await asyncio.gather(*(rest.server_time() for _ in range(5)), return_exceptions=True)
                assert all(isinstance(r, RateLimited) for r in results)
                assert len(logs.grep("Rate limit exceeded")) == 1
    assert kinds(incidents) == ["rate_limit"]
    lines = logs.grep("Rate limit exceeded")
    assert len(lines) == 2 and lines[1].startswith("4 more like this in the last ")


async def test_ws_api_ban_is_an_incident_through_the_shared_gate() -> None:
    market: list[Incident] = []
    async with fake() as fb:
        cfg = loop_config(rest_url=fb.rest_url, ws_url=fb.ws_url, ws_api_url=fb.ws_api_url, order_entry="ws")
        adapter = BinanceAdapter(cfg, CREDS, on_incident=market.append)
        try:
            await adapter.connect_execution(Sink())
            api = adapter.ws_api
            assert api is not None
            fb.fail_next_requests(1, 418, retry_after=2)
            with pytest.raises(RateLimited):
                await api.call("time")
            assert adapter.rest.gate.wait_time() > 1.0  # REST waits for the WS API's ban too
        finally:
            await adapter.close()
    bans = [i for i in market if i.kind == "ip_banned"]
    assert len(bans) == 1 and "WS API status 418" in bans[0].detail and bans[0].value == pytest.approx(2, abs=0.1)


def test_retry_after_gate_tells_each_new_ban_once() -> None:
    now = [100.0]
    told: list[tuple[float, str, int]] = []
    gate = RetryAfterGate(clock=lambda: now[0], on_block=lambda s, r, st: told.append((s, r, st)))
    assert gate.block(10, "a", 429)
    assert not gate.block(10, "b", 429)  # in flight when the first came: the same ban
    assert gate.block(120, "c", 418)  # escalated to an IP ban: news
    assert not gate.block(120, "d", 418)
    now[0] += 200
    assert gate.block(1, "e", 429)  # the ban had expired: a new one
    assert [t[2] for t in told] == [429, 418, 429] and gate.status == 429


# --- outages -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["error", "hang", "drop", "refuse"])
async def test_an_outage_is_told_when_it_starts_summarised_while_it_lasts_and_told_when_it_ends(mode: str) -> None:
    """A two-minute outage, time-scaled: 2 s, summaries every 0.5 s, the client polling every
    50 ms (each request times out after 0.3 s when nothing answers)."""
    incidents: list[Incident] = []
    failures = 0
    async with fake() as fb:
        with capture_log("exchanges") as logs:
            async with rest_for(fb, incidents, http_timeout_s=0.3, summary_interval_s=0.5) as rest:
                fb.outage(2.0, mode)
                t0 = time.monotonic()
                while True:
                    try:
                        await asyncio.wait_for(rest.server_time(), 30)
                    except (VenueUnavailable, NotConnected):
                        failures += 1
                        await asyncio.sleep(0.05)
                        continue
                    if failures:
                        break
                    await asyncio.sleep(0.05)
                    assert time.monotonic() - t0 < 30, "the outage never started"
                lasted = time.monotonic() - t0
    assert failures >= 3
    assert kinds(incidents) in (["venue_unreachable", "venue_restored"], ["venue_error", "venue_restored"])
    assert kinds(incidents)[0] == ("venue_error" if mode == "error" else "venue_unreachable")
    restored = incidents[-1]
    assert 1.5 <= restored.value <= lasted
    ends = logs.grep("binance REST answering again after")
    assert len(ends) == 1 and f"{failures} failed request" in ends[0]
    summaries = logs.grep("more like this in the last")
    # the lines follow the clock, not the failures: a start, one summary per interval, an end
    assert len(summaries) <= lasted / 0.5 + 1
    outage_lines = [m for m in logs.messages if "GET /api/v3/time" in m or "answering again" in m]
    assert len(outage_lines) == 1 + len(summaries) + 1
    assert sum(int(s.split(" ", 1)[0]) for s in summaries) == failures - 1
    if mode == "refuse":
        assert logs.grep("Failed to connect to binance")
    elif mode == "error":
        assert logs.grep("Exchange outage: binance GET /api/v3/time HTTP 503")
    elif mode == "hang":
        assert logs.grep("Exchange connection timeout: binance GET /api/v3/time no answer within 0.3 s")


def test_two_minutes_of_failures_make_four_lines() -> None:
    """The real scale, on a fake clock: one failed request a second for 120 s, 60 s summaries."""
    now = [0.0]
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("test.outage.scale")
    log.propagate = False
    log.addHandler(Keep())
    incidents: list[Incident] = []
    summary = Summary(log, 60.0, clock=lambda: now[0], use_timer=False)
    outage = Outage("binance", "REST", log, summary, incidents.append, clock=lambda: now[0])
    for t in range(120):
        now[0] = float(t)
        outage.failure("venue_unreachable", "Exchange connection timeout", "binance GET /api/v3/depth no answer")
    now[0] = 120.5
    outage.success()
    lines = [r.getMessage() for r in records]
    assert len(lines) == 4, lines
    assert lines[0] == "Exchange connection timeout: binance GET /api/v3/depth no answer"
    assert lines[1].startswith("59 more like this in the last 60.0 s: Exchange connection timeout")
    assert lines[2].startswith("60 more like this in the last 60.5 s: ")  # written when it ended
    assert lines[3] == (
        "binance REST answering again after 120.5 s"
        " (120 failed requests: Exchange connection timeout x120, the last 1.5 s ago)"
    )
    assert [i.kind for i in incidents] == ["venue_unreachable", "venue_restored"]
    assert incidents[1].value == 120.5


# --- summaries -----------------------------------------------------------------------------------
def test_summary_counts_repeats_and_writes_one_line_per_interval() -> None:
    now = [0.0]
    log = logging.getLogger("test.summary.unit")
    log.propagate = False
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    log.addHandler(Keep())
    s = Summary(log, 10.0, clock=lambda: now[0], use_timer=False)
    assert s.warning("k", "first") is True
    for i in range(5):
        now[0] = 1.0 + i
        assert s.warning("k", f"again {i}") is False
    assert s.warning("other", "another key") is True  # keys are counted apart
    assert got == ["first", "another key"] and s.pending("k") == 5
    now[0] = 12.0
    assert s.warning("k", "later") is False  # the interval is over: its summary, then counted anew
    assert got[-1] == "5 more like this in the last 12.0 s: again 4"
    now[0] = 40.0
    s.close()  # what is still counted is written at close
    assert got[-1] == "1 more like this in the last 28.0 s: later"
    assert s.warning("k", "after a quiet while") is True  # starts over
    assert s.written == 5 and s.counted == 6


async def test_summary_writes_on_the_loop_when_the_interval_ends() -> None:
    with capture_log("exchanges") as logs:
        s = Summary(logging.getLogger("hft.exchanges"), 0.2)
        for _ in range(300):  # a burst of 300 serverShutdown notices, as feed.py would see them
            s.warning("serverShutdown", "binance market data: serverShutdown received, reconnecting")
        assert len(logs.messages) == 1
        deadline = time.monotonic() + 10
        while len(logs.messages) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        s.close()
    assert len(logs.messages) == 2
    assert logs.messages[1].startswith("299 more like this in the last ") and "serverShutdown" in logs.messages[1]


async def test_a_server_shutdown_burst_on_the_ws_api_is_two_lines_and_one_reconnect() -> None:
    async with fake() as fb:
        cfg = loop_config(rest_url=fb.rest_url, ws_url=fb.ws_url, ws_api_url=fb.ws_api_url, order_entry="ws")
        adapter = BinanceAdapter(cfg, CREDS)
        try:
            await adapter.connect_execution(Sink())
            api = adapter.ws_api
            assert api is not None
            with capture_log("exchanges") as logs:
                fb.server_shutdown(close_after=30.0, repeat=300)
                deadline = time.monotonic() + 30
                while (api.server_shutdowns < 300 or api.ws.connects < 2) and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert api.server_shutdowns == 300 and api.ws.connects >= 2
                api.summary.flush()
        finally:
            await adapter.close()
    lines = logs.grep("binance ws api: serverShutdown received")
    assert len(lines) == 2 and lines[1].startswith("299 more like this")
    assert len(logs.grep("binance ws api: reconnecting (serverShutdown)")) == 1


# --- the WS API: reads and orders that get no answer ---------------------------------------------
def test_which_ws_api_methods_change_state() -> None:
    assert changes_state("order.place") and changes_state("order.cancel") and changes_state("openOrders.cancelAll")
    assert changes_state("orderList.place.oco") and changes_state("sor.order.place")
    assert not changes_state("order.status") and not changes_state("account.status")
    assert not changes_state("openOrders.status") and not changes_state("userDataStream.subscribe.signature")
    assert not changes_state("time") and not changes_state("depth")


async def test_ws_api_read_times_out_as_unavailable_and_an_order_as_unknown() -> None:
    async def silent(ws: web.WebSocketResponse, request: web.Request) -> None:
        async for _ in ws:  # read every request, answer none
            pass

    async with http_server([ws_route("/ws-api/v3", silent)]) as url:
        cfg = loop_config(ws_api_url=url.replace("http", "ws") + "/ws-api/v3", order_timeout_s=0.3)
        api = BinanceWsApi(cfg, CREDS, ServerClock())
        api.start()
        try:
            assert await api.wait_connected(10)
            with pytest.raises(VenueUnavailable) as err:
                await asyncio.wait_for(api.call("account.status", signed=True, timeout_s=0.3), 30)
            assert err.value.reason == "Exchange connection timeout" and "Order state unknown" not in str(err.value)
            with pytest.raises(OrderStateUnknown):
                await asyncio.wait_for(api.call("order.place", {"symbol": "BTCUSDT"}, signed=True), 30)
        finally:
            await api.stop()


# --- the adapter under an outage: no unhandled errors, the book comes back --------------------------
async def test_depth_snapshot_outage_does_not_read_as_order_state_unknown() -> None:
    """The feed's snapshot requests during a REST outage: their failures say what they are."""
    from test_binance_support import CAPTURE

    incidents: list[Incident] = []
    async with FakeBinance(
        data=CAPTURE / "btcusdt_20240808.gz", api_key=API_KEY, api_secret=API_SECRET, start="manual"
    ) as fb:
        cfg = loop_config(rest_url=fb.rest_url, ws_url=fb.ws_url, ws_api_url=fb.ws_api_url, http_timeout_s=0.3)
        adapter = BinanceAdapter(cfg, CREDS, on_incident=incidents.append)
        try:
            await adapter.load_instruments()
            with capture_log("market_data") as md, capture_log("exchanges") as xl:
                fb.outage(1.5, "hang")
                from engine.book import Book

                books = {"BTC-USDT": Book(adapter.instruments["BTC-USDT"])}
                feed = adapter.market_data(books, FeedCallbacks(lambda b: None, lambda t: None, incidents.append))
                feed.start()
                await fb.advance(300)
                deadline = time.monotonic() + 60
                while not books["BTC-USDT"].valid and time.monotonic() < deadline:
                    await fb.advance(20)
                    await asyncio.sleep(0.05)
                assert books["BTC-USDT"].valid
        finally:
            await adapter.close()
    assert not md.grep("Order state unknown") and not xl.grep("Order state unknown")
    assert md.grep("Order book snapshot timeout")
    assert {"venue_unreachable", "venue_restored"} <= set(kinds(incidents))
