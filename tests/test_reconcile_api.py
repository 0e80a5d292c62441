"""Reconciliation through the operator surface: ``POST /api/v1/positions/reconcile?exchange=``,
``scripts/reconcile_positions.sh <exchange>`` (guide §4.4) and ``POST
/api/v1/orders/{id}/reconcile`` against a running live daemon (``hft live CONFIG --api``, a
subprocess) trading on the fake Binance (another) with a DuckDB store; and the paper daemon,
whose venue is simulated in process. Over HTTP only, signed as an operator signs.

A healthy node reconciles to no change (a fill the stream delivered is not booked again); a
balance the venue holds that the store cannot explain (a deposit nobody told the node of) is
drift: the script exits 1, the answer names the asset and the difference, and the strategy
trading it is halted with its quotes pulled.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import CAPTURE, Daemon, FakeBinance, paper_config, start_daemon, start_fake_binance, wait_until

REPO = Path(__file__).resolve().parents[1]
V1 = "/api/v1"
RECONCILE = f"{V1}/positions/reconcile?exchange=binance"

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


def live_config(tmp: Path) -> Path:
    cfg = {
        "name": "reconcile_api",
        "exchanges": {"binance": str(REPO / "config" / "exchanges" / "binance.json")},
        "live": {"unknown_orders": "cancel", "cancel_on_stop": True, "reconcile_timeout_s": 20},
        "risk": {"max_order_size_usd": 500, "max_orders_per_second": 20, "price_band_pct": 5.0},
        "strategies": [
            {
                "strategy_id": "ladder",
                "class": "live_strategies:Ladder",
                "venue": "binance",
                "symbols": ["BTC-USDT"],
                "params": {"levels": 3, "gap": 200.0, "size": 0.0002, "replace_after": 10**9},
            }
        ],
        "database": {"backend": "duckdb", "duckdb_path": str(tmp / "hft.duckdb"), "journal_dir": str(tmp / "journal")},
        "output": {"runs_root": str(tmp / "runs"), "mark_interval_ms": 1000},
    }
    path = tmp / "live.json"
    path.write_text(json.dumps(cfg))
    return path


def fake_admin(fb: FakeBinance, action: str, query: str) -> dict:
    req = urllib.request.Request(f"{fb.urls['BINANCE_REST_URL']}/_fake/{action}?{query}", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def position(d: Daemon) -> float:
    got = [p for p in d.get(f"{V1}/positions").json["positions"] if p["strategy"] == "ladder"]
    return got[0]["quantity"] if got else 0.0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("reconcile_api")
    fb = start_fake_binance()
    try:
        d = start_daemon(tmp, live_config(tmp), mode="live", fake=fb)
        try:
            wait_until(lambda: len(fb.open_orders()) == 3 and position(d) > 0, 90, "three bids and the IOC fill", d)
            yield d
        finally:
            d.stop()
    finally:
        fb.stop()


def script(d: Daemon) -> subprocess.CompletedProcess:
    env = {**os.environ, "HFT_API_KEY": d.key, "HFT_API_SECRET": d.secret}
    return subprocess.run(
        [str(REPO / "scripts" / "reconcile_positions.sh"), "binance", "--url", d.url, "--timeout", "60"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_fill_the_stream_delivered_is_not_booked_again(live: Daemon) -> None:
    before = position(live)
    top = max(live.fake.open_orders(), key=lambda o: float(o["price"]))
    fake_admin(live.fake, "fill_order", f"clientOrderId={top['clientOrderId']}")
    wait_until(lambda: position(live) == pytest.approx(before + 0.0002), 30, "the stream's fill", live)
    r = live.signed("POST", RECONCILE)
    assert r.status == 200, r.text
    doc = r.json
    assert doc["mode"] == "live" and doc["store"] is True and doc["exchange"] == "binance"
    assert doc["counts"]["fill_missed"] == 0 and doc["counts"]["position_drift"] == 0, doc["summary"]
    assert doc["counts"]["order_unknown_locally"] == 0 and doc["halted"] == []
    assert position(live) == pytest.approx(before + 0.0002)
    [p] = [p for p in doc["positions"] if p["strategy"] == "ladder"]
    assert p["quantity"] == pytest.approx(before + 0.0002)
    report = json.loads(Path(doc["report"]).read_text())
    assert report["counts"] == doc["counts"] and Path(doc["report"]).parent == live.out


def test_one_orders_reconcile_compares_with_the_store(live: Daemon) -> None:
    order = live.get(f"{V1}/orders?status=open").json["orders"][0]
    r = live.signed("POST", f"{V1}/orders/{order['order_id']}/reconcile")
    assert r.status == 200, r.text
    rec = r.json["reconcile"]
    assert rec["venue_status"] == "open" and rec["changed"] is False and rec["applied"] == []
    assert rec["store"]["before"]["status"] == "open" and rec["store"]["after"] == rec["store"]["before"]
    assert rec["store"]["changed"] is False


def test_bad_calls_are_refused_in_the_guides_words(live: Daemon) -> None:
    assert live.request("POST", RECONCILE).status == 401  # a mutation: signed only
    r = live.signed("POST", f"{V1}/positions/reconcile?exchange=nasdaq")
    assert r.status == 404 and r.json["error"] == "Exchange not found: nasdaq"
    r = live.signed("POST", f"{V1}/positions/reconcile")
    assert r.status == 400 and r.json["field"] == "exchange"
    r = live.signed("POST", f"{V1}/positions/reconcile?exchange=binance&symbol=BTC-USDT")
    assert r.status == 400 and r.json["field"] == "symbol"
    doc = live.get("/openapi.json").json
    op = doc["paths"][f"{V1}/positions/reconcile"]["post"]
    assert [(p["name"], p["in"], p["required"]) for p in op["parameters"]] == [("exchange", "query", True)]


def test_the_script_halts_on_drift_and_says_why(live: Daemon) -> None:
    ok = script(live)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1].startswith("reconciled binance:")
    assert json.loads(ok.stdout[: ok.stdout.rindex("}") + 1])["counts"]["position_drift"] == 0
    fake_admin(live.fake, "deposit", "asset=BTC&amount=0.05")  # nobody tells the node
    bad = script(live)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "position drift on binance: the strategies trading it are halted" in bad.stderr
    doc = json.loads(bad.stdout[: bad.stdout.rindex("}") + 1])
    [drift] = doc["drift"]
    assert drift["asset"] == "BTC" and drift["difference"] == pytest.approx(0.05, abs=1e-9)
    assert doc["halted"] == ["ladder"]
    strategies = {s["strategy_id"]: s for s in live.get(f"{V1}/strategies").json["strategies"]}
    assert strategies["ladder"]["status"] != "running"
    wait_until(lambda: live.fake.open_orders() == [], 30, "the halted strategy's quotes pulled", live)
    incidents = live.get(f"{V1}/incidents").json["incidents"]
    assert any("position drift on binance BTC" in i["detail"] and "off by +0.05 BTC" in i["detail"] for i in incidents)


def test_paper_reconciles_against_the_simulated_venue(tmp_path: Path) -> None:
    d = start_daemon(tmp_path, paper_config(tmp_path))
    try:
        r = d.signed("POST", RECONCILE)
        assert r.status == 200, r.text
        doc = r.json
        assert doc["mode"] == "paper" and doc["venue"] == "simulated"
        assert doc["summary"].startswith("reconciled binance (paper): the simulated venue is this process")
        assert doc["counts"] == {"position_differences": 0}
    finally:
        assert d.stop() == 0, d.stderr()
