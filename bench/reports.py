"""Benchmark: post-mortem of a synthetic event log with 1,000,000 fills (target <= 5 s).

``python -m bench.reports [--fills N] [--dir DIR [--reuse]] [--repeat R]`` builds the log
(vectorised numpy + pyarrow, not timed), then times ``reports.postmortem.post_mortem`` end to end
(DuckDB queries, plots, HTML/Markdown/JSON; modules already imported) R times and the latency
report once, and prints the seconds.

The synthetic run is a market maker on three books (two venues) over 24 h: random-walk mids
(volatility rising in the last quarter), quotes at the touch, round trips that open and close with
exponential holding times, some taker closes, cancels and rejections, positions rows at every fill
and once a second per book, and simulated latencies at every stage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numba import njit

from engine.eventlog_schema import MANIFEST, TABLES

T0 = 1_714_521_600_000_000_000  # 2024-05-01T00:00:00Z
DAY = 86_400_000_000_000
STRATEGY = "mm_bench"

# venue, symbol, first mid, tick, share of fills, lot
BOOKS = (
    ("binance", "BTC-USDT", 60_000.0, 0.1, 0.5, 0.001),
    ("binance", "ETH-USDT", 3_000.0, 0.01, 0.3, 0.01),
    ("coinbase", "BTC-USD", 60_010.0, 0.01, 0.2, 0.001),
)


@njit(cache=True)
def _ledger(kind, sgn, qty, price, fee, mark):  # type: ignore[no-untyped-def]
    """Average-cost ledger of one book: rows in time order, kind 0 = fill, 1 = mark."""
    n = kind.shape[0]
    pos = np.zeros(n)
    avg = np.zeros(n)
    realized = np.zeros(n)
    unreal = np.zeros(n)
    fees = np.zeros(n)
    dreal = np.zeros(n)
    p = 0.0
    a = 0.0
    r = 0.0
    f = 0.0
    for i in range(n):
        if kind[i] == 0:
            q = sgn[i] * qty[i]
            px = price[i]
            f += fee[i]
            if p == 0.0 or (p > 0) == (q > 0):
                a = (a * abs(p) + px * abs(q)) / (abs(p) + abs(q))
                p += q
            else:
                closed = min(abs(q), abs(p))
                gain = closed * (px - a) * (1.0 if p > 0 else -1.0)
                r += gain
                dreal[i] = gain
                rest = abs(q) - closed
                p += q
                if abs(p) < 1e-12:
                    p = 0.0
                    a = 0.0
                elif rest > 0:
                    a = px
        pos[i] = p
        avg[i] = a
        realized[i] = r
        fees[i] = f
        unreal[i] = p * (mark[i] - a) if p != 0.0 else 0.0
    return pos, avg, realized, unreal, fees, dreal


def _strings(values: list[str], idx: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values, type=pa.string()), pa.array(idx))


def _const(value: str, n: int) -> pa.Array:
    return _strings([value], np.zeros(n, dtype=np.int64))


def _ids(prefix: str, ids: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(pa.array(ids), pa.string()), "")


def _table(name: str, cols: dict[str, object]) -> pa.Table:
    schema = TABLES[name]
    arrays = []
    for f in schema:
        v = cols[f.name]
        arrays.append(v if isinstance(v, pa.Array) else pa.array(v, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def build_synthetic_log(run_dir: str | Path, n_fills: int = 1_000_000, seed: int = 7) -> dict[str, int]:
    """Write a realistic market-maker event log with ``n_fills`` fills; return the row count per table."""
    rng = np.random.default_rng(seed)
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_book = []
    for b, (venue, symbol, mid0, tick, share, lot) in enumerate(BOOKS):
        n_rt = max(1, int(n_fills * share) // 2)
        n_mkt = max(100, int(n_fills * share * 2))
        # Market: random-walk mid, volatility x2.5 in the last quarter of the day.
        mts = T0 + np.sort(rng.integers(0, DAY, n_mkt))
        vol = np.where(mts - T0 > 0.75 * DAY, 2.5, 1.0) * 0.02 / np.sqrt(n_mkt)
        mid = mid0 * np.exp(np.cumsum(rng.normal(0, 1, n_mkt) * vol))
        half = tick * rng.integers(1, 4, n_mkt) / 2
        bid = np.round((mid - half) / tick) * tick
        ask = np.maximum(np.round((mid + half) / tick) * tick, bid + tick)
        mid = (bid + ask) / 2
        feed = rng.lognormal(np.log(45_000 if venue == "binance" else 80_000), 0.5, n_mkt).astype(np.int64)
        # Round trips: open at the touch, close after an exponential holding time (10% close as taker).
        t_open = T0 + rng.integers(0, DAY - 120_000_000_000, n_rt)
        t_close = t_open + rng.exponential(20e9, n_rt).astype(np.int64) + 1_000_000
        opens_buy = rng.random(n_rt) < 0.5
        qty_rt = lot * rng.integers(1, 20, n_rt)
        taker_close = rng.random(n_rt) < 0.1
        ts = np.concatenate([t_open, t_close])
        sgn = np.concatenate([np.where(opens_buy, 1, -1), np.where(opens_buy, -1, 1)])
        qty = np.concatenate([qty_rt, qty_rt])
        taker = np.concatenate([np.zeros(n_rt, dtype=bool), taker_close])
        order = np.argsort(ts, kind="stable")
        ts, sgn, qty, taker = ts[order], sgn[order], qty[order], taker[order]
        i = np.maximum(np.searchsorted(mts, ts, side="right") - 1, 0)
        # A maker buy rests on the bid, a taker buy lifts the ask.
        price = np.where((sgn > 0) != taker, bid[i], ask[i])
        notional = price * qty
        fee = notional * np.where(taker, 4e-4, 1e-4)
        j = np.maximum(np.searchsorted(mts, ts - 2_000_000, side="right") - 1, 0)  # decision ~2 ms earlier
        # Positions: every fill plus a mark each second.
        marks = T0 + np.arange(1, DAY // 1_000_000_000) * 1_000_000_000
        mi = np.maximum(np.searchsorted(mts, marks, side="right") - 1, 0)
        lts = np.concatenate([ts, marks])
        lkind = np.concatenate([np.zeros(ts.size, np.int64), np.ones(marks.size, np.int64)])
        lorder = np.lexsort((lkind, lts))
        lmark = np.concatenate([mid[i], mid[mi]])[lorder]
        pos, _avg, real, unreal, fees, dreal = _ledger(
            lkind[lorder],
            np.concatenate([sgn, np.zeros(marks.size, np.int64)])[lorder].astype(np.float64),
            np.concatenate([qty, np.zeros(marks.size)])[lorder],
            np.concatenate([price, np.zeros(marks.size)])[lorder],
            np.concatenate([fee, np.zeros(marks.size)])[lorder],
            lmark,
        )
        is_fill = lkind[lorder] == 0
        per_book.append(dict(
            b=b, venue=venue, symbol=symbol, tick=tick, mts=mts, bid=bid, ask=ask, mid=mid, feed=feed,
            ts=ts, sgn=sgn, qty=qty, taker=taker, price=price, notional=notional, fee=fee, mid_fill=mid[i],
            mid_dec=mid[j], lts=lts[lorder], lkind=lkind[lorder], pos=pos, real=real, unreal=unreal, fees=fees,
            lmark=lmark, fill_pos=pos[is_fill], fill_real=dreal[is_fill],
        ))  # fmt: skip

    def cat(key: str) -> np.ndarray:
        return np.concatenate([d[key] for d in per_book])

    def book_idx(key: str) -> np.ndarray:
        return np.concatenate([np.full(d[key].size, d["b"]) for d in per_book])

    venues = [b[0] for b in BOOKS]
    symbols = [b[1] for b in BOOKS]
    # --- fills and their orders -------------------------------------------------------------------
    f_ts = cat("ts")
    f_b = book_idx("ts")
    nf = f_ts.size
    f_sgn = cat("sgn")
    f_taker = cat("taker")
    f_price = cat("price")
    rest = np.where(f_taker, 0, rng.exponential(3e9, nf).astype(np.int64))
    ack_lat = rng.lognormal(np.log(1.5e6), 0.3, nf).astype(np.int64)
    f_sent = f_ts - rest - ack_lat - 5_000_000
    f_dec = f_sent - rng.lognormal(np.log(12_000), 0.4, nf).astype(np.int64)
    f_tick = f_dec - rng.lognormal(np.log(25_000), 0.5, nf).astype(np.int64)
    f_ack = f_sent + ack_lat
    f_oid = np.arange(nf)
    # Canceled and rejected orders.
    nc = int(nf * 0.6)
    c_b = rng.integers(0, len(BOOKS), nc)
    c_sent = T0 + rng.integers(0, DAY - 10_000_000_000, nc)
    c_dec = c_sent - rng.lognormal(np.log(12_000), 0.4, nc).astype(np.int64)
    c_tick = c_dec - rng.lognormal(np.log(25_000), 0.5, nc).astype(np.int64)
    c_ack = c_sent + rng.lognormal(np.log(1.5e6), 0.3, nc).astype(np.int64)
    c_creq = c_ack + rng.exponential(2e9, nc).astype(np.int64)
    c_done = c_creq + rng.lognormal(np.log(1.5e6), 0.3, nc).astype(np.int64)
    c_oid = nf + np.arange(nc)
    nr = max(1, nf // 100)
    r_b = rng.integers(0, len(BOOKS), nr)
    r_sent = T0 + np.sort(rng.integers(0, DAY, nr))
    r_done = r_sent + rng.lognormal(np.log(1.5e6), 0.3, nr).astype(np.int64)
    r_oid = nf + nc + np.arange(nr)
    r_reason = rng.integers(0, 2, nr)
    reasons = ["", "Post-only order would cross", "Risk check failed: Position limit exceeded"]

    o_event_names = ["submit", "accepted", "filled", "cancel_request", "canceled", "rejected"]
    ev = [
        (f_sent, 0, f_b, f_oid, f_sgn, 0), (f_ack, 1, f_b, f_oid, f_sgn, 0), (f_ts, 2, f_b, f_oid, f_sgn, 0),
        (c_sent, 0, c_b, c_oid, None, 0), (c_ack, 1, c_b, c_oid, None, 0), (c_creq, 3, c_b, c_oid, None, 0),
        (c_done, 4, c_b, c_oid, None, 0), (r_sent, 0, r_b, r_oid, None, 0), (r_done, 5, r_b, r_oid, None, 1),
    ]  # fmt: skip
    o_ts = np.concatenate([e[0] for e in ev])
    o_ev = np.concatenate([np.full(e[0].size, e[1]) for e in ev])
    o_b = np.concatenate([e[2] for e in ev])
    o_oid = np.concatenate([e[3] for e in ev])
    side_all = np.concatenate([f_sgn, np.where(rng.random(nc) < 0.5, 1, -1), np.where(rng.random(nr) < 0.5, 1, -1)])
    o_sgn = side_all[o_oid]
    tick_all = np.concatenate([f_tick, c_tick, r_sent - 40_000])
    dec_all = np.concatenate([f_dec, c_dec, r_sent - 12_000])
    sent_all = np.concatenate([f_sent, c_sent, r_sent])
    ack_all = np.concatenate([f_ack, c_ack, np.zeros(nr, np.int64)])
    reason_all = np.concatenate([np.zeros(nf + nc, np.int64), r_reason + 1])
    # --- positions ----------------------------------------------------------------------------------
    l_ts = cat("lts")
    l_b = book_idx("lts")
    nl = l_ts.size
    # --- market -------------------------------------------------------------------------------------
    m_ts = cat("mts")
    m_b = book_idx("mts")
    nm = m_ts.size

    # One seq across tables, in time order (market first on ties, then orders, fills, positions).
    all_ts = np.concatenate([m_ts, o_ts, f_ts, l_ts])
    prio = np.concatenate([np.zeros(nm), np.ones(o_ts.size), np.full(nf, 2), np.full(nl, 3)])
    seq_all = np.empty(all_ts.size, dtype=np.int64)
    seq_all[np.lexsort((prio, all_ts))] = np.arange(1, all_ts.size + 1)
    m_seq, o_seq, f_seq, l_seq = np.split(seq_all, np.cumsum([nm, o_ts.size, nf]))

    counts: dict[str, int] = {}

    def write(name: str, table: pa.Table, order_by: np.ndarray) -> None:
        table = table.take(pa.array(np.argsort(order_by, kind="stable")))
        pq.write_table(table, out / f"{name}.parquet", compression="zstd", row_group_size=65_536)
        counts[name] = table.num_rows

    zeros_f = np.zeros(nf, np.int64)
    write("market", _table("market", {
        "seq": m_seq, "ts": m_ts, "ts_event": m_ts - cat("feed"), "venue": _strings(venues, m_b),
        "symbol": _strings(symbols, m_b), "bid": cat("bid"), "ask": cat("ask"),
        "bid_size": np.ones(nm), "ask_size": np.ones(nm), "mid": cat("mid"), "data_seq": np.arange(nm),
        "feed_latency_ns": cat("feed"),
    }), m_seq)  # fmt: skip
    qty_f = cat("qty")
    write("fills", _table("fills", {
        "seq": f_seq, "ts": f_ts, "ts_event": f_ts - 1_000_000, "strategy_id": _const(STRATEGY, nf),
        "venue": _strings(venues, f_b), "symbol": _strings(symbols, f_b), "client_order_id": _ids("mm-", f_oid),
        "venue_order_id": _ids("v", f_oid), "trade_id": _ids("t", f_oid),
        "side": _strings(["sell", "buy"], (f_sgn > 0).astype(np.int64)), "price": f_price, "qty": qty_f,
        "notional": cat("notional"), "fee": cat("fee"), "fee_asset": _const("USDT", nf),
        "liquidity": _strings(["maker", "taker"], f_taker.astype(np.int64)), "order_price": f_price,
        "mid_at_decision": cat("mid_dec"), "mid_at_fill": cat("mid_fill"), "ts_tick": f_tick, "ts_decided": f_dec,
        "ts_sent": f_sent, "ts_acked": f_ack, "position_after": cat("fill_pos"), "realized_pnl": cat("fill_real"),
    }), f_seq)  # fmt: skip
    del zeros_f
    no = o_ts.size
    status = np.array(["pending", "open", "filled", "open", "canceled", "rejected"])
    write("orders", _table("orders", {
        "seq": o_seq, "ts": o_ts, "event": _strings(o_event_names, o_ev), "strategy_id": _const(STRATEGY, no),
        "venue": _strings(venues, o_b), "symbol": _strings(symbols, o_b), "client_order_id": _ids("mm-", o_oid),
        "venue_order_id": _ids("v", o_oid), "side": _strings(["sell", "buy"], (o_sgn > 0).astype(np.int64)),
        "order_type": _const("LIMIT", no), "tif": _const("GTX", no), "price": np.full(no, 1.0),
        "qty": np.ones(no), "filled_qty": (o_ev == 2).astype(np.float64), "leaves_qty": (o_ev != 2).astype(np.float64),
        "status": _strings(list(status), o_ev), "reason": _strings(reasons, reason_all[o_oid] * (o_ev == 5)),
        "code": np.where(o_ev == 5, -2010, 0), "ts_tick": tick_all[o_oid], "ts_decided": dec_all[o_oid],
        "ts_sent": sent_all[o_oid], "ts_acked": np.where(o_ev >= 1, ack_all[o_oid], 0),
        "ts_venue": np.where(o_ev >= 1, o_ts - 700_000, 0), "mid": np.full(no, np.nan), "post_only": np.ones(no, bool),
    }), o_seq)  # fmt: skip
    write("positions", _table("positions", {
        "seq": l_seq, "ts": l_ts, "strategy_id": _const(STRATEGY, nl), "venue": _strings(venues, l_b),
        "symbol": _strings(symbols, l_b), "position": cat("pos"), "avg_price": np.zeros(nl),
        "realized_pnl": cat("real"), "unrealized_pnl": cat("unreal"), "fees": cat("fees"), "mark_price": cat("lmark"),
        "reason": _strings(["fill", "mark"], cat("lkind")),
    }), l_seq)  # fmt: skip
    for name, schema in TABLES.items():
        if name not in counts:
            pq.write_table(schema.empty_table(), out / f"{name}.parquet", compression="zstd")
    manifest = {
        "run_id": out.name, "mode": "backtest", "latency_source": "simulated", "strategies": [STRATEGY],
        "data": {"venue": "synthetic", "symbols": symbols, "from_ns": T0, "to_ns": T0 + DAY},
        "summary": {"fills": nf},
    }  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.splitlines()[0])
    ap.add_argument("--fills", type=int, default=1_000_000, help="number of fills (default 1,000,000)")
    ap.add_argument("--dir", help="where to build the run (default: a temporary directory, removed after)")
    ap.add_argument("--reuse", action="store_true", help="with --dir: reuse a log built there before")
    ap.add_argument("--repeat", type=int, default=3, help="time the post-mortem this many times (default 3)")
    args = ap.parse_args(argv)
    from reports.latency import latency_report
    from reports.postmortem import post_mortem

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hft-bench-"))
    run_dir = base / "bench-run"
    try:
        if not (args.reuse and (run_dir / MANIFEST).exists()):
            if run_dir.exists():
                shutil.rmtree(run_dir)
            t = time.perf_counter()
            counts = build_synthetic_log(run_dir, args.fills)
            print(f"built synthetic log in {time.perf_counter() - t:.1f} s: "
                  + ", ".join(f"{k} {v:,}" for k, v in counts.items()), flush=True)  # fmt: skip
        times = []
        for _ in range(max(1, args.repeat)):
            t, c = time.perf_counter(), time.process_time()
            pm = post_mortem(run_dir)
            times.append(time.perf_counter() - t)
            print(f"post-mortem: {times[-1]:.2f} s wall, {time.process_time() - c:.2f} s CPU", flush=True)
        t = time.perf_counter()
        latency_report(run_dir)
        lat_s = time.perf_counter() - t
        print(pm.headline())
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"post-mortem of {pm.execution.fills:,} fills: best {min(times):.2f} s, median "
            f"{statistics.median(times):.2f} s over {len(times)} runs (target <= 5 s; {os.cpu_count()} CPUs, "
            f"load average {load})"
        )
        print(f"latency report: {lat_s:.2f} s")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    if args.dir:
        print(f"run kept at {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
