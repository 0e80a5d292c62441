"""The benchmarks (``bench/``) run on a clean checkout and print what their READMEs quote (tiny runs:
the figures themselves come from full runs, not from tests)."""

from __future__ import annotations

import re

import pytest
from test_binance_support import CAPTURE

from bench import ab as bench_ab
from bench import breakdown as bench_breakdown
from bench import hot_path as bench_hot_path
from engine import cli

DAY = CAPTURE / "btcusdt_20240808.gz"
P50 = re.compile(r"n=\s*(\d+)\s+p50=\s*([\d.]+) us")


def test_hot_path_bench_prints_percentiles(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--ticks", "300", "--warmup", "50", "--max-rounds", "1", "--entry", "ws", "--mode", "replace"]
    assert bench_hot_path.main([*args, "--data", str(DAY)]) == 0
    out = capsys.readouterr().out
    frame_line = next(line for line in out.splitlines() if "frame handed over -> order bytes written" in line)
    n, p50 = P50.search(frame_line).groups()  # type: ignore[union-attr]
    assert int(n) >= 300 and 0 < float(p50) < 100_000
    assert "p99=" in frame_line and "p99.9=" in frame_line and "reference loop" in out


def test_hot_path_bench_with_log_files_and_sparse_orders(capsys: pytest.CaptureFixture[str]) -> None:
    """``--logs`` runs with the component log files as paper and live trading do; ``--every``
    sends on some depth updates only, and only those are measured."""
    args = ["--ticks", "200", "--warmup", "20", "--max-rounds", "1", "--entry", "ws", "--mode", "place"]
    assert bench_hot_path.main([*args, "--logs", "--every", "2", "--data", str(DAY)]) == 0
    out = capsys.readouterr().out
    assert "order log=on, log files=on" in out and "python: " in out
    assert "new IOC order per 2 depth updates" in out
    rounds = re.findall(r"'orders': (\d+),.*'sync': \((\d+),", out)
    assert rounds and all(abs(2 * int(orders) - int(applied)) <= 2 for orders, applied in rounds)
    frame_line = next(line for line in out.splitlines() if "frame handed over -> order bytes written" in line)
    n, _ = P50.search(frame_line).groups()  # type: ignore[union-attr]
    assert int(n) >= 200


def test_breakdown_times_spans_and_counts_work(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_breakdown.main(["--ticks", "200", "--spans", "--data", str(DAY)]) == 0
    out = capsys.readouterr().out
    total = re.search(r"n=(\d+) p50=([\d.]+) us", out)
    assert total is not None and int(total.group(1)) == 200 and float(total.group(2)) > 0
    spans = re.findall(r"->\s+(.+?)\s+p50\s+([-\d.]+) us", out)
    names = {name.strip() for name, _ in spans}
    assert {"risk done", "render + sign done", "written"} <= names
    assert bench_breakdown.main(["--count", "--data", str(DAY)]) == 0
    counted = capsys.readouterr().out
    per_tick = re.search(r"per tick: (\d+) bytecodes, (\d+) Python calls", counted)
    assert per_tick is not None and int(per_tick.group(1)) > 500 and int(per_tick.group(2)) > 10
    assert "risk.py:check" in counted


def test_ab_alternates_the_two_versions_and_reports_the_paired_difference(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_ab.main([".", ".", "--pairs", "2", "--", "--ticks", "100", "--data", str(DAY)]) == 0
    out = capsys.readouterr().out
    order = re.findall(r"pair (\d) +(base|other) ", out)
    assert order == [("1", "base"), ("1", "other"), ("2", "other"), ("2", "base")]
    assert re.search(r"paired difference \(other - base\) median [+-][\d.]+ us", out)


def test_ab_checks_out_a_revision_and_removes_it() -> None:
    with bench_ab.checkout("HEAD") as tree:
        assert (tree / "engine" / "oms.py").is_file()
        assert tree != bench_ab.REPO
    assert not tree.exists()
    with (
        pytest.raises(bench_ab.BenchError, match="cannot check out 'no-such-revision'"),
        bench_ab.checkout("no-such-revision"),
    ):
        pass
    with pytest.raises(bench_ab.BenchError, match="no 'frame -> order bytes written' line"):
        bench_ab.parse("Traceback (most recent call last): ...", "frame -> order bytes written")


def test_ab_runs_revisions_from_before_the_benchmarks_moved(tmp_path) -> None:
    """Revisions before ``bench/`` kept the benchmarks in ``venues/binance/bench_*.py``."""
    old = tmp_path / "old" / "venues" / "binance"
    old.mkdir(parents=True)
    (old / "bench_breakdown.py").write_text("")
    assert bench_ab.module(tmp_path / "old", "breakdown") == "venues.binance.bench_breakdown"
    assert bench_ab.module(bench_ab.REPO, "breakdown") == "bench.breakdown"
    assert bench_ab.module(bench_ab.REPO, "hot_path") == "bench.hot_path"


def test_ab_compares_the_line_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    """``--line`` picks which result line the two versions are compared on, e.g. the end of the
    read callback (when uvloop actually sends) instead of the write."""
    out = (
        "  frame handed over -> order bytes written n=10  p50=   50.0 us  p99=  90.0 us  p99.9= 99.0 us\n"
        "  frame handed over -> its read callback ends n=10  p50=   61.5 us  p99=  120.0 us  p99.9= 130.0 us\n"
    )
    assert bench_ab.parse(out, "frame handed over -> order bytes written") == (50.0, 90.0)
    assert bench_ab.parse(out, "its read callback ends") == (61.5, 120.0)
    with pytest.raises(SystemExit):
        bench_ab.main(["--help"])
    assert "--line" in capsys.readouterr().out


def test_hot_path_bench_with_the_path_warmer(capsys: pytest.CaptureFixture[str]) -> None:
    """``--warm-us`` runs ``engine.warm.PathWarmer`` beside the measured path: its passes are
    counted and the socket-read figure is printed again with the wait a pass may have caused."""
    args = ["--ticks", "200", "--warmup", "20", "--max-rounds", "1", "--entry", "ws", "--mode", "place"]
    assert bench_hot_path.main([*args, "--warm-us", "100", "--data", str(DAY)]) == 0
    out = capsys.readouterr().out
    assert "path warmer=100 us (spin)" in out
    passes = re.search(r"'warm_passes': (\d+), 'warm_pass_us': \(([\d.]+), ([\d.]+)\)", out)
    assert passes is not None and int(passes.group(1)) > 0 and 0 < float(passes.group(2)) <= float(passes.group(3))
    assert "+ the warm pass it may have waited for" in out
    frame_line = next(line for line in out.splitlines() if "frame handed over -> order bytes written" in line)
    n, _ = P50.search(frame_line).groups()  # type: ignore[union-attr]
    assert int(n) >= 200


def test_breakdown_with_gaps_between_ticks_and_warm_passes_in_them(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--ticks", "100", "--gap-us", "2000", "--warm-us", "200", "--data", str(DAY)]
    assert bench_breakdown.main(args) == 0
    out = capsys.readouterr().out
    assert "2000 us between ticks (a warm pass every 200 us of it)" in out
    total = re.search(r"n=(\d+) p50=([\d.]+) us", out)
    assert total is not None and int(total.group(1)) == 100 and float(total.group(2)) > 0
    assert bench_breakdown.main(["--gap-us", "-1", "--data", str(DAY)]) == 2


def test_hft_bench_runs_the_checkouts_benchmark_and_says_so_without_one(
    tmp_path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hft bench`` passes its arguments to ``bench.backtest``; an install without ``bench/``
    exits 2 with one line."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--help"])
    assert exc.value.code == 0 and "usage: hft bench" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--mode", "nonsense"])
    assert exc.value.code == 2 and "--mode" in capsys.readouterr().err
    monkeypatch.setattr(cli, "CHECKOUT", tmp_path)
    assert cli.main(["bench", "--mode", "book"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "benchmarks ship with it" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["data", "--no-such-option"])  # other commands still refuse what they do not know
    assert exc.value.code == 2
