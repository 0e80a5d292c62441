"""The fake Binance's signature and timing checks against Binance's published test vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.fake_binance.errors import BinanceError
from sim.fake_binance.signing import check_timestamp, rest_payload, sign, verify, ws_payload

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "venues" / "binance"
VECTORS = json.loads((FIXTURES / "signature_hmac_sha256_vectors.json").read_text())


def test_rest_vector_verifies() -> None:
    v = VECTORS["rest_api"]
    assert sign(v["secretKey"], v["payload"]) == v["signature"]
    assert verify(v["secretKey"], v["payload"], v["signature"])
    assert verify(v["secretKey"], v["payload"], v["signature"].upper())  # hex is case-insensitive
    assert not verify(v["secretKey"], v["payload"] + "0", v["signature"])
    assert not verify(v["secretKey"], v["payload"], "")


def test_non_ascii_vector_is_signed_percent_encoded() -> None:
    v = VECTORS["rest_api"]
    assert verify(v["secretKey"], v["payload_non_ascii"], v["signature_non_ascii"])


def test_rest_payload_is_query_then_body_without_signature() -> None:
    v = VECTORS["rest_api"]
    query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    body = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    # Binance's mixed example: query string and body are concatenated with no separator
    payload = rest_payload(query, body + "&signature=abc")
    assert payload == query + body
    assert rest_payload(v["payload"] + "&signature=" + v["signature"], "") == v["payload"]
    assert verify(v["secretKey"], rest_payload("", v["payload"] + "&signature=x"), v["signature"])


def test_ws_api_vector_sorts_params() -> None:
    v = VECTORS["ws_api"]
    params = dict(pair.split("=", 1) for pair in v["payload_sorted_params"].split("&"))
    shuffled = dict(reversed(list(params.items())))
    shuffled["signature"] = v["signature"]
    assert ws_payload(shuffled) == v["payload_sorted_params"]
    assert verify(v["secretKey"], ws_payload(shuffled), v["signature"])


@pytest.mark.parametrize(
    ("timestamp", "recv_window", "server_ms", "message"),
    [
        (10_000, None, 10_000 + 5_001, "Timestamp for this request is outside of the recvWindow."),
        (10_000, "100", 10_101, "Timestamp for this request is outside of the recvWindow."),
        (11_000, None, 10_000, "Timestamp for this request was 1000ms ahead of the server's time."),
    ],
)
def test_timestamp_rejections(timestamp: int, recv_window: str | None, server_ms: float, message: str) -> None:
    params = {"timestamp": str(timestamp)}
    if recv_window is not None:
        params["recvWindow"] = recv_window
    with pytest.raises(BinanceError) as err:
        check_timestamp(params, server_ms)
    assert err.value.code == -1021
    assert err.value.msg == message


@pytest.mark.parametrize(
    ("params", "server_ms"),
    [
        ({"timestamp": "10000"}, 15_000),  # exactly recvWindow old
        ({"timestamp": "10999"}, 10_000),  # just under 1000 ms ahead
        ({"timestamp": "10000", "recvWindow": "60000"}, 70_000),
        ({"timestamp": "10000000000000000", "recvWindow": "0.5"}, 10_000_000_000_000.4),  # microseconds
    ],
)
def test_timestamp_accepted(params: dict[str, str], server_ms: float) -> None:
    check_timestamp(params, server_ms)


def test_timestamp_parameter_errors() -> None:
    with pytest.raises(BinanceError) as err:
        check_timestamp({}, 0)
    assert (err.value.code, err.value.msg) == (
        -1102,
        "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
    )
    with pytest.raises(BinanceError) as err:
        check_timestamp({"timestamp": "12ab"}, 0)
    assert err.value.code == -1100
    with pytest.raises(BinanceError) as err:
        check_timestamp({"timestamp": "1000", "recvWindow": "60001"}, 1000)
    assert err.value.code == -1102 and "60000" in err.value.msg
