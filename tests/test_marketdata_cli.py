"""``hft data import`` and ``hft data ls`` through the real command entry point."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
SAMPLES = REPO / "data" / "samples"


def test_ls_names_venue_symbol_rows_and_times(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "ls", str(SAMPLES)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"root: {SAMPLES}"
    spot = next(line for line in lines if line.startswith("binance ") and "BTC-USDT" in line)
    assert "319,998" in spot
    assert "2024-08-08..2024-08-09 (2 days)" in spot
    assert "2024-08-08T23:54:14.087896Z" in spot
    futures = next(line for line in lines if line.startswith("binance-futures"))
    assert "466,575" in futures and "21,313" in futures


def test_ls_finds_roots_below_a_directory_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(SAMPLES, tmp_path / "data" / "samples")
    assert main(["data", "ls", str(tmp_path / "data"), "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [(i["venue"], i["symbol"], i["rows"]) for i in items] == [
        ("binance", "BTC-USDT", 319_998),
        ("binance-futures", "BTC-USDT", 466_575),
    ]
    assert items[0]["dates"] == ["2024-08-08", "2024-08-09"]
    assert items[1]["rows_by_kind"] == {"snapshot": 2_000, "delta": 443_262, "trade": 21_313, "bbo": 0}
    assert items[1]["first_utc"].startswith("2024-08-08T23:54:15")


def test_ls_of_an_empty_or_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "ls", str(tmp_path)]) == 0
    assert "no market data under" in capsys.readouterr().out
    assert main(["data", "ls", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Bad market data at {tmp_path / 'missing'}: directory does not exist")


@pytest.mark.skipif(not REAL.exists(), reason="real data in ../shared/data/real is missing")
def test_import_tardis_then_ls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(REAL / "tardis_binance_futures_nautilus" / n) for n in ("tardis_trades.csv", "tardis_quotes.csv")]
    assert main(["data", "import", *files, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "binance-futures BTC-USDT (tardis: tardis_quotes.csv, tardis_trades.csv)" in out
    assert "rows: 29,997 (snapshot 0, delta 0, trade 9,999, bbo 19,998)" in out
    assert "rows/s" in out
    assert "gaps: 0" in out
    assert main(["data", "ls", str(tmp_path)]) == 0
    assert "29,997" in capsys.readouterr().out
    # a second import into the same partition needs --overwrite
    assert main(["data", "import", *files, "--out", str(tmp_path)]) == 2
    assert "partition already holds 1 file(s)" in capsys.readouterr().err
    assert main(["data", "import", *files, "--out", str(tmp_path), "--overwrite"]) == 0


@pytest.mark.skipif(not REAL.exists(), reason="real data in ../shared/data/real is missing")
def test_import_capture_reports_gaps_and_strict_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with gzip.open(REAL / "binance_spot_hftbacktest" / "btcusdt_20240809.gz", "rb") as fh:
        lines = [fh.readline() for _ in range(4_000)]
    depth = [i for i, line in enumerate(lines) if b"@depth" in line[:60]]
    del lines[depth[10]]
    src = tmp_path / "spot" / "btcusdt_20240809.gz"
    src.parent.mkdir()
    src.write_bytes(gzip.compress(b"".join(lines)))
    # the 0809 file alone has no snapshot: nothing of the book can be written, trades are
    assert main(["data", "import", str(src), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("binance BTC-USDT (binance-capture: btcusdt_20240809.gz)")
    assert "snapshot 0, delta 0" in out
    head = REAL / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
    args = ["data", "import", str(src), str(head), "--out", str(tmp_path / "b"), "--bbo", "--strict"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "gaps: 1, book resets: 1" in captured.out
    assert "gap: btcusdt_20240809.gz:" in captured.out
    assert "Market data sequence gap" in captured.out
    assert "bbo 0" not in captured.out
    assert "malformed lines or sequence gaps" in captured.err


def test_import_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "import", str(tmp_path / "none.gz"), "--out", str(tmp_path)]) == 2
    assert "error: Bad market data at" in capsys.readouterr().err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world\n")
    assert main(["data", "import", str(junk), "--out", str(tmp_path)]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
