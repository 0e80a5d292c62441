"""``scripts/replay_fills.sh --from=T --to=T``: the journal's fills of a window written into the
store again, idempotently, with counts of what was read, new and already there."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import duckdb
import pytest
from test_store_service import T0, fill_row, order_row

from engine.store.config import StoreSettings
from engine.store.replay import main as replay_main
from engine.store.replay import parse_when
from engine.store.service import StoreService

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "replay_fills.sh"


@pytest.fixture
def lost_fills(tmp_path) -> tuple[Path, StoreSettings]:
    """A config whose DuckDB store lost the even fills of 40 (a failed write), its journal whole."""
    runs = tmp_path / "runs"
    cfg = tmp_path / "prod.json"
    cfg.write_text(json.dumps({"output": {"runs_root": str(runs)}, "database": {"backend": "duckdb"}}))
    settings = StoreSettings(backend="duckdb", duckdb_path=runs / "hft.duckdb", journal_dir=runs / "journal")

    async def write() -> None:
        svc = await StoreService(settings).open()
        svc.begin_run("run-1", "t", "live", str(cfg), T0, {})
        svc.tap([("fills", [fill_row(i) for i in range(40)]), ("orders", [order_row(50, "c1", "submit", "new")])])
        assert await svc.close(30)

    asyncio.run(write())
    con = duckdb.connect(str(settings.duckdb_path))
    con.execute("DELETE FROM fills WHERE seq % 2 = 0")
    con.execute("DELETE FROM order_events")
    con.close()
    return cfg, settings


def stored(settings: StoreSettings, table: str = "fills") -> int:
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_a_window_is_replayed_once_and_counted(lost_fills, capsys):
    cfg, settings = lost_fills
    assert stored(settings) == 20
    # fills 10..29 (ts = T0 + seq): 20 read, the 10 even ones new
    assert replay_main([f"--from={T0 + 10}", f"--to={T0 + 30}", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "fills: read 20, new 10, already present 10" in out
    assert stored(settings) == 30
    # again: nothing new
    assert replay_main([f"--from={T0 + 10}", f"--to={T0 + 30}", "--config", str(cfg)]) == 0
    assert "fills: read 20, new 0, already present 20" in capsys.readouterr().out
    assert stored(settings) == 30 and stored(settings, "order_events") == 0  # fills only by default


def test_orders_flag_and_iso_times_through_the_script(lost_fills, tmp_path):
    cfg, settings = lost_fills
    import pandas as pd

    start = pd.Timestamp(T0, tz="UTC").strftime("%Y-%m-%d %H:%M:%S")  # the guide's format, whole seconds
    end = pd.Timestamp(T0 + 10**9, tz="UTC").isoformat()
    got = subprocess.run(
        [str(SCRIPT), f"--from={start}", f"--to={end}", "--config", str(cfg), "--orders"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr
    assert "fills: read 40, new 20, already present 20" in got.stdout
    assert "orders: read 1, new 1, already present 0" in got.stdout
    assert stored(settings) == 40 and stored(settings, "order_events") == 1


def test_bad_input_is_one_clear_line(lost_fills, tmp_path):
    cfg, _ = lost_fills

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    helped = run("--help")
    assert helped.returncode == 0 and "usage: ./scripts/replay_fills.sh --from=T --to=T" in helped.stderr
    bad = run("--from=yesterday-ish", "--to=2025-01-01", "--config", str(cfg))
    assert bad.returncode == 2 and bad.stderr.startswith("error: --from: not a time: 'yesterday-ish'")
    assert "Traceback" not in bad.stderr
    back = run("--from=2025-01-02", "--to=2025-01-01", "--config", str(cfg))
    assert back.returncode == 2 and "--to must be after --from" in back.stderr
    missing = run("--from=2025-01-01", "--to=2025-01-02", "--config", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "nope.json" in missing.stderr and "Traceback" not in missing.stderr
    nojournal = run("--from=2025-01-01", "--to=2025-01-02", "--config", str(cfg), "--journal", "elsewhere")
    assert nojournal.returncode == 2 and f"No journal at {tmp_path / 'elsewhere'}" in nojournal.stderr


def test_times_parse_as_utc():
    assert parse_when("1700000000000000000", "--from") == 1_700_000_000_000_000_000
    assert parse_when("2023-11-14 22:13:20", "--from") == 1_700_000_000_000_000_000
    assert parse_when("2023-11-14T23:13:20+01:00", "--from") == 1_700_000_000_000_000_000
