"""HMAC-SHA256 signing against Binance's documented test vectors."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from test_binance_support import FIXTURES, verify_signature

from venues.binance.signing import HmacSigner, encode_query, sign, sign_ws_params, signed_query, ws_payload

VECTORS = json.loads((FIXTURES / "signature_hmac_sha256_vectors.json").read_text())


def test_rest_vector() -> None:
    v = VECTORS["rest_api"]
    assert sign(v["secretKey"], v["payload"]) == v["signature"]


def test_rest_vector_non_ascii_percent_encoded() -> None:
    v = VECTORS["rest_api"]
    params = {
        "symbol": "１２３４５６",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "1",
        "price": "0.1",
        "recvWindow": 5000,
        "timestamp": 1499827319559,
    }
    query = encode_query(params)
    assert query == v["payload_non_ascii"]
    assert sign(v["secretKey"], query) == v["signature_non_ascii"]


def test_signed_query_matches_vector_and_verifies() -> None:
    v = VECTORS["rest_api"]
    params = dict(kv.split("=", 1) for kv in v["payload"].split("&"))
    q = signed_query(v["secretKey"], params)
    assert q == f"{v['payload']}&signature={v['signature']}"
    assert verify_signature(q, secret=v["secretKey"])
    assert not verify_signature(q.replace("price=0.1", "price=0.2"), secret=v["secretKey"])


def test_ws_api_vector_sorted_params() -> None:
    v = VECTORS["ws_api"]
    pairs = [kv.split("=", 1) for kv in v["payload_sorted_params"].split("&")]
    shuffled = dict(reversed(pairs))
    shuffled["signature"] = "must-be-ignored"
    assert ws_payload(shuffled) == v["payload_sorted_params"]
    assert sign_ws_params(v["secretKey"], shuffled) == v["signature"]


def test_booleans_spelled_like_binance() -> None:
    assert encode_query({"omitZeroBalances": True, "x": False}) == "omitZeroBalances=true&x=false"


def test_keyed_signer_matches_the_vectors_every_time() -> None:
    """The hot-path signer (HMAC keyed once, copied per request) gives the documented signatures,
    also when reused: the prepared state must never carry one payload into the next."""
    rest, ws = VECTORS["rest_api"], VECTORS["ws_api"]
    signer = HmacSigner(rest["secretKey"])
    for _ in range(3):
        assert signer.sign(rest["payload"]) == rest["signature"]
        assert signer.sign(rest["payload_non_ascii"]) == rest["signature_non_ascii"]
    params = dict(kv.split("=", 1) for kv in rest["payload"].split("&"))
    assert signer.signed_query(params) == signed_query(rest["secretKey"], params)
    ws_signer = HmacSigner(ws["secretKey"])
    pairs = dict(kv.split("=", 1) for kv in ws["payload_sorted_params"].split("&"))
    assert ws_signer.sign_ws_params(pairs) == ws["signature"] == ws_signer.sign_ws_params(pairs)


@settings(max_examples=300, deadline=None)
@given(secret=st.text(min_size=1, max_size=100), prefix=st.text(max_size=150), rest=st.text(max_size=150))
def test_signing_after_a_kept_prefix_is_the_same_hmac(secret: str, prefix: str, rest: str) -> None:
    # keys longer than SHA-256's 64-byte block are hashed first (RFC 2104); non-ASCII text too
    signer = HmacSigner(secret)
    expected = sign(secret, prefix + rest)
    assert signer.sign_after(prefix, rest) == expected
    assert signer.sign_after(prefix, rest) == expected  # again, from the kept prefix state
    assert signer.sign(prefix + rest) == expected


def test_documented_vectors_through_a_kept_prefix() -> None:
    rest, ws = VECTORS["rest_api"], VECTORS["ws_api"]
    for secret, payload, signature in (
        (rest["secretKey"], rest["payload"], rest["signature"]),
        (ws["secretKey"], ws["payload_sorted_params"], ws["signature"]),
    ):
        signer = HmacSigner(secret)
        for cut in (0, 1, 63, 64, 65, len(payload)):
            assert signer.sign_after(payload[:cut], payload[cut:]) == signature
