"""Kraken and Coinbase through the node in the modes an operator runs, against their loopback fakes.

Live: ``hft live CONFIG`` as a subprocess, the venue's URLs and keys from the environment (pointing
at the fake, which runs on this test's event loop so the test reads its account directly). The
session reconciles first (an order a crashed session left at the venue is cancelled, against the
default DuckDB store in the runs root), trades (a taker fill and resting post-only bids), and on
SIGTERM cancels its orders and stops; the event log, the store and the venue then agree fill for
fill, and the event log feeds ``hft report post-mortem``.

Backtest: a capture (Kraken: recorded from the fake the way ``hft record`` does; Coinbase: the real
BAND-GBP capture) imported with ``hft data import --format <venue>-capture`` runs through ``hft
backtest`` twice, in two processes, to byte-identical event logs that the reports read.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from engine.runners import registry
from sim.fake_coinbase import FakeCoinbase
from sim.fake_kraken import FakeKraken

REPO = Path(__file__).resolve().parents[1]
HFT = [sys.executable, "-m", "engine.cli"]
LIVE_S = 60.0  # the longest a live session may take to quote and fill on a loaded machine


@dataclass
class Venue:
    """What the test needs of one venue: its fake, the environment ``hft live`` reads, the
    Ladder's parameters for its market, and the fake's account as plain rows."""

    name: str
    symbol: str
    env: dict[str, str]
    params: dict[str, Any]
    open_orders: Callable[[], list[str]]  # client ids of the account's open orders
    trades: Callable[[], dict[str, str]]  # trade id -> client id, the account's fills
    leave_order: Callable[[], str]  # places an order as a crashed session would have; its client id


def kraken_venue(fk: FakeKraken) -> Venue:
    ex = fk.exchange

    def leave() -> str:
        o, _ = ex.add_order(
            "BTC/USD", "buy", "limit", "0.0002", "30000.00", post_only=True, cl_ord_id="crash-leftover-1"
        )
        return o.cl_ord_id

    return Venue(
        "kraken",
        "BTC-USD",
        {
            "KRAKEN_REST_URL": fk.rest_url,
            "KRAKEN_WS_URL": fk.ws_url,
            "KRAKEN_WS_AUTH_URL": fk.ws_auth_url,
            "KRAKEN_API_KEY": fk.api_key,
            "KRAKEN_API_SECRET": fk.api_secret,
        },
        {"levels": 3, "gap": 150.0, "size": 0.0002},
        lambda: [o.cl_ord_id for o in ex.orders.values() if o.status in ("pending", "open")],
        lambda: {tid: str(t["cl_ord_id"]) for tid, t in ex.trades.items()},
        leave,
    )


def coinbase_venue(fc: FakeCoinbase) -> Venue:
    ex = fc.exchange

    def leave() -> str:
        cid = str(uuid.uuid4())
        body = {"product_id": "BAND-GBP", "side": "buy", "type": "limit", "price": "10.0000", "size": "1"}
        ex.place({**body, "client_oid": cid, "post_only": True})
        return cid

    return Venue(
        "coinbase",
        "BAND-GBP",
        {
            "COINBASE_REST_URL": fc.rest_url,
            "COINBASE_WS_URL": fc.ws_url,
            "COINBASE_USER_WS_URL": fc.ws_url,
            "COINBASE_API_KEY": fc.api_key,
            "COINBASE_API_SECRET": fc.api_secret,
            "COINBASE_API_PASSPHRASE": fc.passphrase,
        },
        {"levels": 3, "gap": 0.05, "size": 1.0},
        lambda: [o.client_oid for o in ex.open_orders()],
        lambda: {str(f.trade_id): f.order.client_oid for f in ex.fills},
        leave,
    )


def live_config(tmp: Path, v: Venue) -> Path:
    exchange = json.loads((REPO / "config" / "exchanges" / f"{v.name}.json").read_text())
    exchange["symbols"] = [v.symbol]
    if v.name == "kraken":  # the nonce high-water mark belongs to this test, not the repository
        exchange["nonce_file"] = str(tmp / "kraken_nonce")
    (tmp / f"{v.name}.json").write_text(json.dumps(exchange))
    cfg = json.loads((REPO / "config" / "live" / f"market_maker_{v.name}.json").read_text())
    cfg["exchanges"] = {v.name: str(tmp / f"{v.name}.json")}
    cfg["live"].update(unknown_orders="cancel", cancel_on_stop=True, reconcile_timeout_s=20)
    cfg["risk"]["price_band_pct"] = 5.0
    cfg["strategies"] = [
        {
            "strategy_id": "ladder",
            "class": "live_strategies:Ladder",
            "venue": v.name,
            "symbols": [v.symbol],
            "params": {**v.params, "replace_after": 10**9},
        }
    ]
    cfg["output"]["runs_root"] = str(tmp / "runs")
    path = tmp / f"live_{v.name}.json"
    path.write_text(json.dumps(cfg))
    return path


async def wait_for(cond: Callable[[], bool], proc: asyncio.subprocess.Process, what: str) -> None:
    end = asyncio.get_running_loop().time() + LIVE_S
    while not cond():
        if proc.returncode is not None:
            raise AssertionError(f"hft live exited {proc.returncode} while waiting for {what}")
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out after {LIVE_S:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def live_session(v: Venue, tmp: Path) -> tuple[Path, str, str, set[str]]:
    """Run ``hft live`` until it has a fill and three resting bids, then SIGTERM it."""
    leftover = v.leave_order()
    cfg = live_config(tmp, v)
    out = tmp / "runs" / "live"
    env = {k: val for k, val in os.environ.items() if not k.startswith(("KRAKEN_", "COINBASE_"))}
    env.update(v.env, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
    proc = await asyncio.create_subprocess_exec(
        *HFT, "live", str(cfg), "--out", str(out),
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    comm = asyncio.ensure_future(proc.communicate())

    def traded() -> bool:
        mine = [c for c in v.open_orders() if c != leftover]
        return bool(v.trades()) and len(mine) == 3 and leftover not in v.open_orders()

    failed: AssertionError | None = None
    try:
        await wait_for(traded, proc, "a fill, three resting bids and the leftover cancelled")
    except AssertionError as exc:
        failed = exc
    open_at_stop = set(v.open_orders())
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(comm, 60)
    if failed is not None:  # with what the node said, to see why
        raise AssertionError(f"{failed}\n{stderr.decode()[-3000:]}")
    assert proc.returncode == 0, stderr.decode()[-3000:]
    return out, stdout.decode(), leftover, open_at_stop


async def with_fake(venue: str, body: Callable[[Venue], Awaitable[Any]]) -> Any:
    if venue == "kraken":
        secret = base64.b64encode(secrets.token_bytes(64)).decode()
        async with FakeKraken(api_key=secrets.token_hex(16), api_secret=secret, speed=5) as fk:
            return await body(kraken_venue(fk))
    fc = FakeCoinbase(interval_s=0.02, heartbeat_interval_s=0.5)
    await fc.start()
    try:
        return await body(coinbase_venue(fc))
    finally:
        await fc.stop()


def rows(path: Path, sql: str) -> list[tuple]:
    return duckdb.connect().execute(sql.replace("{run}", str(path))).fetchall()


@pytest.mark.parametrize("venue", ["kraken", "coinbase"])
def test_live_session_reconciles_trades_and_stops_clean(venue: str, tmp_path: Path) -> None:
    async def body(v: Venue) -> tuple:
        out, stdout, leftover, open_at_stop = await live_session(v, tmp_path)
        return out, stdout, leftover, open_at_stop, v.open_orders(), v.trades()

    out, stdout, leftover, open_at_stop, open_after, venue_trades = asyncio.run(with_fake(venue, body))
    assert "Live session summary" in stdout
    # the stop cancelled everything the session had open at the venue
    assert len(open_at_stop) == 3 and open_after == []
    cancels = rows(out, "select client_order_id from read_parquet('{run}/orders.parquet') where event = 'canceled'")
    assert {c for (c,) in cancels} >= open_at_stop
    # reconciliation ran first and cancelled what a crashed session had left at the venue
    rec = rows(out, "select item, action, client_order_id, seq from read_parquet('{run}/reconcile.parquet')")
    assert ("order", "cancelled", leftover) in {r[:3] for r in rec}
    first_submit = rows(out, "select min(seq) from read_parquet('{run}/orders.parquet') where event = 'submit'")[0][0]
    assert max(r[3] for r in rec) < first_submit
    # every fill the venue made for the account is in the event log once, and nothing else is
    fills = rows(out, "select trade_id, client_order_id from read_parquet('{run}/fills.parquet')")
    assert venue_trades and sorted(fills) == sorted(venue_trades.items())
    # ... and in the default store in the runs root, once each
    con = duckdb.connect(str(tmp_path / "runs" / "hft.duckdb"), read_only=True)
    stored = con.execute("select trade_id, count(*) from fills where venue = ? group by trade_id", [venue]).fetchall()
    assert dict(stored) == {t: 1 for t in venue_trades}
    con.close()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "live" and manifest["status"] == "closed"
    # the event log feeds the operator's reports
    report = subprocess.run(
        [*HFT, "report", "post-mortem", str(out)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert report.returncode == 0, report.stderr
    assert "Post-mortem" in (out / "post_mortem.md").read_text()


COINBASE_CAPTURE = (
    REPO.parent / "shared" / "fixtures" / "venues" / "coinbase" / "exchange_capture_BAND-GBP_interleaved.jsonl"
)


@dataclass
class Market:
    """A venue's capture and what a backtest of it needs: the instrument's rules (the venue's own
    decimals), balances, and the market maker's sizes for its prices."""

    venue: str
    symbol: str
    instrument: dict[str, Any]
    balances: dict[str, float]
    params: dict[str, float]


MARKETS = {
    "kraken": Market(
        "kraken",
        "BTC-USD",  # the fake's BTC/USD: Kraken's pair decimals (price 2, volume 8)
        {"venue_symbol": "XBTUSD", "price_scale": 2, "size_scale": 8, "tick": "0.01", "lot": "0.00000001",
         "min_qty": "0.0001", "min_notional": "0.5", "maker_fee": "0.0025", "taker_fee": "0.004"},
        {"USD": 100000.0, "BTC": 1.0},
        {"order_size": 0.001, "max_inventory": 0.01, "half_spread_bps": 0.5, "requote_bps": 0.2},
    ),
    "coinbase": Market(
        "coinbase",
        "BAND-GBP",  # the real 2021 capture, Coinbase's product rules
        {"venue_symbol": "BAND-GBP", "price_scale": 8, "size_scale": 8, "tick": "0.0001", "lot": "0.01",
         "min_qty": "0.1", "min_notional": "1", "maker_fee": "0.004", "taker_fee": "0.006"},
        {"GBP": 100000.0, "BAND": 1000.0},
        {"order_size": 1.0, "max_inventory": 10.0, "half_spread_bps": 5.0, "requote_bps": 2.0},
    ),
}  # fmt: skip


def record_kraken(rec: Path) -> list[Path]:
    """A few seconds of the fake's BTC/USD recorded the way ``hft record`` records Kraken."""
    from engine.runners.record import run_record
    from venues.kraken.adapter import KrakenAdapter
    from venues.kraken.config import parse_config

    async def record() -> None:
        async with FakeKraken(speed=30) as fk:
            cfg = parse_config(
                {"rest_url": fk.rest_url, "ws_url": fk.ws_url, "ws_auth_url": fk.ws_auth_url, "symbols": ["BTC-USD"]},
                "kraken.json",
                env={},
            )
            await run_record(KrakenAdapter(cfg), rec, duration_s=3.0, flush_interval_s=0.2)

    asyncio.run(asyncio.wait_for(record(), 60))
    return sorted((rec / "raw").glob("kraken_*.gz"))


@pytest.mark.parametrize("venue", ["kraken", "coinbase"])
def test_capture_imports_and_backtests_deterministically(venue: str, tmp_path: Path) -> None:
    m = MARKETS[venue]
    if venue == "kraken":
        captures = record_kraken(tmp_path / "record")
    else:
        if not COINBASE_CAPTURE.exists():
            pytest.skip(f"{COINBASE_CAPTURE} not found")
        captures = [COINBASE_CAPTURE]
    assert captures
    data = tmp_path / "data"
    imported = subprocess.run(
        [*HFT, "data", "import", "--format", f"{venue}-capture", "--out", str(data), "--strict", *map(str, captures)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert list(data.glob(f"venue={venue}/symbol={m.symbol}/date=*/*.parquet"))

    instrument = {"venue": venue, "symbol": m.symbol, "kind": "spot", **m.instrument}
    (tmp_path / "instruments.json").write_text(json.dumps({"instruments": [instrument]}))
    cfg = json.loads((REPO / "config" / "backtests" / "market_maker_sample.json").read_text())
    strategy = json.loads((REPO / "config" / "strategies" / "market_maker.json").read_text())
    strategy.update(venue=venue, symbols=[m.symbol])
    strategy["params"].update(m.params)
    cfg["name"] = f"{venue}_capture"
    cfg["data"].update(root=str(data), venue=venue, symbols=[m.symbol])
    cfg["instruments"] = str(tmp_path / "instruments.json")
    cfg["balances"] = {venue: m.balances}
    fees = {"maker_fee": float(m.instrument["maker_fee"]), "taker_fee": float(m.instrument["taker_fee"])}
    cfg["sim"]["venues"] = {venue: {**fees, "supports_modify": venue == "kraken"}}
    cfg["strategies"] = [strategy]
    cfg["output"]["runs_root"] = str(tmp_path / "runs")
    path = tmp_path / "bt.json"
    path.write_text(json.dumps(cfg))

    def backtest(name: str) -> Path:
        out = tmp_path / name
        proc = subprocess.run(
            [*HFT, "backtest", str(path), "--out", str(out), "--no-progress", "--json"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["book_updates"] > 20 and summary["orders_submitted"] > 0
        return out

    first, second = backtest("first"), backtest("second")  # two processes: no shared state, other hash seeds
    logs = sorted(p.name for p in first.glob("*.parquet"))
    assert {"orders.parquet", "fills.parquet", "market.parquet"} <= set(logs)
    assert sorted(p.name for p in second.glob("*.parquet")) == logs
    for name in logs:
        assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} differs between two runs"
    # a normal event log: orders under the venue's client id rules, and the reports read it
    rules = registry.profile(venue).client_ids
    ids = rows(first, "select distinct client_order_id from read_parquet('{run}/orders.parquet')")
    assert ids and all(rules.valid(c) for (c,) in ids)
    report = subprocess.run([*HFT, "report", "post-mortem", str(first)], cwd=REPO, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "Post-mortem" in (first / "post_mortem.md").read_text()
