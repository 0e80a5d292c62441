"""Replay source: stream merge order, time windows, the snapshot rule, errors and the shipped sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import DataError
from engine.marketdata.reader import ColumnBatch, open_dataset
from engine.marketdata.writer import NS_PER_DAY, PartitionWriter
from engine.model import KIND_DELTA, KIND_SNAPSHOT, KIND_TRADE

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
DAY0 = 19_943 * NS_PER_DAY  # 2024-08-08
COLS = ("ts_event", "ts_recv", "kind", "side", "price", "size", "sequence", "seq_first", "batch_end", "stream")


def make_rows(ts: list[int], kind: list[int], seq0: int, batch_end: list[bool] | None = None) -> dict[str, np.ndarray]:
    n = len(ts)
    return {
        "ts_event": np.asarray(ts, dtype=np.int64) - 7,
        "ts_recv": np.asarray(ts, dtype=np.int64),
        "kind": np.asarray(kind, dtype=np.int8),
        "side": np.ones(n, dtype=np.int8),
        "price": np.arange(n, dtype=np.int64) + 1_000,
        "size": np.ones(n, dtype=np.int64),
        "sequence": np.arange(seq0, seq0 + n, dtype=np.int64),
        "seq_first": np.zeros(n, dtype=np.int64),
        "batch_end": np.ones(n, dtype=bool) if batch_end is None else np.asarray(batch_end),
    }


def write_stream(
    root: Path, venue: str, symbol: str, rows: dict[str, np.ndarray], scales: tuple[int, int] = (8, 8)
) -> None:
    with PartitionWriter(root, venue, symbol, *scales, "test", row_group_rows=4) as w:
        w.append(rows)


def collect(batches: list[ColumnBatch]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([getattr(b, k) for b in batches]) for k in COLS}


@pytest.fixture
def two_streams(tmp_path: Path) -> Path:
    # stream ids: 0 = (binance, BTC-USDT), 1 = (binance, ETH-USDT); ties on ts across and within streams
    t = DAY0
    write_stream(
        tmp_path, "binance", "ETH-USDT", make_rows([t + 1, t + 2, t + 2, t + 5, t + 5, t + 5, t + 9], [1] * 7, 100)
    )
    write_stream(
        tmp_path,
        "binance",
        "BTC-USDT",
        make_rows([t + 2, t + 2, t + 3, t + 5, t + 8, t + 8, t + 8, t + 9], [1] * 8, 200),
    )
    return tmp_path


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 5, 262_144])
def test_merge_is_by_ts_recv_then_stream_then_file_order(two_streams: Path, batch_rows: int) -> None:
    src = open_dataset(two_streams, batch_rows=batch_rows)
    assert src.streams == [("binance", "BTC-USDT"), ("binance", "ETH-USDT")]
    got = collect(list(src))
    assert len(got["ts_recv"]) == src.rows == 15
    # reference: sort all rows by (ts_recv, stream id, position in its stream)
    eth = pq.read_table(two_streams / "venue=binance/symbol=ETH-USDT").to_pandas()
    btc = pq.read_table(two_streams / "venue=binance/symbol=BTC-USDT").to_pandas()
    ref = sorted(
        [(int(r.ts_recv), 0, i, int(r.sequence)) for i, r in enumerate(btc.itertuples())]
        + [(int(r.ts_recv), 1, i, int(r.sequence)) for i, r in enumerate(eth.itertuples())]
    )
    assert got["ts_recv"].tolist() == [r[0] for r in ref]
    assert got["stream"].tolist() == [r[1] for r in ref]
    assert got["sequence"].tolist() == [r[3] for r in ref]
    assert got["stream"].dtype == np.int16
    assert got["kind"].dtype == np.int8 and got["batch_end"].dtype == np.bool_
    assert np.array_equal(got["ts_event"], got["ts_recv"] - 7)


def test_properties(two_streams: Path) -> None:
    src = open_dataset(two_streams, symbols=["ETH-USDT"])
    assert src.streams == [("binance", "ETH-USDT")]
    assert src.scales == {("binance", "ETH-USDT"): (8, 8)}
    assert [p.name for p in src.files] == ["part-0.parquet"]
    assert src.rows == 7
    assert (src.start_ns, src.end_ns) == (None, None)
    got = collect(list(src))
    assert set(got["stream"].tolist()) == {0}


def test_time_window_and_snapshot_rule(tmp_path: Path) -> None:
    t = DAY0
    # snapshot(2 rows) @1, delta @2, trade @3, delta @4, snapshot(2 rows) @5, delta @6, trade @7
    ts = [t + 1, t + 1, t + 2, t + 3, t + 4, t + 5, t + 5, t + 6, t + 7]
    kind = [
        KIND_SNAPSHOT,
        KIND_SNAPSHOT,
        KIND_DELTA,
        KIND_TRADE,
        KIND_DELTA,
        KIND_SNAPSHOT,
        KIND_SNAPSHOT,
        KIND_DELTA,
        KIND_TRADE,
    ]
    ends = [False, True, True, True, True, False, True, True, True]
    write_stream(tmp_path, "binance", "BTC-USDT", make_rows(ts, kind, 0, ends))
    whole = collect(list(open_dataset(tmp_path)))
    assert whole["sequence"].tolist() == list(range(9))
    # start after the first snapshot: its deltas are skipped until the next snapshot; trades stay
    src = open_dataset(tmp_path, start_ns=t + 2, end_ns=t + 7, batch_rows=2)
    got = collect(list(src))
    assert got["sequence"].tolist() == [3, 5, 6, 7]
    assert src.rows == 4
    # a window with no snapshot at or after its start has no book rows
    got = collect(list(open_dataset(tmp_path, start_ns=t + 6)))
    assert got["sequence"].tolist() == [8]
    # end only: rows before end, book rows kept as stored
    got = collect(list(open_dataset(tmp_path, end_ns=t + 3)))
    assert got["sequence"].tolist() == [0, 1, 2]


def test_start_inside_a_snapshot_waits_for_the_next_one(tmp_path: Path) -> None:
    t = DAY0
    # a snapshot spread over two times (one batch) must not be replayed from its middle
    ts = [t + 1, t + 2, t + 3, t + 4, t + 4]
    kind = [KIND_SNAPSHOT, KIND_SNAPSHOT, KIND_DELTA, KIND_SNAPSHOT, KIND_SNAPSHOT]
    write_stream(tmp_path, "deribit", "BTC-USD", make_rows(ts, kind, 0, [False, True, True, False, True]))
    got = collect(list(open_dataset(tmp_path, start_ns=t + 2)))
    assert got["sequence"].tolist() == [3, 4]


def test_shipped_sample(tmp_path: Path) -> None:
    src = open_dataset(SAMPLES)
    assert src.streams == [("binance", "BTC-USDT"), ("binance-futures", "BTC-USDT")]
    assert src.scales == {("binance", "BTC-USDT"): (8, 8), ("binance-futures", "BTC-USDT"): (8, 8)}
    assert len(src.files) == 3
    assert src.rows == 319_998 + 466_575
    total = 0
    last = -1
    per_stream = [0, 0]
    for b in src:
        assert b.ts_recv[0] >= last
        assert np.all(np.diff(b.ts_recv) >= 0)
        last = int(b.ts_recv[-1])
        total += len(b)
        per_stream[0] += int((b.stream == 0).sum())
        per_stream[1] += int((b.stream == 1).sum())
    assert total == src.rows
    assert per_stream == [319_998, 466_575]
    futures = open_dataset(SAMPLES, venue="binance-futures")
    assert futures.rows == 466_575
    # a window on the spot day files: only the 2024-08-09 partition is opened
    day2 = open_dataset(SAMPLES, venue="binance", start_ns=DAY0 + NS_PER_DAY)
    assert [p.parent.name for p in day2.files] == ["date=2024-08-09"]


def test_batches_kept_by_the_consumer_are_not_overwritten(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    for i, sym in enumerate(("BTC-USDT", "ETH-USDT", "SOL-USDT")):
        ts = np.sort(rng.integers(DAY0, DAY0 + 1_000, 300))
        write_stream(tmp_path, "binance", sym, make_rows(ts.tolist(), [1] * 300, 1_000 * i))
    # copies taken while iterating (the merge may recycle the arrays of dropped batches)
    copies = [{k: getattr(b, k).copy() for k in COLS} for b in open_dataset(tmp_path, batch_rows=8)]
    kept = list(open_dataset(tmp_path, batch_rows=8))
    assert len(kept) == len(copies) > 10
    for batch, ref in zip(kept, copies, strict=True):
        for name in COLS:
            assert np.array_equal(getattr(batch, name), ref[name]), name
    merged = np.concatenate([b.ts_recv for b in kept])
    assert np.all(np.diff(merged) >= 0)
    assert len(merged) == 900


def test_errors_name_the_file(tmp_path: Path, two_streams: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no market data partitions for venue=kraken"):
        open_dataset(two_streams, venue="kraken")
    with pytest.raises(DataError, match="empty time window"):
        open_dataset(two_streams, start_ns=5, end_ns=5)
    # corrupt: a truncated copy of a real file
    bad_root = tmp_path / "bad"
    src = next(SAMPLES.glob("venue=binance-futures/*/*/*.parquet"))
    dst = bad_root / src.relative_to(SAMPLES)
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(DataError) as info:
        open_dataset(bad_root)
    assert info.value.path == str(dst)
    assert "not a readable Parquet file" in str(info.value)


def test_wrong_schema_and_missing_metadata(tmp_path: Path) -> None:
    part = tmp_path / "venue=binance/symbol=BTC-USDT/date=2024-08-08/part-0.parquet"
    part.parent.mkdir(parents=True)
    rows = make_rows([DAY0 + 1], [1], 0)
    table = pa.table(rows).set_column(4, "price", pa.array([1.5]))
    pq.write_table(table, part)
    with pytest.raises(DataError, match="column price is double, expected int64") as info:
        open_dataset(tmp_path)
    assert info.value.path == str(part)
    pq.write_table(pa.table(rows), part)
    with pytest.raises(DataError, match=r"missing or bad hft\.price_scale metadata"):
        open_dataset(tmp_path)


def test_mixed_scales_in_one_stream_are_refused(tmp_path: Path) -> None:
    write_stream(tmp_path, "binance", "BTC-USDT", make_rows([DAY0 + 1], [1], 0), scales=(8, 8))
    other = tmp_path / "other"
    write_stream(other, "binance", "BTC-USDT", make_rows([DAY0 + NS_PER_DAY + 1], [1], 0), scales=(2, 8))
    shutil.copytree(
        other / "venue=binance/symbol=BTC-USDT/date=2024-08-09",
        tmp_path / "venue=binance/symbol=BTC-USDT/date=2024-08-09",
    )
    with pytest.raises(DataError, match="scales 2/8 differ"):
        open_dataset(tmp_path)


def test_latency_spans_read_two_columns_and_agree_with_a_pass_over_every_row() -> None:
    from engine.marketdata.reader import open_dataset
    from sim.venue_time import latency_spans

    root = Path(__file__).resolve().parents[1] / "data" / "samples"
    src = open_dataset(root, venue="binance-futures")
    spans = src.latency_spans()
    assert spans == latency_spans(lambda: iter(src))
    lo, hi = spans[0]
    # the shipped capture's clock runs ~1.27 s behind Binance's, and its rows take up to ~0.1 s more
    assert -1_300_000_000 < lo < hi < -1_100_000_000
