"""Symbols, exact number parsing, exchangeInfo filters and the pre-send order check."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_binance_support import fixture

from engine.model import OrderType
from venues.binance.decode import SymbolInfo, decode_exchange_info
from venues.binance.filters import SymbolFilters, check_order, parse_filters, to_instrument
from venues.binance.numbers import format_fixed, parse_fixed
from venues.binance.symbols import SymbolMap, to_stream, to_wire


def test_symbol_spellings() -> None:
    assert to_wire("BTC-USDT") == "BTCUSDT"
    assert to_stream("BTC-USDT") == "btcusdt"
    m = SymbolMap(["BTC-USDT"])
    assert m.from_wire("BTCUSDT") == "BTC-USDT"
    assert m.from_stream("btcusdt") == "BTC-USDT"
    assert m.add("NKNUSDT", base="NKN", quote="USDT") == "NKN-USDT"
    assert m.from_stream("nknusdt") == "NKN-USDT"
    for bad in ("BTCUSDT", "btc-usdt", "BTC/USDT", "", "BTC-"):
        with pytest.raises(ValueError, match="BASE-QUOTE"):
            to_wire(bad)


def test_parse_fixed_exact() -> None:
    assert parse_fixed("61837.63000000") == 6183763000000
    assert parse_fixed("0.00000001") == 1
    assert parse_fixed("100") == 10_000_000_000
    assert parse_fixed("0.0024") == 240_000
    assert parse_fixed("1.500000000000") == 150_000_000  # extra zeros beyond scale are fine
    for bad in ("", ".", "-1", "1e5", " 1", "1_0", "0.000000001", "abc", "١"):
        with pytest.raises(ValueError):
            parse_fixed(bad)


@given(st.integers(min_value=0, max_value=10**18))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_fixed_round_trip(n: int) -> None:
    assert parse_fixed(format_fixed(n)) == n


def _btc() -> SymbolFilters:
    info = decode_exchange_info(fixture("exchange_info_btcusdt_ethusdt.json"))
    return parse_filters(next(s for s in info.symbols if s.symbol == "BTCUSDT"))


def test_filters_from_real_exchange_info() -> None:
    f = _btc()
    assert (f.symbol, f.wire, f.base, f.quote) == ("BTC-USDT", "BTCUSDT", "BTC", "USDT")
    assert f.tick == parse_fixed("0.01") and f.step == parse_fixed("0.00001")
    assert f.min_qty == parse_fixed("0.00001") and f.max_qty == parse_fixed("9000")
    assert f.min_notional == parse_fixed("10") and f.notional_filter == "MIN_NOTIONAL"
    inst = to_instrument(f, maker_fee=0.001, taker_fee=0.001)
    assert (inst.venue, inst.symbol, inst.venue_symbol) == ("binance", "BTC-USDT", "BTCUSDT")
    assert (inst.price_scale, inst.size_scale, inst.tick, inst.lot) == (8, 8, 1_000_000, 1_000)
    assert inst.min_notional == 10.0 and inst.min_price == parse_fixed("0.01")

    nkn = parse_filters(decode_exchange_info(fixture("exchange_info_NKNUSDT_2021_subset.json")).symbols[0])
    assert nkn.tick == parse_fixed("0.0001") and nkn.step == parse_fixed("1") and nkn.min_notional == parse_fixed("10")


def test_docs_filter_examples_current_notional() -> None:
    filters = json.loads(fixture("filters_docs_examples.json"))
    f = parse_filters(SymbolInfo("XUSDT", "TRADING", "X", "USDT", filters=filters))
    # NOTIONAL (current) wins over the legacy MIN_NOTIONAL when both are listed
    assert (
        f.notional_filter == "NOTIONAL"
        and f.min_notional == parse_fixed("10")
        and f.max_notional == parse_fixed("10000")
    )
    assert f.market_step == parse_fixed("0.001")
    px = parse_fixed("1.000001")
    assert check_order(f, OrderType.LIMIT, px, parse_fixed("20")) == ""
    assert check_order(f, OrderType.LIMIT, px, parse_fixed("5")) == "Filter failure: NOTIONAL"
    assert check_order(f, OrderType.LIMIT, px, parse_fixed("10001")) == "Filter failure: NOTIONAL"
    # applyMinToMarket false: a small market order passes the notional check
    assert check_order(f, OrderType.MARKET, 0, parse_fixed("1"), ref_price=px) == ""
    assert check_order(f, OrderType.MARKET, 0, parse_fixed("1.0005")) == "Filter failure: LOT_SIZE"


def test_check_order_binance_wording() -> None:
    f = _btc()
    px = parse_fixed("61837.63")
    ok_qty = parse_fixed("0.001")
    assert check_order(f, OrderType.LIMIT, px, ok_qty) == ""
    assert check_order(f, OrderType.LIMIT, parse_fixed("61837.635"), ok_qty) == "Filter failure: PRICE_FILTER"
    assert check_order(f, OrderType.LIMIT, parse_fixed("0.001"), ok_qty) == "Filter failure: PRICE_FILTER"
    assert check_order(f, OrderType.LIMIT, parse_fixed("2000000"), ok_qty) == "Filter failure: PRICE_FILTER"
    assert check_order(f, OrderType.LIMIT, 0, ok_qty) == "Filter failure: PRICE_FILTER"
    assert check_order(f, OrderType.LIMIT, px, parse_fixed("0.000015")) == "Filter failure: LOT_SIZE"
    assert check_order(f, OrderType.LIMIT, px, parse_fixed("0.000001")) == "Filter failure: LOT_SIZE"
    assert check_order(f, OrderType.LIMIT, px, parse_fixed("9001")) == "Filter failure: LOT_SIZE"
    assert check_order(f, OrderType.LIMIT, px, 0) == "Filter failure: LOT_SIZE"
    # 0.0001 BTC at 61837.63 = 6.18 USDT < 10
    assert check_order(f, OrderType.LIMIT, px, parse_fixed("0.0001")) == "Filter failure: MIN_NOTIONAL"
    assert check_order(f, OrderType.MARKET, 0, parse_fixed("0.0001"), ref_price=px) == "Filter failure: MIN_NOTIONAL"
    assert check_order(f, OrderType.MARKET, 0, parse_fixed("0.001"), ref_price=px) == ""
    assert check_order(f, OrderType.MARKET, 0, parse_fixed("200"), ref_price=px) == "Filter failure: MARKET_LOT_SIZE"


def test_bad_filter_value_names_the_field() -> None:
    info = SymbolInfo("XUSDT", "TRADING", "X", "USDT", filters=[{"filterType": "LOT_SIZE", "stepSize": "abc"}])
    with pytest.raises(ValueError, match=r"LOT_SIZE\.stepSize"):
        parse_filters(info)
