"""The database writer in a child process (``engine.store.writer_process``) against a real
PostgreSQL: it is what ``StoreService`` gives for PostgreSQL, runs at a lower CPU priority, stores
rows exactly once, answers queries and flushes; a child killed with SIGKILL is noticed, recorded,
replaced, and no row is lost or stored twice; a trading process killed with SIGKILL leaves the
rows it had sent to the child, which writes them before it stops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_store_service import count, fill_row, market_row, order_row, wait_async

from engine.config import Section
from engine.errors import ConfigError
from engine.store.config import parse_store
from engine.store.service import StoreService
from engine.store.writer_process import ProcessStoreService

REPO = Path(__file__).resolve().parents[1]


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0): it has stopped all the same
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] == "Z"


def test_postgresql_gets_the_process_writer_by_default_and_the_key_chooses(tmp_path):
    def parse(section: dict) -> object:
        return parse_store(Section(section, "cfg.json").section("database"), tmp_path)

    assert parse({"database": {"backend": "postgresql"}}).writer_kind == "process"
    assert parse({"database": {"backend": "duckdb"}}).writer_kind == "thread"
    assert parse({"database": {"backend": "postgresql", "writer": "thread"}}).writer_kind == "thread"
    assert parse({"database": {"backend": "duckdb", "writer": "process"}}).writer_kind == "process"
    with pytest.raises(ConfigError, match=r"writer.*must be one of process, thread, got 'fork'"):
        parse({"database": {"backend": "postgresql", "writer": "fork"}})
    with pytest.raises(ConfigError, match="writer"):
        parse({"database": {"backend": "postgresql", "writer": 1}})


def test_the_child_writes_every_row_once_answers_queries_and_runs_below_the_trading_process(pg_settings):
    incidents: list[tuple] = []

    async def main() -> None:
        svc = await StoreService(pg_settings, on_incident=lambda *a: incidents.append(a)).open()
        try:
            assert isinstance(svc, ProcessStoreService)
            assert svc.pid != os.getpid()
            assert os.getpriority(os.PRIO_PROCESS, svc.pid) > os.getpriority(os.PRIO_PROCESS, 0)
            svc.begin_run("run-1", "test", "paper", "cfg.json", 0, {"strategies": ["s1"]})
            for i in range(0, 500, 50):  # ten hand-offs, as a recorder makes them
                svc.tap([("fills", [fill_row(j) for j in range(i, i + 50)]), ("market", [market_row(i)])])
            svc.tap([("orders", [order_row(600, "c1", "submit", "new")])])
            assert await svc.flush(30)
            assert await count(svc, "fills") == 500
            assert await count(svc, "market_data_ticks") == 10
            assert (await svc.query("run", "run-1"))["status"] == "running"
            m = svc.metrics()
            assert m["hft_db_up"] == 1 and m["hft_db_queue_depth"] == 0 and m["hft_db_journal_pending_rows"] == 0
            assert m["hft_db_rows_written_total"]["fills"] == 500
            assert m["hft_db_writer_restarts_total"] == 0
            assert svc.query_sync("last_fill_ns", "binance", "BTC-USDT", timeout_s=30) is not None
            # a store error raises here, of its own class, with the store's words
            from engine.store.errors import StoreError

            with pytest.raises(StoreError, match="unknown table 'nope'"):
                await svc.query("write", "nope", [], "run-1")
            svc.end_run("run-1", "closed", 1, {})
        finally:
            assert await svc.close(30)
        assert _pid_gone(svc.pid)

    asyncio.run(main())
    assert incidents == []


def test_a_killed_child_is_noticed_replaced_and_loses_or_doubles_no_row(pg_settings, caplog):
    settings = replace(pg_settings, flush_interval_ms=50)
    incidents: list[tuple] = []

    async def main() -> tuple[int, int, dict]:
        svc = await StoreService(settings, on_incident=lambda *a: incidents.append(a)).open()
        try:
            svc.tap([("fills", [fill_row(i) for i in range(100)])])
            assert await svc.flush(30)
            first = svc.pid
            # rows handed over just before the kill: in the pipe, or in the dead child's hands
            svc.tap([("fills", [fill_row(i) for i in range(100, 200)])])
            os.kill(first, signal.SIGKILL)
            svc.tap([("fills", [fill_row(i) for i in range(200, 250)])])
            assert await wait_async(lambda: svc.metrics()["hft_db_writer_restarts_total"] == 1, 30)
            assert await wait_async(lambda: svc.pid != first and svc.metrics()["hft_db_up"] == 1, 60)
            svc.tap([("fills", [fill_row(i) for i in range(250, 300)])])
            assert await svc.flush(60)
            n = await count(svc, "fills")
            keys = await svc.query("_fetch", "SELECT count(DISTINCT trade_id) AS n FROM fills")
            return n, int(keys[0]["n"]), svc.metrics()
        finally:
            assert await svc.close(30)

    n, distinct, m = asyncio.run(main())
    assert n == distinct == 300
    # the dead child's count is kept and no row is counted twice; what it wrote after its last
    # metrics snapshot (at most 0.1 s) is not counted
    assert 200 <= m["hft_db_rows_written_total"]["fills"] <= 300
    assert m["hft_db_writer_restarts_total"] == 1 and m["hft_db_up"] == 1
    kinds = [k for k, _, _ in incidents]
    assert kinds == ["database_unavailable", "database_restored"], incidents
    assert "killed by signal 9" in incidents[0][1]
    assert incidents[0][1].startswith("Database connection failed: the database writer process")
    assert "database error" in caplog.text


def test_an_outage_under_the_process_writer_is_reported_and_caught_up(pg_private_server, pg_private_settings):
    settings = replace(pg_private_settings, flush_interval_ms=50, writer="process")
    incidents: list[tuple] = []

    async def main() -> tuple[int, dict]:
        svc = await StoreService(settings, on_incident=lambda *a: incidents.append(a)).open()
        try:
            svc.tap([("fills", [fill_row(i) for i in range(50)])])
            assert await svc.flush(30)
            await asyncio.to_thread(pg_private_server.stop, "immediate")
            svc.tap([("fills", [fill_row(i) for i in range(50, 120)])])
            assert await wait_async(lambda: svc.metrics()["hft_db_up"] == 0, 30)
            assert await wait_async(lambda: svc.metrics()["hft_db_journal_pending_rows"] >= 70, 30)
            await asyncio.to_thread(pg_private_server.start)
            assert await svc.flush(60)
            return await count(svc, "fills"), svc.metrics()
        finally:
            await svc.close(30)

    n, m = asyncio.run(main())
    assert n == 120 and m["hft_db_up"] == 1 and m["hft_db_connection_failures_total"] == 1
    assert [k for k, _, _ in incidents] == ["database_unavailable", "database_restored"], incidents


_PARENT = textwrap.dedent(
    """
    import json, os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from test_store_service import fill_row
    from engine.store.config import StoreSettings
    from engine.store.service import StoreService

    svc = StoreService(StoreSettings(**json.loads(sys.argv[1]))).open_sync()
    # one hand-off, so one batch: once it is sent, all 400 are in the pipe (not necessarily journaled)
    svc.tap([("fills", [fill_row(j) for j in range(i, i + 100)]) for i in range(0, 400, 100)])
    while svc.sent_batches < 1:
        time.sleep(0.001)
    print(svc.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_rows_in_the_pipe_survive_a_killed_trading_process(pg_settings, tmp_path):
    fields = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(pg_settings).items()
        if k not in ("market_data",) and not k.startswith("_")
    }
    script = tmp_path / "parent.py"
    script.write_text(_PARENT.format(tests=str(REPO / "tests")))
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(fields)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    orphan = int(proc.stdout.split()[0])

    async def restarted() -> int:
        # the restarted process's writer waits for the orphan to let go of the journal, if it has not
        svc = await StoreService(pg_settings).open()
        try:
            assert await svc.flush(60)
            return await count(svc, "fills")
        finally:
            assert await svc.close(30)

    assert asyncio.run(restarted()) == 400
    deadline = time.monotonic() + 60
    while not _pid_gone(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pid_gone(orphan), "the orphaned writer did not stop after writing"


def test_duckdb_in_the_writer_process_answers_over_the_pipe(duck_settings):
    settings = replace(duck_settings, writer="process")

    async def main() -> tuple[int, dict]:
        svc = await StoreService(settings).open()
        try:
            assert isinstance(svc, ProcessStoreService)
            svc.tap([("fills", [fill_row(i) for i in range(30)]), ("market", [market_row(i) for i in range(5)])])
            assert await svc.flush(30)
            return await count(svc, "fills"), svc.metrics()
        finally:
            assert await svc.close(30)

    n, m = asyncio.run(main())
    assert n == 30 and m["hft_db_rows_written_total"] == {"fills": 30, "market": 5}


def test_a_held_journal_is_refused_at_open_with_the_error_of_the_thread_writer(pg_settings):
    from engine.store.journal import Journal, JournalLocked

    async def main() -> None:
        with pytest.raises(JournalLocked, match="must not share a journal"):
            await StoreService(pg_settings).open()

    with Journal(pg_settings.journal_dir).open():
        asyncio.run(main())
