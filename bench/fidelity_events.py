"""Our market-data rows as hftbacktest's event array, in plain numpy (no hftbacktest import).

The fidelity benchmark feeds both engines the same rows: the rows our replay reader yields for a
run spec are converted here, written to a ``.npy`` file and read by the worker that runs
hftbacktest in its own venv. Keeping this free of hftbacktest lets the project's tests check it.

hftbacktest's event record (``hftbacktest.types.event_dtype``, 64 bytes) is
``ev u8, exch_ts i8, local_ts i8, px f8, qty f8, order_id u8, ival i8, fval f8``; ``ev`` holds the
event kind in its low byte and flags above it. The worker checks that ``EVENT_DTYPE`` and the flag
values below equal hftbacktest's own before it runs anything.

Mapping of one row (``engine/marketdata/schema.py``):

==================  ===============================================================
our row             hftbacktest event
==================  ===============================================================
delta               ``DEPTH_EVENT | BUY_EVENT`` (bid) or ``| SELL_EVENT`` (ask); qty is the
                    absolute level size, 0 removes the level, as in ours
snapshot row        ``DEPTH_SNAPSHOT_EVENT | BUY/SELL_EVENT``; before the first row of each
                    snapshot batch one ``DEPTH_CLEAR_EVENT`` without a side (clear the whole
                    book), since our snapshot replaces the whole book
reset row           ``DEPTH_CLEAR_EVENT`` without a side (the book is unknown until the next
                    snapshot; hftbacktest just empties it)
trade               ``TRADE_EVENT | BUY_EVENT`` (buyer initiated) or ``| SELL_EVENT``; an unknown
                    aggressor (side 0) gets neither flag, and hftbacktest's exchange ignores it
bbo                 dropped: it never touches our book either
==================  ===============================================================

Prices and sizes become floats (``fixed / 10**scale``); hftbacktest rounds them back to ticks
and lots. Timestamps:

* constant feed latency ``L`` ns: ``local_ts = ts_recv``, ``exch_ts = ts_recv - L``, flags
  ``EXCH_EVENT | LOCAL_EVENT`` on every event (both processors see every row, in file order);
  this is what our ``"feed": {"type": "constant", "ns": L}`` means;
* ``"data"``: ``exch_ts = ts_event``, ``local_ts = ts_recv`` and *no* processor flags: the worker
  completes the array with hftbacktest's own ``correct_local_timestamp(data, 0)`` (shifts local
  time so that the smallest ``local_ts - exch_ts`` is 0) and ``correct_event_order`` (splits rows
  whose exchange and local orders disagree). ``data_feed_offset`` is our engine's definition of
  the same shift, and the worker checks that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# hftbacktest event kinds (low byte of ``ev``) and flags, by value
DEPTH_EVENT = 1
TRADE_EVENT = 2
DEPTH_CLEAR_EVENT = 3
DEPTH_SNAPSHOT_EVENT = 4
EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28
KIND_MASK = 0xFF

EVENT_DTYPE = np.dtype(
    [
        ("ev", "u8"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("order_id", "u8"),
        ("ival", "i8"),
        ("fval", "f8"),
    ],
    align=True,
)

# our row kinds (engine.model.KIND_*)
_SNAPSHOT = 0
_DELTA = 1
_TRADE = 2


@dataclass
class Rows:
    """One stream's replay rows as numpy columns (the fields the conversion needs)."""

    ts_event: np.ndarray
    ts_recv: np.ndarray
    kind: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    batch_end: np.ndarray
    price_scale: int
    size_scale: int

    def __len__(self) -> int:
        return len(self.ts_recv)


def load_rows(
    root: str | Path, venue: str, symbol: str, start_ns: int | None = None, end_ns: int | None = None
) -> Rows:
    """The rows our backtest replays for ``venue``/``symbol`` (through our own replay reader, so
    the time window and snapshot rules are exactly the engine's)."""
    from engine.marketdata.reader import open_dataset

    source = open_dataset(root, venue=venue, symbols=[symbol], start_ns=start_ns, end_ns=end_ns)
    names = ("ts_event", "ts_recv", "kind", "side", "price", "size", "batch_end")
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for cb in source:
        for n in names:
            parts[n].append(np.asarray(getattr(cb, n)))
    cols = {n: np.concatenate(v) if v else np.zeros(0) for n, v in parts.items()}
    price_scale, size_scale = source.scales[(venue, symbol)]
    return Rows(**cols, price_scale=price_scale, size_scale=size_scale)


def data_feed_offset(ts_event: np.ndarray, ts_recv: np.ndarray) -> int:
    """Our engine's offset for feed latency "from the data": the venue time of a row is
    ``ts_event + offset`` on the local clock, with ``offset = min(ts_recv - ts_event)`` over rows
    that carry a venue time (``ts_event > 0``), so the fastest row has latency 0."""
    has = ts_event > 0
    if not has.any():
        raise ValueError("no row carries a venue time (ts_event > 0)")
    return int((ts_recv[has] - ts_event[has]).min())


def to_hbt_events(rows: Rows, feed: int | str) -> np.ndarray:
    """hftbacktest events for ``rows``; ``feed`` is a constant latency in ns or ``"data"``."""
    kind = np.asarray(rows.kind)
    keep = (kind == _SNAPSHOT) | (kind == _DELTA) | (kind == _TRADE)
    kind = kind[keep]
    side = np.asarray(rows.side)[keep]
    price = np.asarray(rows.price)[keep]
    size = np.asarray(rows.size)[keep]
    ts_event = np.asarray(rows.ts_event, dtype=np.int64)[keep]
    ts_recv = np.asarray(rows.ts_recv, dtype=np.int64)[keep]
    batch_end = np.asarray(rows.batch_end, dtype=bool)[keep]
    n = len(kind)

    is_snap = kind == _SNAPSHOT
    is_reset = is_snap & (price == 0) & (size == 0)
    # a snapshot batch starts at a snapshot row whose previous row is not a snapshot row or ended
    # a message (the reader's rule); a reset row is a start too and becomes the clear by itself
    prev_snap = np.concatenate(([False], is_snap[:-1]))
    prev_end = np.concatenate(([True], batch_end[:-1]))
    starts = is_snap & ~is_reset & (~prev_snap | prev_end)

    ev = np.zeros(n, dtype=np.uint64)
    ev[kind == _DELTA] = DEPTH_EVENT
    ev[is_snap] = DEPTH_SNAPSHOT_EVENT
    ev[kind == _TRADE] = TRADE_EVENT
    ev[is_reset] = DEPTH_CLEAR_EVENT
    book = (kind == _DELTA) | (is_snap & ~is_reset)
    ev[book & (side > 0)] |= np.uint64(BUY_EVENT)
    ev[book & (side < 0)] |= np.uint64(SELL_EVENT)
    trade = kind == _TRADE
    ev[trade & (side > 0)] |= np.uint64(BUY_EVENT)
    ev[trade & (side < 0)] |= np.uint64(SELL_EVENT)

    px = price / 10.0**rows.price_scale
    qty = size / 10.0**rows.size_scale
    px[is_reset] = 0.0
    qty[is_reset] = 0.0

    # one extra clear row in front of every snapshot batch
    n_clear = int(starts.sum())
    out = np.zeros(n + n_clear, dtype=EVENT_DTYPE)
    pos = np.arange(n) + np.cumsum(starts)  # where each row lands after the inserted clears
    clear_pos = pos[starts] - 1
    out["ev"][pos] = ev
    out["px"][pos] = px
    out["qty"][pos] = qty
    out["ev"][clear_pos] = DEPTH_CLEAR_EVENT
    local = np.empty(n + n_clear, dtype=np.int64)
    exch = np.empty(n + n_clear, dtype=np.int64)
    local[pos] = ts_recv
    local[clear_pos] = ts_recv[starts]
    exch[pos] = ts_event
    exch[clear_pos] = ts_event[starts]

    if feed == "data":
        if (exch <= 0).any():
            raise ValueError("feed latency from the data needs ts_event > 0 on every row")
        out["exch_ts"] = exch
        out["local_ts"] = local
        return out
    if isinstance(feed, bool) or not isinstance(feed, int | np.integer) or feed < 0:
        raise ValueError(f"feed must be a latency in ns >= 0 or 'data', got {feed!r}")
    out["local_ts"] = local
    out["exch_ts"] = local - int(feed)
    out["ev"] |= np.uint64(EXCH_EVENT | LOCAL_EVENT)
    return out


def depth_wake_times(events: np.ndarray) -> np.ndarray:
    """Sorted distinct local times of depth (delta or snapshot) events: the moments the
    hftbacktest loop acts, since all rows of one message share their receive time."""
    ev = events["ev"]
    kind = ev & np.uint64(KIND_MASK)
    local = (ev & np.uint64(LOCAL_EVENT)) != 0
    depth = (kind == DEPTH_EVENT) | (kind == DEPTH_SNAPSHOT_EVENT)
    return np.unique(events["local_ts"][local & depth])
