"""``run_compiled``: a backtest through the compiled loop (``sim.compiled.loop``).

Setup reads the run spec through the same node builder as the Python path (``open_backtest``):
the same config checks, instruments, latency and queue models, venue profile and strategy
params. It refuses, with one line naming what it cannot run, any spec outside what the loop
models. The loop itself was compiled, or loaded from numba's cache, when ``sim.compiled.loop``
was imported. Then the data is read into arrays, the loop runs (timed: ``replay_s``), and the
event log is written with the Python path's schemas.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.book import BookSet
from engine.compiled_strategy import A_COLS, MAX_ACTIONS, O_COLS
from engine.errors import HftError
from engine.eventlog_schema import MANIFEST
from engine.recorder import write_json_atomic
from engine.runners.compiled_twins import twin_of
from engine.runners.node import Node, wall_clock_info
from engine.runners.spec import RunSpec
from engine.venue import profile as vp
from sim.compiled import eventbuf as E
from sim.compiled import loop as L
from sim.compiled.rows import prepare
from sim.latency import ConstantLatency
from sim.matching import F_COLS, R_COLS
from sim.venue_time import ConstantVenueTime

DRAIN_NS = 5_000_000_000  # engine.runners.backtest.DRAIN_NS: in-flight answers still arrive
_REASONS = (None, vp.LOT_SIZE, vp.PRICE_FILTER, vp.NOTIONAL, vp.POST_ONLY_WOULD_TAKE, vp.UNKNOWN_ORDER)
_WHY = {
    L.W_CROSSED: "a crossed book",
    L.W_STATE: "an order report the order state machine refuses",
}


class CompiledPathError(HftError):
    """The compiled path cannot run this spec (or met something it does not model)."""


def _refuse(spec: RunSpec, what: str) -> CompiledPathError:
    return CompiledPathError(f"{spec.path}: the compiled engine cannot run this backtest: {what}")


def _check_risk(spec: RunSpec) -> None:
    r = spec.risk
    if not r.trading_enabled:
        raise _refuse(spec, "risk.trading_enabled is false")
    for name in (
        "max_order_size_usd",
        "max_position_usd",
        "max_global_position_usd",
        "daily_loss_limit_usd",
        "max_orders_per_second",
        "price_band_pct",
    ):
        if getattr(r, name):
            raise _refuse(spec, f"risk.{name} is set (it runs no risk limits; use --engine python)")
    if r.check_balance:
        raise _refuse(spec, "risk.check_balance is true (it keeps no balances; set it false)")
    if spec.strategy_risk:
        raise _refuse(spec, "a strategy has risk_limits of its own")


class _Setup:
    """Everything the loop needs, checked."""

    def __init__(self, spec: RunSpec, node: Node) -> None:
        self.spec = spec
        self.node = node
        if len(spec.strategies) != 1:
            raise _refuse(spec, f"it runs one strategy, the config has {len(spec.strategies)}")
        sspec = spec.strategies[0]
        twin = twin_of(sspec.cls)
        if twin is None:
            raise _refuse(
                spec,
                f"strategy {sspec.strategy_id} ({sspec.cls.__module__}:{sspec.cls.__qualname__}) has no compiled twin",
            )
        self.twin = twin
        self.sspec = sspec
        if len(node.streams) != 1 or len(sspec.symbols) != 1 or node.streams[0] != (sspec.venue, sspec.symbols[0]):
            have = ", ".join(f"{v}:{s}" for v, s in node.streams)
            raise _refuse(spec, f"it runs one symbol, the strategy's, alone in the data (the data holds {have})")
        _check_risk(spec)
        src = node.source
        if getattr(src, "warmup_until", None) is not None:
            raise _refuse(spec, "data.from needs a book warm-up, which it does not do yet")
        sim = node.sim
        assert sim is not None
        for name, model in (("order", sim.order_latency), ("response", sim.response_latency)):
            if not isinstance(model, ConstantLatency):
                raise _refuse(spec, f"sim.latency.{name} is {model.describe()['type']!r}; it supports 'constant' only")
        if not isinstance(sim.venue_time, ConstantVenueTime):
            kind = getattr(sim.venue_time, "kind", type(sim.venue_time).__name__)
            raise _refuse(spec, f"sim.latency.feed is {kind!r}; it supports 'constant' only")
        key = node.streams[0]
        inst = node.instruments[key]
        if inst.inverse:
            raise _refuse(spec, f"{key[0]}:{key[1]} is an inverse contract; it books linear P&L only")
        self.inst = inst
        venue = sim.venues[key[0]]
        try:
            self.sparams = twin.params(sspec.params, inst)
        except ValueError as exc:
            raise _refuse(spec, f"{sspec.path}: {exc}") from None
        profile = venue.profile
        self.reason_texts = [("", 0)] + [(profile.error(r).text, profile.error(r).code) for r in _REASONS[1:]]
        rules = profile.client_ids
        self.prefix = rules.prefix(sspec.strategy_id, "")
        self.rules = rules
        maker = venue.maker_fee if venue.maker_fee is not None else inst.maker_fee
        taker = venue.taker_fee if venue.taker_fee is not None else inst.taker_fee
        feed_ns = sim.venue_time.latency_ns
        if feed_ns <= 0:
            raise _refuse(spec, "sim.latency.feed is 0 (the venue on our book); it needs a feed latency > 0")
        cfg = np.zeros(L.C_LEN, np.int64)
        cfg[L.C_ORDER_LAT] = sim.order_latency.ns
        cfg[L.C_RESP_LAT] = sim.response_latency.ns
        cfg[L.C_MARK_NS] = spec.mark_interval_ns
        cfg[L.C_DRAIN_NS] = DRAIN_NS
        cfg[L.C_FEED_NS] = feed_ns
        cfg[L.C_DECISION_NS] = sim.decision_ns
        cfg[L.C_TICK] = inst.tick
        cfg[L.C_LOT] = inst.lot
        cfg[L.C_MIN_QTY] = inst.min_qty
        cfg[L.C_MAX_PRICE] = inst.max_price
        cfg[L.C_MIN_PRICE] = inst.min_price
        cfg[L.C_POST_ONLY_REJECTS] = 1 if profile.post_only_rejects else 0
        cfg[L.C_PDIV] = 10**inst.price_scale
        cfg[L.C_SDIV] = 10**inst.size_scale
        cfg[L.C_WAKE_BOOK], trades = twin.wakes(sspec.params)
        cfg[L.C_WAKE_TRADE] = 1 if trades else 0
        cfg[L.C_QMODEL] = sim.queue_model
        self.cfg = cfg
        cfgf = np.zeros(L.CF_LEN, np.float64)
        cfgf[L.CF_MAKER] = maker
        cfgf[L.CF_TAKER] = taker
        cfgf[L.CF_MIN_NOTIONAL] = inst.min_notional
        cfgf[L.CF_CS] = inst.contract_size
        cfgf[L.CF_POWER] = sim.queue_power
        self.cfgf = cfgf


ROW_COLUMNS = ("ts_recv", "kind", "side", "price", "size", "batch_end", "ts_event", "sequence")
_ROW_DTYPES = (np.int64, np.int8, np.int8, np.int64, np.int64, np.bool_, np.int64, np.int64)


def row_batches(spec: RunSpec, source: Any, window_rows: int | None = None) -> Iterator[tuple[np.ndarray, ...]]:
    """The source's rows a batch at a time, one array per ``ROW_COLUMNS`` (at most ``window_rows``
    rows each when given). Refuses a book row the Python engine would report as an incident (a
    book reset, a level with a price <= 0 or a size < 0): the compiled path does not model them."""
    seen = 0
    for cb in source:
        m = len(cb.ts_recv)
        if m == 0:
            continue
        # writable, as the loop's signature types them (the reader's arrays may be Arrow's, read-only)
        cols = tuple(
            np.require(getattr(cb, name), dt, ("C", "W")) for name, dt in zip(ROW_COLUMNS, _ROW_DTYPES, strict=True)
        )
        _, kind, _, price, size, *_ = cols
        bad = np.flatnonzero((kind <= 1) & ((price <= 0) | (size < 0)))
        if len(bad):
            i = int(bad[0])
            raise _refuse(
                spec,
                f"row {seen + i} of the data is a book reset or a bad level (price={int(price[i])} "
                f"size={int(size[i])}), an incident it does not model; use --engine python",
            )
        step = window_rows or m
        for i in range(0, m, step):
            yield tuple(c[i : i + step] for c in cols)
        seen += m


class _Arrays:
    """The loop's state arrays (grown by Python between calls)."""

    def __init__(
        self, n_orders: int = 4096, market_rows: int = 4096, rows: int = 16_384, rests: int = 64, events: int = 1024
    ) -> None:
        self.rests = np.zeros((rests, R_COLS), np.int64)
        self.slot_h = np.full(rests, -1, np.int64)
        self.free = np.zeros(rests, np.int64)
        self.fills = np.zeros((1024, F_COLS), np.int64)
        self.orders = np.zeros((n_orders, L.OR_COLS), np.int64)
        self.ordf = np.zeros(n_orders, np.float64)
        self.open_h = np.zeros(n_orders, np.int64)
        self.view = np.zeros((n_orders, O_COLS), np.int64)
        self.heap = np.zeros((events, L.H_COLS), np.int64)
        self.heapf = np.zeros(events, np.float64)
        self.state = np.zeros(L.S_LEN, np.int64)
        self.statef = np.zeros(L.SF_LEN, np.float64)
        self.statef[L.SF_MARK] = np.nan
        self.actions = np.zeros((MAX_ACTIONS, A_COLS), np.int64)
        self.buf = E.Buffers.make(rows=rows, market_rows=market_rows)

    def grow(self) -> None:
        """Double whatever lacks the room ``loop._room`` asks for."""
        st = self.state
        room = L.ROOM
        if self.orders.shape[0] - st[L.S_NORD] < room:
            n = self.orders.shape[0] * 2
            self.orders = _grown(self.orders, n)
            self.ordf = _grown(self.ordf, n)
            self.open_h = _grown(self.open_h, n)
            self.view = _grown(self.view, n)
        if self.rests.shape[0] - st[L.S_NREST] < room:
            n = self.rests.shape[0] * 2
            self.rests = _grown(self.rests, n)
            self.slot_h = _grown(self.slot_h, n, -1)
            self.free = _grown(self.free, n)
        while self.heap.shape[0] - st[L.S_HEAP] < self.rests.shape[0] + 4 * room + 1:
            n = self.heap.shape[0] * 2
            self.heap = _grown(self.heap, n)
            self.heapf = _grown(self.heapf, n)
        b = self.buf
        for name, count, need in (
            ("oi", L.S_N_ORDERS_LOG, 4 * room),
            ("fi", L.S_N_FILLS_LOG, room),
            ("pi", L.S_N_POS_LOG, room),
            ("ri", L.S_N_RISK_LOG, room),
            ("mi", L.S_N_MARKET_LOG, room),
        ):
            if getattr(b, name).shape[0] - st[count] < need:
                b.grow(name)
                twin_f = {"oi": "of", "fi": "ff", "pi": "pf"}.get(name)
                if twin_f is not None:
                    b.grow(twin_f)


def _grown(a: np.ndarray, n: int, fill: int = 0) -> np.ndarray:
    b = np.full((n, *a.shape[1:]), fill, a.dtype)
    b[: a.shape[0]] = a
    return b


@dataclass
class _Replay:
    """What a replay leaves: the loop's arrays, the strategy's state, the rows and the seconds
    (wall, CPU) spent reading them."""

    arrays: _Arrays
    sstate: np.ndarray
    rows: int
    read_s: float
    read_cpu_s: float


def _run_loop(
    setup: _Setup, batches: Iterator[tuple[np.ndarray, ...]], log: bool, capacity: int | None = None
) -> _Replay:
    """Run the loop over the rows of ``batches`` to the end, a window at a time (``loop``
    docstring). ``capacity``: the starting size of the growable arrays (``run_compiled``)."""
    cfg = setup.cfg.copy()
    cfg[L.C_LOG] = 1 if log else 0
    trades = cfg[L.C_WAKE_TRADE] != 0
    feed = cfg[L.C_FEED_NS]
    vbooks = BookSet(1, capacity=capacity or 4096, ticks=[setup.inst.tick])  # the venue's
    a = _Arrays() if capacity is None else _Arrays(capacity, capacity, capacity, capacity, capacity)
    sstate = np.zeros(setup.twin.STATE_LEN, np.float64)
    codes = np.array([c for _, c in setup.reason_texts], np.int64)
    read = [0.0, 0.0]

    def pull() -> tuple[np.ndarray, ...] | None:
        t, c = time.perf_counter(), time.thread_time()
        got = next(batches, None)
        read[0] += time.perf_counter() - t
        read[1] += time.thread_time() - c
        return got

    window = pull() or tuple(np.zeros(0, dt) for dt in _ROW_DTYPES)
    pending = pull()
    n_rows = len(window[0])
    base = 0
    first_snap = L.NEVER
    ring = np.zeros((2, 4), np.int64)
    while True:  # a window: the rows from our cursor on, and the newest batch
        lrows, ring_n, fs, _ = prepare(window[0], window[1], window[5], feed, trades)
        if first_snap == L.NEVER and fs < len(window[0]):
            first_snap = base + fs
        if ring_n > ring.shape[0]:
            ring = _regrown_ring(ring, ring_n, base, base + int(a.state[L.S_VI]))
        cfg[L.C_BASE] = base
        cfg[L.C_MORE] = 1 if pending is not None else 0
        cfg[L.C_FIRST_SNAP] = first_snap
        if len(window[0]):
            cfg[L.C_LAST_TS] = window[0][-1]
        code = L.NEED_ROOM
        while code != L.NEED_DATA:
            b = a.buf
            code = L.run(
                setup.twin.decide,
                window, lrows, vbooks.arrays(), a.rests, a.slot_h, a.free, a.fills, ring,
                a.orders, a.ordf, a.open_h, a.heap, a.heapf,
                b.oi, b.of, b.fi, b.ff, b.pi, b.pf, b.ri, b.mi,
                a.state, a.statef, cfg, setup.cfgf, codes, setup.sparams, sstate, a.view, a.actions,
            )  # fmt: skip
            if code == L.DONE:
                return _Replay(a, sstate, n_rows, read[0], read[1])
            if code == L.NEED_ROOM:
                a.grow()
            elif code == L.VBOOK_FULL:
                vbooks.grow()
            elif code != L.NEED_DATA:
                why = _WHY.get(int(a.state[L.S_WHY]), "an unknown situation")
                row = int(a.state[L.S_WHY_ROW])
                raise CompiledPathError(
                    f"{setup.spec.path}: the compiled engine met {why} (row/order {row}), which it does not "
                    "model; run this backtest with the Python engine"
                )
        # drop what both cursors have passed: our cursor is behind the venue's, at its next stop
        lj, vi = int(a.state[L.S_LI]), int(a.state[L.S_VI])
        cut = int(lrows[lj]) if lj < len(lrows) else vi
        assert pending is not None
        n_rows += len(pending[0])
        window = tuple(np.concatenate((w[cut:], p)) for w, p in zip(window, pending, strict=True))
        pending = pull()
        base += cut
        a.state[L.S_VI] = vi - cut
        a.state[L.S_LI] = 0


def _regrown_ring(ring: np.ndarray, n: int, lo: int, hi: int) -> np.ndarray:
    """A ring of ``n`` rows holding the tops of absolute rows ``[lo, hi)`` of ``ring``."""
    out = np.zeros((n, 4), np.int64)
    rows = np.arange(lo, hi)
    out[rows & (n - 1)] = ring[rows & (ring.shape[0] - 1)]
    return out


def compile_loop(setup: _Setup) -> float:
    """Run an empty replay, so that what the replay calls and compiles lazily (``prepare``) is
    compiled or loaded from the cache before the timed one; returns the seconds taken."""
    t0 = time.perf_counter()
    _run_loop(setup, iter(()), log=True)
    return time.perf_counter() - t0


def _summary(setup: _Setup, a: _Arrays, rows: int, wall: float) -> dict[str, Any]:
    s, f = a.state, a.statef
    held = s[L.S_POS_EXISTS] != 0
    realized = float(f[L.SF_REALIZED]) if held else 0.0
    unrealized = float(L._unrealized(s, f, setup.cfg, setup.cfgf)) if held else 0.0
    fees = float(f[L.SF_FEES]) if held else 0.0
    submitted = int(s[L.S_SUBMITTED])
    return {
        "net_pnl": realized + unrealized - fees,
        "realized_pnl": realized,
        "unrealized_pnl": unrealized,
        "fees": fees,
        "fills": int(s[L.S_FILLS]),
        "orders_submitted": submitted,
        "orders_filled": int(s[L.S_FILLED_ORDERS]),
        "orders_rejected": int(s[L.S_REJECTED]),
        "fill_ratio": int(s[L.S_FILLED_ORDERS]) / submitted if submitted else 0.0,
        "max_drawdown": float(f[L.SF_MAX_DD]),
        "rows": rows,
        "book_updates": int(s[L.S_BOOK_WAKES]),
        "crossed_books": 0,
        "incidents": {},
        "wall_s": wall,
        "rows_per_s": rows / wall if wall > 0 else 0.0,
        "trade_updates": int(s[L.S_TRADE_WAKES]),
        "orders_canceled": int(s[L.S_CANCELED]),
        "orders_rejected_locally": int(s[L.S_LOCAL_REJECTS]),
    }


def _names(setup: _Setup, a: _Arrays) -> E.Names:
    n = int(a.state[L.S_NORD])
    orders = a.orders[:n]
    inst = setup.inst
    return E.Names(
        strategy_id=setup.sspec.strategy_id,
        venue=inst.venue,
        symbol=inst.symbol,
        quote=inst.quote,
        price_scale=inst.price_scale,
        size_scale=inst.size_scale,
        contract_size=float(inst.contract_size),
        client_ids=[setup.rules.make(setup.prefix, int(i)) for i in orders[:, L.OR_ID]],
        sides=orders[:, L.OR_SIDE].copy(),
        post_only=orders[:, L.OR_POST_ONLY].copy(),
        reasons=setup.reason_texts,
    )


def check_compiled(spec: RunSpec) -> None:
    """Raise ``CompiledPathError`` when the compiled path cannot run ``spec`` (what ``run_compiled``
    would refuse), without reading data or loading the loop: a sweep asks before it starts."""
    from engine.runners.backtest import open_backtest

    _Setup(spec, open_backtest(spec, None, log_orders=False))


def run_compiled(
    spec: RunSpec,
    run_dir: Path | None,
    instruments_registry: dict | None = None,
    *,
    capacity: int | None = None,
    window_rows: int | None = None,
) -> dict[str, Any]:
    """Run ``spec`` on the compiled path; write the event log to ``run_dir`` (None: nothing kept).
    ``instruments_registry`` replaces the spec's instrument file, as in ``run_backtest``.
    ``capacity`` is the starting size of every array that grows (orders, events, event-log rows,
    the venue book's overflow); ``window_rows`` cuts the reader's batches to at most that many
    rows. Neither changes the result: the arrays grow as needed, the windows follow the batches.

    Returns the Python path's summary keys (``engine.runners.node.summarize``; ``wall_s`` and
    ``rows_per_s`` are the replay's, the loop over rows and events alone) plus ``engine``, the
    seconds of each phase (``setup_s``: config, models, loading the compiled loop; ``read_s``: the
    market data into arrays, batch by batch; ``replay_s`` and its CPU time ``replay_cpu_s``, the
    reading taken out; ``write_s``: the event log) and the strategy's own counters. Raises
    ``CompiledPathError`` for a spec it cannot run, before anything is written."""
    from engine.runners.backtest import open_backtest

    t0 = time.perf_counter()
    node = open_backtest(spec, None, instruments_registry=instruments_registry, log_orders=False)
    setup = _Setup(spec, node)
    compile_loop(setup)
    t1 = time.perf_counter()
    c1 = time.thread_time()
    batches = row_batches(spec, node.source, window_rows)
    r = _run_loop(setup, batches, log=run_dir is not None, capacity=capacity)
    cpu = time.thread_time() - c1 - r.read_cpu_s
    t2 = time.perf_counter()
    if r.rows == 0:
        raise CompiledPathError(f"{spec.data_root}: no market data rows in the selected range")
    replay_s = t2 - t1 - r.read_s
    summary = _summary(setup, r.arrays, r.rows, replay_s)
    if run_dir is not None:
        _write_run(setup, r.arrays, run_dir, summary, r.rows)
    t3 = time.perf_counter()
    summary["engine"] = "compiled"
    summary["setup_s"] = t1 - t0
    summary["read_s"] = r.read_s
    summary["replay_s"] = replay_s
    summary["replay_cpu_s"] = cpu
    summary["write_s"] = t3 - t2
    summary["strategy"] = setup.twin.stats(r.sstate)
    if run_dir is not None:
        timing = {k: round(summary[k], 4) for k in ("setup_s", "read_s", "replay_s", "write_s")}
        info = wall_clock_info(replay_s, rows_per_s=summary["rows_per_s"], engine="compiled", **timing)
        (run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return summary


def _write_run(setup: _Setup, a: _Arrays, run_dir: Path, summary: dict[str, Any], n_rows: int) -> None:
    """The event log's tables and the manifest (what ``Recorder.close`` writes for the Python path)."""
    st = a.state
    counts = {
        "orders": int(st[L.S_N_ORDERS_LOG]),
        "fills": int(st[L.S_N_FILLS_LOG]),
        "positions": int(st[L.S_N_POS_LOG]),
        "risk": int(st[L.S_N_RISK_LOG]),
        "market": int(st[L.S_N_MARKET_LOG]),
    }
    E.write_tables(run_dir, E.tables(a.buf, counts, _names(setup, a)))
    node = setup.node
    node.run_dir = run_dir
    src = node.source
    node.extra_manifest["engine"] = "compiled"
    node.extra_manifest["data"] = {
        "root": str(setup.spec.data_root),
        "streams": [f"{v}:{s}" for v, s in node.streams],
        "files": [str(f) for f in src.files],
        "from_ns": src.start_ns,
        "to_ns": src.end_ns,
        "rows": n_rows,
        "referenced_not_copied": True,
    }
    write_json_atomic(run_dir / MANIFEST, node.manifest(summary), durable=False)
