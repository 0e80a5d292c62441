"""``order_wire.SignedTemplate``: the order hot path's pre-rendered requests are exactly what the
general path (``signing`` + msgspec) sends, for every kind of order, and carry Binance's own
documented signatures."""

from __future__ import annotations

import json

import msgspec
import pytest
from test_binance_support import FIXTURES

from venues.binance.order_wire import SignedTemplate
from venues.binance.signing import HmacSigner, signed_query

VECTORS = json.loads((FIXTURES / "signature_hmac_sha256_vectors.json").read_text())
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"

SHAPES = [
    {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": None, "quantity": None,
     "newClientOrderId": None, "newOrderRespType": "ACK"},
    {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "IOC", "price": None, "quantity": None,
     "newClientOrderId": None, "newOrderRespType": "RESULT"},
    {"symbol": "ETHBTC", "side": "BUY", "type": "LIMIT_MAKER", "price": None, "quantity": None,
     "newClientOrderId": None, "newOrderRespType": "FULL"},
    {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": None, "newClientOrderId": None,
     "newOrderRespType": "ACK"},
    {"symbol": "BTCUSDT", "origClientOrderId": None},
    # constants that need encoding: percent signs, non-ASCII, quotes (none of them real, all legal)
    {"symbol": "１２３", "note": 'a"b%c{d}', "quantity": None},
]  # fmt: skip
VALUES = {
    "price": "61837.63",
    "quantity": "0.00100000",
    "newClientOrderId": "hp-7_x-123",
    "origClientOrderId": "hp-7_x-122",
}


def general_rest(params: dict, ts: int) -> str:
    p = dict(params)
    p["recvWindow"] = 5000
    p["timestamp"] = ts
    return signed_query(SECRET, p)


def general_ws(params: dict, rid: str, method: str, ts: int) -> bytes:
    signer = HmacSigner(SECRET)
    p = dict(params)
    p["apiKey"] = KEY
    p.setdefault("recvWindow", 5000)
    p["timestamp"] = ts
    p["signature"] = signer.sign_ws_params(p)
    return msgspec.json.encode({"id": rid, "method": method, "params": p})


@pytest.mark.parametrize("shape", SHAPES)
def test_templates_render_exactly_what_the_general_path_sends(shape: dict) -> None:
    tpl = SignedTemplate(shape, KEY, 5000)
    signer = HmacSigner(SECRET)
    values = tuple(VALUES[k] for k in tpl.slots)
    full = {k: (VALUES[k] if v is None else v) for k, v in shape.items()}
    for ts in (1499827319559, 1732550400000):
        assert tpl.render_query(signer, values, ts) == general_rest(full, ts)
        assert tpl.render_ws(signer, "order.place", "h12x9", values, ts) == general_ws(full, "h12x9", "order.place", ts)


def test_templates_reproduce_binance_documented_signatures() -> None:
    rest = VECTORS["rest_api"]
    shape = {"symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": None, "price": None}
    tpl = SignedTemplate(shape, KEY, 5000)
    q = tpl.render_query(HmacSigner(rest["secretKey"]), ("1", "0.1"), 1499827319559)
    assert q == f"{rest['payload']}&signature={rest['signature']}"

    ws = VECTORS["ws_api"]
    shape = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "price": None,
        "quantity": None,
    }
    tpl = SignedTemplate(shape, KEY, 100)
    frame = json.loads(
        tpl.render_ws(HmacSigner(ws["secretKey"]), "order.place", "1", ("52000.00", "0.01000000"), 1645423376532)
    )
    assert frame["params"]["signature"] == ws["signature"]
    assert frame["params"]["apiKey"] == KEY and frame["params"]["recvWindow"] == 100


def test_execution_templates_follow_new_api_keys() -> None:
    """A WS API template embeds the API key: new credentials (a key rotation) rebuild them all."""
    from test_binance_execution import FILTERS, INSTRUMENTS, order
    from test_binance_support import Sink, loop_config

    from venues.binance.config import Credentials
    from venues.binance.execution import BinanceExecutionClient
    from venues.binance.rest import BinanceRest

    cfg = loop_config(rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9")
    rest = BinanceRest(cfg, Credentials("key-one", "secret-one"))
    ex = BinanceExecutionClient(cfg, rest, Sink(), INSTRUMENTS, FILTERS)
    o = order("t-1")
    first = ex._new_template(o, FILTERS["BTC-USDT"])
    assert ex._new_template(o, FILTERS["BTC-USDT"]) is first and first.api_key == "key-one"
    rest.credentials = Credentials("key-two", "secret-two")
    second = ex._new_template(o, FILTERS["BTC-USDT"])
    assert second is not first and second.api_key == "key-two"
    assert first.slots == second.slots == ("newClientOrderId", "price", "quantity")
