"""The monitoring config shipped in config/prometheus/: what Prometheus scrapes (guide 11.2), the
alert rules at the guide's thresholds (5.1, 5.3, 6.1) checked and unit-tested by promtool, the
Alertmanager routing checked by amtool, the Grafana dashboard, and ``scripts/test_alert.sh``
(11.1) against a real Alertmanager on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from metrics_fixture import api_samples, snapshot
from prometheus_client.parser import text_string_to_metric_families

from engine.daemon import exposition, procstats
from engine.daemon.telemetry import BUCKETS

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "config" / "prometheus"
RULES = CONF / "alerts" / "hft_system.yml"
RULE_TESTS = CONF / "tests" / "hft_system_test.yml"
ALERTMANAGER = CONF / "alertmanager.yml"
DASHBOARD = CONF / "grafana" / "hft_system.json"
TEST_ALERT = REPO / "scripts" / "test_alert.sh"


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed (Debian packages prometheus, prometheus-alertmanager)")
    return path


def run(*cmd: str, cwd: Path = CONF) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=120)


def produced_names() -> set[str]:
    """Every series name the daemon's metrics endpoint serves (Prometheus text), plus ``up``."""
    samples = exposition.snapshot_samples(snapshot(), procstats.read(os.getpid()).samples(), api_samples())
    text = exposition.prometheus_text(samples).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples} | {"up"}


def metric_names(promql: str) -> set[str]:
    """The series names a PromQL expression reads (ours all start ``hft_``; ``up`` is Prometheus's)."""
    promql = re.sub(r'"[^"]*"', '""', promql)  # label values (job="hft_system") are not series names
    names = set(re.findall(r"\bhft_[a-z0-9_]+", promql))
    if re.search(r"\bup\s*\{", promql):
        names.add("up")
    return names


def rule_exprs() -> dict[str, str]:
    """``alert name -> expr`` of the rules file (its exprs are one line each, as its header says)."""
    alerts = re.findall(r"^\s*- alert: (\S+)\s*$", RULES.read_text(), re.M)
    exprs = re.findall(r"^\s*expr: (.+)$", RULES.read_text(), re.M)
    assert len(alerts) == len(exprs), "every rule has a one-line expr"
    return dict(zip(alerts, exprs, strict=True))


# --- Prometheus -----------------------------------------------------------------------------------
def test_the_scrape_job_is_the_guides():
    """``grep "hft_system" /etc/prometheus/prometheus.yml`` finds the job (11.2); with no
    ``metrics_path`` Prometheus fetches ``/metrics``, which the daemon serves."""
    text = (CONF / "prometheus.yml").read_text()
    assert "- job_name: 'hft_system'" in text
    assert "- targets: ['localhost:8080']" in text
    assert not re.search(r"^\s*metrics_path:", text, re.M)
    assert "alerts/*.yml" in text


def test_promtool_accepts_the_config_and_its_rules():
    promtool = need("promtool")
    res = run(promtool, "check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 rule files found" in res.stdout
    res = run(promtool, "check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(rule_exprs())} rules found" in res.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    promtool = need("promtool")
    res = run(promtool, "test", "rules", str(RULE_TESTS.relative_to(CONF)))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_rule_is_unit_tested_firing_and_quiet():
    tests = RULE_TESTS.read_text()
    for alert in rule_exprs():
        cases = re.findall(rf"alertname: {alert}\n\s+exp_alerts:(.*)", tests)
        assert " []" in cases, f"{alert}: no test where it stays quiet"
        assert "" in cases, f"{alert}: no test where it fires"


def test_the_guides_thresholds_are_the_rules():
    exprs = rule_exprs()
    assert 'stage="tick_to_order"' in exprs["high_latency"] and exprs["high_latency"].endswith("> 0.001")
    assert 'stage="market_data"' in exprs["high_market_data_latency"]
    assert exprs["high_market_data_latency"].endswith("> 0.0001")
    assert 'stage="order_submit"' in exprs["high_order_submit_latency"]
    assert exprs["high_order_submit_latency"].endswith("> 0.0005")
    assert exprs["high_memory"].endswith("> 0.8")
    assert exprs["exchange_disconnected"] == "hft_exchange_connected == 0"
    assert exprs["stale_order_book"] == "hft_book_valid == 0"
    assert exprs["hft_system_down"] == 'up{job="hft_system"} == 0'
    # each threshold is a bucket bound, so the P99 Prometheus interpolates is exact there
    assert {0.0001, 0.0005, 0.001} <= set(BUCKETS)


def test_every_metric_the_rules_read_is_served():
    served = produced_names()
    for alert, expr in rule_exprs().items():
        assert metric_names(expr), alert
        assert metric_names(expr) <= served, f"{alert}: {metric_names(expr) - served} not served"


# --- Grafana ----------------------------------------------------------------------------------------
def _panels(panels: list[dict]) -> Iterator[dict]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def test_the_dashboard_reads_only_served_metrics():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    served = produced_names()
    exprs = [t["expr"] for p in _panels(dash["panels"]) for t in p.get("targets", [])]
    assert len(exprs) >= 20
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= served, f"{expr}: {names - served} not served"
        used |= names
    # the dashboard shows the latency stages, the venues, orders and the process
    for name in ("hft_latency_seconds_bucket", "hft_exchange_connected", "hft_orders_total",
                 "hft_process_resident_memory_bytes", "up"):  # fmt: skip
        assert name in used
    ids = [p["id"] for p in _panels(dash["panels"])]
    assert len(ids) == len(set(ids))


# --- Alertmanager -----------------------------------------------------------------------------------
def test_amtool_accepts_the_alertmanager_config():
    amtool = need("amtool")
    res = run(amtool, "check-config", str(ALERTMANAGER))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 receivers" in res.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=high_latency"], "pagerduty,slack,email"),
        (["severity=warning", "alertname=sequence_gaps"], "slack"),
        (["alertname=something_else"], "slack"),
    ],
)
def test_critical_alerts_page_and_warnings_go_to_slack(labels, receivers):
    amtool = need("amtool")
    res = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == receivers


def test_the_alertmanager_config_holds_no_secret():
    text = ALERTMANAGER.read_text()
    for key in ("routing_key", "service_key", "api_url", "auth_password", "smtp_auth_password"):
        for m in re.finditer(rf"^\s*{key}(_file)?:", text, re.M):
            assert m.group(1) == "_file", f"{key} must be read from a file, not written here"
    assert "hooks.slack.com" not in text
    assert "/etc/alertmanager/secrets/" in text


# --- scripts/test_alert.sh --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("Alertmanager not installed (Debian package prometheus-alertmanager)")
    # a receiver that notifies no one: tests talk to loopback only
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "am.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "am.log").read_text()
            assert time.monotonic() < deadline, "Alertmanager did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def alerts_listed(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=10) as r:
        return json.loads(r.read())


def test_test_alert_posts_the_named_alert_and_alertmanager_lists_it(alertmanager):
    env = {**os.environ, "ALERTMANAGER_URL": alertmanager}
    res = subprocess.run([str(TEST_ALERT), "high_latency"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: Alertmanager lists high_latency" in res.stdout
    listed = [a for a in alerts_listed(alertmanager) if a["labels"]["alertname"] == "high_latency"]
    assert len(listed) == 1
    # the severity of the rule of that name, so the test takes the route a real one would
    assert listed[0]["labels"]["severity"] == "critical"
    assert listed[0]["labels"]["test"] == "true"


def test_test_alert_says_when_alertmanager_is_not_there():
    env = {**os.environ, "ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}"}
    res = subprocess.run([str(TEST_ALERT), "high_latency"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "cannot reach Alertmanager at http://127.0.0.1:" in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "usage:"), (["bad name"], "ALERT_NAME: not an alert name"), (["x", "--minutes", "0"], "--minutes")],
)
def test_test_alert_refuses_bad_arguments(args, message):
    res = subprocess.run([str(TEST_ALERT), *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert message in res.stderr


def test_test_alert_help():
    res = subprocess.run([str(TEST_ALERT), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    assert "usage:" in res.stdout and "ALERTMANAGER_URL" in res.stdout
