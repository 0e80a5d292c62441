"""ccxt, a third-party client, accepts the fake Kraken: REST markets, order book, balances and an
order round trip, and ccxt's async WebSocket v2 order book stays equal to the fake's book through
the replay, after an injected bad checksum, and after a disconnect.

ccxt 4.5's own Kraken checksum check is off by default ("the exchange checksum was not reliable")
and, switched on, fails on v2's numeric prices (``format_number`` splits a float), so ccxt cannot
notice lost updates; the fake's checksums are checked by our adapter (``test_kraken_feed``)."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from sim.fake_kraken import FakeKraken

ccxt = pytest.importorskip("ccxt.async_support")
ccxtpro = pytest.importorskip("ccxt.pro")

KEY = "ccxt-key"
SECRET = base64.b64encode(b"c" * 64).decode()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def test_ccxt_rest_against_the_fake():
    async def main():
        async with FakeKraken(api_key=KEY, api_secret=SECRET, data=None) as fk:
            ex = ccxt.kraken({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
            ex.urls["api"] = {"public": fk.rest_url, "private": fk.rest_url}
            try:
                markets = await ex.load_markets()
                assert {"BTC/USD", "ETH/USD", "MATIC/USD"} <= set(markets)
                assert markets["ETH/USD"]["precision"]["price"] == 0.01
                ob = await ex.fetch_order_book("ETH/USD", 10)
                want = fk.book("ETH/USD")
                assert [b[0] for b in ob["bids"]] == [float(p) for p, _ in want.top("bid", 10)]
                assert [a[1] for a in ob["asks"]] == [float(q) for _, q in want.top("ask", 10)]
                bal = await ex.fetch_balance()
                assert bal["total"]["BTC"] == 10 and bal["total"]["USD"] == 1_000_000
                o = await ex.create_order("ETH/USD", "limit", "buy", 0.01, 1700)
                assert o["id"] in fk.exchange.orders
                assert [x["id"] for x in await ex.fetch_open_orders("ETH/USD")] == [o["id"]]
                await ex.cancel_order(o["id"], "ETH/USD")
                assert fk.exchange.orders[o["id"]].status == "canceled"
                assert await ex.fetch_open_orders("ETH/USD") == []
            finally:
                await ex.close()

    run(main())


def _same(ob, fk: FakeKraken, depth: int = 10) -> bool:
    fb = fk.book("BTC/USD")
    bids = [[float(p), float(q)] for p, q in fb.top("bid", depth)]
    asks = [[float(p), float(q)] for p, q in fb.top("ask", depth)]
    return [list(x[:2]) for x in ob["bids"][:depth]] == bids and [list(x[:2]) for x in ob["asks"][:depth]] == asks


def test_ccxt_websocket_order_book_stays_equal_to_the_fakes():
    async def main():
        async with FakeKraken(speed=0, start="manual", max_records=3000) as fk:
            ex = ccxtpro.kraken({"enableRateLimit": False})
            ex.urls["api"] = {
                "public": fk.rest_url,
                "private": fk.rest_url,
                "ws": {
                    "public": fk.ws_url,
                    "publicV2": fk.ws_url,
                    "private": fk.ws_auth_url,
                    "privateV2": fk.ws_auth_url,
                },
            }
            try:
                await ex.load_markets()
                ob = await ex.watch_order_book("BTC/USD", 10)
                assert _same(ob, fk)
                for _ in range(20):
                    await fk.advance(15)
                    deadline = time.monotonic() + 10
                    while not _same(ex.orderbooks["BTC/USD"], fk):
                        assert time.monotonic() < deadline, "ccxt's book differs from the fake's"
                        await asyncio.sleep(0.01)
                # a corrupted checksum leaves the levels right: ccxt (not checking) stays equal
                fk.bad_checksum(3)
                await fk.advance(30)
                deadline = time.monotonic() + 10
                while not _same(ex.orderbooks["BTC/USD"], fk):
                    assert time.monotonic() < deadline, "ccxt's book differs after a bad checksum"
                    await asyncio.sleep(0.01)
                # a disconnect: ccxt's next watch reconnects and takes a new snapshot, equal again
                fk.disconnect()
                deadline = time.monotonic() + 20
                while True:
                    try:
                        await asyncio.wait_for(ex.watch_order_book("BTC/USD", 10), 2)
                        if fk.subscribers:
                            break
                    except (ccxt.NetworkError, TimeoutError):
                        pass
                    assert time.monotonic() < deadline, "ccxt did not resubscribe"
                    await asyncio.sleep(0.05)
                await fk.advance(30)
                deadline = time.monotonic() + 10
                while not _same(ex.orderbooks["BTC/USD"], fk):
                    assert time.monotonic() < deadline, "ccxt's book differs after the fault"
                    await asyncio.sleep(0.01)
            finally:
                await ex.close()

    run(main())
