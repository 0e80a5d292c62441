"""``hft sweep``'s grid, days, symbols and data location, checked before anything runs (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from engine.research.datasource import locate, stage
from engine.research.grid import SweepError, apply, materialize, parse_grid_arg, parse_value, resolve_axis
from engine.research.plan import build_plan
from engine.research.sweep_cli import main as sweep_main
from engine.runners.spec import load_run_spec

REPO = Path(__file__).resolve().parents[1]
QUOTE = REPO / "config" / "backtests" / "quote_at_touch_sample.json"
MM = REPO / "config" / "backtests" / "market_maker_sample.json"
SAMPLES = REPO / "data" / "samples"
DAY = 86_400_000_000_000


def test_values_are_json_scalars_or_text():
    assert [parse_value(t) for t in ("0.001", "50", "true", "null", "prob", "[1]")] == [
        0.001,
        50,
        True,
        None,
        "prob",
        "[1]",
    ]
    assert parse_grid_arg("sim.latency.order.us=50, 100,200") == [("sim.latency.order.us", [50, 100, 200])]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("order_size", "expected PATH=V1,V2"),
        ("=1,2", "expected PATH=V1,V2"),
        ("order_size=0.1,,0.2", "empty value"),
        ("order_size=", "empty value"),
    ],
)
def test_malformed_grid_arguments_are_refused(arg, message):
    with pytest.raises(SweepError, match=message):
        parse_grid_arg(arg)


def test_a_grid_file_reads_paths_and_value_lists(tmp_path):
    f = tmp_path / "grid.json"
    f.write_text(json.dumps({"order_size": [0.002, 0.003], "sim.queue_model": ["prob", "risk_averse"]}))
    assert parse_grid_arg(f"@{f}") == [("order_size", [0.002, 0.003]), ("sim.queue_model", ["prob", "risk_averse"])]
    f.write_text(json.dumps({"order_size": 0.002}))
    with pytest.raises(SweepError, match=r"order_size: must be a non-empty list"):
        parse_grid_arg(f"@{f}")


def test_names_resolve_to_a_strategy_param_or_a_run_setting():
    strategies = load_run_spec(QUOTE).strategies
    assert resolve_axis("order_size", [1], strategies).target == ("strategies", 0, "params", "order_size")
    assert resolve_axis("quote_at_touch.post_only", [True], strategies).target[-1] == "post_only"
    assert resolve_axis("sim.latency.order.us", [5], strategies).target == ("sim", "latency", "order", "us")
    with pytest.raises(SweepError, match="did you mean 'order_size'"):
        resolve_axis("order_sise", [1], strategies)
    with pytest.raises(SweepError, match="unknown setting"):
        resolve_axis("simm.queue_model", [1], strategies)
    with pytest.raises(SweepError, match="listed twice"):
        resolve_axis("order_size", [1, 1], strategies)


def test_a_duration_in_one_unit_replaces_the_same_duration_in_another():
    cfg = materialize(MM)
    axis = resolve_axis("sim.latency.order.median_us", [1], load_run_spec(MM).strategies)
    apply(cfg, axis, 1500)
    assert cfg["sim"]["latency"]["order"] == {"type": "random", "median_us": 1500, "sigma": 0.3, "min_ms": 1}


def test_a_materialized_config_loads_anywhere(tmp_path):
    cfg = materialize(QUOTE)
    assert isinstance(cfg["strategies"][0], dict) and Path(cfg["data"]["root"]).is_absolute()
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    spec = load_run_spec(tmp_path / "c.json")
    assert spec.data_root == SAMPLES.resolve() and spec.strategies[0].params["order_size"] == 0.002


def test_a_plan_crosses_the_grid_and_names_each_point_by_its_config():
    plan = build_plan(str(QUOTE), ["order_size=0.002,0.003", "sim.latency.order.us=50,100,200"])
    assert len(plan.points) == 6 and plan.columns == ["order_size", "sim.latency.order.us"]
    assert [p.settings for p in plan.points[:2]] == [
        {"order_size": 0.002, "sim.latency.order.us": 50},
        {"order_size": 0.002, "sim.latency.order.us": 100},
    ]
    assert len({p.point_id for p in plan.points}) == 6
    again = build_plan(str(QUOTE), ["order_size=0.002,0.003", "sim.latency.order.us=50,100,200"])
    assert [p.point_id for p in again.points] == [p.point_id for p in plan.points]
    first = plan.points[0].config
    assert first["strategies"][0]["params"]["order_size"] == 0.002
    assert first["sim"]["latency"]["order"] == {"type": "constant", "us": 50}


def test_days_and_symbols_are_points_too():
    plan = build_plan(str(QUOTE), ["order_size=0.002,0.003"], days=["2024-08-08"], start="23:56", end="23:58")
    midnight = 1_723_075_200_000_000_000  # 2024-08-08T00:00Z
    assert [p.settings["day"] for p in plan.points] == ["2024-08-08", "2024-08-08"]
    data = plan.points[0].config["data"]
    assert (data["from"], data["to"]) == (
        midnight + (23 * 60 + 56) * 60 * 10**9,
        midnight + (23 * 60 + 58) * 60 * 10**9,
    )
    plan = build_plan(str(QUOTE), ["order_size=0.002"], symbols=["BTC-USDT"])
    cfg = plan.points[0].config
    assert cfg["data"]["symbols"] == ["BTC-USDT"] and cfg["strategies"][0]["symbols"] == ["BTC-USDT"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"grid": ["order_size=-1"]},
            r"--grid order_size=-1: strategies\[0\]\.params\.order_size: must be",
        ),
        ({"grid": ["sim.queue_model=prob,fifo"]}, "--grid sim.queue_model=fifo: sim.queue_model: unknown queue model"),
        ({"grid": ["risk.max_order_size_usd=abc"]}, r"--grid risk\.max_order_size_usd=abc: risk\.max_order_size_usd"),
        ({"grid": ["sim.latency.order.uss=1"]}, "did you mean 'us'"),
        ({"grid": ["seed=1.5"]}, "seed: must be an integer"),
        ({"grid": ["order_size=0.002", "order_size=0.003"]}, "given twice"),
        ({"grid": []}, "at least one"),
        ({"grid": ["order_size=0.002"], "days": ["2024-08-10"]}, "no market data partitions"),
        ({"grid": ["order_size=0.002"], "days": ["2024-08-08T12:00"]}, "give dates"),
        ({"grid": ["order_size=0.002"], "symbols": ["ETH-USDT"]}, "point order_size=0.002 symbol=ETH-USDT"),
        ({"grid": ["order_size=0.002"], "data": "nosuch://bucket/x"}, "cannot open it as a pyarrow filesystem URI"),
        ({"grid": ["order_size=0.002"], "start": "23:58", "end": "23:56", "days": ["2024-08-08"]}, "after --from"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(kwargs, message):
    with pytest.raises(SweepError, match=message):
        build_plan(str(QUOTE), **kwargs)


@pytest.mark.parametrize(
    "grid",
    [
        ["order_size=0.002", "quote_at_touch.order_size=0.003"],
        ["sim.latency.order.us=1000", "sim.latency.order.ms=2"],
    ],
)
def test_two_settings_of_one_field_are_refused(grid):
    first, second = (g.split("=")[0] for g in grid)
    with pytest.raises(SweepError, match=f"--grid {second}: sets the same field as --grid {first}"):
        build_plan(str(QUOTE), grid)


def test_the_command_prints_one_error_line_and_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    base = ["sweep", str(QUOTE), "--out", str(out), "--no-progress"]
    cases = [
        (["--grid", "order_sise=0.1"], "error: --grid order_sise: no strategy takes a param 'order_sise'"),
        (["--grid", "order_size=0.002,0.003", "--heatmap", "order_size,seed"], "seed is not swept"),
        (["--grid", "order_size=0.002", "--metric", "pnl"], "--metric pnl: not a results column"),
        (["--grid", "order_size=0.002", "--workers", "-1"], "--workers -1"),
    ]
    for extra, message in cases:
        assert sweep_main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()


def test_file_uris_read_the_local_files():
    where = locate(f"file://{SAMPLES}")
    assert where.local == SAMPLES and where.uri is None
    plan = build_plan(str(QUOTE), ["order_size=0.002"], data=f"file://{SAMPLES}")
    assert plan.points[0].config["data"]["root"] == str(SAMPLES)


def test_data_on_another_filesystem_is_staged_partition_by_partition(tmp_path):
    remote = pafs.SubTreeFileSystem(str(SAMPLES), pafs.LocalFileSystem())  # not a LocalFileSystem
    end = 1_723_075_200_000_000_000 + DAY  # 2024-08-09T00:00Z: the 08-09 partition is not needed
    local = stage("", "binance", ["BTC-USDT"], end, cache=tmp_path, filesystem=remote)
    copied = sorted(p.relative_to(local).as_posix() for p in local.rglob("*.parquet"))
    assert copied == ["venue=binance/symbol=BTC-USDT/date=2024-08-08/part-0.parquet"]
    assert (local / copied[0]).read_bytes() == (SAMPLES / copied[0]).read_bytes()
    mtime = (local / copied[0]).stat().st_mtime_ns
    assert stage("", "binance", ["BTC-USDT"], end, cache=tmp_path, filesystem=remote) == local
    assert (local / copied[0]).stat().st_mtime_ns == mtime  # already there: not copied again
