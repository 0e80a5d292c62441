"""The store's contract on both backends (DuckDB file and a real PostgreSQL): every table written
and read back alike, idempotent writes, orders/positions keep the newest state, and DuckDB's
single-process lock reported as ``StoreLocked``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_rows import DAY, NAN, SEC, T0, fill, order, position, row, same, tick

from engine.store import Store, StoreLocked, StoreSettings, open_store

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["duckdb", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "duckdb":
        settings = StoreSettings(backend="duckdb", duckdb_path=tmp_path / "hft.duckdb")
    else:
        settings = request.getfixturevalue("pg_settings")
    st = open_store(settings)
    await st.connect()
    await st.migrate()
    try:
        yield st
    finally:
        await st.close()


async def _fill_everything(st: Store) -> None:
    await st.begin_run("run-1", "production", "paper", "config/production.json", T0, {"code_version": "abc123"})
    await st.write(
        "orders",
        [
            order(1, T0, "o1", "pending", event="submit", venue_order_id=""),
            order(2, T0 + 1 * SEC, "o1", "open"),
            order(3, T0 + 2 * SEC, "o2", "open", symbol="ETH-USDT", price=3000.0),
            order(
                5, T0 + 4 * SEC, "o1", "partially_filled", event="partially_filled", filled_qty=0.005, leaves_qty=0.005
            ),
            order(6, T0 + 5 * SEC, "o3", "rejected", event="rejected", reason="Insufficient balance", code=-2010),
        ],
        "run-1",
    )
    await st.write("fills", [fill(4, T0 + 4 * SEC, "o1", "t1")], "run-1")
    await st.write(
        "positions", [position(4, T0 + 4 * SEC, 0.005), position(7, T0 + 6 * SEC, 0.0, symbol="ETH-USDT")], "run-1"
    )
    await st.write(
        "risk",
        [
            row(
                "risk",
                seq=8,
                ts=T0 + 7 * SEC,
                strategy_id="mm",
                venue="binance",
                symbol="BTC-USDT",
                check="ok",
                passed=True,
            ),
            row(
                "risk",
                seq=9,
                ts=T0 + 8 * SEC,
                strategy_id="mm",
                venue="binance",
                symbol="BTC-USDT",
                check="position_limit",
                passed=False,
                reason="Risk check failed: Position limit exceeded",
                value=2.0,
                limit=1.0,
            ),
        ],
        "run-1",
    )
    await st.write(
        "incidents", [row("incidents", seq=10, ts=T0 + 9 * SEC, venue="binance", kind="resync", value=NAN)], "run-1"
    )
    await st.write(
        "reconcile",
        [row("reconcile", seq=11, ts=T0 + 10 * SEC, venue="binance", item="order", action="adopted", local_value=NAN)],
        "run-1",
    )
    await st.put_balances("binance", {"USDT": (900.0, 100.0), "BTC": (0.5, 0.0)}, T0 + 11 * SEC)
    await st.copy_ticks([tick(i, T0 + i * SEC) for i in range(20)], run_id="run-1")
    await st.copy_snapshots([(T0, "binance", "BTC-USDT", 7, [49_999.0, 49_998.0], [1.0, 2.0], [50_001.0], [3.0])])
    await st.end_run("run-1", "closed", T0 + 60 * SEC, {"pnl": 1.5})


async def _everything(st: Store) -> dict:
    counts = {}
    for t in (
        "order_events",
        "fills",
        "positions",
        "risk_violations",
        "incidents",
        "reconciliations",
        "market_data_ticks",
        "order_book_snapshots",
    ):
        counts[t] = (await st._fetch(f"SELECT count(*) AS n FROM {t}"))[0]["n"]
    snaps = await st._fetch("SELECT ts_ns, depth, bid_px, bid_sz, ask_px, ask_sz FROM order_book_snapshots")
    risk = await st._fetch('SELECT "check", "limit", reason FROM risk_violations')
    ticks = await st._fetch("SELECT seq, time, ts FROM market_data_ticks ORDER BY seq")
    run = await st.run("run-1")
    assert run is not None
    return {
        "counts": counts,
        "open": [(o["client_order_id"], o["status"], o["filled_qty"]) for o in await st.open_orders("binance")],
        "open_eth": [o["client_order_id"] for o in await st.open_orders("binance", ["ETH-USDT"])],
        "o1": await st.order("binance", "o1"),
        "o3_any_venue": (await st.order(None, "o3") or {}).get("reason"),
        "rejected": [o["client_order_id"] for o in await st.orders(status="rejected")],
        "positions": await st.positions("binance"),
        "balances": await st.balances("binance"),
        "fills": await st.fills(venue="binance", symbol="BTC-USDT"),
        "trade_ids": await st.fill_trade_ids("binance", "BTC-USDT", T0),
        "last_fill": await st.last_fill_ns("binance", "BTC-USDT"),
        "no_fill": await st.last_fill_ns("binance", "XRP-USDT"),
        "snaps": snaps,
        "risk": risk,
        "tick_times": [(t["seq"], t["time"].timestamp(), t["ts"] // 1000 / 1e6) for t in ticks],
        "run": (run["status"], run["code_version"], run["started_ns"], run["closed_ns"]),
    }


async def test_every_table_written_and_read_back(store: Store) -> None:
    await _fill_everything(store)
    got = await _everything(store)
    assert got["counts"] == {
        "order_events": 5,
        "fills": 1,
        "positions": 2,
        "risk_violations": 1,
        "incidents": 1,
        "reconciliations": 1,
        "market_data_ticks": 20,
        "order_book_snapshots": 1,
    }
    assert got["open"] == [("o1", "partially_filled", 0.005), ("o2", "open", 0.0)]
    assert got["open_eth"] == ["o2"]
    o1 = got["o1"]
    assert (o1["venue_order_id"], o1["created_ns"], o1["updated_ns"], o1["last_seq"]) == ("v-o1", T0, T0 + 4 * SEC, 5)
    assert o1["created_at"].timestamp() == T0 / 1e9 and o1["run_id"] == "run-1"
    assert got["o3_any_venue"] == "Insufficient balance" and got["rejected"] == ["o3"]
    assert [(p["symbol"], p["position"]) for p in got["positions"]] == [("BTC-USDT", 0.005), ("ETH-USDT", 0.0)]
    assert {a: (b["total"], b["free"], b["locked"]) for a, b in got["balances"].items()} == {
        "BTC": (0.5, 0.5, 0.0),
        "USDT": (1000.0, 900.0, 100.0),
    }
    assert [(f["trade_id"], f["qty"], f["ts_event"]) for f in got["fills"]] == [("t1", 0.005, T0 + 4 * SEC - 1000)]
    assert got["trade_ids"] == {("t1", "o1")} and got["last_fill"] == T0 + 4 * SEC - 1000 and got["no_fill"] is None
    assert got["snaps"] == [
        {
            "ts_ns": T0,
            "depth": 2,
            "bid_px": [49_999.0, 49_998.0],
            "bid_sz": [1.0, 2.0],
            "ask_px": [50_001.0],
            "ask_sz": [3.0],
        }
    ]
    assert got["risk"] == [
        {"check": "position_limit", "limit": 1.0, "reason": "Risk check failed: Position limit exceeded"}
    ]
    assert all(t == s for _, t, s in got["tick_times"])
    assert got["run"] == ("closed", "abc123", T0, T0 + 60 * SEC)


async def test_both_backends_answer_alike(pg_settings: StoreSettings, tmp_path: Path) -> None:
    answers = []
    for settings in (StoreSettings(backend="duckdb", duckdb_path=tmp_path / "x.duckdb"), pg_settings):
        async with open_store(settings) as st:
            await st.migrate()
            await _fill_everything(st)
            answers.append(await _everything(st))
    duck, pg = answers
    for key in duck:
        assert same(duck[key], pg[key]), key


async def test_writing_the_same_batch_twice_stores_it_once(store: Store) -> None:
    await _fill_everything(store)
    before = await _everything(store)
    for table, rows in (
        ("orders", [order(1, T0, "o1", "pending", event="submit"), order(2, T0 + SEC, "o1", "open")]),
        ("fills", [fill(4, T0 + 4 * SEC, "o1", "t1")]),
        ("positions", [position(4, T0 + 4 * SEC, 0.005)]),
        ("incidents", [row("incidents", seq=10, ts=T0 + 9 * SEC, venue="binance", kind="resync", value=NAN)]),
    ):
        assert await store.write(table, rows, "run-1") == 0, table
    # the same fill recovered from the venue's trade history under another run and sequence: still once
    assert await store.write("fills", [fill(99, T0 + 99 * SEC, "o1", "t1")], "run-2") == 0
    after = await _everything(store)
    assert same(before, after)


async def test_an_older_order_event_never_overwrites_a_newer_state(store: Store) -> None:
    await store.write(
        "orders", [order(5, T0 + 5 * SEC, "o1", "filled", event="filled", filled_qty=0.01, leaves_qty=0)], "r"
    )
    # the submit and the ack arrive late (a journal replayed out of order)
    assert (
        await store.write(
            "orders", [order(1, T0, "o1", "pending", event="submit"), order(2, T0 + SEC, "o1", "open")], "r"
        )
        == 2
    )
    o = await store.order("binance", "o1")
    assert o is not None and (o["status"], o["filled_qty"], o["last_seq"]) == ("filled", 0.01, 5)
    assert o["created_ns"] == T0  # the oldest event still dates the order
    assert await store.open_orders("binance") == []
    # an event at the same time but a later seq wins; an older position does not replace a newer one
    await store.write("orders", [order(6, T0 + 5 * SEC, "o1", "filled", reason="late ack")], "r")
    o = await store.order("binance", "o1")
    assert o is not None and o["reason"] == "late ack"
    await store.write("positions", [position(9, T0 + 9 * SEC, 1.0)], "r")
    await store.write("positions", [position(3, T0 + 3 * SEC, 0.2)], "r")
    assert [p["position"] for p in await store.positions()] == [1.0]
    await store.put_balances("binance", {"USDT": (5.0, 0.0)}, T0 + 9 * SEC)
    await store.put_balances("binance", {"USDT": (1.0, 0.0)}, T0)
    assert (await store.balances("binance"))["USDT"]["free"] == 5.0


async def test_bad_write_table_is_refused_by_name(store: Store) -> None:
    from engine.store import StoreError

    with pytest.raises(StoreError, match=r"unknown table 'market' for Store\.write"):
        await store.write("market", [tick(1, T0)], "r")


async def test_health_names_the_backend(store: Store) -> None:
    h = await store.health()
    assert h["backend"] == store.backend and h["ping_ms"] >= 0 and h["pool"]["max"] >= 1 and h["server_version"]


_HOLD = """
import duckdb, sys
con = duckdb.connect(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""


async def test_duckdb_file_held_by_another_process_is_store_locked(tmp_path: Path) -> None:
    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        st = open_store(StoreSettings(backend="duckdb", duckdb_path=path))
        with pytest.raises(StoreLocked) as info:
            await st.connect()
        assert str(path) in str(info.value) and info.value.pid == holder.pid
        assert f"(pid {holder.pid})" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    async with open_store(StoreSettings(backend="duckdb", duckdb_path=path)) as st:
        assert await st.migrate() == [1, 2, 3]


async def test_duckdb_retention_deletes_whole_old_days(tmp_path: Path) -> None:
    async with open_store(StoreSettings(backend="duckdb", duckdb_path=tmp_path / "r.duckdb")) as st:
        await st.migrate()
        await st.copy_ticks([tick(1, T0 - 100 * DAY), tick(2, T0 - 91 * DAY), tick(3, T0 - 2 * DAY), tick(4, T0)])
        plan = await st.retention(90, T0, dry_run=True)
        assert len(plan["market_data_ticks"]) == 2
        assert (await st._fetch("SELECT count(*) AS n FROM market_data_ticks"))[0]["n"] == 4
        assert await st.retention(90, T0) == plan
        assert [r["seq"] for r in await st._fetch("SELECT seq FROM market_data_ticks ORDER BY seq")] == [3, 4]
