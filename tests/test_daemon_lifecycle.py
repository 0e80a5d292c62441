"""The daemon's life as an operator sees it: start-up refusals in the guide's words (a bad
config, the port taken, another daemon's pid file), the pid file, the start line in
``system.log``, the API process restarted when it dies, and SIGTERM: a graceful stop that
removes the pid file and, in live trading, leaves no open order at the venue."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_process import CAPTURE, REPO, fake_binance, paper_config, start_daemon, wait_until

HFT = [sys.executable, "-m", "engine.cli"]
needs_capture = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


def run_hft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HFT, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_bad_daemon_section_is_the_guides_config_error(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path, api={"port": 80800})
    got = run_hft("paper", str(cfg), "--pid-file", str(tmp_path / "pid"), "--log-dir", str(tmp_path / "logs"))
    assert got.returncode != 0
    assert f"Failed to load configuration from {cfg}: daemon.api.port: must be a port number 0..65535" in got.stderr
    assert "Traceback" not in got.stderr
    assert not (tmp_path / "pid").exists()
    # §2.1: "tail -100 /var/log/hft_system/system.log" shows why it exited
    for name in ("system.log", "errors.log"):
        logged = (tmp_path / "logs" / name).read_text()
        assert f"ERROR [hft.system] Failed to load configuration from {cfg}: daemon.api.port" in logged


def test_a_missing_config_file_is_logged_where_the_daemon_section_would_log(tmp_path: Path) -> None:
    missing = tmp_path / "production.json"
    got = run_hft("paper", str(missing), "--api", "--log-dir", str(tmp_path / "logs"))
    assert got.returncode != 0 and "Traceback" not in got.stderr
    assert f"Failed to load configuration from {missing}: file not found" in got.stderr
    assert f"Failed to load configuration from {missing}" in (tmp_path / "logs" / "system.log").read_text()


def test_a_typo_in_the_daemon_section_names_the_field(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path, memory_management={"high_pressure_treshold": 0.8})
    got = run_hft("paper", str(cfg))
    assert got.returncode != 0
    assert "daemon.memory_management.high_pressure_treshold: unknown field" in got.stderr
    assert "did you mean 'high_pressure_threshold'" in got.stderr


def test_a_taken_port_is_refused_in_the_guides_words(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        got = run_hft(
            "paper", str(cfg), "--api", "--port", str(port),
            "--pid-file", str(tmp_path / "pid"), "--log-dir", str(tmp_path / "logs"),
        )  # fmt: skip
    assert got.returncode != 0
    assert f"Failed to bind to port {port}: Address already in use" in got.stderr
    assert "Traceback" not in got.stderr
    assert not (tmp_path / "pid").exists()  # nothing started
    assert f"Failed to bind to port {port}: Address already in use" in (tmp_path / "logs" / "system.log").read_text()


def test_a_pid_file_held_by_a_live_process_is_refused(tmp_path: Path) -> None:
    pid_file = tmp_path / "hft.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test's process: alive
    got = run_hft(
        "paper", str(paper_config(tmp_path)), "--api", "--port", "0",
        "--pid-file", str(pid_file), "--log-dir", str(tmp_path / "logs"),
    )  # fmt: skip
    assert got.returncode != 0
    assert f"Another hft daemon is running (pid {os.getpid()} in {pid_file})" in got.stderr
    assert pid_file.read_text().strip() == str(os.getpid())  # left as it was


def test_daemon_flags_without_api_are_refused(tmp_path: Path) -> None:
    got = run_hft("paper", str(paper_config(tmp_path)), "--port", "8080")
    assert got.returncode == 2
    assert "--port, --host, --log-dir and --pid-file need --api" in got.stderr


@needs_capture
def test_paper_daemon_starts_restarts_its_api_and_stops_on_sigterm(tmp_path: Path) -> None:
    with fake_binance() as fb:
        d = start_daemon(tmp_path, fake=fb)
        try:
            pid = d.proc.pid
            assert d.pid_file.read_text().strip() == str(pid)
            started = d.log()
            assert "hft daemon started: mode=paper" in started and f"pid={pid}" in started
            assert f"api={d.url}" in started
            status = d.http("/api/v1/status")  # through the API process and the bridge
            assert status["pid"] == pid and status["mode"] == "paper"
            info = json.loads((tmp_path / "run" / "daemon.json").read_text())
            assert info["url"] == d.url and info["pid"] == pid

            # the API process dies: the trading process starts another, the port keeps answering
            api_pid = int(_api_pids(d.log())[-1])
            # it runs below the trading process (daemon.api.nice, default 10): a request flood
            # takes CPU from the hot path's tail less
            assert os.getpriority(os.PRIO_PROCESS, api_pid) == os.getpriority(os.PRIO_PROCESS, pid) + 10
            os.kill(api_pid, signal.SIGKILL)
            wait_until(lambda: len(_api_pids(d.log())) >= 2, 60, "a new API process", d)
            assert f"API process (pid {api_pid}) exited" in d.log()
            assert wait_until(lambda: _status_or_none(d), 60, "the API to answer again", d)["pid"] == pid
        finally:
            code = d.stop()
        assert code == 0, d.stderr()
        assert not d.pid_file.exists()
        assert not Path(d.bridge).exists()
        assert "hft daemon stopping" in d.log() and "API process stopped" in d.log()
        assert "Traceback" not in d.stderr()


@needs_capture
def test_live_daemon_sigterm_leaves_no_open_order_at_the_venue(tmp_path: Path) -> None:
    cfg = {
        "name": "daemon_live",
        "exchanges": {"binance": str(REPO / "config" / "exchanges" / "binance.json")},
        "live": {"unknown_orders": "cancel", "cancel_on_stop": True, "reconcile_timeout_s": 20},
        "risk": {"max_order_size_usd": 500, "max_orders_per_second": 20, "price_band_pct": 5.0},
        "strategies": [
            {
                "strategy_id": "ladder",
                "class": "live_strategies:Ladder",
                "venue": "binance",
                "symbols": ["BTC-USDT"],
                "params": {"levels": 3, "gap": 150.0, "size": 0.0002, "take": False, "replace_after": 10**9},
            }
        ],
        "output": {"runs_root": str(tmp_path / "runs"), "mark_interval_ms": 1000},
    }
    path = tmp_path / "live.json"
    path.write_text(json.dumps(cfg))
    with fake_binance() as fb:
        d = start_daemon(tmp_path, path, mode="live", fake=fb)
        try:
            wait_until(lambda: len(fb.open_orders()) == 3, 90, "three resting bids at the fake", d)
            # reconcile asks the venue for the order and finds it as we know it
            order = d.call("orders", status="open")["orders"][0]
            got = d.call("order_reconcile", order_id=order["order_id"])
            assert got["reconcile"]["venue_status"] == "open" and got["status"] == "open"
            assert got["exchange_order_id"] == order["exchange_order_id"]
            # a cancel answers once the venue confirmed it
            cancelled = d.call("order_cancel", order_id=order["order_id"])
            assert cancelled["status"] == "cancelled"
            at_fake = {o["clientOrderId"]: o["status"] for o in fb.orders()}
            assert at_fake[order["order_id"]] == "CANCELED"
            # the position manager's restart re-reads the venue's balances
            restarted = d.call("component_restart", component="position_manager")
            assert restarted["detail"] == ["marks", "holds", "binance balances"]
        finally:
            code = d.stop()
        assert code == 0, d.stderr()
        assert fb.open_orders() == []
        assert "Live session summary" in d.stdout()


def _api_pids(log: str) -> list[str]:
    return [line.rsplit("pid ", 1)[1].strip() for line in log.splitlines() if "API process started: pid" in line]


def _status_or_none(d) -> dict | None:
    try:
        return d.http("/api/v1/status")
    except OSError:
        return None


def test_the_systemd_unit_verifies_and_sets_the_guides_limits(tmp_path: Path) -> None:
    import configparser
    import shutil

    text = (REPO / "config" / "systemd" / "hft_system.service").read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(text)
    service = unit["Service"]
    assert service["MemoryMax"] and service["LimitNOFILE"] == "65536"
    assert service["Restart"] == "on-failure" and service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["PIDFile"] == "/var/run/hft_system.pid"
    assert service["ExecStart"].endswith("hft paper /opt/hft_system/config/production.json")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: the unit's syntax is not verified")
    local = tmp_path / "hft_system.service"
    local.write_text(text.replace("/opt/hft_system", str(REPO)))  # an installed checkout here
    got = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0 and got.stderr.strip() == "", got.stderr


def test_production_config_runs_the_strategy_files_with_a_daemon_section() -> None:
    from engine.runners.spec import load_run_spec

    spec = load_run_spec(REPO / "config" / "production.json", mode="paper")
    assert spec.daemon.present and spec.daemon.api.port == 8080
    assert str(spec.daemon.log_dir) == "/var/log/hft_system" and str(spec.daemon.pid_file) == "/var/run/hft_system.pid"
    assert [(s.venue, s.symbols) for s in spec.strategies] == [("binance", ["BTC-USDT"])]
    mm = spec.strategies[0]
    assert mm.path.endswith("config/strategies/market_maker_binance.json") and mm.params["order_size"] > 0
    assert spec.strategy_risk[mm.strategy_id] == {"max_position_usd": 25000.0, "max_order_size_usd": 5000.0}
    assert '"heartbeat": {' in (REPO / "config" / "production.json").read_text()  # guide §10.2 greps for it


@needs_capture
def test_heartbeat_and_latency_lines_come_from_the_daemon_section(tmp_path: Path) -> None:
    # §10.2 greps production.json for "heartbeat"; §5.1 averages "latency_us" lines from the logs
    cfg = paper_config(tmp_path, heartbeat={"interval_s": 7, "timeout_s": 9}, latency_log_interval_s=1)
    d = start_daemon(tmp_path, cfg)
    try:
        assert "heartbeat venue=binance ping_interval_s=7.0 ping_timeout_s=9.0" in d.log()
        wait_until(lambda: "latency_us: " in d.log("market_data"), 60, "a market-data latency line", d)
        wait_until(lambda: "order latency stage=tick_to_order" in d.log("orders"), 60, "an order latency line", d)
        avg = subprocess.run(
            ["bash", "-c", f"grep latency_us {d.log_dir}/market_data.log | tail -1000 | "
             "awk '{sum+=$NF; count++} END {print sum/count}'"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert float(avg) > 0
    finally:
        code = d.stop()
    assert code == 0, d.stderr()


def test_heartbeat_settings_are_checked(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path, heartbeat={"interval_s": 0})
    got = run_hft("paper", str(cfg), "--log-dir", str(tmp_path / "logs"), "--pid-file", str(tmp_path / "pid"))
    assert got.returncode != 0 and "daemon.heartbeat.interval_s" in got.stderr
