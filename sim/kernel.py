"""The replay hot loop: apply market-data rows to the books and to the simulated venue's resting
orders, and stop only where Python has work to do.

One call processes rows ``[i0, n)`` whose ``ts_recv < t_stop`` and returns at the first row that
needs the engine: a book message the strategy subscribed to (after the *whole* message), a trade
it wants, a fill of a resting order, a crossed book, a bad level or a full book array. Everything
else (most level changes far from the top) never leaves compiled code.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from engine.book import FULL, best_price, clear_book, level_size, set_level
from sim.queue import fill_from_trade, queue_after_level_change

# st[stream, ...]
ST_LAST_BID = 0
ST_LAST_ASK = 1
ST_IN_SNAP = 2
ST_WAKE_BOOK = 3  # 0 never, 1 when the best bid/ask price changes, 2 after every book message
ST_WAKE_TRADE = 4
ST_VALID = 5  # a snapshot was applied and the book is not crossed
ST_COLS = 6

# rests[slot, ...]
R_ACTIVE = 0
R_STREAM = 1
R_SIDE = 2
R_PRICE = 3
R_LEAVES = 4
R_QUEUE = 5
R_TRADED = 6
R_COLS = 7

# fills[i, ...]
F_SLOT = 0
F_QTY = 1
F_PRICE = 2

# out[...]
O_NEXT = 0
O_MASK = 1
O_STREAM = 2
O_NFILLS = 3
O_ROW = 4

# stop reasons (bit mask)
M_BOOK = 1
M_TRADE = 2
M_FILL = 4
M_CROSSED = 8
M_BAD = 16
M_FULL = 32
M_GAP = 64  # a book-reset row: the importer saw the venue's update chain break

K_SNAPSHOT = 0
K_DELTA = 1
K_TRADE = 2


@nb.njit(cache=True, nogil=True)
def _emit_fill(fills: np.ndarray, nf: int, slot: int, qty: int, price: int) -> int:
    fills[nf, F_SLOT] = slot
    fills[nf, F_QTY] = qty
    fills[nf, F_PRICE] = price
    return nf + 1


@nb.njit(cache=True, nogil=True)
def _cross_resting(rests: np.ndarray, n_rest: int, s: int, bb: int, ba: int, fills: np.ndarray, nf: int) -> int:
    """The opposite side reached a resting order's price: the level it sat in was consumed."""
    for k in range(n_rest):
        if rests[k, R_ACTIVE] == 0 or rests[k, R_STREAM] != s:
            continue
        px = rests[k, R_PRICE]
        if (rests[k, R_SIDE] > 0 and ba > 0 and ba <= px) or (rests[k, R_SIDE] < 0 and bb > 0 and bb >= px):
            nf = _emit_fill(fills, nf, k, rests[k, R_LEAVES], px)
            rests[k, R_LEAVES] = 0
            rests[k, R_ACTIVE] = 0
    return nf


@nb.njit(cache=True, nogil=True)
def run_rows(
    ts_recv: np.ndarray,
    kind: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    stream: np.ndarray,
    batch_end: np.ndarray,
    lad: np.ndarray,
    keys: np.ndarray,
    sizes: np.ndarray,
    cnt: np.ndarray,
    dead: np.ndarray,
    meta: np.ndarray,
    st: np.ndarray,
    rests: np.ndarray,
    fills: np.ndarray,
    params: np.ndarray,
    power: float,
    out: np.ndarray,
) -> None:
    """params = [i0, n, t_stop, queue_model, n_rest]; results in ``out`` (see O_*)."""
    i = params[0]
    n = params[1]
    t_stop = params[2]
    qmodel = params[3]
    n_rest = params[4]
    fill_cap = fills.shape[0]
    nf = 0
    mask = 0
    s = 0
    while i < n:
        if ts_recv[i] >= t_stop:
            break
        k = kind[i]
        s = stream[i]
        if k == K_TRADE:
            px = price[i]
            q = size[i]
            agg = side[i]
            if n_rest > 0 and nf + n_rest < fill_cap:
                for r in range(n_rest):
                    if rests[r, R_ACTIVE] == 0 or rests[r, R_STREAM] != s:
                        continue
                    rp = rests[r, R_PRICE]
                    rs = rests[r, R_SIDE]
                    # a sell aggressor (or an unknown one at/below our bid) hits bids; symmetric for asks
                    if rs > 0:
                        hits = agg < 0 or (agg == 0 and px <= rp)
                        through = px < rp
                    else:
                        hits = agg > 0 or (agg == 0 and px >= rp)
                        through = px > rp
                    if not hits:
                        continue
                    if through:  # the whole level traded away: we were in it
                        nf = _emit_fill(fills, nf, r, rests[r, R_LEAVES], rp)
                        rests[r, R_LEAVES] = 0
                        rests[r, R_ACTIVE] = 0
                    elif px == rp:
                        rests[r, R_TRADED] += q
                        nq, fq = fill_from_trade(rests[r, R_QUEUE], rests[r, R_LEAVES], q)
                        rests[r, R_QUEUE] = nq
                        if fq > 0:
                            nf = _emit_fill(fills, nf, r, fq, rp)
                            rests[r, R_LEAVES] -= fq
                            if rests[r, R_LEAVES] == 0:
                                rests[r, R_ACTIVE] = 0
            if nf > 0:
                mask |= M_FILL
            if st[s, ST_WAKE_TRADE] != 0:
                mask |= M_TRADE
            i += 1
            if mask != 0:
                break
            continue
        if k != K_SNAPSHOT and k != K_DELTA:
            i += 1  # bbo oracle rows never touch the book
            continue
        if k == K_SNAPSHOT and price[i] == 0 and size[i] == 0 and st[s, ST_IN_SNAP] == 0:
            # reset row: the book is unknown until the next snapshot
            clear_book(lad, cnt, dead, meta, s)
            st[s, ST_VALID] = 0
            st[s, ST_LAST_BID] = 0
            st[s, ST_LAST_ASK] = 0
            mask |= M_GAP
            i += 1
            break
        if k == K_SNAPSHOT and st[s, ST_IN_SNAP] == 0:
            clear_book(lad, cnt, dead, meta, s)
            st[s, ST_IN_SNAP] = 1
            st[s, ST_VALID] = 1
        px = price[i]
        q = size[i]
        sd = 0 if side[i] > 0 else 1
        if px <= 0 or q < 0:
            mask |= M_BAD
        else:
            if n_rest > 0:
                for r in range(n_rest):
                    if (
                        rests[r, R_ACTIVE] != 0
                        and rests[r, R_STREAM] == s
                        and rests[r, R_PRICE] == px
                        and (rests[r, R_SIDE] > 0) == (sd == 0)
                    ):
                        old = level_size(lad, keys, sizes, cnt, meta, s, sd, px)
                        rests[r, R_QUEUE] = queue_after_level_change(
                            qmodel, power, rests[r, R_QUEUE], old, q, rests[r, R_TRADED]
                        )
                        rests[r, R_TRADED] = 0
            if set_level(lad, keys, sizes, cnt, dead, meta, s, sd, px, q) == FULL:
                mask |= M_FULL
                break  # row not applied: the caller grows the arrays and calls again
        if batch_end[i]:
            st[s, ST_IN_SNAP] = 0
            bb = best_price(lad, keys, sizes, cnt, meta, s, 0)
            ba = best_price(lad, keys, sizes, cnt, meta, s, 1)
            if bb != 0 and ba != 0 and bb >= ba:
                mask |= M_CROSSED
            elif st[s, ST_VALID] != 0:
                if n_rest > 0 and nf + n_rest < fill_cap:
                    nf = _cross_resting(rests, n_rest, s, bb, ba, fills, nf)
                    if nf > 0:
                        mask |= M_FILL
                wb = st[s, ST_WAKE_BOOK]
                if wb == 2 or (wb == 1 and (bb != st[s, ST_LAST_BID] or ba != st[s, ST_LAST_ASK])):
                    mask |= M_BOOK
                st[s, ST_LAST_BID] = bb
                st[s, ST_LAST_ASK] = ba
        i += 1
        if mask != 0:
            break
    out[O_NEXT] = i
    out[O_MASK] = mask
    out[O_STREAM] = s
    out[O_NFILLS] = nf
    out[O_ROW] = i - 1


def warm_up() -> None:
    """Load (or compile) the kernels with the replay's exact argument types, so that a run's
    timing measures replay, not JIT. Compiled code is cached on disk after the first time."""
    from engine.book import BookSet, top_of_book, walk_book

    books = BookSet(1, capacity=8)
    z64 = np.zeros(1, dtype=np.int64)
    z8 = np.zeros(1, dtype=np.int8)
    st = np.zeros((1, ST_COLS), dtype=np.int64)
    rests = np.zeros((4, R_COLS), dtype=np.int64)
    fills = np.zeros((8, 3), dtype=np.int64)
    params = np.zeros(5, dtype=np.int64)
    out = np.zeros(5, dtype=np.int64)
    run_rows(
        z64,
        z8,
        z8,
        z64,
        z64,
        np.zeros(1, dtype=np.int32),
        np.zeros(1, dtype=np.bool_),
        *books.arrays(),
        st,
        rests,
        fills,
        params,
        2.0,
        out,
    )
    top_of_book(books.lad, books.keys, books.sizes, books.cnt, books.meta, 0, np.zeros(4, dtype=np.int64))
    walk_book(books.lad, books.keys, books.sizes, books.cnt, books.meta, 0, True, 1, 0, np.zeros((2, 2), np.int64))
