"""The PostgreSQL store against a real server (tests/pg.py): migrations under concurrency and
tampering, the guide's error messages, concurrent writers, day partitions and retention, and
the guide's ``drop_chunks`` on plain PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace

import pytest
from pg import PgServer
from store_rows import DAY, SEC, T0, fill, order, tick

from engine.store import MigrationError, StoreSettings, StoreTimeout, StoreUnavailable, open_store
from engine.store.pg import PgStore

pytestmark = pytest.mark.postgres


async def _tables(st: PgStore) -> set[str]:
    rows = await st._fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def _partitions(st: PgStore, table: str) -> list[str]:
    rows = await st._fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass ORDER BY 1",
        table,
    )
    return [r["relname"] for r in rows]


async def test_migrate_fresh_then_again_is_a_no_op(pg_settings: StoreSettings) -> None:
    async with open_store(pg_settings) as st:
        assert await st.migrate() == [1, 2, 3]
        assert await st.migrate() == []
        assert st.flavor == "postgresql"
        tables = await _tables(st)
        from engine.store.schema import ALL_TABLES

        assert {"schema_migrations", *ALL_TABLES} <= tables
        # today and partition_ahead_days more exist before any tick arrives
        today = time.strftime("%Y%m%d", time.gmtime())
        assert f"market_data_ticks_p{today}" in await _partitions(st, "market_data_ticks")
        assert len(await _partitions(st, "order_book_snapshots")) >= pg_settings.partition_ahead_days + 1
        idx = await st._fetch("SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_orders_symbol_created'")
        assert idx and "(symbol, created_at)" in idx[0]["indexdef"]


async def test_an_edited_migration_is_refused(pg_settings: StoreSettings) -> None:
    async with open_store(pg_settings) as st:
        await st.migrate()
        await st._fetch("UPDATE schema_migrations SET checksum = 'deadbeef' || checksum WHERE version = 2 RETURNING 1")
        with pytest.raises(MigrationError, match=r"migration 2 \(time tables\) was applied with checksum deadbeef"):
            await st.migrate()


async def test_concurrent_migrators_apply_each_migration_once(pg_settings: StoreSettings) -> None:
    stores = [open_store(pg_settings) for _ in range(4)]
    for st in stores:
        await st.connect()
    try:
        results = await asyncio.gather(*(st.migrate() for st in stores))
    finally:
        for st in stores:
            await st.close()
    assert sorted(v for r in results for v in r) == [1, 2, 3]
    async with open_store(pg_settings) as st:
        rows = await st._fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [1, 2, 3]


async def test_unreachable_server_is_the_guides_connection_failed(pg_settings: StoreSettings) -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        st = open_store(replace(pg_settings, port=port, connect_timeout_s=2.0))
        with pytest.raises(StoreUnavailable) as info:
            await st.connect()
    msg = str(info.value)
    assert msg.startswith("Database connection failed: could not connect to server")
    assert f"127.0.0.1:{port}" in msg and ("refused" in msg.lower() or "connect" in msg.lower())


async def test_a_slow_query_is_the_guides_query_timeout(pg_settings: StoreSettings) -> None:
    async with open_store(replace(pg_settings, query_timeout_s=0.3)) as st:
        with pytest.raises(StoreTimeout) as info:
            await st._fetch("SELECT pg_sleep(5)")
        assert str(info.value).startswith("Database query timeout: SELECT pg_sleep(5)")
        # the pool is still usable: the server cancelled the statement
        assert (await st._fetch("SELECT 1 AS one"))[0]["one"] == 1


async def test_two_stores_writing_the_same_fills_at_once_store_each_once(pg_settings: StoreSettings) -> None:
    async with open_store(pg_settings) as st:
        await st.migrate()
    fills = [fill(i, T0 + i * SEC, f"o{i % 7}", f"t{i}") for i in range(400)]
    orders = [order(i, T0 + i * SEC, f"o{i % 7}", "open") for i in range(400)]
    a, b = open_store(pg_settings), open_store(pg_settings)
    await a.connect()
    await b.connect()
    try:
        batches = [fills[i : i + 50] for i in range(0, 400, 50)]
        # the same batches in opposite orders, each write its own transaction, many at once
        results = await asyncio.gather(
            *(a.write("fills", x, "run-a") for x in batches),
            *(b.write("fills", x, "run-b") for x in reversed(batches)),
            a.write("orders", orders, "run-a"),
            b.write("orders", list(reversed(orders)), "run-a"),
        )
    finally:
        await a.close()
        await b.close()
    assert sum(results[:16]) == 400
    async with open_store(pg_settings) as st:
        assert (await st._fetch("SELECT count(*) AS n FROM fills"))[0]["n"] == 400
        assert (await st._fetch("SELECT count(*) AS n FROM order_events"))[0]["n"] == 400
        assert {o["last_seq"] for o in await st.open_orders("binance")} == set(range(393, 400))


async def test_partitions_made_on_demand_and_dropped_by_retention(pg_settings: StoreSettings) -> None:
    async with open_store(pg_settings) as st:
        await st.migrate()
        now = T0
        old = [tick(1, now - 120 * DAY), tick(2, now - 91 * DAY)]
        new = [tick(3, now - 89 * DAY), tick(4, now)]
        assert await st.copy_ticks(old + new, run_id="r") == 4  # partitions for each day of the batch
        await st.copy_snapshots([(now - 100 * DAY, "binance", "BTC-USDT", 1, [1.0], [1.0], [2.0], [1.0])])
        parts = await _partitions(st, "market_data_ticks")
        day = lambda ns: time.strftime("%Y%m%d", time.gmtime(ns / 1e9))  # noqa: E731
        assert {f"market_data_ticks_p{day(t[1])}" for t in old + new} <= set(parts)
        plan = await st.retention(90, now, dry_run=True)
        assert plan["market_data_ticks"][:2] == [f"market_data_ticks_p{day(t[1])}" for t in old]
        assert f"order_book_snapshots_p{day(now - 100 * DAY)}" in plan["order_book_snapshots"]
        assert (await st._fetch("SELECT count(*) AS n FROM market_data_ticks"))[0]["n"] == 4
        dropped = await st.retention(90, now)
        assert dropped == plan
        left = await st._fetch("SELECT seq FROM market_data_ticks ORDER BY seq")
        assert [r["seq"] for r in left] == [3, 4]
        assert not set(dropped["market_data_ticks"]) & set(await _partitions(st, "market_data_ticks"))
        # a later batch for a dropped day gets its partition again
        assert await st.copy_ticks([tick(5, now - 120 * DAY)]) == 1


async def test_guides_drop_chunks_runs_verbatim_on_plain_postgresql(
    pg_server: PgServer, pg_settings: StoreSettings
) -> None:
    async with open_store(pg_settings) as st:
        await st.migrate()
        now = time.time_ns()
        await st.copy_ticks([tick(1, now - 95 * DAY), tick(2, now - 10 * DAY), tick(3, now)])
        await st.copy_snapshots([(now - 95 * DAY, "binance", "BTC-USDT", 1, [1.0], [1.0], [2.0], [1.0])])
    out = pg_server.psql("SELECT drop_chunks('market_data_ticks', INTERVAL '90 days');", dbname=pg_settings.name)
    old_day = time.strftime("%Y%m%d", time.gmtime((now - 95 * DAY) / 1e9))
    assert f"market_data_ticks_p{old_day}" in out.stdout
    out = pg_server.psql("SELECT drop_chunks('order_book_snapshots', INTERVAL '90 days');", dbname=pg_settings.name)
    assert f"order_book_snapshots_p{old_day}" in out.stdout
    async with open_store(pg_settings) as st:
        assert [r["seq"] for r in await st._fetch("SELECT seq FROM market_data_ticks ORDER BY seq")] == [2, 3]


async def test_store_outlives_a_server_restart(pg_private_server: PgServer, pg_private_settings: StoreSettings) -> None:
    async with open_store(pg_private_settings) as st:
        await st.migrate()
        assert await st.write("fills", [fill(1, T0, "o1", "t1")], "r") == 1
        pg_private_server.stop("immediate")  # a crash: every pooled connection dies
        with pytest.raises(StoreUnavailable) as info:
            await st.write("fills", [fill(2, T0 + SEC, "o1", "t2")], "r")
        assert str(info.value).startswith("Database connection failed: could not connect to server")
        pg_private_server.start()
        # the pool replaces dead connections by itself; a retried batch is stored once
        deadline = time.monotonic() + 30
        while True:
            try:
                stored = await st.write("fills", [fill(2, T0 + SEC, "o1", "t2"), fill(1, T0, "o1", "t1")], "r")
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        assert stored == 1
        assert [f["trade_id"] for f in await st.fills()] == ["t1", "t2"]


async def test_binary_copy_of_ticks_stores_every_value_exactly(pg_settings: StoreSettings) -> None:
    """Ticks go in by a numpy-built binary COPY (engine.store.pgcopy): each column reads back as
    written, across (venue, symbol) groups, NaN sizes, a NULL and an empty run id."""
    import math

    from store_rows import row

    nan = float("nan")
    rows = [
        row("market", seq=1, ts=T0 + 123_456_789, ts_event=T0, venue="binance", symbol="BTC-USDT",
            bid=49_999.5, ask=50_000.25, bid_size=1.5, ask_size=nan, mid=49_999.875, data_seq=2**40,
            feed_latency_ns=-7),
        row("market", seq=2, ts=T0 + DAY, ts_event=T0 + DAY - 1, venue="kraken", symbol="ETH-USD",
            bid=3000.0, ask=3000.5, bid_size=0.0, ask_size=2.0, mid=3000.25, data_seq=5, feed_latency_ns=1000),
        row("market", seq=3, ts=T0 + 2 * SEC, ts_event=T0, venue="binance", symbol="BTC-USDT",
            bid=1e-8, ask=1e12, bid_size=3.0, ask_size=4.0, mid=5e11, data_seq=0, feed_latency_ns=0),
    ]  # fmt: skip
    async with open_store(pg_settings) as st:
        await st.migrate()
        assert await st.copy_ticks(rows[:2], run_id="run-α") == 2
        assert await st.copy_ticks(rows[2:], run_id=None) == 1
        got = await st._fetch("SELECT * FROM market_data_ticks ORDER BY seq")
    assert [g["run_id"] for g in got] == ["run-α", "run-α", None]
    for g, r in zip(got, rows, strict=True):
        assert int(g["time"].timestamp() * 1_000_000) == r[1] // 1000  # microseconds, truncated
        for name, value in zip(
            ("seq", "ts", "ts_event", "venue", "symbol", "bid", "ask", "bid_size", "ask_size", "mid", "data_seq",
             "feed_latency_ns"), r, strict=True,
        ):  # fmt: skip
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(g[name]), name
            else:
                assert g[name] == value, name
