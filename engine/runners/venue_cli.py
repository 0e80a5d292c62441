"""``hft venue ...``: the guide's venue scripts, asking an exchange directly with the system's own
config and keys (``list_symbols.sh``, ``get_exchange_filters.sh``, ``query_exchange_order.sh``,
``check_balances.sh``, ``test_api_key.sh``, ``test_exchange_latency.sh``).

Each command takes the exchange's name as the registry knows it and reaches it through the venue's
optional tools (``engine.venue.tools``, ``VenueEntry.tools``), with the endpoints of its exchange
config (``--config``, default the shipped ``config/exchanges/<venue>.json``) and the environment
overrides its adapter honours (``BINANCE_REST_URL``, ``KRAKEN_REST_URL``, ``COINBASE_REST_URL``...).
Keys come from the environment only and are never printed.

Exit status, the same for every command: 0 done (or healthy), 1 the venue refused or failed (bad
key, unknown order, unknown symbol, no answer), 2 bad arguments, unknown exchange, bad config or
missing keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from engine.errors import HftError

EXCHANGE_HELP = "exchange name, e.g. binance (known: the registry's venues with tools)"


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return v


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    venue = sub.add_parser("venue", help="ask an exchange directly: symbols, filters, orders, balances, keys, latency")
    vsub = venue.add_subparsers(dest="venue_command", metavar="QUESTION", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = vsub.add_parser(name, help=help_, description=help_)
        p.add_argument("exchange", nargs="?", help=EXCHANGE_HELP)
        p.add_argument("--config", help="the exchange config (default: config/exchanges/<exchange>.json)")
        p.set_defaults(func=cmd_venue)
        return p

    p = add("symbols", "the exchange's symbols, one per line, dashed (BTC-USDT) (guide §4.3)")
    p.add_argument("--all", action="store_true", help="also those not trading now, with the venue's status")
    p = add("filters", "a symbol's trading rules as JSON: .filters.PRICE_FILTER / LOT_SIZE / NOTIONAL, .raw (§4.3)")
    p.add_argument("symbol", nargs="?", help="dashed symbol, e.g. BTC-USDT")
    p = add("order", "one order as the exchange knows it (§4.2); exit 1 when it does not know it")
    p.add_argument("order_id", nargs="?", help="the exchange's order id (with --client-id: our client order id)")
    p.add_argument("--client-id", action="store_true", help="ORDER_ID is a client order id")
    p.add_argument("--symbol", help="the order's symbol (Binance needs one; default: each of the config's)")
    p.add_argument("--json", action="store_true", help="the order as JSON, with the venue's own object under raw")
    p = add("balances", "the account's balances at the exchange (§4.1, §4.3)")
    p.add_argument("--json", action="store_true", help="as JSON: asset -> free, locked, total")
    add("test-key", "one signed read with the configured API key (§2.2)")
    p = add("latency", "round trips of the cheapest public request and of a signed read (§5.1)")
    p.add_argument("--samples", type=_positive_int, default=20, help="public probes (default 20)")
    p.add_argument(
        "--signed-samples",
        type=_positive_int,
        help="signed probes (default: --samples, at most what the venue's limits allow at once)",
    )
    p.add_argument(
        "--interval", type=_non_negative, help="seconds between public probes (default: what the venue's limit asks)"
    )


def _tools_entries() -> dict[str, str]:
    from engine.runners import registry

    out = {}
    for name in registry.names():
        e = registry.entry(name)
        if e.tools:
            out[name] = e.tools
    return out


def cmd_venue(args: argparse.Namespace) -> int:
    from engine.runners import registry

    known = _tools_entries()
    if not args.exchange:
        print(f"error: name an exchange (known: {', '.join(sorted(known))})", file=sys.stderr)
        return 2
    exchange = str(args.exchange).lower()
    if exchange not in known:
        print(f"error: unknown exchange {args.exchange!r} (known: {', '.join(sorted(known))})", file=sys.stderr)
        return 2
    # checked here rather than by argparse, so that a missing exchange is named first, with the list
    missing = {"filters": ("symbol", "a symbol, e.g. BTC-USDT"), "order": ("order_id", "an order id")}
    need = missing.get(args.venue_command)
    if need is not None and not getattr(args, need[0]):
        print(f"error: name {need[1]}, after the exchange", file=sys.stderr)
        return 2
    config = Path(args.config) if args.config else registry.entry(exchange).config
    if config is not None and not config.is_file():
        print(f"error: {config}: exchange config not found", file=sys.stderr)
        return 2
    run = {
        "symbols": _symbols,
        "filters": _filters,
        "order": _order,
        "balances": _balances,
        "test-key": _test_key,
        "latency": _latency,
    }[args.venue_command]
    return asyncio.run(_with_tools(known[exchange], config, args, run))


async def _with_tools(
    target: str, config: Path | None, args: argparse.Namespace, run: Callable[[Any, argparse.Namespace], Awaitable[int]]
) -> int:
    from engine.runners.registry import load
    from engine.venue.tools import ToolError

    try:
        tools = load(target)(config, None)
    except HftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return await run(tools, args)
    except ToolError as exc:
        print(f"{tools.venue}: {exc}", file=sys.stderr)
        return 1
    except (HftError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await tools.close()


async def _symbols(tools: Any, args: argparse.Namespace) -> int:
    rows = sorted(await tools.list_symbols(), key=lambda s: s.symbol)
    for s in rows:
        if args.all:
            print(f"{s.symbol}\t{s.status}")
        elif s.tradable:
            print(s.symbol)
    return 0


async def _filters(tools: Any, args: argparse.Namespace) -> int:
    print(json.dumps(await tools.filters(args.symbol), indent=2))
    return 0


def _ts(ns: int) -> str:
    if not ns:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns // 1_000_000 % 1000:03d} UTC"


async def _order(tools: Any, args: argparse.Namespace) -> int:
    order = await tools.query_order(args.order_id, client_id=args.client_id, symbol=args.symbol)
    what = "client order id" if args.client_id else "order id"
    if order is None:
        print(
            f"Order not found on {tools.venue}: {what} {args.order_id} "
            "(§4.2: mark it rejected locally and find out why no acknowledgement came)"
        )
        return 1
    if args.json:
        print(json.dumps(order.as_json(), indent=2))
        return 0
    print(f"{tools.venue} order {order.venue_order_id} (client order id {order.client_order_id or '-'})")
    print(f"  symbol      {order.symbol}")
    kind = " ".join(x for x in (order.side, order.order_type, "post-only" * order.post_only, order.time_in_force) if x)
    print(f"  side/type   {kind}")
    print(f"  price       {order.price}")
    print(f"  quantity    {order.qty} (filled {order.filled})")
    print(f"  status      {order.status} (venue: {order.venue_status})")
    print(f"  created     {_ts(order.created_ns)}")
    print(f"  updated     {_ts(order.updated_ns)}")
    return 0


async def _balances(tools: Any, args: argparse.Namespace) -> int:
    balances = await tools.balances()
    if args.json:
        out = {a: {"free": b.free, "locked": b.locked, "total": b.total} for a, b in sorted(balances.items())}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{tools.venue} balances ({tools.endpoint}):")
    print(f"  {'asset':<10} {'free':>20} {'locked':>20} {'total':>20}")
    for a, b in sorted(balances.items()):
        print(f"  {a:<10} {b.free:>20.8f} {b.locked:>20.8f} {b.total:>20.8f}")
    if not balances:
        print("  (no asset with a balance)")
    return 0


async def _test_key(tools: Any, args: argparse.Namespace) -> int:
    from engine.venue.tools import ToolError

    try:
        what = await tools.test_key()
    except ToolError as exc:
        print(f"API key INVALID on {tools.venue}: {exc}")
        print("  (§2.2: generate a new key on the exchange, put it in the environment, restart)")
        return 1
    print(f"API key valid on {tools.venue} ({tools.endpoint}): {what}")
    return 0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _rtt_line(label: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p = {q: percentile(ms, q) for q in (50, 90, 99)}
    return (
        f"  {label:<34} n={len(ms):<4} P50 {p[50]:8.2f} ms  P90 {p[90]:8.2f} ms  "
        f"P99 {p[99]:8.2f} ms  max {ms[-1]:8.2f} ms"
    )


async def _latency(tools: Any, args: argparse.Namespace) -> int:
    interval = tools.public_probe_interval_s if args.interval is None else args.interval
    print(f"{tools.venue} API latency ({tools.endpoint}), round trips on one keep-alive connection:")
    first = await tools.probe_public()  # opens the connection (TCP, TLS): not a round trip of the API
    print(f"  first request, connection set-up included: {first * 1000:.2f} ms")
    public = []
    for _ in range(args.samples):
        if interval:
            await asyncio.sleep(interval)
        public.append(await tools.probe_public())
    print(_rtt_line(f"public {tools.public_probe}", public))
    if not tools.has_keys():
        print(f"  signed {tools.signed_probe}: skipped, no API key in the environment")
        return 0
    n = args.signed_samples or min(args.samples, tools.signed_probe_budget)
    signed = [await tools.probe_signed() for _ in range(n)]
    print(_rtt_line(f"signed {tools.signed_probe}", signed))
    return 0
