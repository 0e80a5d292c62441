"""Every Binance fixture decodes, exactly, into the adapter's structs and the engine's events."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_binance_support import CREDS, FIXTURES, Sink, fixture, loop_config

from engine.events import Trade
from engine.model import OrderType, Side
from engine.orders import Order
from venues.binance import decode as d
from venues.binance.execution import BinanceExecutionClient
from venues.binance.filters import parse_filters
from venues.binance.numbers import parse_fixed
from venues.binance.rest import BinanceRest
from venues.binance.symbols import SymbolMap, to_stream
from venues.binance.time_sync import ServerClock
from venues.binance.ws_api import BinanceWsApi


def wrap(stream: str, name: str) -> bytes:
    return b'{"stream":"' + stream.encode() + b'","data":' + fixture(name) + b"}"


def market() -> d.MarketFrameDecoder:
    return d.MarketFrameDecoder(SymbolMap(["BTC-USDT", "NKN-USDT", "ETH-USDT", "BNB-BTC", "BNB-USDT"]))


def test_depth_update_docs() -> None:
    dec = market()
    ev = dec.decode(wrap("bnbbtc@depth@100ms", "depth_update.json"), 7)
    assert isinstance(ev, d.DepthDiff)
    assert (ev.symbol, ev.first_id, ev.last_id, ev.ts_event, ev.ts_recv) == (
        "BNB-BTC",
        157,
        160,
        1672515782136 * 10**6,
        7,
    )
    assert ev.bids.dtype == np.int64 and ev.bids.shape == (1, 2)
    assert ev.bids.tolist() == [[parse_fixed("0.0024"), parse_fixed("10")]]
    assert ev.asks.tolist() == [[parse_fixed("0.0026"), parse_fixed("100")]]


def test_trade_book_ticker_and_shutdown() -> None:
    dec = market()
    t = dec.decode(wrap("bnbbtc@trade", "trade.json"), 1)
    assert isinstance(t, Trade)
    # "m": true -> the buyer was the maker, so the aggressor sold
    assert (t.venue, t.symbol, t.side, t.price_fixed, t.size_fixed) == (
        "binance",
        "BNB-BTC",
        -1,
        100_000,
        10_000_000_000,
    )
    assert t.ts_event == 1672515782136 * 10**6 and t.price == 0.001 and t.size == 100.0
    t2 = dec.decode(json.dumps(json.loads(fixture("trade_ETHUSDT_combined_2021.json"))).encode(), 1)
    assert isinstance(t2, Trade) and t2.symbol == "ETH-USDT" and t2.price_fixed == parse_fixed("4149.74")
    b = dec.decode(wrap("bnbusdt@bookTicker", "book_ticker.json"), 3)
    assert isinstance(b, d.BookTop)
    assert (b.update_id, b.bid, b.bid_qty, b.ask, b.ask_qty) == (
        400900217,
        parse_fixed("25.3519"),
        parse_fixed("31.21"),
        parse_fixed("25.3652"),
        parse_fixed("40.66"),
    )
    s = dec.decode(fixture("server_shutdown.json"), 1)
    assert isinstance(s, d.ServerShutdown) and s.ts_event == 1770123456789 * 10**6
    r = dec.decode(fixture("ws_subscribe_response.json"), 1)
    assert isinstance(r, d.ControlReply) and r.id == 1 and r.code is None
    assert dec.malformed == 0


def test_real_capture_frames_all_decode() -> None:
    dec = market()
    kinds: dict[str, int] = {}
    for line in (FIXTURES / "ws_capture_NKNUSDT_interleaved.jsonl").read_text().splitlines():
        frame = json.dumps(json.loads(line)["frame"]).encode()
        ev = dec.decode(frame, 1)
        kinds[type(ev).__name__] = kinds.get(type(ev).__name__, 0) + 1
    assert dec.malformed == 0
    assert kinds["DepthDiff"] == 150 and kinds["BookTop"] == 74
    # aggTrade and kline streams are not ours: dropped without counting as malformed
    assert kinds.get("NoneType", 0) == dec.unknown_streams > 0


def test_rest_snapshots_and_time() -> None:
    snap = d.decode_snapshot(fixture("depth_snapshot_NKNUSDT.json"), 5)
    assert snap.last_update_id == 499869752 and snap.ts_recv == 5
    raw = json.loads(fixture("depth_snapshot_NKNUSDT.json"))
    assert snap.bids[0].tolist() == [parse_fixed("0.3521"), parse_fixed("672")]
    assert (len(snap.bids), len(snap.asks)) == (len(raw["bids"]), len(raw["asks"]))
    docs = d.decode_snapshot(fixture("depth_snapshot_docs.json"))
    assert docs.bids.tolist() == [[400_000_000, 43_100_000_000]]
    assert docs.asks.tolist() == [[400_000_200, 1_200_000_000]]
    assert d.decode_snapshot(fixture("partial_depth.json")).last_update_id == 160
    assert d.decode_server_time(fixture("server_time.json")) == 1499827319559


def test_order_answers() -> None:
    ack = d.decode_order(fixture("order_new_response_ack.json"))
    assert (ack.order_id, ack.client_order_id, ack.status, ack.fills) == (28, "6gCrw2kRUAF9CvJDGP16IP", "", [])
    res = d.decode_order(fixture("order_new_response_result.json"))
    assert res.status == "FILLED" and res.executed_qty == "10.00000000"
    full = d.decode_order(fixture("order_new_response_full.json"))
    assert len(full.fills) == 5 and sum(parse_fixed(f.qty) for f in full.fills) == parse_fixed(full.executed_qty)
    assert full.fills[0].commission_asset == "USDT" and full.fills[0].trade_id == 56
    cancel = d.decode_order(fixture("order_cancel_response.json"))
    assert cancel.status == "CANCELED" and cancel.orig_client_order_id == "myOrder1"
    q = d.decode_order(fixture("order_query_response.json"))
    assert q.status == "NEW" and q.time == 1499827319559
    opens = d.decode_orders(fixture("open_orders_response.json"))
    assert [o.client_order_id for o in opens] == ["myOrder1"]
    acct = d.decode_account(fixture("account_response.json"))
    assert [b.asset for b in acct.balances] == ["BTC", "LTC"] and acct.can_trade
    info = d.decode_exchange_info(fixture("exchange_info_btcusdt_ethusdt.json"))
    assert [s.symbol for s in info.symbols] == ["BTCUSDT", "ETHUSDT"]
    assert info.rate_limits[0].rate_limit_type == "REQUEST_WEIGHT" and info.rate_limits[0].limit == 1200


def test_user_data_events() -> None:
    u = d.UserFrameDecoder()
    msg, er = u.decode(fixture("execution_report.json"))
    assert msg.subscription_id == 0 and isinstance(er, d.ExecutionReportMsg)
    assert (er.client_order_id, er.exec_type, er.status, er.order_id, er.trade_id) == (
        "mUvoqJxFIILMdfAW5iGSOW",
        "NEW",
        "NEW",
        4293153,
        -1,
    )
    assert er.commission_asset is None
    _, pos = u.decode(fixture("outbound_account_position.json"))
    assert isinstance(pos, d.OutboundAccountPositionMsg) and pos.balances[0].asset == "ETH"
    _, bal = u.decode(fixture("balance_update.json"))
    assert isinstance(bal, d.BalanceUpdateMsg) and bal.delta == "100.00000000"
    _, term = u.decode(fixture("event_stream_terminated.json"))
    assert isinstance(term, d.EventStreamTerminatedMsg) and term.event_time == 1728973001334
    # legacy listenKey-era bare events and the Binance.US combined capture decode as plain events
    legacy = d.decode_user_event(fixture("execution_report_legacy_listenkey.json"))
    assert isinstance(legacy, d.ExecutionReportMsg) and legacy.order_id == 4293153
    us = json.loads(fixture("execution_report_trade_binanceus_combined.json"))["data"]
    trade = d.decode_user_event(json.dumps(us).encode())
    assert isinstance(trade, d.ExecutionReportMsg)
    assert (trade.exec_type, trade.last_qty, trade.commission_asset, trade.trade_id) == (
        "TRADE",
        "0.00042000",
        "USD",
        88685053,
    )
    assert isinstance(d.decode_user_event(b'{"e":"listStatus","E":1}'), d.UnknownEvent)
    assert u.malformed == 0


def test_ws_api_responses() -> None:
    u = d.UserFrameDecoder()
    msg, ev = u.decode(fixture("ws_api_order_place_response.json"))
    assert ev is None and msg.status == 200 and msg.id == "e2a85d9f-07a5-4f94-8d5f-789dc3deb097"
    order = d.decode_order(msg.result)
    assert order.order_id == 12510053279 and order.status == "NEW"
    assert {r.rate_limit_type for r in msg.rate_limits or []} == {"ORDERS", "REQUEST_WEIGHT"}
    sub, _ = u.decode(fixture("ws_api_user_data_subscribe_signature_response.json"))
    assert json.loads(bytes(sub.result)) == {"subscriptionId": 0}
    logon, _ = u.decode(fixture("ws_api_session_logon_response.json"))
    assert logon.status == 200


def _market_event(name: str) -> object:
    raw = fixture(name)
    if b'"stream"' not in raw and b'"e"' in raw and b"serverShutdown" not in raw:
        raw = b'{"stream":"bnbbtc@' + (b"trade" if b'"trade"' in raw else b"aggTrade") + b'","data":' + raw + b"}"
    return market().decode(raw, 1)


def _user(name: str) -> object:
    r = d.UserFrameDecoder().decode(fixture(name))
    assert r is not None
    return r[1] if r[1] is not None else r[0]


# every file in fixtures/venues/binance, and what it must decode to (requests: what we send)
HANDLED = {
    "account_response.json": lambda n: d.decode_account(fixture(n)),
    "agg_trade.json": lambda n: _market_event(n) is None,  # aggTrade is not subscribed: dropped, not malformed
    "agg_trade_NKNUSDT_combined.json": lambda n: _market_event(n) is None,
    "balance_update.json": _user,
    "book_ticker.json": lambda n: d.MarketFrameDecoder(SymbolMap()).decode(wrap("bnbusdt@bookTicker", n), 1),
    "book_ticker_NKNUSDT.jsonl": lambda n: all(
        isinstance(market().decode(line.encode(), 1), d.BookTop) for line in (FIXTURES / n).read_text().splitlines()
    ),
    "depth_snapshot_NKNUSDT.json": lambda n: d.decode_snapshot(fixture(n)),
    "depth_snapshot_docs.json": lambda n: d.decode_snapshot(fixture(n)),
    "depth_update.json": lambda n: market().decode(wrap("bnbbtc@depth", n), 1),
    "depth_updates_NKNUSDT.jsonl": lambda n: all(
        isinstance(market().decode(line.encode(), 1), d.DepthDiff) for line in (FIXTURES / n).read_text().splitlines()
    ),
    "event_stream_terminated.json": _user,
    "exchange_info_NKNUSDT_2021_subset.json": lambda n: d.decode_exchange_info(fixture(n)).symbols,
    "exchange_info_btcusdt_ethusdt.json": lambda n: d.decode_exchange_info(fixture(n)).symbols,
    "execution_report.json": _user,
    "execution_report_legacy_listenkey.json": lambda n: d.decode_user_event(fixture(n)),
    "execution_report_trade_binanceus_combined.json": lambda n: d.decode_user_event(
        json.dumps(json.loads(fixture(n))["data"]).encode()
    ),
    "filters_docs_examples.json": lambda n: len(json.loads(fixture(n))) == 10,
    "kline_NKNUSDT_combined.json": lambda n: _market_event(n) is None,
    "listen_key_response.json": lambda n: "listenKey" in json.loads(fixture(n)),  # retired API: not used
    "open_orders_response.json": lambda n: d.decode_orders(fixture(n)),
    "order_cancel_response.json": lambda n: d.decode_order(fixture(n)),
    "order_new_response_ack.json": lambda n: d.decode_order(fixture(n)),
    "order_new_response_full.json": lambda n: d.decode_order(fixture(n)),
    "order_new_response_result.json": lambda n: d.decode_order(fixture(n)),
    "order_query_response.json": lambda n: d.decode_order(fixture(n)),
    "outbound_account_position.json": _user,
    "outbound_account_position_legacy_listenkey.json": lambda n: d.decode_user_event(fixture(n)),
    "partial_depth.json": lambda n: d.decode_snapshot(fixture(n)),
    "server_shutdown.json": lambda n: market().decode(fixture(n), 1),
    "server_time.json": lambda n: d.decode_server_time(fixture(n)),
    "signature_hmac_sha256_vectors.json": lambda n: json.loads(fixture(n))["rest_api"],  # test_binance_signing
    "ticker_24hr.json": lambda n: market().decode(wrap("bnbbtc@ticker", n), 1) is None,  # not subscribed
    "trade.json": lambda n: market().decode(wrap("bnbbtc@trade", n), 1),
    "trade_ETHUSDT_combined_2021.json": lambda n: _market_event(n),
    "ws_api_error_-1003_banned.json": _user,
    "ws_api_error_-2010.json": _user,
    "ws_api_order_place_response.json": _user,
    "ws_api_session_logon_response.json": _user,
    "ws_api_user_data_subscribe_signature_response.json": _user,
    "ws_capture_NKNUSDT_interleaved.jsonl": lambda n: (FIXTURES / n).stat().st_size,  # test above
    "ws_subscribe_response.json": lambda n: market().decode(fixture(n), 1),
}
REQUESTS = {
    "ws_api_request_order_place.json",
    "ws_api_session_logon_request.json",
    "ws_api_user_data_subscribe_signature_request.json",
    "ws_subscribe_request.json",
}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
def test_every_fixture_is_handled(name: str) -> None:
    if name.startswith("error_"):
        err = d.decode_error(fixture(name))
        assert err is not None and err.code < 0
        return
    if name in REQUESTS:  # requests a client sends: compared with ours below
        return
    assert name in HANDLED, f"fixture {name} has no decode test"
    assert HANDLED[name](name)


def test_our_requests_carry_the_documented_parameters() -> None:
    """What we send has the parameters of the documented requests (session.logon needs an
    Ed25519 key, which this adapter does not use; it subscribes with a signature instead)."""

    cfg = loop_config()
    api = BinanceWsApi(cfg, CREDS, ServerClock())
    info = d.decode_exchange_info(fixture("exchange_info_btcusdt_ethusdt.json"))
    f = parse_filters(info.symbols[0])
    ex = BinanceExecutionClient(cfg, BinanceRest(cfg, CREDS), Sink(), {}, {f.symbol: f}, ws_api=api)
    order = Order("c1", "s", "binance", "BTC-USDT", Side.BUY, OrderType.LIMIT, 10**12, 10**6)
    ours = api.signed_params(ex.order_params(order, f))
    documented = json.loads(fixture("ws_api_request_order_place.json"))
    assert documented["method"] == "order.place"
    assert set(documented["params"]) <= set(ours)
    sub = json.loads(fixture("ws_api_user_data_subscribe_signature_request.json"))
    assert sub["method"] == "userDataStream.subscribe.signature"
    assert set(sub["params"]) <= set(api.signed_params({}))
    streams = json.loads(fixture("ws_subscribe_request.json"))["params"]
    assert {s.split("@")[0] for s in streams} == {to_stream("BTC-USDT")}
    assert json.loads(fixture("ws_api_session_logon_request.json"))["method"] == "session.logon"


def test_real_capture_depth_frames_take_the_compiled_path_exactly() -> None:
    """Every diff of the 2024-08-08 BTCUSDT capture: the compiled scan reads it (no fallback) and
    gives exactly the msgspec + exact-parser result."""
    import gzip

    from test_binance_support import CAPTURE

    from venues.binance.numbers import depth_from_json, levels_array

    n = 0
    with gzip.open(CAPTURE / "btcusdt_20240808.gz", "rb") as fh:
        for line in fh:
            frame = line.rstrip(b"\n").partition(b" ")[2]
            if not frame.startswith(b'{"stream":"btcusdt@depth'):
                continue
            payload = bytes(d._envelope.decode(frame).data)
            fast = depth_from_json(payload)
            assert fast is not None
            m = d._depth.decode(payload)
            want_b = levels_array(json.loads(bytes(m.bids))).tolist()
            want_a = levels_array(json.loads(bytes(m.asks))).tolist()
            assert fast[:3] == (m.event_time, m.first_id, m.last_id)
            assert fast[3].tolist() == want_b and fast[4].tolist() == want_a
            n += 1
    assert n == 3451
