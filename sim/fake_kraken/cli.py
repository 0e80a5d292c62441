"""``python -m sim.fake_kraken.cli``: the fake Kraken run by hand (what ``hft sim kraken`` would call).

    python -m sim.fake_kraken.cli [--data CAPTURE.gz] [--port 8766] [--speed 1] [--start now]

Prints its URLs and the API key pair (from ``--api-key/--api-secret``, ``HFT_FAKE_KRAKEN_KEY`` /
``HFT_FAKE_KRAKEN_SECRET``, or generated: it only opens this loopback server), then serves until
Ctrl-C. Faults: ``POST <rest>/_fake/<action>`` (see the package README).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from engine.errors import HftError
from sim.fake_kraken.server import CAPTURE, START_MODES, FakeKraken


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hft sim kraken", description="Serve a fake Kraken spot on loopback.")
    p.add_argument("--data", default=str(CAPTURE), help="Binance capture re-labelled BTC/USD ('none': fixtures only)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--speed", type=float, default=1.0, help="replay speed (0: as fast as read)")
    p.add_argument("--start", choices=[m for m in START_MODES if m != "manual"], default="subscribe")
    p.add_argument("--api-key", default=None)
    p.add_argument("--api-secret", default=None)
    p.add_argument("--balance", action="append", default=[], metavar="ASSET_ID=AMOUNT", help="e.g. ZUSD=100000")
    return p


async def serve(args: argparse.Namespace) -> None:
    balances = None
    if args.balance:
        balances = {}
        for item in args.balance:
            asset, sep, amount = item.partition("=")
            if not sep or not asset:
                raise SystemExit(f"--balance {item!r}: expected ASSET_ID=AMOUNT, e.g. ZUSD=100000")
            balances[asset] = amount
    data = None if args.data.lower() == "none" else args.data
    async with FakeKraken(
        data=data,
        api_key=args.api_key,
        api_secret=args.api_secret,
        speed=args.speed,
        start=args.start,
        host=args.host,
        port=args.port,
        balances=balances,
    ) as fk:
        print(f"fake kraken on {fk.host}:{fk.port}", flush=True)
        print(f"  REST       {fk.rest_url}", flush=True)
        print(f"  WS public  {fk.ws_url}", flush=True)
        print(f"  WS private {fk.ws_auth_url}", flush=True)
        print(f"  api key    {fk.api_key}", flush=True)
        print(f"  faults     POST {fk.rest_url}/_fake/<action>  (status: GET {fk.rest_url}/_fake/status)", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(serve(args))
        except (HftError, ValueError, OSError) as exc:
            print(f"fake kraken: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
