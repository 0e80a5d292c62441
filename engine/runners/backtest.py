"""The backtest: Parquet replay + simulated venues + SimClock, wired to the shared engine."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.book import Book, BookSet
from engine.clock import SimClock
from engine.engine import Engine
from engine.errors import ConfigError, DataError
from engine.logs import flush_logs, setup_logging
from engine.portfolio import Portfolio
from engine.recorder import Recorder
from engine.risk import RiskEngine
from engine.runners.spec import RunSpec
from engine.timeline import Timeline
from sim import latency as lat
from sim.kernel import warm_up
from sim.queue import model_code
from sim.replay import ReplayDriver, ReplayStats
from sim.venue import RestingOrders, SimulatedVenue

DRAIN_NS = 5_000_000_000  # after the last row: let in-flight acks and fills arrive


@dataclass
class BacktestResult:
    run_dir: Path | None
    stats: ReplayStats
    summary: dict[str, Any]
    engine: Engine
    manifest: dict[str, Any] = field(default_factory=dict)


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parents[2],
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from engine import __version__

    return __version__


def _latency(sim_lat: Any, key: str, default_ns: int, seed: int, where: str) -> Any:
    cfg = sim_lat.get(key) if isinstance(sim_lat, dict) else None
    try:
        return lat.from_config(cfg, default_ns, seed)
    except (ValueError, TypeError) as exc:
        raise ConfigError(where, f"sim.latency.{key}: {exc}") from None


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
    """Run one backtest. ``source`` replaces the Parquet dataset (anything shaped like
    ``engine.marketdata.reader.ReplaySource``), e.g. hand-built rows in tests."""
    if run_dir is not None and log_dir is None:
        log_dir = run_dir / "logs"
    setup_logging(log_dir)
    if instruments_registry is None:
        from engine.marketdata.instruments import load_instruments

        instruments_registry = load_instruments(spec.instruments_path)
    registry = instruments_registry
    if source is None:
        from engine.marketdata.reader import open_dataset

        source = open_dataset(
            spec.data_root, venue=spec.venue, symbols=spec.symbols, start_ns=spec.start_ns, end_ns=spec.end_ns
        )
    if on_total is not None:
        on_total(source.rows)
    streams = list(source.streams)
    instruments = {}
    for venue, symbol in streams:
        inst = registry.get((venue, symbol))
        if inst is None:
            raise ConfigError(
                str(spec.instruments_path or "config/instruments.json"),
                f"no instrument {venue}:{symbol} (the data has it)",
            )
        scales = source.scales.get((venue, symbol))
        if scales is not None and tuple(scales) != (inst.price_scale, inst.size_scale):
            raise DataError(
                str(spec.data_root),
                f"{venue}:{symbol} stored with scales {scales}, instrument says {(inst.price_scale, inst.size_scale)}",
            )
        instruments[(venue, symbol)] = inst
    for st in spec.strategies:
        for sym in st.symbols:
            if (st.venue, sym) not in instruments:
                raise ConfigError(
                    st.path,
                    f"symbols: {st.venue}:{sym} is not in the data at {spec.data_root} "
                    f"(it holds {', '.join(f'{v}:{s}' for v, s in streams) or 'nothing'})",
                )

    clock = SimClock(source.start_ns or 0)
    timeline = Timeline()
    recorder = Recorder(run_dir)
    portfolio = Portfolio(spec.balances)
    risk = RiskEngine(spec.risk, portfolio, spec.strategy_risk)
    sim = spec.sim
    latency_cfg = sim.raw("latency", {})
    decision_ns = 0
    if isinstance(latency_cfg, dict) and "decision_us" in latency_cfg:
        decision_ns = int(float(latency_cfg["decision_us"]) * 1000)
    engine = Engine(
        clock,
        timeline,
        instruments,
        portfolio,
        risk,
        recorder,
        decision_latency_ns=decision_ns,
        mark_interval_ns=spec.mark_interval_ns,
    )

    books = BookSet(len(streams))
    book_of_stream = []
    for i, key in enumerate(streams):
        b = Book(instruments[key], books, i)
        engine.add_book(b)
        book_of_stream.append(b)
    resting = RestingOrders()
    seed = spec.seed
    feed = _latency(latency_cfg, "feed", 2_000_000, seed + 1, spec.path)
    order_l = _latency(latency_cfg, "order", 4_000_000, seed + 2, spec.path)
    resp = _latency(latency_cfg, "response", 2_000_000, seed + 3, spec.path)
    venue_cfgs = sim.raw("venues", {})
    for venue in sorted({v for v, _ in streams}):
        vc = venue_cfgs.get(venue, {}) if isinstance(venue_cfgs, dict) else {}
        syms = {s: instruments[(v, s)] for v, s in streams if v == venue}
        idx = {s: i for i, (v, s) in enumerate(streams) if v == venue}
        engine.add_venue(
            SimulatedVenue(
                venue,
                syms,
                idx,
                books,
                resting,
                timeline,
                clock,
                engine,
                feed,
                order_l,
                resp,
                maker_fee=vc.get("maker_fee"),
                taker_fee=vc.get("taker_fee"),
                supports_modify=bool(vc.get("supports_modify", False)),
            )
        )
    for st in spec.strategies:
        engine.add_strategy(st.build())
    try:
        qmodel = model_code(sim.str("queue_model", "prob"))
    except ValueError as exc:
        raise ConfigError(spec.path, f"sim.queue_model: {exc}") from None
    driver = ReplayDriver(
        engine,
        books,
        book_of_stream,
        timeline,
        clock,
        resting,
        [feed] * len(streams),
        qmodel,
        sim.number("queue_power", 2.0, positive=True),
        measure_wakes=measure_wakes,
    )

    def batches():
        started = False
        for cb in source:
            if not started and len(cb.ts_recv):
                clock.ts = int(cb.ts_recv[0])
                engine.start()
                started = True
            yield cb
        if not started:
            raise DataError(str(spec.data_root), "no market data rows in the selected range")

    warm_up()
    t0 = time.perf_counter()
    stats = driver.run(batches(), on_progress)
    driver.drain(getattr(driver, "last_ts", clock.ts) + DRAIN_NS)
    engine.stop()
    wall = time.perf_counter() - t0
    manifest = {
        "run_id": run_dir.name if run_dir is not None else "",
        "mode": "backtest",
        "latency_source": "simulated",
        "config_path": spec.path,
        "config": spec.raw,
        "config_sha256": hashlib.sha256(json.dumps(spec.raw, sort_keys=True).encode()).hexdigest(),
        "data": {
            "root": str(spec.data_root),
            "streams": [f"{v}:{s}" for v, s in streams],
            "files": [str(f) for f in source.files],
            "from_ns": source.start_ns,
            "to_ns": source.end_ns,
            "rows": stats.rows,
            "referenced_not_copied": True,
        },
        "code_version": code_version(),
        "seeds": {"run": seed, "feed_latency": seed + 1, "order_latency": seed + 2, "response_latency": seed + 3},
        "sim": {
            "queue_model": sim.str("queue_model", "prob"),
            "queue_power": sim.number("queue_power", 2.0),
            "latency": {
                "feed": feed.describe(),
                "order": order_l.describe(),
                "response": resp.describe(),
                "decision_ns": decision_ns,
            },
        },
        "strategies": [s.strategy_id for s in spec.strategies],
        "instruments": [
            {
                "venue": i.venue,
                "symbol": i.symbol,
                "venue_symbol": i.venue_symbol,
                "price_scale": i.price_scale,
                "size_scale": i.size_scale,
                "tick": i.tick,
                "lot": i.lot,
                "min_notional": i.min_notional,
                "maker_fee": i.maker_fee,
                "taker_fee": i.taker_fee,
            }
            for i in instruments.values()
        ],
    }
    summary = summarize(engine, stats, wall)
    manifest["summary"] = {k: v for k, v in summary.items() if k not in ("rows_per_s", "wall_s")}
    recorder.close(manifest)
    flush_logs()  # lines logged on a running loop (a backtest started from async code) wait for it
    if run_dir is not None:
        info = {
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_s": round(wall, 3),
            "rows_per_s": summary["rows_per_s"],
        }
        (run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return BacktestResult(run_dir, stats, summary, engine, manifest)


def summarize(engine: Engine, stats: ReplayStats, wall_s: float) -> dict[str, Any]:
    pf = engine.portfolio
    realized = unrealized = fees = 0.0
    for _sid, pos in pf.positions():
        realized += pos.realized_quote
        unrealized += pos.unrealized_quote
        fees += pos.fees_quote
    oms = engine.oms
    filled_orders = oms.filled_orders
    submitted = oms.submitted
    rejected = oms.rejected
    fills = engine.fill_count
    return {
        "net_pnl": realized + unrealized - fees,
        "realized_pnl": realized,
        "unrealized_pnl": unrealized,
        "fees": fees,
        "fills": fills,
        "orders_submitted": submitted,
        "orders_filled": filled_orders,
        "orders_rejected": rejected,
        "fill_ratio": filled_orders / submitted if submitted else 0.0,
        "max_drawdown": engine.max_drawdown,
        "rows": stats.rows,
        "book_updates": stats.book_wakes,
        "crossed_books": stats.crossed,
        "incidents": dict(sorted(engine.incident_counts.items())),
        "wall_s": wall_s,
        "rows_per_s": stats.rows / wall_s if wall_s > 0 else 0.0,
    }
