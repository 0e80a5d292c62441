"""A third-party client (ccxt's ``binance``) accepts the fake as Binance spot, over loopback only."""

from __future__ import annotations

from pathlib import Path

import pytest

ccxt = pytest.importorskip("ccxt.async_support")

from sim.fake_binance import FakeBinance  # noqa: E402

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "binance_spot_hftbacktest"
KEY = "ccxt-test-key"
SECRET = "ccxt-test-secret"


def make_client(fb: FakeBinance, secret: str = SECRET):
    client = ccxt.binance(
        {
            "apiKey": KEY,
            "secret": secret,
            "enableRateLimit": False,
            # spot only: no currency, margin or derivatives endpoints (they are not Binance spot's API)
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "defaultType": "spot",
            },
        }
    )
    for name in list(client.urls["api"]):
        # every API family points at the fake; only the spot ones are served, anything else gets a 404
        client.urls["api"][name] = (
            f"{fb.rest_url}/api/v3" if name in ("public", "private") else f"{fb.rest_url}/not-served/{name}"
        )
    return client


@pytest.fixture
async def fb():
    fake = FakeBinance(
        data=DATA, api_key=KEY, api_secret=SECRET, speed=0, start="manual", balances={"BTC": "2", "USDT": "250000"}
    )
    async with fake:
        await fake.advance(2000)
        yield fake


async def test_ccxt_markets_book_balance_and_orders(fb) -> None:
    client = make_client(fb)
    try:
        markets = await client.load_markets()
        btc = markets["BTC/USDT"]
        assert btc["id"] == "BTCUSDT" and btc["spot"] and btc["active"]
        assert btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 0.00001
        assert btc["limits"]["cost"]["min"] == 5.0 and btc["limits"]["amount"]["min"] == 0.00001

        book = await client.fetch_order_book("BTC/USDT", 5)
        assert book["nonce"] == fb.last_update_id()
        assert book["bids"][0] == [fb.book().best_bid, fb.book().best_bid_size]
        assert book["asks"][0] == [fb.book().best_ask, fb.book().best_ask_size]

        balance = await client.fetch_balance()
        assert balance["free"]["BTC"] == 2.0 and balance["total"]["USDT"] == 250000.0

        price = round(fb.book().best_bid - 100, 2)
        order = await client.create_order("BTC/USDT", "limit", "buy", 0.001, price)
        assert order["status"] == "open" and order["price"] == price and order["amount"] == 0.001
        fetched = await client.fetch_order(order["id"], "BTC/USDT")
        assert fetched["status"] == "open" and fetched["clientOrderId"] == order["clientOrderId"]
        balance = await client.fetch_balance()
        assert balance["used"]["USDT"] == pytest.approx(price * 0.001)
        canceled = await client.cancel_order(order["id"], "BTC/USDT")
        assert canceled["status"] == "canceled"

        market = await client.create_order("BTC/USDT", "market", "sell", 0.01)
        assert market["status"] == "closed" and market["filled"] == 0.01
        assert market["average"] == pytest.approx(fb.book().best_bid)
        assert market["fee"]["currency"] == "USDT" and market["fee"]["cost"] > 0
        assert (await client.fetch_balance())["free"]["BTC"] == pytest.approx(1.99)
    finally:
        await client.close()


async def test_ccxt_maps_the_fakes_errors(fb) -> None:
    client = make_client(fb)
    try:
        await client.load_markets()
        with pytest.raises(ccxt.InsufficientFunds):
            await client.create_order("BTC/USDT", "market", "sell", 50)
        with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):  # ccxt's class for -1013
            await client.create_order("BTC/USDT", "limit", "buy", 0.00001, 100)  # 0.001 USDT < 5
        with pytest.raises(ccxt.OrderNotFound):
            await client.fetch_order("123456789", "BTC/USDT")
    finally:
        await client.close()
    bad = make_client(fb, secret="not-the-secret")
    try:
        with pytest.raises(ccxt.AuthenticationError):
            await bad.fetch_balance()
    finally:
        await bad.close()
