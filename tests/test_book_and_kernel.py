"""Order book arrays, the replay kernel's batching, and book faults raised as incidents."""

from __future__ import annotations

import pyarrow.parquet as pq

from engine.book import Book, BookSet
from engine.strategy import Strategy
from sim.queue import PROB, RISK_AVERSE, fill_from_trade, queue_after_level_change

from simkit import INST, MS, Rows, run


def test_levels_insert_update_delete_and_unknown_delete():
    b = Book(INST, BookSet(1, capacity=4))
    b.apply_snapshot([(1000, 5), (999, 3)], [(1001, 2)])
    b.apply_level(1, 998, 0)  # deleting a level we never had is legal
    b.apply_level(1, 1000, 0)
    b.apply_level(-1, 1002, 7)
    b.apply_level(-1, 1001, 4)
    b.refresh_top()
    assert b.levels(1) == [(999, 3)]
    assert b.levels(-1) == [(1001, 4), (1002, 7)]
    for k in range(20):  # grows past the initial capacity
        b.apply_level(1, 900 - k, 1)
    assert b.depth == (21, 2)
    assert b.levels(1, 2) == [(999, 3), (900, 1)]


class Watcher(Strategy):
    book_updates = "every"

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.seen = []

    def on_book(self, book) -> None:
        self.seen.append((book.ts_recv, book.best_bid_fixed, book.best_ask_fixed, book.levels(1, 5)))


def test_strategy_sees_whole_messages_only_and_snapshots_replace_the_book():
    rows = (
        Rows()
        .snapshot(0, [(1000, 5), (999, 3)], [(1001, 2)])
        .delta(1 * MS, [(1, 1000, 0), (1, 1000, 0), (-1, 1001, 0), (-1, 1003, 1)])
        .snapshot(2 * MS, [(990, 1)], [(995, 1)])
    )
    res = run(rows, Watcher)
    seen = res.engine.strategies["s1"].seen
    # three messages -> three callbacks; never a state between the rows of one message
    assert [s[:3] for s in seen] == [(0, 1000, 1001), (1 * MS, 999, 1003), (2 * MS, 990, 995)]
    assert seen[2][3] == [(990, 1)]  # the second snapshot replaced everything


def test_crossed_book_and_bad_levels_become_incidents_not_silent_state(tmp_path):
    rows = (
        Rows()
        .snapshot(0, [(1000, 5)], [(1001, 2)])
        .delta(1 * MS, [(1, 1002, 1)])  # bid above ask: crossed
        .delta(2 * MS, [(1, 1002, 0)])  # uncrossed again
        .delta(3 * MS, [(-1, -5, 1)])
    )  # non-positive price
    res = run(rows, Watcher, run_dir=tmp_path / "r")
    seen = res.engine.strategies["s1"].seen
    assert all(bid < ask for _, bid, ask, _ in seen)  # the crossed state was never shown
    inc = pq.read_table(tmp_path / "r" / "incidents.parquet").to_pylist()
    kinds = [i["kind"] for i in inc]
    assert kinds == ["crossed_book", "bad_level"]
    assert res.summary["crossed_books"] == 1
    assert "Crossed order book" in (tmp_path / "r" / "logs" / "market_data.log").read_text()


def test_queue_model_worked_examples_from_the_docs():
    # risk averse: join 10, level shrinks to 6 -> 6; trade 5 -> 1; trade 3 -> fill 2
    q = queue_after_level_change(RISK_AVERSE, 2.0, 10, 10, 6, 0)
    assert q == 6
    q, f = fill_from_trade(q, 5, 5)
    assert (q, f) == (1, 0)
    q, f = fill_from_trade(q, 5, 3)
    assert (q, f) == (0, 2)
    # prob n=2: front 10, back 10, level 20 -> 14 with no trades: queue 7
    assert queue_after_level_change(PROB, 2.0, 10, 20, 14, 0) == 7
    # prob n=1: front 12 back 4, 6 cancelled: advance 4.5 -> 4
    assert queue_after_level_change(PROB, 1.0, 12, 16, 10, 0) == 8
    # traded volume is not counted again as cancels
    assert queue_after_level_change(PROB, 2.0, 10, 20, 14, 6) == 10
    # growth behind us never moves us
    assert queue_after_level_change(PROB, 2.0, 10, 20, 30, 0) == 10


def test_reset_row_invalidates_the_book_until_the_next_snapshot(tmp_path):
    rows = (
        Rows()
        .snapshot(0, [(1000, 5)], [(1001, 2)])
        .delta(1 * MS, [(1, 1000, 6)])
        .snapshot(2 * MS, [(0, 0)], [])  # the importer's reset row
        .delta(3 * MS, [(1, 1000, 7)])  # must not be shown: no snapshot yet
        .snapshot(4 * MS, [(990, 1)], [(995, 1)])
    )
    res = run(rows, Watcher, run_dir=tmp_path / "r")
    seen = res.engine.strategies["s1"].seen
    assert [s[0] for s in seen] == [0, 1 * MS, 4 * MS]
    inc = pq.read_table(tmp_path / "r" / "incidents.parquet").to_pylist()
    assert [i["kind"] for i in inc] == ["sequence_gap"]
    assert "Market data sequence gap" in (tmp_path / "r" / "logs" / "market_data.log").read_text()
