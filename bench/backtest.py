"""Throughput, per-wake latency and peak memory of the backtest hot path (``hft bench``).

    python -m bench.backtest [--mode all|book|full] [--repeat 3] [--loops K] [--config C] [--data ROOT]

(a) replay + book: Parquet read, k-way merge and every level change applied to the books.
(b) the full path: the market maker quoting through risk, OMS, simulated venue and recorder.
Each runs in a fresh process so peak RSS is that mode's own. ``--loops K`` replays the data K
times back to back (time-shifted), to show that memory does not grow with the data's length.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import REPO, interpreter

DEFAULT_CONFIG = REPO / "config" / "backtests" / "market_maker_sample.json"


def parser(prog: str = "python -m bench.backtest") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="benchmark the replay hot path (rows/s, latency percentiles, peak RSS)"
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="backtest config whose data and strategy to use")
    p.add_argument("--data", help="market data root (overrides the config)")
    p.add_argument("--loops", type=int, default=1, help="replay the data this many times back to back")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions per mode (best is reported)")
    p.add_argument("--mode", choices=["all", "book", "full"], default="all")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one mode, in this process
    return p


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Looped:
    """The source's batches ``loops`` times, each pass shifted to start 1 s after the previous one."""

    def __init__(self, source_factory, loops: int) -> None:
        self.factory = source_factory
        self.loops = loops

    def __iter__(self):
        shift = 0
        for _ in range(self.loops):
            first = last = None
            for cb in self.factory():
                if len(cb.ts_recv) == 0:
                    continue
                if first is None:
                    first = int(cb.ts_recv[0])
                last = int(cb.ts_recv[-1])
                # every pass (the first too) gets fresh writable arrays, so the kernel sees one
                # argument type throughout (numba specialises read-only arrays separately)
                cb.ts_recv = cb.ts_recv + shift
                cb.ts_event = cb.ts_event + shift
                yield cb
            if first is None:
                return
            shift += last - first + 1_000_000_000


class _LoopedSource(_Looped):
    """A replay source (what ``run_backtest`` takes) that plays the dataset ``loops`` times."""

    def __init__(self, source_factory, loops: int) -> None:
        super().__init__(source_factory, loops)
        first = source_factory()
        self.streams = list(first.streams)
        self.scales = first.scales
        self.files = first.files
        self.rows = first.rows * loops
        self.start_ns = first.start_ns
        self.end_ns = first.end_ns


def _mode_book(spec, loops: int, repeat: int) -> dict:
    """The backtest node with no strategy: what is left is the replay and the books."""
    from engine.marketdata.instruments import load_instruments
    from engine.marketdata.prefetch import prefetch
    from engine.marketdata.reader import open_dataset
    from engine.runners.backtest import open_backtest

    registry = load_instruments(spec.instruments_path)

    def factory():
        return open_dataset(
            spec.data_root, venue=spec.venue, symbols=spec.symbols, start_ns=spec.start_ns, end_ns=spec.end_ns
        )

    def node(source):
        return open_backtest(spec, None, source=source, instruments_registry=registry, strategies=[])

    t0 = time.perf_counter()
    src = factory()
    warm = node(src).replay
    first = next(iter(src))
    warm.run([first])
    jit_s = time.perf_counter() - t0
    best = None
    for _ in range(repeat):
        drv = node(_LoopedSource(factory, loops)).replay
        t = time.perf_counter()
        stats = drv.run(prefetch(_Looped(factory, loops)))
        dt = time.perf_counter() - t
        if best is None or dt < best[0]:
            best = (dt, stats.rows)
    dt, rows = best
    return {
        "mode": "replay+book",
        "rows": rows,
        "seconds": dt,
        "rows_per_s": rows / dt,
        "jit_warmup_s": jit_s,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _mode_full(spec, loops: int, repeat: int) -> dict:
    from engine.runners import backtest as bt

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up on a short slice compiles (or loads from cache) every kernel
        bt.run_backtest(spec, Path(tmp) / "warm", log_dir=Path(tmp) / "logs")
    jit_s = time.perf_counter() - t0
    from engine.marketdata.reader import open_dataset

    def factory():
        return open_dataset(
            spec.data_root, venue=spec.venue, symbols=spec.symbols, start_ns=spec.start_ns, end_ns=spec.end_ns
        )

    best = None
    for _ in range(repeat):
        source = _LoopedSource(factory, loops)
        with tempfile.TemporaryDirectory() as tmp:
            res = bt.run_backtest(
                spec, Path(tmp) / "run", measure_wakes=True, log_dir=Path(tmp) / "logs", source=source
            )
            st = res.stats
            if best is None or st.seconds < best.seconds:
                best = st
                summary = res.summary
    w = np.asarray(best.wake_ns or [0], dtype=np.int64)
    pct = {f"p{p}": float(np.percentile(w, p)) / 1000.0 for p in (50, 90, 99, 99.9)}
    return {
        "mode": "market maker full path",
        "rows": best.rows,
        "seconds": best.seconds,
        "rows_per_s": best.rows / best.seconds,
        "jit_warmup_s": jit_s,
        "wakes": best.wakes,
        "wake_latency_us": {**pct, "max": float(w.max()) / 1000.0},
        "fills": summary["fills"],
        "orders": summary["orders_submitted"],
        "peak_rss_mb": _peak_rss_mb(),
    }


def _child(args: argparse.Namespace) -> int:
    from engine.errors import HftError
    from engine.runners.spec import load_run_spec

    try:
        spec = load_run_spec(args.config, {"data": args.data} if args.data else None)
        fn = _mode_book if args.mode == "book" else _mode_full
        print(json.dumps(fn(spec, args.loops, args.repeat)))
    except HftError as exc:  # missing or corrupt data: one line, as the parent prints it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, in one line (None: nothing): counts must be >= 1 and the
    config must load, before any child process starts."""
    from engine.errors import HftError
    from engine.runners.spec import load_run_spec

    for flag, value in (("--repeat", args.repeat), ("--loops", args.loops)):
        if value < 1:
            return f"{flag} must be an integer >= 1, got {value}"
    try:
        load_run_spec(args.config, {"data": args.data} if args.data else None)
    except HftError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None, prog: str = "python -m bench.backtest") -> int:
    args = parser(prog).parse_args(argv)
    problem = _check(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.child:
        return _child(args)
    modes = ["book", "full"] if args.mode == "all" else [args.mode]
    results = []
    # each mode in a fresh process; bench/ is not installed, so the child finds it through PYTHONPATH
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    for mode in modes:
        cmd = [sys.executable, "-m", "bench.backtest", "--child", "--config", args.config]
        cmd += ["--loops", str(args.loops), "--repeat", str(args.repeat), "--mode", mode]
        if args.data:
            cmd += ["--data", args.data]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(out.stderr.rstrip("\n"), file=sys.stderr)
            return out.returncode
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{prog}  config={args.config}  loops={args.loops}  repeat={args.repeat} (best run shown)")
    print(f"python     {interpreter()}")
    for r in results:
        print(f"\n[{r['mode']}]")
        print(f"  rows            {r['rows']:,}")
        print(f"  time            {r['seconds']:.3f} s")
        print(f"  throughput      {r['rows_per_s'] / 1e6:.2f} M rows/s")
        print(f"  JIT warm-up     {r['jit_warmup_s']:.2f} s (separate, not in the time above)")
        print(f"  peak RSS        {r['peak_rss_mb']:.0f} MB")
        if "wake_latency_us" in r:
            lat = r["wake_latency_us"]
            print(f"  strategy wakes  {r['wakes']:,}  orders {r['orders']:,}  fills {r['fills']:,}")
            print("  per-wake engine time (book/trade/fill handling incl. strategy, risk, OMS, venue, recorder):")
            print("    " + "  ".join(f"{k}={v:.1f}µs" for k, v in lat.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
