"""Load raw Binance spot captures (hftbacktest collector format) for replay.

Each line is ``<local_recv_ns> <json>``: a combined-stream frame ``{"stream":..,"data":..}`` or a bare
REST depth snapshot ``{"lastUpdateId":..,"bids":..,"asks":..}`` (see
``../shared/docs/market-data-formats.md`` §1a). Day files continue each other, so several files
are read as one stream in the order given (a directory means its ``*.gz`` files by name).

The replay starts where the fake exchange can hold a correct book: at each symbol's first depth
diff that straddles its snapshot (``U <= lastUpdateId + 1 <= u``). Records of a symbol before that
point describe a market the snapshot already contains and are dropped. ``data`` payloads are kept
verbatim so the fake sends exactly the bytes Binance sent.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from engine.errors import DataError

DEPTH = 0
TRADE = 1
BBO = 2


class _Line(msgspec.Struct):
    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    lastUpdateId: int | None = None
    bids: list[tuple[str, str]] | None = None
    asks: list[tuple[str, str]] | None = None


class _Depth(msgspec.Struct):
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]


class _Trade(msgspec.Struct):
    E: int
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool


class _Bbo(msgspec.Struct):
    u: int
    s: str


@dataclass(slots=True)
class Record:
    """One stream message. ``seq`` is ``u`` for depth and bookTicker, the trade id for trades."""

    ts: int
    kind: int
    symbol: str
    stream: str
    raw: bytes
    event_ms: int = 0
    trade_ms: int = 0
    first_id: int = 0
    seq: int = 0
    bids: list[tuple[str, str]] | None = None
    asks: list[tuple[str, str]] | None = None
    price: str = ""
    qty: str = ""
    buyer_maker: bool = False


@dataclass(slots=True)
class Snapshot:
    last_update_id: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


@dataclass
class Capture:
    records: list[Record]
    snapshots: dict[str, Snapshot]
    paths: list[Path]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        return list(self.snapshots)


def resolve_paths(data: str | Path | list[str | Path] | tuple[str | Path, ...]) -> list[Path]:
    items = list(data) if isinstance(data, list | tuple) else [data]
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(".gz"))
            if not files:
                raise DataError(str(p), "directory holds no *.gz capture files")
            out.extend(files)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(str(p), "no such file or directory")
    if not out:
        raise DataError(str(data), "no capture files given")
    return out


def _read_lines(path: Path) -> list[bytes]:
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                return fh.read().splitlines()
        return path.read_bytes().splitlines()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(str(path), f"cannot read capture: {exc}") from exc


_CACHE: dict[tuple, Capture] = {}


def load_capture(
    data: str | Path | list[str | Path] | tuple[str | Path, ...], max_records: int | None = None
) -> Capture:
    """Parse the capture files once per process (replays share the immutable result)."""
    paths = resolve_paths(data)
    key = (tuple((str(p.resolve()), p.stat().st_mtime_ns) for p in paths), max_records)
    cached = _CACHE.get(key)
    if cached is None:
        cached = _parse(paths, max_records)
        _CACHE[key] = cached
    return cached


def _parse(paths: list[Path], max_records: int | None) -> Capture:
    line_dec = msgspec.json.Decoder(_Line)
    depth_dec = msgspec.json.Decoder(_Depth)
    trade_dec = msgspec.json.Decoder(_Trade)
    bbo_dec = msgspec.json.Decoder(_Bbo)
    records: list[Record] = []
    pending_snapshots: list[tuple[int, Snapshot, Path, int]] = []  # (records index, snapshot, where)
    skipped: dict[str, int] = {}
    for path in paths:
        for lineno, line in enumerate(_read_lines(path), 1):
            if not line.strip():
                continue
            ts_raw, _, body = line.partition(b" ")
            try:
                ts = int(ts_raw)
                env = line_dec.decode(body)
                if env.lastUpdateId is not None:
                    snap = Snapshot(env.lastUpdateId, env.bids or [], env.asks or [])
                    pending_snapshots.append((len(records), snap, path, lineno))
                    continue
                if env.stream is None or not env.data:
                    raise ValueError("neither a combined-stream frame nor a depth snapshot")
                stream = env.stream
                raw = bytes(env.data)
                if "@depth" in stream and not stream.split("@depth", 1)[1][:1].isdigit():
                    d = depth_dec.decode(raw)
                    records.append(
                        Record(ts, DEPTH, d.s, stream, raw, event_ms=d.E, first_id=d.U, seq=d.u, bids=d.b, asks=d.a)
                    )
                elif stream.endswith("@trade"):
                    t = trade_dec.decode(raw)
                    records.append(
                        Record(
                            ts,
                            TRADE,
                            t.s,
                            stream,
                            raw,
                            event_ms=t.E,
                            trade_ms=t.T,
                            seq=t.t,
                            price=t.p,
                            qty=t.q,
                            buyer_maker=t.m,
                        )
                    )
                elif stream.endswith("@bookTicker"):
                    b = bbo_dec.decode(raw)
                    records.append(Record(ts, BBO, b.s, stream, raw, seq=b.u))
                else:
                    name = stream.split("@", 1)[-1]
                    skipped[name] = skipped.get(name, 0) + 1
            except (ValueError, msgspec.DecodeError) as exc:
                raise DataError(str(path), f"line {lineno}: {exc}") from exc
            if max_records is not None and len(records) >= max_records:
                break
        if max_records is not None and len(records) >= max_records:
            break
    snapshots, records = _align(records, pending_snapshots, paths)
    return Capture(records=records, snapshots=snapshots, paths=paths, skipped=skipped)


def _align(
    records: list[Record], pending: list[tuple[int, Snapshot, Path, int]], paths: list[Path]
) -> tuple[dict[str, Snapshot], list[Record]]:
    """Give each snapshot its symbol and drop each symbol's records from before its first applicable diff."""
    if not pending:
        raise DataError(
            str(paths[0]),
            'no REST depth snapshot ({"lastUpdateId": ...}) in the capture; give the day file that holds it first',
        )
    snapshots: dict[str, Snapshot] = {}
    start: dict[str, int] = {}
    for _, snap, path, lineno in pending:
        target = snap.last_update_id + 1
        for i, rec in enumerate(records):
            if rec.kind != DEPTH or rec.symbol in snapshots or rec.seq < target:
                continue
            if rec.first_id > target:
                continue  # a later snapshot of another symbol, or this one's diffs do not bridge it
            snapshots[rec.symbol] = snap
            start[rec.symbol] = i
            break
        else:
            # later snapshots of a symbol already anchored are ignored; an unmatched first one is an error
            if not snapshots:
                raise DataError(
                    str(path), f"line {lineno}: no depth diff bridges the snapshot (lastUpdateId {snap.last_update_id})"
                )
    kept = [rec for i, rec in enumerate(records) if rec.symbol in start and i >= start[rec.symbol]]
    return snapshots, kept
