"""A real Prometheus scrapes a running daemon (guide 11.2): ``hft paper CONFIG --api`` against
the fake Binance, Prometheus started with the shipped ``config/prometheus/prometheus.yml`` (its
target moved to the daemon's port, a 1 s interval) and asked over its HTTP API, as the guide's
``curl -s 'http://localhost:9090/api/v1/query?query=up{job="hft_system"}'`` does. The guide's own
``curl .../api/v1/metrics | grep ... | jq`` lines run against the same daemon."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_process import CAPTURE, Daemon, start_daemon

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "config" / "prometheus"
PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package prometheus)"),
    pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("scrape_daemon"))
    try:
        yield d
    finally:
        d.stop()


def scrape_config(shipped: str, target: str) -> str:
    """The shipped config with the guide's target (``localhost:8080``) replaced by the daemon's,
    a 1 s interval, the rules by absolute path and no Alertmanager; plus a second job reading
    ``/api/v1/metrics``, which negotiates Prometheus text on the scrape's ``Accept``."""
    text = shipped.replace("['localhost:8080']", f"['{target}']")
    text = re.sub(r"scrape_interval: \S+", "scrape_interval: 1s", text)
    text = re.sub(r"scrape_timeout: \S+", "scrape_timeout: 1s", text)
    text = re.sub(r"evaluation_interval: \S+", "evaluation_interval: 1s", text)
    text = text.replace("- alerts/*.yml", f"- {CONF / 'alerts' / '*.yml'}")
    text = re.sub(r"alerting:\n(  .*\n)+", "", text)
    assert f"targets: ['{target}']" in text and "job_name: 'hft_system'" in text
    return text + (
        "  - job_name: 'hft_system_api'\n"
        "    metrics_path: /api/v1/metrics\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )


@pytest.fixture(scope="module")
def prometheus(daemon, tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("prometheus")
    cfg = tmp / "prometheus.yml"
    cfg.write_text(scrape_config((CONF / "prometheus.yml").read_text(), f"{daemon.host}:{daemon.port}"))
    port = free_port()
    log = tmp / "prometheus.log"
    assert PROMETHEUS is not None
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), proc, log, "Prometheus to be ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def wait_for(cond, proc: subprocess.Popen, log: Path, what: str, timeout: float = 90) -> Any:
    """Polls ``cond`` until it returns something true (not a timing assertion: a bound on a hang)."""
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert proc.poll() is None, f"{proc.args[0]} exited waiting for {what}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < end, f"gave up waiting for {what}:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)


def query(url: str, promql: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def scraped(url: str, job: str) -> list[dict] | None:
    result = query(url, f'up{{job="{job}"}}')
    return result if result and result[0]["value"][1] == "1" else None


def test_prometheus_scrapes_the_daemon_up(prometheus, daemon):
    """``up{job="hft_system"}`` = 1, the guide's check that the metrics endpoint is scraped."""
    proc = daemon.proc
    result = wait_for(lambda: scraped(prometheus, "hft_system"), proc, daemon.stderr_path, "up{job=hft_system} = 1")
    assert len(result) == 1
    assert result[0]["metric"]["instance"] == f"{daemon.host}:{daemon.port}"
    assert result[0]["value"][1] == "1"


def test_the_scrape_carries_the_daemons_metrics(prometheus, daemon):
    wait_for(lambda: scraped(prometheus, "hft_system"), daemon.proc, daemon.stderr_path, "a scrape")
    names = {s["metric"]["__name__"] for s in query(prometheus, '{job="hft_system", __name__=~"hft_.+"}')}
    assert {"hft_exchange_connected", "hft_trading_enabled", "hft_process_open_fds"} <= names
    buckets = query(prometheus, 'hft_latency_seconds_bucket{job="hft_system", stage="tick_to_order"}')
    assert {b["metric"]["le"] for b in buckets} >= {"0.0001", "0.0005", "0.001", "+Inf"}
    # the feed connects to the fake a moment after the API answers
    connected = wait_for(
        lambda: query(prometheus, 'hft_exchange_connected{job="hft_system", exchange="binance"} == 1'),
        daemon.proc, daemon.stderr_path, "binance connected in the scrape",
    )  # fmt: skip
    assert [c["value"][1] for c in connected] == ["1"]


def test_api_v1_metrics_serves_prometheus_text_to_a_scrape(prometheus, daemon):
    """The guide's scrape reads ``/metrics``; a job pointed at ``/api/v1/metrics`` gets the same
    text, because Prometheus's ``Accept`` asks for it."""
    result = wait_for(lambda: scraped(prometheus, "hft_system_api"), daemon.proc, daemon.stderr_path, "second job")
    assert result[0]["value"][1] == "1"
    assert query(prometheus, 'hft_trading_enabled{job="hft_system_api"}')


def test_prometheus_lists_the_alert_rules(prometheus):
    """``curl -s localhost:9090/api/v1/rules | jq '.data.groups[].rules[] | select(.type=="alerting")'`` (11.1)."""
    with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10) as r:
        body = json.loads(r.read())
    alerting = [rule["name"] for g in body["data"]["groups"] for rule in g["rules"] if rule["type"] == "alerting"]
    assert "high_latency" in alerting
    assert len(alerting) >= 10


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None, reason="curl or jq not installed")
def test_the_guides_metrics_commands_work_as_typed(daemon):
    """Section 5.1, 3.2, 5.3 and 11.2, as typed (the host and port are the daemon's)."""
    url = f"http://{daemon.host}:{daemon.port}/api/v1/metrics"

    def sh(cmd: str) -> str:
        res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"{cmd}: {res.stderr}"
        return res.stdout

    latency = sh(
        f"curl -s {url} | grep latency | jq -r '. | \"\\(.name): P50=\\(.p50)us P99=\\(.p99)us P999=\\(.p999)us\"'"
    )
    names = [line.split(":")[0] for line in latency.splitlines()]
    assert "tick_to_order_latency" in names and "market_data_latency" in names
    assert all(re.search(r" P50=\S+us P99=\S+us P999=\S+us$", line) for line in latency.splitlines())
    for word in ("queue_depth", "market_data_queue_depth", "orderbook_memory_mb", "order_count"):
        lines = sh(f"curl -s {url} | grep {word}").splitlines()
        assert lines and all(word in json.loads(line)["name"] for line in lines), word
    assert len(sh(f"curl -s {url} | head -20").splitlines()) == 20
