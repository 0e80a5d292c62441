"""``hft data import --format coinbase-capture``: the real BAND-GBP capture becomes Parquet rows
that rebuild the same book the live adapter builds."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.model import KIND_DELTA, KIND_SNAPSHOT, KIND_TRADE
from venues.coinbase import capture_import as ci
from venues.coinbase import decode as d

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "venues" / "coinbase"
CAPTURE = FIXTURES / "exchange_capture_BAND-GBP_interleaved.jsonl"


@pytest.fixture
def capture() -> Path:
    if not CAPTURE.exists():
        pytest.skip(f"{CAPTURE} not found")
    return CAPTURE


def replay(t: dict) -> dict[int, dict[int, int]]:
    """The book the rows describe (schema rules: a snapshot batch replaces the book; a lone
    price-0 snapshot row is a reset)."""
    book: dict[int, dict[int, int]] = {1: {}, -1: {}}
    prev_kind, prev_end = -1, True
    for k, s, p, q, end in zip(t["kind"], t["side"], t["price"], t["size"], t["batch_end"], strict=True):
        if k == KIND_SNAPSHOT and (prev_kind != KIND_SNAPSHOT or prev_end):
            book = {1: {}, -1: {}}
        if k in (KIND_SNAPSHOT, KIND_DELTA) and s:
            if q:
                book[s][p] = q
            else:
                book[s].pop(p, None)
        prev_kind, prev_end = k, end
    return book


def test_sniff(capture: Path, tmp_path: Path) -> None:
    assert ci.sniff(capture)
    other = tmp_path / "x.csv"
    other.write_text("exchange,symbol\n")
    assert not ci.sniff(other)


def test_import_real_capture_rebuilds_the_book(capture: Path, tmp_path: Path) -> None:
    (res,) = ci.import_files([capture], tmp_path)
    assert (res.venue, res.symbol, res.source_format) == ("coinbase", "BAND-GBP", "coinbase-capture")
    assert res.messages == {"snapshot": 1, "update": 471, "trade": 4} and res.malformed == 0
    (part,) = res.files_written
    t = pq.read_table(part).to_pydict()
    kinds = t["kind"]
    assert kinds.count(KIND_TRADE) == 4 and kinds.count(KIND_DELTA) >= 471 and kinds[0] == KIND_SNAPSHOT
    assert t["ts_recv"] == sorted(t["ts_recv"])
    book = replay(t)  # compared with the snapshot + updates applied directly
    snap = d.exchange_to_common(
        d.exchange_frame.decode((FIXTURES / "exchange_level2_snapshot_BAND-GBP.json").read_bytes())
    )
    ref = {1: {int(p): int(q) for p, q in snap.bids}, -1: {int(p): int(q) for p, q in snap.asks}}
    for line in (FIXTURES / "exchange_l2updates_BAND-GBP.jsonl").read_bytes().splitlines():
        m = d.exchange_to_common(d.exchange_frame.decode(line))
        for side, rows in ((1, m.bids), (-1, m.asks)):
            for p, q in rows:
                if q:
                    ref[side][int(p)] = int(q)
                else:
                    ref[side].pop(int(p), None)
    assert book == ref


def test_advanced_trade_frames_and_a_sequence_break(tmp_path: Path) -> None:
    snap = {
        "channel": "l2_data",
        "timestamp": "2026-01-01T00:00:00Z",
        "sequence_num": 0,
        "events": [
            {
                "type": "snapshot",
                "product_id": "BTC-USD",
                "updates": [
                    {"side": "bid", "price_level": "100", "new_quantity": "1"},
                    {"side": "offer", "price_level": "101", "new_quantity": "2"},
                ],
            }
        ],
    }
    up = {
        "channel": "l2_data",
        "timestamp": "2026-01-01T00:00:01Z",
        "sequence_num": 5,
        "events": [
            {
                "type": "update",
                "product_id": "BTC-USD",
                "updates": [{"side": "bid", "price_level": "100", "new_quantity": "0"}],
            }
        ],
    }
    f = tmp_path / "cap.jsonl"
    f.write_text("\n".join(json.dumps({"recv_ts": 1767225600.0 + i, "frame": x}) for i, x in enumerate((snap, up))))
    (res,) = ci.import_files([f], tmp_path / "out")
    assert res.gaps == 1 and res.book_resets == 1 and res.dropped_book_messages == 1
    t = pq.read_table(res.files_written[0]).to_pydict()
    assert t["kind"] == [KIND_SNAPSHOT, KIND_SNAPSHOT, KIND_SNAPSHOT] and t["price"][-1] == 0  # the reset row


async def test_hft_record_on_coinbase_raw_equals_parquet(tmp_path: Path) -> None:
    """``hft record`` against the fake: the raw capture holds every frame, its import rebuilds the
    fake's final book, and an injected gap becomes a reset row."""
    import asyncio
    from decimal import Decimal

    from engine.runners.record import run_record
    from sim.fake_coinbase import FakeCoinbase
    from venues.coinbase.adapter import CoinbaseAdapter
    from venues.coinbase.config import load_config

    async with FakeCoinbase(interval_s=0.004, heartbeat_interval_s=0.2) as fc:
        cfg = load_config(overrides={"rest_url": fc.rest_url, "ws_url": fc.ws_url, "symbols": ["BAND-GBP"]}, env={})

        async def gap_later() -> None:
            while fc.pos < 100:
                await asyncio.sleep(0.01)
            fc.drop_updates(2)

        gap = asyncio.get_running_loop().create_task(gap_later())
        summary = await run_record(CoinbaseAdapter(cfg), tmp_path / "rec", duration_s=3.5, flush_interval_s=0.3)
        await gap
        assert fc.done.is_set()
        bids, asks = fc.book("BAND-GBP", 10**6)
    entry = summary["symbols"]["BAND-GBP"]
    assert entry["gaps_live"] == 1 and entry["gaps"] == 1 and entry["book_resets"] == 1
    assert summary["raw_bytes"] > 0 and entry["raw_files"][0].endswith(".jsonl.gz")
    assert ci.sniff(Path(entry["raw_files"][0]))
    book = replay(pq.read_table(entry["parquet_files"][0]).to_pydict())
    e8 = Decimal(10**8)
    assert book[1] == {int(p * e8): int(q * e8) for p, q in bids}
    assert book[-1] == {int(p * e8): int(q * e8) for p, q in asks}


def test_imported_capture_replays_as_a_coinbase_backtest(capture: Path, tmp_path: Path) -> None:
    """The real BAND-GBP capture, imported, runs as a backtest of the sample market maker on venue
    coinbase: Coinbase's profile (UUID client ids) and the product's rules."""
    import copy

    from engine.runners.backtest import run_backtest
    from engine.runners.spec import load_run_spec

    repo = Path(__file__).resolve().parents[1]
    (res,) = ci.import_files([capture], tmp_path / "data")
    instruments = tmp_path / "instruments.json"
    instruments.write_text(
        json.dumps(
            {
                "instruments": [
                    {
                        "venue": "coinbase",
                        "symbol": "BAND-GBP",
                        "venue_symbol": "BAND-GBP",
                        "kind": "spot",
                        "price_scale": 8,
                        "size_scale": 8,
                        "tick": "0.0001",
                        "lot": "0.01",
                        "min_qty": "0.1",
                        "min_notional": "1",
                        "maker_fee": "0.004",
                        "taker_fee": "0.006",
                    }
                ]
            }
        )
    )
    cfg = json.loads((repo / "config/backtests/market_maker_sample.json").read_text())
    strategy = json.loads((repo / "config/strategies/market_maker.json").read_text())
    strategy.update(venue="coinbase", symbols=["BAND-GBP"])
    strategy["params"].update(order_size=1.0, max_inventory=10.0, half_spread_bps=5.0, requote_bps=2.0)
    cfg["name"] = "coinbase_capture"
    cfg["data"].update(root=str(tmp_path / "data"), venue="coinbase", symbols=["BAND-GBP"])
    cfg["instruments"] = str(instruments)
    cfg["balances"] = {"coinbase": {"GBP": 100000.0, "BAND": 1000.0}}
    cfg["sim"]["venues"] = {"coinbase": copy.deepcopy(next(iter(cfg["sim"]["venues"].values())))}
    cfg["strategies"] = [strategy]
    cfg["output"]["runs_root"] = str(tmp_path / "runs")
    path = tmp_path / "bt.json"
    path.write_text(json.dumps(cfg))
    result = run_backtest(load_run_spec(path), tmp_path / "run")
    assert result.summary["rows"] == res.total_rows
    assert result.summary["book_updates"] > 100 and result.summary["orders_submitted"] > 0
    cids = pq.read_table(tmp_path / "run" / "orders.parquet").column("client_order_id").to_pylist()
    assert cids and all(len(c) == 36 and c[14] == "5" for c in cids)  # version-5 UUIDs, Coinbase's client_oid
