"""The replay kernel's arrays held in one compiled object, so a call into the kernel passes four
arguments instead of thirty-three.

numba unboxes every array argument on each call (about 90 ns apiece here), and the replay calls
the kernel once per wake: with thirty-three arguments that was 3 µs a call, the largest single
cost of a strategy woken on every market message. A ``KernelState`` (a numba StructRef: one
pointer to unbox, and cacheable on disk, which a jitclass is not) keeps the row arrays, both sets
of books and the resting orders; Python replaces a field only when it changes (a new batch of
rows, a grown book or order table), each a few µs.
"""

from __future__ import annotations

import time

import numba as nb
import numpy as np
from numba import types
from numba.experimental import structref

from engine.book import top_of_book
from sim.kernel import (
    M_BOOK,
    NEVER,
    O_LEN,
    O_MASK,
    O_NEXT,
    O_ROW,
    O_STREAM,
    O_VNEXT,
    P_I,
    P_IV,
    P_LEND,
    P_N,
    P_NREST,
    P_NV,
    P_T_STOP,
    P_VEND,
    run_rows,
)
from sim.matching import F_COLS, R_COLS

# ``out`` slots beyond the kernel's (``sim.kernel.O_*``): what a wake's handler reads of the row
# that stopped the kernel and of the woken book, so Python takes them in one ``out.tolist()``
# instead of a numpy scalar read each
X_TS = O_LEN  # the row's ts_recv
X_TS_EVENT = O_LEN + 1
X_SEQ = O_LEN + 2  # the row's venue sequence number
X_SIDE = O_LEN + 3
X_PRICE = O_LEN + 4
X_SIZE = O_LEN + 5
X_BB = O_LEN + 6  # on a book wake: best bid, its size, best ask, its size
X_BBQ = O_LEN + 7
X_BA = O_LEN + 8
X_BAQ = O_LEN + 9
X_NXT = O_LEN + 10  # the time of the next row either cursor holds (NEVER when neither does)
OUT_LEN = O_LEN + 11

_LOCAL = ("ts_recv", "kind", "side", "price", "size", "stream", "batch_end")
_BOOKS = ("lad", "keys", "sizes", "cnt", "dead", "meta")
FIELDS = (
    *_LOCAL,
    "ts_event",
    "sequence",
    *_BOOKS,
    "lstate",  # not "st": the name numba gives the instance in the generated constructor
    *(f"v{n}" for n in _LOCAL),
    *(f"v{n}" for n in _BOOKS),
    "vstate",
    "rests",
    "fills",
)


@structref.register
class KernelStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(t)) for name, t in fields)


class KernelState(structref.StructRefProxy):
    """The kernel's arrays (``FIELDS``); built by ``new_state``."""


structref.define_boxing(KernelStateType, KernelState)


def _arr(dtype: types.Type, ndim: int, readonly: bool = False) -> types.Array:
    return types.Array(dtype, ndim, "C", readonly=readonly)


_ROWS = (
    _arr(types.int64, 1, True),
    _arr(types.int8, 1, True),
    _arr(types.int8, 1, True),
    _arr(types.int64, 1, True),
    _arr(types.int64, 1, True),
    _arr(types.int32, 1, True),
    _arr(types.bool_, 1, True),
)
_BOOK_TYPES = (*(_arr(types.int64, 3),) * 3, *(_arr(types.int64, 2),) * 3)
_I2 = _arr(types.int64, 2)
#: one concrete type, written out: numba's own proxy constructor would compile (uncached) in
#: every process, and a field typed from whatever arrays came first could differ between runs
STATE_TYPE = KernelStateType(
    list(
        zip(
            FIELDS,
            (*_ROWS, _arr(types.int64, 1, True), _arr(types.int64, 1, True), *_BOOK_TYPES, _I2,
             *_ROWS, *_BOOK_TYPES, _I2, _I2, _I2),
            strict=True,
        )
    )
)  # fmt: skip


@nb.njit(cache=True)
def new_state(
    ts_recv, kind, side, price, size, stream, batch_end, ts_event, sequence,
    lad, keys, sizes, cnt, dead, meta, lstate,
    vts, vkind, vside, vprice, vsize, vstream, vbatch_end,
    vlad, vkeys, vsizes, vcnt, vdead, vmeta, vstate,
    rests, fills,
):  # fmt: skip
    """A ``KernelState`` holding these arrays (row arrays read-only and C-contiguous). The replay
    builds a new one whenever an array changes (a batch of rows, a grown book or order table)."""
    s = structref.new(STATE_TYPE)
    s.ts_recv = ts_recv
    s.kind = kind
    s.side = side
    s.price = price
    s.size = size
    s.stream = stream
    s.batch_end = batch_end
    s.ts_event = ts_event
    s.sequence = sequence
    s.lad = lad
    s.keys = keys
    s.sizes = sizes
    s.cnt = cnt
    s.dead = dead
    s.meta = meta
    s.lstate = lstate
    s.vts_recv = vts
    s.vkind = vkind
    s.vside = vside
    s.vprice = vprice
    s.vsize = vsize
    s.vstream = vstream
    s.vbatch_end = vbatch_end
    s.vlad = vlad
    s.vkeys = vkeys
    s.vsizes = vsizes
    s.vcnt = vcnt
    s.vdead = vdead
    s.vmeta = vmeta
    s.vstate = vstate
    s.rests = rests
    s.fills = fills
    return s


@nb.njit(cache=True, nogil=True)
def run_state(
    s: KernelState,
    params: np.ndarray,
    power: float,
    out: np.ndarray,
    i: int,
    n: int,
    t_stop: int,
    n_rest: int,
    iv: int,
    nv: int,
    lend: bool,
    vend: bool,
) -> None:
    """``sim.kernel.run_rows`` on the arrays ``s`` holds, from the cursors given (scalars unbox
    faster than numpy stores from Python), then the ``X_*`` slots of ``out``."""
    params[P_I] = i
    params[P_N] = n
    params[P_T_STOP] = t_stop
    params[P_NREST] = n_rest
    params[P_IV] = iv
    params[P_NV] = nv
    params[P_LEND] = 1 if lend else 0
    params[P_VEND] = 1 if vend else 0
    run_rows(
        s.ts_recv, s.kind, s.side, s.price, s.size, s.stream, s.batch_end,
        s.lad, s.keys, s.sizes, s.cnt, s.dead, s.meta, s.lstate,
        s.vts_recv, s.vkind, s.vside, s.vprice, s.vsize, s.vstream, s.vbatch_end,
        s.vlad, s.vkeys, s.vsizes, s.vcnt, s.vdead, s.vmeta, s.vstate,
        s.rests, s.fills, params, power, out,
    )  # fmt: skip
    i = out[O_NEXT]
    iv = out[O_VNEXT]
    ts_l = s.ts_recv[i] if i < n else NEVER
    ts_v = s.vts_recv[iv] if iv < nv else NEVER
    out[X_NXT] = ts_l if ts_l < ts_v else ts_v
    row = out[O_ROW]
    if row >= 0 and row < s.ts_recv.shape[0]:
        out[X_TS] = s.ts_recv[row]
        out[X_TS_EVENT] = s.ts_event[row]
        out[X_SEQ] = s.sequence[row]
        out[X_SIDE] = s.side[row]
        out[X_PRICE] = s.price[row]
        out[X_SIZE] = s.size[row]
    if out[O_MASK] & M_BOOK:  # the woken book's top, for the engine's ``Book``
        top_of_book(s.lad, s.keys, s.sizes, s.cnt, s.meta, out[O_STREAM], out[X_BB : X_BB + 4])


def warm_up() -> dict[str, float | int]:
    """Load (or, on a cold cache, compile) every compiled function a backtest's replay calls, with
    the replay's argument types, before the replay starts: its clock measures replay, not JIT.
    Returns the seconds it took and how many functions were compiled rather than loaded from the
    on-disk cache (``compiled`` > 0: the first run after an install or an engine change)."""
    from engine.book import BookSet, top_of_book, walk_book
    from sim import kernel as K

    fns = (K.run_rows, new_state, run_state, top_of_book, walk_book)
    misses = sum(sum(f.stats.cache_misses.values()) for f in fns)
    t0 = time.perf_counter()
    K.warm_up()
    books = BookSet(1, capacity=8)

    def ro(dtype: type) -> np.ndarray:
        a = np.zeros(1, dtype=dtype)
        a.flags.writeable = False
        return a

    rows = (ro(np.int64), ro(np.int8), ro(np.int8), ro(np.int64), ro(np.int64), ro(np.int32), ro(np.bool_))
    lst = np.zeros((1, K.ST_COLS), dtype=np.int64)
    vst = np.zeros((1, K.VS_COLS), dtype=np.int64)
    rests = np.zeros((4, R_COLS), dtype=np.int64)
    fills = np.zeros((8, F_COLS), dtype=np.int64)
    arrays = books.arrays()
    s = new_state(*rows, ro(np.int64), ro(np.int64), *arrays, lst, *rows, *arrays, vst, rests, fills)
    out = np.zeros(OUT_LEN, dtype=np.int64)
    run_state(s, np.zeros(K.P_LEN, dtype=np.int64), 2.0, out, 0, 0, 0, 0, 0, 0, True, True)
    compiled = sum(sum(f.stats.cache_misses.values()) for f in fns) - misses
    return {"seconds": time.perf_counter() - t0, "compiled": compiled}


if __name__ == "__main__":  # ``python -m sim.kernel_state``: the replay's kernels alone
    got = warm_up()
    print(f"replay kernels ready: {got['compiled']} compiled, the rest loaded from the cache ({got['seconds']:.1f} s)")
