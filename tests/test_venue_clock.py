"""The simulated venue on its own clock (``sim/venue.py``, ``sim/venue_time.py``): it acts in venue
time on its own books, its answers reach us at the venue's action time + response latency, and
feed latency comes from a constant or from the data's venue timestamps."""

from __future__ import annotations

import pytest

from engine.model import OrderStatus, Side, TimeInForce
from engine.strategy import Strategy
from sim.venue_time import DataVenueTime, VenueRows

from simkit import MS, Rows, run

US = 1_000
FAST = {  # feed 4 ms, order entry and response 100 us each way
    "feed": {"type": "constant", "ms": 4},
    "order": {"type": "constant", "us": 100},
    "response": {"type": "constant", "us": 100},
}


class Once(Strategy):
    """On its first book sends ``params['order']``; keeps what it saw, when."""

    wants_trades = True

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.sent = False
        self.order = None
        self.updates: list[tuple[int, OrderStatus, float]] = []  # (now, status, best ask we saw then)
        self.fills: list[tuple[int, int]] = []  # (now, venue time)
        self.trades: list[int] = []

    def on_book(self, book) -> None:
        if self.sent:
            return
        self.sent = True
        o = self.params["order"]
        side = Side.BUY if o["side"] == "buy" else Side.SELL
        self.order = self.submit_limit(side, o["price"], o["qty"], tif=TimeInForce(o.get("tif", "GTC")))

    def on_order_update(self, order) -> None:
        self.updates.append((self.now, order.status, self.book().best_ask))

    def on_fill(self, fill) -> None:
        self.fills.append((fill.ts_recv, fill.ts_event))

    def on_trade(self, trade) -> None:
        self.trades.append(trade.ts_recv)


def book(t0: int = 0, event: int | None = None) -> Rows:
    return Rows().snapshot(t0, [(1000, 5)], [(1001, 4), (1002, 6)], event=event)


def strat(res) -> Once:
    return res.engine.strategies["s1"]


def test_the_answer_comes_back_after_one_round_trip_not_after_the_feed_latency():
    res = run(book(), Once, {"order": {"side": "buy", "price": 99.0, "qty": 0.001}}, latency=FAST)
    s = strat(res)
    # sent at 0, at the venue at 0.1 ms, acknowledged here at 0.2 ms: the feed's 4 ms plays no part
    assert [(t, st) for t, st, _ in s.updates] == [(200 * US, OrderStatus.OPEN)]


def test_the_venue_matches_on_market_data_we_have_not_seen_yet():
    # we see the ask at 100.1 at local 0 and send an IOC to take it. The ask was taken at the venue
    # at venue time -2 ms (we receive that at 2 ms): when our order arrives (0.1 ms) it is gone.
    rows = book().delta(2 * MS, [(-1, 1001, 0)])
    res = run(rows, Once, {"order": {"side": "buy", "price": 100.1, "qty": 0.002, "tif": "IOC"}}, latency=FAST)
    s = strat(res)
    assert s.fills == []
    accepted, expired = s.updates
    assert accepted[:2] == (200 * US, OrderStatus.OPEN) and expired[:2] == (200 * US, OrderStatus.EXPIRED)
    # when the answer reached us our own book still showed that ask: the venue was ahead of us
    assert expired[2] == pytest.approx(100.1)


def test_a_resting_order_fills_before_we_see_the_trade_that_filled_it():
    # a sell through our bid at venue time 6 ms; we receive the trade at 10 ms (feed 4 ms)
    rows = book().trade(10 * MS, -1, 999, 50)
    res = run(rows, Once, {"order": {"side": "buy", "price": 100.0, "qty": 0.002}}, latency=FAST)
    s = strat(res)
    assert s.fills == [(6 * MS + 100 * US, 6 * MS)]
    assert s.trades == [10 * MS]  # the trade itself reaches us 3.9 ms after our fill
    assert s.order.status is OrderStatus.FILLED


def test_an_order_joins_the_queue_of_the_venues_book_as_of_its_arrival():
    # the bid level grows from 5 to 8 lots at venue time -1 ms (we receive it at 3 ms): our order,
    # at the venue at 0.1 ms, joins behind 8. At venue time 5 ms 6 lots are cancelled (prob model,
    # nobody behind us: all were ahead): 2 ahead. A 3-lot sell at venue time 16 ms fills 1 of ours.
    # Joining behind the 5 lots we ourselves saw would have filled 2.
    rows = book().delta(3 * MS, [(1, 1000, 8)]).delta(9 * MS, [(1, 1000, 2)]).trade(20 * MS, -1, 1000, 3)
    res = run(rows, Once, {"order": {"side": "buy", "price": 100.0, "qty": 0.002}}, latency=FAST, queue_model="prob")
    s = strat(res)
    assert s.order.filled == 1
    assert s.fills == [(16 * MS + 100 * US, 16 * MS)]


def test_at_zero_feed_latency_one_book_serves_both_clocks_and_the_model_is_unchanged():
    # the worked example's arithmetic with feed 0: the venue acts at 0.1 ms on the book we saw
    lat = {**FAST, "feed": {"type": "constant", "ms": 0}}
    res = run(book(), Once, {"order": {"side": "buy", "price": 99.0, "qty": 0.001}}, latency=lat)
    node = res.node
    assert node is not None and node.sim is not None and node.sim.books is node.books
    assert [(t, st) for t, st, _ in strat(res).updates] == [(200 * US, OrderStatus.OPEN)]


# --- feed latency from the data --------------------------------------------------------------
SKEW = -1_270 * MS  # the capture clock runs 1.27 s behind the venue's, as the shipped captures do


def test_data_latency_measures_the_clock_offset_and_dates_every_row_at_the_venue():
    # latencies 0, 3 and 8 ms once the offset is taken out
    rows = (
        book(0, event=0 - SKEW)
        .delta(10 * MS, [(1, 999, 7)], event=10 * MS - 3 * MS - SKEW)
        .trade(30 * MS, -1, 999, 50, event=30 * MS - 8 * MS - SKEW)
    )
    lat = {**FAST, "feed": {"type": "data"}}
    res = run(rows, Once, {"order": {"side": "buy", "price": 100.0, "qty": 0.002}}, latency=lat)
    vt = res.node.sim.venue_time
    assert isinstance(vt, DataVenueTime)
    assert vt.offsets == {0: SKEW} and vt.max_latency_ns == 8 * MS
    s = strat(res)
    # the trade happened at venue time 22 ms: our fill is back at 22.1 ms, 7.9 ms before we see it
    assert s.fills == [(22 * MS + 100 * US, 22 * MS)]
    assert s.trades == [30 * MS]
    manifest_feed = res.manifest["sim"]["latency"]["feed"]
    assert manifest_feed["type"] == "data" and manifest_feed["clock_offset_ns"] == {"0": SKEW}


def test_data_latency_puts_rows_in_venue_order_but_keeps_book_messages_in_theirs():
    from simkit import MemSource

    # a trade received after a depth update happened before it at the venue: the venue sees the
    # trade first. A depth update whose venue time is older than the previous one's is kept after it.
    rows = (
        book(0, event=0)
        .delta(10 * MS, [(1, 999, 7)], event=9 * MS)
        .trade(12 * MS, -1, 1000, 1, event=5 * MS)
        .delta(13 * MS, [(1, 998, 7)], event=8 * MS)
    )
    clock = DataVenueTime()
    clock.calibrate({0: (0, 5 * MS)})  # offset 0: venue times are the rows' ts_event
    vr = VenueRows(clock)
    chunks = vr.push(MemSource(rows).cb) + vr.finish()
    v = [int(x) for c in chunks for x in c.ts]
    kinds = [int(x) for c in chunks for x in c.kind]
    assert kinds == [0, 0, 0, 2, 1, 1]  # snapshot, the trade, then both depth updates in their order
    assert v == [0, 0, 0, 5 * MS, 9 * MS, 9 * MS]  # the older update waits for the one before it


@pytest.mark.parametrize("feed", [{"type": "random", "median_ms": 2}, {"type": "data", "bogus": 1}])
def test_a_feed_latency_the_venue_cannot_date_rows_by_is_a_config_error(feed):
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sim\.latency\.feed: "):
        run(book(), Once, {"order": {"side": "buy", "price": 99.0, "qty": 0.001}}, latency={**FAST, "feed": feed})
