"""The ``hft`` command. Each subcommand lives in the module that owns it; this file only wires."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from engine.errors import HftError

# (module, function) pairs; each function receives the subparsers object and adds its commands.
# A command's handler is stored as ``func`` on its parser and returns an exit code.
COMMAND_MODULES: tuple[tuple[str, str], ...] = (
    ("engine.runners.backtest_cli", "register"),
    ("engine.runners.data_cli", "register"),
    ("reports.cli", "register"),
    ("sim.cli", "register"),
    ("engine.runners.live_cli", "register"),
    ("engine.daemon.opscli", "register"),
    ("engine.daemon.ctl", "register"),
    ("engine.runners.venue_cli", "register"),
    ("engine.store.cli", "register"),
    ("engine.parity.cli", "register"),
    ("engine.research.sweep_cli", "register"),
)
#: where a source checkout keeps its benchmarks (``bench/``, beside the packages; not installed)
CHECKOUT = Path(__file__).resolve().parents[1]


def _register_bench(sub: argparse._SubParsersAction) -> None:
    # every argument goes through to the benchmark's own parser (``hft bench --help`` is its help)
    p = sub.add_parser(
        "bench", add_help=False, help="benchmark the backtest hot path (rows/s, per-wake latency, peak RSS)"
    )
    p.set_defaults(func=cmd_bench, passthrough=[])


def cmd_bench(args: argparse.Namespace) -> int:
    """``python -m bench.backtest ARGS`` in this process: the benchmarks are not installed."""
    if not (CHECKOUT / "bench" / "backtest.py").is_file():
        print(
            f"error: hft bench needs the source checkout: benchmarks ship with it (bench/), "
            f"not with the installed packages in {CHECKOUT}",
            file=sys.stderr,
        )
        return 2
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    return int(importlib.import_module("bench.backtest").main(args.passthrough, prog="hft bench"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hft", description="HFT trading system: backtest, paper, live, reports")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, func_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part of the system is not installed in this checkout
            raise
        getattr(module, func_name)(sub)
    _register_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and getattr(args, "passthrough", None) is None:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        args.passthrough = rest
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HftError as exc:
        from engine.logs import redact

        print(f"error: {redact(str(exc))}", file=sys.stderr)  # an error may quote a request or a URL
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
