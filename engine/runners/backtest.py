"""The backtest: a node of Parquet replay and simulated venues on their own clock (``node``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.engine import Engine
from engine.errors import DataError
from engine.logs import flush_logs, get_logger, setup_logging
from engine.marketdata.prefetch import prefetch
from engine.runners.node import Node, build_node, code_version, summarize, wall_clock_info
from engine.runners.spec import RunSpec
from sim.kernel import ST_VALID
from sim.kernel_state import warm_up
from sim.replay import ReplayStats

_log = get_logger("system")

__all__ = ["DRAIN_NS", "BacktestResult", "code_version", "open_backtest", "run_backtest", "summarize"]

DRAIN_NS = 5_000_000_000  # after the last row: let in-flight acks and fills arrive


@dataclass
class BacktestResult:
    run_dir: Path | None
    stats: ReplayStats
    summary: dict[str, Any]
    engine: Engine
    manifest: dict[str, Any] = field(default_factory=dict)
    node: Node | None = None


def open_backtest(
    spec: RunSpec,
    run_dir: Path | None,
    measure_wakes: bool = False,
    source: Any = None,
    instruments_registry: dict | None = None,
    strategies: list | None = None,
    log_orders: bool | None = None,
) -> Node:
    """The backtest node for ``spec`` (not run yet). ``source`` replaces the Parquet dataset
    (anything shaped like ``engine.marketdata.reader.ReplaySource``), e.g. hand-built rows."""
    if instruments_registry is None:
        from engine.marketdata.instruments import load_instruments

        instruments_registry = load_instruments(spec.instruments_path)
    if source is None:
        from engine.marketdata.reader import open_dataset

        source = open_dataset(
            spec.data_root,
            venue=spec.venue,
            symbols=spec.symbols,
            start_ns=spec.start_ns,
            end_ns=spec.end_ns,
            warmup=True,  # the books at --from are rebuilt from the last snapshot before it
        )
    return build_node(
        spec,
        "backtest",
        run_dir,
        instruments=instruments_registry,
        source=source,
        strategies=strategies,
        measure_wakes=measure_wakes,
        log_orders=log_orders,
    )


def run_node(
    node: Node, on_progress: Callable[[int], None] | None = None, on_total: Callable[[int], None] | None = None
) -> BacktestResult:
    """Replay the node's data to the end, drain what is in flight, close the event log."""
    source = node.source
    engine = node.engine
    driver = node.replay
    assert driver is not None and source is not None
    if on_total is not None:
        on_total(source.rows)

    started = False

    def on_window(ts: int) -> None:
        nonlocal started
        started = True
        engine.start()

    warm_up()  # compiled code is loaded (or compiled, cold) before the clock starts
    t0 = time.perf_counter()
    warmup_until = getattr(source, "warmup_until", None)
    stats = driver.run(prefetch(source), on_progress, warmup_until, on_window)
    if not started:
        raise DataError(str(node.spec.data_root), "no market data rows in the selected range")
    driver.drain(driver.last_ts + DRAIN_NS)
    engine.stop()
    wall = time.perf_counter() - t0
    summary = summarize(engine, stats, wall)
    run_dir = node.run_dir
    node.extra_manifest["data"] = {
        "root": str(node.spec.data_root),
        "streams": [f"{v}:{s}" for v, s in node.streams],
        "files": [str(f) for f in source.files],
        "from_ns": source.start_ns,
        "to_ns": source.end_ns,
        "rows": stats.rows,
        "referenced_not_copied": True,
    }
    if warmup_until is not None:
        node.extra_manifest["data"]["book_history_rows"] = stats.warmup_rows
    if engine.book_events == 0 and not driver.st[:, ST_VALID].any():
        # nothing was wrong with the run, yet no strategy ever saw a market: the operator must hear it
        why = (
            f"no valid order book in the window of {node.spec.data_root}: the data has no snapshot at or "
            "before its start" + (" (--from)" if node.spec.start_ns is not None else "")
        )
        _log.warning(why)
        node.extra_manifest["warnings"] = [why]
    manifest = node.manifest(summary)
    node.recorder.close(manifest)
    flush_logs()  # lines logged on a running loop (a backtest started from async code) wait for it
    if run_dir is not None:
        info = wall_clock_info(wall, rows_per_s=summary["rows_per_s"])
        (run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return BacktestResult(run_dir, stats, summary, engine, manifest, node)


def run_backtest(
    spec: RunSpec,
    run_dir: Path | None,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    measure_wakes: bool = False,
    log_dir: Path | None = None,
    source: Any = None,
    instruments_registry: dict | None = None,
) -> BacktestResult:
    """Run one backtest (``open_backtest`` then ``run_node``)."""
    if run_dir is not None and log_dir is None:
        log_dir = run_dir / "logs"
    setup_logging(log_dir, buffered=True)
    node = open_backtest(spec, run_dir, measure_wakes, source, instruments_registry)
    return run_node(node, on_progress, on_total)
