"""Order manager: the state machine, client ids, rounding, local filter and risk rejections."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from engine.model import OrderStatus, Side, TimeInForce
from engine.oms import can_transition
from engine.strategy import Strategy

from simkit import INST, MS, Rows, run

S = OrderStatus


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        (S.PENDING, S.OPEN, True),
        (S.PENDING, S.REJECTED, True),
        (S.PENDING, S.FILLED, True),
        (S.OPEN, S.PARTIALLY_FILLED, True),
        (S.OPEN, S.CANCELED, True),
        (S.OPEN, S.EXPIRED, True),
        (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, True),
        (S.PARTIALLY_FILLED, S.FILLED, True),
        (S.OPEN, S.REJECTED, False),
        (S.OPEN, S.PENDING, False),
        (S.FILLED, S.CANCELED, False),
        (S.CANCELED, S.OPEN, False),
        (S.REJECTED, S.OPEN, False),
        (S.EXPIRED, S.FILLED, False),
    ],
)
def test_state_machine_table(old, new, ok):
    assert can_transition(old, new) is ok


class Lifecycle(Strategy):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.done = False
        self.history: dict[str, list[str]] = {}
        self.orders = []

    def on_book(self, book) -> None:
        if self.done:
            return
        self.done = True
        for spec in self.params["orders"]:
            side = Side.BUY if spec[0] == "buy" else Side.SELL
            self.orders.append(self.submit_limit(side, spec[1], spec[2]))
        if self.params.get("modify"):
            self.set_timer("modify", 5 * MS, repeat=False)

    def on_timer(self, name, ts) -> None:
        self.orders.append(self.modify(self.orders[0], price=self.params["modify"]))

    def on_order_update(self, order) -> None:
        self.history.setdefault(order.client_order_id, []).append(order.status.value)


def book() -> Rows:
    return Rows().snapshot(0, [(1000, 5)], [(1001, 5)])


def test_full_life_pending_open_partial_filled_and_the_log_records_each_stage(tmp_path):
    rows = book().trade(10 * MS, -1, 1000, 7).trade(20 * MS, -1, 1000, 2)
    res = run(rows, Lifecycle, {"orders": [("buy", 100.0, 0.004)]}, run_dir=tmp_path / "run")
    s = res.engine.strategies["s1"]
    cid = s.orders[0].client_order_id
    assert cid == "s1-1"
    assert s.history[cid] == ["open", "partially_filled", "filled"]
    orders = pq.read_table(tmp_path / "run" / "orders.parquet").to_pylist()
    events = [r["event"] for r in orders if r["client_order_id"] == cid]
    assert events == ["submit", "accepted", "partially_filled", "filled"]
    acc = next(r for r in orders if r["event"] == "accepted")
    assert acc["ts_decided"] == 0 and acc["ts_sent"] == 0 and acc["ts_acked"] == 3 * MS
    fills = pq.read_table(tmp_path / "run" / "fills.parquet").to_pylist()
    assert [round(f["qty"], 3) for f in fills] == [0.002, 0.002]
    assert fills[-1]["position_after"] == pytest.approx(0.004)
    risk = pq.read_table(tmp_path / "run" / "risk.parquet").to_pylist()
    assert risk and risk[0]["passed"] is True


def test_modify_on_a_venue_without_amend_is_cancel_replace():
    rows = book().delta(40 * MS, [(1, 1000, 6)])
    res = run(rows, Lifecycle, {"orders": [("buy", 100.0, 0.002)], "modify": 99.9})
    s = res.engine.strategies["s1"]
    first, replacement = s.orders
    assert replacement.replaces == first.client_order_id
    assert first.status is S.CANCELED
    assert replacement.status is S.OPEN and INST.price(replacement.price) == pytest.approx(99.9)


def test_lot_size_and_notional_filters_reject_locally_before_sending():
    rows = book().delta(40 * MS, [(1, 1000, 6)])
    res = run(rows, Lifecycle, {"orders": [("buy", 100.0, 0.0004)]})
    o = res.engine.strategies["s1"].orders[0]
    assert o.status is S.REJECTED and o.reason == "Filter failure: LOT_SIZE"
    assert res.engine.venues["testex"].orders_received == 0


def test_risk_rejection_carries_the_guides_wording(tmp_path):
    rows = book().delta(40 * MS, [(1, 1000, 6)])
    res = run(
        rows, Lifecycle, {"orders": [("buy", 100.0, 0.5)]}, run_dir=tmp_path / "r", risk={"max_order_size_usd": 10}
    )
    o = res.engine.strategies["s1"].orders[0]
    assert o.status is S.REJECTED
    assert o.reason == "Risk check failed: Order size too large"
    risk = pq.read_table(tmp_path / "r" / "risk.parquet").to_pylist()
    assert risk[0]["passed"] is False and risk[0]["check"] == "max_order_size"
    log = (tmp_path / "r" / "logs" / "risk.log").read_text()
    assert "Risk check failed: Order size too large" in log


def test_price_rounds_to_tick_in_the_safe_direction():
    rows = book().delta(40 * MS, [(1, 1000, 6)])
    res = run(rows, Lifecycle, {"orders": [("buy", 99.97, 0.001), ("sell", 100.13, 0.001)]})
    buy, sell = res.engine.strategies["s1"].orders
    assert buy.price == 999 and sell.price == 1002


class EveryTick(Strategy):
    """A buy at the touch, immediate-or-cancel, on every book change: half fill, half expire."""

    def on_start(self) -> None:
        self.sent: list = []
        self.held: list[int] = []

    def on_book(self, book) -> None:
        oms = self.engine.oms
        self.held.append(len(oms.orders))
        tif = TimeInForce.IOC
        self.sent.append(self.submit_limit(Side.BUY, 100.1 if len(self.sent) % 2 else 99.0, 0.001, tif=tif))


def _top_moves(n: int) -> Rows:
    rows = Rows().snapshot(0, [(1000, 5), (999, 5)], [(1001, 5)])
    for k in range(1, n + 1):
        rows.delta(k * 10_000 * MS, [(1, 1000, 0 if k % 2 else 5)])
    return rows


def test_closed_orders_leave_the_order_manager_after_the_retention_but_the_counts_stay():
    """A session of days must not hold every order it sent: an order closed longer ago than
    ``retain_closed_ns`` (engine clock) is dropped from ``oms.orders``; the summary's counts
    come from counters, and the strategy's own references stay valid."""
    rows = _top_moves(180)  # a new best bid every 10 s for half an hour
    res = run(rows, EveryTick, {})
    s = res.engine.strategies["s1"]
    oms = res.engine.oms
    assert len(s.sent) == 181
    # 600 s of closed orders at one every 10 s, plus the one just sent
    assert max(s.held) <= 62 and len(oms.orders) <= 62
    assert all(o.status.is_terminal for o in s.sent)
    assert res.summary["orders_submitted"] == 181
    assert res.summary["orders_filled"] == sum(1 for o in s.sent if o.filled > 0) > 0
    assert res.summary["orders_rejected"] == sum(1 for o in s.sent if o.status is S.REJECTED)
    assert sum(1 for o in s.sent if o.status is S.EXPIRED) > 0


def test_a_late_report_within_the_retention_still_finds_its_order():
    rows = _top_moves(30)
    res = run(rows, EveryTick, {})
    oms = res.engine.oms
    s = res.engine.strategies["s1"]
    # all 31 orders closed within the last 600 s of the run: none has left yet
    assert [oms.orders.get(o.client_order_id) for o in s.sent] == s.sent


class SpiedSubmit(Strategy):
    """Submits on the first update and replaces the order on the next one; notes, as each order
    reaches the venue, whether its rows are in the event log's buffers yet."""

    def on_start(self) -> None:
        self.seen: list[tuple[str, int, int]] = []  # (client id, orders rows, risk rows) at the venue
        self.orders: list = []
        venue = self.engine.venues["testex"]
        rec = self.engine.recorder
        for name in ("submit_order", "cancel_order"):
            real = getattr(venue, name)

            def spy(order, real=real):
                self.seen.append((order.client_order_id, len(rec._buf["orders"]), len(rec._buf["risk"])))
                real(order)

            setattr(venue, name, spy)

    def on_book(self, book) -> None:
        if not self.orders:
            self.orders.append(self.submit_limit(Side.BUY, 99.0, 0.002))
        elif len(self.orders) == 1:
            self.orders.append(self.modify(self.orders[0], price=98.9))


def test_an_orders_rows_are_built_after_it_reached_the_venue_and_numbered_before(tmp_path):
    """The order path sends first and records after (so a quote does not wait for its event-log
    rows), with the rows numbered where they happened: the update's market row, then the risk
    check, then the submit; for a replace, the cancel request before the new order's rows."""
    rows = book().delta(40 * MS, [(1, 999, 5), (1, 1000, 0)]).delta(80 * MS, [(1, 1000, 5)])
    res = run(rows, SpiedSubmit, {}, run_dir=tmp_path / "run")
    s = res.engine.strategies["s1"]
    first, second = s.orders
    # at the venue, none of that order's rows were in the buffers yet
    assert [cid for cid, _, _ in s.seen] == [first.client_order_id, first.client_order_id, second.client_order_id]
    assert s.seen[0][1:] == (0, 0)
    run_dir = tmp_path / "run"
    tables = {t: pq.read_table(run_dir / f"{t}.parquet").to_pylist() for t in ("market", "orders", "risk")}
    for t, table in tables.items():
        seqs = [r["seq"] for r in table]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), t
    seq = {(r["client_order_id"], r["event"]): r["seq"] for r in tables["orders"]}
    risk = {r["client_order_id"]: r["seq"] for r in tables["risk"]}
    market_before = [r["seq"] for r in tables["market"] if r["seq"] < risk[first.client_order_id]]
    assert market_before  # the update the order answered was numbered first
    assert market_before[-1] < risk[first.client_order_id] < seq[(first.client_order_id, "submit")]
    assert seq[(first.client_order_id, "cancel_request")] < risk[second.client_order_id]
    assert risk[second.client_order_id] < seq[(second.client_order_id, "submit")]
    every = sorted(r["seq"] for table in tables.values() for r in table)
    assert len(set(every)) == len(every)  # one numbering across the tables, no seq used twice


def test_orders_that_leave_memory_go_to_the_daemons_archive_file(tmp_path):
    """In the daemon an order leaves memory only into a file: the order manager hands every order
    it evicts to ``on_evict``, and ``EvictionArchive`` writes each one, once, as JSON."""
    import json

    from engine.daemon.archive import EvictionArchive

    archives: list[EvictionArchive] = []

    class Archived(EveryTick):
        def on_start(self) -> None:
            archive = EvictionArchive(self.engine.oms, tmp_path / "archive")
            self.engine.oms.on_evict = archive.add
            archives.append(archive)
            super().on_start()

    res = run(_top_moves(180), Archived, {})
    s = res.engine.strategies["s1"]
    oms = res.engine.oms
    (archive,) = archives
    evicted = [o.client_order_id for o in archive.pending]
    assert evicted and len(evicted) == len(set(evicted))
    assert sorted(evicted + list(oms.orders)) == sorted(o.client_order_id for o in s.sent)  # none lost
    assert archive.flush() == len(evicted) and archive.pending == []
    (path,) = (tmp_path / "archive").glob("orders_evicted_*.jsonl")
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["order_id"] for d in docs] == evicted
    assert all(d["status"] in ("filled", "expired", "cancelled", "rejected") for d in docs)
    assert archive.flush() == 0  # nothing twice
