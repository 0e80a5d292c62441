"""The crash test of restart reconciliation: ``hft live CONFIG`` (a subprocess) against the fake
Binance (another, so it outlives the node) with a store (a DuckDB file, and a real PostgreSQL
server), killed with ``kill -9`` mid-session while its bids rest and fills arrive; while it is
down the market fills two of its bids (one whole, one half) and someone cancels a third; then the
same config starts again.

After its reconciliation the node's open orders are the fake's (0 divergence), every trade the
fake made for the account is in the store's ``fills`` exactly once, the stored position is the sum
of those trades, and no client order id ever reached the fake twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_process import spawn_fake_binance

from engine.recorder import read_stream_batches, stream_files
from engine.store import load_store_settings, open_store

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
HFT = [sys.executable, "-m", "engine.cli"]
OPEN = ("NEW", "PARTIALLY_FILLED")

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


@dataclass
class Fake:
    proc: subprocess.Popen
    urls: dict[str, str]
    key: str
    secret: str

    def _call(self, method: str, path: str) -> Any:
        req = urllib.request.Request(f"{self.urls['BINANCE_REST_URL']}{path}", method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def orders(self) -> list[dict]:
        return self._call("GET", "/_fake/orders")

    def open_orders(self) -> list[dict]:
        return [o for o in self.orders() if o["status"] in OPEN]

    def trades(self) -> list[dict]:
        return self._call("GET", "/_fake/trades")

    def fill(self, cid: str, qty: str | None = None) -> dict:
        return self._call("POST", f"/_fake/fill_order?clientOrderId={cid}" + (f"&qty={qty}" if qty else ""))

    def cancel(self, cid: str) -> dict:
        return self._call("POST", f"/_fake/cancel_order?clientOrderId={cid}")


@pytest.fixture
def fake() -> Iterator[Fake]:
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    proc, urls = spawn_fake_binance(
        CAPTURE, "--speed", "1", "--start", "now", "--api-key", key, "--api-secret", secret,
        "--balance", "USDT=10000", "--balance", "BTC=1",
    )  # fmt: skip
    try:
        yield Fake(proc, urls, key, secret)
    finally:
        proc.terminate()
        proc.wait(10)


def wait_until(cond: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen | None = None) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"hft live exited {proc.returncode} while waiting for {what}:\n{out}\n{err}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(params=["duckdb", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The node's ``database`` section: the embedded DuckDB file, or a fresh database on a real
    PostgreSQL server (``tests/pg_fixtures.py``)."""
    if request.param == "duckdb":
        yield {"backend": "duckdb", "duckdb_path": str(tmp_path / "hft.duckdb")}
        return
    s = request.getfixturevalue("pg_settings")
    yield {"backend": "postgresql", "host": s.host, "port": s.port, "name": s.name, "user": s.user,
           "password_env": s.password_env, "connection_pool_size": 5, "min_pool_size": 1}  # fmt: skip


def write_config(tmp: Path, database: dict[str, Any]) -> Path:
    cfg = {
        "name": "crash_node",
        "exchanges": {"binance": str(REPO / "config" / "exchanges" / "binance.json")},
        "live": {"unknown_orders": "cancel", "cancel_on_stop": False, "reconcile_timeout_s": 30},
        "risk": {"max_order_size_usd": 500, "max_orders_per_second": 20, "price_band_pct": 5.0},
        "strategies": [
            {
                "strategy_id": "ladder",
                "class": "live_strategies:Ladder",
                "venue": "binance",
                "symbols": ["BTC-USDT"],
                # an IOC buy at start, then four post-only bids kept 200 apart below the touch
                "params": {"levels": 4, "gap": 200.0, "size": 0.0002, "replace_after": 10**9},
            }
        ],
        "database": {**database, "journal_dir": str(tmp / "journal")},
        "output": {"runs_root": str(tmp / "runs"), "mark_interval_ms": 1000},
    }
    path = tmp / "crash_node.json"
    path.write_text(json.dumps(cfg))
    return path


def start_live(fb: Fake, config: Path, out: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        **fb.urls,
        "BINANCE_API_KEY": fb.key,
        "BINANCE_API_SECRET": fb.secret,
        "PYTHONPATH": str(REPO / "tests"),
    }
    return subprocess.Popen(
        [*HFT, "live", str(config), "--out", str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def submitted(run: Path) -> set[str]:
    """Client ids of the orders the run's event log has on disk."""
    batches = read_stream_batches(stream_files(run).get("orders", []))
    return {cid for b in batches for cid in b.column("client_order_id").to_pylist()}


def bids(orders: list[dict]) -> list[dict]:
    return [o for o in orders if o["type"] == "LIMIT_MAKER" and o["status"] in OPEN]


async def read_store(config: Path) -> dict[str, Any]:
    store = open_store(load_store_settings(config))
    await store.connect()
    try:
        return {
            "fills": await store.fills(venue="binance"),
            "open": await store.open_orders("binance"),
            "positions": await store.positions("binance"),
        }
    finally:
        await store.close()


def test_kill_9_then_restart_reconciles_to_the_venue_exactly(
    fake: Fake, database: dict[str, Any], tmp_path: Path
) -> None:
    config = write_config(tmp_path, database)
    # --- the first process: quotes, takes, gets a fill through the stream, and is killed
    first = start_live(fake, config, tmp_path / "run1")
    try:
        wait_until(lambda: len(bids(fake.orders())) == 4, 120, "four resting bids", first)
        wait_until(lambda: any(t["isBuyer"] and not t["isMaker"] for t in fake.trades()), 30, "the IOC fill", first)
        top = max(bids(fake.orders()), key=lambda o: float(o["price"]))
        fake.fill(top["clientOrderId"])  # a fill arriving while it runs: the ladder replaces the bid
        wait_until(lambda: len(bids(fake.orders())) == 4 and len(fake.orders()) == 6, 60, "the bid replaced", first)
        # the replacement's rows handed to the event log (and so to the journal): what the recorder
        # had not handed over yet is the event log's loss too (docs/crash-safety.md)
        replacement = fake.orders()[-1]["clientOrderId"]
        wait_until(lambda: replacement in submitted(tmp_path / "run1"), 30, "the replacement on disk", first)
        arriving = max(bids(fake.orders()), key=lambda o: float(o["price"]))
        fake.fill(arriving["clientOrderId"], qty="0.0001")  # and one arriving as it dies
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    # --- while it is down: the market fills one bid whole and one half, someone cancels one
    resting = sorted(bids(fake.orders()), key=lambda o: -float(o["price"]))
    untouched = [o for o in resting if float(o["executedQty"]) == 0]
    assert len(untouched) >= 3, resting
    fake.fill(untouched[0]["clientOrderId"])
    fake.fill(untouched[1]["clientOrderId"], qty="0.0001")
    fake.cancel(untouched[2]["clientOrderId"])
    sent_before = [o["clientOrderId"] for o in fake.orders()]
    # --- the same config again
    out2 = tmp_path / "run2"
    second = start_live(fake, config, out2)
    try:
        report = wait_until(
            lambda: sorted(out2.glob("reconciliation-*.json")), 120, "the reconciliation report", second
        )
        doc = json.loads(report[0].read_text())
        # the ladder tops up to four bids again once it trades: the restart is over
        wait_until(lambda: len(bids(fake.orders())) == 4, 60, "four bids again", second)
    finally:
        second.send_signal(signal.SIGTERM)
        _out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    counts = doc["counts"]
    assert counts["order_gone_at_venue"] == 2 and counts["fill_missed"] >= 2, doc["summary"]
    assert counts["position_drift"] == 0 and counts["fill_unattributed"] == 0, doc["summary"]
    assert counts["order_unknown_locally"] == 0 and counts["adopted"] == 0, doc["summary"]
    assert doc["halted"] == []

    stored = asyncio.run(read_store(config))
    venue_orders = fake.orders()
    trades = fake.trades()
    # 0 divergence in orders: what the store says is open is what the fake has open
    assert sorted(o["client_order_id"] for o in stored["open"]) == sorted(
        o["clientOrderId"] for o in venue_orders if o["status"] in OPEN
    )
    by_cid = {o["clientOrderId"]: o for o in venue_orders}
    for row in stored["open"]:
        assert row["filled_qty"] == pytest.approx(float(by_cid[row["client_order_id"]]["executedQty"]))
    # fills: every trade of the account once, nothing else
    keys = [(str(f["trade_id"]), f["client_order_id"]) for f in stored["fills"]]
    assert Counter(keys).most_common(1)[0][1] == 1
    assert sorted(keys) == sorted((str(t["id"]), t["clientOrderId"]) for t in trades)
    # positions: the stored position is the sum of the fills
    bought = sum(float(t["qty"]) if t["isBuyer"] else -float(t["qty"]) for t in trades)
    [pos] = [p for p in stored["positions"] if p["strategy_id"] == "ladder"]
    assert pos["position"] == pytest.approx(bought, abs=1e-12)
    assert sum(f["qty"] if f["side"] == "buy" else -f["qty"] for f in stored["fills"]) == pytest.approx(bought)
    # no client order id reached the fake twice, and the restart resent none of the old ones
    sent = [o["clientOrderId"] for o in venue_orders]
    assert len(sent) == len(set(sent))
    assert sent[: len(sent_before)] == sent_before
