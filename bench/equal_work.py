"""Equal work against hftbacktest: the quote-at-touch strategy on the shipped sample, both engines.

    python -m bench.equal_work [--pairs 3] [--scales 1,2,4,8,16,32] [--orders 20000] [--no-hbt] [--json]

The workload (issue 17): ``strategies/quote_at_touch.py`` woken on every feed message (every depth
message and every trade: what a loop around hftbacktest's ``wait_next_feed`` does), one post-only
order at each touch, cancel and replace when it moves; 100 µs order and response latency, the
risk-averse queue, the event log on (written to Parquet, its close inside the timing). Minimum
notional is lifted on our side, since hftbacktest has none.

Printed, each engine in a fresh process per run, in alternating runs (the machine is shared):

* rows/s (median of ``--pairs``) and peak RSS: ours (the Python strategy), ours compiled
  (``engine.runners.compiled``), hftbacktest 2.4.4 with ROIVector depth and with HashMap depth
  (``.bench/hftbacktest-venv``, made by ``bench/setup_hftbacktest.sh``), and our ratio to each;
* the order path: a strategy's ``submit_limit`` through risk, the order manager and the simulated
  venue to its event-log row, and the same for ``cancel``, per call (P50/P99); then the venue's
  side (the order arriving, its acknowledgement through the engine to its row) per order;
* peak RSS of our Python path over 1x to 32x the sample (the data replayed back to back,
  ``bench.backtest``'s looping source): flat is the target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import REPO, interpreter

DEFAULT_CONFIG = REPO / "config" / "backtests" / "quote_at_touch_sample.json"
HBT_PYTHON = REPO / ".bench" / "hftbacktest-venv" / "bin" / "python"
WORKER = REPO / "bench" / "fidelity_hbt_worker.py"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _spec_and_registry(config: Path) -> tuple[Any, dict]:
    from engine.marketdata.instruments import load_instruments
    from engine.runners.spec import load_run_spec

    spec = load_run_spec(config)
    for st in spec.strategies:
        st.params["act_on_trades"] = True
    registry = {k: dataclasses.replace(v, min_notional=0.0) for k, v in load_instruments(spec.instruments_path).items()}
    return spec, registry


# --- children: one engine, one run, one JSON line ------------------------------------------------
def _child_ours(config: Path, loops: int) -> dict[str, Any]:
    from bench.backtest import _LoopedSource
    from engine.logs import setup_logging
    from engine.marketdata.reader import open_dataset
    from engine.runners import backtest as bt
    from sim.kernel import warm_up

    t0 = time.perf_counter()
    warm_up()
    import sim.kernel_state  # noqa: F401  (loads the replay's compiled code before the clock starts)

    load_s = time.perf_counter() - t0
    spec, registry = _spec_and_registry(config)

    def factory():
        return open_dataset(
            spec.data_root, venue=spec.venue, symbols=spec.symbols, start_ns=spec.start_ns, end_ns=spec.end_ns
        )

    walls = []
    # twice in this process, the second timed: as the hftbacktest worker warms its loop on the
    # first rows before its timed run; the first run (imports, first reads) is reported too
    for _ in range(1 if loops > 1 else 2):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            setup_logging(run_dir / "logs", buffered=True)
            source = _LoopedSource(factory, loops) if loops > 1 else None
            t = time.perf_counter()
            res = bt.run_backtest(spec, run_dir, source=source, instruments_registry=registry)
            walls.append(time.perf_counter() - t)
    wall = walls[-1]
    st = res.engine.strategies[spec.strategies[0].strategy_id]
    return {
        "engine": "ours (Python strategy)",
        "rows": res.stats.rows,
        "wall_s": wall,
        "first_run_wall_s": walls[0],
        "replay_s": res.stats.seconds,
        "rows_per_s": res.stats.rows / res.stats.seconds,
        "e2e_rows_per_s": res.stats.rows / wall,
        "callbacks": st.wakes,
        "orders": res.summary["orders_submitted"],
        "fills": res.summary["fills"],
        "peak_rss_mb": _peak_rss_mb(),
        "compiled_code_load_s": load_s,
    }


def _child_compiled(config: Path) -> dict[str, Any]:
    from engine.runners.compiled import run_compiled

    spec, registry = _spec_and_registry(config)
    walls = []
    for _ in range(2):  # the second timed, as for the others
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            summary = run_compiled(spec, Path(tmp) / "run", instruments_registry=registry)
            walls.append(time.perf_counter() - t)
    rows = int(summary["rows"])
    return {
        "engine": "ours (compiled strategy)",
        "rows": rows,
        "replay_s": summary["replay_s"],
        "wall_s": walls[-1],
        "first_run_wall_s": walls[0],
        "rows_per_s": rows / summary["replay_s"],
        "e2e_rows_per_s": rows / walls[-1],
        "callbacks": summary.get("wakes"),
        "orders": summary.get("orders_submitted"),
        "fills": summary.get("fills"),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _child_order_path(config: Path, n: int) -> dict[str, Any]:
    """Submit and cancel ``n`` post-only orders far from the touch on the sample's first valid
    book, timing each call, and the venue's side of each (arrival and answer) apart."""
    import numpy as np

    from engine.logs import setup_logging
    from engine.model import Side
    from engine.runners import backtest as bt
    from engine.strategy import Strategy

    spec, registry = _spec_and_registry(config)
    spec.end_ns = None
    timings: dict[str, list[int]] = {"submit": [], "cancel": [], "venue_submit": [], "venue_cancel": []}
    perf = time.perf_counter_ns

    class Probe(Strategy):
        book_updates = "top"

        def on_book(self, book) -> None:
            if timings["submit"] or not book.valid:
                return
            drive = node.replay.run_timeline_until
            clock = self.engine.clock
            inst = book.instrument
            px = inst.price(book.best_bid_fixed - 200 * inst.tick)
            for _ in range(n):
                t0 = perf()
                order = self.submit_limit(Side.BUY, px, 0.001, post_only=True)
                t1 = perf()
                drive(clock.now() + 1_000_000_000)
                t2 = perf()
                self.cancel(order)
                t3 = perf()
                drive(clock.now() + 1_000_000_000)
                t4 = perf()
                timings["submit"].append(t1 - t0)
                timings["venue_submit"].append(t2 - t1)
                timings["cancel"].append(t3 - t2)
                timings["venue_cancel"].append(t4 - t3)

    with tempfile.TemporaryDirectory() as tmp:
        setup_logging(Path(tmp) / "logs", buffered=True)
        probe = Probe("probe", spec.strategies[0].venue, spec.strategies[0].symbols)
        node = bt.open_backtest(spec, Path(tmp) / "run", instruments_registry=registry, strategies=[probe])
        bt.run_node(node)
    out: dict[str, Any] = {"orders": len(timings["submit"])}
    for k, v in timings.items():
        a = np.asarray(v[len(v) // 10 :], dtype=np.int64)  # the first tenth warms the path
        out[k] = {"p50_us": float(np.percentile(a, 50)) / 1e3, "p99_us": float(np.percentile(a, 99)) / 1e3}
    return out


def _child_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", required=True, choices=("ours", "compiled", "order_path"))
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--loops", type=int, default=1)
    ap.add_argument("--orders", type=int, default=20000)
    a = ap.parse_args(argv)
    if a.child == "ours":
        r = _child_ours(a.config, a.loops)
    elif a.child == "compiled":
        r = _child_compiled(a.config)
    else:
        r = _child_order_path(a.config, a.orders)
    print(json.dumps(r))
    return 0


# --- the parent ------------------------------------------------------------------------------
def _run_child(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.equal_work", *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _hbt_events(config: Path, tmp: Path) -> tuple[Path, list[str], int]:
    """hftbacktest's event file and worker arguments for the config (``bench.fidelity_hftbacktest``)."""
    import numpy as np

    from bench import fidelity_events as fe
    from bench.fidelity_hftbacktest import worker_args
    from engine.runners.spec import load_run_spec
    from sim import latency as lat

    spec = load_run_spec(config)
    feed = lat.from_config(spec.sim.data["latency"]["feed"], 0, 0)
    rows = fe.load_rows(spec.data_root, spec.venue, spec.symbols[0], spec.start_ns, spec.end_ns)
    events = fe.to_hbt_events(rows, feed.ns)
    path = tmp / "events.npy"
    np.save(path, events)
    size = float(spec.strategies[0].params.get("order_size", 0.001))
    return path, [f"--feed={feed.ns}", *worker_args(spec, True, size)], len(rows)


def _run_hbt(events: Path, args: list[str], depth: str, rows: int, tmp: Path) -> dict[str, Any]:
    out = tmp / f"hbt_{depth}.json"
    cmd = [str(HBT_PYTHON), str(WORKER), f"--events={events}", f"--out={out}", f"--depth={depth}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"hftbacktest worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    r = json.loads(out.read_text())
    return {
        "engine": f"hftbacktest, {'ROIVector' if depth == 'roivector' else 'HashMap'} depth",
        "rows": rows,
        "wall_s": r["wall_s"],
        "rows_per_s": rows / r["wall_s"],
        "e2e_rows_per_s": rows / r["wall_s"],
        "callbacks": r["wakes"],
        "orders": r["submits"],
        "fills": r["fills"],
        "peak_rss_mb": r.get("peak_rss_mb", 0.0),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--child" in argv:
        return _child_main(argv)
    ap = argparse.ArgumentParser(prog="python -m bench.equal_work", description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--pairs", type=int, default=3, help="alternating runs of each engine (median reported)")
    ap.add_argument("--scales", default="1,2,4,8,16,32", help="sample multiples for the memory curve ('' skips)")
    ap.add_argument("--orders", type=int, default=20000, help="orders the order-path probe sends")
    ap.add_argument("--no-hbt", action="store_true", help="skip hftbacktest")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.pairs < 1 or a.orders < 10:
        raise SystemExit("--pairs must be >= 1 and --orders >= 10")
    hbt = not a.no_hbt
    if hbt and not HBT_PYTHON.exists():
        raise SystemExit(f"{HBT_PYTHON} not found: run bench/setup_hftbacktest.sh first (or pass --no-hbt)")
    compiled = True
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if hbt:
            events, wargs, nrows = _hbt_events(a.config, tmp)
        for _ in range(a.pairs):
            batch = [("ours", lambda: _run_child("--child", "ours", "--config", str(a.config)))]
            if compiled:
                batch.append(("compiled", lambda: _run_child("--child", "compiled", "--config", str(a.config))))
            if hbt:
                batch.append(("roivector", lambda: _run_hbt(events, wargs, "roivector", nrows, tmp)))
                batch.append(("hashmap", lambda: _run_hbt(events, wargs, "hashmap", nrows, tmp)))
            for name, fn in batch:
                runs.setdefault(name, []).append(fn())
    summary = {k: _median_run(v) for k, v in runs.items()}
    order_path = _run_child("--child", "order_path", "--config", str(a.config), "--orders", str(a.orders))
    scales = [int(s) for s in a.scales.split(",") if s.strip()]
    memory = []
    for k in scales:
        r = _run_child("--child", "ours", "--config", str(a.config), "--loops", str(k))
        memory.append({"scale": k, "rows": r["rows"], "peak_rss_mb": r["peak_rss_mb"], "rows_per_s": r["rows_per_s"]})
    result = {"interpreter": interpreter(), "engines": summary, "order_path": order_path, "memory": memory}
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


def _median_run(rs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["rows_per_s"] for r in rs]
    mid = sorted(rs, key=lambda r: r["rows_per_s"])[len(rs) // 2]
    return {**mid, "rows_per_s_runs": rates, "rows_per_s": statistics.median(rates)}


def _print(r: dict[str, Any]) -> None:
    print(f"interpreter: {r['interpreter']}")
    eng = r["engines"]
    ref = {k: eng[k]["rows_per_s"] for k in ("roivector", "hashmap") if k in eng}
    print(
        "\n| engine | rows | callbacks | orders | fills | rows/s (median) | runs | peak RSS "
        "| vs ROIVector | vs HashMap |"
    )
    print("|---|--:|--:|--:|--:|--:|---|--:|--:|--:|")
    for e in eng.values():
        ratios = [f"{e['rows_per_s'] / ref[k]:.2f}x" if k in ref else "-" for k in ("roivector", "hashmap")]
        runs = ", ".join(f"{x / 1e6:.2f}" for x in e["rows_per_s_runs"])
        print(
            f"| {e['engine']} | {e['rows']:,} | {e.get('callbacks') or '-'} | {e.get('orders') or '-'} | "
            f"{e.get('fills') or '-'} | {e['rows_per_s'] / 1e6:.2f} M | {runs} | {e['peak_rss_mb']:.0f} MiB | "
            f"{ratios[0]} | {ratios[1]} |"
        )
    op = r["order_path"]
    print(f"\norder path, {op['orders']:,} orders (first tenth excluded), µs P50 / P99:")
    for k, label in (
        ("submit", "submit_limit -> risk -> OMS -> simulated venue -> event-log row"),
        ("cancel", "cancel -> OMS -> simulated venue -> event-log row"),
        ("venue_submit", "venue side: arrival, acknowledgement, its row"),
        ("venue_cancel", "venue side: cancel arrival, confirmation, its row"),
    ):
        print(f"  {label}: {op[k]['p50_us']:.1f} / {op[k]['p99_us']:.1f}")
    if r["memory"]:
        print("\npeak RSS of the Python path by data length:")
        for m in r["memory"]:
            rate = m["rows_per_s"] / 1e6
            print(f"  {m['scale']:>3}x  {m['rows']:>11,} rows  {m['peak_rss_mb']:6.0f} MiB  {rate:.2f} M rows/s")


if __name__ == "__main__":
    sys.exit(main())
