"""``hft report ...`` and the guide's scripts: run selection, the N-day aggregate, output."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from engine.cli import main
from reports.logwriter import write_event_log
from reports.runs import latest_run, parse_time, runs_in_window

REPO = Path(__file__).resolve().parents[1]
DAY = 86_400_000_000_000
NOW = parse_time("2024-05-10T00:00:00Z")


def make_run(root: Path, name: str, start: int, strategy: str, pnl: float, manifest_span: bool = True) -> Path:
    """One round trip of 1 unit bought at 100 and sold at 100 + pnl, one second apart."""
    market = [{"ts": start + i * 10**9, "ts_event": start + i * 10**9 - 80_000, "venue": "v", "symbol": "X",
               "bid": 99.0, "ask": 101.0, "mid": 100.0, "feed_latency_ns": 80_000} for i in range(3)]  # fmt: skip
    fills = [
        {"ts": start + 10**9, "strategy_id": strategy, "venue": "v", "symbol": "X", "side": "buy", "price": 100.0,
         "qty": 1.0, "client_order_id": f"{name}-1", "position_after": 1.0},
        {"ts": start + 2 * 10**9, "strategy_id": strategy, "venue": "v", "symbol": "X", "side": "sell",
         "price": 100.0 + pnl, "qty": 1.0, "client_order_id": f"{name}-2", "position_after": 0.0, "realized_pnl": pnl},
    ]  # fmt: skip
    orders = [{"ts": f["ts"] - 1, "event": "submit", "strategy_id": strategy, "venue": "v", "symbol": "X",
               "client_order_id": f["client_order_id"]} for f in fills]  # fmt: skip
    positions = [
        {"ts": f["ts"], "strategy_id": strategy, "venue": "v", "symbol": "X", "position": f["position_after"],
         "realized_pnl": f.get("realized_pnl", 0.0)}
        for f in fills
    ]  # fmt: skip
    manifest = {"run_id": name, "mode": "backtest", "strategies": [strategy]}
    if manifest_span:
        manifest["data"] = {"from_ns": start, "to_ns": start + 3 * 10**9}
    return write_event_log(root / name, {"market": market, "fills": fills, "orders": orders, "positions": positions},
                           manifest)  # fmt: skip


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root, "old", NOW - 20 * DAY, "mm", 5.0)
    make_run(root, "recent-a", NOW - 3 * DAY, "mm", 2.0)
    make_run(root, "recent-b", NOW - 1 * DAY, "mm", -1.0, manifest_span=False)  # span from the events
    make_run(root, "other", NOW - 1 * DAY, "taker", 9.0)
    return root


def test_runs_in_window(runs: Path) -> None:
    found, total = runs_in_window(runs, "mm", 7, NOW)
    assert [r.path.name for r in found] == ["recent-a", "recent-b"]
    assert total == 3


def test_trades_report_aggregates_recent_runs(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", "trades", "mm", "--days=7", "--runs-root", str(runs), "--now", "2024-05-10T00:00:00Z"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Trades of mm, 7 days" in out and "2 runs" in out
    report_dir = runs / "reports" / "mm-last-7d"
    data = json.loads((report_dir / "trades_report.json").read_text())
    assert [r["run_id"] for r in data["runs"]] == ["recent-a", "recent-b"]
    assert data["round_trips"]["count"] == 2
    assert data["round_trips"]["wins"] == 1 and data["round_trips"]["losses"] == 1
    assert data["pnl"]["realized"] == pytest.approx(2.0 - 1.0)
    assert 'id="runs"' in (report_dir / "trades_report.html").read_text()
    # the report directory under the runs root is not mistaken for a run
    assert runs_in_window(runs, "mm", 7, NOW)[1] == 3


def test_trades_report_with_no_recent_run(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", "trades", "taker", "--days", "0.5", "--runs-root", str(runs), "--now", str(NOW)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "no run of strategy 'taker' in the 0.5 days before 2024-05-10 00:00:00.000 UTC (1 run(s)" in err
    code = main(["report", "trades", "mm", "--runs-root", str(runs), "--now", "yesterday"])
    _, err = capsys.readouterr()
    assert code == 2 and "bad time 'yesterday'" in err


def test_latest_run_is_the_last_written(runs: Path) -> None:
    stamp = time.time()
    os.utime(runs / "old" / "manifest.json", (stamp + 10, stamp + 10))
    assert latest_run(runs, "mm").path.name == "old"
    assert latest_run(runs, "taker").path.name == "other"


def _script(name: str, *args: str, env_root: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HFT_RUNS_ROOT": str(env_root)}
    return subprocess.run(
        [str(REPO / "scripts" / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_scripts(runs: Path, tmp_path: Path) -> None:
    stamp = time.time()
    os.utime(runs / "recent-a" / "manifest.json", (stamp + 20, stamp + 20))
    res = _script("strategy_post_mortem.sh", "mm", env_root=runs, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Post-mortem of mm, run recent-a" in res.stdout
    assert (runs / "recent-a" / "post_mortem.html").exists()

    res = _script("strategy_post_mortem.sh", "mm", "--run", str(runs / "old"), "--out", str(tmp_path / "o"),
                  env_root=runs, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "post_mortem.md").exists()

    res = _script("analyze_strategy_trades.sh", "mm", "--days=7", "--now", "2024-05-10T00:00:00Z", env_root=runs,
                  cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "2 runs" in res.stdout

    res = _script("latency_report.sh", env_root=runs, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Latency report, run recent-a" in res.stdout

    res = _script("strategy_post_mortem.sh", "ghost", env_root=runs, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: Cannot read event log at {runs}: no run of strategy 'ghost' found"

    res = _script("strategy_post_mortem.sh", env_root=runs, cwd=tmp_path)
    assert res.returncode == 2 and "usage:" in res.stderr
