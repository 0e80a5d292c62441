"""The path warmer (``engine.warm``): it runs the real order path on a shadow engine and the
execution client's dry run, and must leave no trace: nothing sent to the venue, nothing in the
real engine's order manager, risk engine, rate limiter, event log or component logs."""

from __future__ import annotations

import asyncio
import secrets
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from test_binance_support import CAPTURE, capture_log, wait_until

from bench import hot_path as hot
from engine.logs import Muted, flush_logs, get_logger, setup_logging
from engine.model import Side
from engine.strategy import Strategy
from engine.warm import NullVenue, PathWarmer
from venues.binance.adapter import BinanceAdapter
from venues.binance.config import Credentials

from simkit import MS, Rows, run

DAY = str(CAPTURE / "btcusdt_20240808.gz")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_muted_drops_this_threads_records_only(tmp_path: Path) -> None:
    logs = setup_logging(tmp_path / "logs")
    assert logs is not None
    try:
        risk = get_logger("risk")
        with Muted():
            risk.warning("from the muted thread")
            other = threading.Thread(target=risk.warning, args=("from another thread",))
            other.start()
            other.join()
        risk.warning("after the block")
        assert not risk.filters, "the filter must go with the block (info_later's fast path needs none)"
        flush_logs()
        text = (logs / "risk.log").read_text()
        assert "from the muted thread" not in text
        assert "from another thread" in text and "after the block" in text
        assert "from the muted thread" not in (logs / "errors.log").read_text()
    finally:
        setup_logging(None)


async def _synced(adapter: BinanceAdapter, fb: object, book: object) -> None:
    """Feed connected, the replay moved on, the book in sync with it."""
    feed = adapter.feed
    assert feed is not None
    await wait_until(lambda: feed.connected, 10.0, "feed connected")
    await fb.advance(400)  # type: ignore[attr-defined]
    await wait_until(lambda: book.valid and book.update_id == fb.last_update_id(), 10.0, "book in sync")  # type: ignore[attr-defined]


def _state(engine: Any, execution: Any, fb: Any, adapter: BinanceAdapter) -> tuple:
    """What a warm pass must not change: the real engine's orders, risk checks, event log and
    balances, the execution client's requests, the venue's orders and the rate limiters."""
    return (
        engine.oms.submitted,
        len(engine.oms.orders),
        engine.risk.summary()["checks"],
        dict(engine.recorder.counts),
        engine.recorder.seq,
        execution.sent,
        execution.written_now,
        execution.queued,
        len(execution._tracks),
        len(fb.exchange.orders),
        _limiter_use(adapter),
        engine.portfolio.balances(),
    )


def _limiter_use(adapter: BinanceAdapter) -> list[int]:
    used = []
    for limiter in (adapter.rest.limiter, adapter.ws_api.limiter if adapter.ws_api else None):
        if limiter is not None:
            used += [w.used for ws in limiter.windows.values() for w in ws]
    return used


@pytest.mark.parametrize("entry", ["ws", "rest"])
async def test_warm_passes_leave_no_trace_and_real_orders_still_flow(tmp_path: Path, entry: str) -> None:
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    logs = setup_logging(tmp_path / "logs")
    assert logs is not None
    try:
        async with hot.fake_binance([DAY], key, secret, start="manual") as fb:
            cfg = hot._config((fb.rest_url, fb.ws_url, fb.ws_api_url), entry)
            adapter = BinanceAdapter(cfg, Credentials(key, secret))
            inst = (await adapter.load_instruments())[hot.SYMBOL]
            pool = adapter.rest.open_order_connections()
            assert pool is not None
            run_dir = tmp_path / "run"
            engine, book = hot.build_engine(asyncio.get_running_loop(), inst, "replace", True, run_dir)
            await adapter.start(engine.on_book, engine.on_trade, sink=engine, books={hot.SYMBOL: book})
            execution = adapter.execution
            assert execution is not None
            engine.add_venue(execution, adapter.profile)
            engine.start()
            warmer = PathWarmer(engine, interval_us=100, spin=True)
            try:
                await _synced(adapter, fb, book)  # every update made the strategy quote once
                assert engine.oms.submitted
                await asyncio.sleep(0.3)  # answers in, nothing moving
                before = _state(engine, execution, fb, adapter)
                order_lines = len(_lines(logs / "orders.log"))
                flush_logs()
                risk_lines = _lines(logs / "risk.log")

                warmer.start()
                await asyncio.sleep(0.5)
                warmer.stop()
                await asyncio.sleep(0.1)
                assert warmer.passes > 100, warmer.passes
                assert warmer.twins == ["hot_path"]
                shadow_venue = warmer._shadow.venues["binance"]  # type: ignore[union-attr]
                # every pass but the first prepared the twin's cancel and its replacement, signed
                # and framed (the first had nothing to cancel)
                assert shadow_venue.prepared == 2 * warmer.passes - 1

                after = _state(engine, execution, fb, adapter)
                assert after == before
                flush_logs()
                assert len(_lines(logs / "orders.log")) == order_lines
                assert _lines(logs / "risk.log") == risk_lines
                system = (logs / "system.log").read_text()
                assert "path warmer started" in system and "path warmer stopped: passes=" in system
                assert "engine started" in system and system.count("engine started") == 1  # not the shadow's

                # with the warmer on, market data still drives the real path, ids as before
                warmer.start()
                sent = engine.oms.submitted
                placed = len(fb.exchange.orders)
                await fb.advance(800)
                for _ in range(500):
                    if engine.oms.submitted >= sent + 10 and len(fb.exchange.orders) >= placed + 10:
                        break
                    await asyncio.sleep(0.01)
                assert engine.oms.submitted >= sent + 10
                assert len(fb.exchange.orders) >= placed + 10
                ids = [o.client_order_id for o in engine.oms.orders.values()]
                numbers = sorted(int(cid.rpartition("-")[2]) for cid in ids)
                assert numbers[-1] == engine.oms.submitted  # the shadow's ids never touched the real count
            finally:
                warmer.stop()
                engine.stop()
                await adapter.stop()
                engine.recorder.close()
    finally:
        setup_logging(None)


async def test_a_failing_shadow_stops_the_warmer_not_the_engine(tmp_path: Path) -> None:
    """A twin that raises is the shadow's problem: it leaves the shadow with one warning; the real
    strategy and engine are untouched, and passes go on (the probe order keeps the order path warm)."""
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    async with hot.fake_binance([DAY], key, secret, start="manual") as fb:
        cfg = hot._config((fb.rest_url, fb.ws_url, fb.ws_api_url), "ws")
        adapter = BinanceAdapter(cfg, Credentials(key, secret))
        inst = (await adapter.load_instruments())[hot.SYMBOL]
        engine, book = hot.build_engine(asyncio.get_running_loop(), inst, "place", False)
        await adapter.start(engine.on_book, engine.on_trade, sink=engine, books={hot.SYMBOL: book})
        assert adapter.execution is not None
        engine.add_venue(adapter.execution, adapter.profile)
        engine.start()
        try:
            await _synced(adapter, fb, book)
            submitted = engine.oms.submitted
            warmer = PathWarmer(engine, interval_us=100)
            warmer.warm_once()
            shadow = warmer._shadow
            assert shadow is not None
            twin = shadow.strategies["hot_path"]

            def boom(_book: object) -> None:
                raise RuntimeError("twin failed")

            twin.on_book = boom  # type: ignore[method-assign]
            prepared = shadow.venues["binance"].prepared
            with capture_log("system") as system:
                for _ in range(20):
                    warmer.warm_once()
            assert warmer.passes == 21 and warmer.twins == []
            assert "hot_path" not in shadow.strategies and "hot_path" in engine.strategies
            assert not engine.risk.is_halted("hot_path") and not shadow.risk.is_halted("hot_path")
            # the probe's order and its cancel on each pass after the one that failed
            assert shadow.venues["binance"].prepared - prepared == 2 * 19
            assert system.grep("path warmer: the twin of hot_path stopped (strategy error in on_book")
            assert engine.incident_counts == {} and engine.oms.submitted == submitted
        finally:
            engine.stop()
            await adapter.stop()


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_us must be > 0"):
        PathWarmer(None, interval_us=0)  # type: ignore[arg-type]


class _Quoter(Strategy):
    """Quotes once per book, then keeps its bid where it is; opts in to the warmer."""

    warm = True

    def on_book(self, book: object) -> None:
        if not hasattr(self, "bid"):
            self.bid = self.submit_limit(Side.BUY, 999.0, 0.01)


class _OnlyOnce(_Quoter):
    """Opts in, but its constructor claims what a second instance cannot have: no twin."""

    taken: ClassVar[set[str]] = set()

    def __init__(self, strategy_id: str, venue: str, symbols: list[str], params: dict | None = None) -> None:
        super().__init__(strategy_id, venue, symbols, params)
        if strategy_id in _OnlyOnce.taken:
            raise RuntimeError(f"{strategy_id} already running")
        _OnlyOnce.taken.add(strategy_id)


def test_on_a_backtest_engine_venues_without_a_dry_run_take_nothing_and_odd_strategies_get_no_twin(
    tmp_path: Path,
) -> None:
    """The warmer needs nothing venue-specific: a venue without ``dry_run`` (the simulated one)
    gets a null venue in the shadow. A strategy that opts in but cannot be built again keeps its
    order path warm through the probe, with one warning."""
    rows = Rows().snapshot(0, [(1000, 5)], [(1001, 5)]).trade(10 * MS, -1, 1000, 1)
    res = run(rows, _Quoter, {}, run_dir=tmp_path / "run")
    engine = res.engine
    book = next(iter(engine.books.values()))
    assert book.valid
    before = (engine.oms.submitted, len(engine.oms.orders), engine.recorder.seq, engine.portfolio.balances())

    warmer = PathWarmer(engine, interval_us=100)
    for _ in range(5):
        warmer.warm_once()
    assert warmer.twins == ["s1"] and warmer.passes == 5
    shadow = warmer._shadow
    assert shadow is not None and all(isinstance(v, NullVenue) for v in shadow.venues.values())
    # the twin quoted in the first pass and holds its bid after; the probe took the other passes
    assert shadow.risk.summary()["checks"]["passed"] == 1 + 4
    assert (engine.oms.submitted, len(engine.oms.orders), engine.recorder.seq, engine.portfolio.balances()) == before

    odd = run(rows, _OnlyOnce, {}, strategy_id="odd").engine
    warmer = PathWarmer(odd, interval_us=100)
    with capture_log("system") as system:
        loop = asyncio.new_event_loop()
        try:
            warmer.start(loop)
            warmer.stop()
        finally:
            loop.close()
    assert warmer.twins == [] and "odd" in warmer.no_twin
    assert system.grep("path warmer: no twin of odd (RuntimeError")
    warmer.warm_once()
    shadow = warmer._shadow
    assert shadow is not None and shadow.risk.summary()["checks"]["passed"] == 1  # the probe's order
    assert shadow.oms.submitted == 1 and not shadow.oms.orders  # sent, then forgotten after the pass
