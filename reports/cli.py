"""``hft report ...``: post-mortem, trades over the last N days, latency report, latest run.

Errors the library raises (``RunLogError`` and friends) reach ``engine.cli.main``, which prints them
as one line and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.errors import RunLogError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="post-mortem, trade analysis and latency reports from event logs (runs/)")
    rs = p.add_subparsers(dest="report_command", metavar="REPORT")
    p.set_defaults(func=lambda args: _help(p))

    pm = rs.add_parser(
        "post-mortem",
        help="strategy post-mortem of one run (guide 9.2)",
        description="Write post_mortem.html/.md/.json for a run and print the headline numbers.",
    )
    pm.add_argument("run_dir", metavar="RUN_DIR", help="event log directory (runs/<run_id>)")
    pm.add_argument("--strategy", help="only this strategy (default: all strategies of the run)")
    pm.add_argument("--out", help="directory for the report (default: RUN_DIR)")
    pm.set_defaults(func=cmd_post_mortem)

    tr = rs.add_parser(
        "trades",
        help="the post-mortem statistics over every run of a strategy in the last N days",
        description="Aggregate every run of strategy ID under the runs root whose time span overlaps the last N days.",
    )
    tr.add_argument("strategy", metavar="ID", help="strategy id")
    tr.add_argument("--days", type=float, default=7.0, help="look-back in days (default 7)")
    tr.add_argument("--runs-root", type=Path, help="runs directory (default $HFT_RUNS_ROOT or runs)")
    tr.add_argument("--now", help="end of the window, ISO-8601 UTC or ns (default: now)")
    tr.add_argument("--out", help="directory for the report (default RUNS_ROOT/reports/ID-last-Nd)")
    tr.set_defaults(func=cmd_trades)

    la = rs.add_parser(
        "latency",
        help="latency percentiles per stage of a run (guide 5.1)",
        description="Write latency_report.html/.md/.json for a run and print the table.",
    )
    la.add_argument("run_dir", metavar="RUN_DIR", help="event log directory (runs/<run_id>)")
    la.add_argument("--out", help="directory for the report (default: RUN_DIR)")
    la.set_defaults(func=cmd_latency)

    lr = rs.add_parser("latest-run", help="print the directory of the latest run (of a strategy)")
    lr.add_argument("--strategy", help="only runs of this strategy")
    lr.add_argument("--runs-root", type=Path, help="runs directory (default $HFT_RUNS_ROOT or runs)")
    lr.set_defaults(func=cmd_latest_run)


def _print(text: str) -> None:
    """Print; a closed pipe (``| head``) just ends the output."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_post_mortem(args: argparse.Namespace) -> int:
    from reports.postmortem import post_mortem

    pm = post_mortem(args.run_dir, strategy=args.strategy, out_dir=args.out)
    _print(pm.headline())
    return 0


def cmd_trades(args: argparse.Namespace) -> int:
    from reports.runs import default_runs_root, parse_time
    from reports.trades import trades_report

    root = args.runs_root or default_runs_root()
    try:
        now = parse_time(args.now) if args.now else None
    except ValueError as exc:
        raise RunLogError(str(root), str(exc)) from None
    pm = trades_report(args.strategy, args.days, root, now=now, out_dir=args.out)
    _print(pm.headline())
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    from reports.latency import latency_report

    rep = latency_report(args.run_dir, out_dir=args.out)
    _print(rep.text())
    return 0


def cmd_latest_run(args: argparse.Namespace) -> int:
    from reports.runs import default_runs_root, latest_run

    _print(str(latest_run(args.runs_root or default_runs_root(), args.strategy).path))
    return 0
