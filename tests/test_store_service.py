"""The store service (``engine.store.service``; for PostgreSQL by default the writer process of
``engine.store.writer_process``, which has the same interface) against DuckDB and a real PostgreSQL: rows of every
table arrive once, the journal replays idempotently, an outage loses nothing, a full queue samples
and drops market data (never orders or fills) and says so, and the metrics count it all."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace

import pytest
from pg import free_port

from engine.daemon.exposition import prometheus_text
from engine.store.config import StoreSettings
from engine.store.service import StoreService

T0 = 1_765_000_000_000_000_000


def order_row(seq: int, cid: str, event: str, status: str, filled: float = 0.0) -> tuple:
    return (
        seq,
        T0 + seq,
        event,
        "s1",
        "binance",
        "BTC-USDT",
        cid,
        f"v-{cid}",
        "buy",
        "LIMIT",
        "GTC",
        60000.0,
        0.01,
        filled,
        0.01 - filled,
        status,
        "",
        0,
        T0,
        T0,
        T0,
        T0,
        T0,
        60000.5,
        False,
    )


def fill_row(seq: int, cid: str = "c1", trade: str | None = None) -> tuple:
    return (
        seq,
        T0 + seq,
        T0 + seq,
        "s1",
        "binance",
        "BTC-USDT",
        cid,
        f"v-{cid}",
        trade or f"t{seq}",
        "buy",
        60000.0,
        0.001,
        60.0,
        0.03,
        "USDT",
        "taker",
        60000.0,
        60000.5,
        60000.5,
        T0,
        T0,
        T0,
        T0,
        0.001,
        0.0,
    )


def position_row(seq: int, pos: float) -> tuple:
    return (seq, T0 + seq, "s1", "binance", "BTC-USDT", pos, 60000.0, 0.0, 0.0, 0.03, 60000.5, "fill")


def risk_row(seq: int, passed: bool) -> tuple:
    reason = "" if passed else "Risk check failed: Position limit exceeded"
    return (seq, T0 + seq, "s1", "binance", "BTC-USDT", "c9", "position_limit", passed, reason, 1.0, 0.5)


def market_row(seq: int) -> tuple:
    return (seq, T0 + seq, T0 + seq, "binance", "BTC-USDT", 60000.0, 60001.0, 1.0, 2.0, 60000.5, seq, 1000)


def every_table_job() -> list[tuple[str, list[tuple]]]:
    return [
        ("orders", [order_row(1, "c1", "submit", "pending_new"), order_row(2, "c1", "accepted", "open")]),
        ("fills", [fill_row(3)]),
        ("orders", [order_row(4, "c1", "filled", "filled", 0.01)]),
        ("positions", [position_row(5, 0.001)]),
        ("risk", [risk_row(6, True), risk_row(7, False)]),
        ("incidents", [(8, T0 + 8, "binance", "BTC-USDT", "stale_data", "no data for 5 s", 5.0)]),
        ("reconcile", [(9, T0 + 9, "binance", "", "balance", "loaded", "", "", 1.0, 2.0, "free 2 locked 0")]),
        ("timers", [(10, T0 + 10, "s1", "tick")]),
        ("market", [market_row(11 + i) for i in range(50)]),
    ]


async def count(svc: StoreService, table: str, where: str = "") -> int:
    rows = await svc.query("_fetch", f"SELECT count(*) AS n FROM {table} {where}")
    return int(rows[0]["n"])


@pytest.fixture(params=["duckdb", "postgresql", "postgresql-thread"])
def any_settings(request, tmp_path) -> StoreSettings:
    """DuckDB (the thread writer), PostgreSQL with its default (the writer process) and with
    ``writer: "thread"``."""
    if request.param == "duckdb":
        return request.getfixturevalue("duck_settings")
    settings = request.getfixturevalue("pg_settings")
    return replace(settings, writer="thread") if request.param.endswith("-thread") else settings


def test_every_table_reaches_the_store_once_and_the_metrics_count_it(any_settings):
    incidents: list[tuple] = []

    async def main() -> None:
        svc = await StoreService(any_settings, on_incident=lambda *a: incidents.append(a)).open()
        try:
            svc.begin_run("run-1", "test", "paper", "cfg.json", T0, {"strategies": ["s1"]})
            svc.tap(every_table_job())
            svc.put_snapshots([(T0, "binance", "BTC-USDT", 7, [60000.0, 59999.0], [1.0, 2.0], [60001.0], [3.0])])
            svc.put_balances("binance", {"USDT": (900.0, 100.0), "BTC": (0.5, 0.0)}, T0)
            assert await svc.flush(30)
            assert await count(svc, "order_events") == 3
            [order] = await svc.query("orders")
            assert order["status"] == "filled" and order["filled_qty"] == pytest.approx(0.01)
            assert [f["trade_id"] for f in await svc.query("fills")] == ["t3"]
            [pos] = await svc.query("positions")
            assert pos["position"] == pytest.approx(0.001)
            assert await count(svc, "risk_violations") == 1  # only the refusal
            assert await count(svc, "incidents") == 1
            assert await count(svc, "reconciliations") == 1
            assert await count(svc, "market_data_ticks") == 50
            assert await count(svc, "order_book_snapshots") == 1
            bal = await svc.query("balances", "binance")
            assert bal["USDT"]["free"] == pytest.approx(900.0) and bal["USDT"]["locked"] == pytest.approx(100.0)
            run = await svc.query("run", "run-1")
            assert run["status"] == "running"
            m = svc.metrics()
            assert m["hft_db_up"] == 1 and m["hft_db_queue_depth"] == 0
            assert m["hft_db_journal_pending_rows"] == 0 and m["hft_db_connection_failures_total"] == 0
            written = m["hft_db_rows_written_total"]
            assert written["orders"] == 3 and written["fills"] == 1 and written["risk"] == 1
            assert written["market"] == 50 and written[SNAPSHOTS] == 1
            assert "timers" not in written and m["hft_db_rows_dropped_total"] == {}
            lat = m["hft_db_write_latency_seconds"]
            assert lat["count"] >= 2 and lat["sum"] > 0 and lat["buckets"][-1] == ["+Inf", lat["count"]]
            # what /metrics shows, in Prometheus' text format
            text = prometheus_text(svc.samples()).decode()
            assert f'hft_db_up{{backend="{any_settings.backend}"}} 1.0' in text
            assert 'hft_db_rows_written_total{table="fills"} 1.0' in text
            assert 'hft_db_rows_dropped_total{table="market"} 0.0' in text
            assert "hft_db_write_latency_seconds_bucket{le=" in text
            svc.end_run("run-1", "closed", T0 + 100, {"pnl": math.nan})
        finally:
            assert await svc.close(30)

    asyncio.run(main())
    assert incidents == []


SNAPSHOTS = "order_book_snapshots"


def test_replaying_the_whole_journal_stores_nothing_twice(duck_settings):
    async def write_then_forget_the_watermark() -> None:
        svc = await StoreService(duck_settings).open()
        svc.tap([("fills", [fill_row(i) for i in range(300)]), ("orders", [order_row(400, "c1", "submit", "new")])])
        assert await svc.close(30)
        (duck_settings.journal_dir / "watermark.json").unlink()

    async def reopen() -> tuple[int, int, int]:
        svc = await StoreService(duck_settings).open()
        pending = svc.journal_pending_rows
        try:
            assert await svc.flush(30)
            return pending, await count(svc, "fills"), await count(svc, "order_events")
        finally:
            await svc.close(30)

    asyncio.run(write_then_forget_the_watermark())
    pending, fills, events = asyncio.run(reopen())
    assert pending == 301  # everything was replayed ...
    assert (fills, events) == (300, 1)  # ... and stored once


def test_a_full_queue_samples_then_drops_market_data_and_never_fills(tmp_path, caplog):
    """Nothing listens on the port: the database is down from the start, the queue fills."""
    settings = StoreSettings(
        backend="postgresql",
        host="127.0.0.1",
        port=free_port(),
        name="hft_db",
        user="postgres",
        connect_timeout_s=1.0,
        queue_rows=1000,
        journal_dir=tmp_path / "journal",
    )
    incidents: list[tuple] = []

    async def main() -> dict:
        svc = await StoreService(settings, on_incident=lambda *a: incidents.append(a)).open()
        try:
            assert svc.metrics()["hft_db_up"] == 0
            svc.tap([("market", [market_row(i) for i in range(400)])])  # under half: all kept
            svc.tap([("market", [market_row(i) for i in range(400, 800)]), ("fills", [fill_row(1)])])
            assert await wait_async(lambda: svc.queue_depth() == 440 + 1)
            svc.tap([("market", [market_row(i) for i in range(800, 20_800)]), ("fills", [fill_row(2)])])
            assert await wait_async(lambda: svc.metrics()["hft_db_journal_pending_rows"] == 2)
            return svc.metrics()
        finally:
            assert not await svc.close(0.5)  # the database never came: rows are left (in the journal)

    m = asyncio.run(main())
    assert m["hft_db_up"] == 0 and m["hft_db_connection_failures_total"] == 1
    # 400 kept whole; then 1 in 10 of 400 (40 kept, 360 dropped); then 1 in 10 of 20,000 with room
    # for 560 of those 2,000
    assert m["hft_db_rows_dropped_total"] == {"market": 360 + 20_000 - 560}
    assert m["hft_db_queue_depth"] == 1000 + 2  # market at its bound, and the fills
    assert "fills" not in m["hft_db_rows_dropped_total"]
    text = caplog.text
    assert "Queue full: database queue holds" in text and "market dropped 360 rows" in text
    assert "Database connection failed: could not connect to server" in text and "database connect error" in text
    kinds = [k for k, _, _ in incidents]
    assert kinds[0] == "database_unavailable" and "queue_full" in kinds
    assert incidents[0][1].startswith("Database connection failed: could not connect to server")


def test_an_outage_loses_nothing_and_the_journal_catches_the_database_up(
    pg_private_server, pg_private_settings, caplog
):
    # the thread writer here; tests/test_store_writer_process.py has the outage under the process
    settings = replace(pg_private_settings, flush_interval_ms=50, writer="thread")
    incidents: list[tuple] = []

    async def main() -> tuple[int, int, dict]:
        svc = await StoreService(settings, on_incident=lambda *a: incidents.append(a)).open()
        try:
            svc.tap([("fills", [fill_row(i) for i in range(100)])])
            assert await svc.flush(30)
            await asyncio.to_thread(pg_private_server.stop, "immediate")
            svc.tap([("fills", [fill_row(i) for i in range(100, 200)])])
            assert await wait_async(lambda: svc.metrics()["hft_db_up"] == 0, 30)
            svc.tap([("fills", [fill_row(i) for i in range(200, 300)]), ("orders", [order_row(300, "c1", "x", "new")])])
            assert await wait_async(lambda: svc.metrics()["hft_db_journal_pending_rows"] == 201, 30)
            await asyncio.to_thread(pg_private_server.start)
            assert await svc.flush(60)
            n = await count(svc, "fills")
            keys = await svc.query("_fetch", "SELECT count(DISTINCT trade_id) AS n FROM fills")
            return n, int(keys[0]["n"]), svc.metrics()
        finally:
            await svc.close(30)

    n, distinct, m = asyncio.run(main())
    assert n == distinct == 300
    # the test server runs with synchronous_commit off: its crash lost commits it had acknowledged
    # (the first 100); the replay from behind the watermark brought them back
    assert m["hft_db_rows_written_total"]["fills"] >= 300
    assert m["hft_db_up"] == 1 and m["hft_db_journal_pending_rows"] == 0
    assert m["hft_db_connection_failures_total"] == 1
    kinds = [k for k, _, _ in incidents]
    assert kinds == ["database_unavailable", "database_restored"], incidents
    assert incidents[0][1].startswith("Database connection failed: could not connect to server")
    assert incidents[1][2] > 0  # the outage's seconds
    assert "database write error" in caplog.text or "database connect error" in caplog.text


def test_a_journal_dir_shared_by_two_services_is_refused(duck_settings, tmp_path):
    from engine.store.journal import JournalLocked

    async def main() -> None:
        first = await StoreService(duck_settings).open()
        try:
            other = replace(duck_settings, duckdb_path=tmp_path / "other.duckdb")
            with pytest.raises(JournalLocked, match="must not share a journal"):
                await StoreService(other).open()
        finally:
            await first.close(10)

    asyncio.run(main())


async def wait_async(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def test_a_query_timeout_is_said_in_the_guides_words_and_the_rows_follow(pg_settings):
    """A table locked by another session makes every write wait past ``query_timeout_s``:
    ``database_timeout`` (``Database query timeout``), then the rows once the lock is gone."""
    import asyncpg

    settings = replace(pg_settings, query_timeout_s=0.5, flush_interval_ms=50)
    incidents: list[tuple] = []

    async def main() -> tuple[int, dict]:
        svc = await StoreService(settings, on_incident=lambda *a: incidents.append(a)).open()
        locker = await asyncpg.connect(
            host=settings.host, port=settings.port, user=settings.user, database=settings.name
        )
        try:
            tr = locker.transaction()
            await tr.start()
            await locker.execute("LOCK TABLE fills IN ACCESS EXCLUSIVE MODE")
            svc.tap([("fills", [fill_row(i) for i in range(20)])])
            assert await wait_async(lambda: svc.metrics()["hft_db_up"] == 0, 30)
            await tr.rollback()
            assert await svc.flush(60)
            return await count(svc, "fills"), svc.metrics()
        finally:
            await locker.close()
            await svc.close(30)

    n, m = asyncio.run(main())
    assert n == 20 and m["hft_db_up"] == 1
    kinds = [k for k, _, _ in incidents]
    assert kinds[0] == "database_timeout" and kinds[-1] == "database_restored", incidents
    assert incidents[0][1].startswith("Database query timeout")
