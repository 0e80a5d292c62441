"""The API's read cache: a flood of identical reads costs the trading loop one bridge call per
cache period, concurrent reads share one call, a mutation makes the next read fresh, and an
unreachable trading process is not remembered."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from daemon_process import CAPTURE, Daemon, paper_config, start_daemon

from engine.daemon.api.cache import ReadCache
from engine.daemon.bridge import BridgeError


class TradingSide:
    """Stands in for the bridge: counts the calls that reach it, answers after ``gate`` opens."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.value = 1
        self.fail: BridgeError | None = None

    async def call(self, op: str, args: dict[str, Any]) -> Any:
        self.calls.append((op, args))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {"op": op, "value": self.value}


async def test_concurrent_identical_reads_share_one_bridge_call() -> None:
    side = TradingSide()
    side.gate.clear()
    cache = ReadCache(side.call, ttl=60, spacing=0)
    waiters = [asyncio.ensure_future(cache.get("status", {})) for _ in range(50)]
    await asyncio.sleep(0)
    side.gate.set()
    results = await asyncio.gather(*waiters)
    assert len(side.calls) == 1
    assert all(r == {"op": "status", "value": 1} for r in results)


async def test_reads_within_the_period_are_answered_from_the_cache_and_args_are_keys() -> None:
    side = TradingSide()
    cache = ReadCache(side.call, ttl=60, spacing=0)
    for _ in range(100):
        await cache.get("orders", {"status": "pending", "limit": 100})
    await cache.get("orders", {"limit": 100, "status": "pending"})  # same args, other order
    await cache.get("orders", {"status": "rejected", "limit": 100})
    assert [c[1]["status"] for c in side.calls] == ["pending", "rejected"]


async def test_a_mutation_makes_the_next_read_fresh_even_one_in_flight() -> None:
    side = TradingSide()
    cache = ReadCache(side.call, ttl=60, spacing=0)
    assert (await cache.get("status", {}))["value"] == 1
    side.value = 2
    side.gate.clear()
    in_flight = asyncio.ensure_future(cache.get("status", {}))
    await asyncio.sleep(0)
    cache.invalidate()  # a mutation answered while that read was on its way
    side.gate.set()
    await in_flight
    side.value = 3
    assert (await cache.get("status", {}))["value"] == 3


async def test_refusals_are_cached_but_an_unreachable_trading_process_is_not() -> None:
    side = TradingSide()
    cache = ReadCache(side.call, ttl=60, spacing=0)
    side.fail = BridgeError(404, "Order not found: 7", "order_id")
    for _ in range(3):
        with pytest.raises(BridgeError) as err:
            await cache.get("order", {"order_id": "7"})
        assert (err.value.status, err.value.error) == (404, "Order not found: 7")
    assert len(side.calls) == 1
    side.fail = BridgeError(503, "Trading process unreachable")
    for _ in range(2):
        with pytest.raises(BridgeError):
            await cache.get("status", {})
    side.fail = None
    assert (await cache.get("status", {}))["value"] == 1
    assert [c[0] for c in side.calls] == ["order", "status", "status", "status"]


async def test_a_cancelled_request_does_not_cancel_the_shared_call() -> None:
    side = TradingSide()
    side.gate.clear()
    cache = ReadCache(side.call, ttl=60, spacing=0)
    first = asyncio.ensure_future(cache.get("positions", {}))
    second = asyncio.ensure_future(cache.get("positions", {}))
    await asyncio.sleep(0)
    first.cancel()  # that HTTP client went away
    side.gate.set()
    assert await second == {"op": "positions", "value": 1}
    assert len(side.calls) == 1


async def test_with_no_cache_period_every_read_reaches_the_trading_process() -> None:
    side = TradingSide()
    cache = ReadCache(side.call, ttl=0)
    for _ in range(3):
        await cache.get("status", {})
    assert len(side.calls) == 3


async def test_reads_of_one_op_with_different_args_wait_their_turn_or_are_refused() -> None:
    side = TradingSide()
    cache = ReadCache(side.call, ttl=60, spacing=60)  # one bridge call per op a minute
    assert (await cache.get("orderbook", {"symbol": "BTC-USDT"}))["value"] == 1
    # another symbol would wait a minute for the op's next turn: refused now, the loop untouched
    with pytest.raises(BridgeError) as err:
        await cache.get("orderbook", {"symbol": "ETH-USDT"})
    assert err.value.status == 503 and "retry" in err.value.error
    assert (await cache.get("status", {}))["value"] == 1  # other ops have their own turns
    assert [c[0] for c in side.calls] == ["orderbook", "status"]


# --- against a running daemon ------------------------------------------------------------------------
def _bridge_calls(d: Daemon, op: str) -> float:
    text = d.get("/metrics").text
    m = re.search(rf'^hft_api_bridge_calls_total\{{op="{op}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")
def test_a_flood_of_reads_costs_the_trading_loop_one_call_per_cache_period(tmp_path: Path) -> None:
    # a cache period far longer than the flood: every request after the first is served from it
    d = start_daemon(tmp_path, paper_config(tmp_path, api={"read_cache_ms": 600_000}))
    try:
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda _: d.get("/api/v1/positions"), range(200)))
        assert all(r.status == 200 for r in replies)
        assert len({r.body for r in replies}) == 1
        assert _bridge_calls(d, "positions") == 1
        assert d.signed("POST", "/api/v1/config", {"trading_enabled": False}).status == 200
        assert d.get("/api/v1/status").json["trading_enabled"] is False  # a mutation clears the cache
    finally:
        d.stop()
