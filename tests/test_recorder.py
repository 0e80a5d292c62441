"""The event recorder's background mode (paper and live trading): the same event log as writing in
the caller, full buffers written off the trading thread, and a failed write neither lost nor
silent."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_binance_support import capture_log

from engine.recorder import Recorder, RecorderError


def market_row(i: int) -> tuple:
    return (i, i + 5, "binance", "BTC-USDT", 57000.0 + i, 57000.01 + i, 1.5, 2.5, 57000.005 + i, 50_000 + i, 7)


def incident_row(i: int) -> tuple:
    return (i, "binance", "BTC-USDT", "stale_data", f"no update for {i}s", float(i))


def fill(rec: Recorder, n: int) -> None:
    for i in range(n):
        rec.add("market", market_row(i))
        if i % 7 == 0:
            rec.add("incidents", incident_row(i))


def rows(run_dir: Path, table: str) -> list[dict]:
    return pq.read_table(run_dir / f"{table}.parquet").to_pylist()


def test_background_writes_the_same_event_log(tmp_path: Path) -> None:
    sync, bg = tmp_path / "sync", tmp_path / "bg"
    a = Recorder(sync, flush_rows=1000)
    b = Recorder(bg, flush_rows=1000, background=True)
    fill(a, 10_500)  # ten hand-offs of the market table, one of incidents, the rest at close
    fill(b, 10_500)
    a.close({"run": 1})
    b.close({"run": 1})
    for table in ("market", "incidents", "orders", "fills"):
        assert rows(bg, table) == rows(sync, table)
    assert len(rows(bg, "market")) == 10_500 and b.counts == a.counts
    assert (bg / "manifest.json").read_text() == (sync / "manifest.json").read_text()


def test_full_buffers_are_written_by_the_recorder_thread(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, flush_rows=500, background=True)
    fill(rec, 499)
    assert not (tmp_path / "market.arrows").exists()
    rec.add("market", market_row(499))  # the 500th row hands the buffer over
    rec.flush()  # waits for the thread
    assert (tmp_path / "market.arrows").stat().st_size > 0  # the live stream (``engine.recorder``)
    assert any(t.name.startswith("recorder") for t in threading.enumerate())
    rec.close()
    assert not any(t.name.startswith("recorder") for t in threading.enumerate())
    assert len(rows(tmp_path, "market")) == 500
    assert not list(tmp_path.glob("*.arrows"))  # each stream became <table>.parquet at close


def test_a_failed_write_is_reported_and_written_again_at_close(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rec = Recorder(run_dir, flush_rows=200, background=True)
    shutil.rmtree(run_dir)  # the disk "fails": the writer cannot create market.parquet
    with capture_log("system") as log:
        fill(rec, 200)  # hand-off 1 fails on the thread, which says so at once
        deadline = time.monotonic() + 10
        while not log.grep("Event log write failed for table market") and time.monotonic() < deadline:
            time.sleep(0.01)
        said = log.grep("Event log write failed for table market")
        assert said and "market.arrows" in said[0] and "200 rows are kept" in said[0]
        with pytest.raises(RecorderError, match=r"table market .*market\.arrows"):
            rec.flush()
        fill(rec, 200)  # hand-off 2 fails too
    run_dir.mkdir()  # the disk is back: close writes every row that was held
    rec.close()
    assert len(rows(run_dir, "market")) == 400


def test_close_says_so_when_the_rows_cannot_be_written(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rec = Recorder(run_dir, flush_rows=100, background=True)
    fill(rec, 100)
    rec.flush()
    shutil.rmtree(run_dir)
    run_dir.write_text("not a directory")  # and it stays broken
    fill(rec, 100)
    with pytest.raises(RecorderError, match="Event log write failed"):
        rec.close()
