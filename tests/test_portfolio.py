"""Portfolio accounting: average price, realized/unrealized P&L, fees, balances, inverse contracts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.model import Instrument, Side
from engine.portfolio import Portfolio

SPOT = Instrument("binance", "BTC-USDT", "BTCUSDT", price_scale=2, size_scale=5, tick=1, lot=1, kind="spot")
PERP = Instrument("binance_usdm", "BTC-USDT", "BTCUSDT", price_scale=1, size_scale=3, tick=1, lot=1, kind="perp")
# Binance COIN-M BTCUSD_PERP: 100 USD per contract, price tick 0.1.
INV = Instrument(
    "binance_coinm",
    "BTC-USD",
    "BTCUSD_PERP",
    price_scale=1,
    size_scale=0,
    tick=1,
    lot=1,
    inverse=True,
    contract_size=100.0,
    kind="perp",
)


def px(inst: Instrument, p: float) -> int:
    return inst.price_to_fixed(str(p))


def sz(inst: Instrument, q: float) -> int:
    return inst.size_to_fixed(str(q))


# -- average price, realized, flips ------------------------------------------------------------


def test_adding_moves_average_and_reducing_realizes() -> None:
    pf = Portfolio()
    assert pf.on_fill("s", PERP, Side.BUY, px(PERP, 100.0), sz(PERP, 1.0), 0.0) == 0.0
    assert pf.on_fill("s", PERP, Side.BUY, px(PERP, 110.0), sz(PERP, 3.0), 0.0) == 0.0
    pos = pf.position("s", PERP.venue, PERP.symbol)
    assert pos.qty == 4000
    assert pos.avg_price == pytest.approx((100.0 * 1 + 110.0 * 3) / 4)  # 107.5
    realized = pf.on_fill("s", PERP, Side.SELL, px(PERP, 120.0), sz(PERP, 1.5), 0.0)
    assert realized == pytest.approx(1.5 * (120.0 - 107.5))
    assert pos.avg_price == pytest.approx(107.5)  # reducing leaves the entry unchanged
    assert pos.qty == 2500


def test_flip_through_zero_realizes_closed_part_and_opens_rest_at_fill() -> None:
    pf = Portfolio()
    pf.on_fill("s", PERP, Side.BUY, px(PERP, 100.0), sz(PERP, 2.0), 0.0)
    realized = pf.on_fill("s", PERP, Side.SELL, px(PERP, 90.0), sz(PERP, 5.0), 0.0)
    pos = pf.position("s", PERP.venue, PERP.symbol)
    assert realized == pytest.approx(2.0 * (90.0 - 100.0))
    assert pos.qty == -3000
    assert pos.avg_price == 90.0
    # The short now gains when price falls.
    pf.mark(PERP.venue, PERP.symbol, 80.0)
    assert pos.unrealized == pytest.approx(-3.0 * (80.0 - 90.0))
    realized = pf.on_fill("s", PERP, Side.BUY, px(PERP, 80.0), sz(PERP, 3.0), 0.0)
    assert realized == pytest.approx(30.0)
    assert pos.qty == 0 and pos.avg_price == 0.0 and pos.unrealized == 0.0
    assert pos.realized == pytest.approx(-20.0 + 30.0)


def test_unrealized_is_zero_before_mark_and_notional_uses_mark() -> None:
    pf = Portfolio()
    pf.on_fill("s", PERP, Side.SELL, px(PERP, 200.0), sz(PERP, 0.5), 0.0)
    pos = pf.position("s", PERP.venue, PERP.symbol)
    assert math.isnan(pos.mark)
    assert pos.unrealized == 0.0
    assert pos.notional == pytest.approx(0.5 * 200.0)  # entry stands in before the first mark
    pf.mark(PERP.venue, PERP.symbol, 210.0)
    assert pos.notional == pytest.approx(0.5 * 210.0)
    assert pos.unrealized == pytest.approx(-0.5 * 10.0)
    assert pos.qty_float == -0.5


def test_mark_updates_every_strategy_and_aggregates() -> None:
    pf = Portfolio()
    pf.on_fill("a", PERP, Side.BUY, px(PERP, 100.0), sz(PERP, 2.0), 0.5)
    pf.on_fill("b", PERP, Side.SELL, px(PERP, 100.0), sz(PERP, 0.5), 0.25)
    pf.mark(PERP.venue, PERP.symbol, 104.0)
    a = pf.position("a", PERP.venue, PERP.symbol)
    b = pf.position("b", PERP.venue, PERP.symbol)
    assert a.mark == b.mark == 104.0
    assert pf.net_qty(PERP.venue, PERP.symbol) == pytest.approx(1.5)
    assert pf.position_usd("a") == pytest.approx(2.0 * 104.0)
    assert pf.position_usd() == pytest.approx(2.5 * 104.0)
    assert pf.strategy_pnl("a") == pytest.approx((0.0, 8.0, 0.5))
    assert pf.strategy_pnl("b") == pytest.approx((0.0, -2.0, 0.25))
    assert {(sid, p.symbol) for sid, p in pf.positions()} == {("a", "BTC-USDT"), ("b", "BTC-USDT")}
    # A strategy entering a marked instrument starts at the current mark.
    pf.on_fill("c", PERP, Side.BUY, px(PERP, 104.0), sz(PERP, 1.0), 0.0)
    assert pf.position("c", PERP.venue, PERP.symbol).mark == 104.0


def test_position_of_unknown_instrument_is_a_clear_error() -> None:
    pf = Portfolio()
    with pytest.raises(KeyError, match=r"binance:ETH-USDT is not registered"):
        pf.position("s", "binance", "ETH-USDT")
    pf.register(SPOT)
    pos = pf.position("s", SPOT.venue, SPOT.symbol)
    assert pos.qty == 0 and pos.realized == 0.0 and pos.fees == 0.0


def test_non_positive_fill_quantity_is_rejected() -> None:
    pf = Portfolio()
    with pytest.raises(ValueError, match="fill quantity must be positive"):
        pf.on_fill("s", PERP, Side.BUY, px(PERP, 100.0), 0, 0.0)


# -- balances ------------------------------------------------------------------------------------


def test_spot_fills_move_base_and_quote() -> None:
    pf = Portfolio({"binance": {"USDT": 10_000.0}})
    pf.on_fill("s", SPOT, Side.BUY, px(SPOT, 50_000.0), sz(SPOT, 0.1), 5.0)
    assert pf.free("binance", "BTC") == pytest.approx(0.1)
    assert pf.free("binance", "USDT") == pytest.approx(10_000.0 - 5_000.0 - 5.0)
    pf.on_fill("s", SPOT, Side.SELL, px(SPOT, 51_000.0), sz(SPOT, 0.04), 2.04)
    assert pf.free("binance", "BTC") == pytest.approx(0.06)
    assert pf.free("binance", "USDT") == pytest.approx(10_000.0 - 5_005.0 + 2_040.0 - 2.04)
    pos = pf.position("s", "binance", "BTC-USDT")
    assert pos.realized == pytest.approx(0.04 * 1_000.0)
    assert pos.fees == pytest.approx(7.04)


def test_spot_fee_in_base_is_taken_from_base() -> None:
    pf = Portfolio({"binance": {"USDT": 1_000.0}})
    # 0.1 % fee on 0.01 BTC at 40 000: 0.4 USDT, taken as 0.00001 BTC.
    pf.on_fill("s", SPOT, Side.BUY, px(SPOT, 40_000.0), sz(SPOT, 0.01), 0.4, fee_asset="BTC")
    assert pf.free("binance", "BTC") == pytest.approx(0.01 - 0.00001)
    assert pf.free("binance", "USDT") == pytest.approx(600.0)
    assert pf.position("s", "binance", "BTC-USDT").fees == pytest.approx(0.4)


def test_derivative_fills_move_only_margin_asset() -> None:
    pf = Portfolio({"binance_usdm": {"USDT": 1_000.0}})
    pf.on_fill("s", PERP, Side.BUY, px(PERP, 100.0), sz(PERP, 1.0), 0.04)
    assert pf.free("binance_usdm", "USDT") == pytest.approx(1_000.0 - 0.04)
    assert pf.free("binance_usdm", "BTC") == 0.0
    pf.on_fill("s", PERP, Side.SELL, px(PERP, 103.0), sz(PERP, 1.0), 0.0412)
    assert pf.free("binance_usdm", "USDT") == pytest.approx(1_000.0 - 0.04 + 3.0 - 0.0412)
    assert pf.balances() == {"binance_usdm": {"USDT": pytest.approx(1_000.0 - 0.0812 + 3.0)}}


def test_reserve_release_and_detail() -> None:
    pf = Portfolio({"binance": {"USDT": 100.0}})
    pf.reserve("binance", "USDT", 30.0)
    assert pf.free("binance", "USDT") == 70.0
    assert pf.held("binance", "USDT") == 30.0
    pf.release("binance", "USDT", 50.0)  # never more than is held
    assert pf.free("binance", "USDT") == 100.0
    assert pf.held("binance", "USDT") == 0.0
    pf.reserve("binance", "USDT", 10.0)
    assert pf.balance_detail() == {"binance": {"USDT": {"free": 90.0, "held": 10.0, "total": 100.0}}}


def test_bad_initial_balance_names_venue_and_asset() -> None:
    with pytest.raises(ValueError, match=r"binance\.USDT must be a finite number"):
        Portfolio({"binance": {"USDT": "lots"}})
    with pytest.raises(ValueError, match=r"balances\['binance'\] must map asset"):
        Portfolio({"binance": 5})


def test_order_hold_spot_and_derivatives() -> None:
    pf = Portfolio()
    asset, amount = pf.order_hold("s", SPOT, Side.BUY, 100.0, sz(SPOT, 2.0), fee_rate=0.001)
    assert asset == "USDT" and amount == pytest.approx(200.2)
    assert pf.order_hold("s", SPOT, Side.SELL, 100.0, sz(SPOT, 2.0)) == ("BTC", pytest.approx(2.0))
    asset, amount = pf.order_hold("s", PERP, Side.BUY, 100.0, sz(PERP, 2.0), leverage=4.0)
    assert asset == "USDT" and amount == pytest.approx(50.0)
    pf.on_fill("s", PERP, Side.BUY, px(PERP, 100.0), sz(PERP, 1.5), 0.0)
    # Selling 2 against a 1.5 long only opens 0.5 short.
    assert pf.order_hold("s", PERP, Side.SELL, 100.0, sz(PERP, 2.0))[1] == pytest.approx(50.0)
    assert pf.order_hold("s", PERP, Side.SELL, 100.0, sz(PERP, 1.0))[1] == 0.0
    # Inverse: 3 contracts of 100 USD at 50 000 need 0.006 BTC at leverage 1.
    assert pf.order_hold("s", INV, Side.BUY, 50_000.0, 3) == ("BTC", pytest.approx(300.0 / 50_000.0))


def test_available_margin_counts_positions_and_open_pnl() -> None:
    pf = Portfolio({"binance_usdm": {"USDT": 1_000.0}})
    pf.on_fill("s", PERP, Side.BUY, px(PERP, 100.0), sz(PERP, 2.0), 0.0)
    pf.mark(PERP.venue, PERP.symbol, 110.0)
    # 1000 + 20 open profit - 220 notional at leverage 2 / 2.
    assert pf.available_margin("binance_usdm", "USDT", leverage=2.0) == pytest.approx(1_000.0 + 20.0 - 110.0)


# -- inverse contracts ---------------------------------------------------------------------------


def test_inverse_realized_in_base_with_harmonic_entry() -> None:
    pf = Portfolio({"binance_coinm": {"BTC": 1.0}})
    pf.on_fill("s", INV, Side.BUY, px(INV, 50_000.0), 10, 0.0)
    pf.on_fill("s", INV, Side.BUY, px(INV, 40_000.0), 10, 0.0)
    pos = pf.position("s", INV.venue, INV.symbol)
    # 2000 USD bought for 1000/50000 + 1000/40000 BTC: entry is the harmonic mean.
    assert pos.avg_price == pytest.approx(2_000.0 / (1_000.0 / 50_000.0 + 1_000.0 / 40_000.0))
    realized_quote = pf.on_fill("s", INV, Side.SELL, px(INV, 60_000.0), 20, 0.0)
    expected_base = 1_000.0 * (1 / 50_000.0 - 1 / 60_000.0) + 1_000.0 * (1 / 40_000.0 - 1 / 60_000.0)
    assert pos.realized == pytest.approx(expected_base)
    assert realized_quote == pytest.approx(expected_base * 60_000.0)
    assert pos.qty == 0
    assert pf.free("binance_coinm", "BTC") == pytest.approx(1.0 + expected_base)
    assert pos.notional == 0.0


def test_inverse_short_unrealized_and_quote_views() -> None:
    pf = Portfolio()
    pf.on_fill("s", INV, Side.SELL, px(INV, 50_000.0), 5, 10.0)  # fee 10 USD
    pos = pf.position("s", INV.venue, INV.symbol)
    assert pos.fees == pytest.approx(10.0 / 50_000.0)
    assert pos.notional == pytest.approx(500.0)
    pf.mark(INV.venue, INV.symbol, 40_000.0)
    expected = -500.0 * (1 / 50_000.0 - 1 / 40_000.0)
    assert pos.unrealized == pytest.approx(expected)
    assert pos.unrealized_quote == pytest.approx(expected * 40_000.0)
    assert pos.fees_quote == pytest.approx(10.0 / 50_000.0 * 40_000.0)
    r, u, f = pf.strategy_pnl("s")
    assert (r, u, f) == (0.0, pytest.approx(expected * 40_000.0), pytest.approx(8.0))
    assert pos.settle_asset == "BTC"
    assert pos.to_dict()["unrealized_pnl"] == pytest.approx(expected * 40_000.0)


# -- daily P&L -----------------------------------------------------------------------------------


def test_daily_pnl_rolls_baseline_on_new_day() -> None:
    pf = Portfolio()
    day = 19_000
    pf.on_fill("s", PERP, Side.BUY, px(PERP, 100.0), sz(PERP, 1.0), 1.0)
    pf.mark(PERP.venue, PERP.symbol, 95.0)
    assert pf.daily_pnl("s", day) == pytest.approx(-5.0 - 1.0)
    assert pf.daily_pnl(None, day) == pytest.approx(-6.0)
    assert pf.daily_pnl("s", day + 1, roll=False) == 0.0
    assert pf.daily_pnl("s", day) == pytest.approx(-6.0)  # peeking did not move the baseline
    assert pf.daily_pnl("s", day + 1) == 0.0
    pf.mark(PERP.venue, PERP.symbol, 97.0)
    assert pf.daily_pnl("s", day + 1) == pytest.approx(2.0)
    pf.start_day(day + 2)
    pf.mark(PERP.venue, PERP.symbol, 96.0)
    assert pf.daily_pnl("s", day + 2) == pytest.approx(-1.0)


# -- properties ----------------------------------------------------------------------------------

fills_st = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(min_value=1, max_value=10_000_000),  # price ticks
        st.integers(min_value=1, max_value=500_000),  # size units
        st.floats(min_value=-5.0, max_value=50.0, allow_nan=False),  # fee, quote
    ),
    min_size=1,
    max_size=40,
)


def _signed(side: Side, qty: int) -> int:
    return qty if side is Side.BUY else -qty


@settings(max_examples=150, deadline=None)
@given(fills=fills_st, mark=st.integers(min_value=1, max_value=10_000_000))
def test_spot_equity_change_equals_pnl(fills: list[tuple[Side, int, int, float]], mark: int) -> None:
    pf = Portfolio({"binance": {"USDT": 1_000_000.0, "BTC": 3.0}})
    cash0 = pf.free("binance", "USDT")
    base0 = pf.free("binance", "BTC")
    mark_px = mark / 100
    equity0 = cash0 + base0 * mark_px
    realized = fees = 0.0
    gross = 0.0
    for side, p, q, fee in fills:
        realized += pf.on_fill("s", SPOT, side, p, q, fee)
        fees += fee
        gross += p / 100 * q / 1e5 + abs(fee)
    pf.mark("binance", "BTC-USDT", mark_px)
    pos = pf.position("s", "binance", "BTC-USDT")
    assert pos.qty == sum(_signed(s, q) for s, _, q, _ in fills)
    assert pos.realized == pytest.approx(realized, abs=1e-9 * gross + 1e-9)
    assert pos.fees == pytest.approx(fees, abs=1e-9 * gross + 1e-9)
    equity1 = pf.free("binance", "USDT") + pf.free("binance", "BTC") * mark_px
    tol = 1e-9 * (gross + abs(pos.qty_float) * mark_px) + 1e-7
    assert equity1 - equity0 == pytest.approx(pos.realized + pos.unrealized - pos.fees, abs=tol)


@settings(max_examples=150, deadline=None)
@given(fills=fills_st, mark=st.integers(min_value=1, max_value=10_000_000))
def test_perp_margin_plus_open_pnl_change_equals_pnl(fills: list[tuple[Side, int, int, float]], mark: int) -> None:
    pf = Portfolio({"binance_usdm": {"USDT": 50_000.0}})
    mark_px = mark / 10
    gross = 0.0
    for side, p, q, fee in fills:
        pf.on_fill("s", PERP, side, p, q, fee)
        gross += p / 10 * q / 1e3 + abs(fee)
    pf.mark(PERP.venue, PERP.symbol, mark_px)
    pos = pf.position("s", PERP.venue, PERP.symbol)
    assert pos.qty == sum(_signed(s, q) for s, _, q, _ in fills)
    equity_change = pf.free("binance_usdm", "USDT") + pos.unrealized - 50_000.0
    r, u, f = pf.strategy_pnl("s")
    tol = 1e-9 * (gross + abs(pos.qty_float) * mark_px) + 1e-7
    assert equity_change == pytest.approx(r + u - f, abs=tol)


@settings(max_examples=150, deadline=None)
@given(fills=fills_st)
def test_flat_after_offsetting_fill_matches_hand_formula(fills: list[tuple[Side, int, int, float]]) -> None:
    pf = Portfolio()
    net = sum(_signed(s, q) for s, _, q, _ in fills)
    close_px = fills[-1][1]
    if net:
        fills = [*fills, (Side.SELL if net > 0 else Side.BUY, close_px, abs(net), 0.0)]
    for side, p, q, fee in fills:
        pf.on_fill("s", PERP, side, p, q, fee)
    pf.mark(PERP.venue, PERP.symbol, 12_345.6)
    pos = pf.position("s", PERP.venue, PERP.symbol)
    assert pos.qty == 0
    assert pos.unrealized == 0.0
    # Flat: realized is the cash flow of all fills, sells minus buys.
    cash_flow = sum(-_signed(s, q) / 1e3 * (p / 10) for s, p, q, _ in fills)
    gross = sum(q / 1e3 * p / 10 for _, p, q, _ in fills)
    assert pos.realized == pytest.approx(cash_flow, abs=1e-9 * gross + 1e-9)
    assert pos.fees == pytest.approx(sum(f for *_, f in fills), abs=1e-9 * len(fills) * 50)


@settings(max_examples=150, deadline=None)
@given(
    fills=st.lists(
        st.tuples(
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(min_value=100_000, max_value=1_500_000),  # 10 000.0 .. 150 000.0 USD
            st.integers(min_value=1, max_value=2_000),  # contracts
            st.floats(min_value=0.0, max_value=20.0, allow_nan=False),
        ),
        min_size=1,
        max_size=30,
    ),
    mark=st.integers(min_value=100_000, max_value=1_500_000),
    close=st.booleans(),
)
def test_inverse_equity_and_flat_formula(fills: list[tuple[Side, int, int, float]], mark: int, close: bool) -> None:
    pf = Portfolio({"binance_coinm": {"BTC": 10.0}})
    net = sum(_signed(s, q) for s, _, q, _ in fills)
    if close and net:
        fills = [*fills, (Side.SELL if net > 0 else Side.BUY, fills[-1][1], abs(net), 0.0)]
    for side, p, q, fee in fills:
        pf.on_fill("s", INV, side, p, q, fee)
    mark_px = mark / 10
    pf.mark(INV.venue, INV.symbol, mark_px)
    pos = pf.position("s", INV.venue, INV.symbol)
    assert pos.qty == sum(_signed(s, q) for s, _, q, _ in fills)
    gross_base = sum(q * 100.0 / (p / 10) for _, p, q, _ in fills) + 1.0
    equity_change = pf.free("binance_coinm", "BTC") + pos.unrealized - 10.0
    assert equity_change == pytest.approx(pos.realized + pos.unrealized - pos.fees, abs=1e-9 * gross_base)
    # In quote at the mark the identity holds too (the portfolio's aggregates).
    assert equity_change * mark_px == pytest.approx(pf.net_pnl("s"), abs=1e-9 * gross_base * mark_px)
    if pos.qty == 0:
        assert pos.unrealized == 0.0
        hand = sum(_signed(s, q) * 100.0 / (p / 10) for s, p, q, _ in fills)
        assert pos.realized == pytest.approx(hand, abs=1e-9 * gross_base)
