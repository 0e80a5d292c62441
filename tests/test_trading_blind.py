"""Trading blind is impossible: when a book a strategy trades on stops being valid, its resting
orders on it are pulled (or kept, by policy), it is told, and it sees no book until the book is
valid again. Here in a backtest, whose data can break (a reset row where the importer lost the
venue's chain, a crossed book); the live feeds report the same through ``on_book_invalid``."""

from __future__ import annotations

import pytest

from engine.model import OrderStatus, Side
from engine.strategy import Strategy

from simkit import MS, Rows, run


class Rester(Strategy):
    """Rests one bid far below the market on its first book; records what it is told."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.order = None
        self.events: list[tuple[int, str]] = []

    def on_book(self, book) -> None:
        self.events.append((self.now, "book"))
        if self.order is None:
            self.order = self.submit_limit(Side.BUY, 95.0, 0.002)

    def on_book_invalid(self, book, reason: str) -> None:
        self.events.append((self.now, f"invalid:{reason}"))

    def on_book_valid(self, book) -> None:
        self.events.append((self.now, "valid"))


def gap_rows() -> Rows:
    # the book at 0; the importer lost the chain at 10 ms (a reset row); a new snapshot at 30 ms
    return (
        Rows()
        .snapshot(0, [(1000, 5)], [(1001, 5)])
        .delta(5 * MS, [(1, 999, 3)])
        .snapshot(10 * MS, [(0, 0)], [])
        .delta(20 * MS, [(1, 998, 3)])
        .snapshot(30 * MS, [(1000, 4)], [(1002, 5)])
        .delta(40 * MS, [(1, 1000, 6)])
    )


def test_a_gap_pulls_the_strategys_resting_orders_and_it_sees_no_book_until_the_next_snapshot():
    res = run(gap_rows(), Rester, {})
    s = res.engine.strategies["s1"]
    assert s.order.status is OrderStatus.CANCELED
    kinds = [k for _, k in s.events]
    # (it wakes on top-of-book changes) told at the gap; no book while blind (the delta at 20 ms is
    # not shown); valid again at the snapshot at 30 ms
    assert kinds == ["book", "invalid:sequence_gap", "valid", "book"]
    invalid_at = next(t for t, k in s.events if k.startswith("invalid"))
    assert invalid_at == 10 * MS
    assert [t for t, k in s.events if k == "valid"] == [30 * MS]
    assert res.engine.invalid_books == {}


def test_keep_leaves_the_orders_resting_but_still_tells_the_strategy(tmp_path):
    class Keeper(Rester):
        invalid_book = "keep"

    res = run(gap_rows(), Keeper, {})
    s = res.engine.strategies["s1"]
    assert s.order.status is OrderStatus.OPEN
    assert "invalid:sequence_gap" in [k for _, k in s.events]


def test_a_crossed_book_in_the_data_is_blind_too():
    rows = Rows().snapshot(0, [(1000, 5)], [(1001, 5)]).delta(10 * MS, [(1, 1002, 1)]).delta(20 * MS, [(1, 1002, 0)])
    res = run(rows, Rester, {})
    s = res.engine.strategies["s1"]
    assert [k for _, k in s.events] == ["book", "invalid:crossed_book", "valid", "book"]
    assert s.order.status is OrderStatus.CANCELED
    assert res.engine.incident_counts["crossed_book"] == 1


@pytest.mark.parametrize("policy", ["cancel", "keep", "pause"])
def test_the_policy_is_a_strategy_config_field(tmp_path, policy):
    import json
    from pathlib import Path

    from engine.errors import ConfigError
    from engine.runners.spec import load_run_spec

    repo = Path(__file__).resolve().parents[1]
    cfg = json.loads((repo / "config/backtests/taker_sample.json").read_text())
    strategy = json.loads((repo / "config/strategies/taker.json").read_text())
    strategy["invalid_book"] = policy
    cfg["strategies"] = [strategy]
    cfg["data"]["root"] = str(repo / cfg["data"]["root"])
    cfg["instruments"] = str(repo / cfg["instruments"])
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    if policy == "pause":
        with pytest.raises(ConfigError, match=r"invalid_book: must be one of cancel, keep"):
            load_run_spec(path)
        return
    built = load_run_spec(path).strategies[0].build()
    assert built.invalid_book == policy


def test_a_new_order_on_a_book_that_is_not_valid_is_refused_whatever_the_policy():
    """A strategy told its book is invalid may still try to trade (from a timer, a trade print, a
    fill): the order manager refuses it, with the book's reason, and nothing reaches the venue."""

    class Eager(Rester):
        invalid_book = "keep"  # even a strategy that keeps its resting orders gets no new one

        def on_book_invalid(self, book, reason: str) -> None:
            super().on_book_invalid(book, reason)
            self.blind_order = self.submit_limit(Side.BUY, 96.0, 0.002)

    res = run(gap_rows(), Eager, {})
    s = res.engine.strategies["s1"]
    assert s.blind_order.status is OrderStatus.REJECTED
    assert s.blind_order.reason == "Trading paused: testex BTC-USDT order book not valid (sequence_gap)"
    assert s.order.status is OrderStatus.OPEN  # kept, by its policy
    assert res.engine.oms.submitted == 1  # the blind one never went out
