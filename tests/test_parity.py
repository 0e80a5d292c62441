"""``hft parity``: a paper session against the fake Binance (a separate process replaying the real
2024-08-08 BTCUSDT capture at real-time pace) records its market data, is replayed as a backtest
with the same models and matches decision for decision and fill for fill; a replay with another
latency model diverges and names it; bad input is one clear error."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from fake_process import spawn_fake_binance

from engine.errors import ConfigError, HftError
from engine.parity import cli as parity_cli
from engine.runners.paper import run_paper
from engine.runners.spec import load_run_spec
from venues.binance.adapter import BinanceAdapter
from venues.binance.config import load_config

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
SESSION_S = 20.0


def hft_parity(*argv: str) -> int:
    """``hft parity ARGV`` as the command line runs it (an ``HftError`` is exit 2)."""
    parser = argparse.ArgumentParser(prog="hft")
    parity_cli.register(parser.add_subparsers())
    args = parser.parse_args(["parity", *argv])
    try:
        return args.func(args)
    except HftError as exc:
        print(f"error: {exc}")
        return 2


def paper_config(tmp: Path, **output: object) -> Path:
    """The shipped paper config, trading quote-at-touch (a decision on every book message) with
    100 us latencies each way; no database (the session's event log is all the test reads)."""
    cfg = json.loads((REPO / "config" / "paper" / "market_maker_binance.json").read_text())
    cfg["exchange"] = str(REPO / "config" / "exchanges" / "binance.json")
    cfg["name"] = "parity_paper"
    cfg["sim"]["latency"] = {
        "feed": {"type": "constant", "us": 0},
        "order": {"type": "constant", "us": 100},
        "response": {"type": "constant", "us": 100},
    }
    cfg["strategies"] = [
        {
            "strategy_id": "qat",
            "class": "strategies.quote_at_touch:QuoteAtTouch",
            "venue": "binance",
            "symbols": ["BTC-USDT"],
            "params": {"order_size": 0.001, "post_only": True},
        }
    ]
    cfg["risk"]["max_orders_per_second"] = None
    cfg["database"] = {"backend": "none"}
    cfg["output"] = {"runs_root": str(tmp / "runs"), "mark_interval_ms": 1000, "log_orders": False, **output}
    path = tmp / "paper.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("parity")
    out = tmp / "run"
    spec = load_run_spec(paper_config(tmp), mode="paper")
    assert spec.capture_market_data  # paper captures by default
    proc, urls = spawn_fake_binance(CAPTURE, "--speed", "1")
    try:
        cfg = load_config(
            REPO / "config" / "exchanges" / "binance.json",
            overrides={
                "rest_url": urls["BINANCE_REST_URL"],
                "ws_url": urls["BINANCE_WS_URL"],
                "ws_api_url": urls["BINANCE_WS_API_URL"],
            },
            env={},
        )
        asyncio.run(run_paper(spec, out, duration_s=SESSION_S, adapters={"binance": BinanceAdapter(cfg)}))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return out


def test_paper_session_records_the_market_data_it_traded_on(session_dir: Path) -> None:
    manifest = json.loads((session_dir / "manifest.json").read_text())
    entry = manifest["market_data"]["venues"]["binance"]["BTC-USDT"]
    assert entry["lines_written"] == entry["lines_received"] and entry["snapshots"] >= 1
    assert sum(entry["rows"].values()) > 1000
    parts = list((session_dir / "market_data").glob("venue=binance/symbol=BTC-USDT/date=*/part-*.parquet"))
    assert parts and list((session_dir / "market_data" / "capture" / "binance" / "raw").glob("btcusdt_*.gz"))
    assert [s["strategy_id"] for s in manifest["replay"]["strategies"]] == ["qat"]


def test_replayed_session_matches_every_decision_and_fill(session_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code = hft_parity(str(session_dir), "--json")
    report = json.loads(capsys.readouterr().out)
    out = session_dir / "parity"
    d, f = report["decisions"], report["fills"]
    assert d["session"] > 20 and f["session"] > 5  # the session traded
    assert d["share"] >= 0.99 and f["share"] == 1.0, report["first_divergence"]
    assert code == 0 and report["passed"]
    # the replay was shown every book the session's strategy was shown, at the same receive times
    con = duckdb.connect()
    seen = con.execute(f"select ts, bid, ask from read_parquet('{session_dir}/market.parquet') order by seq").fetchall()
    replayed = con.execute(f"select ts, bid, ask from read_parquet('{out}/market.parquet') order by seq").fetchall()
    assert replayed[: len(seen)] == seen
    assert json.loads((out / "parity.json").read_text())["decisions"] == d
    assert (out / "parity_pnl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "decisions matched" in (out / "parity.txt").read_text()


def test_a_changed_latency_model_is_found_and_named(
    session_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "slow"
    code = hft_parity(str(session_dir), "--out", str(out), "--set", "sim.latency.order.us=50000", "--json")
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["passed"]
    div = report["first_divergence"]
    assert div is not None and div["cause_kind"] == "model"
    assert "latency model differs: order latency constant 100us recorded vs constant 50000us replayed" in div["cause"]
    assert json.loads((out / "replay_config.json").read_text())["sim"]["latency"]["order"]["us"] == 50000


def test_bad_input_is_one_clear_error(session_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert hft_parity(str(tmp_path / "missing")) == 2
    assert "not a directory" in capsys.readouterr().out
    assert hft_parity(str(tmp_path)) == 2
    assert "no manifest.json: not a run directory" in capsys.readouterr().out
    backtest = tmp_path / "bt"
    assert hft_parity(str(session_dir), "--out", str(backtest)) == 0
    capsys.readouterr()
    assert hft_parity(str(backtest)) == 2
    assert "a backtest run: only paper and live sessions are replayed" in capsys.readouterr().out
    uncaptured = tmp_path / "uncaptured"
    uncaptured.mkdir()
    for name in ("manifest.json", "orders.parquet", "fills.parquet"):
        shutil.copy(session_dir / name, uncaptured / name)
    assert hft_parity(str(uncaptured)) == 2
    assert "no captured market data" in capsys.readouterr().out
    assert hft_parity(str(session_dir), "--out", str(tmp_path / "x"), "--set", "sim.latency.order") == 2
    assert "expected PATH=VALUE" in capsys.readouterr().out
    assert hft_parity(str(session_dir), "--out", str(tmp_path / "y"), "--set", "sim.latency.order.nope=1") == 2
    assert "sim.latency.order.nope" in capsys.readouterr().out


def test_the_capture_switch_is_a_typed_config_key(tmp_path: Path) -> None:
    assert not load_run_spec(paper_config(tmp_path, capture_market_data=False), mode="paper").capture_market_data
    assert load_run_spec(paper_config(tmp_path), mode="live").capture_market_data is False
    assert load_run_spec(paper_config(tmp_path, capture_market_data=True), mode="live").capture_market_data
    with pytest.raises(ConfigError, match=r"output\.capture_market_data"):
        load_run_spec(paper_config(tmp_path, capture_market_data="yes"), mode="paper")


def test_a_killed_session_keeps_its_capture_up_to_the_last_flush_and_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``kill -9`` of ``hft paper``: the raw capture holds every line up to its last flush, and the
    rebuilt Parquet (the command parity names) replays the recovered session."""
    from engine.cli import main as hft_main
    from engine.recorder import recover_run
    from sim.fake_binance.process import HFT
    from venues.binance.capture_import import open_lines

    proc_fake, urls = spawn_fake_binance(CAPTURE, "--speed", "10", "--start", "now")
    out = tmp_path / "run"
    raw_dir = out / "market_data" / "capture" / "binance" / "raw"
    try:
        paper = subprocess.Popen(
            [*HFT, "paper", str(paper_config(tmp_path)), "--out", str(out)],
            cwd=REPO, env={**os.environ, **urls}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            # two flushes on disk: a session that has traded a while, not one that just started
            while sum(p.stat().st_size for p in raw_dir.glob("*.gz")) == 0 or _members(raw_dir) < 2:
                assert paper.poll() is None, "hft paper exited before its capture was flushed"
                assert time.monotonic() < deadline, "no capture flushed within 60 s"
                time.sleep(0.1)
        finally:
            paper.send_signal(signal.SIGKILL)
            paper.wait(10)
    finally:
        proc_fake.terminate()
        proc_fake.wait(10)
    raw = sorted(raw_dir.glob("btcusdt_*.gz"))
    assert raw and sum(1 for line in open_lines(raw[0]) if line) > 100
    recover_run(out)
    assert hft_parity(str(out)) == 2
    message = capsys.readouterr().out
    assert "its raw capture is there" in message and "hft data import" in message
    assert hft_main(["data", "import", *map(str, raw), "--out", str(out / "market_data")]) == 0
    capsys.readouterr()
    code = hft_parity(str(out), "--json")
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and report["decisions"]["session"] > 0 and report["decisions"]["matched"] > 0


def _members(raw_dir: Path) -> int:
    """gzip members written so far (one per flush) across the raw files."""
    return sum(p.read_bytes().count(b"\x1f\x8b\x08") for p in raw_dir.glob("*.gz"))


def test_capture_is_on_for_a_paper_session_and_off_for_the_daemon_and_live() -> None:
    """A paper session records what it trades on; the long-lived daemon (its config has a
    ``daemon`` section) and live trading do so only when asked: days of depth fill a disk."""
    assert load_run_spec(REPO / "config" / "paper" / "market_maker_binance.json", mode="paper").capture_market_data
    assert not load_run_spec(REPO / "config" / "production.json", mode="paper").capture_market_data
    assert not load_run_spec(REPO / "config" / "live" / "market_maker_binance.json", mode="live").capture_market_data
