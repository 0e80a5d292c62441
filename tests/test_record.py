"""``hft record`` against the fake Binance replaying the real 2024-08-08 BTCUSDT capture: the raw
capture and the Parquet of one session agree row for row, and the recorded directory replays as a
backtest."""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from test_binance_support import API_KEY, API_SECRET, CAPTURE, loop_config

from engine.marketdata.instruments import load_instruments
from engine.marketdata.reader import open_dataset
from engine.marketdata.schema import NUMERIC_COLUMNS
from engine.runners.backtest import run_backtest
from engine.runners.record import run_record
from engine.runners.spec import load_run_spec
from venues.binance.adapter import BinanceAdapter
from venues.binance.capture import RawCapture
from venues.binance.capture_import import import_binance_capture, open_lines

server = pytest.importorskip("sim.fake_binance.server")
FakeBinance = server.FakeBinance
REPO = Path(__file__).resolve().parents[1]
DATA = CAPTURE / "btcusdt_20240808.gz"


def rows_of(root: Path) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {name: [] for name in NUMERIC_COLUMNS}
    src = open_dataset(root, venue="binance", symbols=["BTC-USDT"])
    for batch in src:
        for name in NUMERIC_COLUMNS:
            cols[name].append(np.asarray(getattr(batch, name)))
    return {name: np.concatenate(parts) for name, parts in cols.items()}


def backtest_config(tmp: Path, root: Path) -> Path:
    """config/backtests/market_maker_sample.json, pointed at the recording and at venue binance."""
    cfg = json.loads((REPO / "config/backtests/market_maker_sample.json").read_text())
    strategy = json.loads((REPO / "config/strategies/market_maker.json").read_text())
    strategy["venue"] = "binance"
    cfg["name"] = "recorded_session"
    cfg["data"].update(root=str(root), venue="binance", symbols=["BTC-USDT"])
    cfg["instruments"] = str(REPO / "config/instruments.json")
    cfg["balances"] = {"binance": {"USDT": 100000.0, "BTC": 1.0}}
    cfg["sim"]["venues"] = {"binance": copy.deepcopy(next(iter(cfg["sim"]["venues"].values())))}
    cfg["strategies"] = [strategy]
    cfg["output"]["runs_root"] = str(tmp / "runs")
    path = tmp / "recorded_backtest.json"
    path.write_text(json.dumps(cfg))
    return path


async def test_recorded_session_raw_equals_parquet_and_replays_as_backtest(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    async with FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, speed="max") as fb:
        cfg = loop_config(rest_url=fb.rest_url, ws_url=fb.ws_url, ws_api_url=fb.ws_api_url)
        # a short flush interval: several flushes (gzip members) per file
        summary = await run_record(BinanceAdapter(cfg), out, duration_s=3.0, flush_interval_s=0.2)
    entry = summary["symbols"]["BTC-USDT"]
    raw = [Path(p) for p in entry["raw_files"]]
    assert raw and all(p.parent == out / "raw" and p.name.startswith("btcusdt_") for p in raw)
    assert entry["snapshots"] >= 1 and entry["frames"] > 1000 and summary["flushes"] >= 2
    assert entry["lines_written"] == entry["lines_received"]  # nothing buffered was left behind

    # the raw file is the shipped captures' format: "<ns> <frame>" lines and bare snapshot lines
    lines = [line for p in raw for line in open_lines(p) if line]
    assert len(lines) == entry["frames"] + entry["snapshots"]
    heads = [line.split(b" ", 1) for line in lines]
    assert all(ts.isdigit() and len(ts) == 19 for ts, _ in heads)
    kinds = {body[:30] for _, body in heads if not body.startswith(b'{"lastUpdateId"')}
    assert {k.split(b"@")[1][:5] for k in kinds} >= {b"depth", b"trade", b"bookT"}
    assert sum(body.startswith(b'{"lastUpdateId"') for _, body in heads) == entry["snapshots"]

    # (a) importing the raw capture (registry from config/instruments.json) and (b) the Parquet the
    # recorder wrote give the same rows, in the same order
    res = import_binance_capture(
        raw, tmp_path / "imported", "binance", "BTC-USDT", registry=load_instruments(REPO / "config/instruments.json")
    )
    assert res.malformed == 0 and res.gaps == 0 and res.rows["delta"] > 1000 and res.rows["snapshot"] > 100
    recorded, imported = rows_of(out), rows_of(tmp_path / "imported")
    assert len(recorded["ts_recv"]) == res.total_rows == sum(entry["rows"].values())
    for name in NUMERIC_COLUMNS:
        assert np.array_equal(recorded[name], imported[name]), name
    assert np.all(np.diff(recorded["ts_recv"]) >= 0)

    # the recording replays as a backtest of the sample market maker on venue binance
    spec = load_run_spec(backtest_config(tmp_path, out))
    result = run_backtest(spec, tmp_path / "run")
    assert result.summary["rows"] == len(recorded["ts_recv"])
    assert result.summary["book_updates"] > 100 and result.summary["orders_submitted"] > 0
    assert (tmp_path / "run" / "orders.parquet").exists()


def test_raw_capture_lines_days_and_members(tmp_path: Path) -> None:
    """Lines per (symbol, UTC day), one gzip member per flush, a frame's newlines flattened, frames
    of other symbols and non-stream frames left out."""
    cap = RawCapture(tmp_path, ["btcusdt", "ethusdt"])
    day1 = 1723161253937085768  # 2024-08-08T23:54:13Z
    day2 = day1 + 7 * 60 * 10**9  # past midnight
    cap.add_frame(b'{"stream":"btcusdt@trade","data":{"e":"trade"}}', day1)
    cap.add_snapshot("btcusdt", b'{"lastUpdateId":5,\n"bids":[],"asks":[]}', day1 + 1)
    cap.add_frame(b'{"stream":"xrpusdt@trade","data":{}}', day1 + 2)
    cap.add_frame(b'{"result":null,"id":1}', day1 + 3)
    cap.write(cap.take())
    cap.add_frame(b'{"stream":"btcusdt@depth@100ms","data":{}}', day1 + 4)
    cap.add_frame(b'{"stream":"ethusdt@bookTicker","data":{}}', day2)
    cap.write(cap.take())
    assert cap.skipped == 2 and cap.snapshots == {"btcusdt": 1, "ethusdt": 0}
    assert cap.received == {"btcusdt": 3, "ethusdt": 1}
    assert cap.lines == {"btcusdt": 3, "ethusdt": 1}
    btc = tmp_path / "btcusdt_20240808.gz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["btcusdt_20240808.gz", "ethusdt_20240809.gz"]
    raw = btc.read_bytes()
    assert raw.count(b"\x1f\x8b\x08") == 2  # two flushes, two complete gzip members
    assert gzip.decompress(raw).splitlines() == [
        f"{day1} ".encode() + b'{"stream":"btcusdt@trade","data":{"e":"trade"}}',
        f"{day1 + 1} ".encode() + b'{"lastUpdateId":5, "bids":[],"asks":[]}',
        f"{day1 + 4} ".encode() + b'{"stream":"btcusdt@depth@100ms","data":{}}',
    ]


async def test_command_stops_on_sigint_without_losing_data(tmp_path: Path) -> None:
    """``hft record CONFIG --out DIR`` with the endpoints from BINANCE_* variables, stopped by
    SIGINT: it exits 0 and what it received is in both the raw file and the Parquet."""
    out = tmp_path / "rec"
    config = tmp_path / "binance.json"
    config.write_text(json.dumps({"venue": "binance", "symbols": ["BTC-USDT"], "rest_url": "https://invalid"}))
    code = (
        "import argparse, sys\n"
        "from engine.runners.record import register\n"
        "p = argparse.ArgumentParser(prog='hft'); register(p.add_subparsers())\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
    )
    async with FakeBinance(data=DATA, api_key=API_KEY, api_secret=API_SECRET, speed=20) as fb:
        env = dict(
            os.environ,
            BINANCE_REST_URL=fb.rest_url,
            BINANCE_WS_URL=fb.ws_url,
            BINANCE_WS_API_URL=fb.ws_api_url,
            PYTHONPATH=str(REPO),
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            "record",
            str(config),
            "--out",
            str(out),
            "--symbols",
            "BTC-USDT",
            env=env,
            cwd=str(REPO),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        # wait until it is receiving (its feed has subscribed), then give it a moment of data
        for _ in range(300):
            if fb.status()["stream_connections"] and fb.status()["frames_published"] > 200:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    text = stdout.decode()
    assert "recorded" in text and "BTC-USDT:" in text
    raw = sorted((out / "raw").glob("btcusdt_*.gz"))
    lines = [line for p in raw for line in open_lines(p) if line]
    assert len(lines) > 100
    snapshots = sum(line.split(b" ", 1)[1].startswith(b'{"lastUpdateId"') for line in lines)
    # every frame it counted is in the file, also those of the last fraction of a second before SIGINT
    assert f"{len(lines) - snapshots:,} frames, {snapshots} snapshots" in text
    assert "not written" not in text  # every line received, to the last one before SIGINT, is on disk
    parquet = rows_of(out)
    assert len(parquet["ts_recv"]) > 0 and parquet["ts_recv"].max() <= int(lines[-1].split(b" ", 1)[0])
    assert (out / "logs" / "market_data.log").exists()


def test_command_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import argparse

    from engine.errors import ConfigError
    from engine.runners.record import register

    parser = argparse.ArgumentParser(prog="hft")
    register(parser.add_subparsers())
    config = tmp_path / "binance.json"
    config.write_text(json.dumps({"venue": "binance", "symbols": ["BTC-USDT"]}))

    def run(*argv: str) -> int:
        args = parser.parse_args(["record", *argv])
        return args.func(args)

    monkeypatch.setenv("BINANCE_REST_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert run(str(config), "--out", str(tmp_path / "a"), "--duration", "1") == 2
    assert "error: cannot start recording binance from http://127.0.0.1:9: Failed to connect" in capsys.readouterr().err
    assert run(str(config), "--out", str(tmp_path / "b"), "--duration", "0") == 2
    assert "--duration must be positive" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="symbols: btc-usdt not in BASE-QUOTE form"):
        run(str(config), "--out", str(tmp_path / "c"), "--symbols", "btc-usdt")
    with pytest.raises(ConfigError, match="file not found"):
        run(str(tmp_path / "missing.json"), "--out", str(tmp_path / "d"))
