"""The compiled path (``sim.compiled``) against the Python path on the shipped quote-at-touch sample:
the same event log, row for row, and the same summary; twice the same bytes; and a clear refusal
of what it cannot run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from engine.errors import HftError
from engine.eventlog_schema import TABLES
from engine.runners.backtest import run_backtest
from engine.runners.compiled import CompiledPathError, run_compiled
from engine.runners.spec import RunSpec, load_run_spec

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "backtests" / "quote_at_touch_sample.json"
#: the summary keys both paths compute from the same events (the rest are timings)
SAME_SUMMARY = (
    "net_pnl",
    "realized_pnl",
    "unrealized_pnl",
    "fees",
    "fills",
    "orders_submitted",
    "orders_filled",
    "orders_rejected",
    "fill_ratio",
    "max_drawdown",
    "rows",
    "book_updates",
    "crossed_books",
    "incidents",
)


#: name -> (changes to the sample config's ``sim`` section, strategy params)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # the shipped config: woken by book messages
    "book-messages": ({}, {}),
    # issue 17's equal-work workload: also woken by every trade (27,856 wakes)
    "book-and-trades": ({}, {"act_on_trades": True}),
    # taker fills (post-only off), the probabilistic queue, a 4 ms feed, slow answers, decision time
    "taker-prob-queue-4ms": (
        {
            "queue_model": "prob",
            "queue_power": 3.0,
            "latency": {
                "feed": {"type": "constant", "ms": 4},
                "order": {"type": "constant", "us": 100},
                "response": {"type": "constant", "ms": 2},
                "decision_us": 30,
            },
        },
        {"act_on_trades": True, "post_only": False},
    ),
}


def _spec(config: Path, params: dict[str, Any]) -> RunSpec:
    spec = load_run_spec(config)
    spec.strategies[0].params.update(params)
    return spec


@pytest.fixture(scope="module", params=list(VARIANTS))
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both engines on the sample, in-process, and the compiled one a second time."""
    tmp = tmp_path_factory.mktemp(request.param)
    sim, params = VARIANTS[request.param]
    raw = json.loads(CONFIG.read_text())
    raw["sim"].update(sim)
    config = tmp / "config.json"
    config.write_text(json.dumps(raw))
    py = run_backtest(_spec(config, params), tmp / "python")
    compiled = run_compiled(_spec(config, params), tmp / "compiled")
    again = run_compiled(_spec(config, params), tmp / "again")
    return {
        "name": request.param,
        "tmp": tmp,
        "config": config,
        "params": params,
        "python": py.summary,
        "compiled": compiled,
        "again": again,
    }


@pytest.mark.parametrize("table", list(TABLES))
def test_event_log_tables_equal_the_python_paths(runs: dict[str, Any], table: str) -> None:
    # every column: the compiled path has no column it cannot match (NaN marks compare equal)
    py = pq.read_table(runs["tmp"] / "python" / f"{table}.parquet")
    compiled = pq.read_table(runs["tmp"] / "compiled" / f"{table}.parquet")
    assert compiled.schema == py.schema == TABLES[table]
    assert_frame_equal(compiled.to_pandas(), py.to_pandas(), check_exact=True)


def test_the_sample_trades(runs: dict[str, Any]) -> None:
    # the equality above is about a run with orders and fills to compare, not an empty one
    orders = pq.read_table(runs["tmp"] / "compiled" / "orders.parquet").to_pandas()
    assert {"submit", "accepted", "cancel_request", "canceled", "filled"} <= set(orders["event"])
    assert runs["compiled"]["fills"] > 500
    if runs["name"] == "taker-prob-queue-4ms":  # and the paths a quote at the touch rarely takes
        fills = pq.read_table(runs["tmp"] / "compiled" / "fills.parquet").to_pandas()
        assert "taker" in set(fills["liquidity"])
        assert {"partially_filled", "cancel_rejected"} <= set(orders["event"])


def test_summary_equals_the_python_paths(runs: dict[str, Any]) -> None:
    for key in SAME_SUMMARY:
        assert runs["compiled"][key] == runs["python"][key], key
    assert runs["compiled"]["engine"] == "compiled"
    assert runs["compiled"]["replay_s"] > 0


def test_a_second_run_writes_the_same_bytes(runs: dict[str, Any]) -> None:
    for table in TABLES:
        first = (runs["tmp"] / "compiled" / f"{table}.parquet").read_bytes()
        assert first == (runs["tmp"] / "again" / f"{table}.parquet").read_bytes(), table
    manifests = [json.loads((runs["tmp"] / d / "manifest.json").read_text()) for d in ("compiled", "again")]
    for m in manifests:
        m.pop("run_id")
    assert manifests[0] == manifests[1]
    assert manifests[0]["engine"] == "compiled"


def test_small_windows_and_tiny_arrays_give_the_same_log(runs: dict[str, Any]) -> None:
    # the rows come in windows of 1,000 (about 470 of them), and every growable array (orders,
    # events, resting slots, event-log rows, the venue book's overflow) starts with room for two:
    # the loop stops at each window's end and whenever an array is full, and resumes
    run_compiled(_spec(runs["config"], runs["params"]), runs["tmp"] / "tiny", capacity=2, window_rows=1000)
    for table in TABLES:
        tiny = pq.read_table(runs["tmp"] / "tiny" / f"{table}.parquet").to_pandas()
        assert_frame_equal(
            tiny, pq.read_table(runs["tmp"] / "python" / f"{table}.parquet").to_pandas(), check_exact=True
        )


def test_a_strategy_without_a_compiled_twin_is_refused(tmp_path: Path) -> None:
    spec = load_run_spec(REPO / "config" / "backtests" / "market_maker_sample.json")
    with pytest.raises(CompiledPathError, match=r"strategy market_maker \(strategies.market_maker:MarketMaker\)"):
        run_compiled(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_random_latency_is_refused_by_name(tmp_path: Path) -> None:
    raw = json.loads(CONFIG.read_text())
    raw["sim"]["latency"]["response"] = {"type": "random", "median_us": 100, "sigma": 0.2}
    config = tmp_path / "random_latency.json"
    config.write_text(json.dumps(raw))
    with pytest.raises(CompiledPathError, match=r"sim\.latency\.response is 'random'; it supports 'constant' only"):
        run_compiled(load_run_spec(config), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_risk_limit_is_refused_by_name(tmp_path: Path) -> None:
    raw = json.loads(CONFIG.read_text())
    raw["risk"]["max_position_usd"] = 5000
    config = tmp_path / "limits.json"
    config.write_text(json.dumps(raw))
    with pytest.raises(HftError, match=r"risk\.max_position_usd is set"):
        run_compiled(load_run_spec(config), tmp_path / "run")


def test_hft_backtest_engine_compiled_writes_the_python_paths_event_log(tmp_path: Path, capsys) -> None:
    """What a user runs: ``hft backtest CONFIG --engine compiled`` gives the event log a plain
    ``hft backtest CONFIG`` gives, file for file, and refuses a strategy without a twin in one line."""
    from engine.cli import main

    py, comp = tmp_path / "python", tmp_path / "compiled"
    assert main(["backtest", str(CONFIG), "--out", str(py), "--no-progress"]) == 0
    assert main(["backtest", str(CONFIG), "--engine", "compiled", "--out", str(comp), "--no-progress"]) == 0
    for table in TABLES:
        a, b = py / f"{table}.parquet", comp / f"{table}.parquet"
        assert_frame_equal(pq.read_table(a).to_pandas(), pq.read_table(b).to_pandas(), check_exact=True, obj=table)
    capsys.readouterr()
    mm = REPO / "config" / "backtests" / "market_maker_sample.json"
    assert main(["backtest", str(mm), "--engine", "compiled", "--out", str(tmp_path / "mm"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "has no compiled twin" in err and "market_maker" in err
    assert not (tmp_path / "mm").exists()
