"""Hand-built market data and run specs for engine tests (goes through the real backtest runner)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import Section
from engine.model import Instrument
from engine.risk import RiskLimits
from engine.runners.backtest import BacktestResult, run_backtest
from engine.runners.spec import RunSpec, StrategySpec

VENUE = "testex"
SYMBOL = "BTC-USDT"
# price scale 1 (tick 1 = 0.1), size scale 3 (lot 1 = 0.001): small numbers, easy arithmetic
INST = Instrument(
    VENUE,
    SYMBOL,
    "BTCUSDT",
    price_scale=1,
    size_scale=3,
    tick=1,
    lot=1,
    min_notional=0.0,
    maker_fee=0.0001,
    taker_fee=0.0005,
    kind="perp",
)
MS = 1_000_000


@dataclass
class CB:
    ts_event: np.ndarray
    ts_recv: np.ndarray
    kind: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    sequence: np.ndarray
    seq_first: np.ndarray
    batch_end: np.ndarray
    stream: np.ndarray


class Rows:
    """Market data for one stream; prices/sizes in fixed-point units of ``INST``."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.seq = 0

    def _add(self, ts, kind, side, price, size, end, event=None) -> None:
        self.seq += 1
        self.rows.append((ts if event is None else event, ts, kind, side, price, size, self.seq, self.seq, end))

    def snapshot(
        self, ts: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]], event: int | None = None
    ) -> Rows:
        """``ts`` is when we received it (``ts_recv``); ``event`` the venue's time (default: ``ts``)."""
        levels = [(1, p, q) for p, q in bids] + [(-1, p, q) for p, q in asks]
        for i, (sd, p, q) in enumerate(levels):
            self._add(ts, 0, sd, p, q, i == len(levels) - 1, event)
        return self

    def delta(self, ts: int, changes: list[tuple[int, int, int]], event: int | None = None) -> Rows:
        """changes: (side +1/-1, price, absolute size)."""
        for i, (sd, p, q) in enumerate(changes):
            self._add(ts, 1, sd, p, q, i == len(changes) - 1, event)
        return self

    def trade(self, ts: int, aggressor: int, price: int, size: int, event: int | None = None) -> Rows:
        self._add(ts, 2, aggressor, price, size, True, event)
        return self

    def batch(self) -> CB:
        a = np.array(self.rows, dtype=np.int64)
        return CB(
            a[:, 0].copy(),
            a[:, 1].copy(),
            a[:, 2].astype(np.int8),
            a[:, 3].astype(np.int8),
            a[:, 4].copy(),
            a[:, 5].copy(),
            a[:, 6].copy(),
            a[:, 7].copy(),
            a[:, 8].astype(bool),
            np.zeros(len(a), np.int32),
        )


class MemSource:
    def __init__(self, rows: Rows, venue: str = VENUE) -> None:
        self.cb = rows.batch()
        self.streams = [(venue, SYMBOL)]
        self.scales = {(venue, SYMBOL): (INST.price_scale, INST.size_scale)}
        self.rows = len(self.cb.ts_recv)
        self.start_ns = int(self.cb.ts_recv[0])
        self.end_ns = int(self.cb.ts_recv[-1]) + 1
        self.files: list[str] = []

    def __iter__(self):
        yield self.cb


def make_spec(
    strategy_cls: type,
    params: dict[str, Any] | None = None,
    *,
    latency_ms=(1, 2, 1),
    queue_model: str = "risk_averse",
    risk: dict | None = None,
    balances: dict | None = None,
    strategy_id: str = "s1",
    mark_ms: int = 0,
    venue: str = VENUE,
    latency: dict | None = None,
) -> RunSpec:
    """``latency_ms``: constant (feed, order, response) in ms; ``latency`` replaces the whole
    ``sim.latency`` section."""
    feed, order, resp = latency_ms
    sim = {
        "queue_model": queue_model,
        "latency": latency
        or {
            "feed": {"type": "constant", "ms": feed},
            "order": {"type": "constant", "ms": order},
            "response": {"type": "constant", "ms": resp},
        },
    }
    return RunSpec(
        path="<test>",
        name="t",
        seed=1,
        data_root=Path("."),
        venue=venue,
        symbols=[SYMBOL],
        start_ns=None,
        end_ns=None,
        instruments_path=None,
        balances=balances or {venue: {"USDT": 1_000_000.0}},
        risk=RiskLimits.from_dict(risk or {}, "<test>"),
        strategy_risk={},
        strategies=[StrategySpec(strategy_id, strategy_cls, venue, [SYMBOL], params or {}, "<test>")],
        sim=Section(sim, "<test>", "sim"),
        runs_root=Path("runs"),
        mark_interval_ns=mark_ms * MS,
        raw={},
    )


def run(
    rows: Rows, strategy_cls: type, params: dict | None = None, run_dir: Path | None = None, **kw: Any
) -> BacktestResult:
    """Backtest ``rows`` on venue ``kw["venue"]`` (default ``testex``, which has the generic profile;
    a registered venue name such as ``binance`` brings that venue's rules)."""
    venue = kw.get("venue", VENUE)
    spec = make_spec(strategy_cls, params, **kw)
    inst = dataclasses.replace(INST, venue=venue)
    return run_backtest(spec, run_dir, source=MemSource(rows, venue), instruments_registry={(venue, SYMBOL): inst})
