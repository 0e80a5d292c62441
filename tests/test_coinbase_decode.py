"""Every Coinbase fixture decodes, exactly, into the adapter's common types; signing checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from engine.events import Trade
from venues.coinbase import decode as d
from venues.coinbase import signing
from venues.coinbase.errors import CoinbaseApiError, guide_reason
from venues.coinbase.profile import PROFILE

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "venues" / "coinbase"
E8 = 10**8


def raw(name: str) -> bytes:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {path} not found")
    return path.read_bytes()


def compact(name: str) -> bytes:
    return json.dumps(json.loads(raw(name)), separators=(",", ":")).encode()


def dec() -> d.MarketFrameDecoder:
    return d.MarketFrameDecoder(logging.getLogger("test"))


def test_l2_snapshot_live() -> None:
    (m,) = dec().decode(raw("at_l2_data_snapshot_live_trimmed.json"), 5)
    assert isinstance(m, d.L2Message)
    assert (m.symbol, m.snapshot, m.seq, m.ts_recv) == ("BTC-PERP-INTX", True, 0, 5)
    assert m.ts_event == d.parse_time_ns("2026-09-07T01:57:58.894355Z")
    assert m.bids.tolist() == [[7994390 * E8 // 100, 30105 * E8 // 10000], [7994380 * E8 // 100, E8 // 2]]
    assert m.asks.tolist() == [[799441 * E8 // 10, 12 * E8 // 10], [79944 * E8, 48 * E8 // 1000]]


def test_l2_snapshot_docs() -> None:
    (m,) = dec().decode(raw("at_level2_snapshot_docs.json"), 0)
    assert m.snapshot and m.symbol == "BTC-USD" and len(m.asks) == 0
    assert m.bids.tolist() == [[2192173 * E8 // 100, 6317902], [219213 * E8 // 10, 2 * E8 // 100]]


def test_l2_update_and_removal() -> None:
    frame = (
        b'{"channel":"l2_data","timestamp":"2026-09-07T01:57:59.1Z","sequence_num":7,"events":[{"type":"update",'
        b'"product_id":"BTC-USD","updates":[{"side":"bid","event_time":"2026-09-07T01:57:59.1Z",'
        b'"price_level":"100.5","new_quantity":"0"},{"side":"offer","price_level":"101","new_quantity":"2"}]}]}'
    )
    (m,) = dec().decode(frame, 0)
    assert not m.snapshot and m.seq == 7
    assert m.bids.tolist() == [[1005 * E8 // 10, 0]] and m.asks.tolist() == [[101 * E8, 2 * E8]]


@pytest.mark.parametrize(
    ("name", "counter", "seq"), [("at_heartbeats_live.json", 139651, 3), ("at_heartbeats_docs.json", 3049, 0)]
)
def test_heartbeats_int_and_string_counter(name: str, counter: int, seq: int) -> None:
    hb = dec().decode(raw(name), 0)
    assert isinstance(hb, d.Heartbeat) and (hb.counter, hb.seq) == (counter, seq)


def test_subscription_acks() -> None:
    a = dec().decode(raw("at_subscriptions_ack_level2_live.json"), 0)
    b = dec().decode(raw("at_subscriptions_ack_heartbeats_live.json"), 0)
    assert (
        isinstance(a, d.Subscriptions) and a.seq == 1 and a.channels == {"level2": ["BTC-PERP-INTX", "ETH-PERP-INTX"]}
    )
    assert b.seq == 2 and b.channels["heartbeats"] == ["heartbeats"]


def test_error_frame() -> None:
    e = dec().decode(raw("at_error_authentication_failure_live.json"), 0)
    assert isinstance(e, d.ErrorFrame) and e.message == "authentication failure"
    assert guide_reason(0, e.message) == "Invalid signature"


def test_market_trades() -> None:
    b = dec().decode(raw("at_market_trades_docs.json"), 9)
    assert isinstance(b, d.TradeBatch) and b.snapshot
    (t,) = b.trades
    assert isinstance(t, Trade)
    assert (t.symbol, t.side, t.price_fixed, t.size_fixed, t.ts_recv) == (
        "ETH-USD",
        1,
        126001 * E8 // 100,
        3 * E8 // 10,
        9,
    )
    assert t.ts_event == d.parse_time_ns("2019-08-14T20:42:27.265Z")


def test_ticker_status_user() -> None:
    tk = dec().decode(raw("at_ticker_docs.json"), 0)
    assert isinstance(tk, d.TickerBatch) and tk.tickers[0].best_ask == "21933.98"
    st = dec().decode(raw("at_status_docs.json"), 0)
    assert isinstance(st, d.StatusBatch) and st.products[0].quote_increment == "0.01"
    us = dec().decode(raw("at_user_docs.json"), 0)
    assert isinstance(us, d.UserBatch) and us.snapshot
    o = us.orders[0]
    assert (o.order_id, o.client_order_id, o.status, o.cumulative_quantity) == ("YYY", "XXX", "FILLED", "0.01")


def test_subscribe_requests_are_the_documented_shape() -> None:
    for name, channel in (
        ("at_subscribe_level2_request_docs.json", "level2"),
        ("at_subscribe_heartbeats_request_docs.json", "heartbeats"),
    ):
        req = json.loads(raw(name))
        assert req["type"] == "subscribe" and req["channel"] == channel


def test_malformed_frames_counted_not_raised() -> None:
    seen: list[int] = []
    m = dec()
    m.on_malformed = lambda n, what: seen.append(n)
    assert m.decode(b"{not json", 0) is None
    assert (
        m.decode(
            b'{"channel":"l2_data","sequence_num":1,"events":[{"type":"update","product_id":"X","updates":[{"side":"up","price_level":"1","new_quantity":"1"}]}]}',
            0,
        )
        is None
    )
    assert (
        m.decode(
            b'{"channel":"l2_data","sequence_num":1,"events":[{"type":"update","product_id":"X","updates":[{"side":"bid","price_level":"1.000000001","new_quantity":"1"}]}]}',
            0,
        )
        is None
    )
    assert seen == [1, 2, 3] and m.malformed == 3


def test_time_parse() -> None:
    assert d.parse_time_ns("1970-01-01T00:00:00Z") == 0
    assert d.parse_time_ns("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert d.parse_time_ns("2026-09-07T23:37:22.675755362Z") % 10**9 == 675755362


# --- Coinbase Exchange frames (the 2021 capture) -------------------------------------------------
def test_exchange_snapshot_and_updates() -> None:
    snap = d.exchange_to_common(d.exchange_frame.decode(raw("exchange_level2_snapshot_BAND-GBP.json")))
    assert isinstance(snap, d.L2Message) and snap.snapshot and snap.symbol == "BAND-GBP"
    assert snap.asks[0].tolist() == [148024 * E8 // 10000, 1277 * E8 // 100]
    n = 0
    for line in raw("exchange_l2updates_BAND-GBP.jsonl").splitlines():
        m = d.exchange_to_common(d.exchange_frame.decode(line))
        assert isinstance(m, d.L2Message) and not m.snapshot and len(m.bids) + len(m.asks) >= 1
        n += 1
    assert n == 471
    first = d.exchange_to_common(d.exchange_frame.decode(raw("exchange_l2updates_BAND-GBP.jsonl").splitlines()[0]))
    assert first.asks.tolist() == [[148098 * E8 // 10000, 0]]


def test_exchange_interleaved_capture_every_frame_decodes() -> None:
    kinds: dict[str, int] = {}
    for line in raw("exchange_capture_BAND-GBP_interleaved.jsonl").splitlines():
        frame = json.loads(line)["frame"]
        msg = d.exchange_frame.decode(json.dumps(frame).encode())
        kinds[type(d.exchange_to_common(msg)).__name__] = kinds.get(type(d.exchange_to_common(msg)).__name__, 0) + 1
    assert kinds["L2Message"] >= 472 and "ExchangeTicker" in kinds


def test_exchange_match_heartbeat_ticker_subscriptions() -> None:
    for name in ("exchange_match.json", "exchange_last_match.json"):
        m = d.exchange_frame.decode(raw(name))
        t = d.exchange_to_common(m)
        assert isinstance(t, Trade) and t.side == (-1 if m.side == "buy" else 1) and t.price_fixed > 0
    hb = d.exchange_to_common(d.exchange_frame.decode(raw("exchange_heartbeat_docs.json")))
    assert isinstance(hb, d.Heartbeat) and (hb.seq, hb.counter) == (90, 20)
    sub = d.exchange_to_common(d.exchange_frame.decode(raw("exchange_subscriptions_response.json")))
    assert isinstance(sub, d.Subscriptions) and "BAND-GBP" in sub.channels["level2"]
    for name in ("exchange_ticker.json", "exchange_ticker_on_subscribe_stale.json"):
        assert isinstance(d.exchange_frame.decode(raw(name)), d.ExchangeTicker)
    req = json.loads(raw("exchange_subscribe_request_level2.json"))
    assert req["type"] == "subscribe" and req["channels"] == ["level2"]


def test_exchange_rest_bodies() -> None:
    p = msgspec.json.decode(raw("exchange_product_BAND-GBP_2021.json"), type=d.Product)
    assert (p.quote_increment, p.base_increment, p.min_market_funds) == ("0.0001", "0.01", "1.0")
    o = msgspec.json.decode(raw("exchange_order_create_response_docs.json"), type=d.ExchangeOrder)
    assert (o.status, o.post_only, o.filled_size) == ("open", True, "0.00000000")
    req = json.loads(raw("exchange_order_create_request_docs.json"))
    assert PROFILE.client_ids.valid(req["client_oid"].lower()) or len(req["client_oid"]) == 36
    err = msgspec.json.decode(raw("exchange_error_insufficient_funds.json"), type=d.ErrorBody)
    assert str(CoinbaseApiError(400, err.message)).startswith("Insufficient balance")


def test_advanced_trade_rest_bodies() -> None:
    o = msgspec.json.decode(raw("at_orders_historical_batch_response.json"), type=d.AtOrders)
    assert o.orders[0].status == "FILLED" and o.orders[0].order_configuration["market_market_ioc"]["base_size"] == "10"
    f = msgspec.json.decode(raw("at_fills_response.json"), type=d.AtFills)
    assert (f.fills[0].liquidity_indicator, f.fills[0].commission) == ("TAKER", "0.03136")


# --- errors in the guide's words -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        (401, "Invalid Passphrase", "Invalid passphrase"),
        (401, "invalid passphrase", "Invalid passphrase"),
        (401, "invalid signature", "Invalid signature"),
        (401, "Invalid API Key", "Invalid API key"),
        (400, "Insufficient funds", "Insufficient balance"),
        (429, "Public rate limit exceeded", "Rate limit exceeded"),
        (429, "", "Rate limit exceeded"),
        (401, "request timestamp expired", "Invalid timestamp"),
        (404, "NotFound", "Unknown order"),
        (503, "", "Exchange outage"),
        (400, "size is too accurate. Smallest unit is 0.01000000", "size is too accurate. Smallest unit is 0.01000000"),
    ],
)
def test_guide_reasons(status: int, message: str, reason: str) -> None:
    assert guide_reason(status, message) == reason


def test_profile_client_ids_are_uuids() -> None:
    rules = PROFILE.client_ids
    cid = rules.make(rules.prefix("mm_1", "abc"), 7)
    assert rules.valid(cid) and len(cid) == 36 and cid == rules.make(rules.prefix("mm_1", "abc"), 7)
    assert not rules.valid("mm_1-7")
    assert not PROFILE.supports_modify
    assert PROFILE.error("modify_not_supported").text == "Order modification not supported"


# --- signing -----------------------------------------------------------------------------------------
SECRET = base64.b64encode(b"coinbase-test-secret-0123456789").decode()


def test_exchange_signature_is_the_documented_hmac() -> None:
    body = '{"price":"1.0","size":"1.0","side":"buy","product_id":"BTC-USD"}'
    want = base64.b64encode(
        hmac.new(base64.b64decode(SECRET), b"1422368544POST/orders" + body.encode(), hashlib.sha256).digest()
    ).decode()
    assert signing.sign(signing.decode_secret(SECRET), "1422368544", "post", "/orders", body) == want
    h = signing.ExchangeSigner("key1", SECRET, "pass").headers("GET", "/accounts", timestamp="1422368544")
    assert h["CB-ACCESS-PASSPHRASE"] == "pass" and h["CB-ACCESS-TIMESTAMP"] == "1422368544"
    assert (
        h["CB-ACCESS-SIGN"]
        == base64.b64encode(
            hmac.new(base64.b64decode(SECRET), b"1422368544GET/accounts", hashlib.sha256).digest()
        ).decode()
    )
    # the same value spelled out, so a change of the prehash shows up even if hmac were mocked
    assert h["CB-ACCESS-SIGN"] == "2iqKzPLbqvFMqR/wasgoeHtb/yDOD7TFcZSfwTyEc2Y="
    assert "s3cr3tPhrase" not in repr(signing.ExchangeSigner("key1", SECRET, "s3cr3tPhrase"))


def test_bad_secret_named_not_echoed() -> None:
    with pytest.raises(ValueError, match="COINBASE_API_SECRET") as exc:
        signing.decode_secret("not base64!!")
    assert "not base64!!" not in str(exc.value)


def test_cdp_jwt_verifies_with_the_public_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = "organizations/org/apiKeys/k1"
    tok = signing.build_jwt(name, key, "GET api.coinbase.com/api/v3/brokerage/accounts", now=1_000_000)
    claims = signing.verify_jwt(tok, key.public_key(), now=1_000_010)
    assert claims == {
        "sub": name,
        "iss": "cdp",
        "nbf": 1_000_000,
        "exp": 1_000_120,
        "uri": "GET api.coinbase.com/api/v3/brokerage/accounts",
    }
    with pytest.raises(ValueError, match="expired"):
        signing.verify_jwt(tok, key.public_key(), now=1_000_121)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="signature"):
        signing.verify_jwt(tok, other.public_key(), now=1_000_010)
    ws = signing.build_jwt(name, key, None, now=1_000_000)
    assert "uri" not in signing.verify_jwt(ws, key.public_key(), now=1_000_000)


def test_user_channel_messages() -> None:
    """The authenticated user channel's messages (the full channel's shapes, CB-EX channels page)."""
    rec = d.user_frame.decode(
        b'{"type":"received","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","sequence":10,'
        b'"order_id":"d50ec984-77a8-460a-b958-66f114b0de9b","size":"1.34","price":"502.1","side":"buy",'
        b'"order_type":"limit","client_oid":"d50ec974-76a2-454b-66f135b1ea8c"}'
    )
    assert isinstance(rec, d.ExchangeReceived) and rec.client_oid.startswith("d50ec974")
    done = d.user_frame.decode(
        b'{"type":"done","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","sequence":10,"price":"200.2",'
        b'"order_id":"d50ec984-77a8-460a-b958-66f114b0de9b","reason":"filled","side":"sell","remaining_size":"0"}'
    )
    assert isinstance(done, d.ExchangeDone) and done.reason == "filled"
    m = d.user_frame.decode(
        b'{"type":"match","trade_id":10,"sequence":50,"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8",'
        b'"taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","time":"2014-11-07T08:19:27.028459Z",'
        b'"product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell","taker_fee_rate":"0.006"}'
    )
    assert isinstance(m, d.UserMatch) and (m.taker_fee_rate, m.maker_fee_rate) == ("0.006", "")
    op = d.user_frame.decode(
        b'{"type":"open","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","sequence":10,'
        b'"order_id":"d50ec984-77a8-460a-b958-66f114b0de9b","price":"200.2","remaining_size":"1.00","side":"sell"}'
    )
    assert isinstance(op, d.ExchangeOpen)
    assert isinstance(d.user_frame.decode(raw("exchange_heartbeat_docs.json")), d.ExchangeHeartbeat)
