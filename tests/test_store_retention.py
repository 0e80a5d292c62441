"""Retention and partition maintenance by a ``now_ns`` the caller passes (never the wall clock)."""

from __future__ import annotations

import time

import pytest
from store_rows import DAY, T0, tick

from engine.store import StoreSettings, open_store
from engine.store.pg import PgStore
from engine.store.retention import cutoff_ns, maintain, partition_day_ns

pytestmark = pytest.mark.postgres


def _day(ns: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(ns // 1_000_000_000))


def test_partition_names_parse_to_their_day() -> None:
    assert partition_day_ns("market_data_ticks_p20251206") == (T0 - T0 % DAY)
    assert partition_day_ns("market_data_ticks_default") is None
    assert cutoff_ns(90, T0) == T0 - 90 * DAY


async def test_maintain_creates_days_ahead_and_drops_whole_old_days(pg_settings: StoreSettings) -> None:
    async with open_store(pg_settings) as st:
        assert isinstance(st, PgStore)
        await st.migrate()
        # rows on the last day that is entirely past the cutoff, and on the day the cutoff falls in
        boundary = T0 - 90 * DAY
        edge_old = boundary - boundary % DAY - 1  # 23:59:59.999999999 the day before
        edge_new = boundary - boundary % DAY + 1  # the cutoff's own day: kept until it has ended
        await st.copy_ticks([tick(1, edge_old), tick(2, edge_new), tick(3, T0)])
        dropped = await maintain(st, 90, 2, T0)
        assert dropped["market_data_ticks"] == [f"market_data_ticks_p{_day(edge_old)}"]
        left = [r["seq"] for r in await st._fetch("SELECT seq FROM market_data_ticks ORDER BY seq")]
        assert left == [2, 3]
        names = {
            r["relname"]
            for r in await st._fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'order_book_snapshots'::regclass"
            )
        }
        assert {f"order_book_snapshots_p{_day(T0 + d * DAY)}" for d in range(3)} <= names
        # nothing left to drop: a second run is a no-op
        assert await maintain(st, 90, 2, T0) == {"market_data_ticks": [], "order_book_snapshots": []}


async def test_a_store_whose_partition_was_dropped_elsewhere_recreates_it(pg_settings: StoreSettings) -> None:
    async with open_store(pg_settings) as writer, open_store(pg_settings) as janitor:
        await writer.migrate()
        old = T0 - 100 * DAY
        assert await writer.copy_ticks([tick(1, old)]) == 1  # the writer now believes the day exists
        assert (await janitor.retention(90, T0))["market_data_ticks"] == [f"market_data_ticks_p{_day(old)}"]
        assert await writer.copy_ticks([tick(2, old)]) == 1
        assert [r["seq"] for r in await writer._fetch("SELECT seq FROM market_data_ticks")] == [2]


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
async def test_retention_agrees_on_both_backends(backend: str, request: pytest.FixtureRequest, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if backend == "duckdb":
        settings = StoreSettings(backend="duckdb", duckdb_path=tmp_path / "r.duckdb")
    else:
        settings = request.getfixturevalue("pg_settings")
    async with open_store(settings) as st:
        await st.migrate()
        await st.copy_ticks([tick(i, T0 - d * DAY) for i, d in enumerate((0, 30, 89, 91, 120, 365))])
        await st.retention(90, T0)
        left = sorted(r["seq"] for r in await st._fetch("SELECT seq FROM market_data_ticks"))
        assert left == [0, 1, 2]
