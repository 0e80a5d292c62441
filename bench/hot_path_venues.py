"""Tick-to-order latency of the live hot path on every venue, each against its loopback fake.

    python -m bench.hot_path_venues [--venues binance,kraken,coinbase] [--ticks 3000] [--every 1]

The same kind of measurement as ``bench.hot_path`` (which stays Binance's detailed benchmark and
is called here for Binance's row): the fake runs in a child process (spawned, pinned to the second
CPU when there is one) and replays a real capture as fast as this process reads it; this process
runs the real stack on uvloop: the venue adapter's feed (decode, the venue's book sync, book) ->
``Engine`` built as a live node (``LiveClock``, risk, OMS) -> ``bench.hot_path.TickQuoter`` sending
a new LIMIT IOC bid far below the market on every depth update -> the adapter's execution client.

Timed with ``time.perf_counter_ns`` in this process, from the moment the WebSocket layer hands a
market-data frame over (before any decoding) to the order's bytes being handed to its socket:

- Kraken: the private WebSocket v2's transport ``write`` of the ``add_order`` frame (a
  ``venues.common.tap.TransportTap`` on it); the adapter writes inside the strategy's call.
- Coinbase: aiohttp's ``on_request_chunk_sent`` for the ``POST /orders`` body (a trace on the
  adapter's session): the adapter sends orders from aiohttp tasks, so this includes the loop turn
  and the wait for a pooled connection.

Writes that happen after the frame's call returned are matched to frames first in, first out (one
order per frame). Also printed: market-data events handled per second over the measured window and
the peak resident memory of this process. Bench-only settings (documented, never in production):
the fakes' and adapters' rate limits are raised out of the way, as ``bench.hot_path`` does for
Binance; the Kraken fake's per-pair trading counter (60, -1/s) is replaced by an unlimited one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import resource
import secrets
import sys
import time
from base64 import b64encode
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench import interpreter
from bench.hot_path import DEFAULT_DATA, TickQuoter, _cpus, _pin, pct
from engine.gcpolicy import trading_gc
from engine.logs import setup_logging
from engine.risk import RiskLimits
from engine.runners.node import build_node
from engine.runners.spec import code_spec
from engine.venue import FeedCallbacks
from venues.common.loop import run
from venues.common.tap import TransportTap

SYMBOL = "BTC-USD"
VENUES = ("binance", "kraken", "coinbase")


# --- the fakes, in their own process -------------------------------------------------------------
def _fake(venue: str, key: str, secret: str, passphrase: str, events: int, pace: float) -> Any:
    """``pace``: Kraken, a multiple of real time (0: as fast as this process reads); Coinbase, the
    seconds between replayed events (its replay has no capture clock)."""
    if venue == "kraken":
        from sim.fake_kraken import FakeKraken

        return FakeKraken(
            api_key=key,
            api_secret=secret,
            speed=pace,
            start="subscribe",
            balances={"ZUSD": "1000000000", "XXBT": "1000"},
            rest_limit=1e9,
            rest_decay_per_s=1e9,
        )
    from sim.fake_coinbase import FakeCoinbase

    return FakeCoinbase(
        api_key=key,
        api_secret=secret,
        passphrase=passphrase,
        interval_s=pace,
        start="subscribe",
        balances={"USD": "1000000000", "BTC": "1000"},
        private_rate=(1e9, 10**9),
        public_rate=(1e9, 10**9),
        products=("BTC-USD",),
        btc_events=events,
    )


def _serve(
    pipe: Connection, venue: str, key: str, secret: str, passphrase: str, events: int, pace: float, cpu: int | None
) -> None:
    _pin(cpu)

    async def main() -> None:
        fake = _fake(venue, key, secret, passphrase, events, pace)
        async with fake:
            if venue == "kraken":
                from sim.fake_kraken.protocol import Counter

                # the per-pair trading counter (Starter: 60, -1/s) would refuse all but a few orders
                fake.exchange.trading["BTC/USD"] = Counter(1e12, 1e12)
                urls = {"rest_url": fake.rest_url, "ws_url": fake.ws_url, "ws_auth_url": fake.ws_auth_url}
            else:
                urls = {"rest_url": fake.rest_url, "ws_url": fake.ws_url, "user_ws_url": fake.ws_url}
            pipe.send(urls)
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)

    setup_logging(None)
    run(main())


class FakeProcess:
    def __init__(
        self, venue: str, key: str, secret: str, passphrase: str, events: int, pace: float, cpu: int | None
    ) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_serve, args=(child, venue, key, secret, passphrase, events, pace, cpu), daemon=True
        )  # fmt: skip

    def start(self, timeout_s: float = 120.0) -> dict[str, str]:
        self.proc.start()
        if not self.pipe.poll(timeout_s):
            raise RuntimeError("the fake did not start")
        return self.pipe.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self.pipe.send("stop")
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --- measurement ---------------------------------------------------------------------------------
@dataclass
class Probe:
    """Frame hand-over -> the order's bytes handed to its socket; one order per frame."""

    warmup: int
    submitted: Callable[[], int]
    samples: list[int] = field(default_factory=list)
    frames: int = 0
    ticks: int = 0
    first_ns: int = 0
    last_ns: int = 0
    _pending: deque[tuple[int, bool]] = field(default_factory=deque)
    _t0: int = 0
    _in_frame: bool = False
    _written: bool = False

    def wrap(self, inner: Callable[[bytes, int], None]) -> Callable[[bytes, int], None]:
        clock = time.perf_counter_ns

        def timed(frame: bytes, ts: int) -> None:
            before = self.submitted()
            self._written = False
            self._in_frame = True
            t0 = self._t0 = clock()
            try:
                inner(frame, ts)
            finally:
                self._in_frame = False
            self.frames += 1
            self.first_ns = self.first_ns or t0
            self.last_ns = t0
            if self.submitted() > before:
                self.ticks += 1
                counted = self.ticks > self.warmup
                if self._written:
                    if counted:
                        self.samples.append(self._write_ns - t0)
                else:
                    self._pending.append((t0, counted))

        return timed

    def on_write(self, now: int) -> None:
        if self._in_frame:
            if not self._written:
                self._written, self._write_ns = True, now
            return
        if self._pending:
            t0, counted = self._pending.popleft()
            if counted:
                self.samples.append(now - t0)

    _write_ns: int = 0


async def _round(venue: str, urls: dict[str, str], creds: tuple[str, str, str], args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    key, secret, passphrase = creds
    adapter: Any
    probes: list[Probe] = []
    if venue == "kraken":
        from venues.kraken.adapter import KrakenAdapter
        from venues.kraken.config import Credentials as KC
        from venues.kraken.config import parse_config as kraken_config
        from venues.kraken.signing import NonceSource

        limits = {"order_max": 10_000, "order_decay_per_s": 1000, "rest_max": 1000, "rest_decay_per_s": 100}
        cfg = kraken_config(
            {
                **urls,
                "symbols": [SYMBOL],
                "stale_data_timeout_s": 60.0,
                "silence_reconnect_s": 120.0,
                "order_timeout_s": 30.0,
                "rate_limits": limits,
            },
            "<bench>",
            env={},
        )
        adapter = KrakenAdapter(cfg, KC(key, secret), nonces=NonceSource(None))
    else:
        import aiohttp

        from venues.coinbase.adapter import CoinbaseAdapter
        from venues.coinbase.config import Credentials as CC
        from venues.coinbase.config import parse_config as coinbase_config

        limits = {"private_per_s": 1000, "private_burst": 10_000, "public_per_s": 1000, "public_burst": 10_000}
        cfg = coinbase_config(
            {
                **urls,
                "symbols": [SYMBOL],
                "stale_data_timeout_s": 60.0,
                "heartbeat_timeout_s": 120.0,
                "order_timeout_s": 30.0,
                "rate_limits": {**limits, "safety_margin": 0.0},
            },
            "<bench>",
            env={},
        )
        adapter = CoinbaseAdapter(cfg, CC(key, secret, passphrase))
        trace = aiohttp.TraceConfig()

        async def chunk_sent(_s: Any, _ctx: Any, p: Any) -> None:
            if p.method == "POST" and p.url.path == "/orders" and probes:
                probes[0].on_write(time.perf_counter_ns())

        trace.on_request_chunk_sent.append(chunk_sent)
        # the adapter's own session settings, plus the trace (its ``start`` keeps a session it has)
        adapter.rest.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=cfg.http_timeout_s),
            headers={"User-Agent": "hft-system", "Accept": "application/json"},
            trace_configs=[trace],
        )
    instruments = await adapter.load_instruments([SYMBOL])
    inst = instruments[SYMBOL]
    limits = RiskLimits(
        max_order_size_usd=10_000,
        max_position_usd=1e6,
        max_global_position_usd=1e6,
        daily_loss_limit_usd=1e6,
        max_orders_per_second=1e6,
        price_band_pct=5.0,
    )
    spec = code_spec("hot_path_venues", limits, {venue: {"USD": 1e9, "BTC": 1e3}})
    params = {"offset_bps": 100, "qty": 0.001, "mode": "place", "every": args.every}
    node = build_node(
        spec,
        "live",
        None,
        instruments={(venue, SYMBOL): inst},
        strategies=[TickQuoter("hot_path", venue, [SYMBOL], params)],
        loop=loop,
    )
    engine, book = node.engine, node.book_of[(venue, SYMBOL)]
    probe = Probe(args.warmup, lambda: engine.oms.submitted)
    probes.append(probe)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with trading_gc(args.gc_threshold):
        execution = await adapter.connect_execution(engine)
        engine.add_venue(execution, adapter.profile)
        if venue == "kraken":
            conn = execution.ws.ws
            conn.transport = TransportTap(conn.transport, lambda _n, now: probe.on_write(now))
        callbacks = FeedCallbacks(engine.on_book, engine.on_trade, engine.on_incident, None, engine.on_book_invalid)
        feed = adapter.market_data({SYMBOL: book}, callbacks)
        feed.ws.on_message = probe.wrap(feed.ws.on_message)
        engine.start()
        feed.start()
        try:
            last, quiet_since, deadline = -1, loop.time(), loop.time() + args.max_seconds
            enough = args.ticks + args.warmup
            while loop.time() - quiet_since < 2.0 and loop.time() < deadline and probe.ticks < enough:
                await asyncio.sleep(0.1)
                if probe.frames != last:
                    last, quiet_since = probe.frames, loop.time()
            # the last orders' writes (Coinbase: aiohttp tasks) before the figures are read
            await asyncio.sleep(0.5)
        finally:
            engine.stop()
            await adapter.close()
            engine.recorder.close()
    span_s = max((probe.last_ns - probe.first_ns) / 1e9, 1e-9)
    return {
        "samples": probe.samples,
        "ticks": probe.ticks,
        "frames": probe.frames,
        "events_per_s": probe.frames / span_s,
        "unmatched": len(probe._pending),
        "orders": engine.oms.submitted,
        "rejected_local": engine.oms.rejected_local,
        "busy": round((time.process_time() - cpu0) / (time.perf_counter() - wall0), 2),
    }


def measure(venue: str, args: argparse.Namespace) -> dict:
    key = secrets.token_hex(16)
    secret = b64encode(secrets.token_bytes(64)).decode()
    passphrase = secrets.token_urlsafe(12)
    cpus = _cpus()
    if cpus:
        _pin(cpus[0])
    if venue == "kraken":
        pace = 0.0 if args.speed == "max" else float(args.speed)
    else:
        pace = 0.0 if args.speed == "max" else 0.1 / float(args.speed)  # Binance's 100 ms depth pace, sped up
    fake = FakeProcess(venue, key, secret, passphrase, args.events, pace, cpus[1] if len(cpus) > 1 else None)
    try:
        urls = fake.start()
        return run(_round(venue, urls, (key, secret, passphrase), args))
    finally:
        fake.stop()


def measure_binance(args: argparse.Namespace) -> dict:
    """``bench.hot_path``'s own measurement (WS API, new IOC order per tick), unchanged."""
    from bench import hot_path

    hot_path.FAKE_SPEED = args.speed if args.speed == "max" else float(args.speed)
    r = hot_path.Run(entry="ws", mode="place", ticks=args.ticks, every=args.every, gc_threshold=args.gc_threshold)
    t0 = time.perf_counter()
    samples, rounds = hot_path.bench([DEFAULT_DATA], r)
    wall = time.perf_counter() - t0
    frames = samples.depth_frames + samples.other_frames
    return {
        "samples": samples.frame_to_order,
        "ticks": samples.ticks,
        "frames": frames,
        # hot_path times no window of its own: whole rounds, fake start-up and the 2 s tail included
        "events_per_s": frames / wall,
        "unmatched": 0,
        "orders": sum(r_["orders"] for r_ in rounds),
        "rejected_local": sum(r_["rejected_local"] for r_ in rounds),
        "busy": rounds[-1]["busy"] if rounds else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hot_path_venues", description=__doc__.split("\n\n")[0])
    p.add_argument("--venues", default=",".join(VENUES), help="comma-separated, from binance,kraken,coinbase")
    p.add_argument("--ticks", type=int, default=3000, help="ticks to measure per venue (the fakes' data permitting)")
    p.add_argument("--events", type=int, default=20000, help="Coinbase: capture events the fake replays")
    p.add_argument("--warmup", type=int, default=300, help="ticks not counted at the start")
    p.add_argument("--every", type=int, default=1, help="an order on every n-th depth update")
    p.add_argument("--gc-threshold", type=int, default=50_000, help="gen-0 threshold after setup")
    p.add_argument(
        "--speed",
        default="max",
        help="replay pace: max (as fast as read), or N times real time (Binance, Kraken; Coinbase: an event "
        "every 100/N ms)",
    )
    p.add_argument("--max-seconds", type=float, default=120.0, help="longest a venue's round may run")
    args = p.parse_args(argv)
    if args.speed != "max":
        try:
            if float(args.speed) <= 0:
                raise ValueError
        except ValueError:
            print(f"error: --speed: 'max' or a positive number, got {args.speed!r}", file=sys.stderr)
            return 2
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    bad = [v for v in venues if v not in VENUES]
    if bad or not venues:
        print(f"error: --venues: unknown {', '.join(bad) or '(none)'} (known: {', '.join(VENUES)})", file=sys.stderr)
        return 2
    setup_logging(None)
    print(f"interpreter: {interpreter()}; replay speed {args.speed}; an order every {args.every} depth update(s)")
    rows = []
    for venue in venues:
        r = measure_binance(args) if venue == "binance" else measure(venue, args)
        rows.append((venue, r))
        print(
            f"{venue}: {r['ticks']} ticks, {r['frames']} frames, {r['orders']} orders ({r['rejected_local']} "
            f"refused locally), {r['unmatched']} writes unmatched, this process busy {r['busy']:.0%}",
            flush=True,
        )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"{'venue':<9} {'n':>6} {'P50 us':>9} {'P99 us':>9} {'P99.9 us':>9} {'events/s':>10}")
    for venue, r in rows:
        s = r["samples"]
        if not s:
            print(f"{venue:<9} {0:>6} {'-':>9} {'-':>9} {'-':>9} {r['events_per_s']:>10.0f}")
            continue
        print(
            f"{venue:<9} {len(s):>6} {pct(s, 50):>9.1f} {pct(s, 99):>9.1f} "
            f"{pct(s, 99.9):>9.1f} {r['events_per_s']:>10.0f}"
        )
    print(f"peak RSS of this process (all venues measured in it): {rss_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
