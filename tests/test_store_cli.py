"""``hft db migrate|status|retention|sql`` on both backends, two ``hft db migrate`` processes at
once on PostgreSQL, and one-line errors with exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_rows import DAY, tick

from engine.cli import main
from engine.store import StoreSettings, open_store

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["duckdb", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    if request.param == "duckdb":
        return StoreSettings(backend="duckdb", duckdb_path=tmp_path / "hft.duckdb")
    return request.getfixturevalue("pg_settings")


def _env(settings: StoreSettings) -> dict[str, str]:
    return {
        "HFT_DB_HOST": settings.host,
        "HFT_DB_PORT": str(settings.port),
        "HFT_DB_NAME": settings.name,
        "HFT_DB_USER": settings.user,
    }


def _args(settings: StoreSettings, *args: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    if settings.backend == "duckdb":
        return ["db", *args, "--duckdb-path", str(settings.duckdb_path)]
    for k, v in _env(settings).items():
        monkeypatch.setenv(k, v)
    return ["db", *args, "--backend", "postgresql"]


def test_migrate_status_sql_retention(
    settings: StoreSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(settings, "status", monkeypatch=monkeypatch)) == 0
    out = capsys.readouterr().out
    assert "migration 1: core tables (pending: run hft db migrate)" in out and "flavor not migrated" in out
    assert main(_args(settings, "migrate", monkeypatch=monkeypatch)) == 0
    assert capsys.readouterr().out.strip().endswith("applied migrations 1, 2, 3")
    assert main(_args(settings, "migrate", monkeypatch=monkeypatch)) == 0
    assert capsys.readouterr().out.strip().endswith("schema is current")
    assert main(_args(settings, "status", monkeypatch=monkeypatch)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"backend: {settings.backend}") and "migration 3: drop_chunks shim (applied" in out
    assert "  market_data_ticks     0" in out

    async def seed() -> None:
        async with open_store(settings) as st:
            now = time.time_ns()  # the CLI's retention is relative to the wall clock
            await st.copy_ticks([tick(1, now - 200 * DAY), tick(2, now)])

    import asyncio

    asyncio.run(seed())
    assert main(_args(settings, "sql", "SELECT count(*) AS n FROM market_data_ticks", monkeypatch=monkeypatch)) == 0
    assert capsys.readouterr().out == "n\n2\n"
    assert main(_args(settings, "retention", "--older-than-days", "150", "--dry-run", monkeypatch=monkeypatch)) == 0
    out = capsys.readouterr().out
    assert "market_data_ticks: would drop 1" in out and "(older than 150 days)" in out
    assert main(_args(settings, "retention", "--older-than-days", "150", monkeypatch=monkeypatch)) == 0
    assert "market_data_ticks: dropped 1" in capsys.readouterr().out
    assert main(_args(settings, "sql", "SELECT seq FROM market_data_ticks", monkeypatch=monkeypatch)) == 0
    assert capsys.readouterr().out == "seq\n2\n"


def test_bad_sql_and_unreachable_server_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    duck = ["--duckdb-path", str(tmp_path / "x.duckdb")]
    assert main(["db", "sql", "SELEKT 1", *duck]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: query failed on {tmp_path / 'x.duckdb'}: Parser Error") and err.count("\n") == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HFT_DB_HOST", "127.0.0.1")
        monkeypatch.setenv("HFT_DB_PORT", str(s.getsockname()[1]))
        assert main(["db", "status", "--backend", "postgresql"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Database connection failed: could not connect to server 127.0.0.1:")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["db", "migrate", "--config", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: file not found" in capsys.readouterr().err


def test_two_migrate_processes_at_once(pg_settings: StoreSettings) -> None:
    env = {**os.environ, **_env(pg_settings)}
    cmd = [sys.executable, "-m", "engine.cli", "db", "migrate", "--backend", "postgresql"]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lines = sorted(o.strip().rsplit(": ", 1)[-1] for o, _ in outs)
    assert lines == ["applied migrations 1, 2, 3", "schema is current"]
