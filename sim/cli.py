"""``hft sim ...``: local fake exchanges for testing adapters by hand or from another process.

    hft sim binance --data ../shared/data/real/binance_spot_hftbacktest [--port 8765] [--speed 1]
    hft sim kraken [--port 8766] [--speed 1]
    hft sim coinbase [--port 8767]

Prints the REST and WebSocket base URLs and serves until Ctrl-C. API keys come from
``--api-key/--api-secret`` or ``HFT_FAKE_BINANCE_KEY`` / ``HFT_FAKE_BINANCE_SECRET``; without them a
throwaway pair is generated and printed (it only opens this loopback server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.fake_binance import FakeBinance


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser("sim", help="run a local fake exchange (loopback only)")
    venues = sim.add_subparsers(dest="sim_venue", metavar="VENUE")
    sim.set_defaults(func=lambda args: _usage(sim))
    b = venues.add_parser(
        "binance",
        help="fake Binance spot: REST, market streams and WS API replaying a real capture",
        description="Serve a fake Binance spot on 127.0.0.1 that replays a capture (hftbacktest collector "
        "format) with its real update ids, matches orders and can inject faults (POST /_fake/<action>).",
    )
    b.add_argument("--data", required=True, nargs="+", help="capture file(s) or a directory of *.gz day files")
    b.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    b.add_argument("--port", type=int, default=0, help="port for REST and WebSocket (default: any free port)")
    b.add_argument("--speed", default="1", help="replay speed: 1 = real time, 10 = ten times faster, 0 or max")
    b.add_argument("--api-key", default=None, help="API key (default $HFT_FAKE_BINANCE_KEY)")
    b.add_argument("--api-secret", default=None, help="API secret (default $HFT_FAKE_BINANCE_SECRET)")
    b.add_argument(
        "--balance",
        action="append",
        default=[],
        metavar="ASSET=AMOUNT",
        help="starting balance, repeatable (default BTC=1 ETH=10 USDT=100000)",
    )
    b.add_argument("--maker-fee", default="0.001", help="maker commission rate (default 0.001)")
    b.add_argument("--taker-fee", default="0.001", help="taker commission rate (default 0.001)")
    b.add_argument("--weight-limit", type=int, default=6000, help="request weight per minute (default 6000)")
    b.add_argument("--ban-seconds", type=float, default=120.0, help="first IP ban length after ignoring a 429")
    b.add_argument("--ping-interval", type=float, default=20.0, help="server ping period in seconds (default 20)")
    b.add_argument("--pong-timeout", type=float, default=60.0, help="close when a ping is unanswered this long")
    b.add_argument("--max-lifetime", type=float, default=86400.0, help="connection lifetime in seconds (24 h)")
    b.add_argument(
        "--start",
        choices=("subscribe", "now"),
        default="subscribe",
        help="start the replay at the first stream subscription (default) or at once",
    )
    b.add_argument("--no-restamp", action="store_true", help="send captured event times instead of the server clock")
    b.add_argument("--queue-model", default="risk_averse", help="queue model for resting orders (risk_averse|prob)")
    b.add_argument("--clock-skew-ms", type=float, default=0.0, help="server clock offset (-1021 testing)")
    b.add_argument("--ack-delay-ms", type=float, default=0.0, help="delay every order response by this much")
    b.add_argument("--lose-acks", type=int, default=0, help="lose the responses of the first N order requests")
    b.add_argument(
        "--lost-ack-mode",
        choices=("drop", "timeout"),
        default="drop",
        help="drop: no answer at all; timeout: 503 with -1007",
    )
    b.add_argument("--gap-every", type=float, default=0.0, help="drop one depth diff every N seconds (0 = never)")
    b.add_argument(
        "--disconnect-every", type=float, default=0.0, help="drop every stream connection every N seconds (0 = never)"
    )
    b.set_defaults(func=run_binance)
    # the other fakes keep their options in their own cli modules, imported only when run
    for venue, about in (
        ("kraken", "fake Kraken spot: REST, WebSocket v2 public and private, replaying fixtures and a capture"),
        ("coinbase", "fake Coinbase: Advanced Trade market data, Exchange REST and user channel"),
    ):
        v = venues.add_parser(venue, add_help=False, help=f"{about} (--help for its options)")
        v.set_defaults(func=_run_venue_cli, sim_module=f"sim.fake_{venue}.cli", passthrough=[])


def _run_venue_cli(args: argparse.Namespace) -> int:
    import importlib

    return int(importlib.import_module(args.sim_module).main(args.passthrough) or 0)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _balances(items: list[str]) -> dict[str, str] | None:
    if not items:
        return None
    out = {}
    for item in items:
        asset, sep, amount = item.partition("=")
        if not sep or not asset or not amount:
            raise ValueError(f"--balance {item!r} is not ASSET=AMOUNT")
        out[asset.upper()] = amount
    return out


def run_binance(args: argparse.Namespace) -> int:
    from sim.fake_binance import ENV_KEY, ENV_SECRET

    key_source = "--api-key" if args.api_key else (ENV_KEY if os.environ.get(ENV_KEY) else None)
    secret_source = "--api-secret" if args.api_secret else (ENV_SECRET if os.environ.get(ENV_SECRET) else None)
    try:
        fb = make_fake(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(fb, args, key_source, secret_source))
    except KeyboardInterrupt:
        print("fake binance stopped", flush=True)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def make_fake(args: argparse.Namespace) -> FakeBinance:
    from sim.fake_binance import FakeBinance

    return FakeBinance(
        data=args.data if len(args.data) > 1 else args.data[0],
        api_key=args.api_key,
        api_secret=args.api_secret,
        speed=args.speed,
        host=args.host,
        port=args.port,
        balances=_balances(args.balance),
        maker_fee=args.maker_fee,
        taker_fee=args.taker_fee,
        weight_limit=args.weight_limit,
        ban_seconds=args.ban_seconds,
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        max_lifetime=args.max_lifetime,
        start=args.start,
        restamp=not args.no_restamp,
        queue_model=args.queue_model,
    )


async def _serve(fb: FakeBinance, args: argparse.Namespace, key_source: str | None, secret_source: str | None) -> None:
    await fb.start()
    try:
        if args.clock_skew_ms:
            fb.set_clock_skew(args.clock_skew_ms)
        if args.ack_delay_ms:
            fb.set_ack_delay(args.ack_delay_ms)
        if args.lose_acks:
            fb.lose_next_acks(args.lose_acks, args.lost_ack_mode)
        cap = fb.capture
        what = f"{len(cap.records)} records of {', '.join(cap.symbols)}" if cap is not None else "no data"
        speed = "max" if fb.speed == 0 else f"{fb.speed:g}x"
        when = "now" if args.start == "now" else "at the first subscription"
        print(f"fake binance: replaying {what} at {speed} speed (replay starts {when})")
        print(f"  REST       {fb.rest_url}        (/api/v3/...)")
        print(f"  WS market  {fb.ws_url}          (/ws/<stream>, /stream?streams=a/b)")
        print(f"  WS API     {fb.ws_api_url}")
        print(f"  faults     POST {fb.rest_url}/_fake/<action>  (status: GET {fb.rest_url}/_fake/status)")
        print(f"  api key    {'from ' + key_source if key_source else fb.api_key + '  (generated for this run)'}")
        print(
            f"  api secret {'from ' + secret_source if secret_source else fb.api_secret + '  (generated for this run)'}"
        )
        print("Ctrl-C to stop", flush=True)
        tasks = []
        if args.gap_every > 0:
            tasks.append(asyncio.create_task(_every(args.gap_every, lambda: fb.drop_diffs(1))))
        if args.disconnect_every > 0:
            tasks.append(asyncio.create_task(_every(args.disconnect_every, lambda: fb.disconnect())))
        await fb.replay_done.wait()
        print("capture exhausted: streams stay open without data; REST and orders keep working", flush=True)
        await asyncio.Event().wait()
    finally:
        await fb.stop()


async def _every(seconds: float, action) -> None:
    while True:
        await asyncio.sleep(seconds)
        action()
