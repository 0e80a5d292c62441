"""``python -m engine.daemon.api --fd N --bridge SOCK [--config PATH] [--parent-pid PID]``: serve
the operator API on the inherited listening socket ``N`` until SIGTERM/SIGINT (or until the
trading process that started it is gone)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from engine.errors import HftError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.daemon.api", description=__doc__)
    p.add_argument("--fd", type=int, required=True, help="file descriptor of the bound, listening TCP socket")
    p.add_argument("--bridge", required=True, help="unix socket of the trading process's bridge")
    p.add_argument("--config", help="run config; its daemon.api section sets auth and the read cache")
    p.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="stop when this process is no longer our parent (default: the parent at start-up)",
    )
    p.add_argument("--access-log", action="store_true", help="log every request (off: it costs CPU)")
    return p


def _logging() -> None:
    from engine.logs import RedactingFormatter, register_env_secrets

    register_env_secrets()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("sanic.root", "sanic.server", "sanic.error"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _logging()
    from engine.daemon.api.app import build_app
    from engine.daemon.config import ApiSettings, load_daemon_settings

    try:
        settings = load_daemon_settings(args.config).api if args.config else ApiSettings()
    except HftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = socket.socket(fileno=args.fd)
    except OSError as exc:
        print(f"error: --fd {args.fd}: not a socket ({exc})", file=sys.stderr)
        return 2
    host = sock.getsockname()[0]
    parent = args.parent_pid if args.parent_pid is not None else os.getppid()
    app = build_app(settings, args.bridge, host, parent_pid=parent)
    # Single process: no Sanic worker manager, the listening socket is the one we were handed.
    app.run(sock=sock, single_process=True, access_log=args.access_log, motd=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
