"""The status page at ``/`` rendered by headless Chromium (Debian ``chromium``) against a running
paper daemon: after the page's own script has fetched the API, the DOM shows the daemon's live
values (its pid, the exchange's status, the strategy, an open order, risk figures, latency
percentiles), loaded from the daemon alone (the machine may have no internet)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from daemon_process import CAPTURE, STRATEGY, Daemon, start_daemon, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}"),
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package chromium)"),
]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp("status_page"))
    try:
        wait_until(lambda: daemon.get("/api/v1/orders?status=open").json["orders"], 180, "an open order", daemon)
        wait_until(
            lambda: any("tick_to_order_latency" in x and '"count": 0' not in x for x in _metric_lines(daemon)),
            180,
            "a tick-to-order latency",
            daemon,
        )
        yield daemon
    finally:
        daemon.stop()


def _metric_lines(d: Daemon) -> list[str]:
    return d.get("/api/v1/metrics").text.splitlines()


def render(url: str, profile: Path) -> str:
    """The DOM after the page's script ran (virtual time: the first refresh and a few more)."""
    r = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def cells(dom: str, table: str) -> list[str]:
    m = re.search(rf'<table id="{table}">(.*?)</table>', dom, re.S)
    assert m, f"no table {table}"
    return [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(1), re.S)]


def text_of(dom: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)<', dom, re.S)
    assert m, f"no element {element_id}"
    return unescape(m.group(1)).strip()


def test_the_page_shows_the_daemons_live_values(d: Daemon, tmp_path: Path) -> None:
    dom = render(d.url + "/", tmp_path / "profile")
    status = d.get("/api/v1/status").json
    assert text_of(dom, "pid") == str(status["pid"])
    assert text_of(dom, "trading-enabled") == "enabled"
    assert text_of(dom, "mode") == "(paper)"
    assert text_of(dom, "updated") != "never"
    assert 'id="banner" style="display: none;"' in dom  # every section loaded
    refreshed = re.search(r'data-refreshed="(\d+)"', dom)
    assert refreshed and int(refreshed.group(1)) >= 2  # it reads the API again every second
    exchanges = cells(dom, "exchanges")
    assert exchanges[:2] == ["binance", "connected"] and "BTC-USDT ok" in exchanges[2]
    assert cells(dom, "strategies")[:2] == [STRATEGY, "running"]
    open_ids = {o["order_id"] for o in d.get("/api/v1/orders?limit=10000").json["orders"]}
    assert set(cells(dom, "orders")[::9]) & open_ids  # an order the daemon holds
    risk = cells(dom, "risk")
    assert "trading_enabled" in " ".join(risk)
    latency = cells(dom, "latency")
    row = latency.index("tick_to_order_latency")
    assert float(latency[row + 2]) > 0  # P99 in µs
    assert cells(dom, "incidents")  # a table row, or "no incident"


def test_the_page_updates_when_the_daemon_changes(d: Daemon, tmp_path: Path) -> None:
    assert d.signed("POST", "/api/v1/config", {"trading_enabled": False}).status == 200
    try:
        dom = render(d.url + "/", tmp_path / "profile")
        assert text_of(dom, "trading-enabled") == "DISABLED"
    finally:
        assert d.signed("POST", "/api/v1/config", {"trading_enabled": True}).status == 200
