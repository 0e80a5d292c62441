"""Kraken WebSocket v2 and REST fixtures (real messages and the docs' examples, ../shared) decode to
the right structs and common types; the REST signature matches Kraken's documented example; nonces
only grow, across restarts too; errors read in the guide's words; config refuses bad input."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.events import Trade
from venues.kraken import decode as kd
from venues.kraken import errors as ke
from venues.kraken.config import load_config, parse_config
from venues.kraken.filters import check_order, parse_asset_pairs, to_instrument
from venues.kraken.profile import PROFILE
from venues.kraken.signing import NonceSource, sign
from venues.kraken.symbols import asset_name, from_ws, to_altname, to_ws

REPO = Path(__file__).resolve().parents[1]
FIX = REPO.parent / "shared" / "fixtures" / "venues" / "kraken"


def raw(name: str) -> bytes:
    return (FIX / name).read_bytes()


def test_status_keeps_the_u64_connection_id():
    msg = kd.decode(raw("ws_v2_status_live.json"))
    assert isinstance(msg, kd.Status)
    assert msg.data[0].connection_id == 12393906104898154338 and msg.data[0].system == "online"


def test_heartbeat_and_pong():
    assert isinstance(kd.decode(raw("ws_v2_heartbeat.json")), kd.Heartbeat)
    pong = kd.decode(raw("ws_v2_pong_live.json"))
    assert isinstance(pong, kd.MethodReply) and pong.method == "pong" and pong.req_id == 1


@pytest.mark.parametrize(
    "name",
    [
        "ws_v2_book_subscribe_ack_docs.json",
        "ws_v2_book_subscribe_ack_live.json",
        "ws_v2_book_subscribe_ack_ETH-USD_live.json",
    ],
)
def test_subscribe_acks(name):
    ack = kd.decode(raw(name))
    assert isinstance(ack, kd.MethodReply) and ack.success is True and ack.result["channel"] == "book"


def test_book_snapshot_levels_are_exact_decimals_and_fixed_point():
    msg = kd.decode(raw("ws_v2_book_snapshot_MATIC-USD_docs.json"))
    assert isinstance(msg, kd.BookMessage) and msg.type == "snapshot"
    d = msg.data[0]
    assert d.symbol == "MATIC/USD" and d.checksum == 2439117997 and len(d.bids) == 10
    assert all(isinstance(lv.price, Decimal) for lv in d.bids)
    fixed = kd.levels_fixed(d.asks, 4, 8)
    assert fixed[0][0] == int(d.asks[0].price * 10**4)


def test_book_update():
    msg = kd.decode(raw("ws_v2_book_update_ETH-USD_live.json"))
    assert msg.type == "update" and msg.data[0].asks[0].qty == 0 and msg.data[0].checksum == 3329440863
    assert kd.ts_ns(msg.data[0].timestamp) == 1746523046208075000


@pytest.mark.parametrize(
    "name",
    [
        "ws_v2_trade_update_BTC-USD_live.json",
        "ws_v2_trade_snapshot_BTC-USD_live.json",
        "ws_v2_trade_snapshot_MATIC-USD_docs.json",
    ],
)
def test_trades_become_engine_trades(name):
    msg = kd.decode(raw(name))
    assert isinstance(msg, kd.TradeMessage)
    trades = kd.trades(msg, 4, 8, 123)
    assert trades and all(isinstance(t, Trade) for t in trades)
    t, w = trades[0], msg.data[0]
    assert t.venue == "kraken" and t.symbol == from_ws(w.symbol) and t.side == (1 if w.side == "buy" else -1)
    assert t.price_fixed == int(w.price * 10**4) and t.size_fixed == int(w.qty * 10**8) and t.ts_recv == 123
    assert t.ts_event == kd.ts_ns(w.timestamp) > 0


@pytest.mark.parametrize("name", ["ws_v2_ticker_snapshot_BTC-USD_live.json", "ws_v2_ticker_update_BTC-USD_live.json"])
def test_ticker(name):
    msg = kd.decode(raw(name))
    assert isinstance(msg, kd.TickerMessage) and msg.data[0].bid < msg.data[0].ask


def test_executions():
    pend = kd.decode(raw("ws_v2_executions_update_pending_new_live.json"))
    assert isinstance(pend, kd.ExecutionsMessage) and pend.sequence == 120
    e = pend.data[0]
    assert e.exec_type == "pending_new" and e.symbol == "ADX/USD" and e.limit_price == Decimal("0.18328")
    new = kd.decode(raw("ws_v2_executions_update_new_live.json")).data[0]
    assert new.exec_type == "new" and new.order_id == "7J91XK-XMFEL-348VPM"
    canc = kd.decode(raw("ws_v2_executions_update_canceled_live.json")).data[0]
    assert canc.exec_type == "canceled" and canc.reason == "User requested"
    ack = kd.decode(raw("ws_v2_executions_subscribe_ack_live.json"))
    assert ack.result["maxratecount"] == 180


def test_order_replies_and_errors():
    add = kd.decode(raw("ws_v2_add_order_response_live.json"))
    assert add.success and add.result == {"order_id": "OPS23M-VS41G-DDE5Z2", "cl_ord_id": "client-zero"}
    cancel = kd.decode(raw("ws_v2_cancel_order_response_live.json"))
    assert cancel.success and cancel.result["order_id"] == "1V7PZA-L5RIM-RX2G6B"
    for name, reason in [
        ("ws_v2_error_permission_denied_live.json", "Permission denied"),
        ("ws_v2_error_token_not_found_live.json", "Token(s) not found"),
        ("ws_v2_error_invalid_arguments_live.json", None),
    ]:
        err = kd.decode(raw(name))
        assert err.success is False
        assert ke.guide_reason(err.error) == (reason or err.error)


@pytest.mark.parametrize(
    "name,reason",
    [
        ("rest_error_invalid_nonce.json", "Invalid nonce"),
        ("rest_error_invalid_key.json", "Invalid API key"),
        ("rest_error_unknown_asset_pair.json", "Symbol not found"),
        ("rest_error_permission_denied.json", "Permission denied"),
        ("rest_error_invalid_arguments_volume.json", "EGeneral:Invalid arguments:volume"),
    ],
)
def test_rest_errors_in_the_guides_words(name, reason):
    err = ke.KrakenApiError(json.loads(raw(name))["error"])
    assert err.reason == reason


def test_more_guide_words():
    assert ke.guide_reason("EAPI:Invalid signature") == "Invalid signature"
    assert ke.guide_reason("EOrder:Insufficient funds") == "Insufficient balance"
    assert ke.guide_reason("EAPI:Rate limit exceeded") == "Rate limit exceeded"
    assert ke.guide_reason("EService: Throttled: 1700000000") == "Rate limit exceeded"
    assert ke.is_outage("EService:Unavailable")


def test_malformed_frames_are_counted_not_raised(caplog):
    import logging

    dec = kd.FrameDecoder(logging.getLogger("t"))
    assert dec.decode(b"{nope") is None
    assert dec.decode(b'{"channel":"book","type":"update","data":[{"symbol":"X/Y"}]}') is None
    assert dec.decode(b"{}") is None
    assert dec.malformed == 3
    assert isinstance(dec.decode(b'{"channel":"ohlc","data":[]}'), kd.UnknownMessage)


def test_signature_matches_krakens_documented_example():
    v = json.loads(raw("rest_api_sign_vector.json"))
    assert sign(v["uri_path"], v["encoded_payload"], v["nonce"], v["private_key_b64"]) == v["api_sign"]


def test_nonces_strictly_increase_across_restarts_even_when_the_clock_steps_back(tmp_path, monkeypatch):
    path = tmp_path / "nonce"
    src = NonceSource(path)
    first = [src.next() for _ in range(1000)]
    assert all(b > a for a, b in itertools.pairwise(first))
    # a restart with the wall clock an hour behind still goes on above every nonce handed out
    import venues.kraken.signing as sg

    real = sg.time.time_ns
    monkeypatch.setattr(sg.time, "time_ns", lambda: real() - 3600 * 10**9)
    again = NonceSource(path)
    assert again.next() > first[-1]
    path.write_text("garbage")
    with pytest.raises(ValueError, match="nonce"):
        NonceSource(path)


def test_symbols():
    assert to_ws("BTC-USD") == "BTC/USD" and from_ws("XBT/USD") == "BTC-USD" and from_ws("ETH/USD") == "ETH-USD"
    assert to_altname("BTC-USD") == "XBTUSD" and to_altname("DOGE-USD") == "XDGUSD"
    assert asset_name("XXBT") == "BTC" and asset_name("ZUSD") == "USD" and asset_name("DOT") == "DOT"


def test_asset_pairs_to_instrument_and_rules():
    pairs = parse_asset_pairs(json.loads(raw("rest_asset_pairs_XXBTZUSD_2024.json"))["result"])
    r = pairs["BTC-USD"]
    assert (r.price_decimals, r.qty_decimals, r.tick, r.min_qty, r.altname) == (1, 8, 1, 10_000, "XBTUSD")
    inst = to_instrument(r, 0.0025, 0.004)
    assert inst.price_scale == 1 and inst.size_scale == 8 and inst.min_notional == 0.5
    from engine.model import OrderType

    assert check_order(r, OrderType.LIMIT, 600_000, 100_000) == ""
    assert check_order(r, OrderType.LIMIT, 600_000, 5_000) == "notional"
    old = parse_asset_pairs(json.loads(raw("rest_asset_pairs_XXBTZUSD_2021_subset.json"))["result"])["BTC-USD"]
    assert old.tick == 1 and old.min_qty == 20_000


def test_profile_client_ids():
    ids = PROFILE.client_ids
    assert ids.valid("abc-123_XYZ") and ids.valid("a" * 18) and not ids.valid("a" * 19)
    assert ids.valid("f47ac10b-58cc-4372-a567-0e02b2c3d479")
    assert ids.valid(ids.make(ids.prefix("market_maker"), 7))
    assert PROFILE.supports_modify


def test_shipped_config_and_bad_input(tmp_path):
    cfg = load_config(REPO / "config" / "exchanges" / "kraken.json", env={})
    assert cfg.rest_url == "https://api.kraken.com" and cfg.ws_url == "wss://ws.kraken.com/v2"
    assert cfg.rate_limits.rest_max == 15 and cfg.rate_limits.rest_decay_per_s == 0.33
    with pytest.raises(ConfigError, match=r"rate_limits\.tierz: unknown field"):
        parse_config({"rate_limits": {"tierz": "pro"}}, "k.json")
    with pytest.raises(ConfigError, match="book_depth"):
        parse_config({"book_depth": 20}, "k.json")
    with pytest.raises(ConfigError, match="API keys must not be stored"):
        parse_config({"api_secret": "abc"}, "k.json")
    env = parse_config({}, "k.json", env={"KRAKEN_WS_URL": "ws://127.0.0.1:1/v2"})
    assert env.ws_url == "ws://127.0.0.1:1/v2"
    assert parse_config({}, env={}).credentials({"KRAKEN_API_KEY": "k", "KRAKEN_API_SECRET": "cw=="}) is not None
