"""Venue time: when the venue saw each market-data row, and the rows in that order.

The replayed data records when *we* received each row (``ts_recv``). The simulated venue acts in
its own time, so every row also needs the time it happened at the venue, ``v``; the row reached us
one feed latency later, ``ts_recv = v + latency``. Two ways to know it:

``constant``  ``v = ts_recv - L`` for one configured ``L``; the venue's order is ours.
``data``      ``v = ts_event + offset``: the venue's own timestamp, moved onto our clock. Capture
              clocks are off (the shipped Binance captures run ~1.27 s *behind* Binance), so the
              offset is measured per stream: the smallest ``ts_recv - ts_event`` of the replayed
              rows is taken as ``min_ns`` of latency (default 0), and every other row's latency
              is its excess over that. Rows without a venue time (Binance spot's REST snapshot)
              get ``ts_recv - min_ns``. Book rows keep their recorded order within a stream
              (``v`` never goes back): Binance's depth stream is in order, and a snapshot must not
              be moved across the diffs that follow it. Trades may move: Binance's trade and depth
              streams arrive up to ~110 ms out of step with each other.

Worked example (``data``, ``min_ns`` 0): a stream's rows have ``ts_recv - ts_event`` of -1270 ms,
-1267 ms and -1262 ms (our clock is behind the venue's). The smallest is -1270 ms, so the offset
is -1270 ms and the rows took 0, 3 and 8 ms to reach us. A depth update with ``ts_event`` 10,000 ms
received at 8,733 ms happened at venue time 10,000 - 1,270 = 8,730 ms on our clock: an order of
ours that reached the venue at 8,731 ms sees the book after that update, although we ourselves see
it only 2 ms later.

``VenueRows`` turns the local batches into venue-ordered chunks. With ``constant`` latency a
chunk is the batch itself (plus ``v``). With ``data`` the rows are sorted by ``v``; a row can be
emitted once every row with a smaller ``v`` has been read, i.e. once rows have been read up to
``v + max_latency``: the reader runs at most the largest latency ahead of the venue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_NEVER = np.iinfo(np.int64).max
_BOOK_KINDS = (0, 1)  # snapshot, delta


@dataclass(slots=True)
class VenueChunk:
    """Rows in venue-time order, in the columns the replay kernel reads."""

    ts: np.ndarray  # venue time, int64 ns
    kind: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    stream: np.ndarray  # int32
    batch_end: np.ndarray
    latency: np.ndarray | None = None  # ts_recv - ts per row (data mode), for reports

    def __len__(self) -> int:
        return len(self.ts)


class ConstantVenueTime:
    """``v = ts_recv - L``."""

    kind = "constant"

    def __init__(self, latency_ns: int) -> None:
        if latency_ns < 0:
            raise ValueError("feed latency must be >= 0 ns")
        self.latency_ns = int(latency_ns)

    def feed_latency(self, stream: int, ts_recv: int, ts_event: int) -> int:
        return self.latency_ns

    def describe(self) -> dict[str, Any]:
        return {"type": "constant", "ns": self.latency_ns}


class DataVenueTime:
    """``v = ts_event + offset[stream]`` (see the module docstring)."""

    kind = "data"

    def __init__(self, min_ns: int = 0, offset_ns: int | None = None) -> None:
        if min_ns < 0:
            raise ValueError("feed latency min_ns must be >= 0")
        self.min_ns = int(min_ns)
        self.fixed_offset = offset_ns  # the operator's clock offset (ns), or None to measure it
        self.offsets: dict[int, int] = {}
        self.max_latency_ns = 0

    def calibrate(self, spans: dict[int, tuple[int, int]]) -> None:
        """``spans``: stream -> (min, max) of ``ts_recv - ts_event`` over rows that have a venue
        time (streams without such rows are absent)."""
        self.offsets = {}
        worst = self.min_ns
        for stream, (lo, hi) in spans.items():
            off = self.fixed_offset if self.fixed_offset is not None else lo - self.min_ns
            self.offsets[stream] = int(off)
            worst = max(worst, int(hi - off))
        self.max_latency_ns = worst

    def feed_latency(self, stream: int, ts_recv: int, ts_event: int) -> int:
        off = self.offsets.get(stream)
        if off is None or ts_event <= 0:
            return self.min_ns
        return max(ts_recv - (ts_event + off), 0)

    def describe(self) -> dict[str, Any]:
        return {
            "type": "data",
            "min_ns": self.min_ns,
            "clock_offset_ns": {str(k): v for k, v in sorted(self.offsets.items())},
            "offset_measured": self.fixed_offset is None,
            "max_latency_ns": self.max_latency_ns,
        }


VenueTime = ConstantVenueTime | DataVenueTime


def latency_spans(batches: Callable[[], Any]) -> dict[int, tuple[int, int]]:
    """stream -> (min, max) of ``ts_recv - ts_event`` over rows with a venue time, from one pass
    over ``batches()`` (a fresh iterator of column batches)."""
    lo: dict[int, int] = {}
    hi: dict[int, int] = {}
    for cb in batches():
        has = cb.ts_event > 0
        if not has.any():
            continue
        d = cb.ts_recv[has] - cb.ts_event[has]
        st = cb.stream[has]
        for s in np.unique(st):
            ds = d[st == s]
            k = int(s)
            a, b = int(ds.min()), int(ds.max())
            lo[k] = min(lo.get(k, a), a)
            hi[k] = max(hi.get(k, b), b)
    return {k: (lo[k], hi[k]) for k in lo}


class VenueRows:
    """The venue's view of the local batches: ``push`` each batch as it is read, take the chunks
    that are complete; ``finish`` when the data ends."""

    def __init__(self, clock: VenueTime) -> None:
        self.clock = clock
        self._pending: dict[str, np.ndarray] | None = None  # data mode: rows read, not yet emitted
        self._last_book_v: dict[int, int] = {}
        self._read_to = -_NEVER  # largest ts_recv read

    def push(self, cb: Any) -> list[VenueChunk]:
        stream = cb.stream if cb.stream.dtype == np.int32 else cb.stream.astype(np.int32)
        if isinstance(self.clock, ConstantVenueTime):
            v = cb.ts_recv - self.clock.latency_ns
            return [VenueChunk(v, cb.kind, cb.side, cb.price, cb.size, stream, cb.batch_end)]
        n = len(cb.ts_recv)
        if n == 0:
            return []
        v = self._venue_times(cb, stream)
        cols = {
            "v": v,
            "ts_recv": cb.ts_recv,
            "kind": cb.kind,
            "side": cb.side,
            "price": cb.price,
            "size": cb.size,
            "stream": stream,
            "batch_end": cb.batch_end,
        }
        self._read_to = max(self._read_to, int(cb.ts_recv[-1]))
        if self._pending is not None:
            cols = {k: np.concatenate((self._pending[k], c)) for k, c in cols.items()}
        order = np.argsort(cols["v"], kind="stable")
        cols = {k: c[order] for k, c in cols.items()}
        # rows still to come were received at >= _read_to, so happened at >= _read_to - max latency
        bound = self._read_to - self.clock.max_latency_ns
        cut = int(np.searchsorted(cols["v"], bound, "left"))
        self._pending = {k: c[cut:] for k, c in cols.items()}
        if cut == 0:
            return []
        return [self._chunk({k: c[:cut] for k, c in cols.items()})]

    def finish(self) -> list[VenueChunk]:
        rest = self._pending
        self._pending = None
        if rest is None or len(rest["v"]) == 0:
            return []
        return [self._chunk(rest)]

    def _venue_times(self, cb: Any, stream: np.ndarray) -> np.ndarray:
        clock = self.clock
        assert isinstance(clock, DataVenueTime)
        v = cb.ts_recv - clock.min_ns
        offs = np.zeros(len(v), dtype=np.int64)
        has = cb.ts_event > 0
        known = np.zeros(len(v), dtype=bool)
        for s, off in clock.offsets.items():
            m = stream == s
            offs[m] = off
            known |= m
        has &= known
        v = np.where(has, np.minimum(cb.ts_event + offs, v), v)
        book = np.isin(cb.kind, _BOOK_KINDS)
        for s in np.unique(stream[book]):
            m = book & (stream == s)
            vs = np.maximum.accumulate(v[m])
            prev = self._last_book_v.get(int(s))
            if prev is not None:
                vs = np.maximum(vs, prev)
            v[m] = vs
            self._last_book_v[int(s)] = int(vs[-1])
        return v

    @staticmethod
    def _chunk(cols: dict[str, np.ndarray]) -> VenueChunk:
        v = cols["v"]
        return VenueChunk(
            v,
            cols["kind"],
            cols["side"],
            cols["price"],
            cols["size"],
            cols["stream"],
            cols["batch_end"],
            cols["ts_recv"] - v,
        )
