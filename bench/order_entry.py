"""Order entry round trip, REST vs WebSocket API, against the loopback fake Binance.

    python -m bench.order_entry [--orders 300] [--data PATH]

Each round places a LIMIT_MAKER buy far below the market (it rests, nothing fills) and cancels
it, over REST through aiohttp (``POST``/``DELETE /api/v3/order`` on the keep-alive session), over
REST on the raw keep-alive order connection (``BinanceRest.request_now``; order entry sends the
same request rendered from a template) and over the WS API (``order.place``/``order.cancel``).
Times are measured in this process from the call to the decoded answer, so they include signing,
encoding, loopback transport, the fake's matching and decoding. Loopback hides network latency:
the numbers compare client and protocol overhead, not what a link to Binance would show.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

from bench import REPO
from engine.logs import setup_logging
from venues.binance.config import Credentials, parse_config
from venues.binance.decode import decode_order
from venues.binance.rest import BinanceRest
from venues.binance.time_sync import ServerClock
from venues.binance.ws_api import BinanceWsApi
from venues.common.loop import run

DEFAULT_DATA = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def summary(name: str, us: list[float]) -> str:
    return (
        f"{name:<22} n={len(us):<5} p50={pct(us, 50):8.1f} us  p90={pct(us, 90):8.1f} us  "
        f"p99={pct(us, 99):8.1f} us  mean={statistics.fmean(us):8.1f} us"
    )


async def bench(orders: int, data: Path) -> dict[str, list[float]]:
    from sim.fake_binance.server import FakeBinance  # the fake is a test/bench dependency only

    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    creds = Credentials(key, secret)
    big = {"BTC": "1000", "USDT": "100000000"}
    async with FakeBinance(
        data=data,
        api_key=key,
        api_secret=secret,
        start="manual",
        balances=big,
        orders_per_10s=1_000_000,
        orders_per_day=10_000_000,
        weight_limit=1_000_000,
    ) as fb:
        await fb.advance(500)
        cfg = parse_config(
            {
                "rest_url": fb.rest_url,
                "ws_url": fb.ws_url,
                "ws_api_url": fb.ws_api_url,
                "rate_limits": {
                    "request_weight_per_minute": 1_000_000,
                    "orders_per_10s": 100_000,
                    "orders_per_day": 10_000_000,
                },
            },
            "<bench>",
            env={},
        )
        price = fb.book("BTCUSDT").best_bid_fixed // 2 // 1_000_000 * 1_000_000
        px = f"{price // 10**8}.{price % 10**8:08d}"
        out: dict[str, list[float]] = {
            "rest place": [],
            "rest cancel": [],
            "raw rest place": [],
            "raw rest cancel": [],
            "ws place": [],
            "ws cancel": [],
        }
        async with BinanceRest(cfg, creds) as rest:
            await rest.sync_time()
            pool = rest.open_order_connections()
            if pool is None or not await pool.wait_ready(10):
                raise RuntimeError("raw order connection did not open")
            api = BinanceWsApi(cfg, creds, rest.clock if rest.clock.measured else ServerClock(), rest.limiter)
            api.start()
            if not await api.wait_connected(10):
                raise RuntimeError("WS API did not connect")
            base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "quantity": "0.001", "price": px}
            for i in range(orders + 20):  # the first rounds warm up connections and caches
                cid = f"bench-r{i}"
                t0 = time.perf_counter_ns()
                await rest.new_order({**base, "newClientOrderId": cid, "newOrderRespType": "ACK"})
                t1 = time.perf_counter_ns()
                await rest.cancel_order("BTCUSDT", cid)
                t2 = time.perf_counter_ns()
                cid = f"bench-h{i}"
                h0 = time.perf_counter_ns()
                sent = rest.request_now(
                    "POST", "/api/v3/order", {**base, "newClientOrderId": cid, "newOrderRespType": "ACK"}, orders=1
                )
                assert sent is not None
                decode_order(await rest.finish(sent))
                h1 = time.perf_counter_ns()
                sent = rest.request_now("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": cid})
                assert sent is not None
                decode_order(await rest.finish(sent))
                h2 = time.perf_counter_ns()
                cid = f"bench-w{i}"
                t3 = time.perf_counter_ns()
                msg = await api.call(
                    "order.place", {**base, "newClientOrderId": cid, "newOrderRespType": "ACK"}, signed=True, orders=1
                )
                decode_order(msg.result)
                t4 = time.perf_counter_ns()
                msg = await api.call("order.cancel", {"symbol": "BTCUSDT", "origClientOrderId": cid}, signed=True)
                decode_order(msg.result)
                t5 = time.perf_counter_ns()
                if i >= 20:
                    out["rest place"].append((t1 - t0) / 1e3)
                    out["rest cancel"].append((t2 - t1) / 1e3)
                    out["raw rest place"].append((h1 - h0) / 1e3)
                    out["raw rest cancel"].append((h2 - h1) / 1e3)
                    out["ws place"].append((t4 - t3) / 1e3)
                    out["ws cancel"].append((t5 - t4) / 1e3)
            await api.stop()
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=300, help="measured place+cancel rounds per protocol")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="capture the fake replays")
    args = ap.parse_args(argv)
    setup_logging(None)  # component logs stay quiet; the numbers go to stdout
    if not args.data.exists():
        print(f"error: capture not found at {args.data}", file=sys.stderr)
        return 2
    results = run(bench(args.orders, args.data))
    for name, us in results.items():
        print(summary(name, us))
    return 0


if __name__ == "__main__":
    sys.exit(main())
