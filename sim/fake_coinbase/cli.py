"""The fake Coinbase by hand: ``python -m sim.fake_coinbase [--port 8766] [--interval 0.02]``.

Prints the WebSocket and REST base URLs, the API key, secret and passphrase it accepts, and
serves until Ctrl-C. Keys come from ``--api-key/--api-secret/--passphrase`` or
``HFT_FAKE_COINBASE_KEY`` / ``HFT_FAKE_COINBASE_SECRET`` / ``HFT_FAKE_COINBASE_PASSPHRASE``;
without them a throwaway set is generated (it only opens this loopback server).
``add_arguments`` / ``run`` are what an ``hft sim coinbase`` subcommand needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from sim.fake_coinbase.server import ENV_KEY, ENV_PASSPHRASE, ENV_SECRET, FakeCoinbase


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port for REST and WebSocket (default: any free port)")
    p.add_argument("--interval", type=float, default=0.02, help="seconds between replayed messages (default 0.02)")
    p.add_argument("--heartbeat-interval", type=float, default=1.0, help="heartbeats period in seconds (default 1)")
    p.add_argument("--start", choices=("subscribe", "now"), default="subscribe", help="when the replay starts")
    p.add_argument("--api-key", default=None, help=f"API key (default ${ENV_KEY})")
    p.add_argument("--api-secret", default=None, help=f"API secret, base64 (default ${ENV_SECRET})")
    p.add_argument("--passphrase", default=None, help=f"API passphrase (default ${ENV_PASSPHRASE})")
    p.add_argument(
        "--product",
        action="append",
        choices=("BAND-GBP", "BTC-USD"),
        help="products to serve, repeatable (default both: BAND-GBP's real capture, BTC-USD from Binance's)",
    )
    p.add_argument(
        "--balance", action="append", default=[], metavar="ASSET=AMOUNT", help="starting balance, repeatable"
    )


def _balances(items: list[str]) -> dict[str, str] | None:
    out = {}
    for item in items:
        asset, sep, amount = item.partition("=")
        if not sep or not asset or not amount:
            raise SystemExit(f"--balance {item!r}: expected ASSET=AMOUNT, e.g. GBP=100000")
        out[asset.upper()] = amount
    return out or None


def run(args: argparse.Namespace) -> int:
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"fake coinbase serves loopback only, not {args.host!r}", file=sys.stderr)
        return 2
    fc = FakeCoinbase(
        api_key=args.api_key or os.environ.get(ENV_KEY),
        api_secret=args.api_secret or os.environ.get(ENV_SECRET),
        passphrase=args.passphrase or os.environ.get(ENV_PASSPHRASE),
        interval_s=args.interval,
        heartbeat_interval_s=args.heartbeat_interval,
        start=args.start,
        balances=_balances(args.balance),
        host=args.host,
        port=args.port,
        products=tuple(args.product or ("BAND-GBP", "BTC-USD")),
    )

    async def serve() -> None:
        async with fc:
            print(f"fake coinbase: market data {fc.ws_url}  REST {fc.rest_url}", flush=True)
            print(f"  api key {fc.api_key}  secret {fc.api_secret}  passphrase {fc.passphrase}", flush=True)
            print(f"  faults POST {fc.rest_url}/_fake/<action>  (status: GET {fc.rest_url}/_fake/status)", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    print("fake coinbase stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hft sim coinbase", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))
