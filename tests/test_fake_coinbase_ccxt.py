"""ccxt's Coinbase Exchange client (``coinbaseexchange``), pointed at the fake, accepts it: markets,
order book, balances and an order round trip, signed with key + secret + passphrase."""

from __future__ import annotations

import base64

import pytest

from sim.fake_coinbase import FakeCoinbase

ccxt = pytest.importorskip("ccxt.async_support")
P = "BAND-GBP"
SECRET = base64.b64encode(b"ccxt-against-the-fake-coinbase-secret").decode()


async def test_ccxt_coinbaseexchange_against_the_fake() -> None:
    async with FakeCoinbase(api_key="ck", api_secret=SECRET, passphrase="cp", balances={"GBP": "500"}) as fc:
        ex = ccxt.coinbaseexchange({"apiKey": "ck", "secret": SECRET, "password": "cp", "enableRateLimit": False})
        ex.urls["api"] = {"public": fc.rest_url, "private": fc.rest_url}
        try:
            markets = await ex.load_markets()
            m = markets["BAND/GBP"]
            assert m["id"] == P and m["precision"]["price"] == 0.0001 and m["precision"]["amount"] == 0.01
            ob = await ex.fetch_order_book("BAND/GBP")
            bb, ba = fc.exchange.best(P)
            assert ob["bids"][0][0] == float(bb) and ob["asks"][0][0] == float(ba)
            bal = await ex.fetch_balance()
            assert bal["GBP"]["free"] == 500.0
            order = await ex.create_order("BAND/GBP", "limit", "buy", 2, 10.0, {"post_only": True})
            assert order["id"] and order["status"] == "open"
            (open_,) = await ex.fetch_open_orders("BAND/GBP")
            assert open_["id"] == order["id"] and open_["price"] == 10.0 and open_["amount"] == 2.0
            assert (await ex.fetch_balance())["GBP"]["used"] == 20.0
            await ex.cancel_order(order["id"], "BAND/GBP")
            assert (await ex.fetch_order(order["id"], "BAND/GBP"))["status"] == "canceled"
            with pytest.raises(ccxt.AuthenticationError):
                bad = ccxt.coinbaseexchange({"apiKey": "ck", "secret": SECRET, "password": "nope"})
                bad.urls["api"] = {"public": fc.rest_url, "private": fc.rest_url}
                try:
                    await bad.fetch_balance()
                finally:
                    await bad.close()
        finally:
            await ex.close()
