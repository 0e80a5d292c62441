"""``hft live`` as an operator runs it: a subprocess against the fake Binance (itself a subprocess,
so it outlives the node), keys from the environment. It quotes, cancels and fills; ``kill -9``
leaves its resting orders at the venue; a restart reconciles them before any strategy acts,
adopting or cancelling them per config, and never sends an order twice; SIGTERM stops gracefully.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from fake_process import spawn_fake_binance

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
HFT = [sys.executable, "-m", "engine.cli"]

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


@dataclass
class Fake:
    proc: subprocess.Popen
    rest: str
    ws: str
    ws_api: str
    key: str
    secret: str

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"{self.rest}{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def open_orders(self) -> list[dict]:
        return [o for o in self.orders() if o["status"] in ("NEW", "PARTIALLY_FILLED")]

    def orders(self) -> list[dict]:
        got = self.get("/_fake/orders")
        assert isinstance(got, list)
        return got


def wait_until(cond: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"hft live exited {proc.returncode} while waiting for {what}:\n{out}\n{err}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def fake() -> Iterator[Fake]:
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    proc, urls = spawn_fake_binance(
        CAPTURE, "--speed", "1", "--start", "now", "--api-key", key, "--api-secret", secret,
        "--balance", "USDT=10000", "--balance", "BTC=1",
    )  # fmt: skip
    try:
        yield Fake(proc, urls["BINANCE_REST_URL"], urls["BINANCE_WS_URL"], urls["BINANCE_WS_API_URL"], key, secret)
    finally:
        proc.terminate()
        proc.wait(10)


def live_config(tmp: Path, name: str, unknown_orders: str, **ladder: object) -> Path:
    cfg = {
        "name": name,
        "exchanges": {"binance": str(REPO / "config" / "exchanges" / "binance.json")},
        "live": {"unknown_orders": unknown_orders, "cancel_on_stop": False, "reconcile_timeout_s": 20},
        "risk": {"max_order_size_usd": 500, "max_orders_per_second": 20, "price_band_pct": 5.0},
        "strategies": [
            {
                "strategy_id": "ladder",
                "class": "live_strategies:Ladder",
                "venue": "binance",
                "symbols": ["BTC-USDT"],
                "params": {"levels": 3, "gap": 150.0, "size": 0.0002, **ladder},
            }
        ],
        "output": {"runs_root": str(tmp / "runs"), "mark_interval_ms": 1000},
    }
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def start_live(fb: Fake, config: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "BINANCE_REST_URL": fb.rest,
        "BINANCE_WS_URL": fb.ws,
        "BINANCE_WS_API_URL": fb.ws_api,
        "BINANCE_API_KEY": fb.key,
        "BINANCE_API_SECRET": fb.secret,
        "PYTHONPATH": str(REPO / "tests"),
    }
    return subprocess.Popen(
        [*HFT, "live", str(config), "--out", str(out), *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def table(run: Path, name: str) -> list[dict]:
    con = duckdb.connect()
    return con.execute(f"select * from read_parquet('{run / name}.parquet') order by seq").fetch_df().to_dict("records")


def crash_with_three_open(fb: Fake, tmp: Path) -> list[dict]:
    """A first session quotes, fills and cancels, then dies by ``kill -9`` with 3 bids resting."""
    out = tmp / "first"
    proc = start_live(fb, live_config(tmp, "first", "cancel", replace_after=5), out)
    try:
        # one taker fill, 3 resting bids, then the deepest cancelled and replaced: 4 bids placed
        def quoted() -> bool:
            bids = [o for o in fb.orders() if o["side"] == "BUY" and o["type"] == "LIMIT_MAKER"]
            return len(bids) >= 4 and len(fb.open_orders()) == 3

        wait_until(quoted, 90, "the first session to quote, fill and cancel", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    placed = fb.orders()
    assert any(o["type"] == "LIMIT" and o["status"] == "FILLED" for o in placed)  # the IOC took liquidity
    assert any(o["status"] == "CANCELED" for o in placed)
    left = fb.open_orders()
    assert len(left) == 3
    return left


def test_live_restart_adopts_what_a_crash_left_open_and_sends_nothing_twice(fake: Fake, tmp_path: Path) -> None:
    left = crash_with_three_open(fake, tmp_path)
    before = {o["clientOrderId"] for o in fake.orders()}
    out = tmp_path / "second"
    proc = start_live(
        fake, live_config(tmp_path, "second", "adopt", take=False, replace_after=10**9), out, "--duration", "6"
    )
    _stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "adopted 3" in stderr
    # the three orders are still the only open ones, and the restart placed nothing new
    assert {o["clientOrderId"] for o in fake.open_orders()} == {o["clientOrderId"] for o in left}
    assert {o["clientOrderId"] for o in fake.orders()} == before
    rec = table(out, "reconcile")
    adopted = [r for r in rec if r["action"] == "adopted"]
    assert sorted(r["client_order_id"] for r in adopted) == sorted(o["clientOrderId"] for o in left)
    assert all(r["detail"] == "strategy ladder" for r in adopted)
    orders = table(out, "orders")
    assert [r["event"] for r in orders if r["event"] == "submit"] == []
    assert sorted(r["client_order_id"] for r in orders if r["event"] == "adopted") == sorted(
        o["clientOrderId"] for o in left
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "live" and manifest["reconciliation"][0]["adopted"]


def test_live_restart_cancels_what_a_crash_left_open_before_the_strategy_trades(fake: Fake, tmp_path: Path) -> None:
    left = crash_with_three_open(fake, tmp_path)
    out = tmp_path / "second"
    proc = start_live(fake, live_config(tmp_path, "second", "cancel", take=False, replace_after=10**9), out)
    try:

        def requoted() -> bool:
            mine = [o for o in fake.open_orders() if o["clientOrderId"] not in {x["clientOrderId"] for x in left}]
            return len(mine) == 3

        wait_until(requoted, 60, "the restarted ladder's own three bids", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    by_id = {o["clientOrderId"]: o for o in fake.orders()}
    assert all(by_id[o["clientOrderId"]]["status"] == "CANCELED" for o in left)
    ids = [o["clientOrderId"] for o in fake.orders()]
    assert len(ids) == len(set(ids))  # no client id was ever used twice
    rec = table(out, "reconcile")
    cancelled = [r for r in rec if r["action"] == "cancelled"]
    assert sorted(r["client_order_id"] for r in cancelled) == sorted(o["clientOrderId"] for o in left)
    # every reconciliation row comes before the strategy's first order
    orders = table(out, "orders")
    first_submit = min(r["seq"] for r in orders if r["event"] == "submit")
    assert max(r["seq"] for r in rec) < first_submit
    # balances were taken from the venue and differences recorded
    assert any(r["item"] == "balance" and r["action"] == "loaded" for r in rec)


def test_sigterm_stops_gracefully_and_cancels_open_orders(fake: Fake, tmp_path: Path) -> None:
    cfg = live_config(tmp_path, "graceful", "cancel", take=False, replace_after=10**9)
    data = json.loads(cfg.read_text())
    data["live"]["cancel_on_stop"] = True
    cfg.write_text(json.dumps(data))
    out = tmp_path / "graceful"
    proc = start_live(fake, cfg, out)
    try:
        wait_until(lambda: len(fake.open_orders()) == 3, 60, "three resting bids", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert fake.open_orders() == []
    orders = table(out, "orders")
    assert sum(r["event"] == "canceled" for r in orders) == 3
    assert (out / "manifest.json").exists() and "Live session summary" in stdout


def test_a_venue_that_does_not_answer_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = live_config(tmp_path, "dead", "cancel")
    env = {**os.environ, "BINANCE_REST_URL": "http://127.0.0.1:9", "BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}
    proc = subprocess.run(
        [*HFT, "live", str(cfg), "--out", str(tmp_path / "out")],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO / "tests")}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Cannot load instruments from binance (http://127.0.0.1:9): ")
    assert "Traceback" not in proc.stderr


def test_live_without_keys_says_which_variables_to_set(fake: Fake, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINANCE_API")}
    env.update(BINANCE_REST_URL=fake.rest, BINANCE_WS_URL=fake.ws, BINANCE_WS_API_URL=fake.ws_api)
    proc = subprocess.run(
        [*HFT, "live", str(live_config(tmp_path, "nokeys", "cancel")), "--out", str(tmp_path / "out")],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO / "tests")}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "set BINANCE_API_KEY and BINANCE_API_SECRET in the environment" in proc.stderr
    assert "Traceback" not in proc.stderr and fake.orders() == []
