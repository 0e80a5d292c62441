"""Signals an operator sends the daemon, and its memory checks: SIGHUP reloads the config file
(risk limits and strategy parameters change while it trades; a venue or symbol change is
refused with a line saying a restart is needed; a broken file changes nothing), SIGUSR1 writes a
heap summary where ``analyze_heap.sh`` looks, and memory pressure acts in the guide's words."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from daemon_process import CAPTURE, FAST_MM, ApiError, fake_binance, metric, paper_config, start_daemon, wait_until

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


def test_sighup_reloads_limits_and_params_and_refuses_what_needs_a_restart(tmp_path: Path) -> None:
    heap_dir = tmp_path / "heap"
    cfg = paper_config(tmp_path, strategy=FAST_MM, heap_dump_dir=str(heap_dir))
    with fake_binance() as fb:
        d = start_daemon(tmp_path, cfg, fake=fb)
        try:
            data = json.loads(cfg.read_text())
            data["risk"]["max_order_size_usd"] = 1234
            data["strategies"][0]["params"]["half_spread_bps"] = 2.5
            cfg.write_text(json.dumps(data))
            d.proc.send_signal(signal.SIGHUP)

            def reloaded() -> bool:
                return d.call("risk_summary")["limits"]["max_order_size_usd"] == 1234

            wait_until(reloaded, 60, "the new risk limit", d)
            assert d.call("strategy", strategy_id="mm")["config"]["parameters"]["half_spread_bps"] == 2.5
            line = wait_until(
                lambda: next((x for x in d.log().splitlines() if "configuration reloaded from" in x), None), 30, "", d
            )
            assert "risk.max_order_size_usd" in line and "strategies.mm.parameters" in line

            # a symbol change cannot be applied while trading: refused, the rest still applies
            data["strategies"][0]["symbols"] = ["ETH-USDT"]
            data["risk"]["max_order_size_usd"] = 999
            cfg.write_text(json.dumps(data))
            got = d.call("config_reload")
            assert got["refused"] == ["strategies.mm (venue, symbols or class)"]
            assert got["changed"] == ["risk.max_order_size_usd"]
            refusal = "strategies.mm (venue, symbols or class) changed: a restart is needed to apply it"
            wait_until(lambda: refusal in d.log(), 30, "the refusal's log line", d)
            assert d.call("strategy", strategy_id="mm")["symbols"] == ["BTC-USDT"]

            # a broken file: the guide's error, nothing changes, the daemon trades on
            cfg.write_text("{ not json")
            with pytest.raises(ApiError) as err:
                d.call("config_reload")
            assert err.value.status == 400
            assert err.value.error.startswith(f"Failed to load configuration from {cfg}: invalid JSON")
            d.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "configuration not reloaded" in d.log("errors"), 60, "the reload refusal", d)
            assert d.call("risk_summary")["limits"]["max_order_size_usd"] == 999
            assert d.proc.poll() is None

            # SIGUSR1: a heap summary, tracemalloc started by the first one
            d.proc.send_signal(signal.SIGUSR1)
            first = wait_until(lambda: sorted(heap_dir.glob("hft_heap_*.dump")), 60, "a heap dump", d)
            d.proc.send_signal(signal.SIGUSR1)
            dumps = wait_until(lambda: len(list(heap_dir.glob("hft_heap_*.dump"))) == 2 and
                               sorted(heap_dir.glob("hft_heap_*.dump")), 60, "a second heap dump", d)  # fmt: skip
        finally:
            code = d.stop()
        assert code == 0, d.stderr()
    docs = [json.loads(p.read_text()) for p in dumps]
    assert first[0].name.startswith(f"hft_heap_{d.proc.pid}_")
    assert [doc["tracing"] for doc in docs] == ["started_now", "since_first_signal"]
    second = docs[1]
    assert second["format"] == "hft-heap-1" and second["pid"] == d.proc.pid and second["rss_bytes"] > 0
    assert second["top_lines"] and {"file", "line", "size_bytes", "count"} <= set(second["top_lines"][0])
    assert second["gc"]["objects"] > 0 and second["types"]
    assert "Heap dump written to" in d.log() and "tracemalloc started now" in d.log()


def test_memory_pressure_reduces_depth_and_samples_market_data(tmp_path: Path) -> None:
    cfg = paper_config(
        tmp_path,
        strategy=FAST_MM,
        memory_management={
            "memory_limit_mb": 1,  # far below what the process holds: pressure at once
            "check_interval_s": 0.2,
            "reduced_book_depth": 5,
            "actions": ["reduce_order_book_depth", "sample_market_data"],
        },
    )
    with fake_binance() as fb:
        d = start_daemon(tmp_path, cfg, fake=fb)
        try:
            wait_until(lambda: "Sampling market data: 1 in 10 updates recorded" in d.log(), 60, "sampling", d)
            wait_until(lambda: "Reducing order book depth to 5 levels" in d.log(), 60, "depth reduced", d)
            assert "High memory pressure: memory usage" in d.log()
            kinds = {i["kind"] for i in d.call("incidents")["incidents"]}
            assert "memory_pressure" in kinds
            snap = d.call("metrics")
            assert metric(snap, "hft_memory_pressure") == 1
            assert metric(snap, "hft_memory_usage_ratio") > 1
            assert d.call("status")["memory"]["limit_source"] == "memory_limit_mb"
            # the daily metrics log the guide reads before an OOM (§6.1: grep memory)
            daily = d.log_dir / f"metrics_{time.strftime('%Y%m%d')}.log"
            line = daily.read_text().splitlines()[-1]
            assert " memory rss_mb=" in line and "limit_mb=1 " in line and "pressure=1" in line
        finally:
            code = d.stop()
        assert code == 0, d.stderr()
