"""The adapter against ``sim.fake_binance`` over loopback: Binance's protocol served from the real
2024-08-08 BTCUSDT capture, with faults injected on request."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from test_binance_support import API_KEY, API_SECRET, CAPTURE, CREDS, Sink, capture_log, loop_config, wait_until

from engine import events as ev
from engine.book import Book
from engine.events import Incident
from engine.model import OrderType, Side, TimeInForce
from engine.orders import Order
from venues.binance.adapter import BinanceAdapter
from venues.binance.config import Credentials
from venues.binance.decode import BookTop
from venues.binance.errors import BinanceApiError, RateLimited
from venues.binance.execution import BinanceExecutionClient
from venues.binance.numbers import parse_fixed
from venues.binance.rest import BinanceRest
from venues.common.tap import TransportTap

server = pytest.importorskip("sim.fake_binance.server")
FakeBinance = server.FakeBinance
DATA = CAPTURE / "btcusdt_20240808.gz"


class Market:
    """Engine-side callbacks: what the feed served, and Binance's own bookTicker for comparison."""

    def __init__(self) -> None:
        self.tops: dict[int, tuple[int, int, int, int]] = {}
        self.tickers: dict[int, tuple[int, int, int, int]] = {}
        self.bad_serves = 0
        self.trades = 0
        self.incidents: list[Incident] = []

    def on_book(self, b: Book) -> None:
        if not b.valid or b.is_crossed():
            self.bad_serves += 1
        self.tops[b.update_id] = (b.best_bid_fixed, b.best_bid_size_fixed, b.best_ask_fixed, b.best_ask_size_fixed)

    def on_top(self, t: BookTop) -> None:
        self.tickers[t.update_id] = (t.bid, t.bid_qty, t.ask, t.ask_qty)

    def on_trade(self, t) -> None:
        self.trades += 1

    def kinds(self) -> list[str]:
        return [i.kind for i in self.incidents]

    def mismatches(self) -> tuple[int, int]:
        shared = set(self.tops) & set(self.tickers)
        return len(shared), sum(self.tops[u] != self.tickers[u] for u in shared)


@contextlib.asynccontextmanager
async def adapter(fb, market: Market, sink: Sink | None = None, **over) -> AsyncIterator[BinanceAdapter]:
    cfg = loop_config(rest_url=fb.rest_url, ws_url=fb.ws_url, ws_api_url=fb.ws_api_url, **over)
    a = BinanceAdapter(cfg, CREDS, on_incident=market.incidents.append)
    await a.load_instruments()
    await a.start(market.on_book, market.on_trade, sink, on_top=market.on_top)
    try:
        yield a
    finally:
        await a.stop()


# --- market data ---------------------------------------------------------------------------------
async def test_book_equals_book_ticker_over_the_whole_capture() -> None:
    market = Market()
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, speed=0) as fb,
        adapter(fb, market) as a,
    ):
        await asyncio.wait_for(fb.replay_done.wait(), 60)
        await wait_until(lambda: a.feed.books["BTC-USDT"].update_id == fb.last_update_id(), what="caught up")
        sync = a.feed.syncs["BTC-USDT"]
        assert sync.gaps == 0 and sync.applied > 3400
    shared, bad = market.mismatches()
    assert shared > 500 and bad <= 2
    assert market.bad_serves == 0 and market.trades > 9000


async def test_injected_gap_detected_and_resynced() -> None:
    market = Market()
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual") as fb,
        adapter(fb, market) as a,
    ):
        sync = a.feed.syncs["BTC-USDT"]
        await wait_until(lambda: a.feed.connected, what="connected")
        await fb.advance(3000)
        await wait_until(
            lambda: sync.state == "synced" and a.feed.books["BTC-USDT"].update_id == fb.last_update_id(),
            what="synced",
        )
        with capture_log("market_data") as logs:
            fb.drop_diffs(1)
            await fb.advance(400)
            await wait_until(lambda: sync.gaps == 1, what="gap detected")
            await fb.advance(3000)
            await wait_until(
                lambda: a.feed.books["BTC-USDT"].valid and a.feed.books["BTC-USDT"].update_id == fb.last_update_id(),
                what="resynced",
            )
        book = a.feed.books["BTC-USDT"]
        fake_book = fb.book("BTCUSDT")
        assert book.levels(1, 20) == fake_book.levels(1, 20) and book.levels(-1, 20) == fake_book.levels(-1, 20)
    assert logs.grep("Market data sequence gap venue=binance symbol=BTC-USDT")
    assert {"sequence_gap", "resync"} <= set(market.kinds())
    assert market.bad_serves == 0
    shared, bad = market.mismatches()
    assert shared > 50 and bad <= 2


async def test_disconnect_shutdown_and_silence() -> None:
    market = Market()
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual") as fb,
        adapter(fb, market, stale_data_timeout_s=0.3, silence_reconnect_s=5.0) as a,
    ):
        sync = a.feed.syncs["BTC-USDT"]
        book = a.feed.books["BTC-USDT"]

        async def flowing() -> None:
            await wait_until(lambda: a.feed.connected, what="connected")
            await fb.advance(300)
            await wait_until(lambda: book.valid and book.update_id == fb.last_update_id(), what="book in sync")

        await flowing()
        assert fb.disconnect(streams=True) == 1  # TCP abort
        await wait_until(lambda: a.feed.ws.connects == 2, what="reconnect after abort")
        await flowing()
        fb.server_shutdown(close_after=5.0)
        await wait_until(lambda: a.feed.ws.connects == 3, what="reconnect after serverShutdown")
        assert a.feed.server_shutdowns == 1
        await flowing()
        # A loaded machine can pause the replay long enough to trip the 0.3 s limit while data
        # still flows (then it resumes); once the fake is silent, the stale state has to stick.
        await wait_until(lambda: sync.stale, what="stale data noticed")
        assert "stale_data" in market.kinds()
        assert not book.valid
        await flowing()
        assert sync.gaps == 0
    kinds = market.kinds()
    assert kinds.count("disconnect") >= 2 and kinds.count("reconnect") >= 2
    assert market.bad_serves == 0


async def test_weight_limiting_means_no_429_in_a_burst() -> None:
    market = Market()
    async with FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual", weight_limit=300) as fb:
        cfg = loop_config(rest_url=fb.rest_url, rate_limits={"request_weight_per_minute": 300, "safety_margin": 0.1})
        async with BinanceRest(cfg, CREDS, on_incident=market.incidents.append) as rest:
            await fb.advance(50)
            tasks = [asyncio.create_task(rest.depth("BTCUSDT", 100)) for _ in range(100)]  # 500 weight

            def answered() -> int:
                return sum(t.done() and not t.cancelled() and t.exception() is None for t in tasks)

            deadline = time.monotonic() + 30
            while answered() < 40 and time.monotonic() < deadline:  # on a condition, not a fixed sleep
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)  # room for whatever the limit lets through on top
            done = answered()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            used = fb.status()["used_weight_1m"]
    assert 429 not in rest.status_counts and 418 not in rest.status_counts
    assert 40 <= done <= 54 and used <= 300
    assert "rate_limit_wait" in market.kinds()


async def test_retry_after_and_clock_errors_against_the_fake() -> None:
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual") as fb,
        BinanceRest(loop_config(rest_url=fb.rest_url), CREDS) as rest,
    ):
        await rest.sync_time()
        fb.fail_next_requests(1, 429, retry_after=1)
        with pytest.raises(RateLimited):
            await rest.server_time()
        t0 = time.monotonic()
        await rest.server_time()
        assert time.monotonic() - t0 >= 0.99
        fb.set_clock_skew(-4000, visible=True)  # server 4 s behind: re-measured after -1021
        assert (await rest.account()).balances
        assert rest.clock.offset_ms == pytest.approx(-4000, abs=100)
        fb.set_clock_skew(-4000, visible=False)  # the time endpoint lies: nothing to do but fail
        rest.clock.adopt(0.0, 1.0)
        with capture_log("exchanges") as logs, pytest.raises(BinanceApiError) as err:
            await rest.account()
        assert err.value.code == -1021 and err.value.reason == "Invalid signature"
        assert logs.grep("clock_offset_ms=")
        bad = Credentials(API_KEY, "x" * 64)
        async with BinanceRest(loop_config(rest_url=fb.rest_url), bad) as rest:
            fb.set_clock_skew(0)
            await rest.sync_time()
            with pytest.raises(BinanceApiError) as err:
                await rest.account()
            assert (err.value.code, err.value.reason) == (-1022, "Invalid signature")


# --- orders ---------------------------------------------------------------------------------------
def mk(cid: str, side: Side, price: int, qty: int, order_type=OrderType.LIMIT, **kw) -> Order:
    return Order(cid, "mm", "binance", "BTC-USDT", side, order_type, price, qty, **kw)


BALANCES = {"BTC": "100", "USDT": "1000000"}


@pytest.mark.parametrize("entry", ["rest", "ws"])
async def test_order_life_reaches_the_sink(entry: str) -> None:
    market = Market()
    sink = Sink()
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual", balances=BALANCES) as fb,
        adapter(fb, market, sink, order_entry=entry) as a,
    ):
        await fb.advance(500)
        ex = a.execution
        fbook = fb.book("BTCUSDT")
        bid, ask, ask_qty = fbook.best_bid_fixed, fbook.best_ask_fixed, fbook.best_ask_size_fixed
        tick = a.filters["BTC-USDT"].tick
        lot = parse_fixed("0.001")

        # 1. new, resting far below the market, then canceled
        far = mk(f"{entry}-rest", Side.BUY, bid - 500 * tick, lot)
        ex.submit_order(far)
        await sink.wait_for(lambda: ev.ACCEPTED in sink.kinds(far.client_order_id))
        ex.cancel_order(far)
        await sink.wait_for(lambda: ev.CANCELED in sink.kinds(far.client_order_id))

        # 2. marketable limit bigger than the best ask: partial fill, rest on the book, canceled
        part = mk(f"{entry}-part", Side.BUY, ask, ask_qty + lot)
        ex.submit_order(part)
        await sink.wait_for(
            lambda: ev.ACCEPTED in sink.kinds(part.client_order_id) and ev.FILL in sink.kinds(part.client_order_id)
        )
        ex.cancel_order(part)
        await sink.wait_for(lambda: ev.CANCELED in sink.kinds(part.client_order_id))

        # 3. market order: filled in full
        mkt = mk(f"{entry}-mkt", Side.SELL, 0, lot, OrderType.MARKET)
        ex.submit_order(mkt)
        await sink.wait_for(
            lambda: (
                sum(r.qty for r in sink.reports if r.client_order_id == mkt.client_order_id and r.kind == ev.FILL)
                == lot
            )
        )

        # 4. rejections with the guide's words
        broke = mk(f"{entry}-broke", Side.BUY, bid, parse_fixed("100"))  # 100 BTC costs more than the USDT held
        ex.submit_order(broke)
        taker = mk(f"{entry}-taker", Side.BUY, ask, lot, post_only=True)  # LIMIT_MAKER that would take
        ex.submit_order(taker)
        await sink.wait_for(
            lambda: (
                ev.REJECTED in sink.kinds(broke.client_order_id) and ev.REJECTED in sink.kinds(taker.client_order_id)
            )
        )
        await asyncio.sleep(0.2)  # let any late duplicate arrive before counting
    part_fills = [r for r in sink.reports if r.client_order_id == part.client_order_id and r.kind == ev.FILL]
    assert sum(r.qty for r in part_fills) == ask_qty and all(r.price == ask for r in part_fills)
    assert all(r.liquidity == "taker" and r.fee > 0 for r in part_fills)
    assert sink.kinds(far.client_order_id) == [ev.ACCEPTED, ev.CANCELED]
    assert sink.kinds(part.client_order_id).count(ev.ACCEPTED) == 1
    assert sink.kinds(part.client_order_id)[-1] == ev.CANCELED
    rej = {r.client_order_id: (r.reason, r.code) for r in sink.reports if r.kind == ev.REJECTED}
    assert rej[broke.client_order_id] == ("Insufficient balance", -2010)
    assert rej[taker.client_order_id] == ("Order would immediately match and take.", -2010)
    assert sink.incidents == []


@pytest.mark.parametrize("entry", ["rest", "ws"])
async def test_order_bytes_leave_before_submit_returns(entry: str) -> None:
    """The hot path: ``submit_order``/``cancel_order`` write the request to the order socket in
    the caller's stack (no await, no loop turn), and a cancel follows its order on the same
    connection; the answers still reach the sink."""
    market = Market()
    sink = Sink()
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual", balances=BALANCES) as fb,
        adapter(fb, market, sink, order_entry=entry) as a,
    ):
        await fb.advance(500)
        ex = a.execution
        if entry == "ws":
            conns = [a.ws_api.ws.ws]
        else:
            assert await a.rest.fast.wait_ready(5)
            conns = a.rest.fast.conns
        taps = []
        for c in conns:
            c.transport = TransportTap(c.transport)
            taps.append(c.transport)
        bid = fb.book("BTCUSDT").best_bid_fixed
        orders = [
            mk(f"{entry}-now-{i}", Side.BUY, bid - (500 + i) * a.filters["BTC-USDT"].tick, parse_fixed("0.001"))
            for i in range(3)
        ]
        went_on = {}
        for i, o in enumerate(orders):
            before = [t.writes for t in taps]
            ex.submit_order(o)
            assert sum(t.writes for t in taps) == i + 1  # on the socket already
            went_on[o.client_order_id] = next(k for k, t in enumerate(taps) if t.writes > before[k])
        await sink.wait_for(lambda: all(ev.ACCEPTED in sink.kinds(o.client_order_id) for o in orders))
        for o in orders:
            before = [t.writes for t in taps]
            ex.cancel_order(o)
            grew = [k for k, t in enumerate(taps) if t.writes > before[k]]
            # one write, on the connection the order went out on: Binance sees the order first
            assert grew == [went_on[o.client_order_id]]
        await sink.wait_for(lambda: all(ev.CANCELED in sink.kinds(o.client_order_id) for o in orders))
        # corked (what the adapter does around each market event): an order and its cancel are
        # held, then leave together in one write
        both = mk(f"{entry}-corked", Side.BUY, bid - 600 * a.filters["BTC-USDT"].tick, parse_fixed("0.001"))
        before = sum(t.writes for t in taps)
        ex.cork()
        ex.submit_order(both)
        ex.cancel_order(both)
        assert sum(t.writes for t in taps) == before
        ex.uncork()
        assert sum(t.writes for t in taps) == before + 1
        await sink.wait_for(lambda: ev.CANCELED in sink.kinds(both.client_order_id))
        assert sink.kinds(both.client_order_id) == [ev.ACCEPTED, ev.CANCELED]
        if entry == "rest":
            assert a.rest.fast.connects >= 1
    assert sink.incidents == []
    assert all(sink.kinds(o.client_order_id) == [ev.ACCEPTED, ev.CANCELED] for o in orders)


async def test_resting_order_filled_by_the_replay() -> None:
    market = Market()
    sink = Sink()
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual", balances=BALANCES) as fb,
        adapter(fb, market, sink) as a,
    ):
        await fb.advance(500)
        fbook = fb.book("BTCUSDT")
        lot = parse_fixed("0.001")
        buy = mk("maker-b", Side.BUY, fbook.best_bid_fixed, lot)
        sell = mk("maker-s", Side.SELL, fbook.best_ask_fixed, lot)
        a.execution.submit_order(buy)
        a.execution.submit_order(sell)
        await sink.wait_for(lambda: sink.kinds().count(ev.ACCEPTED) == 2)

        def one_filled() -> bool:
            return any(r.kind == ev.FILL for r in sink.reports)

        await fb.advance(until=one_filled)
        await sink.wait_for(one_filled)
    fill = next(r for r in sink.reports if r.kind == ev.FILL)
    assert fill.liquidity == "maker" and fill.qty == lot and fill.trade_id


@pytest.mark.parametrize("mode", ["drop", "timeout"])
@pytest.mark.parametrize("raw", [False, True], ids=["aiohttp", "raw-connection"])
async def test_lost_ack_resolved_by_query(mode: str, raw: bool) -> None:
    sink = Sink()
    async with FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual", balances=BALANCES) as fb:
        # REST only, no user stream: only the query can tell what happened to the order
        cfg = loop_config(rest_url=fb.rest_url, order_timeout_s=1.0, order_connections=1 if raw else 0)
        a = BinanceAdapter(cfg, CREDS)
        await a.load_instruments()
        if raw:
            assert await a.rest.open_order_connections().wait_ready(5)
        ex = BinanceExecutionClient(cfg, a.rest, sink, a.instruments, a.filters, query_delays_s=(0.0, 0.2, 0.5))
        await fb.advance(500)
        fb.lose_next_acks(1, mode)
        price = fb.book("BTCUSDT").best_bid_fixed - 100 * a.filters["BTC-USDT"].tick
        conn = a.rest.fast.conns[0] if raw else None
        ex.submit_order(mk(f"lost-{mode}", Side.BUY, price, parse_fixed("0.001"), tif=TimeInForce.GTC))
        assert conn is None or conn.requests == 1  # written on the raw connection, in this call
        await ex.drain()
        await a.stop()
    assert [(r.kind, bool(r.venue_order_id)) for r in sink.reports] == [(ev.ACCEPTED, True)]
    assert [i.kind for i in sink.incidents] == ["order_state_unknown"]


async def test_lost_ack_with_user_stream_reports_once() -> None:
    market = Market()
    sink = Sink()
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual", balances=BALANCES) as fb,
        adapter(fb, market, sink, order_timeout_s=0.5) as a,
    ):
        await fb.advance(500)
        fb.lose_next_acks(1, "drop")
        price = fb.book("BTCUSDT").best_bid_fixed - 100 * a.filters["BTC-USDT"].tick
        o = mk("lost-stream", Side.BUY, price, parse_fixed("0.001"))
        a.execution.submit_order(o)
        await a.execution.drain()
        a.execution.cancel_order(o)
        await sink.wait_for(lambda: ev.CANCELED in sink.kinds(o.client_order_id))
        await asyncio.sleep(0.2)
    assert sink.kinds(o.client_order_id) == [ev.ACCEPTED, ev.CANCELED]
    assert [i.kind for i in sink.incidents] == ["order_state_unknown"]


async def test_ws_api_order_timeouts_swept_and_answered_waits_released() -> None:
    """Order answers over the WS API wait without a timer each: one sweep fails the request whose
    answer never came (so it is queried), and releases the ones that were answered."""
    market = Market()
    sink = Sink()
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual", balances=BALANCES) as fb,
        adapter(fb, market, sink, order_timeout_s=0.4, order_entry="ws") as a,
    ):
        await fb.advance(500)
        ex, api = a.execution, a.ws_api
        bid = fb.book("BTCUSDT").best_bid_fixed
        tick = a.filters["BTC-USDT"].tick
        fb.lose_next_acks(1, "drop")
        orders = [mk(f"sweep-{i}", Side.BUY, bid - (300 + i) * tick, parse_fixed("0.001")) for i in range(20)]
        t0 = time.monotonic()
        for o in orders:
            ex.submit_order(o)
        await ex.drain()
        waited = time.monotonic() - t0
        await asyncio.sleep(0.2)  # a few sweeps after the last answer
        assert len(api._deadlines) == 0 and api.in_flight == 0
    assert 0.4 <= waited < 60  # the lost answer was given up after order_timeout_s, then queried
    assert all(ev.ACCEPTED in sink.kinds(o.client_order_id) for o in orders)
    assert [i.kind for i in sink.incidents] == ["order_state_unknown"]
    assert "no response in time" in sink.incidents[0].detail and "ws order.place" in sink.incidents[0].detail


async def test_fake_errors_map_to_the_guide() -> None:
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual") as fb,
        BinanceRest(loop_config(rest_url=fb.rest_url), CREDS) as rest,
    ):
        await rest.sync_time()
        order = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001", "price": "50000"}
        outcomes = {}
        for what, call in (
            ("bad symbol", rest.new_order({"symbol": "NOSUCHPAIR", **order})),
            ("bad lot", rest.new_order({"symbol": "BTCUSDT", **order, "quantity": "0.0000015"})),
            ("cancel unknown", rest.cancel_order("BTCUSDT", "never-sent")),
            ("query unknown", rest.query_order("BTCUSDT", "never-sent")),
        ):
            with pytest.raises(BinanceApiError) as err:
                await call
            outcomes[what] = (err.value.code, err.value.reason)
    assert outcomes["bad symbol"] == (-1121, "Symbol not found")
    assert outcomes["bad lot"] == (-1013, "Filter failure: LOT_SIZE")
    assert outcomes["cancel unknown"] == (-2011, "Unknown order")
    assert outcomes["query unknown"] == (-2013, "Order does not exist")


async def test_adapter_sockets_share_one_attempt_budget() -> None:
    market = Market()
    async with (
        FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, start="manual") as fb,
        adapter(fb, market, Sink()) as a,
    ):
        await wait_until(lambda: a.feed.connected and a.ws_api.connected, what="both sockets up")
        assert a.feed.ws.policy.window is a.ws_api.ws.policy.window is a.attempts
        assert a.attempts.count() == 2
