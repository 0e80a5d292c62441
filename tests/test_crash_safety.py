"""A session survives a bad day: the event log of a paper or live session survives ``kill -9``.

- rows reach the disk every flush interval and right after a fill, as Arrow IPC streams that read
  up to their last complete batch wherever they were cut (``engine.recorder``);
- memory stays flat: the buffers never hold more than about one interval of rows;
- a crashed run is told from a running one by its lock; the reports read it as it is, without
  changing it; ``recover_run`` turns it into the usual Parquet and links it to the run that
  continues it;
- end to end: ``hft paper`` against the fake Binance (both subprocesses), ``kill -9`` at a seeded
  random moment: every row older than the flush interval is on disk (no ``seq`` missing, every
  submit ``orders.log`` names is there), ``hft report post-mortem`` and ``latency`` run on it, and
  the next session of the config recovers it and says it continues it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from fake_process import spawn_fake_binance

from engine.recorder import (
    FLUSH_INTERVAL_S,
    Recorder,
    RecorderError,
    RunLock,
    read_stream_batches,
    recover_run,
    run_state,
    stream_files,
)
from reports.eventlog import inspect_run

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
HFT = [sys.executable, "-m", "engine.cli"]
TABLE_NAMES = ("orders", "fills", "positions", "risk", "market", "timers", "incidents", "reconcile")


def market_row(i: int) -> tuple:
    return (i, i + 5, "binance", "BTC-USDT", 57000.0 + i, 57000.01 + i, 1.5, 2.5, 57000.005 + i, 50_000 + i, 7)


def fill_row(i: int) -> tuple:
    return (i, i - 3, "mm", "binance", "BTC-USDT", f"mm-x-{i}", str(i), str(i), "buy", 57000.0, 0.001, 57.0,
            0.01, "USDT", "maker", 57000.0, 57000.5, 57000.4, i - 9, i - 8, i - 7, i - 6, 0.001, 0.0)  # fmt: skip


def on_disk(run_dir: Path, table: str) -> int:
    """Rows of ``table`` a reader finds in the run's streams now."""
    return sum(b.num_rows for b in read_stream_batches(stream_files(run_dir).get(table, [])))


async def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.01)


# --- the recorder's live mode ---------------------------------------------------------------------
def test_rows_reach_the_disk_every_interval_and_right_after_a_fill(tmp_path: Path) -> None:
    async def main() -> None:
        rec = Recorder(tmp_path, background=True, flush_interval_s=0.2)
        rec.start_flushing(asyncio.get_running_loop())
        for i in range(100):
            rec.add("market", market_row(i))
        assert rec.buffered == 100 and on_disk(tmp_path, "market") == 0  # the engine's thread only appends
        await until(lambda: on_disk(tmp_path, "market") == 100, 10, "the tick's hand-off")
        assert rec.buffered == 0
        for i in range(3):
            rec.add("market", market_row(100 + i))
        rec.add("fills", fill_row(1))  # a fill: everything goes to the writer right after this callback
        assert rec.buffered == 4
        await asyncio.sleep(0)  # the callback returns: the hand-off runs before the next tick
        assert rec.buffered == 0 and rec._timer is not None
        await until(lambda: on_disk(tmp_path, "fills") == 1, 10, "the fill on disk")
        assert on_disk(tmp_path, "market") == 103
        rec.close({"run_id": "x"})

    asyncio.run(main())
    assert pq.read_table(tmp_path / "market.parquet").num_rows == 103
    assert pq.read_table(tmp_path / "fills.parquet").num_rows == 1
    assert not list(tmp_path.glob("*.arrows")) and (tmp_path / "timers.parquet").exists()


def test_a_stream_cut_anywhere_reads_to_its_last_complete_batch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rec = Recorder(run, background=True)
    sizes = [0]
    for k in range(4):  # four hand-offs: four batches of 50 rows after the schema message
        for i in range(50):
            rec.add("market", market_row(50 * k + i))
        rec.flush()
        sizes.append((run / "market.arrows").stat().st_size)
    data = (run / "market.arrows").read_bytes()
    cut_file = tmp_path / "market.arrows"
    for cut in sorted({*range(0, len(data), 97), *(s - 1 for s in sizes[1:]), *sizes, len(data)}):
        cut_file.write_bytes(data[:cut])
        stats: dict[str, int] = {}
        got = [b for b in read_stream_batches([cut_file], stats)]
        whole = sum(1 for s in sizes[1:] if s <= cut)  # batches that ended before the cut
        assert len(got) == whole, cut
        assert [r[0] for b in got for r in zip(*b.to_pydict().values(), strict=True)] == list(range(1, 50 * whole + 1))
        assert stats.get("torn", 0) == (0 if cut in sizes else 1), cut
    rec.discard()


def test_memory_stays_flat_however_long_the_session(tmp_path: Path) -> None:
    """A busy synthetic session on the live clock: market rows at about 10,000 a second, a fill now
    and then. The buffers never hold more than about one interval of rows, the writer keeps up,
    and every row is on disk at the end. (Before, nothing left memory until 65,536 rows a table.)"""
    produced = {"market": 0, "fills": 0}
    peak = {"buffered": 0, "queued": 0}

    async def main() -> Recorder:
        loop = asyncio.get_running_loop()
        rec = Recorder(tmp_path, background=True, flush_interval_s=0.05)
        rec.start_flushing(loop)
        end = loop.time() + 2.5
        while loop.time() < end:
            for _ in range(200):
                rec.add("market", market_row(produced["market"]))
                produced["market"] += 1
            if produced["market"] % 3000 == 0:
                rec.add("fills", fill_row(produced["fills"]))
                produced["fills"] += 1
            peak["buffered"] = max(peak["buffered"], rec.buffered)
            peak["queued"] = max(peak["queued"], sum(not f.done() for f in rec._pending))
            await asyncio.sleep(0.02)
        rec.flush()
        assert on_disk(tmp_path, "market") == produced["market"]
        rec.close()
        return rec

    rec = asyncio.run(main())
    assert produced["market"] > 10_000 and rec.handoffs > 20
    assert peak["buffered"] <= 2_000, peak  # 0.05 s of rows, and the turn that passed the tick
    assert peak["queued"] <= 5, peak
    assert pq.read_table(tmp_path / "market.parquet").num_rows == produced["market"]


def test_backtests_write_parquet_directly_as_before(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, flush_rows=100)
    for i in range(250):
        rec.add("market", market_row(i))
    assert (tmp_path / "market.parquet").exists()  # two row groups, written in the caller
    rec.close({"run_id": "bt"})
    assert pq.ParquetFile(tmp_path / "market.parquet").metadata.num_row_groups == 3
    assert not list(tmp_path.glob("*.arrows")) and not (tmp_path / "session.lock").exists()
    assert "status" not in json.loads((tmp_path / "manifest.json").read_text())


def test_a_crashed_run_is_told_from_a_running_one_read_as_it_is_and_recovered(tmp_path: Path) -> None:
    run = tmp_path / "r1"
    rec = Recorder(run, background=True)
    lock = RunLock(run)
    assert lock.acquire()
    rec.write_manifest({"run_id": "r1", "mode": "paper", "status": "running", "strategies": ["mm"]})
    for i in range(1000):
        rec.add("market", market_row(i))
    rec.add("fills", fill_row(1))
    rec.flush()
    assert run_state(run) == "running"
    assert not RunLock(run).acquire()  # one session per run directory
    with pytest.raises(RecorderError, match="still running"):
        recover_run(run)
    # the reports read a running (or crashed) run from its streams, and leave it as it is
    info = inspect_run(run)
    assert info.partial and set(info.streams) == {"market", "fills"}
    count = duckdb.sql(f"select count(*) from read_parquet('{info.table_paths('market')[0]}')").fetchall()
    assert count == [(1000,)]
    assert pq.read_table(info.table_paths("orders")[0]).num_rows == 0  # never written: empty
    assert (run / "market.arrows").exists() and not (run / "market.parquet").exists()

    lock.release(remove=False)  # the process dies: the kernel lets go of its lock, the file stays
    assert run_state(run) == "crashed"
    m = recover_run(run, continued_by="r2")
    assert m["status"] == "crashed" and m["continued_by"] == "r2" and "recovered_at" in m
    assert m["recovered_rows"] == {"market": 1000, "fills": 1}
    assert pq.read_table(run / "market.parquet").column("seq").to_pylist() == list(range(1, 1001))
    assert all((run / f"{t}.parquet").exists() for t in TABLE_NAMES)
    assert not list(run.glob("*.arrows")) and not (run / "session.lock").exists()
    assert run_state(run) == "crashed"
    again = recover_run(run, continued_by="r3")  # safe to repeat; the first continuation stays
    assert again["continued_by"] == "r2" and again["recovered_at"] == m["recovered_at"]
    rec.discard()


# --- end to end: kill -9 in the middle of a paper session -------------------------------------------
pytestmark_e2e = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


@pytest.fixture
def fake_urls() -> Iterator[dict[str, str]]:
    proc, urls = spawn_fake_binance(CAPTURE, "--speed", "10", "--start", "now")
    try:
        yield urls
    finally:
        proc.terminate()
        proc.wait(10)


def paper_config(tmp: Path) -> Path:
    cfg = json.loads((REPO / "config" / "paper" / "market_maker_binance.json").read_text())
    cfg["exchange"] = str(REPO / "config" / "exchanges" / "binance.json")
    cfg["output"]["runs_root"] = str(tmp / "runs")
    path = tmp / "paper.json"
    path.write_text(json.dumps(cfg))
    return path


def start_paper(urls: dict[str, str], config: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*HFT, "paper", str(config), "--out", str(out), *extra],
        cwd=REPO, env={**os.environ, **urls}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_until(cond: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"hft paper exited {proc.returncode} while waiting for {what}:\n{out}\n{err}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def rss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


_SUBMIT = re.compile(r"^(\S+ \S+) INFO \[hft\.orders\] submit order order_id: (\S+)")


def logged_submits(run: Path) -> list[tuple[int, str]]:
    """(time logged in ns, client order id) of every submit ``orders.log`` holds."""
    out = []
    for line in (run / "logs" / "orders.log").read_text().splitlines():
        m = _SUBMIT.match(line)
        if m:  # the log's timestamps are local time, to the millisecond
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            out.append((int(t * 1e9), m.group(2)))
    return out


def read_tables(run: Path) -> dict[str, list[dict]]:
    """Every table of a run the way the reports read it (Parquet, else the streams)."""
    info = inspect_run(run)
    return {t: pq.read_table(info.table_paths(t)[0]).to_pylist() for t in TABLE_NAMES}


def kill_paper_at_random(urls: dict[str, str], config: Path, out: Path, seed: int) -> dict:
    """Start ``hft paper``; once it has traded for 4 s and filled, wait a seeded random 0-4 s and
    ``kill -9`` it."""
    rng = random.Random(seed)
    proc = start_paper(urls, config, out)
    rss: list[int] = []
    try:
        wait_until(lambda: (out / "manifest.json").exists(), 60, "the manifest written at start", proc)
        started = json.loads((out / "manifest.json").read_text())
        t0 = time.monotonic()
        wait_until(lambda: on_disk(out, "fills") > 0, 60, "the first fill on disk", proc)
        end = max(time.monotonic(), t0 + 4.0) + rng.uniform(0.0, 4.0)
        while time.monotonic() < end:
            rss.append(rss_kb(proc.pid))
            time.sleep(0.1)
    finally:
        kill_ns = time.time_ns()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    return {"kill_ns": kill_ns, "started": started, "rss_kb": rss}


@pytestmark_e2e
def test_kill_9_at_a_random_moment_of_a_paper_session(fake_urls: dict[str, str], tmp_path: Path, capsys) -> None:
    from engine.cli import main as hft_main

    seed = int(os.environ.get("HFT_CRASH_SEED", "13"))
    config = paper_config(tmp_path)
    first = tmp_path / "first"
    killed = kill_paper_at_random(fake_urls, config, first, seed)
    kill_ns = killed["kill_ns"]

    # the manifest was written at start, and says what the run was
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest == killed["started"]
    assert manifest["status"] == "running" and manifest["mode"] == "paper" and "summary" not in manifest
    assert manifest["config"]["name"] == "paper_market_maker_binance" and manifest["code_version"]
    assert run_state(first) == "crashed"  # running, but nobody holds its lock
    assert stream_files(first) and not list(first.glob("*.parquet"))

    # every row older than the flush interval (and a margin for a loaded machine) is readable
    tables = read_tables(first)
    rows = [(r["seq"], r["ts"]) for t in TABLE_NAMES for r in tables[t]]
    seqs = {s for s, _ in rows}
    cutoff = kill_ns - int((FLUSH_INTERVAL_S + 1.5) * 1e9)
    old = max(s for s, ts in rows if ts < cutoff)
    missing = sorted(set(range(1, old + 1)) - seqs)
    assert not missing, f"rows numbered before the last old row are lost: {missing[:20]}"
    newest = max(ts for _, ts in rows)
    assert newest >= cutoff
    submits = {r["client_order_id"] for r in tables["orders"] if r["event"] == "submit"}
    logged = logged_submits(first)
    assert logged and all(cid in submits for t, cid in logged if t < cutoff)
    assert tables["fills"] and tables["positions"]  # paper fills and P&L exist nowhere else
    lost_submits = sum(cid not in submits for _, cid in logged)

    # the reports run on the crashed run as it is, and change none of its files
    before = sorted(p.name for p in first.iterdir())
    assert hft_main(["report", "post-mortem", str(first)]) == 0
    assert hft_main(["report", "latency", str(first)]) == 0
    text = capsys.readouterr().out
    assert "Post-mortem of all strategies, run first (paper)" in text and "send_to_ack" in text
    after = sorted(p.name for p in first.iterdir())
    assert [n for n in before if n.endswith(".arrows")] == [n for n in after if n.endswith(".arrows")]
    assert run_state(first) == "crashed"

    # a restart of the config recovers the crashed run and continues it in a new, linked run
    second = tmp_path / "second"
    proc = start_paper(fake_urls, config, second, "--duration", "2")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    old_m = json.loads((first / "manifest.json").read_text())
    new_m = json.loads((second / "manifest.json").read_text())
    assert old_m["status"] == "crashed" and old_m["continued_by"] == "second" and "recovered_at" in old_m
    assert new_m["status"] == "closed" and new_m["continues"] == "first" and "summary" in new_m
    assert not list(first.glob("*.arrows")) and not list(second.glob("*.arrows"))
    recovered = {t: pq.read_table(first / f"{t}.parquet").num_rows for t in TABLE_NAMES}
    assert recovered == {t: len(tables[t]) for t in TABLE_NAMES}
    assert old_m["recovered_rows"] == {t: n for t, n in recovered.items() if n}
    assert "continuing crashed run first" in (second / "logs" / "system.log").read_text()

    # what was lost, for docs/crash-safety.md (``-s`` shows it): rows numbered but missing below the
    # newest seq on disk (a hand-off cut in the middle), and after it (estimated at the run's rate)
    rate = len(rows) / max((newest - min(ts for _, ts in rows)) / 1e9, 1e-9)
    gaps = max(seqs) - len(seqs)
    lost_ms = (kill_ns - max(ts for s, ts in rows if s == max(seqs))) / 1e6
    rss = killed["rss_kb"] or [0]
    print(
        f"\nkill -9 seed={seed}: {len(rows)} rows recovered; lost: {gaps} below the newest seq, "
        f"~{rate * lost_ms / 1000:.0f} after it (newest {lost_ms:.0f} ms before the kill, {rate:.0f} rows/s); "
        f"{lost_submits} of {len(logged)} logged submits; rss {min(rss) // 1024}-{max(rss) // 1024} MB",
        file=sys.__stderr__,
    )
