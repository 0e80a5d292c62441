"""The partitioned Parquet writer: layout, order, row groups, metadata, safety and determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.errors import DataError
from engine.marketdata.schema import SCHEMA
from engine.marketdata.writer import NS_PER_DAY, PartitionWriter

DAY0 = 19_943 * NS_PER_DAY  # 2024-08-08 00:00 UTC


def rows(ts: list[int] | np.ndarray, start_seq: int = 0) -> dict[str, np.ndarray]:
    ts = np.asarray(ts, dtype=np.int64)
    n = len(ts)
    seq = np.arange(start_seq, start_seq + n, dtype=np.int64)
    return {
        "ts_event": ts + 5,
        "ts_recv": ts,
        "kind": np.ones(n, dtype=np.int8),
        "side": np.where(seq % 2 == 0, 1, -1).astype(np.int8),
        "price": 100 + seq,
        "size": seq * 10,
        "sequence": seq,
        "seq_first": seq,
        "batch_end": np.ones(n, dtype=bool),
    }


def write(root: Path, batches: list[dict[str, np.ndarray]], **kw: object) -> list[Path]:
    with PartitionWriter(root, "binance", "BTC-USDT", 8, 8, "test:unit", **kw) as w:
        for b in batches:
            w.append(b)
    return w.files


def test_layout_metadata_and_schema(tmp_path: Path) -> None:
    files = write(tmp_path, [rows([DAY0 + 1, DAY0 + 2])])
    assert files == [tmp_path / "venue=binance/symbol=BTC-USDT/date=2024-08-08/part-0.parquet"]
    pf = pq.ParquetFile(files[0])
    meta = pf.schema_arrow.metadata
    assert meta[b"hft.price_scale"] == b"8"
    assert meta[b"hft.size_scale"] == b"8"
    assert meta[b"hft.source"] == b"test:unit"
    assert meta[b"hft.venue"] == b"binance"
    assert meta[b"hft.symbol"] == b"BTC-USDT"
    assert pf.schema_arrow.remove_metadata().equals(SCHEMA)
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    table = pf.read()
    assert table.column("venue").to_pylist() == ["binance", "binance"]
    assert table.column("symbol").to_pylist() == ["BTC-USDT", "BTC-USDT"]


def test_sorted_by_ts_recv_with_arrival_order_as_tie_break(tmp_path: Path) -> None:
    ts = [DAY0 + t for t in (5, 3, 3, 9, 1, 3)]
    files = write(tmp_path, [rows(ts[:3]), rows(ts[3:], start_seq=3)])
    table = pq.read_table(files[0])
    assert table.column("ts_recv").to_pylist() == [DAY0 + t for t in (1, 3, 3, 3, 5, 9)]
    # rows with ts 3 keep their arrival order: sequence 1, 2, then 5
    assert table.column("sequence").to_pylist() == [4, 1, 2, 5, 0, 3]


def test_row_groups_and_date_partitions(tmp_path: Path) -> None:
    # 2,500 rows spanning midnight; small row groups to see the cuts.
    ts = DAY0 + NS_PER_DAY - 1_000 + np.arange(2_500, dtype=np.int64)
    files = write(tmp_path, [rows(ts[i : i + 333], i) for i in range(0, 2_500, 333)], row_group_rows=400)
    assert [f.parent.name for f in files] == ["date=2024-08-08", "date=2024-08-09"]
    first, second = (pq.ParquetFile(f) for f in files)
    assert first.metadata.num_rows == 1_000
    assert second.metadata.num_rows == 1_500
    sizes = [first.metadata.row_group(i).num_rows for i in range(first.num_row_groups)]
    sizes += [second.metadata.row_group(i).num_rows for i in range(second.num_row_groups)]
    assert max(sizes) <= 400
    assert sum(sizes) == 2_500
    got = np.concatenate([pq.read_table(f).column("sequence").to_numpy() for f in files])
    assert got.tolist() == list(range(2_500))


def test_memory_is_bounded_while_streaming(tmp_path: Path) -> None:
    with PartitionWriter(tmp_path, "binance", "BTC-USDT", 8, 8, "t", row_group_rows=1_000) as w:
        peak = 0
        for i in range(100):
            w.append(rows(DAY0 + np.arange(i * 250, (i + 1) * 250), i * 250))
            peak = max(peak, w._pending_rows)
    assert peak < 2 * 1_000 + 250
    assert w.rows_written == 25_000


def test_existing_partition_needs_overwrite(tmp_path: Path) -> None:
    write(tmp_path, [rows([DAY0 + 1])])
    with pytest.raises(DataError, match="partition already holds 1 file"):
        write(tmp_path, [rows([DAY0 + 2])])
    files = write(tmp_path, [rows([DAY0 + 7, DAY0 + 8])], overwrite=True)
    assert pq.read_table(files[0]).column("ts_recv").to_pylist() == [DAY0 + 7, DAY0 + 8]
    assert len(list(files[0].parent.glob("*.parquet"))) == 1


def test_rows_far_out_of_order_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not in ts_recv order"):
        write(tmp_path, [rows(DAY0 + np.arange(100, 400)), rows([DAY0 + 1])], row_group_rows=100)


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    batches = [rows(DAY0 + np.arange(i, i + 700) * 3, i) for i in range(0, 7_000, 700)]
    a = write(tmp_path / "a", batches, row_group_rows=1_000)
    # different append sizes, same rows
    joined = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    b = write(
        tmp_path / "b",
        [{k: v[:123] for k, v in joined.items()}, {k: v[123:] for k, v in joined.items()}],
        row_group_rows=1_000,
    )
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))


def test_failed_import_leaves_nothing_behind(tmp_path: Path) -> None:
    ts = DAY0 + NS_PER_DAY - 500 + np.arange(1_000, dtype=np.int64)
    with (
        pytest.raises(RuntimeError, match="input broke"),
        PartitionWriter(tmp_path, "binance", "BTC-USDT", 8, 8, "t", row_group_rows=100) as w,
    ):
        w.append(rows(ts))
        assert w.files  # the first day is complete, the second in progress
        raise RuntimeError("input broke")
    assert not list(tmp_path.rglob("*.parquet*"))


def test_files_appear_only_when_complete(tmp_path: Path) -> None:
    with PartitionWriter(tmp_path, "binance", "BTC-USDT", 8, 8, "t", row_group_rows=100) as w:
        w.append(rows(DAY0 + np.arange(500, dtype=np.int64)))
        assert not list(tmp_path.rglob("*.parquet"))
        assert len(list(tmp_path.rglob("*.parquet.partial"))) == 1
    assert [p.name for p in tmp_path.rglob("*.parquet*")] == ["part-0.parquet"]
