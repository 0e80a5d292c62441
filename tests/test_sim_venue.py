"""Simulated venue: latency ordering, book walking, queue position, post-only, cancels."""

from __future__ import annotations

import pyarrow.parquet as pq

from engine.model import OrderStatus, OrderType, Side, TimeInForce
from engine.strategy import Strategy

from simkit import INST, MS, Rows, run


class Scripted(Strategy):
    """Sends the orders in params['orders'] on the first book it sees; keeps every update."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.sent = False
        self.orders = []
        self.updates = []
        self.fills = []

    def on_book(self, book) -> None:
        if self.sent:
            return
        self.sent = True
        for o in self.params["orders"]:
            side = Side.BUY if o["side"] == "buy" else Side.SELL
            if o.get("type") == "market":
                self.orders.append(self.submit_market(side, o["qty"]))
            else:
                self.orders.append(
                    self.submit_limit(
                        side,
                        o["price"],
                        o["qty"],
                        tif=TimeInForce(o.get("tif", "GTC")),
                        post_only=o.get("post_only", False),
                    )
                )
        if "cancel_at_ms" in self.params:
            self.set_timer("cancel", self.params["cancel_at_ms"] * MS, repeat=False)

    def on_timer(self, name, ts) -> None:
        for o in self.orders:
            self.cancel(o)

    def on_order_update(self, order) -> None:
        self.updates.append((self.now, order.client_order_id, order.status))

    def on_fill(self, fill) -> None:
        self.fills.append(fill)


def base_book(t0: int = 0) -> Rows:
    # bid 100.0 x 0.005, 99.9 x 0.010; ask 100.1 x 0.004, 100.2 x 0.006, 100.3 x 0.010
    return Rows().snapshot(t0, [(1000, 5), (999, 10)], [(1001, 4), (1002, 6), (1003, 10)])


def strat(res) -> Scripted:
    return res.engine.strategies["s1"]


def test_market_order_walks_the_book_with_partial_fills_across_levels():
    rows = base_book().delta(50 * MS, [(1, 1000, 6)])
    res = run(rows, Scripted, {"orders": [{"side": "buy", "type": "market", "qty": 0.008}]})
    s = strat(res)
    assert [(f.price, round(f.qty, 3), f.liquidity) for f in s.fills] == [
        (100.1, 0.004, "taker"),
        (100.2, 0.004, "taker"),
    ]
    assert s.orders[0].status is OrderStatus.FILLED
    # taker fee on each fill: notional * 0.0005
    assert abs(sum(f.fee for f in s.fills) - (100.1 * 0.004 + 100.2 * 0.004) * 0.0005) < 1e-12


def test_ioc_limit_takes_what_it_can_and_expires_the_rest():
    rows = base_book().delta(50 * MS, [(1, 1000, 6)])
    res = run(rows, Scripted, {"orders": [{"side": "buy", "price": 100.1, "qty": 0.010, "tif": "IOC"}]})
    s = strat(res)
    assert [round(f.qty, 3) for f in s.fills] == [0.004]
    assert s.orders[0].status is OrderStatus.EXPIRED


def test_order_cannot_fill_before_it_reaches_the_venue():
    # latency: feed 1 ms, order 2 ms, response 1 ms. Order sent at t=0 reaches the venue at venue time
    # 2 ms, i.e. after local rows up to 3 ms. A sell trade through our bid at local 2 ms happened at
    # venue time 1 ms: before arrival, so it must not fill us. The one at 10 ms must.
    rows = base_book().trade(2 * MS, -1, 990, 50).trade(10 * MS, -1, 990, 50)
    res = run(rows, Scripted, {"orders": [{"side": "buy", "price": 100.0, "qty": 0.002}]})
    s = strat(res)
    assert len(s.fills) == 1
    f = s.fills[0]
    assert f.ts_event == 10 * MS - 1 * MS  # venue time of the trade row (ts_recv - feed latency)
    assert f.ts_recv == 10 * MS  # venue time + response latency 1 ms
    acked = [t for t, _, st in s.updates if st is OrderStatus.OPEN]
    assert acked == [2 * MS + 1 * MS]  # sent at 0, arrives at venue time 2 ms, ack back 1 ms later


def test_resting_order_waits_for_its_queue_risk_averse():
    # we join the 0.005 bid at 100.0 (queue ahead 5 lots); trades at our price consume the queue first
    rows = (
        base_book()
        .trade(10 * MS, -1, 1000, 3)
        .delta(10 * MS, [(1, 1000, 2)])
        .trade(20 * MS, -1, 1000, 3)
        .delta(20 * MS, [(1, 1000, 1)])
    )
    res = run(rows, Scripted, {"orders": [{"side": "buy", "price": 100.0, "qty": 0.002}]}, queue_model="risk_averse")
    s = strat(res)
    # after 3: queue 2; after 3 more: queue -1 -> we fill 1 lot (0.001) and keep 1 resting
    assert [round(f.qty, 3) for f in s.fills] == [0.001]
    assert s.fills[0].liquidity == "maker" and s.fills[0].price == 100.0
    assert s.orders[0].status is OrderStatus.PARTIALLY_FILLED


def test_cancels_ahead_advance_the_queue_only_in_the_prob_model():
    # the level shrinks from 5 to 1 by cancels, then a 2-lot trade at our price
    rows = base_book().delta(10 * MS, [(1, 1000, 1)]).trade(20 * MS, -1, 1000, 2)
    order = {"orders": [{"side": "buy", "price": 100.0, "qty": 0.002}]}
    averse = strat(run(rows, Scripted, order, queue_model="risk_averse"))
    prob = strat(run(rows, Scripted, order, queue_model="prob"))
    # risk averse: queue clamps to the level (1), trade of 2 fills 1 lot
    assert [round(f.qty, 3) for f in averse.fills] == [0.001]
    # prob (power 2): front 5, back 0 -> all 4 cancelled lots were ahead: queue 1, same fill of 1
    assert [round(f.qty, 3) for f in prob.fills] == [0.001]


def test_prob_model_moves_us_up_when_cancels_are_behind_and_ahead():
    # join at queue 5, 5 more lots join behind (level 10), 6 cancelled: share 25/(25+25)=0.5 -> queue 2
    rows = base_book().delta(10 * MS, [(1, 1000, 10)]).delta(20 * MS, [(1, 1000, 4)]).trade(30 * MS, -1, 1000, 3)
    order = {"orders": [{"side": "buy", "price": 100.0, "qty": 0.002}]}
    prob = strat(run(rows, Scripted, order, queue_model="prob"))
    averse = strat(run(rows, Scripted, order, queue_model="risk_averse"))
    assert [round(f.qty, 3) for f in prob.fills] == [0.001]  # queue 2, trade 3 -> 1 lot
    assert averse.fills == []  # queue clamped to 4, trade 3 -> still 1 ahead


def test_book_moving_through_a_resting_order_fills_it():
    rows = base_book().delta(10 * MS, [(1, 1000, 0), (-1, 1001, 0), (-1, 1000, 7)])
    res = run(rows, Scripted, {"orders": [{"side": "buy", "price": 100.0, "qty": 0.003}]})
    s = strat(res)
    assert [(f.price, round(f.qty, 3)) for f in s.fills] == [(100.0, 0.003)]
    assert s.orders[0].status is OrderStatus.FILLED


def test_post_only_that_would_take_is_rejected_in_the_venues_own_words(tmp_path):
    rows = base_book().delta(50 * MS, [(1, 1000, 6)])
    order = {"orders": [{"side": "buy", "price": 100.1, "qty": 0.001, "post_only": True}]}
    # a venue with a profile (Binance's, from the registry) answers with its code and text ...
    res = run(rows, Scripted, order, venue="binance", run_dir=tmp_path / "b")
    o = strat(res).orders[0]
    assert o.status is OrderStatus.REJECTED
    assert o.reason == "Order would immediately match and take."
    rejected = [r for r in pq.read_table(tmp_path / "b" / "orders.parquet").to_pylist() if r["event"] == "rejected"]
    assert [(r["code"], r["reason"]) for r in rejected] == [(-2010, "Order would immediately match and take.")]
    # ... and a venue without one with the generic words: no Binance text leaks into other venues
    o = strat(run(rows, Scripted, order)).orders[0]
    assert o.status is OrderStatus.REJECTED and o.reason == "Post-only order would take liquidity"


def test_cancel_of_a_filled_order_is_rejected_as_unknown():
    rows = base_book().trade(10 * MS, -1, 990, 50).delta(40 * MS, [(1, 1000, 6)])
    res = run(rows, Scripted, {"orders": [{"side": "buy", "price": 100.0, "qty": 0.001}], "cancel_at_ms": 15})
    s = strat(res)
    assert s.orders[0].status is OrderStatus.FILLED
    assert not s.orders[0].cancel_requested  # cancel_rejected re-arms it
    assert res.engine.oms.orders[s.orders[0].client_order_id].status is OrderStatus.FILLED


def test_cancel_before_fill_cancels():
    rows = base_book().trade(30 * MS, -1, 990, 50)
    res = run(rows, Scripted, {"orders": [{"side": "buy", "price": 100.0, "qty": 0.001}], "cancel_at_ms": 5})
    s = strat(res)
    assert s.fills == []
    assert s.orders[0].status is OrderStatus.CANCELED


def test_instrument_rounding_is_never_more_aggressive():
    assert INST.round_price(100.07, Side.BUY) == 1000
    assert INST.round_price(100.01, Side.SELL) == 1001
    assert INST.round_size(0.0019) == 1
    assert OrderType.LIMIT.value == "LIMIT"
