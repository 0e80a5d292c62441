"""``hft paper CONFIG`` (live data, simulated execution) and ``hft record`` (capture a session)."""

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
    p.set_defaults(func=cmd_paper)
    try:
        from engine.runners import record
    except ImportError:
        return
    record.register(sub)


def cmd_paper(args: argparse.Namespace) -> int:
    from engine.runners.paper import install_signal_stop, run_paper
    from venues.binance.config import load_config
    from venues.common.loop import run as run_loop

    spec = load_run_spec(args.config, mode="paper")
    exchange = load_config(spec.data_root)
    run_dir = Path(args.out).resolve() if args.out else default_run_dir(spec.runs_root, spec.name)
    if run_dir.exists() and any(run_dir.iterdir()):
        print(f"error: run directory {run_dir} is not empty; choose another --out", file=sys.stderr)
        return 2

    async def main() -> int:
        stop = asyncio.Event()
        install_signal_stop(stop)
        print(
            f"paper trading {', '.join(s.strategy_id for s in spec.strategies)} on {exchange.ws_url} "
            f"-> {run_dir} (Ctrl-C to stop)",
            file=sys.stderr,
        )
        res = await run_paper(spec, exchange, run_dir, args.duration, stop)
        print(format_summary(res.summary, run_dir))
        return 0

    return run_loop(main())
