"""The replay hot loop: market-data rows into the books we see and into the venue's, in time order.

Two cursors walk the same market data:

* the **local** cursor applies rows at their local receive time ``ts_recv`` to the books the
  strategies read, and stops where the engine has work: a book message a strategy subscribed to
  (after the *whole* message), a trade it wants, a crossed book, a bad level, a reset row;
* the **venue** cursor applies rows at their venue time (``sim.venue_time``) to the simulated
  venue's own books and moves our resting orders' queues, and stops when one of them fills
  (``sim.matching``).

They are merged by time: the venue's row first when both fall on the same instant (the venue
acts, then we hear of it), and neither passes ``t_stop``, the time of the next scheduled event
(an order reaching the venue, an answer reaching us, a timer), which goes first at equal times.

Modes (``params[P_MODE]``): ``LOCAL`` has no venue (book replay alone); ``SHARED`` lets the venue
act on the local book at local time, one cursor (feed latency 0: both clocks read the same);
``DUAL`` runs both cursors over two sets of books.

Everything else (most level changes far from the top) never leaves compiled code.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from engine.book import FULL, best_price, clear_book, level_size, set_level
from sim.matching import F_COLS, R_COLS, cross_resting, on_level, on_trade, rests_at

# st[stream, ...]: the local books' replay state
ST_LAST_BID = 0
ST_LAST_ASK = 1
ST_IN_SNAP = 2
ST_WAKE_BOOK = 3  # 0 never, 1 when the best bid/ask price changes, 2 after every book message
ST_WAKE_TRADE = 4
ST_VALID = 5  # a snapshot was applied and the book is not crossed
ST_COLS = 6

# vst[stream, ...]: the venue books' replay state
VS_IN_SNAP = 0
VS_VALID = 1
VS_COLS = 2

# params[...]
P_I = 0  # local cursor
P_N = 1  # local rows available
P_T_STOP = 2
P_QMODEL = 3
P_NREST = 4
P_IV = 5  # venue cursor
P_NV = 6  # venue rows available
P_MODE = 7
P_LEND = 8  # 1: no local rows follow [i, n)
P_VEND = 9  # 1: no venue rows follow [iv, nv)
P_LEN = 10

LOCAL = 0
SHARED = 1
DUAL = 2

# out[...]
O_NEXT = 0
O_MASK = 1
O_STREAM = 2
O_NFILLS = 3
O_ROW = 4
O_VNEXT = 5
O_FILL_TS = 6  # time of the row whose processing filled resting orders
O_LEN = 7

# stop reasons (bit mask)
M_BOOK = 1
M_TRADE = 2
M_FILL = 4
M_CROSSED = 8
M_BAD = 16
M_FULL = 32  # the local books' overflow is full: grow and call again
M_GAP = 64  # a book-reset row: the importer saw the venue's update chain break
M_VFULL = 128  # the venue books' overflow is full
M_LNEED = 256  # the local rows ran out before t_stop: the next batch, please
M_VNEED = 512  # the venue rows ran out before t_stop

K_SNAPSHOT = 0
K_DELTA = 1
K_TRADE = 2

NEVER = np.iinfo(np.int64).max


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
    vts: np.ndarray,
    vkind: np.ndarray,
    vside: np.ndarray,
    vprice: np.ndarray,
    vsize: np.ndarray,
    vstream: np.ndarray,
    vbatch_end: np.ndarray,
    vlad: np.ndarray,
    vkeys: np.ndarray,
    vsizes: np.ndarray,
    vcnt: np.ndarray,
    vdead: np.ndarray,
    vmeta: np.ndarray,
    vst: np.ndarray,
    rests: np.ndarray,
    fills: np.ndarray,
    params: np.ndarray,
    power: float,
    out: np.ndarray,
) -> None:
    """Process rows in time order until something needs Python (``out``; see the O_* slots)."""
    i = params[P_I]
    n = params[P_N]
    t_stop = params[P_T_STOP]
    qmodel = params[P_QMODEL]
    n_rest = params[P_NREST]
    iv = params[P_IV]
    nv = params[P_NV]
    mode = params[P_MODE]
    lend = params[P_LEND]
    vend = params[P_VEND]
    nf = 0
    mask = 0
    s = 0
    row = i - 1
    fill_ts = 0
    shared = mode == SHARED
    while True:
        if i < n:
            tl = ts_recv[i]
        elif lend != 0:
            tl = NEVER
        else:
            mask |= M_LNEED
            break
        tv = NEVER
        if mode == DUAL:
            if iv < nv:
                tv = vts[iv]
            elif vend == 0:
                mask |= M_VNEED
                break
        if tv <= tl:
            if tv >= t_stop:
                break
            # --- the venue's row, at venue time ------------------------------------------
            k = vkind[iv]
            vs = vstream[iv]
            if k == K_TRADE:
                if n_rest > 0:
                    nf = on_trade(rests, n_rest, vs, vprice[iv], vsize[iv], vside[iv], fills, nf)
                    if nf > 0:
                        mask |= M_FILL
                        fill_ts = tv
                iv += 1
                if mask != 0:
                    break
                continue
            if k != K_SNAPSHOT and k != K_DELTA:
                iv += 1  # bbo oracle rows never touch a book
                continue
            if k == K_SNAPSHOT and vprice[iv] == 0 and vsize[iv] == 0 and vst[vs, VS_IN_SNAP] == 0:
                clear_book(vlad, vcnt, vdead, vmeta, vs)  # the data lost the book: so does the venue
                vst[vs, VS_VALID] = 0
                iv += 1
                continue
            if k == K_SNAPSHOT and vst[vs, VS_IN_SNAP] == 0:
                clear_book(vlad, vcnt, vdead, vmeta, vs)
                vst[vs, VS_IN_SNAP] = 1
                vst[vs, VS_VALID] = 1
            px = vprice[iv]
            q = vsize[iv]
            if px > 0 and q >= 0:  # bad rows are the local side's to report
                sd = 0 if vside[iv] > 0 else 1
                if n_rest > 0 and rests_at(rests, n_rest, vs, sd, px):
                    old = level_size(vlad, vkeys, vsizes, vcnt, vmeta, vs, sd, px)
                    on_level(rests, n_rest, vs, sd, px, old, q, qmodel, power)
                if set_level(vlad, vkeys, vsizes, vcnt, vdead, vmeta, vs, sd, px, q) == FULL:
                    mask |= M_VFULL
                    break  # row not applied: the caller grows the arrays and calls again
            if vbatch_end[iv]:
                vst[vs, VS_IN_SNAP] = 0
                if n_rest > 0 and vst[vs, VS_VALID] != 0:
                    bb = best_price(vlad, vkeys, vsizes, vcnt, vmeta, vs, 0)
                    ba = best_price(vlad, vkeys, vsizes, vcnt, vmeta, vs, 1)
                    if bb == 0 or ba == 0 or bb < ba:
                        nf = cross_resting(rests, n_rest, vs, bb, ba, fills, nf)
                        if nf > 0:
                            mask |= M_FILL
                            fill_ts = tv
            iv += 1
            if mask != 0:
                break
            continue
        if tl == NEVER or tl >= t_stop:
            break
        # --- our row, at local time (and the venue's too, when it shares our book) ------------
        k = kind[i]
        s = stream[i]
        row = i
        if k == K_TRADE:
            if shared and n_rest > 0:
                nf = on_trade(rests, n_rest, s, price[i], size[i], side[i], fills, nf)
                if nf > 0:
                    mask |= M_FILL
                    fill_ts = tl
            if st[s, ST_WAKE_TRADE] != 0:
                mask |= M_TRADE
            i += 1
            if mask != 0:
                break
            continue
        if k != K_SNAPSHOT and k != K_DELTA:
            i += 1
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
        if px <= 0 or q < 0:
            mask |= M_BAD
        else:
            sd = 0 if side[i] > 0 else 1
            if shared and n_rest > 0 and rests_at(rests, n_rest, s, sd, px):
                old = level_size(lad, keys, sizes, cnt, meta, s, sd, px)
                on_level(rests, n_rest, s, sd, px, old, q, qmodel, power)
            if set_level(lad, keys, sizes, cnt, dead, meta, s, sd, px, q) == FULL:
                mask |= M_FULL
                break  # row not applied: the caller grows the arrays and calls again
        if batch_end[i]:
            st[s, ST_IN_SNAP] = 0
            bb = best_price(lad, keys, sizes, cnt, meta, s, 0)
            ba = best_price(lad, keys, sizes, cnt, meta, s, 1)
            if bb != 0 and ba != 0 and bb >= ba:
                mask |= M_CROSSED
                # the book is not shown until a message uncrosses it; that one wakes whoever listens,
                # whether or not the top moved from what they saw before the cross
                st[s, ST_LAST_BID] = 0
                st[s, ST_LAST_ASK] = 0
            elif st[s, ST_VALID] != 0:
                if shared and n_rest > 0:
                    nf = cross_resting(rests, n_rest, s, bb, ba, fills, nf)
                    if nf > 0:
                        mask |= M_FILL
                        fill_ts = tl
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
    out[O_ROW] = row
    out[O_VNEXT] = iv
    out[O_FILL_TS] = fill_ts


def warm_up() -> None:
    """Load (or compile) the kernels with the replay's argument types, so that a run's timing
    measures replay, not JIT. Compiled code is cached on disk after the first time."""
    from engine.book import BookSet, top_of_book, walk_book

    def ro(a: np.ndarray) -> np.ndarray:
        a.flags.writeable = False  # as the replay passes row arrays (``sim.replay.readonly``)
        return a

    books = BookSet(1, capacity=8)
    z64 = ro(np.zeros(1, dtype=np.int64))
    z8 = ro(np.zeros(1, dtype=np.int8))
    z32 = ro(np.zeros(1, dtype=np.int32))
    zb = ro(np.zeros(1, dtype=np.bool_))
    st = np.zeros((1, ST_COLS), dtype=np.int64)
    vst = np.zeros((1, VS_COLS), dtype=np.int64)
    rests = np.zeros((4, R_COLS), dtype=np.int64)
    fills = np.zeros((8, F_COLS), dtype=np.int64)
    params = np.zeros(P_LEN, dtype=np.int64)
    params[P_LEND] = params[P_VEND] = 1
    out = np.zeros(O_LEN, dtype=np.int64)
    arrays = books.arrays()
    run_rows(
        z64, z8, z8, z64, z64, z32, zb, *arrays, st,
        z64, z8, z8, z64, z64, z32, zb, *arrays, vst,
        rests, fills, params, 2.0, out,
    )  # fmt: skip
    top_of_book(books.lad, books.keys, books.sizes, books.cnt, books.meta, 0, np.zeros(4, dtype=np.int64))
    walk_book(books.lad, books.keys, books.sizes, books.cnt, books.meta, 0, True, 1, 0, np.zeros((2, 2), np.int64))
