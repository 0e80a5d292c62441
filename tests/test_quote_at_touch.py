"""The quote-at-touch strategy through the real backtest runner, and the fidelity benchmark's
converter of our rows into hftbacktest events (pure numpy; hftbacktest itself is not needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.errors import ConfigError
from engine.model import OrderStatus, Side
from engine.runners.spec import StrategySpec, load_run_spec
from strategies.quote_at_touch import QuoteAtTouch

from simkit import MS, SYMBOL, VENUE, Rows, run

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "venue=binance-futures" / "symbol=BTC-USDT"


def _load_bench_module(name: str):
    # bench/ is a folder of scripts, not an installed package: load the file itself
    spec = importlib.util.spec_from_file_location(f"_test_{name}", REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fe = _load_bench_module("fidelity_events")


class Checked(QuoteAtTouch):
    """Records, after every decision, the live orders per side and whether a cancel was sent to
    an order the venue had not acknowledged yet."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.snapshots: list[tuple[int, int, int, list, list]] = []
        self.pending_cancelled = 0

    def cancel(self, order) -> None:
        if order.status is OrderStatus.PENDING:
            self.pending_cancelled += 1
        super().cancel(order)

    def on_book(self, book) -> None:
        super().on_book(book)
        live = self.open_orders()
        per_side = {
            side: [(o.price, o.status, o.cancel_requested) for o in live if o.side is side]
            for side in (Side.BUY, Side.SELL)
        }
        self.snapshots.append(
            (self.now, book.best_bid_fixed, book.best_ask_fixed, per_side[Side.BUY], per_side[Side.SELL])
        )


def _strategy(res) -> Checked:
    return res.engine.strategies["s1"]


def _active(orders: list) -> list:
    return [o for o in orders if not o[2]]


def test_one_order_at_each_touch_and_nothing_more_while_the_touch_stays():
    rows = Rows().snapshot(0, [(1000, 5), (999, 10)], [(1002, 4), (1003, 6)])
    for k in range(1, 6):  # size changes away from and at the touch, touch prices unchanged
        rows.delta(k * 10 * MS, [(1, 999, 10 + k), (-1, 1002, 4 + k)])
    s = _strategy(run(rows, Checked, {"trace": True}, latency_ms=(1, 1, 1)))
    assert s.wakes == 6
    assert (s.submits, s.cancels, s.fills, s.rejects) == (2, 0, 0, 0)
    # both submitted on the first book, at the touch, post-only, and resting there at the end
    assert s.submitted == [(0, int(Side.BUY), 1000), (0, int(Side.SELL), 1002)]
    live = {(o.side, o.price, o.status, o.post_only) for o in s.open_orders()}
    assert live == {(Side.BUY, 1000, OrderStatus.OPEN, True), (Side.SELL, 1002, OrderStatus.OPEN, True)}


def test_cancels_and_replaces_when_the_touch_moves():
    rows = Rows().snapshot(0, [(1000, 5)], [(1003, 4)])
    rows.delta(10 * MS, [(1, 1001, 3)])  # bid touch up one tick
    rows.delta(20 * MS, [(-1, 1002, 2)])  # ask touch down one tick
    rows.delta(30 * MS, [(1, 1001, 0)])  # bid touch back to 1000
    s = _strategy(run(rows, Checked, {"trace": True}, latency_ms=(1, 1, 1)))
    buy, sell = int(Side.BUY), int(Side.SELL)
    assert s.submitted == [
        (0, buy, 1000),
        (0, sell, 1003),
        (10 * MS, buy, 1001),
        (20 * MS, sell, 1002),
        (30 * MS, buy, 1000),
    ]
    assert s.cancels == 3
    live = sorted((int(o.side), o.price) for o in s.open_orders())
    assert live == [(sell, 1002), (buy, 1000)]
    # the replaced orders are gone: cancelled by the venue, not filled
    statuses = sorted(o.status.value for o in s.engine.oms.orders.values() if o not in s.open_orders())
    assert statuses == [OrderStatus.CANCELED.value] * 3


def test_never_two_active_orders_on_a_side_and_no_cancel_before_the_ack():
    # the bid touch moves every 0.5 ms while an order needs 1 ms to reach the venue and 1 ms back
    rows = Rows().snapshot(0, [(1000, 5)], [(1010, 5)])
    for k in range(1, 40):
        new, old = 1000 + k % 5, 1000 + (k - 1) % 5
        rows.delta(k * MS // 2, [(1, new, 5), (1, old, 0)])
    s = _strategy(run(rows, Checked, {"trace": True}, latency_ms=(0, 1, 1)))
    assert s.wakes == 40
    for _now, _bid, _ask, buys, sells in s.snapshots:
        assert len(_active(buys)) <= 1
        assert len(_active(sells)) <= 1
    # the rule about unacknowledged orders was exercised: the touch moved away from a bid still
    # on its way, and that bid was neither cancelled nor doubled
    assert any(st is OrderStatus.PENDING and px != bid for _, bid, _, buys, _ in s.snapshots for px, st, _ in buys)
    assert s.pending_cancelled == 0
    # every cancel was replaced at once (no fills, no rejects here), and at the touch of its book
    assert s.cancels > 0 and s.submits == s.cancels + 2
    touch_at = {now: bid for now, bid, _, _, _ in s.snapshots}
    assert all(p == touch_at[t] for t, side, p in s.submitted if side == int(Side.BUY))
    # the ask never moved: one ask order the whole time
    assert [p for _, side, p in s.submitted if side == int(Side.SELL)] == [1010]


def test_fill_counts_and_the_side_is_quoted_again_on_the_next_book():
    # our bid joins behind 0.001 at 100.0; a 0.002 sell at 100.0 trades through our place
    rows = Rows().snapshot(0, [(1000, 1)], [(1002, 4)])
    rows.trade(10 * MS, -1, 1000, 2)
    rows.delta(11 * MS, [(1, 1000, 0), (1, 999, 7)])  # the bid level is gone: touch 99.9
    rows.delta(20 * MS, [(-1, 1002, 5)])
    s = _strategy(run(rows, Checked, {"trace": True}, latency_ms=(1, 1, 1)))
    assert (s.fills, s.filled_qty, s.position()) == (1, pytest.approx(0.001), pytest.approx(0.001))
    buy = int(Side.BUY)
    assert [(t, p) for t, side, p in s.submitted if side == buy] == [(0, 1000), (11 * MS, 999)]
    assert s.cancels == 0  # the filled order left by itself


def test_post_only_reject_is_counted_and_the_side_quoted_again():
    # the ask drops onto our bid's price before the bid reaches the venue: it would take
    rows = Rows().snapshot(0, [(1000, 5), (999, 5)], [(1002, 4)])
    rows.delta(MS // 2, [(1, 1000, 0), (-1, 1000, 3)])
    rows.delta(20 * MS, [(-1, 1001, 1)])
    s = _strategy(run(rows, Checked, {"trace": True}, latency_ms=(0, 1, 1)))
    assert s.rejects == 1
    buy = int(Side.BUY)
    assert [(t, p) for t, side, p in s.submitted if side == buy] == [(0, 1000), (20 * MS, 999)]
    assert s.fills == 0


def test_act_on_trades_requotes_at_the_trade():
    rows = Rows().snapshot(0, [(1000, 1)], [(1002, 4)])
    rows.trade(10 * MS, -1, 1000, 2)  # fills our bid; the report is back at 11 ms
    rows.trade(15 * MS, 1, 1002, 1)  # a trade that does not touch us: the next chance to act
    rows.delta(30 * MS, [(-1, 1002, 5)])
    buy = int(Side.BUY)
    depth_only = _strategy(run(rows, Checked, {"trace": True}, latency_ms=(1, 1, 2)))
    on_trades = _strategy(run(rows, Checked, {"trace": True, "act_on_trades": True}, latency_ms=(1, 1, 2)))
    assert [t for t, side, _ in depth_only.submitted if side == buy] == [0, 30 * MS]
    assert [t for t, side, _ in on_trades.submitted if side == buy] == [0, 15 * MS]
    assert on_trades.wakes == depth_only.wakes + 2


@pytest.mark.parametrize("params", [{"order_size": 0}, {"order_size": "1"}, {"post_only": "yes"}, {"act_on_trades": 1}])
def test_bad_params_are_refused(params):
    with pytest.raises(ValueError):
        QuoteAtTouch("q", VENUE, [SYMBOL], params)


def test_shipped_configs_load():
    spec = load_run_spec(REPO / "config" / "backtests" / "quote_at_touch_sample.json")
    assert spec.sim.str("queue_model") == "risk_averse"
    strategy = spec.strategies[0].build()
    assert isinstance(strategy, QuoteAtTouch)
    # 0.002 BTC: above Binance's 100 USDT minimum notional at the sample's ~61,700 USDT (the
    # fidelity bench trades 0.001 with the filter off, as hftbacktest has none)
    assert (strategy.size, strategy.post_only, strategy.book_updates) == (0.002, True, "every")
    with pytest.raises(ConfigError):
        StrategySpec("q", QuoteAtTouch, VENUE, [SYMBOL], {"order_size": -1}, "<test>").build()


# --- the converter -----------------------------------------------------------------------------
def _rows() -> fe.Rows:
    # (ts_event, ts_recv, kind, side, price, size, batch_end), price scale 1, size scale 3
    data = [
        (900, 1000, 0, 1, 1000, 5, False),  # snapshot: two bids, one ask
        (900, 1000, 0, 1, 999, 7, False),
        (900, 1000, 0, -1, 1002, 4, True),
        (1950, 2000, 1, 1, 1001, 3, False),  # delta message of two rows
        (1950, 2000, 1, -1, 1002, 0, True),
        (2990, 3000, 2, -1, 1001, 2, True),  # a sell-initiated trade
        (3010, 3050, 3, 1, 1001, 3, False),  # bbo oracle rows: not book data
        (3010, 3050, 3, -1, 1003, 1, True),
        (3900, 4000, 0, 0, 0, 0, True),  # reset: the book is unknown
        (4300, 4500, 0, 1, 998, 2, False),  # the next snapshot
        (4300, 4500, 0, -1, 1004, 2, True),
        (4700, 4800, 2, 1, 1004, 1, True),  # a buy-initiated trade
    ]
    a = np.array(data, dtype=np.int64)
    return fe.Rows(
        ts_event=a[:, 0],
        ts_recv=a[:, 1],
        kind=a[:, 2].astype(np.int8),
        side=a[:, 3].astype(np.int8),
        price=a[:, 4],
        size=a[:, 5],
        batch_end=a[:, 6].astype(bool),
        price_scale=1,
        size_scale=3,
    )


def _kinds(ev: np.ndarray) -> list[int]:
    return [int(x) for x in ev["ev"] & np.uint64(fe.KIND_MASK)]


def _sides(ev: np.ndarray) -> list[str]:
    out = []
    for x in ev["ev"]:
        buy, sell = bool(x & np.uint64(fe.BUY_EVENT)), bool(x & np.uint64(fe.SELL_EVENT))
        out.append("b" if buy and not sell else "s" if sell and not buy else "-")
    return out


def test_converter_constant_latency_flags_timestamps_and_rows():
    rows = _rows()
    ev = fe.to_hbt_events(rows, 250)
    assert ev.dtype == fe.EVENT_DTYPE and ev.dtype.itemsize == 64
    # 12 rows - 2 bbo + one clear in front of each of the 2 snapshots (the reset is its own clear)
    assert len(ev) == 12
    d, t, c, s = fe.DEPTH_EVENT, fe.TRADE_EVENT, fe.DEPTH_CLEAR_EVENT, fe.DEPTH_SNAPSHOT_EVENT
    assert _kinds(ev) == [c, s, s, s, d, d, t, c, c, s, s, t]
    assert _sides(ev) == ["-", "b", "b", "s", "b", "s", "s", "-", "-", "b", "s", "b"]
    both = np.uint64(fe.EXCH_EVENT | fe.LOCAL_EVENT)
    assert np.all(ev["ev"] & both == both)
    assert ev["local_ts"].tolist() == [1000, 1000, 1000, 1000, 2000, 2000, 3000, 4000, 4500, 4500, 4500, 4800]
    assert np.array_equal(ev["exch_ts"], ev["local_ts"] - 250)
    assert ev["px"].tolist() == [0.0, 100.0, 99.9, 100.2, 100.1, 100.2, 100.1, 0.0, 0.0, 99.8, 100.4, 100.4]
    assert ev["qty"].tolist() == [0.0, 0.005, 0.007, 0.004, 0.003, 0.0, 0.002, 0.0, 0.0, 0.002, 0.002, 0.001]
    assert fe.depth_wake_times(ev).tolist() == [1000, 2000, 4500]
    assert np.array_equal(fe.to_hbt_events(rows, 0)["exch_ts"], ev["local_ts"])


def test_converter_data_latency_keeps_both_clocks_for_hftbacktests_correction():
    rows = _rows()
    ev = fe.to_hbt_events(rows, "data")
    assert len(ev) == 12
    assert np.all(ev["ev"] & np.uint64(fe.EXCH_EVENT | fe.LOCAL_EVENT) == 0)
    assert ev["exch_ts"].tolist() == [900, 900, 900, 900, 1950, 1950, 2990, 3900, 4300, 4300, 4300, 4700]
    assert ev["local_ts"].tolist() == [1000, 1000, 1000, 1000, 2000, 2000, 3000, 4000, 4500, 4500, 4500, 4800]
    offset = fe.data_feed_offset(rows.ts_event, rows.ts_recv)
    assert offset == 10  # the trade at 2990 -> 3000 is the fastest row (the bbo rows are 40)
    # our venue time ts_event + offset is at most the receive time, and equal for the fastest row
    lat = rows.ts_recv - (rows.ts_event + offset)
    assert lat.min() == 0 and lat.max() == 190


def test_converter_refuses_what_it_cannot_express():
    rows = _rows()
    with pytest.raises(ValueError):
        fe.to_hbt_events(rows, -1)
    with pytest.raises(ValueError):
        fe.to_hbt_events(rows, "1ms")
    rows.ts_event[3] = 0  # a row without venue time
    with pytest.raises(ValueError):
        fe.to_hbt_events(rows, "data")
    assert fe.data_feed_offset(rows.ts_event, rows.ts_recv) == 10  # rows without venue time are skipped


@pytest.mark.skipif(not SAMPLE.exists(), reason="shipped sample missing")
def test_converter_on_the_shipped_sample_keeps_every_row():
    rows = fe.load_rows(REPO / "data" / "samples", "binance-futures", "BTC-USDT")
    table = pq.read_table(next(SAMPLE.rglob("*.parquet")))
    kind = table["kind"].to_numpy()
    assert len(rows) == table.num_rows
    ev = fe.to_hbt_events(rows, 100_000)
    snapshots = int(((kind == 0) & ~np.concatenate(([False], kind[:-1] == 0))).sum())
    assert snapshots == 1
    assert len(ev) == table.num_rows - int((kind == 3).sum()) + snapshots
    kinds = ev["ev"] & np.uint64(fe.KIND_MASK)
    assert int((kinds == fe.TRADE_EVENT).sum()) == int((kind == 2).sum())
    assert int((kinds == fe.DEPTH_EVENT).sum()) == int((kind == 1).sum())
    assert int((kinds == fe.DEPTH_SNAPSHOT_EVENT).sum()) == int((kind == 0).sum())
    assert np.array_equal(ev["local_ts"] - ev["exch_ts"], np.full(len(ev), 100_000))
    ts_recv = table["ts_recv"].to_numpy()
    batch_end = table["batch_end"].to_numpy()
    messages = np.unique(ts_recv[(kind < 2) & batch_end])
    assert np.array_equal(fe.depth_wake_times(ev), messages)
    data = fe.to_hbt_events(rows, "data")
    offset = fe.data_feed_offset(rows.ts_event, rows.ts_recv)
    assert -1_300_000_000 < offset < -1_200_000_000  # the capture clock runs ~1.27 s behind Binance
    assert (data["local_ts"] - offset - data["exch_ts"]).min() == 0
