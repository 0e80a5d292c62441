"""Coinbase order entry and account queries against the loopback fake: signed REST (passphrase),
the order lifecycle, rejections in the guide's words, rate limits, lost answers, clock skew."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from engine.events import ExecReport, Incident
from engine.model import OrderType, Side, TimeInForce
from engine.orders import Order
from engine.venue.profile import POST_ONLY_WOULD_TAKE
from sim.fake_coinbase import FakeCoinbase
from venues.coinbase.adapter import CoinbaseAdapter
from venues.coinbase.config import Credentials, load_config
from venues.coinbase.profile import PROFILE

P = "BAND-GBP"
KEY, PHRASE = "test-key", "test-passphrase"
SECRET = base64.b64encode(b"coinbase-fake-secret-for-execution-tests").decode()
E8 = 10**8


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Sink:
    def __init__(self) -> None:
        self.reports: list[ExecReport] = []
        self.incidents: list[Incident] = []

    def on_exec_report(self, report: ExecReport) -> None:
        self.reports.append(report)

    def on_incident(self, incident: Incident) -> None:
        self.incidents.append(incident)

    def of(self, cid: str) -> list[str]:
        return [r.kind for r in self.reports if r.client_order_id == cid]

    def last(self, cid: str) -> ExecReport:
        return [r for r in self.reports if r.client_order_id == cid][-1]


_n = 0


def order(side: Side, price: str, qty: str, tif: TimeInForce = TimeInForce.GTC, post_only: bool = False) -> Order:
    global _n
    _n += 1
    cid = PROFILE.client_ids.make(PROFILE.client_ids.prefix("t", "sess"), _n)
    return Order(
        cid, "t", "coinbase", P, side, OrderType.LIMIT, int(Decimal(price) * E8), int(Decimal(qty) * E8), tif, post_only
    )


async def connect(fc: FakeCoinbase, passphrase: str = PHRASE, **over) -> tuple[CoinbaseAdapter, Sink]:
    over = {"rest_url": fc.rest_url, "ws_url": fc.ws_url, "user_ws_url": fc.ws_url, "symbols": [P], **over}
    over.setdefault("poll_interval_s", 0.05)
    config = load_config(overrides=over)
    adapter = CoinbaseAdapter(config, Credentials(KEY, SECRET, passphrase))
    sink = Sink()
    adapter.set_incident_sink(sink.on_incident)
    await adapter.load_instruments()
    await adapter.connect_execution(sink, subscribe_timeout_s=2.0)
    return adapter, sink


def fake(**kw) -> FakeCoinbase:
    kw.setdefault("balances", {"GBP": "1000", "BAND": "50"})
    return FakeCoinbase(api_key=KEY, api_secret=SECRET, passphrase=PHRASE, interval_s=0.01, **kw)


async def test_rest_then_cancel_and_account_queries() -> None:
    async with fake() as fc:
        adapter, sink = await connect(fc)
        try:
            ex = adapter.execution
            o = order(Side.BUY, "10", "2")
            ex.submit_order(o)
            assert sink.reports == []  # never from inside the call
            await until(lambda: sink.of(o.client_order_id) == ["accepted"], what="ack")
            o.venue_order_id = sink.last(o.client_order_id).venue_order_id
            acct = adapter.account()
            (vo,) = await acct.open_orders([P])
            assert (vo.client_order_id, vo.price, vo.qty, vo.side) == (o.client_order_id, 10 * E8, 2 * E8, Side.BUY)
            bal = await acct.balances()
            assert bal["GBP"].locked == 20.0 and bal["GBP"].free == 980.0
            q = await acct.query_order(P, o.client_order_id)
            assert q is not None and q.venue_order_id == o.venue_order_id
            assert await acct.query_order(P, "00000000-0000-5000-8000-000000000000") is None
            ex.cancel_order(o)
            await until(lambda: sink.of(o.client_order_id) == ["accepted", "canceled"], what="cancel")
            assert await acct.open_orders([P]) == []
            ex.cancel_order(o)  # again: Coinbase no longer has it open
            await until(lambda: sink.of(o.client_order_id)[-1] == "cancel_rejected", what="cancel reject")
            assert sink.last(o.client_order_id).reason == "Unknown order"
        finally:
            await adapter.close()


async def test_marketable_ioc_fills_as_taker_and_resting_order_fill_is_polled() -> None:
    async with fake() as fc:
        adapter, sink = await connect(fc)
        try:
            ex = adapter.execution
            ask = fc.exchange.best(P)[1]
            o = order(Side.BUY, str(ask), "1", TimeInForce.IOC)
            ex.submit_order(o)
            await until(lambda: "fill" in sink.of(o.client_order_id), what="taker fill")
            f = next(r for r in sink.reports if r.kind == "fill" and r.client_order_id == o.client_order_id)
            assert (f.price, f.qty, f.liquidity, f.fee_asset) == (int(ask * E8), E8, "taker", "GBP")
            assert f.fee == pytest.approx(float(ask) * 0.006)
            rest = order(Side.BUY, "10", "1")
            ex.submit_order(rest)
            await until(lambda: sink.of(rest.client_order_id) == ["accepted"], what="ack")
            fc.fill_order(rest.client_order_id)
            await until(lambda: sink.of(rest.client_order_id) == ["accepted", "fill"], what="polled fill")
            assert sink.last(rest.client_order_id).liquidity == "maker"
            fills = await adapter.account().recent_fills(P, 0)
            assert len(fills) == 2 and fills[0].ts_event <= fills[1].ts_event
        finally:
            await adapter.close()


async def test_fills_and_ends_arrive_on_the_user_channel_without_polling() -> None:
    async with fake() as fc:
        adapter, sink = await connect(fc, poll_interval_s=600.0)
        try:
            assert adapter.user_stream is not None and adapter.user_stream.connected
            assert adapter.status().order_entry_connected
            ex = adapter.execution
            rest = order(Side.BUY, "10", "1")
            ex.submit_order(rest)
            await until(lambda: sink.of(rest.client_order_id) == ["accepted"], what="ack")
            fc.fill_order(rest.client_order_id)  # no REST answer carries this fill: only the stream
            await until(lambda: sink.of(rest.client_order_id) == ["accepted", "fill"], what="streamed fill")
            f = sink.last(rest.client_order_id)
            assert (f.liquidity, f.price, f.qty) == ("maker", 10 * E8, E8) and f.fee == pytest.approx(10 * 0.004)
            ioc = order(Side.BUY, "14", "1", TimeInForce.IOC)  # below the ask: nothing fills
            ex.submit_order(ioc)
            await until(lambda: sink.of(ioc.client_order_id) == ["accepted", "expired"], what="IOC end")
            assert adapter.user_stream.messages >= 5
        finally:
            await adapter.close()


async def test_rejections_in_the_guides_words() -> None:
    async with fake() as fc:
        adapter, sink = await connect(fc)
        try:
            ex = adapter.execution
            bid = fc.exchange.best(P)[0]
            po = order(Side.SELL, str(bid), "1", TimeInForce.GTX, post_only=True)
            big = order(Side.BUY, "10", "500")
            tick = order(Side.BUY, "10.00001", "1")
            for o in (po, big, tick):
                ex.submit_order(o)
            await until(lambda: all(sink.of(o.client_order_id)[-1:] == ["rejected"] for o in (po, big, tick)))
            assert sink.last(po.client_order_id).reason == PROFILE.error(POST_ONLY_WOULD_TAKE).text
            assert sink.last(big.client_order_id).reason == "Insufficient balance"
            assert sink.last(tick.client_order_id).reason.startswith("price is too accurate")
            assert fc.orders_placed == 1  # the tick refusal never left the process
            ex.modify_order(po, 1, 1)
            await until(lambda: sink.of(po.client_order_id)[-1] == "cancel_rejected")
            assert sink.last(po.client_order_id).reason == "Order modification not supported"
        finally:
            await adapter.close()


async def test_wrong_passphrase_is_invalid_passphrase() -> None:
    async with fake() as fc:
        adapter, sink = await connect(fc, passphrase="not-it")
        try:
            o = order(Side.BUY, "10", "1")
            adapter.execution.submit_order(o)
            await until(lambda: sink.of(o.client_order_id) == ["rejected"])
            assert sink.last(o.client_order_id).reason == "Invalid passphrase"
            with pytest.raises(Exception, match="Invalid passphrase"):
                await adapter.account().balances()
            assert adapter.user_stream is not None and not adapter.user_stream.connected
            assert any("Invalid passphrase" in i.detail for i in sink.incidents)
            assert not adapter.status().order_entry_connected
        finally:
            await adapter.close()


async def test_rate_limit_429_and_lost_or_failed_answers() -> None:
    async with fake() as fc:
        adapter, sink = await connect(fc)
        try:
            ex = adapter.execution
            fc.fail_next_requests(1, 429, retry_after=0.2)
            a = order(Side.BUY, "10", "1")
            ex.submit_order(a)
            await until(lambda: sink.of(a.client_order_id) == ["rejected"])
            assert sink.last(a.client_order_id).reason == "Rate limit exceeded"
            assert "rate_limit" in [i.kind for i in sink.incidents]
            fc.fail_next_requests(1, 503)  # refused before it reached the book: never placed
            b = order(Side.BUY, "10", "1")
            ex.submit_order(b)
            await until(lambda: sink.of(b.client_order_id) == ["rejected"], what="unknown -> not placed")
            fc.lose_next_acks(1)  # placed, answer lost: the query finds it
            c = order(Side.BUY, "10", "1")
            ex.submit_order(c)
            await until(lambda: sink.of(c.client_order_id) == ["accepted"], what="unknown -> found")
            kinds = [i.kind for i in sink.incidents]
            assert kinds.count("order_state_unknown") == 2 and "venue_error" in kinds
        finally:
            await adapter.close()


async def test_clock_skew_is_measured_and_requests_follow_it() -> None:
    async with fake() as fc:
        adapter, sink = await connect(fc)
        try:
            fc.set_clock_skew(120.0)  # Coinbase's clock moved: our stamp is now "expired"
            o = order(Side.BUY, "10", "1")
            adapter.execution.submit_order(o)
            await until(lambda: sink.of(o.client_order_id) == ["accepted"], what="accepted after re-sync")
            assert adapter.rest.clock_offset_s == pytest.approx(120.0, abs=2.0)
        finally:
            await adapter.close()


def test_missing_keys_name_the_variables() -> None:
    from engine.errors import ConfigError

    config = dataclasses.replace(load_config(), path="config/exchanges/coinbase.json")
    adapter = CoinbaseAdapter(config)
    with pytest.raises(ConfigError, match="COINBASE_API_PASSPHRASE"):
        config.require_credentials({"COINBASE_API_KEY": "k", "COINBASE_API_SECRET": "s"})
    assert adapter.credentials is None
