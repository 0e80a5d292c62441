"""``hft ctl METHOD PATH [JSON]`` against a running daemon: it signs from HFT_API_KEY /
HFT_API_SECRET, prints the JSON answer, and exits non-zero with the error on stderr."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
from daemon_process import CAPTURE, HFT, REPO, STRATEGY, Daemon, start_daemon

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp("ctl"))
    try:
        yield daemon
    finally:
        daemon.stop()


def ctl(d: Daemon, *args: str, key: str | None = None, secret: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HFT_API_KEY", "HFT_API_SECRET")}
    if key is not None:
        env["HFT_API_KEY"] = key
    if secret is not None:
        env["HFT_API_SECRET"] = secret
    return subprocess.run(
        [*HFT, "ctl", *args, "--url", d.url], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_signed_mutation_takes_effect_and_prints_the_answer(d: Daemon) -> None:
    r = ctl(d, "POST", "config", '{"trading_enabled": false}', key=d.key, secret=d.secret)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"trading_enabled": False}
    assert d.get("/api/v1/status").json["trading_enabled"] is False
    r = ctl(d, "POST", "/api/v1/config", '{"trading_enabled": true}', key=d.key, secret=d.secret)
    assert r.returncode == 0, r.stderr
    assert d.get("/api/v1/status").json["trading_enabled"] is True


def test_the_guides_get_reload_and_a_put_with_a_body(d: Daemon) -> None:
    r = ctl(d, "GET", "config/reload", key=d.key, secret=d.secret)
    assert r.returncode == 0 and json.loads(r.stdout)["reloaded"] is True, r.stderr
    r = ctl(d, "PUT", f"strategies/{STRATEGY}/config", '{"log_level": "DEBUG"}', key=d.key, secret=d.secret)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["config"]["log_level"] == "DEBUG"


def test_reads_with_a_query_and_the_metrics_text(d: Daemon) -> None:
    r = ctl(d, "GET", "orders?status=open&limit=3")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["orders"]) <= 3
    r = ctl(d, "GET", "/metrics")
    assert r.returncode == 0 and "# TYPE" in r.stdout


def test_a_refusal_exits_1_with_the_error_on_stderr(d: Daemon) -> None:
    r = ctl(d, "GET", "orders/nope")
    assert r.returncode == 1 and r.stdout == ""
    assert "HTTP 404: Order not found: nope" in r.stderr
    r = ctl(d, "GET", "orders?limit=0")
    assert r.returncode == 1 and "limit: must be an integer 1..10000" in r.stderr
    r = ctl(d, "POST", "config", '{"trading_enabled": false}', key=d.key, secret="not-the-secret")
    assert r.returncode == 1 and "bad signature" in r.stderr
    assert d.get("/api/v1/status").json["trading_enabled"] is True


def test_a_mutation_without_keys_or_with_bad_json_is_refused_before_sending(d: Daemon) -> None:
    r = ctl(d, "POST", "config", '{"trading_enabled": false}')
    assert r.returncode == 2 and "HFT_API_KEY" in r.stderr and "HFT_API_SECRET" in r.stderr
    r = ctl(d, "POST", "config", "{trading_enabled: false}", key=d.key, secret=d.secret)
    assert r.returncode == 2 and "JSON: not valid JSON" in r.stderr
    assert d.get("/api/v1/status").json["trading_enabled"] is True


def test_an_unreachable_daemon_is_a_clear_error(d: Daemon) -> None:
    r = subprocess.run(
        [*HFT, "ctl", "GET", "status", "--url", "http://127.0.0.1:9"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "cannot reach the daemon at http://127.0.0.1:9" in r.stderr
