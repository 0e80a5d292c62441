"""The rows the compiled loop stops at, found in one compiled pass (``sim.compiled.loop``)."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def prepare(
    ts: np.ndarray, kind: np.ndarray, batch_end: np.ndarray, feed_ns: int, trades: bool
) -> tuple[np.ndarray, int, int, int]:
    """One pass over the rows for the loop (``loop`` docstring): the rows our cursor stops at (the
    last row of each book message, and each trade if the strategy acts on trades; the others
    change only the book we would hold, which the venue's stands in for), the ring's size (a power
    of two above the most rows received within one feed latency), the first snapshot row (the
    book is valid from there on; ``len(ts)`` when there is none) and the book messages."""
    n = ts.shape[0]
    stops = np.empty(n, dtype=np.int64)
    m = 0
    msgs = 0
    first_snap = n
    ahead = 0
    j = 0
    for i in range(n):
        k = kind[i]
        if k == 0 and first_snap == n:
            first_snap = i
        if batch_end[i] and k <= 1:
            stops[m] = i
            m += 1
            msgs += 1
        elif trades and k == 2:
            stops[m] = i
            m += 1
        edge = ts[i] + feed_ns
        while j < n and ts[j] <= edge:
            j += 1
        if j - i > ahead:
            ahead = j - i
    ring = 2
    while ring < ahead + 2:
        ring *= 2
    return stops[:m].copy(), ring, first_snap, msgs
