"""Runs the quote-at-touch strategy in hftbacktest; the only module of ours that imports it.

Started by ``bench/fidelity_hftbacktest.py`` with the interpreter of ``.bench/hftbacktest-venv``
(``bench/setup_hftbacktest.sh``), never imported by the project. Input: an event array written by
``bench.fidelity_events.to_hbt_events``; output: one JSON object written to ``--out``
(hftbacktest's numba helpers print to stdout, so stdout is not ours).

The loop makes the decisions ``strategies/quote_at_touch.py`` documents:

* it acts when ``wait_next_feed`` returns at the local time of a depth message. ``wait_next_feed``
  returns after the first local feed event *and every other event up to that same timestamp*
  (``Backtest::goto`` in hftbacktest/src/backtest/mod.rs sets its target time to that event's
  timestamp), so all rows of one message are applied first; it returns on trades too, which the
  loop skips unless ``--act-on-trades``;
* per side, bid then ask: cancel every working order of ours (status new or partially filled,
  no request in flight) whose price is not the touch; an order whose new-order request is still
  in flight counts as the side's order and is left alone (hftbacktest would refuse the cancel);
  orders with a cancel in flight are ignored; with no order left on the side, submit one at the
  touch (GTX = post-only, or GTC).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import hftbacktest
import numpy as np
from hftbacktest import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    EXCH_EVENT,
    GTC,
    GTX,
    LIMIT,
    LOCAL_EVENT,
    SELL_EVENT,
    TRADE_EVENT,
    BacktestAsset,
    HashMapMarketDepthBacktest,
    ROIVectorMarketDepthBacktest,
    event_dtype,
)
from hftbacktest.data import correct_event_order, correct_local_timestamp, validate_event_order
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fidelity_events as fe  # numpy only: our side of the conversion

# hftbacktest's order status and side codes (hftbacktest/order.py)
_NEW = 1
_EXPIRED = 2
_FILLED = 3
_CANCELED = 4
_BUY = 1
_SELL = -1
_INVALID_MIN = np.iinfo(np.int64).min
_INVALID_MAX = np.iinfo(np.int64).max
# long enough never to end a wait between two feed events; goto() adds it to the current time
_TIMEOUT = 10**15

# counters in the result array
C_WAKES, C_SUBMITS, C_CANCELS, C_CANCEL_REFUSED, C_SUBMIT_REFUSED, C_EXPIRED, C_FILLED, C_CANCELED = range(8)


def check_layout() -> None:
    """Our converter writes hftbacktest's record by value: refuse to run if they differ."""
    if event_dtype != fe.EVENT_DTYPE:
        raise SystemExit(f"event dtype differs: ours {fe.EVENT_DTYPE}, hftbacktest {event_dtype}")
    theirs = {
        "DEPTH_EVENT": DEPTH_EVENT,
        "TRADE_EVENT": TRADE_EVENT,
        "DEPTH_CLEAR_EVENT": DEPTH_CLEAR_EVENT,
        "DEPTH_SNAPSHOT_EVENT": DEPTH_SNAPSHOT_EVENT,
        "EXCH_EVENT": EXCH_EVENT,
        "LOCAL_EVENT": LOCAL_EVENT,
        "BUY_EVENT": BUY_EVENT,
        "SELL_EVENT": SELL_EVENT,
    }
    for name, value in theirs.items():
        if getattr(fe, name) != value:
            raise SystemExit(f"{name}: ours {getattr(fe, name)}, hftbacktest {value}")


@njit
def _count_closed(orders, counts) -> None:
    values = orders.values()
    while values.has_next():
        o = values.get()
        if o.status == _EXPIRED:
            counts[C_EXPIRED] += 1
        elif o.status == _FILLED:
            counts[C_FILLED] += 1
        elif o.status == _CANCELED:
            counts[C_CANCELED] += 1


@njit
def _quote_side(hbt, side, touch, tick, qty, tif, next_id, counts, cancel_ids, trace) -> int:
    # decide over a snapshot of the orders first: a submit inserts into the map being iterated
    orders = hbt.orders(0)
    values = orders.values()
    active = False
    n_cancel = 0
    while values.has_next():
        o = values.get()
        if o.side != side:
            continue
        if o.status == _EXPIRED or o.status == _FILLED or o.status == _CANCELED:
            continue
        if o.req == _CANCELED:
            continue
        if o.req == _NEW or o.price_tick == touch:
            active = True
        elif n_cancel < cancel_ids.shape[0]:
            cancel_ids[n_cancel] = o.order_id
            n_cancel += 1
    for i in range(n_cancel):
        if hbt.cancel(0, cancel_ids[i], False) == 0:
            counts[C_CANCELS] += 1
        else:
            counts[C_CANCEL_REFUSED] += 1
    if not active:
        price = touch * tick
        if side == _BUY:
            rc = hbt.submit_buy_order(0, next_id, price, qty, tif, LIMIT, False)
        else:
            rc = hbt.submit_sell_order(0, next_id, price, qty, tif, LIMIT, False)
        next_id += 1
        if rc == 0:
            n = counts[C_SUBMITS]
            if n < trace.shape[0]:
                trace[n, 0] = hbt.current_timestamp
                trace[n, 1] = side
                trace[n, 2] = touch
            counts[C_SUBMITS] += 1
        else:
            counts[C_SUBMIT_REFUSED] += 1
    return next_id


@njit
def quote_at_touch(hbt, wake_ts, tick, qty, tif, counts, trace) -> int:
    """Runs to the end of the data; returns the last ``wait_next_feed`` code (1 = end of data).
    ``trace`` rows get (local time, side, price in ticks) of every submit."""
    cancel_ids = np.zeros(256, dtype=np.uint64)
    next_id = 1
    k = 0
    n_wake = wake_ts.shape[0]
    rc = 0
    while True:
        rc = hbt.wait_next_feed(False, _TIMEOUT)
        if rc == 1:
            break
        if rc != 2:
            if rc == 0:
                continue
            break  # an error code
        ts = hbt.current_timestamp
        while k < n_wake and wake_ts[k] < ts:
            k += 1
        if k >= n_wake or wake_ts[k] != ts:
            continue
        k += 1
        depth = hbt.depth(0)
        bid = depth.best_bid_tick
        ask = depth.best_ask_tick
        if bid == _INVALID_MIN or ask == _INVALID_MAX:
            continue
        counts[C_WAKES] += 1
        _count_closed(hbt.orders(0), counts)
        hbt.clear_inactive_orders(0)
        next_id = _quote_side(hbt, _BUY, bid, tick, qty, tif, next_id, counts, cancel_ids, trace)
        next_id = _quote_side(hbt, _SELL, ask, tick, qty, tif, next_id, counts, cancel_ids, trace)
    _count_closed(hbt.orders(0), counts)
    hbt.clear_inactive_orders(0)
    return rc


def prepare(events: np.ndarray, feed: str, data_offset: int | None) -> np.ndarray:
    """Constant latency arrays are final; "data" arrays get hftbacktest's own corrections."""
    if feed != "data":
        validate_event_order(events)
        return events
    before = events["local_ts"].copy()
    events = correct_local_timestamp(events, 0)
    shift = events["local_ts"] - before
    if data_offset is not None and not np.all(shift == -data_offset):
        raise SystemExit(
            f"hftbacktest shifted local time by {np.unique(shift)[:5]} ns; our data offset {data_offset} "
            f"means {-data_offset}"
        )
    events = correct_event_order(
        events,
        np.argsort(events["exch_ts"], kind="mergesort"),
        np.argsort(events["local_ts"], kind="mergesort"),
    )
    validate_event_order(events)
    return events


def wake_times(events: np.ndarray, act_on_trades: bool) -> np.ndarray:
    if not act_on_trades:
        return fe.depth_wake_times(events)
    ev = events["ev"]
    kind = ev & np.uint64(fe.KIND_MASK)
    local = (ev & np.uint64(LOCAL_EVENT)) != 0
    feed = (kind == DEPTH_EVENT) | (kind == DEPTH_SNAPSHOT_EVENT) | (kind == TRADE_EVENT)
    return np.unique(events["local_ts"][local & feed])


def build(events: np.ndarray, args: argparse.Namespace):
    asset = (
        BacktestAsset()
        .data(events)
        .linear_asset(1.0)
        .constant_order_latency(args.entry_ns, args.response_ns)
        .risk_adverse_queue_model()
        .trading_value_fee_model(args.maker_fee, args.taker_fee)
        .tick_size(args.tick)
        .lot_size(args.lot)
        .last_trades_capacity(0)
    )
    asset = asset.partial_fill_exchange() if args.exchange == "partial" else asset.no_partial_fill_exchange()
    if args.depth == "roivector":
        # the range of interest: every traded price, 1% either side (hftbacktest's examples keep
        # it narrow; a range over the snapshots' deepest levels makes its best-price scans long)
        kind = events["ev"] & np.uint64(fe.KIND_MASK)
        px = events["px"][(kind == TRADE_EVENT) & np.isfinite(events["px"]) & (events["px"] > 0)]
        lo, hi = (float(px.min()), float(px.max())) if len(px) else (args.tick, 1.0)
        asset = asset.roi_lb(max(lo * 0.99, args.tick)).roi_ub(hi * 1.01)
        return ROIVectorMarketDepthBacktest([asset])
    return HashMapMarketDepthBacktest([asset])


def run(events: np.ndarray, args: argparse.Namespace) -> tuple[dict, float, np.ndarray]:
    wake = wake_times(events, args.act_on_trades)
    tif = GTX if args.post_only else GTC
    counts = np.zeros(8, dtype=np.int64)
    trace = np.zeros((2 * len(wake) + 2, 3), dtype=np.int64)  # at most one submit a side per wake
    t0 = time.perf_counter()
    hbt = build(events, args)
    rc = quote_at_touch(hbt, wake, args.tick, args.qty, tif, counts, trace)
    wall = time.perf_counter() - t0
    sv = hbt.state_values(0)
    out = {
        "end_code": int(rc),
        "wakes": int(counts[C_WAKES]),
        "submits": int(counts[C_SUBMITS]),
        "submit_refused": int(counts[C_SUBMIT_REFUSED]),
        "cancels": int(counts[C_CANCELS]),
        "cancel_refused": int(counts[C_CANCEL_REFUSED]),
        "rejects": int(counts[C_EXPIRED]),  # post-only orders that would have taken: expired
        "filled_orders": int(counts[C_FILLED]),
        "cancel_confirmed": int(counts[C_CANCELED]),
        "fills": int(sv.num_trades),
        "filled_qty": float(sv.trading_volume),
        "position": float(hbt.position(0)),
    }
    hbt.close()
    return out, wall, trace[: counts[C_SUBMITS]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", required=True, type=Path, help=".npy written by fidelity_events.to_hbt_events")
    ap.add_argument("--feed", required=True, help="constant feed latency in ns, or 'data'")
    ap.add_argument("--data-offset", type=int, default=None, help="our engine's data offset, checked")
    ap.add_argument("--entry-ns", type=int, default=100_000)
    ap.add_argument("--response-ns", type=int, default=100_000)
    ap.add_argument("--tick", type=float, default=0.1)
    ap.add_argument("--lot", type=float, default=0.001)
    ap.add_argument("--qty", type=float, default=0.001)
    ap.add_argument("--maker-fee", type=float, default=0.0002)
    ap.add_argument("--taker-fee", type=float, default=0.0005)
    ap.add_argument("--gtc", dest="post_only", action="store_false", help="GTC instead of post-only (GTX)")
    ap.add_argument("--exchange", choices=("nopartial", "partial"), default="nopartial")
    ap.add_argument("--act-on-trades", action="store_true")
    ap.add_argument(
        "--depth", choices=("hashmap", "roivector"), default="hashmap", help="hftbacktest's depth structure"
    )
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--trace", type=Path, help="write every submit's (local time, side, price tick) here (.npy)")
    args = ap.parse_args(argv)

    check_layout()
    events = np.load(args.events)
    if events.dtype != event_dtype:
        raise SystemExit(f"{args.events}: dtype {events.dtype} is not hftbacktest's event dtype")
    # .npy does not keep numpy's aligned-struct flag, and numba types the two records apart
    events = events.view(event_dtype)
    t0 = time.perf_counter()
    events = np.ascontiguousarray(prepare(events, args.feed, args.data_offset))
    prep_s = time.perf_counter() - t0
    # compile the loop on the first rows so the timed run measures the backtest, not numba
    t0 = time.perf_counter()
    run(events[: min(len(events), 5000)].copy(), args)
    compile_s = time.perf_counter() - t0
    result, wall, trace = run(events, args)
    if args.trace is not None:
        np.save(args.trace, trace)
    result.update(
        {
            "engine": f"hftbacktest {hftbacktest.__version__}",
            "events": len(events),
            "wall_s": wall,
            "prepare_s": prep_s,
            "compile_s": compile_s,
        }
    )
    try:
        import resource

        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:
        pass
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
