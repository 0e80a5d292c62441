"""End to end on the shipped real sample: concrete outcomes, determinism, and operator errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from engine.cli import main as hft_main
from engine.runners.backtest import run_backtest
from engine.runners.spec import load_run_spec

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "backtests" / "market_maker_sample.json"
TAKER = REPO / "config" / "backtests" / "taker_sample.json"
SAMPLE = REPO / "data" / "samples" / "venue=binance-futures"


def _digest(run_dir: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.iterdir())
        if p.is_file() and p.name != "run_info.json"
    }


@pytest.fixture(scope="module")
def mm_run(tmp_path_factory):
    if not SAMPLE.exists():
        pytest.fail(f"shipped sample missing: {SAMPLE}")
    out = tmp_path_factory.mktemp("mm") / "run"
    res = run_backtest(load_run_spec(CONFIG), out)
    return res, out


def test_market_maker_on_real_binance_sample_has_concrete_outcomes(mm_run):
    res, out = mm_run
    s = res.summary
    assert s["rows"] > 460_000  # 443,521 level changes + 21,313 trades + the 1000x2 snapshot
    assert s["crossed_books"] == 0  # the real USD-M book never crosses
    assert s["orders_submitted"] > 200 and s["fills"] > 10
    assert 0.0 < s["fill_ratio"] < 1.0
    assert s["net_pnl"] == pytest.approx(s["realized_pnl"] + s["unrealized_pnl"] - s["fees"])
    con = duckdb.connect()
    fills = f"read_parquet('{out}/fills.parquet')"
    market = f"read_parquet('{out}/market.parquet')"
    # every maker fill is at its own order's limit price; fees are the configured maker rate
    bad = con.execute(f"select count(*) from {fills} where liquidity='maker' and price <> order_price").fetchone()[0]
    assert bad == 0
    fee_err = con.execute(f"select max(abs(fee - notional*0.0002)) from {fills} where liquidity='maker'").fetchone()[0]
    assert fee_err < 1e-9
    # fills happen at prices the market actually traded around
    lo, hi = con.execute(f"select min(bid), max(ask) from {market}").fetchone()
    assert con.execute(f"select count(*) from {fills} where price < {lo} or price > {hi}").fetchone()[0] == 0
    # the position the portfolio reports equals the signed sum of fills
    net = con.execute(f"select sum(case when side='buy' then qty else -qty end) from {fills}").fetchone()[0]
    final = con.execute(
        f"select position from read_parquet('{out}/positions.parquet') where reason='final'"
    ).fetchone()[0]
    assert final == pytest.approx(net, abs=1e-9)
    # never a fill before its order's ack could have arrived
    early = con.execute(f"select count(*) from {fills} where ts < ts_sent").fetchone()[0]
    assert early == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "backtest" and manifest["latency_source"] == "simulated"
    assert manifest["data"]["referenced_not_copied"] is True
    # a backtest's event log holds every order; the text line per order is off unless asked for
    assert "submit order" not in (out / "logs" / "orders.log").read_text()


def test_order_lines_in_the_component_log_when_the_config_asks(tmp_path):
    cfg = json.loads(TAKER.read_text())
    cfg["output"]["log_orders"] = True
    for key in ("instruments",):
        cfg[key] = str(REPO / cfg[key])
    cfg["data"]["root"] = str(REPO / cfg["data"]["root"])
    cfg["strategies"] = [str(REPO / p) for p in cfg["strategies"]]
    path = tmp_path / "taker.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "run"
    res = run_backtest(load_run_spec(path), out)
    assert (out / "logs" / "orders.log").read_text().count("submit order") == res.summary["orders_submitted"] > 0


def test_backtest_is_byte_identical_when_run_twice(mm_run, tmp_path):
    _, first = mm_run
    second = tmp_path / "run"
    run_backtest(load_run_spec(CONFIG), second)
    assert _digest(first) == _digest(second)


def test_taker_strategy_exercises_the_aggressive_path(tmp_path):
    res = run_backtest(load_run_spec(TAKER), tmp_path / "t")
    con = duckdb.connect()
    mix = dict(
        con.execute(f"select liquidity, count(*) from read_parquet('{tmp_path}/t/fills.parquet') group by 1").fetchall()
    )
    assert mix.get("taker", 0) > 0 and mix.get("maker", 0) == 0
    assert res.summary["fees"] > 0


def test_cli_backtest_prints_summary_and_writes_the_run(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "backtest",
            str(CONFIG),
            "--out",
            str(out),
            "--no-progress",
            "--from",
            "2024-08-08T23:56:00Z",
            "--to",
            "2024-08-08T23:57:00Z",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for word in ("net P&L", "fees", "fills (trades)", "fill ratio", "max drawdown", "rows/s"):
        assert word in proc.stdout
    assert (out / "manifest.json").exists() and (out / "fills.parquet").exists()


def test_bad_config_is_one_clear_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "data": {"root": "data/samples"}, "strategies": 5}')
    assert hft_main(["backtest", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f"error: Failed to load configuration from {bad}: strategies: must be a non-empty list of "
        "strategy config paths or objects"
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": ')
    assert hft_main(["backtest", str(broken), "--no-progress"]) == 2
    assert "invalid JSON at line 1" in capsys.readouterr().err
    assert hft_main(["backtest", str(tmp_path / "missing.json"), "--no-progress"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_bad_strategy_param_names_the_field(tmp_path, capsys):
    strat = json.loads((REPO / "config/strategies/market_maker.json").read_text())
    strat["params"]["order_size"] = -1
    cfg = json.loads(CONFIG.read_text())
    cfg["strategies"] = [strat]
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    assert hft_main(["backtest", str(p), "--no-progress", "--out", str(tmp_path / "o")]) == 2
    assert "strategies[0].params.order_size: must be a number > 0, got -1" in capsys.readouterr().err


def test_missing_and_corrupt_data_are_reported_with_the_path(tmp_path, capsys):
    assert (
        hft_main(
            [
                "backtest",
                str(CONFIG),
                "--no-progress",
                "--data",
                str(tmp_path / "nowhere"),
                "--out",
                str(tmp_path / "o1"),
            ]
        )
        == 2
    )
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    root = tmp_path / "data"
    shutil.copytree(REPO / "data" / "samples" / "venue=binance-futures", root / "venue=binance-futures")
    part = next((root / "venue=binance-futures").rglob("*.parquet"))
    part.write_bytes(part.read_bytes()[: len(part.read_bytes()) // 2])
    assert hft_main(["backtest", str(CONFIG), "--no-progress", "--data", str(root), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert part.name in err and err.count("\n") == 1


def test_a_window_starts_from_the_book_as_it_stood_at_from(tmp_path):
    """The shipped sample's only snapshot is at its start: a run from 23:57 rebuilds the book from
    it (no strategy sees that history) and trades from 23:57 on."""
    spec = load_run_spec(CONFIG, {"from": "2024-08-08T23:57:00Z"})
    res = run_backtest(spec, tmp_path / "w")
    s = res.summary
    assert s["orders_submitted"] > 50 and s["fills"] > 0
    start = spec.start_ns
    con = duckdb.connect()
    first_market = con.execute(f"select min(ts) from read_parquet('{tmp_path}/w/market.parquet')").fetchone()[0]
    first_order = con.execute(f"select min(ts) from read_parquet('{tmp_path}/w/orders.parquet')").fetchone()[0]
    assert first_market >= start and first_order >= start  # nothing of the history reached a strategy
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["data"]["book_history_rows"] > 100_000 and "warnings" not in manifest
    # every book shown in the window is the book a full replay showed at that same update: the
    # quote-at-touch strategy sees every message, so both runs log a market row for each
    qat = REPO / "config" / "backtests" / "quote_at_touch_sample.json"
    run_backtest(load_run_spec(qat, {"from": "2024-08-08T23:57:00Z"}), tmp_path / "qw")
    run_backtest(load_run_spec(qat), tmp_path / "qf")
    q = "select data_seq, bid, ask, bid_size, ask_size from read_parquet('{}/market.parquet') where ts >= {}"
    q += " order by seq"
    window = con.execute(q.format(tmp_path / "qw", start)).fetchall()
    full = con.execute(q.format(tmp_path / "qf", start)).fetchall()
    assert len(window) > 1000 and window == full[: len(window)]


def test_a_window_with_no_book_says_so(tmp_path):
    """A window that starts before the data's first snapshot and ends before it: no strategy can
    see a market, and the run says so instead of reporting zero trades as if nothing happened."""
    spec = load_run_spec(CONFIG, {"from": "2024-08-08T23:00:00Z", "to": "2024-08-08T23:54:15Z"})
    from engine.errors import DataError

    with pytest.raises(DataError, match="no market data rows in the selected range"):
        run_backtest(spec, tmp_path / "w")


def test_data_without_a_snapshot_gives_a_run_that_says_no_book_was_valid(tmp_path):
    from engine.strategy import Strategy

    from simkit import MS, Rows, run

    rows = Rows().delta(0, [(1, 1000, 5)]).delta(10 * MS, [(-1, 1001, 5)]).trade(20 * MS, 1, 1001, 1)
    res = run(rows, Strategy, {}, run_dir=tmp_path / "r")
    assert res.summary["fills"] == 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    root = res.node.spec.data_root
    assert manifest["warnings"] == [
        f"no valid order book in the window of {root}: the data has no snapshot at or before its start"
    ]
    assert "no valid order book" in (tmp_path / "r" / "logs" / "system.log").read_text()
