"""The ``hft`` command. Each subcommand lives in the module that owns it; this file only wires."""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import HftError

# (module, function) pairs; each function receives the subparsers object and adds its commands.
# A command's handler is stored as ``func`` on its parser and returns an exit code.
COMMAND_MODULES: tuple[tuple[str, str], ...] = (
    ("engine.runners.backtest_cli", "register"),
    ("engine.marketdata.cli", "register"),
    ("reports.cli", "register"),
    ("sim.cli", "register"),
    ("engine.runners.live_cli", "register"),
    ("engine.bench", "register"),
)


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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
