"""Binance capture importer against the real hftbacktest captures in ../shared/data/real.

The strongest check is Binance's own oracle: bookTicker shares the depth update-id space, so
after replaying the depth message with final id u through ``engine.book.Book``, the best bid
and ask (price and size) must equal the last bookTicker with u' <= u.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.book import Book
from engine.errors import DataError
from engine.marketdata.importers.result import ImportResult
from engine.marketdata.instruments import get_instrument
from engine.marketdata.reader import open_dataset
from engine.model import KIND_BBO, KIND_DELTA, KIND_SNAPSHOT, KIND_TRADE
from venues.binance.capture_import import detect_capture, import_binance_capture

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
USDM_BTC = REAL / "binance_usdm_hftbacktest" / "btcusdt_20240808.gz"
SPOT = [REAL / "binance_spot_hftbacktest" / f"btcusdt_2024080{d}.gz" for d in (8, 9)]
COINM = REAL / "binance_coinm_hftbacktest" / "btcusd_perp_20240808.gz"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"

Imported = tuple[Path, ImportResult]

pytestmark = pytest.mark.skipif(not USDM_BTC.exists(), reason="real data in ../shared/data/real is missing")


def read_rows(root: Path) -> dict[str, np.ndarray]:
    batches = list(open_dataset(root))
    return {
        k: np.concatenate([getattr(b, k) for b in batches])
        for k in ("ts_event", "ts_recv", "kind", "side", "price", "size", "sequence", "seq_first", "batch_end")
    }


def bbo_oracle(root: Path, venue: str, symbol: str) -> tuple[int, int, int]:
    """Replay through Book; returns (depth messages applied, checked against bookTicker, mismatches)."""
    book = Book(get_instrument(venue, symbol))
    states: list[tuple[int, int, int, int, int]] = []
    tickers: list[tuple[int, int, int, int, int]] = []
    prev_kind, prev_end, bid = -1, True, (0, 0)
    for b in open_dataset(root):
        cols = (
            b.kind.tolist(),
            b.side.tolist(),
            b.price.tolist(),
            b.size.tolist(),
            b.sequence.tolist(),
            b.batch_end.tolist(),
        )
        for kind, side, price, size, seq, end in zip(*cols, strict=True):
            if kind in (KIND_SNAPSHOT, KIND_DELTA):
                if kind == KIND_SNAPSHOT and (prev_kind != KIND_SNAPSHOT or prev_end):
                    book.clear()
                book.apply_level(side, price, size)
                if end:
                    book.refresh_top()
                    if kind == KIND_DELTA:
                        top = (
                            book.best_bid_fixed,
                            book.best_bid_size_fixed,
                            book.best_ask_fixed,
                            book.best_ask_size_fixed,
                        )
                        states.append((seq, *top))
            elif kind == KIND_BBO:
                if side == 1:
                    bid = (price, size)
                else:
                    tickers.append((seq, bid[0], bid[1], price, size))
            prev_kind, prev_end = kind, end
    tickers.sort(key=lambda t: t[0])
    ids = np.array([t[0] for t in tickers], dtype=np.int64)
    checked = mismatches = 0
    for seq, *top in states:
        j = int(np.searchsorted(ids, seq, side="right")) - 1
        if j < 0:
            continue
        checked += 1
        mismatches += tuple(tickers[j][1:]) != tuple(top)
    return len(states), checked, mismatches


@pytest.fixture(scope="module")
def usdm_bbo(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    root = tmp_path_factory.mktemp("usdm_bbo")
    return root, import_binance_capture([USDM_BTC], root, include_bbo=True)


@pytest.fixture(scope="module")
def spot_bbo(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    root = tmp_path_factory.mktemp("spot_bbo")
    return root, import_binance_capture(SPOT, root, include_bbo=True)


@pytest.fixture(scope="module")
def usdm_plain(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    root = tmp_path_factory.mktemp("usdm_plain")
    return root, import_binance_capture([USDM_BTC], root, "binance-futures")


def test_detects_venue_and_symbol_from_content() -> None:
    assert detect_capture(USDM_BTC) == ("binance-futures", "BTCUSDT")
    assert detect_capture(SPOT[1]) == ("binance", "BTCUSDT")
    assert detect_capture(COINM) == ("binance-delivery", "BTCUSD_PERP")


def test_usdm_counts_match_sources(usdm_plain: Imported) -> None:
    root, res = usdm_plain
    assert (res.venue, res.symbol) == ("binance-futures", "BTC-USDT")
    assert res.messages == {"snapshot": 1, "depthUpdate": 6_551, "trade": 21_313, "bookTicker": 66_089}
    assert res.levels_seen == 443_521
    assert res.rows["trade"] == 21_313
    assert res.rows["snapshot"] == 2_000
    assert res.rows["bbo"] == 0
    # the first 4 depth messages end before the snapshot: the 5th bridges it (formats doc quirk 4)
    assert res.dropped_book_messages == 4
    assert res.rows["delta"] + res.dropped_book_rows == 443_521
    assert (res.gaps, res.malformed, res.book_resets) == (0, 0, 0)
    rows = read_rows(root)
    snap = rows["kind"] == KIND_SNAPSHOT
    assert int((rows["side"][snap] == 1).sum()) == 1_000
    assert int((rows["side"][snap] == -1).sum()) == 1_000
    assert np.all(np.diff(rows["ts_recv"]) >= 0)
    trades = rows["kind"] == KIND_TRADE
    assert np.all(np.diff(rows["sequence"][trades]) == 1)  # contiguous trade ids
    assert len(res.files_written) == 1
    assert res.files_written[0].parent.name == "date=2024-08-08"


def _raw_lines(path: Path, n: int) -> list[tuple[int, dict]]:
    out = []
    with gzip.open(path, "rt") as fh:
        for _ in range(n):
            recv, _, body = fh.readline().partition(" ")
            out.append((int(recv), json.loads(body)))
    return out


def test_usdm_field_mapping(usdm_plain: Imported) -> None:
    root, _ = usdm_plain
    rows = read_rows(root)
    raw = _raw_lines(USDM_BTC, 60)
    snap_recv, snap = next((r, m) for r, m in raw if "lastUpdateId" in m)
    first_trade = next((r, m["data"]) for r, m in raw if m.get("stream", "").endswith("@trade"))
    bridge = next(
        (r, m["data"])
        for r, m in raw
        if m.get("data", {}).get("e") == "depthUpdate" and m["data"]["U"] <= snap["lastUpdateId"] <= m["data"]["u"]
    )
    # snapshot batch: one message, sequence = lastUpdateId, ts_event = T, bids then asks
    s = np.flatnonzero(rows["kind"] == KIND_SNAPSHOT)
    assert rows["ts_recv"][s[0]] == snap_recv
    assert rows["sequence"][s[0]] == snap["lastUpdateId"]
    assert rows["ts_event"][s[0]] == snap["T"] * 1_000_000
    assert rows["batch_end"][s].tolist() == [False] * 1_999 + [True]
    assert rows["price"][s[0]] == int(snap["bids"][0][0].replace(".", "")) * 10**6
    assert rows["side"][s[:1000]].tolist() == [1] * 1000
    # the bridging update arrived before the snapshot: written right after it, at the snapshot's time
    d = s[-1] + 1
    assert rows["kind"][d] == KIND_DELTA
    assert (rows["sequence"][d], rows["seq_first"][d]) == (bridge[1]["u"], bridge[1]["U"])
    assert rows["ts_event"][d] == bridge[1]["T"] * 1_000_000
    assert rows["ts_recv"][d] == snap_recv > bridge[0]
    # trade: aggressor from m (false -> taker bought), id, T in ns, exact price/size
    t = np.flatnonzero(rows["kind"] == KIND_TRADE)[0]
    assert rows["ts_recv"][t] == first_trade[0]
    assert rows["sequence"][t] == first_trade[1]["t"]
    assert rows["ts_event"][t] == first_trade[1]["T"] * 1_000_000
    assert rows["side"][t] == (-1 if first_trade[1]["m"] else 1)
    assert rows["price"][t] == 6180030000000
    assert rows["size"][t] == 600_000


def test_usdm_book_matches_every_book_ticker(usdm_bbo: Imported) -> None:
    root, res = usdm_bbo
    assert res.rows["bbo"] == 2 * 66_089
    applied, checked, mismatches = bbo_oracle(root, "binance-futures", "BTC-USDT")
    assert applied == 6_547
    assert checked == 6_547
    assert mismatches == 0


def test_spot_two_days_stitch_without_gaps(spot_bbo: Imported) -> None:
    root, res = spot_bbo
    assert res.gaps == 0
    assert res.malformed == 0
    assert res.messages["snapshot"] == 1
    assert res.messages["depthUpdate"] == 3_451 + 3_044
    assert res.levels_seen == 124_090 + 174_021
    assert res.rows["trade"] == 9_757 + 10_147
    assert [f.parent.name for f in res.files_written] == ["date=2024-08-08", "date=2024-08-09"]
    rows = read_rows(root)
    depth = rows["kind"] == KIND_DELTA
    # spot depth carries E (no T); snapshot and bookTicker carry no time at all
    assert np.all(rows["ts_event"][depth] > 0)
    assert np.all(rows["ts_event"][(rows["kind"] == KIND_SNAPSHOT) | (rows["kind"] == KIND_BBO)] == 0)
    # the chain continues across the day files: U = previous u + 1 everywhere
    ends = depth & rows["batch_end"]
    u, first = rows["sequence"][ends], rows["seq_first"][ends]
    assert np.all(first[1:] == u[:-1] + 1)
    applied, checked, mismatches = bbo_oracle(root, "binance", "BTC-USDT")
    assert applied == 6_493
    assert checked == 6_493
    assert mismatches == 2  # bookTicker saw levels that lived inside one 100 ms depth batch


def test_coinm_counts(tmp_path: Path) -> None:
    res = import_binance_capture([COINM], tmp_path)
    assert (res.venue, res.symbol) == ("binance-delivery", "BTC-USD")
    assert res.messages["depthUpdate"] == 26_847
    assert res.levels_seen == 296_013
    assert res.rows["trade"] == 2_286
    assert res.messages["depthUpdate"] - res.dropped_book_messages == 26_824
    assert res.gaps == 0
    rows = read_rows(tmp_path)
    assert rows["size"][rows["kind"] == KIND_TRADE].min() % 10**8 == 0  # whole contracts


def _copy_lines(src: Path, dst: Path, edit: Callable[[int, bytes], bytes | None]) -> None:
    with gzip.open(src, "rb") as fin, gzip.open(dst, "wb", compresslevel=1) as fout:
        for n, line in enumerate(fin, start=1):
            out = edit(n, line)
            if out is not None:
                fout.write(out)


def test_dropped_depth_line_is_a_gap_and_stops_the_book(tmp_path: Path) -> None:
    depth_lines = []

    def drop(n: int, line: bytes) -> bytes | None:
        if b"@depth" in line[:60]:
            depth_lines.append(n)
            if len(depth_lines) == 1_000:
                return None
        return line

    copy = tmp_path / "btcusdt_20240808.gz"
    _copy_lines(USDM_BTC, copy, drop)
    res = import_binance_capture([copy], tmp_path / "out", "binance-futures")
    assert res.gaps == 1
    assert res.book_resets == 1
    pos = res.gap_positions[0]
    assert pos.file == copy.name
    assert pos.line == depth_lines[1_000] - 1  # the next depth line, one line earlier in the copy
    assert "Market data sequence gap" in pos.reason
    assert res.rows["trade"] == 21_313  # trades are not part of the book and all survive
    rows = read_rows(tmp_path / "out")
    book = np.flatnonzero((rows["kind"] == KIND_SNAPSHOT) | (rows["kind"] == KIND_DELTA))
    reset = np.flatnonzero((rows["kind"] == KIND_SNAPSHOT) & (rows["price"] == 0))
    assert len(reset) == 1
    # the reset row is an empty snapshot batch and the last book row: no snapshot follows
    assert book[-1] == reset[0]
    assert rows["batch_end"][reset[0]]
    assert rows["size"][reset[0]] == 0
    # it carries the last update id the book had applied
    assert rows["kind"][book[-2]] == KIND_DELTA
    assert rows["sequence"][reset[0]] == rows["sequence"][book[-2]]


def _line(recv: int, stream: str, data: dict, compact: bool = True) -> bytes:
    sep = (",", ":") if compact else (", ", ": ")
    return f"{recv} {json.dumps({'stream': stream, 'data': data}, separators=sep)}\n".encode()


def _futures_depth(recv: int, first: int, last: int, prev: int, bids: list, asks: list) -> bytes:
    data = {
        "e": "depthUpdate",
        "E": recv,
        "T": recv - 1,
        "s": "BTCUSDT",
        "U": first,
        "u": last,
        "pu": prev,
        "b": bids,
        "a": asks,
    }
    return _line(recv, "btcusdt@depth@0ms", data)


def _snapshot(recv: int, last_id: int, bids: list, asks: list) -> bytes:
    body = {"lastUpdateId": last_id, "E": recv, "T": recv, "bids": bids, "asks": asks}
    return f"{recv} {json.dumps(body, separators=(',', ':'))}\n".encode()


def test_fresh_snapshot_resyncs_after_a_gap(tmp_path: Path) -> None:
    lines = [
        _futures_depth(9, 90, 95, 80, [["99.0", "1"]], []),  # before the snapshot, ends before it: dropped
        _snapshot(10, 100, [["100.0", "1.5"]], [["101.0", "2"]]),
        _futures_depth(11, 95, 105, 95, [["100.0", "1"]], []),  # bridges U <= 100 <= u
        _futures_depth(12, 106, 110, 105, [], [["101.0", "0"], ["102.0", "3"]]),
        _futures_depth(13, 115, 120, 112, [["100.5", "1"]], []),  # pu 112 != 110: gap
        _line(14, "btcusdt@trade", {"e": "trade", "E": 14, "T": 14, "t": 7, "p": "101.5", "q": "0.5", "m": True}),
        _futures_depth(15, 121, 125, 120, [["100.2", "4"]], []),  # held, bridges the next snapshot
        _snapshot(16, 123, [["100.1", "1"]], [["102.0", "1"]]),
        _futures_depth(17, 126, 130, 125, [], [["102.0", "2"]]),
    ]
    path = tmp_path / "btcusdt_20240808.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    res = import_binance_capture([path], tmp_path / "out", "binance-futures", "BTC-USDT")
    assert res.gaps == 1
    assert res.gap_positions[0].line == 5
    assert "expected pu=110, got pu=112" in res.gap_positions[0].reason
    assert res.book_resets == 1
    assert res.dropped_book_messages == 2  # line 1 (before sync) and line 5 (superseded by the new snapshot)
    rows = read_rows(tmp_path / "out")
    got = list(
        zip(
            rows["ts_recv"].tolist(),
            rows["kind"].tolist(),
            rows["sequence"].tolist(),
            rows["price"].tolist(),
            strict=True,
        )
    )
    p = 10**8
    assert got == [
        (10, KIND_SNAPSHOT, 100, 100 * p),
        (10, KIND_SNAPSHOT, 100, 101 * p),
        (11, KIND_DELTA, 105, 100 * p),
        (12, KIND_DELTA, 110, 101 * p),
        (12, KIND_DELTA, 110, 102 * p),
        (13, KIND_SNAPSHOT, 110, 0),  # book reset where the chain broke
        (14, KIND_TRADE, 7, int(101.5 * p)),
        (16, KIND_SNAPSHOT, 123, int(100.1 * p)),
        (16, KIND_SNAPSHOT, 123, 102 * p),
        (16, KIND_DELTA, 125, int(100.2 * p)),  # held update, written at the snapshot's time
        (17, KIND_DELTA, 130, 102 * p),
    ]
    assert rows["side"][6] == -1  # m = true: the taker sold
    assert rows["batch_end"].tolist() == [False, True, True, False, True, True, True, False, True, True, True]


def test_spot_sync_rules(tmp_path: Path) -> None:
    def depth(recv: int, first: int, last: int, bids: list) -> bytes:
        data = {"e": "depthUpdate", "E": recv, "s": "BTCUSDT", "U": first, "u": last, "b": bids, "a": []}
        return _line(recv, "btcusdt@depth@100ms", data, compact=False)  # not the collector's byte layout

    lines = [
        _snapshot(10, 100, [["100.00000000", "1.00000000"]], [["101.00000000", "1.00000000"]]).replace(
            b',"E":10,"T":10', b""
        ),
        depth(11, 90, 100, [["99.0", "1"]]),  # u <= L: dropped
        depth(12, 100, 104, [["99.5", "1"]]),  # U <= L+1 <= u: first applied
        depth(13, 105, 106, [["99.6", "1"]]),  # U == previous u + 1
        depth(14, 108, 109, [["99.7", "1"]]),  # 107 missing: gap
    ]
    path = tmp_path / "btcusdt_20240808.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    res = import_binance_capture([path], tmp_path / "out", "binance")
    assert res.dropped_book_messages == 2  # line 2 before sync, line 5 never bridged
    assert res.gaps == 1
    assert "expected U=107, got U=108" in res.gap_positions[0].reason
    rows = read_rows(tmp_path / "out")
    assert rows["sequence"].tolist() == [100, 100, 104, 106, 106]
    assert rows["ts_event"].tolist() == [0, 0, 12_000_000, 13_000_000, 14_000_000]


def test_malformed_lines_are_counted_and_nothing_else_is_lost(tmp_path: Path) -> None:
    with gzip.open(USDM_BTC, "rb") as fh:
        head = [fh.readline() for _ in range(3_000)]
    clean = tmp_path / "clean" / "btcusdt_20240808.gz"
    clean.parent.mkdir()
    clean.write_bytes(gzip.compress(b"".join(head)))
    trade_at = next(i for i, line in enumerate(head) if i > 100 and b"@trade" in line[:60])
    dirty_lines = list(head)
    dirty_lines[trade_at] = head[trade_at].replace(b'"p":"', b'"p":"1e')  # not an exact decimal
    garbage = [
        b"garbage\n",
        b"\n",
        b"12x {}\n",
        b"1723161255030314667 {not json\n",
        b'1723161255030314667 {"stream":"btcusdt@trade","data":{"e":"trade"}}\n',
        b'1723161255030314667 {"stream":"btcusdt@bookTicker","data":{"u":1,\n',
        b'1723161255030314667 {"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","U":"x"}}\n',
    ]
    dirty_lines[200:200] = garbage
    dirty = tmp_path / "dirty" / "btcusdt_20240808.gz"
    dirty.parent.mkdir()
    dirty.write_bytes(gzip.compress(b"".join(dirty_lines)))
    ok = import_binance_capture([clean], tmp_path / "clean_out")
    bad = import_binance_capture([dirty], tmp_path / "dirty_out")
    assert bad.malformed == 7  # 6 garbage lines (the blank one is not a line of data) + the bad trade
    lines = sorted(p.line for p in bad.malformed_positions)
    trade_line = trade_at + 1 + (len(garbage) if trade_at >= 200 else 0)
    assert lines == sorted([201, 203, 204, 205, 206, 207, trade_line])
    assert bad.gaps == 0
    assert bad.rows["trade"] == ok.rows["trade"] - 1
    assert {k: v for k, v in bad.rows.items() if k != "trade"} == {k: v for k, v in ok.rows.items() if k != "trade"}
    a, b = read_rows(tmp_path / "clean_out"), read_rows(tmp_path / "dirty_out")
    keep = ~((a["kind"] == KIND_TRADE) & (a["ts_recv"] == int(head[trade_at].split(b" ")[0])))
    for name in a:
        assert np.array_equal(a[name][keep], b[name]), name


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    data = USDM_BTC.read_bytes()
    cut = tmp_path / "btcusdt_20240808.gz"
    cut.write_bytes(data[: len(data) // 3])
    res = import_binance_capture([cut], tmp_path / "out")
    assert res.malformed >= 1
    assert any("truncated or corrupt gzip" in p.reason for p in res.malformed_positions)
    assert res.rows["trade"] > 1_000
    assert res.rows["delta"] > 10_000


def test_wrong_venue_for_the_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no 'pu'.*venue is binance-futures"):
        import_binance_capture([SPOT[0]], tmp_path, "binance-futures")
    with pytest.raises(DataError, match="not a Binance venue"):
        import_binance_capture([SPOT[0]], tmp_path, "kraken")
    with pytest.raises(DataError, match="the file holds BTCUSDT but ETH-USDT on binance is ETHUSDT"):
        import_binance_capture([SPOT[0]], tmp_path, "binance", "ETH-USDT")
    with pytest.raises(DataError, match="file not found"):
        import_binance_capture([tmp_path / "missing.gz"], tmp_path)
    assert not list(tmp_path.rglob("*.parquet*"))  # nothing half-written stays behind


def test_import_is_deterministic_and_matches_the_shipped_sample(usdm_plain: Imported, tmp_path: Path) -> None:
    root, first = usdm_plain
    again = import_binance_capture([USDM_BTC], tmp_path, "binance-futures")
    a, b = first.files_written, again.files_written
    assert [p.relative_to(root) for p in a] == [p.relative_to(tmp_path) for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    shipped = SAMPLES / a[0].relative_to(root)
    assert shipped.exists()
    assert pq.read_table(shipped).equals(pq.read_table(a[0]))


def _trade(recv: int, trade_id: int, stream: str = "btcusdt@trade", symbol: str = "BTCUSDT") -> bytes:
    data = {"e": "trade", "E": recv, "T": recv, "s": symbol, "t": trade_id, "p": "100.5", "q": "0.5", "m": False}
    return _line(recv, stream, data)


def test_a_damaged_stream_name_is_malformed_with_its_position_not_skipped(tmp_path: Path) -> None:
    """A trade under a damaged name must not vanish as 'not imported': it is counted malformed,
    with its line; well-formed streams that are not imported are still skipped."""
    lines = [
        _snapshot(10, 100, [["100.0", "1"]], [["101.0", "2"]]),
        _trade(11, 1),
        _trade(12, 2, stream="btcusdt@trxde"),  # our symbol, no such channel
        _trade(13, 3, stream="btcuzdt@trade"),  # damaged symbol, the message says BTCUSDT
        _trade(14, 4).replace(b"btcusdt@trade", b"btcusdt@tr\xe4de"),  # a flipped byte: not a stream name
        b'15 {"stream":"btcusdt@tra\n',  # a line cut inside the name
        _trade(16, 5, stream="ethusdt@trade", symbol="ETHUSDT"),  # another symbol: skipped
        _line(17, "btcusdt@aggTrade", {"e": "aggTrade", "s": "BTCUSDT", "a": 1}),  # ours, not imported: skipped
        _line(18, "!bookTicker", {"u": 1, "s": "ETHUSDT"}),  # every symbol's stream: skipped
        _trade(19, 6),
    ]
    path = tmp_path / "btcusdt_20240808.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    res = import_binance_capture([path], tmp_path / "out", "binance-futures", "BTC-USDT")
    assert res.rows["trade"] == 2
    got = [(p.line, p.reason) for p in res.malformed_positions]
    assert got == [
        (3, "damaged stream name 'btcusdt@trxde'"),
        (4, "damaged stream name 'btcuzdt@trade' on a BTCUSDT message"),
        (5, "damaged stream name 'btcusdt@tr\ufffdde'"),
        (6, "damaged stream name 'btcusdt@tra'"),
    ]
    assert sorted(p.line for p in res.skipped_positions) == [7, 8, 9]
    assert all(p.reason == "stream is not imported" for p in res.skipped_positions)


def test_a_small_truncated_gzip_keeps_every_line_before_the_cut(tmp_path: Path) -> None:
    lines = [_snapshot(10, 100, [["100.0", "1"]], [["101.0", "2"]])] + [_trade(11 + i, i) for i in range(400)]
    whole = gzip.compress(b"".join(lines))
    path = tmp_path / "btcusdt_20240808.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    res = import_binance_capture([path], tmp_path / "out", "binance-futures", "BTC-USDT")
    assert res.malformed == 1
    (pos,) = res.malformed_positions
    assert "truncated or corrupt gzip stream" in pos.reason
    assert 100 < res.rows["trade"] < 400  # what came before the cut, not nothing
    assert pos.line > res.rows["trade"]
