"""PostgreSQL's binary COPY format for the tick table, built with numpy.

The writer runs in a child process for PostgreSQL by default (``engine.store.writer_process``),
in the trading process when ``database.writer`` is ``thread`` (``engine.store.service``). asyncpg's
``copy_records_to_table`` encodes record by record in code that keeps the interpreter lock, about
2.6 µs a tick with the conversion before it, so a 1,000-row COPY held the trading loop off for
milliseconds: the hot path's P99.9 showed it. Here the payload is laid out as one numpy structured
array per (venue, symbol) group, every field a fixed-width big-endian column, and written with a
few vectorised assignments; asyncpg then only streams bytes (``copy_to_table(format="binary")``).

Format (PostgreSQL docs, "COPY ... BINARY"): an 11-byte signature, a 32-bit flags word and a
32-bit header-extension length; per row a 16-bit field count, then per field a 32-bit length
(-1 for NULL) and the value in network byte order; a 16-bit -1 trailer. ``timestamptz`` is int64
microseconds since 2000-01-01 UTC, ``double precision`` IEEE 754, ``bigint`` int64, ``text`` its
UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.store.schema import MARKET_COLS

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no header extension
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01
_NUMERIC = {"I": ">i8", "F": ">f8"}
#: the COPY's columns: run_id, time, then the event log's ``market`` columns
TICK_COLUMNS = ["run_id", "time", *(c for c, _ in MARKET_COLS)]
_KINDS = ["S", "T", *(k for _, k in MARKET_COLS)]
_VENUE = next(i for i, (c, _) in enumerate(MARKET_COLS) if c == "venue")
_SYMBOL = next(i for i, (c, _) in enumerate(MARKET_COLS) if c == "symbol")
_TS = next(i for i, (c, _) in enumerate(MARKET_COLS) if c == "ts")


def _group(rows: Sequence[tuple], text: dict[int, bytes | None]) -> bytes:
    """One group's rows (every text column the same in all of them) as binary COPY rows."""
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, kind in enumerate(_KINDS):
        fields.append((f"l{i}", ">i4"))
        if kind == "S":
            value = text[i]
            if value:
                fields.append((f"v{i}", f"S{len(value)}"))
        else:
            fields.append((f"v{i}", ">i8" if kind == "T" else _NUMERIC[kind]))
    out = np.empty(len(rows), dtype=np.dtype(fields))
    out["n"] = len(_KINDS)
    cols = list(zip(*rows, strict=True))
    for i, kind in enumerate(_KINDS):
        if kind == "S":
            value = text[i]
            out[f"l{i}"] = -1 if value is None else len(value)
            if value:
                out[f"v{i}"] = value
        elif kind == "T":
            out[f"l{i}"] = 8
            out[f"v{i}"] = np.asarray(cols[_TS], dtype=np.int64) // 1000 - PG_EPOCH_US
        else:
            out[f"l{i}"] = 8
            out[f"v{i}"] = np.asarray(cols[i - 2], dtype=np.int64 if kind == "I" else np.float64)
    return out.tobytes()


def _text(value: object) -> bytes | None:
    return None if value is None else str(value).encode()


def tick_payload(rows: Sequence[tuple], run_id: str | None) -> bytes:
    """``rows`` (event-log ``market`` tuples) as a whole binary COPY payload for ``TICK_COLUMNS``."""
    groups: dict[tuple[object, object], list[tuple]] = {}
    for r in rows:  # a session has a handful of (venue, symbol) pairs: a few groups at most
        key = (r[_VENUE], r[_SYMBOL])
        g = groups.get(key)
        if g is None:
            groups[key] = [r]
        else:
            g.append(r)
    parts = [SIGNATURE]
    rid = _text(run_id)
    for (venue, symbol), group in groups.items():
        text = {0: rid, 2 + _VENUE: _text(venue), 2 + _SYMBOL: _text(symbol)}
        parts.append(_group(group, text))
    parts.append(TRAILER)
    return b"".join(parts)
