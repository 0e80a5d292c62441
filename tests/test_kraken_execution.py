"""Kraken order entry against the fake over loopback: the adapter's execution client places,
amends and cancels orders on the private WebSocket v2 and turns the executions channel into the
engine's reports; rejects arrive in the guide's words; signed REST account queries (balances, open
orders, query order, fills, cancel) for reconciliation; nonce, signature and key errors; the REST
counter that decays; lost acks."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from engine import events as ev
from engine.model import OrderStatus, OrderType, Side, TimeInForce
from engine.orders import Order
from sim.fake_kraken import FakeKraken
from venues.kraken import errors as ke
from venues.kraken.adapter import KrakenAdapter
from venues.kraken.config import Credentials, parse_config
from venues.kraken.signing import NonceSource

KEY = "fake-key"
SECRET = base64.b64encode(b"s" * 64).decode()


def adapter(fk: FakeKraken, tmp_path, symbols=("BTC-USD",), secret=SECRET, key=KEY) -> KrakenAdapter:
    cfg = parse_config(
        {
            "rest_url": fk.rest_url,
            "ws_url": fk.ws_url,
            "ws_auth_url": fk.ws_auth_url,
            "symbols": list(symbols),
            "nonce_file": str(tmp_path / "nonce"),
            "order_timeout_s": 0.5,
            "reconnect": {"initial_delay_s": 0.05, "max_delay_s": 0.2},
        },
        "kraken-test.json",
        env={},
    )
    return KrakenAdapter(cfg, Credentials(key, secret), nonces=NonceSource(tmp_path / "nonce"))


class Sink:
    def __init__(self):
        self.reports: list[ev.ExecReport] = []
        self.incidents = []

    def on_exec_report(self, r):
        self.reports.append(r)

    def on_incident(self, i):
        self.incidents.append(i)

    def of(self, cid, kind=None):
        return [r for r in self.reports if r.client_order_id == cid and (kind is None or r.kind == kind)]


async def until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def order(cid, side, price, qty, tif=TimeInForce.GTC, post_only=False, typ=OrderType.LIMIT):
    return Order(cid, "s1", "kraken", "BTC-USD", side, typ, price, qty, tif, post_only)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_order_lifecycle_over_the_private_websocket(tmp_path):
    async def main():
        async with FakeKraken(api_key=KEY, api_secret=SECRET, speed=0, start="manual", max_records=3000) as fk:
            ad = adapter(fk, tmp_path)
            sink = Sink()
            ex = await ad.connect_execution(sink, subscribe_timeout_s=5)
            assert ex.connected and ad.status().order_entry_connected
            bb, ba = fk.book("BTC/USD").best()
            bid = int((bb - 100) * 100)  # price scale 2

            # a resting bid, amended, then cancelled
            o = order("mm-1", Side.BUY, bid, 100_000)
            ex.submit_order(o)
            assert sink.reports == []  # never from inside the call
            await until(lambda: sink.of("mm-1", ev.ACCEPTED), what="ack")
            acc = sink.of("mm-1", ev.ACCEPTED)[0]
            assert acc.venue_order_id.startswith("O") and acc.symbol == "BTC-USD"
            o.venue_order_id = acc.venue_order_id
            ex.modify_order(o, bid - 100, 200_000)
            await until(lambda: sink.of("mm-1", ev.MODIFIED), what="amended")
            mod = sink.of("mm-1", ev.MODIFIED)[0]
            assert len(sink.of("mm-1", ev.ACCEPTED)) == 1  # the answer and the executions "new": one ack
            assert (mod.price, mod.qty) == (bid - 100, 200_000)
            fo = next(x for x in fk.exchange.orders.values() if x.cl_ord_id == "mm-1")
            assert str(fo.qty) == "0.00200000" and fo.status == "open"
            ex.cancel_order(o)
            await until(lambda: sink.of("mm-1", ev.CANCELED), what="canceled")
            assert fo.status == "canceled"

            # a marketable IOC buy fills as taker at the book's prices
            t = order("tk-1", Side.BUY, int((ba + 50) * 100), 10_000, TimeInForce.IOC)
            ex.submit_order(t)
            await until(lambda: sink.of("tk-1", ev.FILL), what="taker fill")
            fill = sink.of("tk-1", ev.FILL)[0]
            assert fill.liquidity == "taker" and fill.price == int(ba * 100) and fill.qty == 10_000 and fill.fee > 0

            # a resting sell fills as maker when the replay trades through it
            mk = order("mk-1", Side.SELL, int((ba + 1) * 100), 10_000)
            ex.submit_order(mk)
            await until(lambda: sink.of("mk-1", ev.ACCEPTED), what="maker ack")
            await fk.set_levels("BTC/USD", [(str(ba + 2), "1")], [])
            await until(lambda: sink.of("mk-1", ev.FILL), what="maker fill")
            assert sink.of("mk-1", ev.FILL)[0].liquidity == "maker"

            # rejects in the guide's words: post-only that would take, a balance too small, rules
            ex.submit_order(order("po-1", Side.BUY, int((ba + 50) * 100), 10_000, post_only=True))
            ex.submit_order(order("big-1", Side.BUY, bid, 10**8 * 10**4))
            ex.submit_order(order("tiny-1", Side.BUY, bid, 100))  # below ordermin: refused before sending
            await until(lambda: all(sink.of(c, ev.REJECTED) for c in ("po-1", "big-1", "tiny-1")), what="rejects")
            assert sink.of("po-1", ev.REJECTED)[0].reason == ke.POST_ONLY
            assert sink.of("big-1", ev.REJECTED)[0].reason == "Insufficient balance"
            assert sink.of("tiny-1", ev.REJECTED)[0].reason == "EOrder:Order minimum not met"
            assert ex.rejected_locally == 1

            # cancelling an order the venue does not have
            ghost = order("gh-1", Side.BUY, bid, 100_000)
            ghost.venue_order_id = "OAAAAA-BBBBB-CCCCCC"
            ex.cancel_order(ghost)
            ex.tracks.setdefault("gh-1", ex.tracks["mm-1"])
            await until(lambda: sink.of("gh-1", ev.CANCEL_REJECTED), what="cancel reject")
            assert sink.of("gh-1", ev.CANCEL_REJECTED)[0].reason == "Unknown order"
            await ad.close()

    run(main())


def test_lost_ack_is_state_unknown_and_executions_still_tell(tmp_path):
    async def main():
        async with FakeKraken(api_key=KEY, api_secret=SECRET, speed=0, start="manual", max_records=10) as fk:
            ad = adapter(fk, tmp_path)
            sink = Sink()
            ad.set_incident_sink(sink.on_incident)  # the node points it at its engine
            ex = await ad.connect_execution(sink, subscribe_timeout_s=5)
            bb, _ = fk.book("BTC/USD").best()
            fk.lose_next_acks(1)
            ex.submit_order(order("la-1", Side.BUY, int((bb - 100) * 100), 100_000))
            await until(lambda: any(i.kind == "order_state_unknown" for i in sink.incidents), what="state unknown")
            # the executions channel said the order is on the book: accepted, once
            assert len(sink.of("la-1", ev.ACCEPTED)) == 1 and sink.of("la-1", ev.ACCEPTED)[0].venue_order_id
            assert fk.exchange.orders  # and reconciliation finds it
            acct = ad.account()
            open_ = await acct.open_orders(["BTC-USD"])
            assert [o.client_order_id for o in open_] == ["la-1"] and open_[0].status is OrderStatus.OPEN
            await ad.close()

    run(main())


def test_account_queries_for_reconciliation(tmp_path):
    async def main():
        async with FakeKraken(api_key=KEY, api_secret=SECRET, speed=0, start="manual", max_records=10) as fk:
            ad = adapter(fk, tmp_path)
            await ad.load_instruments()
            acct = ad.account()
            bal = await acct.balances()
            assert bal["BTC"].free == 10 and bal["USD"].total == 1_000_000
            bb, ba = fk.book("BTC/USD").best()
            rest_o, _ = fk.exchange.add_order("BTC/USD", "buy", "limit", "0.01", str(bb - 10), cl_ord_id="rest-1")
            fk.exchange.add_order("BTC/USD", "buy", "limit", "0.01", str(ba + 10), tif="ioc", cl_ord_id="take-1")
            opens = await acct.open_orders(["BTC-USD"])
            assert len(opens) == 1 and opens[0].venue_order_id == rest_o.txid and opens[0].qty == 1_000_000
            bal = await acct.balances()
            assert bal["USD"].locked > 0 and bal["BTC"].total == 10.01
            q = await acct.query_order("BTC-USD", "rest-1")
            assert q is not None and q.venue_order_id == rest_o.txid
            q = await acct.query_order_by_id("BTC-USD", rest_o.txid)
            assert q is not None and q.client_order_id == "rest-1"
            taken = await acct.query_order("BTC-USD", "take-1")  # closed: found among ClosedOrders
            assert taken is not None and taken.status is OrderStatus.FILLED
            fills = await acct.recent_fills("BTC-USD", 0)
            assert len(fills) == 1 and fills[0].client_order_id == "take-1" and fills[0].liquidity == "taker"
            assert await acct.cancel(opens[0]) is True
            assert await acct.cancel(opens[0]) is True  # already gone counts as done
            assert await acct.open_orders(["BTC-USD"]) == []
            await ad.close()

    run(main())


def test_auth_errors_in_the_guides_words(tmp_path):
    async def main():
        async with FakeKraken(api_key=KEY, api_secret=SECRET, data=None) as fk:
            bad_sig = adapter(fk, tmp_path, secret=base64.b64encode(b"x" * 64).decode())
            with pytest.raises(ke.KrakenApiError) as e:
                await bad_sig.account().balances()
            assert e.value.reason == "Invalid signature"
            bad_key = adapter(fk, tmp_path / "k2", key="nope")
            with pytest.raises(ke.KrakenApiError) as e:
                await bad_key.account().balances()
            assert e.value.reason == "Invalid API key"
            # a nonce at or below the last the venue saw: Invalid nonce (a second process on the key)
            good = adapter(fk, tmp_path / "k3")
            await good.account().balances()
            fk.exchange.last_nonce += 10**15
            with pytest.raises(ke.KrakenApiError) as e:
                await good.account().balances()
            assert e.value.reason == "Invalid nonce"
            for a in (bad_sig, bad_key, good):
                await a.close()

    run(main())


def test_rest_counter_decays_and_rate_limit_errors(tmp_path):
    from venues.kraken.rest import DecayingCounter

    now = [0.0]
    c = DecayingCounter(15, 0.33, clock=lambda: now[0])
    for _ in range(15):
        assert c.try_acquire(1)
    assert not c.try_acquire(1) and c.wait_time(1) == pytest.approx(1 / 0.33)
    now[0] += 3.1
    assert c.try_acquire(1)  # decayed by about one
    assert c.count == pytest.approx(15 - 3.1 * 0.33 + 1)

    async def main():
        async with FakeKraken(api_key=KEY, api_secret=SECRET, data=None) as fk:
            ad = adapter(fk, tmp_path)
            incidents = []
            ad.set_incident_sink(incidents.append)
            fk.rate_limit_next(1)
            with pytest.raises(ke.RateLimited) as e:
                await ad.account().balances()
            assert "Rate limit exceeded" in str(e.value) and e.value.retry_after_s > 0
            assert any(i.kind == "rate_limit" for i in incidents)
            fk.fail_next_requests(1, 503)
            with pytest.raises(ke.VenueUnavailable):
                await ad.rest.asset_pairs(["XBTUSD"])
            assert any(i.kind == "venue_error" for i in incidents)
            await ad.load_instruments()
            assert any(i.kind == "venue_restored" for i in incidents)
            await ad.close()

    run(main())
