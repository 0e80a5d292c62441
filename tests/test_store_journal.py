"""The local journal (``engine.store.journal``): what survives a crash, what is cut, what is refused."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store.journal import HEADER_SIZE, Journal, JournalCorrupt, JournalLocked, encode

REPO = Path(__file__).resolve().parents[1]


def fill(seq: int) -> tuple:
    return (seq, 1_700_000_000_000_000_000 + seq, 0, "s1", "binance", "BTC-USDT", f"c{seq}", f"v{seq}", f"t{seq}")


def _write(j: Journal, n: int, start: int = 0) -> list[tuple]:
    spans = j.append([encode("fills", "run-a", [fill(start + i)]) for i in range(n)])
    return spans


def _all(j: Journal, start=(0, 0)) -> list[tuple]:
    return [row for rec in j.read(start) for row in rec.rows]


def test_records_round_trip_in_order_with_their_table_and_run(tmp_path):
    with Journal(tmp_path / "j").open() as j:
        _write(j, 3)
        j.append([encode("orders", "run-b", [(9, 1, "submit"), (10, 2, "accepted")])])
        recs = list(j.read((0, 0)))
    assert [(r.table, r.run_id, len(r.rows)) for r in recs] == [
        ("fills", "run-a", 1),
        ("fills", "run-a", 1),
        ("fills", "run-a", 1),
        ("orders", "run-b", 2),
    ]
    assert recs[0].rows[0] == fill(0)  # tuples back, as the store takes them
    assert all(a.end == b.start for a, b in itertools.pairwise(recs))


def test_a_torn_tail_is_cut_at_the_last_whole_record_on_open(tmp_path, caplog):
    d = tmp_path / "j"
    with Journal(d).open() as j:
        spans = _write(j, 5)
        seg = j.tail[0]
    path = d / f"{seg:012d}.jnl"
    whole = spans[3][1][1]  # end of the 4th record
    with open(path, "r+b") as f:  # kill -9 in the middle of the 5th record's write
        f.truncate(whole + HEADER_SIZE + 3)
    j = Journal(d).open()
    try:
        assert j.cut_bytes == HEADER_SIZE + 3
        assert path.stat().st_size == whole
        assert [r[0] for r in _all(j)] == [0, 1, 2, 3]
        _write(j, 1, start=100)  # appends go on in a new segment, the cut one is left as it is
        assert [r[0] for r in _all(j)] == [0, 1, 2, 3, 100]
    finally:
        j.close()
    assert "torn tail cut" in caplog.text


def test_a_crc_mismatch_is_reported_with_segment_and_offset(tmp_path, caplog):
    d = tmp_path / "j"
    found: list[JournalCorrupt] = []
    with Journal(d).open() as j:
        spans = _write(j, 3)
        first_seg = j.tail[0]
    with Journal(d).open() as j:  # a second segment after it
        _write(j, 2, start=10)
    path = d / f"{first_seg:012d}.jnl"
    bad_at = spans[1][0][1]
    data = bytearray(path.read_bytes())
    data[bad_at + HEADER_SIZE + 2] ^= 0xFF  # one bit-rotten byte in the 2nd record's payload
    path.write_bytes(bytes(data))
    with Journal(d, on_corrupt=found.append).open() as j:
        rows = [r[0] for r in _all(j)]
    # the damaged segment's rest is skipped, the next segment read on
    assert rows == [0, 10, 11]
    assert len(found) == 1 and found[0].path == path and found[0].offset == bad_at
    assert f"{path}" in str(found[0]) and f"offset {bad_at}" in str(found[0])
    assert "CRC mismatch" in caplog.text and "journal error" in caplog.text


def test_a_damaged_record_at_the_end_of_the_last_segment_is_cut_and_said(tmp_path, caplog):
    d = tmp_path / "j"
    found: list[JournalCorrupt] = []
    with Journal(d).open() as j:
        spans = _write(j, 3)
        seg = j.tail[0]
    path = d / f"{seg:012d}.jnl"
    data = bytearray(path.read_bytes())
    data[spans[2][0][1] + HEADER_SIZE] ^= 0x01
    path.write_bytes(bytes(data))
    with Journal(d, on_corrupt=found.append).open() as j:
        assert [r[0] for r in _all(j)] == [0, 1]
    assert found and found[0].offset == spans[2][0][1]
    assert "ERROR" in caplog.text or any(r.levelname == "ERROR" for r in caplog.records)


def test_replay_starts_at_the_watermark_across_restarts(tmp_path):
    d = tmp_path / "j"
    with Journal(d).open() as j:
        spans = _write(j, 4)
        j.set_watermark(spans[1][1])  # the database has the first two
    with Journal(d).open() as j:
        assert j.watermark == spans[1][1]
        assert [r[0] for r in _all(j, j.watermark)] == [2, 3]
        _write(j, 1, start=50)
        assert [r[0] for r in _all(j, j.watermark)] == [2, 3, 50]
        j.set_watermark(spans[0][1])  # never backwards
        assert j.watermark == spans[1][1]
    assert (d / "watermark.json").exists() and not list(d.glob(".*tmp"))


def test_retention_deletes_old_segments_below_the_watermark_only(tmp_path):
    d = tmp_path / "j"
    segs = []
    for i in range(3):
        with Journal(d).open() as j:
            _write(j, 1, start=i)
            segs.append(j.tail)
    paths = sorted(d.glob("*.jnl"))
    assert len(paths) == 3
    old = time.time() - 10 * 86400
    for p in paths:
        os.utime(p, (old, old))
    with Journal(d, retention_days=7).open() as j:
        j.set_watermark(segs[1])  # the database has segments 1 and 2 whole, not 3
        gone = j.prune()
        # segment 2 holds the watermark: not wholly below it yet
        assert gone == [paths[0]]
        assert [r[0] for r in _all(j, j.watermark)] == [2]
    fresh = tmp_path / "k"
    with Journal(fresh, retention_days=7).open() as j:
        _write(j, 1)
        j.set_watermark(j.tail)
    with Journal(fresh, retention_days=7).open() as j:
        assert j.prune() == []  # below the watermark but young


def test_a_second_process_is_refused_with_the_holder_named(tmp_path):
    d = tmp_path / "j"
    with Journal(d).open():
        code = (
            "import sys\n"
            "from engine.store.journal import Journal, JournalLocked\n"
            "try:\n"
            f"    Journal({str(d)!r}).open()\n"
            "except JournalLocked as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert out.returncode == 3, out.stderr
        assert f"pid {os.getpid()}" in out.stdout and str(d) in out.stdout
        assert "must not share a journal" in out.stdout
    # released with the holder
    with Journal(d).open():
        pass


def test_the_lock_is_taken_per_open_journal_in_one_process_too(tmp_path):
    d = tmp_path / "j"
    with Journal(d).open(), pytest.raises(JournalLocked):
        Journal(d).open()
