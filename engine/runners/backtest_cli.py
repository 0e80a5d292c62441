"""``hft backtest CONFIG [--data PATH] [--from T] [--to T] [--out DIR]``."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from engine.errors import HftError
from engine.runners.spec import load_run_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="replay historical data through a strategy on simulated venues")
    p.add_argument("config", help="backtest config (e.g. config/backtests/market_maker_sample.json)")
    p.add_argument("--data", help="market data root (overrides data.root)")
    p.add_argument("--from", dest="start", help="start time, ISO-8601 UTC or ns (overrides data.from)")
    p.add_argument("--to", dest="end", help="end time, ISO-8601 UTC or ns (overrides data.to)")
    p.add_argument("--out", help="run directory to write (default runs/<name>-<n>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--engine",
        choices=("python", "compiled"),
        default="python",
        help="compiled: the strategy's numba twin in one compiled loop, same event log (for sweeps; "
        "refuses what it cannot model)",
    )
    p.set_defaults(func=cmd_backtest)


def _time_arg(v: str | None) -> str | int | None:
    if v is None:
        return None
    return int(v) if v.isdigit() else v


def default_run_dir(runs_root: Path, name: str) -> Path:
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HftError(f"cannot create the runs directory {runs_root}: {exc.strerror or exc}") from None
    n = 1
    while (runs_root / f"{name}-{n:04d}").exists():
        n += 1
    return runs_root / f"{name}-{n:04d}"


def positive_seconds(value: str | float | None, flag: str = "--duration") -> float | None:
    """``value`` as a finite number of seconds > 0 (None stays None); else one line, exit 2."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise HftError(f"{flag} must be positive (a number of seconds), got {value}")
    return seconds


def run_dir_for(out: str | None, runs_root: Path, name: str) -> tuple[Path, bool]:
    """The run directory (``--out`` or the next free ``runs/<name>-<n>``) and whether it existed
    already; one line, exit 2, when it is a file or holds anything."""
    run_dir = Path(out).resolve() if out else default_run_dir(runs_root, name)
    if run_dir.exists() and not run_dir.is_dir():
        raise HftError(f"run directory {run_dir} is a file; choose another --out")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise HftError(f"run directory {run_dir} is not empty; choose another --out")
    return run_dir, run_dir.exists()


def discard_if_empty(run_dir: Path, existed: bool) -> None:
    """After a run that failed: remove what it made of ``run_dir`` (which was empty or missing
    before) when it wrote no event log and no data there, so that a session that never started
    leaves no run folder behind. Its log files alone do not keep it: the failure was printed in
    one line, and a folder without an event log is not a run. Anything else with content (an
    event log, a manifest, a capture) keeps the whole folder, logs included."""
    from engine.logs import setup_logging

    setup_logging(None)  # close the log files the run opened
    if not run_dir.is_dir():
        return
    for dirpath, _dirs, files in os.walk(run_dir):
        if Path(dirpath).relative_to(run_dir).parts[:1] == ("logs",):
            continue
        for f in files:
            try:
                if os.path.getsize(os.path.join(dirpath, f)) > 0:
                    return
            except OSError:
                return
    if existed:
        for child in run_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)


def prepare_kernels() -> None:
    """Load the replay's compiled code before the progress bar starts, saying so on stderr: on a
    cold cache (the first run after an install or an engine change) numba compiles it here, which
    takes tens of seconds, and the bar would otherwise sit at 0 rows/s (``scripts/setup.sh`` does
    it once at install)."""
    from sim.kernel_state import warm_up

    print("loading the replay's compiled code...", end="", file=sys.stderr, flush=True)
    got = warm_up()
    if got["compiled"]:
        print(
            f" compiled {got['compiled']} kernels in {got['seconds']:.1f} s "
            "(first run after an install or an engine change; cached for the next runs)",
            file=sys.stderr,
        )
    else:
        print(f" loaded from the cache in {got['seconds']:.1f} s", file=sys.stderr)


def _run_compiled(spec: Any, run_dir: Path) -> dict:
    print("loading the compiled path...", end="", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    from engine.logs import setup_logging
    from engine.runners.compiled import run_compiled  # compiles on a cold cache (tens of seconds)

    print(f" ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    setup_logging(run_dir / "logs", buffered=True)
    return run_compiled(spec, run_dir)


def cmd_backtest(args: argparse.Namespace) -> int:
    import json

    from engine.runners.backtest import run_backtest

    overrides = {"data": args.data, "from": _time_arg(args.start), "to": _time_arg(args.end)}
    spec = load_run_spec(args.config, {k: v for k, v in overrides.items() if v is not None})
    run_dir, existed = run_dir_for(args.out, spec.runs_root, spec.name)
    bar = None
    if not args.no_progress and args.engine == "python":
        from tqdm import tqdm

        prepare_kernels()

        bar = tqdm(total=0, unit=" rows", unit_scale=True, desc="backtest", file=sys.stderr, dynamic_ncols=True)

    def on_total(n: int) -> None:
        if bar is not None:
            bar.total = n
            bar.refresh()

    try:
        if args.engine == "compiled":
            s = _run_compiled(spec, run_dir)
        else:
            s = run_backtest(
                spec, run_dir, on_progress=bar.update if bar is not None else None, on_total=on_total
            ).summary
    except BaseException:
        discard_if_empty(run_dir, existed)
        raise
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps({"run_dir": str(run_dir), **s}, indent=2, default=str))
        return 0
    print(format_summary(s, run_dir))
    return 0


def format_summary(s: dict, run_dir: Path | None, title: str = "Backtest summary") -> str:
    rows = [
        ("net P&L", f"{s['net_pnl']:,.2f}"),
        ("  realized", f"{s['realized_pnl']:,.2f}"),
        ("  unrealized", f"{s['unrealized_pnl']:,.2f}"),
        ("  fees", f"{s['fees']:,.2f}"),
        ("fills (trades)", f"{s['fills']:,}"),
        ("orders submitted", f"{s['orders_submitted']:,}"),
        ("orders rejected", f"{s['orders_rejected']:,}"),
        ("fill ratio", f"{s['fill_ratio']:.1%}"),
        ("max drawdown", f"{s['max_drawdown']:,.2f}"),
        ("market data rows", f"{s['rows']:,}"),
        ("rows/s", f"{s['rows_per_s']:,.0f}"),
        ("wall time", f"{s['wall_s']:.2f} s"),
    ]
    inc = s.get("incidents") or {}
    if inc:
        rows.append(("incidents", ", ".join(f"{k}={v}" for k, v in inc.items())))
    if run_dir is not None:
        rows.append(("event log", str(run_dir)))
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 24)
    body = "\n".join(
        f"{k:<{width}}  {v:>20}" if k != "event log" and k != "incidents" else f"{k:<{width}}  {v}" for k, v in rows
    )
    return f"{line}\n{title}\n{line}\n{body}\n{line}"
