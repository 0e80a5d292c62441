"""Tardis CSV importer: the real sample files (units, sides, snapshot semantics) and edge cases."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from engine.errors import DataError
from engine.marketdata.importers.tardis import import_tardis, inspect_file
from engine.marketdata.reader import open_dataset
from engine.model import KIND_BBO, KIND_DELTA, KIND_SNAPSHOT, KIND_TRADE

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SAMPLES = REAL / "tardis_samples_nautilus"
BINANCE = REAL / "tardis_binance_futures_nautilus"

pytestmark = pytest.mark.skipif(not SAMPLES.exists(), reason="real data in ../shared/data/real is missing")

COLS = ("ts_event", "ts_recv", "kind", "side", "price", "size", "sequence", "seq_first", "batch_end")


def read_rows(root: Path, venue: str | None = None) -> dict[str, np.ndarray]:
    batches = list(open_dataset(root, venue=venue))
    return {k: np.concatenate([getattr(b, k) for b in batches]) for k in COLS}


def csv_lines(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()[1:]]


def test_inspect_recognises_every_sample() -> None:
    got = {p.name: (inspect_file(p).data_type, inspect_file(p).depth) for p in sorted(SAMPLES.glob("*.csv"))}
    assert got == {
        "binance-futures_book_snapshot_25_BTCUSDT.csv": ("book_snapshot", 25),
        "binance-futures_book_snapshot_5_BTCUSDT.csv": ("book_snapshot", 5),
        "bitmex_trades_XBTUSD.csv": ("trades", 0),
        "deribit_incremental_book_L2_BTC-PERPETUAL.csv": ("incremental_book_L2", 0),
        "huobi-dm-swap_quotes_BTC-USD.csv": ("quotes", 0),
    }


def test_deribit_snapshot_only_book(tmp_path: Path) -> None:
    src = SAMPLES / "deribit_incremental_book_L2_BTC-PERPETUAL.csv"
    (res,) = import_tardis([src], tmp_path)
    assert (res.venue, res.symbol) == ("deribit", "BTC-USD")
    assert res.rows == {"snapshot": 15, "delta": 0, "trade": 0, "bbo": 0}
    rows = read_rows(tmp_path)
    raw = csv_lines(src)
    # microseconds -> nanoseconds, exactly
    assert rows["ts_event"].tolist() == [int(r[2]) * 1000 for r in raw]
    assert rows["ts_recv"].tolist() == [int(r[3]) * 1000 for r in raw]
    assert rows["side"].tolist() == [-1] * 15  # all asks
    assert rows["price"].tolist() == [round(float(r[6]) * 100) for r in raw]  # price_scale 2
    assert rows["size"].tolist() == [int(r[7]) for r in raw]  # USD amounts, size_scale 0
    # one snapshot message: a single batch
    assert rows["batch_end"].tolist() == [False] * 14 + [True]
    assert rows["kind"].tolist() == [KIND_SNAPSHOT] * 15


def test_incremental_snapshot_runs_batches_and_leading_deltas(tmp_path: Path) -> None:
    header = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
    body = [
        "deribit,BTC-PERPETUAL,1,100,false,bid,10,5",  # before any snapshot: skipped
        "deribit,BTC-PERPETUAL,2,200,true,bid,10,5",
        "deribit,BTC-PERPETUAL,2,200,true,ask,11,6",
        "deribit,BTC-PERPETUAL,3,300,false,bid,10,0",
        "deribit,BTC-PERPETUAL,3,300,false,ask,11.5,1",
        "deribit,BTC-PERPETUAL,4,400,false,ask,11,0",
        "deribit,BTC-PERPETUAL,5,500,true,bid,9.5,2",  # snapshot after deltas: a new book
        "deribit,BTC-PERPETUAL,5,501,true,ask,12,2",  # same run, later time: still that snapshot
        "deribit,BTC-PERPETUAL,6,600,false,bid,9.5,3",
    ]
    path = tmp_path / "deribit_incremental_book_L2_BTC-PERPETUAL.csv.gz"
    path.write_bytes(gzip.compress(("\n".join([header, *body]) + "\n").encode()))
    (res,) = import_tardis([path], tmp_path / "out")
    assert res.dropped_book_rows == 1
    assert res.rows["snapshot"] == 4
    assert res.rows["delta"] == 4
    rows = read_rows(tmp_path / "out")
    assert rows["kind"].tolist() == [0, 0, 1, 1, 1, 0, 0, 1]
    assert rows["batch_end"].tolist() == [False, True, False, True, True, False, True, True]
    assert rows["price"].tolist() == [1000, 1100, 1000, 1150, 1100, 950, 1200, 950]
    assert rows["ts_recv"].tolist() == [t * 1000 for t in (200, 200, 300, 300, 400, 500, 501, 600)]


def test_bitmex_trades_with_uuid_ids(tmp_path: Path) -> None:
    src = SAMPLES / "bitmex_trades_XBTUSD.csv"
    (res,) = import_tardis([src], tmp_path)
    assert (res.venue, res.symbol) == ("bitmex", "XBT-USD")
    rows = read_rows(tmp_path)
    raw = csv_lines(src)
    assert rows["kind"].tolist() == [KIND_TRADE] * 10
    assert rows["side"].tolist() == [1 if r[5] == "buy" else -1 for r in raw]
    assert rows["size"].tolist() == [int(r[7]) for r in raw]
    first = int.from_bytes(hashlib.blake2b(raw[0][4].encode(), digest_size=8).digest(), "big") & ((1 << 63) - 1)
    assert rows["sequence"][0] == first
    assert len(set(rows["sequence"].tolist())) == 10
    assert rows["batch_end"].all()


def test_binance_futures_trades_and_quotes_share_one_stream(tmp_path: Path) -> None:
    files = [BINANCE / "tardis_trades.csv", BINANCE / "tardis_quotes.csv"]
    (res,) = import_tardis(files, tmp_path)
    assert (res.venue, res.symbol) == ("binance-futures", "BTC-USDT")
    assert res.rows == {"snapshot": 0, "delta": 0, "trade": 9_999, "bbo": 19_998}
    assert res.messages == {"quotes": 9_999, "trades": 9_999}
    assert [f.parent.name for f in res.files_written] == ["date=2020-02-22"]
    rows = read_rows(tmp_path)
    assert np.all(np.diff(rows["ts_recv"]) >= 0)
    trades = rows["kind"] == KIND_TRADE
    assert int((rows["side"][trades] == 1).sum()) == 5_267
    assert int((rows["side"][trades] == -1).sum()) == 4_732
    assert np.all(np.diff(rows["sequence"][trades]) == 1)
    assert rows["sequence"][trades][0] == 42_377_944
    assert rows["price"][trades][0] == 9682 * 10**8
    assert rows["size"][trades][0] == 13_200_000  # 0.132 at scale 8
    bbo = np.flatnonzero(rows["kind"] == KIND_BBO)
    assert rows["side"][bbo[:4]].tolist() == [1, -1, 1, -1]
    assert rows["batch_end"][bbo[:4]].tolist() == [False, True, False, True]
    # first quote: ask 0.84 @ 9682, bid 0.67 @ 9681.92
    assert rows["price"][bbo[:2]].tolist() == [968192000000, 968200000000]
    assert rows["size"][bbo[:2]].tolist() == [67_000_000, 84_000_000]


def test_book_snapshot_n_and_quotes_samples(tmp_path: Path) -> None:
    src = SAMPLES / "binance-futures_book_snapshot_5_BTCUSDT.csv"
    (res,) = import_tardis([src, SAMPLES / "huobi-dm-swap_quotes_BTC-USD.csv"], tmp_path)[:1]
    assert res.rows["snapshot"] == 100
    rows = read_rows(tmp_path, venue="binance-futures")
    first = csv_lines(src)[0]
    # one batch per CSV row: 5 bids best first, then 5 asks best first
    assert rows["batch_end"][:10].tolist() == [False] * 9 + [True]
    assert rows["side"][:10].tolist() == [1] * 5 + [-1] * 5
    bids = [round(float(first[6 + 4 * i]) * 10**8) for i in range(5)]
    asks = [round(float(first[4 + 4 * i]) * 10**8) for i in range(5)]
    assert rows["price"][:10].tolist() == bids + asks
    huobi = read_rows(tmp_path, venue="huobi-dm-swap")
    assert len(huobi["kind"]) == 20
    assert set(huobi["kind"].tolist()) == {KIND_BBO}
    assert huobi["size"][:2].tolist() == [806, 5494]  # contracts: bid 806, ask 5494


def test_snapshot_25_sample(tmp_path: Path) -> None:
    (res,) = import_tardis([SAMPLES / "binance-futures_book_snapshot_25_BTCUSDT.csv"], tmp_path)
    assert res.rows["snapshot"] == 500
    rows = read_rows(tmp_path)
    assert int(rows["batch_end"].sum()) == 10
    assert not (rows["kind"] == KIND_DELTA).any()


def test_malformed_rows_are_counted(tmp_path: Path) -> None:
    header = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
    body = [
        "bitmex,XBTUSD,1,10,a,buy,100,1",
        "bitmex,XBTUSD,2,20,b,sideways,100,1",  # bad side
        "bitmex,XBTUSD,3,30,c,sell,1e5,1",  # not a plain decimal
        "bitmex,XBTUSD,4,40,d,sell",  # too few columns
        "bitmex,XBTUSD,x,50,e,sell,100,1",  # bad timestamp
        "bitmex,XBTUSD,6,60,7,unknown,100.5,2",
    ]
    path = tmp_path / "bitmex_trades_XBTUSD.csv"
    path.write_text("\r\n".join([header, *body[:3], "", *body[3:]]) + "\r\n")  # Windows line ends, a blank line
    (res,) = import_tardis([path], tmp_path / "out")
    assert res.malformed == 4
    assert res.rows["trade"] == 2
    reasons = {p.line: p.reason for p in res.malformed_positions}
    assert set(reasons) == {3, 4, 6, 7}
    assert "bad timestamp" in reasons[7]
    assert "expected 8 comma-separated fields" in reasons[6]
    assert res.messages == {"trades": 6}
    rows = read_rows(tmp_path / "out")
    assert rows["side"].tolist() == [1, 0]
    assert rows["sequence"][1] == 7


def test_not_a_tardis_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="not a Tardis CSV"):
        import_tardis([path], tmp_path)
    with pytest.raises(DataError, match="file not found"):
        import_tardis([tmp_path / "none.csv"], tmp_path)
