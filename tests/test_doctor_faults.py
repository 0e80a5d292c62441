"""``hft doctor`` finds each fault it is built for, injected into a real daemon: ``hft paper
CONFIG --api`` in a subprocess against the fake Binance (another subprocess), and the doctor run
as an operator runs it (``hft doctor --json``), reading only the daemon's HTTP API, its pid file,
its logs and /proc."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from daemon_process import CAPTURE, HFT, REPO, Daemon, paper_config, start_daemon, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CAPTURE.exists(), reason=f"the fake Binance's capture is missing: {CAPTURE}"),
]


def run_doctor(tmp: Path, url: str, env: dict[str, str] | None = None, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    args = [*HFT, "doctor", "--url", url, "--log-dir", str(tmp / "logs"), "--pid-file", str(tmp / "hft.pid"),
            "--config", str(tmp / "paper.json"), "--json", *extra]  # fmt: skip
    p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout)["results"]


def find(results: list[dict[str, Any]], section: str, check: str) -> list[dict[str, Any]]:
    return [r for r in results if r["section"] == section and check in r["check"]]


def fake_action(d: Daemon, action: str) -> None:
    """One of the fake's fault injections (``/_fake/...``, sim/fake_binance/README.md)."""
    req = urllib.request.Request(f"{d.env['BINANCE_REST_URL']}/_fake/{action}", method="POST")
    urllib.request.urlopen(req, timeout=10).close()


def exchange(d: Daemon) -> dict[str, Any]:
    return d.get("/api/v1/status").json["exchanges"]["binance"]


@pytest.fixture
def daemon(tmp_path: Path):
    d = start_daemon(tmp_path)
    try:
        wait_until(lambda: exchange(d)["status"] == "connected", 60, "binance connected", d)
        yield d
    finally:
        d.stop()


def test_healthy_daemon_has_no_failure(daemon: Daemon, tmp_path: Path) -> None:
    wait_until(lambda: exchange(daemon)["books"].get("BTC-USDT", {}).get("valid"), 60, "a valid book", daemon)
    rc, results = run_doctor(tmp_path, daemon.url, daemon.env, "--only", "startup,connectivity,market_data,exchange")
    assert [r for r in results if r["status"] == "fail"] == []
    assert rc == 0
    [port] = find(results, "startup", "port")
    assert port["status"] == "pass" and "held by the daemon" in port["detail"]


def test_port_taken(tmp_path: Path) -> None:
    """Another process holds the port: the daemon cannot start, and the doctor says who holds it."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        config = paper_config(tmp_path)
        args = [*HFT, "paper", str(config), "--out", str(tmp_path / "run"), "--api", "--port", str(port),
                "--log-dir", str(tmp_path / "logs"), "--pid-file", str(tmp_path / "hft.pid")]  # fmt: skip
        p = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert p.returncode != 0
        assert f"Failed to bind to port {port}: Address already in use" in p.stderr
        rc, results = run_doctor(tmp_path, f"http://127.0.0.1:{port}")
    finally:
        holder.close()
    assert rc == 1
    [r] = find(results, "startup", f"port {port}")
    assert r["status"] == "fail" and "not the daemon" in r["detail"] and "lsof -i :" in r["next_step"]
    assert f"pid {os.getpid()}" in r["detail"]  # this test's process holds the port
    # the daemon stops before its logs exist: the port check is what tells (the log scan finds the
    # bind message when a daemon does log it: test_doctor.py)
    assert all(x["status"] == "fail" for x in find(results, "logs", "Failed to bind to port"))


def test_venue_down(daemon: Daemon, tmp_path: Path) -> None:
    daemon.fake.proc.kill()
    daemon.fake.proc.wait(10)
    wait_until(lambda: exchange(daemon)["status"] != "connected", 60, "binance not connected", daemon)
    rc, results = run_doctor(tmp_path, daemon.url, daemon.env, "--only", "connectivity,exchange")
    assert rc == 1
    [conn] = find(results, "connectivity", "binance")
    assert conn["status"] == "fail" and "§2.2" in conn["next_step"]
    [venue] = find(results, "exchange", "binance venue")
    assert venue["status"] == "fail" and "does not answer" in venue["detail"]


def test_stale_market_data(daemon: Daemon, tmp_path: Path) -> None:
    wait_until(lambda: exchange(daemon)["books"].get("BTC-USDT", {}).get("valid"), 60, "a valid book", daemon)
    fake_action(daemon, "silence?seconds=120")

    def stale() -> bool:
        b = exchange(daemon)["books"]["BTC-USDT"]
        return not b.get("valid") or (b.get("age_ms") or 0) > 5000

    wait_until(stale, 60, "the book to go stale", daemon)
    rc, results = run_doctor(tmp_path, daemon.url, daemon.env, "--only", "market_data")
    assert rc == 1
    [book] = find(results, "market_data", "binance BTC-USDT")
    assert book["status"] == "fail"
    assert "stale" in book["detail"] or "invalid" in book["detail"]
    assert "§3.2" in book["next_step"] or "§3.3" in book["next_step"]


def test_sequence_gaps(daemon: Daemon, tmp_path: Path) -> None:
    wait_until(lambda: exchange(daemon)["books"].get("BTC-USDT", {}).get("valid"), 60, "a valid book", daemon)
    fake_action(daemon, "drop_diffs?n=3")
    wait_until(lambda: exchange(daemon).get("sequence_gaps"), 60, "the daemon to count a gap", daemon)
    _, results = run_doctor(tmp_path, daemon.url, daemon.env, "--only", "market_data,logs")
    [gaps] = find(results, "market_data", "sequence gaps")
    assert gaps["status"] == "warn" and "sequence gap" in gaps["detail"] and "§3.3" in gaps["next_step"]
    [line] = find(results, "logs", "Market data sequence gap")
    assert "§3.3" in line["next_step"]


def test_rejected_orders(tmp_path: Path) -> None:
    """A config whose every order the risk manager refuses (orders larger than its size limit)."""
    config = paper_config(tmp_path)
    doc = json.loads(config.read_text())
    doc["risk"]["max_order_size_usd"] = 1.0
    config.write_text(json.dumps(doc))
    d = start_daemon(tmp_path, config)
    try:

        def refused() -> bool:
            r = d.get("/api/v1/orders?status=rejected").json["orders"]
            v = d.get("/api/v1/risk/violations").json["violations"]
            return bool(r or v)

        wait_until(refused, 90, "a refused order", d)
        _, results = run_doctor(tmp_path, d.url, d.env, "--only", "orders")
    finally:
        d.stop()
    warned = [r for r in results if r["status"] == "warn" and r["check"] in ("rejected", "risk violations")]
    assert warned, results
    assert any("§4" in r["next_step"] or "§9.3" in r["next_step"] for r in warned)


def test_memory_threshold(tmp_path: Path) -> None:
    """A memory limit far below what the daemon uses: the doctor fails the memory check."""
    config = paper_config(tmp_path, memory_management={"memory_limit_mb": 40})
    d = start_daemon(tmp_path, config)
    try:
        rc, results = run_doctor(tmp_path, d.url, d.env, "--only", "memory")
    finally:
        d.stop()
    assert rc == 1
    [r] = find(results, "memory", "daemon RSS")
    assert r["status"] == "fail" and "memory_limit_mb" in r["detail"] and "§5.3" in r["next_step"]
