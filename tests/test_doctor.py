"""``hft doctor``'s decisions on recorded answers: the documents below were captured from a
paper daemon (``hft paper CONFIG --api``) against the fake Binance, then edited into the faults
the guide's runbooks are for. The metrics lines come from the metrics fixture through the real
exposition code, as ``/api/v1/metrics`` serves them."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import metrics_fixture
import pytest

from engine.daemon import doctor, exposition
from engine.daemon.checks import messages, runbooks
from engine.daemon.checks.model import FAIL, PASS, SECTIONS, SKIP, WARN, Facts, Result

REPO = Path(__file__).resolve().parents[1]

# GET /api/v1/status of a paper daemon 9 s after start (captured)
STATUS: dict[str, Any] = {
    "status": "running", "mode": "paper", "version": "5f5ad43-dirty", "uptime_s": 8.72,
    "started_at": "2026-12-07T20:01:06.704118Z", "pid": 31284, "trading_enabled": True,
    "exchanges": {"binance": {"status": "connected",
                              "books": {"BTC-USDT": {"valid": True, "reason": "", "age_ms": 69.138}},
                              "reconnects": 0, "sequence_gaps": 0}},
    "strategies": {"running": 1, "stopped": 0}, "open_orders": 2, "run_dir": "/tmp/h4/run1/run",
    "api_url": "http://127.0.0.1:36623", "log_dir": "/tmp/h4/run1/logs",
    "memory": {"usage_ratio": 0.0, "limit_bytes": 25276182528, "limit_source": "ram", "pressure": False},
}  # fmt: skip
# GET /api/v1/strategies/my_strategy (captured, performance trimmed)
STRATEGY: dict[str, Any] = {
    "strategy_id": "my_strategy", "status": "running", "venue": "binance", "symbols": ["BTC-USDT"],
    "class": "strategies.market_maker:MarketMaker",
    "config": {"parameters": {"half_spread_bps": 0.5, "order_size": 0.001}, "log_level": "INFO"},
    "performance": {"net_pnl": -0.18, "orders_submitted": 10, "fills": 1},
}  # fmt: skip
URL = "http://127.0.0.1:36623"


def iso(seconds_ago: float, now: float) -> str:
    return dt.datetime.fromtimestamp(now - seconds_ago, dt.UTC).isoformat().replace("+00:00", "Z")


def order(oid: str, status: str, seconds_ago: float, now: float, error: str | None = None) -> dict[str, Any]:
    return {"order_id": oid, "client_order_id": f"c{oid}", "exchange_order_id": None, "exchange": "binance",
            "symbol": "BTC-USDT", "strategy_id": "my_strategy", "side": "buy", "type": "limit",
            "price": "60000.00", "quantity": "0.001", "filled_quantity": "0", "status": status,
            "created_at": iso(seconds_ago, now), "updated_at": iso(seconds_ago, now),
            "error_message": error}  # fmt: skip


def metrics_lines(**p99_us: float) -> list[dict[str, Any]]:
    """The fixture's snapshot as /api/v1/metrics serves it, with some stages' P99 replaced."""
    samples = exposition.snapshot_samples(metrics_fixture.snapshot())
    lines = [json.loads(x) for x in exposition.json_lines(samples).splitlines()]
    for line in lines:
        stage = line["name"].removesuffix("_latency")
        if stage in p99_us:
            line["p99"] = p99_us[stage]
    return lines


def healthy(tmp_path: Path) -> Facts:
    now = time.time()
    return Facts(
        url=URL, now=now, status=copy.deepcopy(STATUS), metrics=metrics_lines(),
        prometheus_text="# HELP hft_order_count Orders held in memory.\nhft_order_count 312.0\n",
        orders_pending=[order("7", "pending", 2.0, now)], orders_rejected=[], strategies=[copy.deepcopy(STRATEGY)],
        risk_violations=[], pid_file=tmp_path / "hft.pid", pid_from_file=31284, pid_alive=True, port=36623,
        port_owner_pids=[31284, 31307], log_dir=tmp_path, rss_bytes=260 * 2**20, mem_total_bytes=24105 * 2**20,
        mem_available_bytes=20000 * 2**20, config_path=tmp_path / "paper.json", config={"name": "paper"},
    )  # fmt: skip


def by(results: list[Result], section: str, check: str | None = None) -> list[Result]:
    return [r for r in results if r.section == section and (check is None or check in r.check)]


def test_a_healthy_daemon_passes_every_section(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.logs = {"errors.log": []}
    results = doctor.run_checks(f, SECTIONS)
    bad = [r for r in results if r.status in (FAIL, WARN)]
    assert bad == []
    assert doctor.exit_code(results) == 0
    assert {r.section for r in results} >= {"baseline", "connectivity", "market_data", "orders", "latency", "memory"}


def test_a_disconnected_exchange_fails_with_the_guide_reconnect_step(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.status["exchanges"]["binance"]["status"] = "disconnected"
    results = doctor.run_checks(f, ["connectivity"])
    [r] = by(results, "connectivity", "binance")
    assert r.status == FAIL and "disconnected" in r.detail
    assert "§2.2" in r.next_step and "/api/v1/exchanges/binance/reconnect" in r.next_step
    assert doctor.exit_code(results) == 1


def test_stale_book_fails_past_the_venue_timeout(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.status["exchanges"]["binance"]["books"]["BTC-USDT"]["age_ms"] = 7200.0
    [r] = by(runbooks.market_data(f), "market_data", "BTC-USDT")
    assert r.status == FAIL and "stale" in r.detail and "> 5 s" in r.detail
    assert "§3.2" in r.next_step and "check_market_data_latency.sh" in r.next_step
    # the venue's own stale_data_timeout_s (config/exchanges/binance.json) moves the line
    f.exchange_configs = {"binance": {"stale_data_timeout_s": 10.0}}
    [r] = by(runbooks.market_data(f), "market_data", "BTC-USDT")
    assert r.status == PASS


def test_invalid_book_fails_with_the_snapshot_step(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.status["exchanges"]["binance"]["books"]["BTC-USDT"] |= {"valid": False, "reason": "crossed_book"}
    [r] = by(runbooks.market_data(f), "market_data", "BTC-USDT")
    assert r.status == FAIL and "crossed_book" in r.detail
    assert "§3.3" in r.next_step and "/api/v1/marketdata/snapshot/binance/BTC-USDT" in r.next_step


def test_sequence_gaps_warn_from_status_or_metrics(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.status["exchanges"]["binance"]["sequence_gaps"] = 3
    [r] = by(runbooks.market_data(f), "market_data", "sequence gaps")
    assert r.status == WARN and "3 sequence gap" in r.detail and 'grep "sequence gap"' in r.next_step
    del f.status["exchanges"]["binance"]["sequence_gaps"]  # an older daemon: the counter tells
    f.metrics = [{"name": "sequence_gaps_total", "labels": {"exchange": "binance"}, "value": 2}]
    [r] = by(runbooks.market_data(f), "market_data", "sequence gaps")
    assert r.status == WARN and "2 sequence gap" in r.detail


def test_orders_pending_over_30s_fail_and_name_the_order(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.orders_pending = [order("7", "pending", 5.0, f.now), order("8", "pending", 45.0, f.now)]
    [r] = by(runbooks.orders(f), "orders", "pending")
    assert r.status == FAIL and "8 (45 s)" in r.detail and "7 (" not in r.detail
    assert "§4.2" in r.next_step and "/api/v1/orders/8/reconcile" in r.next_step


@pytest.mark.parametrize(
    ("error", "step"),
    [
        ("Insufficient balance: USDT free 3.2 < 60.0", "check_balances.sh binance"),
        ("Symbol not found: binance BTC-XXX", "list_symbols.sh binance | grep BTC-USDT"),
        ("LOT_SIZE: qty > 0.00001 and qty % 0.00001 == 0", "jq .filters.LOT_SIZE"),
        ("Price filter: price > 0.00000100 and < 1000000.00000000", "get_exchange_filters.sh binance BTC-USDT"),
        ("Risk check failed: Position limit exceeded", "§4.1"),
    ],
)
def test_rejected_orders_branch_on_error_message(tmp_path: Path, error: str, step: str) -> None:
    f = healthy(tmp_path)
    f.orders_rejected = [order("9", "rejected", 3.0, f.now, error), order("10", "rejected", 1.0, f.now, error)]
    [r] = by(runbooks.orders(f), "orders", "rejected")
    assert r.status == WARN and f'2 rejected with error_message "{error}"' in r.detail
    assert step in r.next_step


def test_latency_over_the_guide_targets(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.metrics = metrics_lines(tick_to_order=1850.0, market_data=140.0)
    results = runbooks.latency(f)
    [t2o] = by(results, "latency", "tick_to_order")
    assert t2o.status == FAIL and "P99=1850.0us" in t2o.detail and "§5.1" in t2o.next_step
    [md] = by(results, "latency", "market_data")
    assert md.status == WARN
    [ack] = by(results, "latency", "venue_ack")
    assert ack.status == PASS  # the venue's round trip has no budget of ours


def test_memory_over_the_configured_threshold_fails(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.memory_limit_config_bytes = 200 * 2**20  # daemon.memory_management.memory_limit_mb: 200
    f.memory_threshold_pct = 80.0
    [r] = by(runbooks.memory(f), "memory", "RSS")
    assert r.status == FAIL and "memory_limit_mb" in r.detail and "threshold 80%" in r.detail
    assert "analyze_heap.sh" in r.next_step and "kill -USR1" in r.next_step
    f.memory_limit_config_bytes = None  # back to the daemon's own limit (RAM): 260 MiB of 24 GB
    [r] = by(runbooks.memory(f), "memory", "RSS")
    assert r.status == PASS


def test_port_held_by_another_process_fails_naming_it(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.status, f.pid_alive = None, False
    f.errors["status"] = "no answer"
    f.port_owner_pids, f.port_owner_cmdlines = [999], {999: "python3 -m http.server 36623"}
    [r] = runbooks.port(f)
    assert r.status == FAIL and "pid 999" in r.detail and "not the daemon" in r.detail
    assert "lsof -i :36623" in r.next_step


def test_fatal_log_message_fails_only_while_the_daemon_is_down(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.logs = {
        "system.log": ["2026-12-07 20:01:06.100 ERROR [hft.system] Failed to bind to port 8080: Address already in use"]
    }
    [r] = messages.scan(f, daemon_up=False)
    assert r.status == FAIL and "Failed to bind to port" in r.check and "§2.1" in r.next_step
    [r] = messages.scan(f, daemon_up=True)
    assert r.status == WARN


def test_every_guide_message_is_known_to_the_scan() -> None:
    from engine import messages as guide

    known = {m.text for m in messages.MESSAGES}
    assert {m.text for m in guide.CATALOGUE} <= known
    assert len(guide.CATALOGUE) == 23


def test_suggested_urls_with_query_strings_are_quoted(tmp_path: Path) -> None:
    """The guide's unquoted ``?``/``&`` break in a shell (operator-surface §1.4 item 4)."""
    f = healthy(tmp_path)
    f.status["exchanges"]["binance"] |= {"status": "disconnected", "sequence_gaps": 4}
    f.orders_pending = [order("8", "pending", 45.0, f.now)]
    f.orders_rejected = [order("9", "rejected", 3.0, f.now, "Rate limit exceeded")]
    f.metrics = metrics_lines(tick_to_order=5000.0)
    f.prometheus_url = "http://127.0.0.1:9"
    f.prometheus_up = []
    steps = " ".join(r.next_step for r in doctor.run_checks(f, SECTIONS))
    assert "http://" in steps
    for url in re.findall(r"\S*http://\S+", steps):
        if "?" in url or "&" in url:
            assert url[0] in "\"'", url


def test_unknown_section_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown section nope"):
        doctor.parse_sections(["baseline,nope"])
    assert doctor.parse_sections(["market-data", "logs"]) == ["market_data", "logs"]


def _hft(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_cli_without_a_daemon_fails_startup_and_exits_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = _hft("doctor", "--url", f"http://127.0.0.1:{port}", "--log-dir", str(tmp_path),
             "--pid-file", str(tmp_path / "none.pid"), "--json")  # fmt: skip
    assert p.returncode == 1, p.stderr
    doc = json.loads(p.stdout)
    assert doc["ok"] is False
    fails = {(r["section"], r["check"]) for r in doc["results"] if r["status"] == FAIL}
    assert ("baseline", "status API") in fails and ("startup", f"port {port}") in fails
    assert all(r["status"] == SKIP for r in doc["results"] if r["section"] == "connectivity")


def test_cli_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    p = _hft("doctor", "--only", "bogus")
    assert p.returncode == 2 and "--only: unknown section bogus" in p.stderr and "Traceback" not in p.stderr
    p = _hft("doctor", "--url", "127.0.0.1:8080")
    assert p.returncode == 2 and "--url" in p.stderr and "Traceback" not in p.stderr


def test_prometheus_check_reads_up_for_the_job(tmp_path: Path) -> None:
    f = healthy(tmp_path)
    f.prometheus_url = "http://127.0.0.1:9090"
    f.prometheus_up = [{"metric": {"job": "hft_system"}, "value": [1765000000.0, "1"]}]
    [r] = by(runbooks.monitoring(f), "monitoring", "prometheus")
    assert r.status == PASS
    f.prometheus_up = [{"metric": {"job": "hft_system"}, "value": [1765000000.0, "0"]}]
    [r] = by(runbooks.monitoring(f), "monitoring", "prometheus")
    assert r.status == FAIL and "§11.2" in r.next_step and "'http://127.0.0.1:9090/api/v1/query?query=up" in r.next_step


def test_memory_monitor_acts_once_per_crossing(tmp_path: Path) -> None:
    """enable_memory_monitoring.sh's watcher: over the threshold it writes one WARNING line, and
    again only after usage went back under."""
    from engine.daemon.operator.reports import Daemon, MemoryMonitor

    code = "import sys, time; print('ready', flush=True); time.sleep(60)"
    sleeper = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline() == "ready\n"  # its memory is mapped
        (tmp_path / "pid").write_text(str(sleeper.pid))
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps({"daemon": {"memory_management": {"memory_limit_mb": 1}}}))
        out = tmp_path / "out.txt"
        with out.open("w") as fh:
            d = Daemon(url="http://127.0.0.1:9", pid_file=str(tmp_path / "pid"), config=str(cfg), out=fh)
            mon = MemoryMonitor(d, threshold_pct=50.0, action="log", log_path=tmp_path / "memory_monitor.log")
            pct, fired = mon.check()
            assert pct > 50.0 and fired
            assert mon.check()[1] is False  # still above: no second alert
            mon.above = False  # as if usage had gone back under
            assert mon.check()[1] is True
        lines = (tmp_path / "memory_monitor.log").read_text().splitlines()
        assert len(lines) == 2 and "WARNING [memory_monitor] memory usage" in lines[0]
        assert "above threshold 50%" in lines[0] and f"pid {sleeper.pid}" in lines[0]
    finally:
        sleeper.kill()
        sleeper.wait()
