"""``hft data import --format coinbase-capture``: Coinbase captures -> the market-data Parquet.

The format is JSON lines ``{"recv_ts": <epoch seconds>, "frame": {...}}`` (the layout of
``../shared/fixtures/venues/coinbase/exchange_capture_*.jsonl``, recorded by cryptofeed from
Coinbase's feed) or ``{"recv_ns": <epoch ns>, "frame": {...}}`` (``hft record``'s, see
``capture.py``), one received frame each, plain or gzip (``.gz``). Frames may be Coinbase
Exchange's (``snapshot``, ``l2update``, ``match``; ``ticker`` and ``heartbeat`` are skipped) or
Advanced Trade's (``l2_data``, ``market_trades``; the others skipped). Each product becomes one
stream: a snapshot is a ``kind 0`` batch, an update a ``kind 1`` batch (sizes are the level's new
size, as the schema wants), a trade a ``kind 2`` row with the taker's side. Advanced Trade's ``sequence_num`` is kept
in ``sequence``; a break in it (a frame lost while recording) writes a reset row, and the book's
updates are dropped until the next snapshot.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import msgspec
import numpy as np

from engine.errors import DataError
from engine.marketdata.importers.result import ImportResult
from engine.marketdata.writer import PartitionWriter
from engine.model import KIND_DELTA, KIND_SNAPSHOT, KIND_TRADE
from venues.coinbase import decode as d

FORMAT = "coinbase-capture"
VENUE = "coinbase"


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def sniff(path: Path) -> bool:
    """Whether ``path`` starts with a ``{"recv_ts"|"recv_ns": ..., "frame": {...}}`` line."""
    try:
        with _open(Path(path)) as f:
            first = f.readline(1 << 20)
        obj = json.loads(first)
    except (OSError, ValueError, EOFError):
        return False
    return isinstance(obj, dict) and ("recv_ts" in obj or "recv_ns" in obj) and isinstance(obj.get("frame"), dict)


class _Stream:
    def __init__(self) -> None:
        self.rows: dict[str, list] = {
            k: []
            for k in ("ts_event", "ts_recv", "kind", "side", "price", "size", "sequence", "seq_first", "batch_end")
        }
        self.synced = False

    def add(self, ts_event: int, ts_recv: int, kind: int, rows: list[tuple[int, int, int]], seq: int) -> None:
        for i, (side, price, size) in enumerate(rows):
            r = self.rows
            r["ts_event"].append(ts_event)
            r["ts_recv"].append(ts_recv)
            r["kind"].append(kind)
            r["side"].append(side)
            r["price"].append(price)
            r["size"].append(size)
            r["sequence"].append(seq)
            r["seq_first"].append(0)
            r["batch_end"].append(i == len(rows) - 1)

    def columns(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.rows.items()}


def _book_rows(m: d.L2Message) -> list[tuple[int, int, int]]:
    return [(1, int(p), int(q)) for p, q in m.bids] + [(-1, int(p), int(q)) for p, q in m.asks]


def import_files(
    paths: Sequence[Path],
    root: str | Path,
    venue: str | None = None,
    symbol: str | None = None,
    *,
    include_bbo: bool = False,
    overwrite: bool = False,
) -> list[ImportResult]:
    """Every product found in ``paths`` (read in the order given) into ``root``."""
    started = time.perf_counter()
    venue = venue or VENUE
    streams: dict[str, _Stream] = {}
    results: dict[str, ImportResult] = {}
    last_seq = -1
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(str(path), "file not found")
        with _open(path) as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    ts_recv = int(obj["recv_ns"]) if "recv_ns" in obj else round(float(obj["recv_ts"]) * 1e9)
                    frame = obj["frame"]
                    msgs = _decode(frame, ts_recv)
                except (ValueError, KeyError, TypeError, msgspec.ValidationError, msgspec.DecodeError) as exc:
                    res = results.setdefault("", ImportResult(venue, symbol or "", FORMAT))
                    res.add_malformed(path.name, n, str(exc)[:200])
                    continue
                seq = frame.get("sequence_num", -1) if isinstance(frame, dict) else -1
                broken = isinstance(seq, int) and seq >= 0 and last_seq >= 0 and seq != last_seq + 1
                if isinstance(seq, int) and seq >= 0:
                    last_seq = seq
                if broken:
                    for sym, st in streams.items():
                        if st.synced:
                            st.add(ts_recv, ts_recv, KIND_SNAPSHOT, [(0, 0, 0)], 0)
                            st.synced = False
                            results[sym].book_resets += 1
                            results[sym].gaps += 1
                for m in msgs:
                    sym = symbol or m[0]
                    st = streams.setdefault(sym, _Stream())
                    res = results.setdefault(sym, ImportResult(venue, sym, FORMAT, [Path(p).name for p in paths]))
                    _, kind, ts_event, rows, sq = m
                    res.count_message({KIND_SNAPSHOT: "snapshot", KIND_DELTA: "update", KIND_TRADE: "trade"}[kind])
                    if kind == KIND_SNAPSHOT:
                        st.synced = True
                    elif kind == KIND_DELTA:
                        res.levels_seen += len(rows)
                        if not st.synced:
                            res.dropped_book_messages += 1
                            res.dropped_book_rows += len(rows)
                            continue
                    st.add(ts_event, ts_recv, kind, rows, sq)
                    res.note_time(ts_recv, ts_recv)
    out = []
    for sym, st in streams.items():
        res = results[sym]
        with PartitionWriter(
            root, venue, sym, d.SCALE, d.SCALE, f"{FORMAT}:{len(paths)} files", overwrite=overwrite
        ) as w:
            w.append(st.columns())
        res.files_written = list(w.files)
        for k, name in ((KIND_SNAPSHOT, "snapshot"), (KIND_DELTA, "delta"), (KIND_TRADE, "trade")):
            res.rows[name] = int(sum(1 for x in st.rows["kind"] if x == k))
        res.seconds = time.perf_counter() - started
        out.append(res)
    if not out and "" in results:
        out.append(results[""])
    return out


def _decode(frame: dict, ts_recv: int) -> list[tuple[str, int, int, list[tuple[int, int, int]], int]]:
    """(product, kind, ts_event, rows, sequence) of one frame; [] for frames without market data."""
    raw = json.dumps(frame).encode()
    if "channel" in frame:
        env = msgspec.json.decode(raw, type=d.Envelope)
        if env.channel == "l2_data":
            return [
                (m.symbol, KIND_SNAPSHOT if m.snapshot else KIND_DELTA, m.ts_event, _book_rows(m), m.seq)
                for m in d.l2_messages(env, ts_recv)
            ]
        if env.channel == "market_trades":
            batch = d.at_trades(env, ts_recv)
            if batch.snapshot:
                return []
            return [
                (t.symbol, KIND_TRADE, t.ts_event, [(t.side, t.price_fixed, t.size_fixed)], 0) for t in batch.trades
            ]
        return []
    if frame.get("type") not in ("snapshot", "l2update", "match"):
        return []
    m = d.exchange_to_common(d.exchange_frame.decode(raw), ts_recv)
    if isinstance(m, d.L2Message):
        return [(m.symbol, KIND_SNAPSHOT if m.snapshot else KIND_DELTA, m.ts_event, _book_rows(m), 0)]
    return [(m.symbol, KIND_TRADE, m.ts_event, [(m.side, m.price_fixed, m.size_fixed)], int(frame.get("trade_id", 0)))]
