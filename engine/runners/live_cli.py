"""``hft paper CONFIG`` (live data, simulated execution), ``hft live CONFIG`` (live trading) and
``hft record`` (capture a session)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from engine.runners.backtest_cli import default_run_dir, format_summary
from engine.runners.spec import load_run_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paper", help="paper trading: live market data, execution simulated against the live book")
    p.add_argument("config", help="paper config (e.g. config/paper/market_maker_binance.json)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--out", help="run directory (default runs/<name>-<n>)")
    p.set_defaults(func=cmd_paper, mode="paper")
    p = sub.add_parser(
        "live",
        help="live trading: reconcile each venue's account, then trade on the live venues (keys from the environment)",
    )
    p.add_argument("config", help="live config (e.g. config/live/market_maker_binance.json)")
    p.add_argument("--duration", type=float, help="stop gracefully after this many seconds (default: SIGINT/SIGTERM)")
    p.add_argument("--out", help="run directory (default runs/<name>-<n>)")
    p.set_defaults(func=cmd_paper, mode="live")
    try:
        from engine.runners import record
    except ImportError:
        return
    record.register(sub)


def cmd_paper(args: argparse.Namespace) -> int:
    from engine.runners.paper import install_signal_stop
    from engine.runners.session import run_session
    from venues.common.loop import run as run_loop

    mode = args.mode
    spec = load_run_spec(args.config, mode=mode)
    run_dir = Path(args.out).resolve() if args.out else default_run_dir(spec.runs_root, spec.name)
    if run_dir.exists() and any(run_dir.iterdir()):
        print(f"error: run directory {run_dir} is not empty; choose another --out", file=sys.stderr)
        return 2

    async def main() -> int:
        stop = asyncio.Event()
        install_signal_stop(stop)
        what = "paper trading" if mode == "paper" else "live trading"
        venues = ", ".join(sorted({st.venue for st in spec.strategies}))
        strategies = ", ".join(s.strategy_id for s in spec.strategies)
        print(f"{what} {strategies} on {venues} -> {run_dir} (Ctrl-C to stop)", file=sys.stderr)
        res = await run_session(spec, mode, run_dir, args.duration, stop)
        for r in res.reconciled:
            print(r.line(), file=sys.stderr)
        print(
            format_summary(
                res.summary, run_dir, title="Live session summary" if mode == "live" else "Paper session summary"
            )
        )
        return 0

    return run_loop(main())
