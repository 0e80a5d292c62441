"""``hft paper CONFIG`` (live data, simulated execution), ``hft live CONFIG`` (live trading) and
``hft record`` (capture a session)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from engine.errors import HftError
from engine.runners.backtest_cli import discard_if_empty, format_summary, positive_seconds, run_dir_for
from engine.runners.spec import load_run_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paper", help="paper trading: live market data, execution simulated against the live book")
    p.add_argument("config", help="paper config (e.g. config/paper/market_maker_binance.json)")
    p.add_argument("--duration", metavar="S", help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--out", help="run directory (default runs/<name>-<n>)")
    _capture_arg(p, "on")
    _daemon_args(p)
    p.set_defaults(func=cmd_paper, mode="paper")
    p = sub.add_parser(
        "live",
        help="live trading: reconcile each venue's account, then trade on the live venues (keys from the environment)",
    )
    p.add_argument("config", help="live config (e.g. config/live/market_maker_binance.json)")
    p.add_argument("--duration", metavar="S", help="stop gracefully after this many seconds (default: SIGINT/SIGTERM)")
    p.add_argument("--out", help="run directory (default runs/<name>-<n>)")
    _capture_arg(p, "off")
    _daemon_args(p)
    p.set_defaults(func=cmd_paper, mode="live")
    try:
        from engine.runners import record
    except ImportError:
        return
    record.register(sub)


def _capture_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--capture-market-data",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record the feeds' market data into RUN_DIR/market_data so `hft parity RUN_DIR` can replay the "
        f"session (default: the config's output.capture_market_data, else {default})",
    )


def _daemon_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "daemon", "run as the long-lived service (the operator API, pid file, signals); on by default "
        "when the config has a 'daemon' section"
    )  # fmt: skip
    g.add_argument("--api", action="store_true", help="run as the daemon even without a 'daemon' section")
    g.add_argument("--port", type=_port, help="API port (default daemon.api.port, 8080; 0: any free port)")
    g.add_argument("--host", help="API address (default daemon.api.host, 127.0.0.1)")
    g.add_argument("--log-dir", help="component log directory (default daemon.log_dir, /var/log/hft_system)")
    g.add_argument("--pid-file", help="pid file (default daemon.pid_file, /var/run/hft_system.pid)")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port: must be a port number 0..65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"--port: must be a port number 0..65535, got {text!r}")
    return port


def cmd_paper(args: argparse.Namespace) -> int:
    from engine.runners.paper import install_signal_stop
    from engine.runners.session import run_session
    from venues.common.loop import run as run_loop

    mode = args.mode
    duration = positive_seconds(args.duration)
    try:
        spec = load_run_spec(args.config, mode=mode)
    except HftError as exc:
        from engine.daemon.startup_log import record_startup_failure, wants_daemon_log

        if wants_daemon_log(args):  # §2.1: the operator reads system.log for why it did not start
            record_startup_failure(args, str(exc))
        raise
    capture = getattr(args, "capture_market_data", None)
    if capture is not None:
        spec.capture_market_data = capture
    daemon_flags = (args.port, args.host, args.log_dir, args.pid_file)
    if args.api or spec.daemon.present:
        from engine.daemon.service import serve

        return serve(args, mode, spec, run_loop)
    if any(v is not None for v in daemon_flags):
        print("error: --port, --host, --log-dir and --pid-file need --api (or a 'daemon' section)", file=sys.stderr)
        return 2
    run_dir, existed = run_dir_for(args.out, spec.runs_root, spec.name)
    what = "paper trading" if mode == "paper" else "live trading"

    def started(_session: object) -> None:  # the venues answered: say what runs where
        venues = ", ".join(sorted({st.venue for st in spec.strategies}))
        strategies = ", ".join(s.strategy_id for s in spec.strategies)
        print(f"{what} {strategies} on {venues} -> {run_dir} (Ctrl-C to stop)", file=sys.stderr)

    async def main() -> int:
        stop = asyncio.Event()
        install_signal_stop(stop)
        res = await run_session(spec, mode, run_dir, duration, stop, started)
        for r in res.reconciled:
            print(r.line(), file=sys.stderr)
        print(
            format_summary(
                res.summary, run_dir, title="Live session summary" if mode == "live" else "Paper session summary"
            )
        )
        return 0

    try:
        return run_loop(main())
    except BaseException:
        # a session that never started (a venue that does not answer, missing keys) wrote nothing:
        # no empty run folder is left behind; an event log or a log line is kept
        discard_if_empty(run_dir, existed)
        raise
