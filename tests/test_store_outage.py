"""The issue's outage test: PostgreSQL stops in the middle of a paper session that keeps filling,
and starts again; after the session every fill of the event log is in the database exactly once,
and the outage is on record (incidents, errors.log)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import duckdb
import pytest
from test_store_session import CONFIG, REPO, paper_session

from engine.runners.spec import load_run_spec
from engine.store import open_store

SESSION_LIMIT_S = 60.0  # a bound, not the plan: the session ends once the outage is over


async def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def test_fills_made_while_postgresql_is_down_reach_it_exactly_once(pg_private_server, pg_private_settings, tmp_path):
    server, settings = pg_private_server, pg_private_settings
    cfg = json.loads(CONFIG.read_text())
    cfg["exchange"] = str(REPO / "config" / "exchanges" / "binance.json")
    cfg["output"] = {"runs_root": str(tmp_path / "runs")}
    cfg["database"] = {
        "backend": "postgresql",
        "host": settings.host,
        "port": settings.port,
        "name": settings.name,
        "user": settings.user,
        "password_env": settings.password_env,
        "flush_interval_ms": 50,
    }
    path = tmp_path / "paper_pg.json"
    path.write_text(json.dumps(cfg))
    spec = load_run_spec(path, mode="paper")
    assert spec.store.backend == "postgresql" and spec.store.journal_dir == tmp_path / "runs" / "journal"
    out = tmp_path / "runs" / "run"
    stop = asyncio.Event()
    seen: dict[str, int] = {}

    async def outage(session) -> None:
        try:
            store = session.store
            fills = session.node.recorder.counts
            assert await _until(lambda: store.metrics()["hft_db_rows_written_total"].get("fills", 0) >= 3, 30)
            await asyncio.to_thread(server.stop, "immediate")
            seen["at_stop"] = fills["fills"]
            assert await _until(lambda: store.metrics()["hft_db_up"] == 0, 30), "the outage was not noticed"
            # the session trades on: fills keep coming while the database is down
            assert await _until(lambda: fills["fills"] >= seen["at_stop"] + 5, 30)
            seen["pending"] = store.metrics()["hft_db_journal_pending_rows"]
            await asyncio.to_thread(server.start)
            assert await _until(lambda: store.metrics()["hft_db_up"] == 1, 30), "no reconnect"
            at_restore = fills["fills"]
            await _until(lambda: fills["fills"] >= at_restore + 3, 10)
        finally:
            stop.set()

    asyncio.run(paper_session(spec, out, SESSION_LIMIT_S, during=outage, stop=stop))
    assert seen["pending"] > 0  # the journal held what the database could not take

    ev = duckdb.connect()
    log_fills = ev.execute(
        f"select venue, symbol, trade_id, client_order_id from read_parquet('{out}/fills.parquet')"
    ).fetchall()
    kinds = [r[0] for r in ev.execute(f"select kind from read_parquet('{out}/incidents.parquet')").fetchall()]
    ev.close()
    assert len(log_fills) > seen["at_stop"] >= 3

    async def stored() -> tuple[list[tuple], list[str]]:
        store = open_store(spec.store)
        await store.connect()
        try:
            rows = await store._fetch(
                "SELECT venue, symbol, trade_id, client_order_id FROM fills WHERE run_id = $1", out.name
            )
            inc = await store._fetch("SELECT kind FROM incidents WHERE run_id = $1 ORDER BY seq", out.name)
        finally:
            await store.close()
        return [(r["venue"], r["symbol"], r["trade_id"], r["client_order_id"]) for r in rows], [r["kind"] for r in inc]

    db_fills, db_kinds = asyncio.run(stored())
    assert len(db_fills) == len(set(db_fills))  # exactly once (the key is unique anyway)
    assert sorted(db_fills) == sorted(log_fills)  # every fill of the event log, none more
    for where in (kinds, db_kinds):
        assert "database_unavailable" in where and "database_restored" in where
        assert where.index("database_unavailable") < where.index("database_restored")
    errors = (out / "logs" / "errors.log").read_text()
    assert "Database connection failed: could not connect to server" in errors
    assert re.search("database.*error", errors)  # the guide's grep (§4.4)


def test_a_configured_database_that_is_locked_is_an_error_not_a_silent_fallback(tmp_path):
    """Only the implicit default steps aside when another process holds it; a configured journal
    held by another process stops the session with the holder named."""
    from engine.errors import HftError
    from engine.store.journal import Journal

    cfg = json.loads(CONFIG.read_text())
    cfg["exchange"] = str(REPO / "config" / "exchanges" / "binance.json")
    cfg["output"] = {"runs_root": str(tmp_path / "runs")}
    cfg["database"] = {"backend": "duckdb"}
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(cfg))
    spec = load_run_spec(path, mode="paper")
    with Journal(spec.store.journal_dir).open(), pytest.raises(HftError, match="must not share a journal"):
        asyncio.run(paper_session(spec, tmp_path / "runs" / "run", 1.0))
