"""Restart reconciliation against the store, in process: the fake Binance over loopback, two live
sessions of one node (``engine.runners.session``) writing the same store (a DuckDB file, and a
real PostgreSQL server), nothing mocked.

The first session quotes (four post-only bids) and takes once (an IOC buy), then stops without
cancelling. While nobody listens, the market fills one bid, someone cancels another from the
web UI, a third is half filled, and an order with the node's id shape but unknown to the store
appears. The second session's start-up reconciliation must resolve each: the filled and the
cancelled bid are gone at the venue (``order_gone_at_venue``, their final state applied), the
half-filled and the untouched bid are the node's own again, each fill missed while down is
booked once (``fill_missed``), the stranger is cancelled per the policy
(``order_unknown_locally``), and positions come back from the store plus the recovered fills.
A second reconciliation applies nothing again; a balance the store cannot explain (a deposit)
is drift: a ``position_drift`` row and the strategy halted, saying what differs by how much.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from live_strategies import Ladder

from engine.model import OrderStatus
from engine.reconcile import ReconcilePolicy, reconcile_running
from engine.runners.session import open_session
from engine.runners.spec import load_run_spec
from engine.store import load_store_settings, open_store
from venues.binance.adapter import BinanceAdapter
from venues.binance.config import Credentials, load_config

server = pytest.importorskip("sim.fake_binance.server")

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
KEY, SECRET = "reconcile-store-key-" + "k" * 44, "reconcile-store-secret-" + "s" * 41
SPEED = 2
SIZE = "0.0002"
DEPOSIT_BTC = 0.05

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


async def until(cond: Callable[[], Any], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


def write_config(tmp: Path, database: dict[str, Any]) -> Path:
    cfg = {
        "name": "reconcile_node",
        "exchanges": {"binance": str(REPO / "config" / "exchanges" / "binance.json")},
        "live": {"unknown_orders": "cancel", "cancel_on_stop": False, "reconcile_timeout_s": 30},
        "risk": {"max_order_size_usd": 500, "max_orders_per_second": 20, "price_band_pct": 5.0},
        "strategies": [
            {
                "strategy_id": "ladder",
                "class": "live_strategies:Ladder",
                "venue": "binance",
                "symbols": ["BTC-USDT"],
                "params": {},
            }
        ],
        "database": {**database, "journal_dir": str(tmp / "journal")},
        "output": {"runs_root": str(tmp / "runs"), "mark_interval_ms": 1000},
    }
    path = tmp / "node.json"
    path.write_text(json.dumps(cfg))
    return path


def adapter(fb: Any) -> BinanceAdapter:
    overrides = {"rest_url": fb.rest_url, "ws_url": fb.ws_url, "ws_api_url": fb.ws_api_url, "http_timeout_s": 5.0}
    cfg = load_config(REPO / "config" / "exchanges" / "binance.json", overrides=overrides, env={})
    return BinanceAdapter(cfg, Credentials(KEY, SECRET))


def ladder(take: bool) -> Ladder:
    params = {"levels": 4, "gap": 400.0, "size": float(SIZE), "take": take, "replace_after": 10**9}
    return Ladder("ladder", "binance", ["BTC-USDT"], params)


def open_bids(fb: Any) -> list[Any]:
    return [o for o in fb.exchange.orders.values() if o.is_open and o.type == "LIMIT_MAKER"]


@dataclass
class World:
    trades: list[tuple[str, str, float]] = field(default_factory=list)  # the fake's: (trade id, side, qty)
    ids: dict[str, str] = field(default_factory=dict)  # role -> client order id
    start: Any = None  # the second session's start-up ReconcileResult
    status: dict[str, str] = field(default_factory=dict)  # role -> order status after start
    filled: dict[str, float] = field(default_factory=dict)
    position: float = 0.0
    again: Any = None  # a second reconciliation, nothing changed
    drift: Any = None  # after the deposit
    halted_reason: str = ""
    run2: Path | None = None
    store_fills: list[dict] = field(default_factory=list)
    store_positions: list[dict] = field(default_factory=list)
    store_open: list[dict] = field(default_factory=list)
    venue_open: set[str] = field(default_factory=set)
    local_open: set[str] = field(default_factory=set)
    half_after_cancel: tuple[float, float] = (0.0, 0.0)  # (filled here, filled at the venue)
    final_fills: list[dict] = field(default_factory=list)  # the store's, after both sessions


async def scenario(tmp: Path, database: dict[str, Any]) -> World:
    w = World()
    config = write_config(tmp, database)
    spec = load_run_spec(config, mode="live")
    async with server.FakeBinance(data=[CAPTURE], api_key=KEY, api_secret=SECRET, speed=SPEED) as fb:
        # the first process: four bids and one IOC buy, then it goes away leaving the bids
        s1 = await open_session(spec, "live", tmp / "runs" / "r1", {"binance": adapter(fb)}, strategies=[ladder(True)])
        stop1 = asyncio.Event()
        task1 = asyncio.create_task(s1.run(stop1))
        took = lambda: any(o.type == "LIMIT" and o.executed for o in fb.exchange.orders.values())  # noqa: E731
        await until(lambda: len(open_bids(fb)) == 4 and took(), 60, "four bids resting and the IOC filled")
        stop1.set()
        await task1
        # while it is away
        a, b, c, d = sorted(open_bids(fb), key=lambda o: -o.price)
        w.ids = {"filled": a.client_order_id, "cancelled": b.client_order_id, "half": c.client_order_id}
        w.ids["untouched"] = d.client_order_id
        fb.fill_order(a.client_order_id)
        fb.cancel_order(b.client_order_id)
        fb.fill_order(c.client_order_id, qty="0.0001")
        stranger, _ = fb.exchange.place(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "quantity": SIZE,
             "price": f"{d.price / 1e8 - 100:.2f}", "newClientOrderId": "ladder-zzzzzz-99"}
        )  # fmt: skip
        w.ids["stranger"] = stranger.client_order_id
        # an order of the node's whose rows never reached the store (sent as it went away), filled since
        lost, _ = fb.exchange.place(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "quantity": SIZE,
             "price": f"{d.price / 1e8 - 200:.2f}", "newClientOrderId": f"{a.client_order_id[:-2]}-98"}
        )  # fmt: skip
        fb.fill_order(lost.client_order_id)
        w.ids["lost"] = lost.client_order_id
        # the second process of the same node
        w.run2 = tmp / "runs" / "r2"
        s2 = await open_session(spec, "live", w.run2, {"binance": adapter(fb)}, strategies=[ladder(False)])
        stop2 = asyncio.Event()
        task2 = asyncio.create_task(s2.run(stop2))
        try:
            await until(lambda: s2.started or task2.done(), 90, "the second session to start")
            if task2.done():
                task2.result()
            engine = s2.node.engine
            w.start = s2.reconciled[0]
            oms = engine.oms
            for role, cid in w.ids.items():
                order = oms.orders.get(cid)
                w.status[role] = order.status.value if order is not None else "unknown"
                w.filled[role] = order.filled / 1e8 if order is not None else 0.0
            w.position = engine.portfolio.position("ladder", "binance", "BTC-USDT").qty_float
            w.venue_open = {o.client_order_id for o in fb.exchange.orders.values() if o.is_open}
            w.local_open = {o.client_order_id for o in oms.all_open()}
            await s2.store.flush(10)
            w.store_fills = await s2.store.query("fills", venue="binance")
            w.store_positions = await s2.store.query("positions", "binance")
            w.store_open = await s2.store.query("open_orders", "binance")
            account = s2.node.adapters["binance"].account()
            policy = ReconcilePolicy(timeout_s=30)
            w.again = await reconcile_running(engine, "binance", account, ["BTC-USDT"], policy, s2.store, w.run2)
            fb.deposit("BTC", str(DEPOSIT_BTC))  # a deposit nobody told the node of
            w.drift = await reconcile_running(engine, "binance", account, ["BTC-USDT"], policy, s2.store, w.run2)
            halt = engine.risk._halted.get("ladder")
            w.halted_reason = halt.reason if halt is not None else ""
            # the halt cancels the half-filled bid: its answer must not book its fill again
            half = oms.orders[w.ids["half"]]
            await until(lambda: half.status.is_terminal, 30, "the half-filled bid cancelled by the halt")
            w.half_after_cancel = (half.filled / 1e8, fb.exchange.orders[int(half.venue_order_id)].executed / 1e8)
        finally:
            stop2.set()
            await task2
        w.trades = [(str(f.trade_id), o.side, f.qty / 1e8) for o, f in fb.exchange.trades]
    store = open_store(load_store_settings(config))
    await store.connect()
    try:
        w.final_fills = await store.fills(venue="binance")
    finally:
        await store.close()
    return w


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The scenario once per backend: the embedded DuckDB file, and a real PostgreSQL server
    (``tests/pg_fixtures.py``; skipped only where no PostgreSQL binaries are installed)."""
    tmp = tmp_path_factory.mktemp(f"reconcile_store_{request.param}")
    if request.param == "duckdb":
        return asyncio.run(scenario(tmp, {"backend": "duckdb", "duckdb_path": str(tmp / "store.duckdb")}))
    server = request.getfixturevalue("pg_server")
    if not server.running:
        server.start()
    name = server.create_database()
    database = {"backend": "postgresql", "host": server.host, "port": server.port, "name": name, "user": "postgres",
                "password_env": "HFT_TEST_NO_PASSWORD", "connection_pool_size": 5, "min_pool_size": 1}  # fmt: skip
    try:
        return asyncio.run(scenario(tmp, database))
    finally:
        if server.running:
            server.drop_database(name)


def actions(res: Any, action: str) -> list[dict]:
    return [a for a in res.actions if a["action"] == action]


def test_orders_filled_or_cancelled_while_down_are_closed_with_their_final_state(world: World) -> None:
    gone = {a["client_order_id"]: a["detail"] for a in actions(world.start, "order_gone_at_venue")}
    assert set(gone) == {world.ids["filled"], world.ids["cancelled"], world.ids["lost"]}
    assert gone[world.ids["filled"]].startswith("filled at the venue")
    assert gone[world.ids["cancelled"]].startswith("canceled at the venue")
    assert world.status["filled"] == OrderStatus.FILLED.value and world.filled["filled"] == pytest.approx(0.0002)
    assert world.status["cancelled"] == OrderStatus.CANCELED.value


def test_stored_open_orders_still_open_are_the_nodes_own_again(world: World) -> None:
    assert set(world.start.restored_orders) == {world.ids[r] for r in ("filled", "cancelled", "half", "untouched")}
    assert world.status["half"] == OrderStatus.PARTIALLY_FILLED.value and world.filled["half"] == pytest.approx(0.0001)
    assert world.status["untouched"] == OrderStatus.OPEN.value
    assert not world.start.adopted  # neither adopted as a stranger's nor cancelled
    assert world.ids["half"] not in world.start.cancelled and world.ids["untouched"] not in world.start.cancelled


def test_an_order_unknown_locally_is_handled_by_the_policy(world: World) -> None:
    assert world.start.unknown == [world.ids["stranger"], world.ids["lost"]]
    unknown = [a["client_order_id"] for a in actions(world.start, "order_unknown_locally")]
    assert unknown == [world.ids["stranger"], world.ids["lost"]]
    assert world.start.cancelled == [world.ids["stranger"]]
    assert world.ids["stranger"] not in world.venue_open


def test_an_order_the_store_never_heard_of_that_filled_goes_to_its_strategy(world: World) -> None:
    assert world.status["lost"] == OrderStatus.FILLED.value and world.filled["lost"] == pytest.approx(0.0002)
    assert world.ids["lost"] in world.start.gone
    assert world.start.fills_unattributed == []


def test_after_start_the_nodes_open_orders_are_the_venues(world: World) -> None:
    assert world.local_open == world.venue_open


def test_each_fill_missed_while_down_is_applied_once(world: World) -> None:
    missed = actions(world.start, "fill_missed")
    assert sorted(a["client_order_id"] for a in missed) == sorted([world.ids[r] for r in ("filled", "half", "lost")])
    assert world.again.fills_missed == [] and world.again.restored_orders == []
    # every trade the fake made for the account is in the store once, and nothing else is
    stored = [str(f["trade_id"]) for f in world.store_fills]
    assert sorted(stored) == sorted(t for t, _, _ in world.trades)


def test_a_restored_orders_later_reports_book_nothing_twice(world: World) -> None:
    here, venue = world.half_after_cancel
    assert here == pytest.approx(venue) == pytest.approx(0.0001)
    stored = [str(f["trade_id"]) for f in world.final_fills]
    assert sorted(stored) == sorted(t for t, _, _ in world.trades)


def test_positions_are_the_stores_plus_the_recovered_fills(world: World) -> None:
    bought = sum(q if side == "BUY" else -q for _, side, q in world.trades)
    assert world.position == pytest.approx(bought, abs=1e-12)
    [row] = [r for r in world.store_positions if r["strategy_id"] == "ladder"]
    assert row["position"] == pytest.approx(bought, abs=1e-12)
    assert world.start.restored_positions == ["ladder binance:BTC-USDT 0.0002"]
    assert world.start.drift == [] and world.again.drift == []


def test_a_balance_the_store_cannot_explain_is_drift_and_halts_the_strategy(world: World) -> None:
    [d] = world.drift.drift
    assert d["asset"] == "BTC" and d["difference"] == pytest.approx(DEPOSIT_BTC, abs=1e-9)
    assert world.drift.halted == ["ladder"]
    assert "position drift on binance BTC" in world.halted_reason and "off by +0.05 BTC" in world.halted_reason
    [row] = actions(world.drift, "position_drift")
    assert row["venue_value"] - row["local_value"] == pytest.approx(DEPOSIT_BTC, abs=1e-9)


def test_every_action_is_an_event_log_row_and_in_the_report(world: World) -> None:
    assert world.run2 is not None
    rows = pq.read_table(world.run2 / "reconcile.parquet").to_pylist()
    logged = [(r["action"], r["client_order_id"]) for r in rows]
    for res in (world.start, world.again, world.drift):
        for a in res.actions:
            assert (a["action"], a["client_order_id"]) in logged
    reports = sorted(world.run2.glob("reconciliation-*.json"))
    assert len(reports) == 3
    first = json.loads(reports[0].read_text())
    assert first["counts"]["order_gone_at_venue"] == 3 and first["counts"]["fill_missed"] == 3
    assert [a["action"] for a in first["actions"]] == [a["action"] for a in world.start.actions]
    # the store has no open order the venue does not have (the stranger was never stored)
    assert {r["client_order_id"] for r in world.store_open} <= world.venue_open | world.local_open


def test_the_venues_trade_history_is_read_whole_across_pages() -> None:
    """``recent_fills`` pages through ``myTrades`` (1000 a page): 2,345 trades come back once each,
    oldest first, from the beginning or from a time."""

    async def main() -> tuple[list[tuple[str, int]], list[str], list[str], int]:
        async with server.FakeBinance(data=[CAPTURE], api_key=KEY, api_secret=SECRET, speed=0, start="manual") as fb:
            await fb.advance(2000)
            px = fb.book("BTCUSDT").best_bid_fixed // 10**8 - 500
            times = []
            for i in range(2345):
                o, _ = fb.exchange.place(
                    {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "quantity": "0.0001",
                     "price": f"{px}", "newClientOrderId": f"page-{i}"}
                )  # fmt: skip
                fb.fill_order(o.client_order_id)
                times.append(o.fills[-1].time)
            ad = adapter(fb)
            try:
                await ad.load_instruments(["BTC-USDT"])
                account = ad.account()
                ever = await account.recent_fills("BTC-USDT", 0)
                since = await account.recent_fills("BTC-USDT", times[1500] * 1_000_000)
            finally:
                await ad.close()
            trades = [(str(f.trade_id), f.time) for _, f in fb.exchange.trades]
            return trades, [f.trade_id for f in ever], [f.trade_id for f in since], times[1500]

    trades, ever, since, t0 = asyncio.run(main())
    assert ever == [t for t, _ in trades] and len(ever) == 2345
    # from a time: every trade of that millisecond on (trades share milliseconds)
    assert since == [t for t, ms in trades if ms >= t0] and len(since) >= 845
