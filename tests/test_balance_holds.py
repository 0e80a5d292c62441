"""Balance holds: an open order holds what it could spend; the risk check sees only what is free.

Driven through the real engine (order manager, risk, portfolio); the venue is a stand-in that
takes requests, and its reports are fed in as a venue would send them.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import events as ev
from engine.clock import SimClock
from engine.engine import Engine
from engine.events import ExecReport
from engine.model import Instrument, OrderStatus, OrderType, Side, TimeInForce
from engine.portfolio import Portfolio
from engine.recorder import Recorder
from engine.risk import RiskEngine, RiskLimits

VENUE = "x"
SPOT = Instrument(
    VENUE, "BTC-USDT", "BTCUSDT", price_scale=2, size_scale=5, tick=1, lot=1, maker_fee=0.001, taker_fee=0.002
)
PERP = Instrument(
    VENUE,
    "ETH-USDT",
    "ETHUSDT",
    price_scale=2,
    size_scale=3,
    tick=1,
    lot=1,
    maker_fee=0.0002,
    taker_fee=0.0005,
    kind="perp",
)


class TakesEverything:
    name = VENUE
    supports_modify = False

    def __init__(self) -> None:
        self.sent: list[str] = []

    def submit_order(self, order) -> None:
        self.sent.append(order.client_order_id)

    def cancel_order(self, order) -> None:
        pass

    def modify_order(self, order, price, qty) -> None:
        pass


class NoTimers:
    def schedule(self, ts, fn, arg=None) -> None:
        pass


def make_engine(balances: dict[str, float], leverage: float = 1.0) -> Engine:
    pf = Portfolio({VENUE: balances})
    risk = RiskEngine(RiskLimits(leverage=leverage), pf)
    eng = Engine(
        SimClock(1), NoTimers(), {SPOT.key: SPOT, PERP.key: PERP}, pf, risk, Recorder(None), mark_interval_ns=0
    )
    eng.add_venue(TakesEverything())
    return eng


def report(kind: str, order, **kw) -> ExecReport:
    return ExecReport(kind, VENUE, order.symbol, order.client_order_id, 1, 1, **kw)


def buy(eng: Engine, price: float, qty: float, inst: Instrument = SPOT):
    return eng.oms.submit("s", VENUE, inst.symbol, Side.BUY, OrderType.LIMIT, price, qty, TimeInForce.GTC, True)


def test_the_second_resting_buy_no_longer_fits_in_what_the_first_left_free():
    # the case: 100 USDT, resting buys of 79.2 and 78.4 USDT notional
    eng = make_engine({"USDT": 100.0})
    first = buy(eng, 79200.0, 0.001)
    assert first.status is OrderStatus.PENDING
    pf = eng.portfolio
    assert math.isclose(pf.held(VENUE, "USDT"), 79.2 * 1.001)
    assert math.isclose(pf.free(VENUE, "USDT"), 100.0 - 79.2 * 1.001)
    second = buy(eng, 78400.0, 0.001)
    assert second.status is OrderStatus.REJECTED
    assert second.reason == "Risk check failed: Insufficient balance"
    # the first is cancelled: its hold comes back and the same order fits again
    eng.on_exec_report(report(ev.CANCELED, first))
    assert pf.held(VENUE, "USDT") == 0.0 and math.isclose(pf.free(VENUE, "USDT"), 100.0)
    assert buy(eng, 78400.0, 0.001).status is OrderStatus.PENDING


def test_a_fill_spends_the_hold_and_a_partial_fill_keeps_the_rest_held():
    eng = make_engine({"USDT": 1000.0})
    pf = eng.portfolio
    o = buy(eng, 50000.0, 0.01)  # 500 USDT + 0.5 maker fee held
    eng.on_exec_report(report(ev.ACCEPTED, o))
    eng.on_exec_report(report(ev.FILL, o, price=SPOT.price_to_fixed("50000"), qty=400, fee=0.2, fee_asset="USDT"))
    assert math.isclose(pf.held(VENUE, "USDT"), 500.5 * 0.6)
    # 1000 - 200 spent - 0.2 fee - 300.3 still held
    assert math.isclose(pf.free(VENUE, "USDT"), 1000.0 - 200.0 - 0.2 - 300.3)
    assert math.isclose(pf.free(VENUE, "BTC"), 0.004)
    eng.on_exec_report(report(ev.FILL, o, price=SPOT.price_to_fixed("49990"), qty=600, fee=0.3, fee_asset="USDT"))
    assert o.status is OrderStatus.FILLED and pf.held(VENUE, "USDT") == 0.0
    assert math.isclose(pf.free(VENUE, "USDT"), 1000.0 - 200.0 - 0.2 - 299.94 - 0.3)


def test_a_spot_sell_holds_the_base_and_a_reject_gives_it_back():
    eng = make_engine({"USDT": 0.0, "BTC": 0.01})
    o = eng.oms.submit("s", VENUE, "BTC-USDT", Side.SELL, OrderType.LIMIT, 60000.0, 0.008, TimeInForce.GTC, True)
    pf = eng.portfolio
    assert math.isclose(pf.held(VENUE, "BTC"), 0.008) and math.isclose(pf.free(VENUE, "BTC"), 0.002)
    again = eng.oms.submit("s", VENUE, "BTC-USDT", Side.SELL, OrderType.LIMIT, 60000.0, 0.003, TimeInForce.GTC, True)
    assert again.status is OrderStatus.REJECTED
    eng.on_exec_report(report(ev.REJECTED, o, reason="Order would immediately match and take.", code=-2010))
    assert pf.held(VENUE, "BTC") == 0.0 and math.isclose(pf.free(VENUE, "BTC"), 0.01)


def test_a_perp_order_holds_margin_and_one_that_reduces_the_position_holds_nothing():
    eng = make_engine({"USDT": 100.0}, leverage=10.0)
    pf = eng.portfolio
    o = buy(eng, 2000.0, 0.4, PERP)  # 800 notional at 10x: 80 margin + 0.16 maker fee
    assert math.isclose(pf.held(VENUE, "USDT"), 800 * (0.1 + 0.0002))
    assert buy(eng, 2000.0, 0.1, PERP).status is OrderStatus.REJECTED  # 20.04 more does not fit in 19.84
    eng.on_exec_report(report(ev.FILL, o, price=PERP.price_to_fixed("2000"), qty=400, fee=0.16, fee_asset="USDT"))
    assert pf.held(VENUE, "USDT") == 0.0
    closing = eng.oms.submit("s", VENUE, "ETH-USDT", Side.SELL, OrderType.LIMIT, 2001.0, 0.4, TimeInForce.GTC, True)
    assert closing.status is OrderStatus.PENDING and closing.held == 0.0


def test_an_amend_holds_what_the_order_needs_at_its_new_price_and_size():
    eng = make_engine({"USDT": 1000.0})
    venue = eng.venues[VENUE]
    venue.supports_modify = True
    pf = eng.portfolio
    o = buy(eng, 50000.0, 0.01)
    eng.on_exec_report(report(ev.ACCEPTED, o))
    assert eng.oms.modify(o, 40000.0, 0.005) is o  # amended in place, not cancelled and replaced
    eng.on_exec_report(report(ev.MODIFIED, o, price=SPOT.price_to_fixed("40000"), qty=500))
    assert math.isclose(pf.held(VENUE, "USDT"), 200.0 * 1.001)
    assert math.isclose(pf.free(VENUE, "USDT"), 1000.0 - 200.0 * 1.001)


# --- property: the engine's holds against a plain model -------------------------------------
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), st.integers(40000, 60000), st.integers(1, 40)),
        st.tuples(st.just("sell"), st.integers(40000, 60000), st.integers(1, 40)),
        st.tuples(st.just("fill"), st.integers(0, 30), st.integers(1, 100)),
        st.tuples(st.sampled_from(["cancel", "reject", "expire"]), st.integers(0, 30), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_holds_follow_a_plain_model_of_free_and_held(ops):
    start = {"USDT": 2000.0, "BTC": 0.02}
    eng = make_engine(dict(start))
    pf = eng.portfolio
    model_free = dict(start)
    model_hold: dict[str, tuple[str, float, int]] = {}  # cid -> (asset, held, leaves)
    orders = []
    fee = SPOT.maker_fee
    for op, a, b in ops:
        if op in ("buy", "sell"):
            side = Side.BUY if op == "buy" else Side.SELL
            price = a / 1.0
            qty = b * 0.0001
            asset, need = ("USDT", qty * price * (1 + fee)) if side is Side.BUY else ("BTC", qty)
            o = eng.oms.submit("s", VENUE, SPOT.symbol, side, OrderType.LIMIT, price, qty, TimeInForce.GTC, True)
            margin = model_free[asset] - need
            if abs(margin) > 1e-6:  # (a tie within float noise may go either way)
                assert (o.status is OrderStatus.PENDING) == (margin > 0), (op, model_free, need, o.reason)
            if o.status is OrderStatus.PENDING:
                model_free[asset] -= need
                model_hold[o.client_order_id] = (asset, need, o.qty)
                orders.append(o)
            continue
        live = [o for o in orders if o.client_order_id in model_hold]
        if not live:
            continue
        o = live[a % len(live)]
        asset, held, leaves = model_hold[o.client_order_id]
        if op == "fill":
            q = max(1, leaves * b // 100)
            part = held * q / leaves
            px = o.price / 10**SPOT.price_scale
            notional = q / 10**SPOT.size_scale * px
            eng.on_exec_report(report(ev.FILL, o, price=o.price, qty=q, fee=notional * fee, fee_asset="USDT"))
            model_free[asset] += part
            size = q / 10**SPOT.size_scale
            if o.side is Side.BUY:
                model_free["BTC"] += size
                model_free["USDT"] -= notional + notional * fee
            else:
                model_free["BTC"] -= size
                model_free["USDT"] += notional - notional * fee
            if q == leaves:
                del model_hold[o.client_order_id]
            else:
                model_hold[o.client_order_id] = (asset, held - part, leaves - q)
        else:
            kind = {"cancel": ev.CANCELED, "reject": ev.REJECTED, "expire": ev.EXPIRED}[op]
            if op == "reject" and o.status is not OrderStatus.PENDING:
                continue  # an open order cannot be rejected (the state machine refuses it)
            eng.on_exec_report(report(kind, o))
            model_free[asset] += held
            del model_hold[o.client_order_id]
        for cur in ("USDT", "BTC"):
            held_now = sum(h for a_, h, _ in model_hold.values() if a_ == cur)
            assert math.isclose(pf.held(VENUE, cur), held_now, rel_tol=1e-9, abs_tol=1e-9)
            assert math.isclose(pf.free(VENUE, cur), model_free[cur], rel_tol=1e-9, abs_tol=1e-9)
            assert pf.held(VENUE, cur) >= -1e-12
    # every order the engine still holds for is one the model says is open
    assert {o.client_order_id for o in eng.oms.all_open()} == set(model_hold)
