"""``hft sweep`` on local Ray: every point's event log equals a plain backtest of that point, a
killed sweep resumes without touching finished points, bad input is one line and exit 2.

Ray starts once for the module (2 CPUs, as on these machines); the sweep uses the Ray already
running in the process. The kill test starts its own sweep (and Ray) in a subprocess."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.research.sweep import RAY_DIR_PREFIX, WALL_COLUMNS, is_finished, remove_stale_ray_dirs
from engine.research.sweep_cli import main as sweep_main
from engine.runners.backtest import run_backtest
from engine.runners.spec import load_run_spec

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "backtests" / "market_maker_sample.json"
STRATEGY = REPO / "config" / "strategies" / "market_maker.json"
START, END = "2024-08-08T23:56:00Z", "2024-08-08T23:58:00Z"
#: 2 x 2 x 2 x 2 = 16 points
GRID = [
    "--grid",
    "half_spread_bps=0.5,1.0",
    "--grid",
    "order_size=0.005,0.01",
    "--grid",
    "sim.latency.order.median_us=1000,4000",
    "--grid",
    "sim.queue_model=prob,risk_averse",
]


def sweep_args(out: Path, *extra: str) -> list[str]:
    return ["sweep", str(CONFIG), *GRID, "--from", START, "--to", END, "--out", str(out), "--no-progress", *extra]


def event_log(run_dir: Path) -> dict[str, str]:
    """The event log's tables by name -> sha256 (manifest and run_info hold paths and wall times)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.glob("*.parquet"))}


def stable_columns(table) -> dict:
    return {n: table.column(n).to_pylist() for n in table.column_names if n not in WALL_COLUMNS}


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    import logging
    import shutil
    import tempfile

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    tmp = tempfile.mkdtemp(prefix="hft-ray-test-", dir="/tmp")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=tmp,
        _system_config={"worker_niceness": 0},
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def first_sweep(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "out"
    assert sweep_main(sweep_args(out)) == 0
    return out, pq.read_table(out / "results.parquet")


def plain_config(tmp: Path, row: dict) -> Path:
    """The point's backtest config written by hand from the sample config (not by the sweep)."""
    cfg = json.loads(CONFIG.read_text())
    strategy = json.loads(STRATEGY.read_text())
    strategy["params"]["half_spread_bps"] = row["half_spread_bps"]
    strategy["params"]["order_size"] = row["order_size"]
    cfg["strategies"] = [strategy]
    order = cfg["sim"]["latency"]["order"]
    del order["median_ms"]
    order["median_us"] = row["sim.latency.order.median_us"]
    cfg["sim"]["queue_model"] = row["sim.queue_model"]
    cfg["data"]["root"] = str(REPO / "data" / "samples")
    cfg["data"]["from"], cfg["data"]["to"] = START, END
    cfg["instruments"] = str(REPO / "config" / "instruments.json")
    path = tmp / f"{row['point_id']}.json"
    path.write_text(json.dumps(cfg))
    return path


def test_every_point_has_the_event_log_of_a_plain_backtest(first_sweep, tmp_path):
    out, results = first_sweep
    rows = results.to_pylist()
    assert len(rows) == 16 and {r["status"] for r in rows} == {"finished"}
    assert len({r["point_id"] for r in rows}) == 16
    logs = set()
    for row in rows:
        swept = out / row["run_dir"]
        plain = tmp_path / "plain" / row["point_id"]
        result = run_backtest(load_run_spec(plain_config(tmp_path, row)), plain)
        assert event_log(swept) == event_log(plain), row
        assert len(event_log(swept)) >= 8  # orders, fills, positions, risk, market, timers, ...
        assert row["net_pnl"] == result.summary["net_pnl"] and row["fills"] == result.summary["fills"]
        logs.add(tuple(event_log(swept).values()))
    assert len(logs) > 1  # the grid reached the backtests
    # a bigger quote loses more here: the grid's values are what each point ran with
    pnl = {(r["half_spread_bps"], r["order_size"]): r["net_pnl"] for r in rows}
    assert pnl[(0.5, 0.01)] < pnl[(0.5, 0.005)]
    page = (out / "summary.html").read_text()
    assert "data:image/png;base64," in page and rows[0]["point_id"] in page


def test_a_killed_sweep_resumes_without_redoing_finished_points(first_sweep, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "engine.research.sweep_cli", *sweep_args(out, "--workers", "1")]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(is_finished(d) for d in (out / "points").glob("*")) >= 3:
                break
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have ended on its own (the assert says why)
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the Ray it started
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    owned = [d for d in Path("/tmp").glob(f"{RAY_DIR_PREFIX}*") if (d / "owner.pid").is_file()]
    left = [d for d in owned if (d / "owner.pid").read_text().strip() == str(proc.pid)]
    assert len(left) == 1  # the killed sweep's Ray session files, until the next local sweep
    remove_stale_ray_dirs()
    assert not left[0].exists()
    finished = {d.name: d for d in (out / "points").glob("*") if is_finished(d)}
    assert 3 <= len(finished) < 16
    before = {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for d in finished.values() for p in d.rglob("*")}

    assert sweep_main(sweep_args(out)) == 0

    after = {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for d in finished.values() for p in d.rglob("*")}
    assert after == before  # not one file of a finished point rewritten
    results = pq.read_table(out / "results.parquet")
    assert results.num_rows == 16 and set(results.column("status").to_pylist()) == {"finished"}
    assert all(is_finished(out / r) for r in results.column("run_dir").to_pylist())
    # deterministic: resumed with another worker count, the table is the uninterrupted sweep's
    assert stable_columns(results) == stable_columns(first_sweep[1])


def test_a_rerun_of_a_finished_sweep_runs_nothing(first_sweep, capsys):
    out, results = first_sweep
    assert sweep_main(sweep_args(out)) == 0
    assert "16 points: 0 run, 16 already finished" in capsys.readouterr().out
    assert stable_columns(pq.read_table(out / "results.parquet")) == stable_columns(results)


def test_a_point_that_fails_is_reported_and_the_others_finish(ray_cluster, tmp_path):
    from engine.research.plan import build_plan
    from engine.research.sweep import run_sweep

    plan = build_plan(str(CONFIG), ["order_size=0.005,0.01"], start=START, end=END)
    broken = plan.points[0]
    saved = dict(broken.config["data"])
    broken.config["data"]["symbols"] = ["ETH-USDT"]  # not in the data: the point fails as it starts
    out = tmp_path / "out"
    outcome = run_sweep(plan, out, progress=False)
    assert list(outcome.failed) == [broken.point_id]
    assert "no market data partitions for venue=binance-futures symbols=ETH-USDT" in outcome.failed[broken.point_id]
    rows = outcome.results.to_pylist()
    assert [r["status"] for r in rows] == ["failed", "finished"]
    assert "ETH-USDT" in rows[0]["error"] and rows[0]["net_pnl"] is None
    broken.config["data"].update(saved)  # fixed: the rerun runs that point only
    again = run_sweep(plan, out, progress=False)
    assert again.ran == [broken.point_id] and again.skipped == [plan.points[1].point_id] and not again.failed


def test_a_sweep_runs_on_the_cluster_at_address(ray_cluster, tmp_path):
    import ray

    address = ray.get_runtime_context().gcs_address  # the module's Ray, as a cluster to connect to
    base = ["sweep", str(CONFIG), "--grid", "order_size=0.005,0.01", "--from", START, "--to", END, "--no-progress"]
    run = [sys.executable, "-m", "engine.research.sweep_cli", *base]
    proc = subprocess.run([*run, "--out", str(tmp_path / "a"), "--address", address], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    statuses = pq.read_table(tmp_path / "a" / "results.parquet").column("status").to_pylist()
    assert statuses == ["finished", "finished"]
    proc = subprocess.run(
        [*run, "--out", str(tmp_path / "b"), "--address", "127.0.0.1:1"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --address 127.0.0.1:1: no Ray cluster answers")


def test_a_bad_grid_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "out"
    bad = ["sweep", str(CONFIG), "--grid", "sim.latency.order.median_uss=1000", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "engine.research.sweep_cli", *bad], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "error: --grid sim.latency.order.median_uss=1000: sim.latency.order.median_uss: unknown field, "
        "did you mean 'median_us'?"
    )
    assert not out.exists()  # nothing ran, nothing was written


QAT = REPO / "config" / "backtests" / "quote_at_touch_sample.json"
QAT_GRID = ["--grid", "order_size=0.001,0.002", "--grid", "sim.latency.order.us=50,400"]


def test_a_compiled_sweep_writes_the_event_logs_of_the_python_sweep(tmp_path):
    """``--engine compiled``: each point on the compiled path, the same bytes as the Python path's
    point; a config the compiled path cannot run is refused once, before anything runs."""
    common = [*QAT_GRID, "--workers", "0", "--no-progress"]  # the compiled path has no warm-up: no --from
    py, comp = tmp_path / "python", tmp_path / "compiled"
    assert sweep_main(["sweep", str(QAT), *common, "--out", str(py)]) == 0
    assert sweep_main(["sweep", str(QAT), *common, "--out", str(comp), "--engine", "compiled"]) == 0
    a, b = pq.read_table(py / "results.parquet"), pq.read_table(comp / "results.parquet")
    assert stable_columns(a) == stable_columns(b) and a.num_rows == 4
    for row in a.to_pylist():
        assert event_log(py / row["run_dir"]) == event_log(comp / row["run_dir"]), row
    assert len({tuple(event_log(py / r["run_dir"]).values()) for r in a.to_pylist()}) > 1  # the grid reached them
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(sweep_main(sweep_args(tmp_path / "mm", "--engine", "compiled")))
    assert exc.value.code == 2 and not (tmp_path / "mm").exists()
