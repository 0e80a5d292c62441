"""Bad input on the command line: one line on stderr, exit code 2 (or 1 for ``--strict`` data
problems), no traceback, and no empty run folder left behind."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parents[1]
BACKTEST = REPO / "config" / "backtests" / "market_maker_sample.json"
PAPER = REPO / "config" / "paper" / "market_maker_binance.json"
LIVE = REPO / "config" / "live" / "market_maker_binance.json"
EXCHANGE = REPO / "config" / "exchanges" / "binance.json"
SAMPLE = REPO / "data" / "samples" / "venue=binance-futures"
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: ")
    return err.rstrip("\n")


# --- durations ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["paper", "live"])
@pytest.mark.parametrize("value", ["-5", "0", "abc", "nan", "inf"])
def test_a_duration_that_is_not_positive_is_one_line(tmp_path, capsys, command, value) -> None:
    config = PAPER if command == "paper" else LIVE
    out = tmp_path / "run"
    assert main([command, str(config), "--duration", value, "--out", str(out)]) == 2
    assert one_line(capsys) == f"error: --duration must be positive (a number of seconds), got {value}"
    assert not out.exists()


def test_record_refuses_a_negative_duration_in_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "rec"
    assert main(["record", str(EXCHANGE), "--out", str(out), "--duration", "-5"]) == 2
    assert one_line(capsys) == "error: --duration must be positive (a number of seconds), got -5"
    assert not out.exists()


# --- a session that cannot start ------------------------------------------------------------------
def test_paper_with_the_venue_unreachable_is_one_line_and_leaves_no_run_folder(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BINANCE_REST_URL", DEAD)
    out = tmp_path / "run"
    assert main(["paper", str(PAPER), "--duration", "5", "--out", str(out)]) == 2
    line = one_line(capsys)
    assert line.startswith(f"error: Cannot load instruments from binance ({DEAD}): ")
    assert not out.exists()


def test_an_existing_empty_out_folder_is_left_as_it_was(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BINANCE_REST_URL", DEAD)
    out = tmp_path / "run"
    out.mkdir()
    assert main(["paper", str(PAPER), "--out", str(out)]) == 2
    one_line(capsys)
    assert out.is_dir() and not any(out.iterdir())


def test_paper_unreachable_as_a_process_prints_only_the_error(tmp_path) -> None:
    env = {**os.environ, "BINANCE_REST_URL": DEAD}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "paper", str(PAPER), "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: Cannot load instruments from binance")
    assert not out.exists()


def test_record_with_the_venue_unreachable_leaves_no_folder(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BINANCE_REST_URL", DEAD)
    out = tmp_path / "rec"
    assert main(["record", str(EXCHANGE), "--out", str(out), "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"error: cannot start recording binance from {DEAD}: ")
    assert "Traceback" not in err and not out.exists()


# --- run folders ------------------------------------------------------------------------------------
def test_out_that_is_a_file_is_one_line(tmp_path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["backtest", str(BACKTEST), "--no-progress", "--out", str(afile)]) == 2
    assert one_line(capsys) == f"error: run directory {afile} is a file; choose another --out"
    assert main(["paper", str(PAPER), "--out", str(afile)]) == 2
    assert one_line(capsys) == f"error: run directory {afile} is a file; choose another --out"


def test_a_backtest_on_missing_data_leaves_no_run_folder(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert (
        main(["backtest", str(BACKTEST), "--no-progress", "--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    )
    assert str(tmp_path / "nowhere") in one_line(capsys)
    assert not out.exists()


# --- hft bench ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--repeat", "0"], "error: --repeat must be an integer >= 1, got 0"),
        (["--repeat", "-2"], "error: --repeat must be an integer >= 1, got -2"),
        (["--loops", "-1"], "error: --loops must be an integer >= 1, got -1"),
        (["--loops", "0"], "error: --loops must be an integer >= 1, got 0"),
    ],
)
def test_bench_counts_below_one_are_one_line(capsys, args, line) -> None:
    assert main(["bench", "--mode", "book", *args]) == 2
    assert one_line(capsys) == line


def test_bench_with_a_bad_config_is_one_line(tmp_path, capsys) -> None:
    assert main(["bench", "--mode", "book", "--config", str(tmp_path / "none.json")]) == 2
    assert one_line(capsys) == f"error: Failed to load configuration from {tmp_path / 'none.json'}: file not found"


# --- hft data ---------------------------------------------------------------------------------------
def test_data_ls_on_a_corrupt_file_names_the_file(tmp_path, capsys) -> None:
    root = tmp_path / "data"
    shutil.copytree(SAMPLE, root / SAMPLE.name)
    part = next(root.rglob("*.parquet"))
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    assert main(["data", "ls", str(root)]) == 2
    line = one_line(capsys)
    assert line.startswith(f"error: Bad market data at {part}: not a readable Parquet file")
    assert "SELECT" not in line and "read_parquet" not in line


def test_data_ls_on_a_parquet_file_of_another_schema_names_it(tmp_path, capsys) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    part = tmp_path / "venue=x" / "symbol=A-B" / "date=2024-01-01" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.table({"price": [1, 2]}), part)
    assert main(["data", "ls", str(tmp_path)]) == 2
    assert one_line(capsys).startswith(f"error: Bad market data at {part}: not a market-data Parquet file")


def _capture_lines(n_trades: int) -> bytes:
    snap = {"lastUpdateId": 100, "E": 10, "T": 10, "bids": [["100.0", "1"]], "asks": [["101.0", "2"]]}
    lines = [f"10 {json.dumps(snap, separators=(',', ':'))}\n"]
    for i in range(n_trades):
        data = {"e": "trade", "E": 11 + i, "T": 11 + i, "s": "BTCUSDT", "t": i, "p": "100.5", "q": "0.5", "m": False}
        lines.append(f"{11 + i} {json.dumps({'stream': 'btcusdt@trade', 'data': data}, separators=(',', ':'))}\n")
    return "".join(lines).encode()


IMPORT = ["--venue", "binance-futures", "--symbol", "BTC-USDT"]


@pytest.mark.parametrize("n_trades", [300, 30_000])  # the cut inside the first block read, and after it
def test_a_truncated_gzip_is_counted_and_strict_exits_1(tmp_path, capsys, n_trades) -> None:
    whole = gzip.compress(_capture_lines(n_trades))
    src = tmp_path / "btcusdt_20240808.gz"
    src.write_bytes(whole[: len(whole) * 2 // 3])
    assert main(["data", "import", str(src), "--out", str(tmp_path / "a"), *IMPORT, "--strict"]) == 1
    captured = capsys.readouterr()
    assert "malformed: 1," in captured.out
    assert "malformed: btcusdt_20240808.gz:" in captured.out and "truncated or corrupt gzip stream" in captured.out
    assert "malformed lines or sequence gaps" in captured.err and "Traceback" not in captured.err
    # without --strict the import keeps what came before the cut and says so
    assert main(["data", "import", str(src), "--out", str(tmp_path / "b"), *IMPORT]) == 0
    assert "warning: the input had malformed lines" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["binance-capture", "tardis"])
def test_an_empty_file_with_an_explicit_format_is_one_line(tmp_path, capsys, fmt) -> None:
    src = tmp_path / "btcusdt_20240808.gz"
    src.write_bytes(b"")
    assert main(["data", "import", str(src), "--out", str(tmp_path / "o"), "--format", fmt, "--strict"]) == 2
    assert one_line(capsys) == f"error: Bad market data at {src}: the file is empty"
    assert not (tmp_path / "o").exists()


def test_a_gzip_of_nothing_is_one_line(tmp_path, capsys) -> None:
    src = tmp_path / "btcusdt_20240808.gz"
    src.write_bytes(gzip.compress(b""))
    assert main(["data", "import", str(src), "--out", str(tmp_path / "o"), "--format", "binance-capture"]) == 2
    assert one_line(capsys) == f"error: Bad market data at {src}: the file holds no lines"


def test_a_damaged_stream_name_is_malformed_with_its_line_and_strict_exits_1(tmp_path, capsys) -> None:
    lines = _capture_lines(5).splitlines(keepends=True)
    lines[3] = lines[3].replace(b"btcusdt@trade", b"btcusdt@trabe")
    src = tmp_path / "btcusdt_20240808.gz"
    src.write_bytes(gzip.compress(b"".join(lines)))
    assert main(["data", "import", str(src), "--out", str(tmp_path / "o"), *IMPORT, "--strict"]) == 1
    out = capsys.readouterr().out
    assert "trade 4," in out and "malformed: 1, skipped: 0" in out
    assert "malformed: btcusdt_20240808.gz:4: damaged stream name 'btcusdt@trabe'" in out


def test_no_secret_reaches_the_error_line(tmp_path, capsys) -> None:
    """The CLI's one line goes through the log redactor: a key this process holds is masked even
    where nothing labels it (here, in a file name)."""
    from engine.logs import register_secret

    secret = "Sx9" + "v" * 40
    register_secret(secret)
    assert main(["backtest", str(tmp_path / f"{secret}.json"), "--no-progress"]) == 2
    line = one_line(capsys)
    assert secret not in line and line.endswith("***.json: file not found")
