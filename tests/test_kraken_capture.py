"""Kraken captures: ``hft record`` against the fake Kraken writes the frames as received and the
importer turns them into the market-data Parquet, every book message checked by its CRC32; a
capture built from the real fixtures imports, and a corrupted checksum becomes a gap and a book
reset, never a wrong book."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import duckdb

from engine.runners.record import run_record
from sim.fake_kraken import FakeKraken
from venues.kraken import capture_import as ci
from venues.kraken.adapter import KrakenAdapter
from venues.kraken.config import parse_config

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "venues" / "kraken"


def fixture_line(ts: int, name: str) -> bytes:
    body = b"".join(x.strip() for x in (FIX / name).read_bytes().splitlines())
    return b"%d %s\n" % (ts, body)


def test_capture_of_real_frames_imports_with_checksums(tmp_path):
    header = b'1 {"capture":"kraken-ws-v2","depth":10,"pairs":{"ETH/USD":{"price_precision":2,"qty_precision":8}}}\n'
    lines = [
        header,
        fixture_line(10, "ws_v2_book_snapshot_ETH-USD_live.json"),
        fixture_line(20, "ws_v2_book_update_ETH-USD_live.json"),
        b"30 not json\n",
    ]
    cap = tmp_path / "cap.gz"
    cap.write_bytes(gzip.compress(b"".join(lines)))
    assert ci.sniff(cap)
    [res] = ci.import_files([cap], tmp_path / "pq")
    assert res.symbol == "ETH-USD" and res.gaps == 0 and res.malformed == 1
    assert res.rows["snapshot"] == 20 and res.rows["delta"] == 2
    con = duckdb.connect()
    got = con.execute(
        f"select kind, side, price, size from read_parquet('{tmp_path}/pq/**/*.parquet') where kind = 1 order by price"
    ).fetchall()
    assert got == [(1, -1, 179729, 0), (1, -1, 179752, 156601318)]  # the update's two ask levels, fixed point

    # the same capture with the update's checksum corrupted: a gap and a book reset, no delta rows
    bad = lines[2].replace(b"3329440863", b"3329440864")
    cap2 = tmp_path / "bad.gz"
    cap2.write_bytes(gzip.compress(b"".join([header, lines[1], bad])))
    res2 = ci.import_kraken_capture([cap2], tmp_path / "pq2", "ETH-USD")
    assert res2.gaps == 1 and res2.book_resets == 1 and res2.rows["delta"] == 0
    assert "checksum" in str(res2.gap_positions[0])


def test_record_against_the_fake(tmp_path):
    async def main():
        async with FakeKraken(speed=30) as fk:
            cfg = parse_config(
                {"rest_url": fk.rest_url, "ws_url": fk.ws_url, "ws_auth_url": fk.ws_auth_url, "symbols": ["BTC-USD"]},
                "k.json",
                env={},
            )
            return await run_record(KrakenAdapter(cfg), tmp_path / "rec", duration_s=3.0, flush_interval_s=0.2)

    summary = asyncio.run(asyncio.wait_for(main(), 60))
    raw = sorted((tmp_path / "rec" / "raw").glob("kraken_*.gz"))
    assert raw
    [res] = ci.import_files(raw, tmp_path / "again")
    assert res.gaps == 0 and res.rows["snapshot"] > 0 and res.rows["delta"] > 0
    text = repr(summary)
    assert "BTC-USD" in text
