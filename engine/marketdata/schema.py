"""The one Parquet schema for market data, written by importers and the live recorder.

One row per level change or trade, sorted by ``ts_recv`` (file order breaks ties). Prices and
sizes are fixed-point integers; the scales live in the file's key/value metadata
(``hft.price_scale``, ``hft.size_scale``) and in the instrument registry.

Columns
- ``ts_event``  int64 ns: venue time (0 when the venue gives none, e.g. spot bookTicker/snapshot)
- ``ts_recv``   int64 ns: local capture time, the replay clock
- ``venue``     string (dictionary): ``binance``, ``binance-futures``, ``binance-delivery``, ...
- ``symbol``    string (dictionary): canonical ``BASE-QUOTE``
- ``kind``      int8: 0 snapshot, 1 delta, 2 trade, 3 bbo (see ``engine.model.KIND_*``)
- ``side``      int8: +1 bid / -1 ask; for trades the aggressor, +1 buy / -1 sell / 0 unknown
- ``price``     int64 fixed-point
- ``size``      int64 fixed-point; for book rows the absolute level size (0 removes the level)
- ``sequence``  int64: venue update id (Binance ``u``), trade id for trades; 0 when none
- ``seq_first`` int64: Binance ``U`` (first update id of the message); 0 when none
- ``batch_end`` bool: last row of one venue message; a book is only published after such a row

A snapshot batch (consecutive ``kind == 0`` rows) replaces the whole book: a snapshot starts at a
``kind == 0`` row whose previous row of the same stream is not a snapshot row or ends a batch.
A lone snapshot row with price 0 and size 0 is a *reset*: the importer saw the venue's update chain
break, so the book is unknown (and must not be served) until the next real snapshot. A ``bbo`` message is
two rows (bid then ask) and never touches the book; it is kept as a test oracle.
Partitioning: ``<root>/venue=<venue>/symbol=<symbol>/date=<YYYY-MM-DD>/part-<n>.parquet`` where
``date`` is the UTC date of ``ts_recv``.
"""

from __future__ import annotations

import pyarrow as pa

COLUMNS = (
    "ts_event",
    "ts_recv",
    "venue",
    "symbol",
    "kind",
    "side",
    "price",
    "size",
    "sequence",
    "seq_first",
    "batch_end",
)

SCHEMA = pa.schema(
    [
        pa.field("ts_event", pa.int64(), nullable=False),
        pa.field("ts_recv", pa.int64(), nullable=False),
        pa.field("venue", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("symbol", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("kind", pa.int8(), nullable=False),
        pa.field("side", pa.int8(), nullable=False),
        pa.field("price", pa.int64(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("sequence", pa.int64(), nullable=False),
        pa.field("seq_first", pa.int64(), nullable=False),
        pa.field("batch_end", pa.bool_(), nullable=False),
    ]
)

META_PRICE_SCALE = b"hft.price_scale"
META_SIZE_SCALE = b"hft.size_scale"
META_SOURCE = b"hft.source"
META_VENUE = b"hft.venue"
META_SYMBOL = b"hft.symbol"

# Numeric columns handed to the replay kernel as numpy arrays.
NUMERIC_COLUMNS = ("ts_event", "ts_recv", "kind", "side", "price", "size", "sequence", "seq_first", "batch_end")


def partition_path(venue: str, symbol: str, date: str) -> str:
    return f"venue={venue}/symbol={symbol}/date={date}"
