"""Our backtester against hftbacktest 2.4.4 on equal work: the quote-at-touch strategy, same rows.

    .venv/bin/python bench/fidelity_hftbacktest.py [--latencies 0,100us,1ms,data] [--out docs/fidelity.md]

For every feed latency it runs ``strategies/quote_at_touch.py`` through our backtest runner
(in this process) and the same decisions in hftbacktest (``bench/fidelity_hbt_worker.py``, in a
subprocess with ``.bench/hftbacktest-venv``, made by ``bench/setup_hftbacktest.sh``), both on the
rows our replay reader yields for the config's data, and prints submits, cancels, fills, filled
quantity, final position and wall time side by side. ``data`` means feed latency from the data's
own timestamps (``bench/fidelity_events.py``). What is compared and why: ``docs/fidelity.md``.
``--out`` replaces the table between the ``fidelity-table`` markers of that file
(``fidelity-table-trades`` with ``--act-on-trades``), or writes the table alone to a new file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench import fidelity_events as fe  # noqa: E402
from engine.errors import ConfigError  # noqa: E402
from engine.runners.spec import RunSpec, load_run_spec  # noqa: E402

DEFAULT_CONFIG = REPO / "config" / "backtests" / "quote_at_touch_sample.json"
DEFAULT_HBT_PYTHON = REPO / ".bench" / "hftbacktest-venv" / "bin" / "python"
WORKER = Path(__file__).resolve().parent / "fidelity_hbt_worker.py"
NA_DATA = "n/a (engine has no data feed latency)"
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_latency(text: str) -> int | str:
    """``0``, ``250ns``, ``100us``, ``1ms``, ``data`` -> ns or ``"data"``."""
    t = text.strip().lower()
    if t == "data":
        return "data"
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)?", t)
    if not m:
        raise argparse.ArgumentTypeError(f"not a latency: {text!r} (use e.g. 0, 100us, 1ms or data)")
    return round(float(m.group(1)) * _UNITS[m.group(2) or "ns"])


def latency_label(feed: int | str) -> str:
    if feed == "data":
        return "from the data"
    assert isinstance(feed, int)
    for unit, mul in (("ms", 1_000_000), ("µs", 1_000)):
        if feed >= mul and feed % mul == 0:
            return f"{feed // mul} {unit}"
    return f"{feed} ns"


# --- our engine -----------------------------------------------------------------------------------
def run_ours(config: Path, feed: int | str, strategy_overrides: dict[str, Any]) -> dict[str, Any] | None:
    """One backtest of ``config`` with its feed latency replaced; the strategy's counters, or
    None when the engine cannot take this feed latency. The only function that knows how our
    runner is driven (it is about to change)."""
    from engine.marketdata.instruments import load_instruments
    from engine.runners.backtest import run_backtest

    spec = load_run_spec(config)
    latency = dict(spec.sim.data.get("latency") or {})
    latency["feed"] = {"type": "data"} if feed == "data" else {"type": "constant", "ns": feed}
    spec.sim.data["latency"] = latency
    for st in spec.strategies:
        st.params.update(strategy_overrides)
    # Equal work: hftbacktest has no minimum-notional filter, and Binance's (100 USDT on this
    # perpetual) refuses every 0.001 BTC order at this price; everything else is the instrument
    # file's (tick, lot, fees).
    registry = {k: dataclasses.replace(v, min_notional=0.0) for k, v in load_instruments(spec.instruments_path).items()}
    t0 = time.perf_counter()
    try:
        result = run_backtest(spec, None, instruments_registry=registry)
    except ConfigError as exc:
        if feed == "data" and "latency.feed" in str(exc):
            return None
        raise
    wall = time.perf_counter() - t0
    strategy = result.engine.strategies[spec.strategies[0].strategy_id]
    submitted = np.array(getattr(strategy, "submitted", []), dtype=np.int64).reshape(-1, 3)
    return {**strategy.stats(), "wall_s": wall, "submitted": submitted}


# --- hftbacktest --------------------------------------------------------------------------------
def _constant_ns(spec: RunSpec, key: str) -> int:
    from sim import latency as lat

    cfg = spec.sim.data.get("latency", {}).get(key)
    model = lat.from_config(cfg, 0, 0)
    if not isinstance(model, lat.ConstantLatency):
        raise SystemExit(
            f"{spec.path}: sim.latency.{key} must be constant for the comparison (hftbacktest's ConstantLatency)"
        )
    return model.ns


def spec_tick(spec: RunSpec) -> int:
    """The strategy's instrument tick in fixed-point price units."""
    from engine.marketdata.instruments import load_instruments

    st = spec.strategies[0]
    return int(load_instruments(spec.instruments_path)[(st.venue, st.symbols[0])].tick)


def worker_args(spec: RunSpec, act_on_trades: bool, order_size: float) -> list[str]:
    """hftbacktest settings taken from our config, so both engines get the same numbers."""
    from engine.marketdata.instruments import load_instruments

    st = spec.strategies[0]
    inst = load_instruments(spec.instruments_path)[(st.venue, st.symbols[0])]
    params = {**st.cls(st.strategy_id, st.venue, st.symbols, st.params).params}
    venue_cfg = (spec.sim.data.get("venues") or {}).get(st.venue, {})
    maker = venue_cfg.get("maker_fee", inst.maker_fee)
    taker = venue_cfg.get("taker_fee", inst.taker_fee)
    args = [
        f"--entry-ns={_constant_ns(spec, 'order')}",
        f"--response-ns={_constant_ns(spec, 'response')}",
        f"--tick={inst.price(inst.tick)!r}",
        f"--lot={inst.size(inst.lot)!r}",
        f"--qty={order_size!r}",
        f"--maker-fee={float(maker)!r}",
        f"--taker-fee={float(taker)!r}",
    ]
    if not params.get("post_only", True):
        args.append("--gtc")
    if act_on_trades:
        args.append("--act-on-trades")
    return args


def run_hbt(python: Path, rows: fe.Rows, feed: int | str, args: list[str], tmp: Path, exchange: str) -> dict[str, Any]:
    events = fe.to_hbt_events(rows, feed)
    path = tmp / f"events_{feed}.npy"
    np.save(path, events)
    out = tmp / f"result_{feed}.json"
    trace = tmp / f"submits_{feed}.npy"
    cmd = [
        str(python),
        str(WORKER),
        f"--events={path}",
        f"--feed={feed}",
        f"--out={out}",
        f"--trace={trace}",
        f"--exchange={exchange}",
    ]
    if feed == "data":
        cmd.append(f"--data-offset={fe.data_feed_offset(rows.ts_event, rows.ts_recv)}")
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(
            f"hftbacktest worker failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return {**json.loads(out.read_text()), "submitted": np.load(trace)}


# --- the table ----------------------------------------------------------------------------------
def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "-" if a == 0 else "inf"
    return f"{a / b:.3f}"


def same_submits(ours: np.ndarray, theirs: np.ndarray, tick_fixed: int, time_shift: int) -> str:
    """How many submits, from the first, agree in local time, side and price: "all N" when the
    two sequences are identical. ``time_shift`` maps hftbacktest's local clock onto ours (it moves
    local time for the data latency)."""
    a = ours.copy()
    a[:, 2] //= tick_fixed
    b = theirs.copy()
    b[:, 0] += time_shift
    n = min(len(a), len(b))
    differ = np.nonzero((a[:n] != b[:n]).any(axis=1))[0]
    if len(differ) == 0 and len(a) == len(b):
        return f"all {n:,}"
    k = int(differ[0]) if len(differ) else n
    return f"first {k:,}"


def _cells(r: dict) -> list[str]:
    return [
        f"{r['wakes']:,}",
        f"{r['submits']:,}",
        f"{r['cancels']:,}",
        f"{r['rejects']:,}",
        f"{r['fills']:,}",
        f"{r['filled_qty']:.3f}",
        f"{r['position']:+.3f}",
        f"{r['wall_s']:.2f}",
    ]


# hftbacktest's result codes (py-hftbacktest/src/backtest.rs, handle_result)
_HBT_CODES = {
    10: "OrderIdExist",
    11: "OrderRequestInProcess",
    12: "OrderNotFound",
    13: "InvalidOrderRequest",
    14: "InvalidOrderStatus",
    15: "EndOfData",
    100: "DataError",
}


def _stopped(theirs: dict) -> str:
    code = theirs.get("end_code", 1)
    return "" if code == 1 else f"stopped early: {_HBT_CODES.get(code, code)}"


def table(rows: list[tuple[int | str, dict | None, dict, str]], hbt_name: str, ours_name: str) -> str:
    """``rows``: (feed, ours or None, hftbacktest's, same-submits text)."""
    out = [
        "| feed latency | engine | wakes | submits | cancels | post-only rejects | fills | filled qty (BTC) "
        "| final position (BTC) | wall s | fills, qty ours/hbt | same submits |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for feed, ours, theirs, same in rows:
        label = latency_label(feed)
        if ours is None:
            out.append(f"| {label} | ours | {NA_DATA} |" + " |" * 9)
        else:
            ratio = f"{_ratio(ours['fills'], theirs['fills'])}, {_ratio(ours['filled_qty'], theirs['filled_qty'])}"
            out.append(f"| {label} | ours | " + " | ".join(_cells(ours)) + f" | {ratio} | {same} |")
        stopped = _stopped(theirs)
        out.append(
            f"| {label} | hftbacktest | " + " | ".join(_cells(theirs)) + f" | |{' ' + stopped if stopped else ''} |"
        )
    out.append("")
    out.append(f"ours: {ours_name}; hftbacktest: {hbt_name}.")
    return "\n".join(out) + "\n"


def within(ours: dict | None, theirs: dict, tolerance: float = 0.01) -> bool | None:
    """Fills and filled quantity within ``tolerance`` of hftbacktest's (None: ours not run)."""
    if ours is None:
        return None
    return all(abs(ours[k] - theirs[k]) <= tolerance * max(abs(theirs[k]), 1e-12) for k in ("fills", "filled_qty"))


def write_out(path: Path, text: str, marker: str) -> None:
    """Replace the block between ``<!-- marker:start -->`` and ``<!-- marker:end -->``."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = f"{start}\n{text}{end}"
    if path.exists():
        doc = path.read_text()
        if start in doc and end in doc:
            before, rest = doc.split(start, 1)
            after = rest.split(end, 1)[1]
            path.write_text(before + block + after)
            return
        raise SystemExit(f"{path} exists without {start} / {end} markers; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="quote-at-touch in our backtester and in hftbacktest, side by side")
    ap.add_argument(
        "--latencies",
        default="0,100us,1ms,4ms,data",
        type=lambda s: [parse_latency(x) for x in s.split(",") if x.strip()],
        help="feed latencies: ns, or with a unit (us, ms), or 'data' (default 0,100us,1ms,4ms,data)",
    )
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument(
        "--out",
        type=Path,
        help="markdown file to put the table in, between its <!-- fidelity-table:start/end --> markers "
        "(fidelity-table-trades with --act-on-trades)",
    )
    ap.add_argument("--json", type=Path, help="also write every row's raw results here")
    ap.add_argument("--hbt-python", type=Path, default=DEFAULT_HBT_PYTHON)
    ap.add_argument(
        "--act-on-trades", action="store_true", help="both engines also act after every trade (default: depth only)"
    )
    ap.add_argument(
        "--exchange",
        choices=("nopartial", "partial"),
        default="nopartial",
        help="hftbacktest exchange model (docs/fidelity.md says why nopartial)",
    )
    ap.add_argument(
        "--order-size",
        type=float,
        default=0.001,
        help="order size in both engines (default 0.001 BTC, the issue's; the shipped config trades 0.002, "
        "above Binance's 100 USDT minimum notional, which the comparison switches off)",
    )
    ap.add_argument("--label", help="how the table names our engine (default: git describe of this checkout)")
    args = ap.parse_args(argv)
    if not args.hbt_python.exists():
        print(f"error: {args.hbt_python} not found; run bench/setup_hftbacktest.sh first", file=sys.stderr)
        return 2

    spec = load_run_spec(args.config)
    st = spec.strategies[0]
    rows = fe.load_rows(spec.data_root, st.venue, st.symbols[0], spec.start_ns, spec.end_ns)
    wargs = worker_args(spec, args.act_on_trades, args.order_size)
    overrides: dict[str, Any] = {"trace": True, "act_on_trades": args.act_on_trades, "order_size": args.order_size}
    print(f"data: {spec.data_root} {st.venue}:{st.symbols[0]}, {len(rows):,} rows; worker args: {' '.join(wargs)}")
    tick_fixed = spec_tick(spec)

    run_ours(args.config, 0, overrides)  # untimed: loads the compiled kernels from numba's cache
    results: list[tuple[int | str, dict | None, dict, str]] = []
    hbt_name = "hftbacktest"
    tmp_parent = REPO / ".bench" if (REPO / ".bench").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="fidelity-", dir=tmp_parent) as d:
        for feed in args.latencies:
            ours = run_ours(args.config, feed, overrides)
            theirs = run_hbt(args.hbt_python, rows, feed, wargs, Path(d), args.exchange)
            hbt_name = theirs["engine"]
            shift = fe.data_feed_offset(rows.ts_event, rows.ts_recv) if feed == "data" else 0
            same = "" if ours is None else same_submits(ours["submitted"], theirs["submitted"], tick_fixed, shift)
            results.append((feed, ours, theirs, same))
            ok = within(ours, theirs)
            verdict = "ours n/a" if ok is None else "fills and qty within 1%" if ok else "fills or qty differ by > 1%"
            print(f"  {latency_label(feed)}: {verdict}; same submits: {same or '-'} {_stopped(theirs)}", flush=True)
    ours_name = args.label or _code_version()
    text = table(results, hbt_name, ours_name)
    print()
    print(text)
    if args.out:
        write_out(args.out, text, "fidelity-table-trades" if args.act_on_trades else "fidelity-table")
    if args.json:
        plain = [
            {
                "feed": f,
                "ours": None if o is None else {k: v for k, v in o.items() if k != "submitted"},
                "hftbacktest": {k: v for k, v in t.items() if k != "submitted"},
                "same_submits": same,
                "within_1pct": within(o, t),
            }
            for f, o, t, same in results
        ]
        args.json.write_text(json.dumps(plain, indent=2) + "\n")
    return 0


def _code_version() -> str:
    try:
        from engine.runners.backtest import code_version

        return f"hft-system {code_version()}"
    except ImportError:
        return "hft-system"


if __name__ == "__main__":
    sys.exit(main())
