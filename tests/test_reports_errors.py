"""Bad or empty event logs give one clear line (exit code 2 from the CLI), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import RunLogError
from reports.errors import EmptyRunError
from reports.latency import latency_report
from reports.logwriter import write_event_log
from reports.postmortem import post_mortem

T0 = 1_714_521_600_000_000_000


def small_run(run_dir: Path) -> Path:
    market = [{"ts": T0 + i * 10**9, "venue": "v", "symbol": "X", "bid": 99.0, "ask": 101.0, "mid": 100.0}
              for i in range(5)]  # fmt: skip
    fills = [
        {"ts": T0 + 10**9, "strategy_id": "s", "venue": "v", "symbol": "X", "side": "buy", "price": 100.0, "qty": 1.0,
         "client_order_id": "a", "position_after": 1.0},
        {"ts": T0 + 2 * 10**9, "strategy_id": "s", "venue": "v", "symbol": "X", "side": "sell", "price": 101.0,
         "qty": 1.0, "client_order_id": "b", "position_after": 0.0},
    ]  # fmt: skip
    orders = [{"ts": f["ts"] - 1, "event": "submit", "strategy_id": "s", "venue": "v", "symbol": "X",
               "client_order_id": f["client_order_id"]} for f in fills]  # fmt: skip
    return write_event_log(run_dir, {"market": market, "fills": fills, "orders": orders}, {"strategies": ["s"]})


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0]


def test_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RunLogError, match="no such run directory"):
        post_mortem(tmp_path / "nope")
    code, _, err = cli(["report", "post-mortem", str(tmp_path / "nope")], capsys)
    assert code == 2
    assert_one_line_error(err, "Cannot read event log at", "no such run directory")
    code, _, err = cli(["report", "latency", str(tmp_path / "nope")], capsys)
    assert code == 2
    assert_one_line_error(err, "no such run directory")


def test_directory_that_is_not_an_event_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").mkdir()
    code, _, err = cli(["report", "post-mortem", str(tmp_path / "x")], capsys)
    assert code == 2
    assert_one_line_error(err, "not an event log")


def test_corrupt_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = small_run(tmp_path / "run")
    (run / "fills.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(RunLogError, match="corrupt Parquet file"):
        post_mortem(run)
    code, _, err = cli(["report", "post-mortem", str(run)], capsys)
    assert code == 2
    assert_one_line_error(err, "fills.parquet", "corrupt Parquet file")


def test_truncated_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = small_run(tmp_path / "run")
    data = (run / "market.parquet").read_bytes()
    (run / "market.parquet").write_bytes(data[: len(data) // 2])
    code, _, err = cli(["report", "latency", str(run)], capsys)
    assert code == 2
    assert_one_line_error(err, "market.parquet", "corrupt Parquet file")


def test_missing_table_and_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = small_run(tmp_path / "run")
    (run / "positions.parquet").unlink()
    code, _, err = cli(["report", "post-mortem", str(run)], capsys)
    assert code == 2
    assert_one_line_error(err, "missing positions.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"seq": [1], "ts": [T0]}), run / "positions.parquet")
    code, _, err = cli(["report", "post-mortem", str(run)], capsys)
    assert code == 2
    assert_one_line_error(err, "positions table lacks column(s) strategy_id")


def test_bad_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = small_run(tmp_path / "run")
    (run / "manifest.json").write_text("{not json")
    code, _, err = cli(["report", "post-mortem", str(run)], capsys)
    assert code == 2
    assert_one_line_error(err, "manifest is not valid JSON")


def test_unknown_strategy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = small_run(tmp_path / "run")
    code, _, err = cli(["report", "post-mortem", str(run), "--strategy", "ghost"], capsys)
    assert code == 2
    assert_one_line_error(err, "strategy 'ghost' is not in this log (strategies: s)")


def test_empty_run_writes_a_report_saying_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_event_log(tmp_path / "empty", {}, {"run_id": "empty", "mode": "backtest", "strategies": ["s"]})
    with pytest.raises(EmptyRunError, match="no fills for strategy s: the strategy submitted no orders") as info:
        post_mortem(run, strategy="s")
    assert info.value.written[0] == run / "post_mortem.html"
    html = (run / "post_mortem.html").read_text()
    assert "There were no fills: the strategy submitted no orders." in html
    assert json.loads((run / "post_mortem.json").read_text())["execution"]["fills"] == 0
    code, out, err = cli(["report", "post-mortem", str(run)], capsys)
    assert code == 2 and out == ""
    assert_one_line_error(err, "no fills for any strategy", "report written to")


def test_only_rejected_orders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    orders = []
    for i in range(3):
        common = {"strategy_id": "s", "venue": "v", "symbol": "X", "client_order_id": f"o{i}"}
        orders.append({**common, "ts": T0 + i * 10**9, "event": "submit"})
        orders.append({**common, "ts": T0 + i * 10**9 + 10, "event": "rejected",
                       "reason": "Risk check failed: Position limit exceeded"})  # fmt: skip
    run = write_event_log(tmp_path / "rej", {"orders": orders}, {"strategies": ["s"]})
    code, _, err = cli(["report", "post-mortem", str(run), "--strategy", "s"], capsys)
    assert code == 2
    assert_one_line_error(err, "all 3 orders were rejected (Risk check failed: Position limit exceeded x3)")
    md = (run / "post_mortem.md").read_text()
    assert "| Risk check failed: Position limit exceeded | 0 | 3 |" in md
    assert "## Diagnosis" in md


def test_latency_report_on_an_empty_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_event_log(tmp_path / "empty", {}, {"mode": "live"})
    with pytest.raises(EmptyRunError):
        latency_report(run)
    code, _, err = cli(["report", "latency", str(run)], capsys)
    assert code == 2
    assert_one_line_error(err, "no latency samples")


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = small_run(tmp_path / "run")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the report directory should go")
    code, _, err = cli(["report", "post-mortem", str(run), "--out", str(blocker)], capsys)
    assert code == 2
    assert_one_line_error(err, "Cannot write report to")
