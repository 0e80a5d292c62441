"""A paper session with the default store: the DuckDB file beside the run holds what its event log
holds (runs, order events and order states, fills, positions, market data), with no config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pytest

from engine.model import Side, TimeInForce
from engine.runners.session import open_session
from engine.runners.spec import load_run_spec
from engine.strategy import Strategy

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
CONFIG = REPO / "config" / "paper" / "market_maker_binance.json"
server = pytest.importorskip("sim.fake_binance.server")


class Flipper(Strategy):
    """Every ``every``-th book, an IOC at the far touch, buying and selling in turn: a fill each
    time (the paper venue matches marketable IOCs on the live book), the position stays small."""

    book_updates = "every"

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.every = int(self.params.get("every", 3))
        self.size = float(self.params.get("size", 0.001))
        self.books = 0
        self.buy = True

    def on_book(self, book) -> None:
        self.books += 1
        if self.books % self.every:
            return
        if self.buy:
            self.submit_limit(Side.BUY, book.best_ask * 1.001, self.size, tif=TimeInForce.IOC)
        else:
            self.submit_limit(Side.SELL, book.best_bid * 0.999, self.size, tif=TimeInForce.IOC)
        self.buy = not self.buy


async def paper_session(spec, out: Path, duration_s: float, during=None, speed: float = 30, every: int = 3, stop=None):
    """A paper session of ``Flipper`` against the fake Binance streaming the capture; ``during``
    (a coroutine function of the session) runs beside it; ``stop`` (an event) ends it early."""
    from venues.binance.adapter import BinanceAdapter
    from venues.binance.config import load_config

    async with server.FakeBinance(data=CAPTURE, speed=speed) as fb:
        cfg = load_config(
            REPO / "config" / "exchanges" / "binance.json",
            overrides={"rest_url": fb.rest_url, "ws_url": fb.ws_url, "ws_api_url": fb.ws_api_url},
            env={},
        )
        st = spec.strategies[0]
        strategy = Flipper("flipper", st.venue, st.symbols, {"every": every})
        session = await open_session(spec, "paper", out, {"binance": BinanceAdapter(cfg)}, strategies=[strategy])

        async def beside(s) -> None:
            if during is not None:
                s._beside = asyncio.get_running_loop().create_task(during(s))

        result = await session.run(stop, duration_s, after_start=beside)
        task = getattr(session, "_beside", None)
        if task is not None:
            await task
        return result


def log_rows(con, run: Path, table: str, cols: str) -> list[tuple]:
    return con.execute(f"select {cols} from read_parquet('{run}/{table}.parquet') order by seq").fetchall()


@pytest.fixture(scope="module")
def session_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("store_session")
    out = root / "run"
    spec = load_run_spec(CONFIG, mode="paper")
    assert spec.store.backend == "duckdb"  # no database section: the embedded default
    res = asyncio.run(paper_session(spec, out, 4.0))
    return res, root, out


def test_the_default_store_is_a_duckdb_file_beside_the_run(session_run):
    _, root, out = session_run
    assert (root / "hft.duckdb").exists()
    assert list((root / "journal").glob("*.jnl"))
    assert (root / "journal" / "watermark.json").exists()
    system = (out / "logs" / "system.log").read_text()
    assert "database: duckdb store at" in system


def test_the_store_holds_what_the_event_log_holds(session_run):
    _, root, out = session_run
    run_id = out.name
    ev = duckdb.connect()
    db = duckdb.connect(str(root / "hft.duckdb"), read_only=True)
    try:
        # the run, closed
        status, mode = db.execute("select status, mode from strategy_runs where run_id = ?", [run_id]).fetchone()
        assert (status, mode) == ("closed", "paper")
        # every order event, once
        log_events = log_rows(ev, out, "orders", "seq, event, client_order_id, status")
        assert log_events, "the session sent no orders"
        stored = db.execute(
            "select seq, event, client_order_id, status from order_events where run_id = ? order by seq", [run_id]
        ).fetchall()
        assert stored == log_events
        # each order's state is its last event's
        last: dict[str, str] = {}
        for _, _, cid, st in log_events:
            last[cid] = st
        states = dict(db.execute("select client_order_id, status from orders where run_id = ?", [run_id]).fetchall())
        assert states == last
        # every fill, exactly once
        log_fills = log_rows(ev, out, "fills", "venue, symbol, trade_id, client_order_id")
        assert len(log_fills) >= 3, "the session got too few fills to compare"
        db_fills = db.execute(
            "select venue, symbol, trade_id, client_order_id from fills where run_id = ? order by seq", [run_id]
        ).fetchall()
        assert db_fills == log_fills
        # positions: the newest row of each (strategy, venue, symbol)
        newest = {}
        for sid, venue, sym, pos in log_rows(ev, out, "positions", "strategy_id, venue, symbol, position"):
            newest[(sid, venue, sym)] = pos
        db_pos = {
            (sid, venue, sym): pos
            for sid, venue, sym, pos in db.execute(
                "select strategy_id, venue, symbol, position from positions"
            ).fetchall()
        }
        assert db_pos == pytest.approx(newest)
        # market data: every tick row (nothing dropped at this rate), and book snapshots
        n_market = ev.execute(f"select count(*) from read_parquet('{out}/market.parquet')").fetchone()[0]
        assert db.execute("select count(*) from market_data_ticks").fetchone()[0] == n_market
        snaps = db.execute("select count(*), max(depth) from order_book_snapshots").fetchone()
        assert snaps[0] >= 1 and 0 < snaps[1] <= 20
    finally:
        db.close()
        ev.close()


def test_a_second_session_on_the_same_runs_root_continues_the_same_store(session_run, tmp_path):
    """The journal and the DuckDB file outlive the session: the next one appends to them."""
    _, root, _ = session_run
    out2 = root / "run2"
    spec = load_run_spec(CONFIG, mode="paper")
    asyncio.run(paper_session(spec, out2, 2.0))
    db = duckdb.connect(str(root / "hft.duckdb"), read_only=True)
    try:
        runs = [r[0] for r in db.execute("select run_id from strategy_runs order by started_ns").fetchall()]
    finally:
        db.close()
    assert runs == ["run", "run2"]


def test_backend_none_stores_nothing(tmp_path):
    import json

    cfg = json.loads(CONFIG.read_text())
    cfg["database"] = {"backend": "none"}
    cfg["exchange"] = str(REPO / "config" / "exchanges" / "binance.json")
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(cfg))
    spec = load_run_spec(path, mode="paper")
    out = tmp_path / "run"
    asyncio.run(paper_session(spec, out, 1.5))
    assert not (tmp_path / "hft.duckdb").exists() and not (tmp_path / "journal").exists()
    assert (out / "orders.parquet").exists()


def test_an_unknown_database_key_is_refused_naming_it(tmp_path):
    import json

    from engine.errors import ConfigError

    cfg = json.loads(CONFIG.read_text())
    cfg["database"] = {"backend": "duckdb", "queue_rowz": 5}
    cfg["exchange"] = str(REPO / "config" / "exchanges" / "binance.json")
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as err:
        load_run_spec(path, mode="paper")
    assert "database.queue_rowz" in str(err.value) and str(path) in str(err.value)


def test_the_daemon_serves_the_database_metrics_on_metrics(tmp_path):
    """``hft paper CONFIG --api`` with the default store: ``/metrics`` carries the service's
    ``hft_db_*`` samples (the daemon's telemetry takes them), counting what was written."""
    from daemon_process import metric, start_daemon, wait_until

    d = start_daemon(tmp_path)
    try:

        def written() -> float:
            return metric(d.call("metrics"), "hft_db_rows_written_total", table="market")

        wait_until(lambda: written() > 0, 60, "market rows written to the database", d)
        snap = d.call("metrics")
        assert metric(snap, "hft_db_up", backend="duckdb") == 1
        assert metric(snap, "hft_db_queue_depth") >= 0
        assert metric(snap, "hft_db_connection_failures_total") == 0
        assert metric(snap, "hft_db_rows_dropped_total", table="market") == 0
        assert metric(snap, "hft_db_write_latency_seconds") > 0  # a histogram: its count of batches
        assert "database write:" in d.log("system")
    finally:
        assert d.stop() == 0
    assert (tmp_path / "runs" / "hft.duckdb").exists() or (tmp_path / "hft.duckdb").exists()
