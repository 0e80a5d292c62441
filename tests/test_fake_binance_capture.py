"""Loading hftbacktest captures for the fake: anchoring on the snapshot, day stitching, bad input."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest

from engine.errors import DataError
from sim.fake_binance.capture import BBO, DEPTH, TRADE, load_capture
from sim.fake_binance.replay import fx

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "binance_spot_hftbacktest"


def test_two_days_replay_as_one_unbroken_chain() -> None:
    cap = load_capture(DATA)
    snap = cap.snapshots["BTCUSDT"]
    assert snap.last_update_id == 50093239218 and len(snap.bids) == 1000
    depth = [r for r in cap.records if r.kind == DEPTH]
    assert depth[0].first_id <= snap.last_update_id + 1 <= depth[0].seq
    assert all(b.first_id == a.seq + 1 for a, b in itertools.pairwise(depth))
    assert depth[-1].seq == 50093696318  # the last diff of the 0809 file
    kinds = {r.kind for r in cap.records}
    assert kinds == {DEPTH, TRADE, BBO}
    ts = [r.ts for r in cap.records]
    assert ts == sorted(ts)
    trades = [r.seq for r in cap.records if r.kind == TRADE]
    assert all(b == a + 1 for a, b in itertools.pairwise(trades))


def test_day_without_snapshot_is_refused() -> None:
    with pytest.raises(DataError, match="no REST depth snapshot"):
        load_capture(DATA / "btcusdt_20240809.gz")


def test_corrupt_line_names_file_and_line(tmp_path: Path) -> None:
    with gzip.open(DATA / "btcusdt_20240808.gz") as fh:
        lines = fh.read().splitlines()[:12]
    lines[9] = b'1723161254306652067 {"stream":"btcusdt@trade","data":{"e":"trade"'
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(DataError, match=r"bad\.gz: line 10: "):
        load_capture(bad)


def test_plain_text_capture_and_limit(tmp_path: Path) -> None:
    with gzip.open(DATA / "btcusdt_20240808.gz") as fh:
        lines = fh.read().splitlines()[:500]
    plain = tmp_path / "small.txt"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    cap = load_capture(plain, max_records=300)
    assert 0 < len(cap.records) <= 300 and "BTCUSDT" in cap.snapshots


@pytest.mark.parametrize(
    ("text", "value"), [("61837.63000000", 6183763000000), ("0.1", 10000000), ("5", 500000000), ("0.000000010", 1)]
)
def test_decimal_parsing(text: str, value: int) -> None:
    assert fx(text) == value
