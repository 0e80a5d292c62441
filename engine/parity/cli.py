"""``hft parity RUN_DIR``: replay a recorded session and compare (exit 0 when the thresholds are
met, 1 when not, 2 on bad input)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from engine.errors import HftError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "parity",
        help="replay a recorded paper/live session as a backtest and compare every decision and fill",
        description="Replays RUN_DIR (a paper or live session whose market data was captured, "
        "RUN_DIR/market_data) as a backtest with the session's models, into OUT, and compares every "
        "strategy decision (submit, cancel, modify) and every fill. Writes parity.json, parity.txt and "
        "parity_pnl.png into OUT. Exit 0 when decisions and fills match at least the thresholds, 1 when "
        "not, 2 on bad input.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the session's run directory")
    p.add_argument("--out", metavar="DIR", help="where the replay and the report go (default RUN_DIR/parity)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="change a config field for the replay (JSON value), e.g. sim.latency.order.us=5000; repeatable",
    )
    p.add_argument(
        "--tolerance-us", type=_number("--tolerance-us"), default=None, metavar="N",
        help="how far apart (us) two matched decisions' market-data times may be (default 1000)",
    )  # fmt: skip
    p.add_argument(
        "--min-decisions", type=_number("--min-decisions"), default=0.99, metavar="F",
        help="share of decisions that must match for exit 0 (default 0.99)",
    )  # fmt: skip
    p.add_argument(
        "--min-fills", type=_number("--min-fills"), default=1.0, metavar="F",
        help="share of fills that must match for exit 0 (default 1.0)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_parity)


def _number(flag: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: must be a number, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{flag}: must be >= 0, got {text!r}")
        return value

    return parse


def cmd_parity(args: argparse.Namespace) -> int:
    from engine.parity.report import DEFAULT_TOLERANCE_US, format_report, run_parity

    for flag, value in (("--min-decisions", args.min_decisions), ("--min-fills", args.min_fills)):
        if value > 1:
            raise HftError(f"{flag}: a share between 0 and 1, got {value:g}")
    report = run_parity(
        Path(args.run_dir),
        Path(args.out) if args.out else None,
        args.sets,
        DEFAULT_TOLERANCE_US if args.tolerance_us is None else args.tolerance_us,
        args.min_decisions,
        args.min_fills,
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    return 0 if report["passed"] else 1
