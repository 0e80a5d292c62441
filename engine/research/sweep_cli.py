"""``hft sweep CONFIG --grid PATH=V1,V2 [...]``: a parameter grid × days × symbols as independent
backtests on Ray (``engine.research.sweep``), with a results table and an HTML summary."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from engine.errors import HftError
from engine.research.grid import SweepError
from engine.research.sweep import RESULTS, SUMMARY, WALL_COLUMNS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a parameter grid of backtests on Ray (results.parquet, summary.html)",
        description="Each point of --grid x --days x --symbols is one backtest, run as a Ray task into "
        "OUT/points/<point-id>/ with the same event log as `hft backtest` of that point. "
        "A rerun of the same command skips finished points.",
    )
    p.add_argument("config", help="backtest config (e.g. config/backtests/quote_at_touch_sample.json)")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="PATH=V1,V2",
        help="a setting and its values, repeatable: a strategy param (order_size=0.001,0.002, or "
        "<strategy_id>.<param>) or a run setting (sim.latency.order.us=50,100; sim.queue_model=prob,risk_averse; "
        "risk.<field>; seed); @FILE reads {path: [values]} from JSON",
    )
    p.add_argument("--days", help="comma-separated UTC dates (YYYY-MM-DD), one window each")
    p.add_argument("--from", dest="start", help="start: ISO-8601 or ns; with --days a time of day (23:55)")
    p.add_argument("--to", dest="end", help="end: ISO-8601 or ns; with --days a time of day")
    p.add_argument("--symbols", help="comma-separated symbols, one point each (sets data and strategy symbols)")
    p.add_argument("--data", help="market data root: a path, file:// or any pyarrow filesystem URI")
    p.add_argument("--address", help="Ray cluster to use (default: a local one of --workers CPUs)")
    p.add_argument(
        "--workers", type=int, help="local Ray CPUs (default: this machine's CPUs); 0 runs the points in this process"
    )
    p.add_argument("--out", help="sweep directory (default runs/sweeps/<config name>)")
    p.add_argument("--metric", default="net_pnl", help="results column of the heatmap (default net_pnl)")
    p.add_argument("--heatmap", metavar="X,Y", help="the two --grid settings of the heatmap (default the first two)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--engine",
        choices=("python", "compiled"),
        default="python",
        help="compiled: every point on the compiled path (the same event log; strategies with a compiled twin)",
    )
    p.set_defaults(func=cmd_sweep)


def _list(value: str | None, flag: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise SweepError(f"{flag} {value}: empty item in the comma-separated list")
    return items


def _check_compiled(plan: Any) -> None:
    import json
    import tempfile

    from engine.runners.compiled import CompiledPathError, check_compiled
    from engine.runners.spec import load_run_spec

    with tempfile.TemporaryDirectory(prefix="hft-sweep-check-") as tmp:
        for p in plan.points:
            f = Path(tmp) / f"{p.point_id}.json"
            f.write_text(json.dumps(p.config))
            try:
                check_compiled(load_run_spec(f))
            except CompiledPathError as exc:
                raise SweepError(f"--engine compiled: point {p.point_id}: {exc}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    """Plan (everything checked), run, write the table and the page; 1 when a point failed."""
    from engine.research.plan import build_plan
    from engine.research.summary_html import render
    from engine.research.sweep import METRICS, run_sweep

    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    if workers < 0:
        raise SweepError(f"--workers {args.workers}: must be 0 (in this process) or more")
    plan = build_plan(
        args.config,
        args.grid,
        days=_list(args.days, "--days"),
        start=args.start,
        end=args.end,
        symbols=_list(args.symbols, "--symbols"),
        data=args.data,
    )
    metrics = (*METRICS, *WALL_COLUMNS)
    if args.metric not in metrics:
        raise SweepError(f"--metric {args.metric}: not a results column (one of {', '.join(metrics)})")
    heatmap = _heatmap_axes(args.heatmap, plan.columns)
    from engine.runners.spec import load_run_spec

    out = Path(args.out) if args.out else load_run_spec(args.config).runs_root / "sweeps" / plan.config_path.stem
    if args.engine == "compiled" and plan.data.uri is None:
        _check_compiled(plan)  # what the compiled path refuses, said once, before anything runs
    print(f"sweep: {len(plan.points)} points -> {out}", file=sys.stderr)
    outcome = run_sweep(plan, out.resolve(), workers, args.address, progress=not args.no_progress, engine=args.engine)
    note = (
        f"{plan.config_path.name}: {len(plan.points)} points ({len(outcome.ran)} run, "
        f"{len(outcome.skipped)} finished before, {len(outcome.failed)} failed); "
        f"heatmap cells average the points that share their two values"
    )
    page = render(outcome.results, f"Sweep of {plan.config_path.name}", args.metric, heatmap, note)
    (out / SUMMARY).write_text(page)
    started = f" (Ray ready in {outcome.ray_start_s:.1f} s)" if outcome.ray_start_s else ""
    print(
        f"{len(plan.points)} points: {len(outcome.ran)} run, {len(outcome.skipped)} already finished, "
        f"{len(outcome.failed)} failed in {outcome.wall_s:.1f} s{started}\n"
        f"results: {out / RESULTS}\nsummary: {out / SUMMARY}"
    )
    if outcome.failed:
        pid, why = next(iter(outcome.failed.items()))
        print(f"error: {len(outcome.failed)} point(s) failed; {pid}: {why}", file=sys.stderr)
        return 1
    return 0


def _heatmap_axes(value: str | None, columns: list[str]) -> tuple[str, str] | None:
    if value is None:
        return (columns[0], columns[1]) if len(columns) >= 2 else None
    axes = _list(value, "--heatmap") or []
    if len(axes) != 2 or axes[0] == axes[1]:
        raise SweepError(f"--heatmap {value}: give two different swept settings as X,Y")
    for a in axes:
        if a not in columns:
            raise SweepError(f"--heatmap {value}: {a} is not swept (swept: {', '.join(columns)})")
    return axes[0], axes[1]


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.research.sweep_cli sweep ...``: the command with ``hft``'s error contract
    (one ``error:`` line, exit 2) where ``engine.cli`` does not list it yet."""
    from engine.logs import redact

    parser = argparse.ArgumentParser(prog="hft")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return cmd_sweep(args)
    except HftError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
