"""The in-sync diff-depth message in one compiled call: read it from the frame, check it continues
the chain, apply both sides to the book and read the new top of book.

This is the common case of the live feed (a book in sync receiving the next message) and the
first leg of the tick-to-order path. The general path (``decode.MarketFrameDecoder`` ->
``DepthDiff`` -> ``BookSync.on_diff``) costs one ``DepthDiff``, two arrays and four compiled calls
per message; here the frame's bytes go to one call that leaves the book updated. Whatever is not
the plain case (a payload not in Binance's compact form, a message that does not continue the
chain, a book not in sync) is reported back untouched and takes the general path, which also
produces the errors, gaps and resyncs: the two paths end in the same book.

Integrity checks here, all integer compares on values already in registers: the scan declines a
number of more than 18 digits (ids, times, fixed-point values stay below 10**18 < 2**62) and a
zero price; ``apply_depth`` declines an event time beyond ``MAX_EVENT_MS`` and a message whose
ids span more than ``res[R_MAXJ]`` (the configured ``max_update_id_jump``). What it declines, the
general path decodes again and refuses with an incident (``decode_error``, ``bad_level``,
``id_jump``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np

from engine.book import set_range, top_of_book
from venues.binance.numbers import MAX_EVENT_MS, _scan_depth

APPLIED = 0
#: nothing was applied: not the plain form, or not ``U == previous u + 1``; take the general path
NOT_PLAIN = 1
NOT_NEXT = 2
#: the book's overflow is full: ``res[R_SIDE]`` / ``res[R_ROW]`` say where applying stopped
FULL_STOP = 3

# res slots
R_E, R_U, R_LAST, R_NB, R_NA, R_SIDE, R_ROW = 0, 1, 2, 3, 4, 5, 6
R_TOP = 7  # best bid, its size, best ask, its size: res[7:11]
#: an input, set once by the owner of ``res``: the largest ``u - U`` taken (0: no limit)
R_MAXJ = 11
RES_LEN = 12


@nb.njit(cache=True, nogil=True)
def apply_depth(buf, lo, hi, scratch, scale, lad, keys, sizes, cnt, dead, meta, b, prev_u, res) -> int:
    """Scan ``buf[lo:hi]`` (a depthUpdate payload) into ``scratch``; if it continues the chain
    (``U == prev_u + 1``) apply it to book ``b`` and write the new top of book into ``res[R_TOP:]``."""
    ev, first, last, nb_, na = _scan_depth(buf, lo, hi, scratch, scale)
    if ev < 0 or ev > MAX_EVENT_MS:
        return NOT_PLAIN
    res[R_E] = ev
    res[R_U] = first
    res[R_LAST] = last
    res[R_NB] = nb_
    res[R_NA] = na
    maxj = res[R_MAXJ]
    if first != prev_u + 1 or last < first or (maxj > 0 and last - first > maxj):
        return NOT_NEXT
    stop = set_range(lad, keys, sizes, cnt, dead, meta, b, 0, scratch, 0, nb_)
    if stop < nb_:
        res[R_SIDE] = 0
        res[R_ROW] = stop
        return FULL_STOP
    stop = set_range(lad, keys, sizes, cnt, dead, meta, b, 1, scratch, nb_, nb_ + na)
    if stop < nb_ + na:
        res[R_SIDE] = 1
        res[R_ROW] = stop
        return FULL_STOP
    top_of_book(lad, keys, sizes, cnt, meta, b, res[R_TOP:])
    return APPLIED


def compiled_apply(args: tuple[Any, ...]) -> Callable[..., int]:
    """``apply_depth`` without numba's per-call dispatch once it has been compiled for ``args``:
    the entry point of that signature. Typing 14 arguments on every call costs about a
    microsecond; ``BookSync`` always passes the same types (the frame's ``bytes``, its own int64
    arrays and ints), so the dispatcher is asked once. The signature is looked up by the
    arguments' types, so other compiled signatures (a test's, a uint8 array's) do not send the
    hot path back to the dispatcher. Until it is compiled, the dispatcher itself."""
    try:
        sig = tuple(nb.typeof(a) for a in args)
    except ValueError:
        return apply_depth
    cres = apply_depth.overloads.get(sig)
    return apply_depth if cres is None else cres.entry_point


def scratch_for(frame_bytes: int) -> np.ndarray:
    """Room for every level a payload of ``frame_bytes`` can hold (a level takes at least 9 bytes)."""
    cap = frame_bytes // 9 + 1
    return np.empty((2 * cap, 2), dtype=np.int64)


def warm_up() -> None:
    """Compile (or load from the cache) the feed's compiled code with the types the live path
    passes: ``scripts/setup.sh`` runs it once, so neither a first session nor a first test run
    compiles it (about 40 s cold)."""
    from engine.book import BookSet
    from venues.binance.numbers import SCALE, depth_from_json, levels_from_json

    payload = b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":1,"b":[["1.0","1.0"]],"a":[["2.0","1.0"]]}'
    depth_from_json(payload)
    levels_from_json(b'[["1.0","1.0"]]')
    bs = BookSet(1, capacity=8)
    res = np.zeros(RES_LEN, dtype=np.int64)
    frame = b'{"stream":"btcusdt@depth","data":' + payload + b"}"
    lo = frame.index(b'"data":') + 7
    apply_depth(frame, lo, len(frame) - 1, scratch_for(len(frame)), SCALE, *bs.arrays()[:6], 0, 0, res)
