"""``hft db load RUN_DIR``: a run's event log (Parquet, or the Arrow streams of a running or crashed
session) into either store, idempotently; bad input is one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from store_rows import SEC, T0, fill, order, position, tick

from engine.cli import main
from engine.eventlog_schema import TABLES
from engine.store import StoreSettings, open_store
from engine.store.load import load_run
from reports.logwriter import write_event_log

pytestmark = pytest.mark.postgres

N_TICKS = 500


def _dicts(table: str, rows: list[tuple]) -> list[dict]:
    return [dict(zip(TABLES[table].names, r, strict=True)) for r in rows]


def _rows() -> dict[str, list[tuple]]:
    return {
        "orders": [
            order(1, T0, "o1", "pending", event="submit"),
            order(2, T0 + SEC, "o1", "open"),
            order(4, T0 + 3 * SEC, "o1", "filled", event="filled", filled_qty=0.01, leaves_qty=0.0),
        ],
        "fills": [fill(3, T0 + 2 * SEC, "o1", "t1", qty=0.01)],
        "positions": [position(3, T0 + 2 * SEC, 0.01)],
        "market": [tick(10 + i, T0 + i * 1_000_000) for i in range(N_TICKS)],
    }


def parquet_run(root: Path, name: str = "run-pq") -> Path:
    manifest = {
        "run_id": name,
        "name": "bt",
        "mode": "backtest",
        "status": "closed",
        "summary": {"pnl": 0.5},
        "data": {"from_ns": T0, "to_ns": T0 + 10 * SEC},
    }
    return write_event_log(root / name, {t: _dicts(t, r) for t, r in _rows().items()}, manifest)


def stream_run(root: Path, name: str = "run-live") -> Path:
    """A paper session still running (or crashed): Arrow IPC streams, the last one torn."""
    run = root / name
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"run_id": name, "mode": "paper", "status": "running"}))
    for table, rows in _rows().items():
        path = run / f"{table}.arrows"
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, TABLES[table]) as w:
            w.write_table(pa.Table.from_pylist(_dicts(table, rows), schema=TABLES[table]))
    with open(run / "fills.arrows", "ab") as f:  # kill -9 in the middle of a batch
        f.write(b"\xff\xff\xff\xff\x10\x00")
    return run


@pytest.fixture(params=["duckdb", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    if request.param == "duckdb":
        return StoreSettings(backend="duckdb", duckdb_path=tmp_path / "hft.duckdb")
    return request.getfixturevalue("pg_settings")


async def _counts(settings: StoreSettings) -> dict[str, int | None]:
    async with open_store(settings) as st:
        return await st.table_counts()


@pytest.mark.parametrize("kind", ["parquet", "streams"])
async def test_loading_a_run_twice_stores_it_once(settings: StoreSettings, tmp_path: Path, kind: str) -> None:
    run = parquet_run(tmp_path / "runs") if kind == "parquet" else stream_run(tmp_path / "runs")
    async with open_store(settings) as st:
        await st.migrate()
        first = await load_run(st, run)
        assert first == {
            "orders": 3,
            "fills": 1,
            "positions": 1,
            "risk": 0,
            "incidents": 0,
            "reconcile": 0,
            "market": N_TICKS,
        }
        o = await st.order("binance", "o1")
        assert o is not None and o["status"] == "filled" and o["run_id"] == run.name
        again = await load_run(st, run)
        assert {t: n for t, n in again.items() if t != "market"} == dict.fromkeys(first.keys() - {"market"}, 0)
        r = await st.run(run.name)
        assert r is not None and r["status"] == ("closed" if kind == "parquet" else "running")
    counts = await _counts(settings)
    assert counts["order_events"] == 3 and counts["fills"] == 1 and counts["market_data_ticks"] == N_TICKS
    assert counts["strategy_runs"] == 1 and counts["orders"] == 1


def _cli(settings: StoreSettings, *args: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    if settings.backend == "duckdb":
        return ["db", *args, "--duckdb-path", str(settings.duckdb_path)]
    for var, value in (
        ("HFT_DB_HOST", settings.host),
        ("HFT_DB_PORT", str(settings.port)),
        ("HFT_DB_NAME", settings.name),
        ("HFT_DB_USER", settings.user),
    ):
        monkeypatch.setenv(var, value)
    return ["db", *args, "--backend", "postgresql"]


def test_cli_load_prints_what_it_stored(
    settings: StoreSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = parquet_run(tmp_path / "runs")
    assert main(_cli(settings, "load", str(run), monkeypatch=monkeypatch)) == 0
    out = capsys.readouterr().out
    assert f"{run}: loaded into {settings.backend}" in out and "fills 1" in out and f"market {N_TICKS}" in out
    assert main(_cli(settings, "load", str(run), monkeypatch=monkeypatch)) == 0
    assert "fills 0" in capsys.readouterr().out


def test_cli_load_bad_input_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = StoreSettings(backend="duckdb", duckdb_path=tmp_path / "hft.duckdb")
    missing = tmp_path / "runs" / "nope"
    assert main(_cli(settings, "load", str(missing), monkeypatch=monkeypatch)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: Cannot read event log at {missing}: no such run directory"
    run = parquet_run(tmp_path / "runs")
    (run / "fills.parquet").write_bytes(b"PAR1 this is not parquet")
    assert main(_cli(settings, "load", str(run), monkeypatch=monkeypatch)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: Cannot read event log at {run / 'fills.parquet'}") and "\n" not in err
    assert "Traceback" not in err
