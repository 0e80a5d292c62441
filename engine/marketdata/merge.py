"""K-way merge of time-sorted column streams into one (ts_recv, stream, arrival) ordered stream.

Each input yields dicts of numpy columns (``schema.NUMERIC_COLUMNS``) sorted by ``ts_recv``.
All rows strictly below the smallest "last buffered ts_recv" of the inputs still being read are
final (an input may continue with more rows at exactly its last time), so they are merged and
emitted; a stable merge with inputs taken in index order keeps ties in (input, arrival) order.
The merge positions come from a compiled k-way merge and rows are copied once, all columns in
one pass. Memory is about one chunk per input.

Output arrays come from a small process-wide pool and are reused only once nothing outside the
pool refers to them any more (the consumer dropped the batch and every view of it): fresh
arrays of this size cost more in page faults than the merge itself. A consumer that keeps
batches is safe; it only makes the pool allocate.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import numba as nb
import numpy as np


def merge_sorted(iters: list[Iterator[dict[str, np.ndarray]]]) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Yield ``(columns, input index per row as int16)`` in global (ts_recv, input, arrival) order."""
    n = len(iters)
    scratch = _Scratch()
    # Per stream: buffered chunks in file order (views, never concatenated).
    bufs: list[list[dict[str, np.ndarray]]] = [[] for _ in range(n)]
    done = [False] * n

    def pull(i: int) -> None:
        nxt = next(iters[i], None)
        if nxt is None:
            done[i] = True
        else:
            bufs[i].append(nxt)

    while True:
        for i in range(n):
            if not done[i] and not bufs[i]:
                pull(i)
        reading = [i for i in range(n) if not done[i]]
        if not reading and not any(bufs):
            return
        # Rows strictly below every still-reading stream's last buffered time are final:
        # a stream can continue with more rows at exactly its last time.
        bound = min(int(bufs[i][-1]["ts_recv"][-1]) for i in reading) if reading else None
        parts: list[dict[str, np.ndarray]] = []
        ids: list[int] = []
        for i in range(n):
            keep: list[dict[str, np.ndarray]] = []
            for chunk in bufs[i]:
                ts = chunk["ts_recv"]
                cut = len(ts) if bound is None else int(np.searchsorted(ts, bound, "left"))
                if cut == len(ts):
                    parts.append(chunk)
                else:
                    if cut:
                        parts.append({k: v[:cut] for k, v in chunk.items()})
                    keep.append({k: v[cut:] for k, v in chunk.items()})
                if cut:
                    ids.append(i)
            bufs[i] = keep
        if not parts:
            # Every reading stream sits at the bound: pull more rows of those at it.
            for i in reading:
                if int(bufs[i][-1]["ts_recv"][-1]) == bound:
                    pull(i)
            continue
        yield _merge_parts(parts, ids, scratch)


_OUT_DTYPES = {
    "ts_event": np.int64,
    "ts_recv": np.int64,
    "kind": np.int8,
    "side": np.int8,
    "price": np.int64,
    "size": np.int64,
    "sequence": np.int64,
    "seq_first": np.int64,
    "batch_end": np.bool_,
    "stream": np.int16,
}
_probe = [np.empty(1)]
_FREE_REFS = sys.getrefcount(_probe[0])  # references to an array held only by a pool list


class _Pool:
    """Reusable output arrays (see the module docstring)."""

    MAX_SETS = 3  # a consumer holds one batch while the next is built; one spare

    def __init__(self) -> None:
        self.sets: list[list[np.ndarray]] = []
        self.lock = threading.Lock()

    def outputs(self, n: int) -> dict[str, np.ndarray]:
        with self.lock:
            chosen = None
            for arrays in self.sets:
                if len(arrays[0]) >= n and _unused(arrays):
                    chosen = arrays
                    break
            if chosen is None:
                cap = max([n, *(len(a[0]) for a in self.sets)])
                chosen = [np.empty(cap, dtype=dt) for dt in _OUT_DTYPES.values()]
                if len(self.sets) >= self.MAX_SETS:
                    # forget the smallest set; whoever still uses it keeps it alive
                    self.sets.sort(key=lambda a: len(a[0]))
                    self.sets.pop(0)
                self.sets.append(chosen)
            return {name: chosen[i][:n] for i, name in enumerate(_OUT_DTYPES)}


def _unused(arrays: list[np.ndarray]) -> bool:
    return all(sys.getrefcount(arrays[i]) == _FREE_REFS for i in range(len(arrays)))


_POOL = _Pool()


class _Scratch:
    """Working arrays of one merge (times of the parts, merge positions), grown as needed."""

    def __init__(self) -> None:
        self.ts = np.empty(0, dtype=np.int64)
        self.dest = np.empty(0, dtype=np.int64)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.ts) < n:
            self.ts = np.empty(max(n, 2 * len(self.ts)), dtype=np.int64)
            self.dest = np.empty(len(self.ts), dtype=np.int64)
        return self.ts[:n], self.dest[:n]


def _merge_parts(
    parts: list[dict[str, np.ndarray]], ids: list[int], scratch: _Scratch
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Merge time-sorted parts (given in stream, then file order) into one batch, stably."""
    if len(parts) == 1:
        return parts[0], np.full(len(parts[0]["ts_recv"]), ids[0], dtype=np.int16)
    lens = np.array([len(p["ts_recv"]) for p in parts], dtype=np.int64)
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    ts, dest = scratch.get(total)
    for j, p in enumerate(parts):
        ts[offsets[j] : offsets[j + 1]] = p["ts_recv"]
    if len(parts) <= _KWAY_MAX:
        _merge_positions(ts, offsets, dest)
    else:
        dest[np.argsort(ts, kind="stable")] = np.arange(total, dtype=np.int64)
    o = _POOL.outputs(total)
    stream = o.pop("stream")
    for j, p in enumerate(parts):
        _scatter_rows(
            dest[offsets[j] : offsets[j + 1]], ids[j],
            p["ts_event"], p["ts_recv"], p["kind"], p["side"], p["price"], p["size"], p["sequence"], p["seq_first"],
            p["batch_end"],
            o["ts_event"], o["ts_recv"], o["kind"], o["side"], o["price"], o["size"], o["sequence"], o["seq_first"],
            o["batch_end"], stream,
        )  # fmt: skip
    return o, stream


_KWAY_MAX = 16


@nb.njit(cache=True, nogil=True)
def _scatter_rows(
    dest, sid, te, tr, kd, sd, px, sz, sq, sf, be, o_te, o_tr, o_kd, o_sd, o_px, o_sz, o_sq, o_sf, o_be, o_st
):  # pragma: no cover - compiled
    """Copy one run's rows to their merged positions, all columns in one pass."""
    for i in range(dest.shape[0]):
        d = dest[i]
        o_te[d] = te[i]
        o_tr[d] = tr[i]
        o_kd[d] = kd[i]
        o_sd[d] = sd[i]
        o_px[d] = px[i]
        o_sz[d] = sz[i]
        o_sq[d] = sq[i]
        o_sf[d] = sf[i]
        o_be[d] = be[i]
        o_st[d] = sid


@nb.njit(cache=True, nogil=True)
def _merge_positions(ts: np.ndarray, offsets: np.ndarray, dest: np.ndarray) -> None:  # pragma: no cover - compiled
    """Fill ``dest`` with the output position of every row of the sorted runs ``ts[offsets[j]:offsets[j+1]]``.

    A k-way merge: the smallest head wins and ties go to the earlier run, which keeps the order
    (ts_recv, stream, file order) when runs are listed by stream and then file order. The winning
    run is drained while it stays ahead of the best other head, so bursts cost one compare a row.
    """
    k = offsets.shape[0] - 1
    heads = offsets[:-1].copy()
    n = offsets[k]
    out = 0
    while out < n:
        best = -1
        best_ts = 0
        second = -1
        second_ts = 0
        for j in range(k):
            h = heads[j]
            if h < offsets[j + 1]:
                t = ts[h]
                if best < 0 or t < best_ts:
                    second = best
                    second_ts = best_ts
                    best = j
                    best_ts = t
                elif second < 0 or t < second_ts:
                    second = j
                    second_ts = t
        h = heads[best]
        stop = offsets[best + 1]
        if second < 0:
            while h < stop:
                dest[h] = out
                out += 1
                h += 1
        elif best < second:
            while h < stop and ts[h] <= second_ts:
                dest[h] = out
                out += 1
                h += 1
        else:
            while h < stop and ts[h] < second_ts:
                dest[h] = out
                out += 1
                h += 1
        heads[best] = h
