"""L2 order books in fixed point, shared by replay, paper and live.

Each book is a *price ladder*: a window of ``W`` tick slots per side indexed by
``price // tick - base``, so a level change is one array store however deep it is, plus an
overflow of sorted arrays for the rare levels outside the window (far-away quotes that venues
publish beyond the top). The best bid/ask slot is tracked incrementally; when the market walks
towards the window's edge the window is re-centred (the overflow keeps the book exact across
it). Books of all symbols in a run live in one ``BookSet`` so the numba replay kernel updates any
of them without a Python call per row.

A book is *valid* only when it is in sync with its venue and not crossed; strategies are never
shown an invalid book.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from engine.model import Instrument

BID = 0
ASK = 1
WINDOW = 1 << 16  # tick slots per side; re-centred when the best gets within WINDOW/8 of an edge
_EDGE = WINDOW >> 3
_NAN = float("nan")

# meta[book, ...]
M_BASE = 0  # tick index of ladder slot 0
M_TICK = 1  # fixed-point tick
M_BEST_BID = 2  # ladder slot of the best bid, -1 when the ladder side is empty
M_BEST_ASK = 3
M_LIVE_BID = 4  # non-empty ladder slots
M_LIVE_ASK = 5
M_HAS_BASE = 6
M_COLS = 8

# set_level return codes
OK = 0
FULL = 1  # the overflow needs more capacity: grow and apply the change again


@nb.njit(cache=True, nogil=True, inline="always")
def lower_bound(keys: np.ndarray, n: int, key: int) -> int:
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


# --- overflow: ascending keys (bid key = price, ask key = -price), best level last ----------
@nb.njit(cache=True, nogil=True)
def _ov_compact(keys, sizes, cnt, dead, b, s) -> None:
    k = keys[b, s]
    z = sizes[b, s]
    w = 0
    for r in range(cnt[b, s]):
        if z[r] != 0:
            k[w] = k[r]
            z[w] = z[r]
            w += 1
    cnt[b, s] = w
    dead[b, s] = 0


@nb.njit(cache=True, nogil=True)
def _ov_set(keys, sizes, cnt, dead, b, s, price, size) -> int:
    # emptied slots stay (size 0) so deep deletes and re-adds do not shift the array
    key = price if s == 0 else -price
    n = cnt[b, s]
    k = keys[b, s]
    z = sizes[b, s]
    i = lower_bound(k, n, key)
    if i < n and k[i] == key:
        if size == 0:
            if z[i] != 0:
                z[i] = 0
                dead[b, s] += 1
                if i == n - 1:
                    while n > 0 and z[n - 1] == 0:
                        n -= 1
                        dead[b, s] -= 1
                    cnt[b, s] = n
                elif dead[b, s] > 256 and dead[b, s] * 2 > n:
                    _ov_compact(keys, sizes, cnt, dead, b, s)
        else:
            if z[i] == 0:
                dead[b, s] -= 1
            z[i] = size
        return OK
    if size == 0:
        return OK
    if n == k.shape[0]:
        if dead[b, s] == 0:
            return FULL
        _ov_compact(keys, sizes, cnt, dead, b, s)
        n = cnt[b, s]
        i = lower_bound(k, n, key)
    for j in range(n, i, -1):
        k[j] = k[j - 1]
        z[j] = z[j - 1]
    k[i] = key
    z[i] = size
    cnt[b, s] = n + 1
    return OK


@nb.njit(cache=True, nogil=True)
def _ov_get(keys, sizes, cnt, b, s, price) -> int:
    key = price if s == 0 else -price
    n = cnt[b, s]
    i = lower_bound(keys[b, s], n, key)
    if i < n and keys[b, s, i] == key:
        return sizes[b, s, i]
    return 0


@nb.njit(cache=True, nogil=True)
def _ov_merge(keys, sizes, cnt, dead, b, s, uk, uz, m) -> int:
    """Apply ``m`` changes (``uk`` ascending, unique; ``uz`` sizes, 0 removes) to one side's
    overflow in one merge pass, dropping emptied slots on the way. One pass costs what one insert
    near the front costs (a shift of the whole array), so many changes at once - the deep levels
    of a large venue message, a window move - cost O(n + m) instead of O(n * m).
    Returns FULL (nothing changed) when the result would not fit."""
    k = keys[b, s]
    z = sizes[b, s]
    n = cnt[b, s]
    tk = np.empty(n + m, dtype=np.int64)
    tz = np.empty(n + m, dtype=np.int64)
    out = 0
    i = 0
    j = 0
    while i < n or j < m:
        if j >= m or (i < n and k[i] < uk[j]):
            if z[i] != 0:
                tk[out] = k[i]
                tz[out] = z[i]
                out += 1
            i += 1
        else:
            if uz[j] != 0:
                tk[out] = uk[j]
                tz[out] = uz[j]
                out += 1
            if i < n and k[i] == uk[j]:
                i += 1
            j += 1
    if out > k.shape[0]:
        return FULL
    k[:out] = tk[:out]
    z[:out] = tz[:out]
    cnt[b, s] = out
    dead[b, s] = 0
    return OK


@nb.njit(cache=True, nogil=True)
def _ov_batch(keys, sizes, cnt, dead, b, s, levels, start, stop) -> int:
    """``levels[start:stop]`` ((price, size) rows, all outside the ladder window) into the
    overflow with one merge. Venues send a side's levels sorted (either way); anything else is
    sorted here, and a price given twice keeps its last size, as applying the rows in order would."""
    m = stop - start
    uk = np.empty(m, dtype=np.int64)
    uz = np.empty(m, dtype=np.int64)
    for r in range(m):
        p = levels[start + r, 0]
        uk[r] = p if s == 0 else -p
        uz[r] = levels[start + r, 1]
    ascending = True
    descending = True
    for r in range(1, m):
        if uk[r] <= uk[r - 1]:
            ascending = False
        if uk[r] >= uk[r - 1]:
            descending = False
    if descending:
        uk = uk[::-1].copy()
        uz = uz[::-1].copy()
    elif not ascending:
        order = np.argsort(uk, kind="mergesort")  # stable: equal prices stay in message order
        sk = uk[order]
        sz = uz[order]
        w = 0
        for r in range(m):
            if w > 0 and sk[r] == uk[w - 1]:
                uz[w - 1] = sz[r]  # the later change of the same price wins
            else:
                uk[w] = sk[r]
                uz[w] = sz[r]
                w += 1
        m = w
    return _ov_merge(keys, sizes, cnt, dead, b, s, uk, uz, m)


# --- the ladder ------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True, inline="always")
def _slot(meta, b, price) -> int:
    """Ladder slot of ``price``, or -1 outside the window / off the tick grid."""
    t = meta[b, M_TICK]
    q = price // t  # one division (a modulo as well would be a second)
    if q * t != price:
        return -1
    j = q - meta[b, M_BASE]
    if j < 0 or j >= WINDOW:
        return -1
    return j


@nb.njit(cache=True, nogil=True, inline="always")
def _rescan(lad, meta, b, s) -> None:
    if s == 0:
        j = meta[b, M_BEST_BID]
        if meta[b, M_LIVE_BID] == 0:
            meta[b, M_BEST_BID] = -1
            return
        while j >= 0 and lad[b, 0, j] == 0:
            j -= 1
        meta[b, M_BEST_BID] = j
    else:
        j = meta[b, M_BEST_ASK]
        if meta[b, M_LIVE_ASK] == 0:
            meta[b, M_BEST_ASK] = -1
            return
        while j < WINDOW and lad[b, 1, j] == 0:
            j += 1
        meta[b, M_BEST_ASK] = j if j < WINDOW else -1


@nb.njit(cache=True, nogil=True)
def _recenter(lad, keys, sizes, cnt, dead, meta, b, center_tick) -> int:
    """Move the window to centre on ``center_tick``: spill the ladder into the overflow, then pull
    back what falls inside the new window. Returns FULL if the overflow ran out of room."""
    t = meta[b, M_TICK]
    base = meta[b, M_BASE]
    cap = keys.shape[2]
    if cnt[b, 0] + meta[b, M_LIVE_BID] >= cap or cnt[b, 1] + meta[b, M_LIVE_ASK] >= cap:
        return FULL  # nothing moved yet; the window stays valid, only off-centre
    for s in range(2):
        live = meta[b, M_LIVE_BID] if s == 0 else meta[b, M_LIVE_ASK]
        if live == 0:
            continue
        # the live slots in ascending key order (bid key = price, ask key = -price), one merge
        uk = np.empty(live, dtype=np.int64)
        uz = np.empty(live, dtype=np.int64)
        m = 0
        for jj in range(WINDOW):
            j = jj if s == 0 else WINDOW - 1 - jj
            q = lad[b, s, j]
            if q != 0:
                uk[m] = (base + j) * t if s == 0 else -(base + j) * t
                uz[m] = q
                m += 1
                if m == live:
                    break
        if _ov_merge(keys, sizes, cnt, dead, b, s, uk, uz, m) == FULL:
            return FULL
        for r in range(m):
            p = uk[r] if s == 0 else -uk[r]
            lad[b, s, p // t - base] = 0
    meta[b, M_BASE] = center_tick - (WINDOW >> 1)
    meta[b, M_LIVE_BID] = 0
    meta[b, M_LIVE_ASK] = 0
    meta[b, M_BEST_BID] = -1
    meta[b, M_BEST_ASK] = -1
    for s in range(2):
        k = keys[b, s]
        z = sizes[b, s]
        for r in range(cnt[b, s]):
            if z[r] == 0:
                continue
            price = k[r] if s == 0 else -k[r]
            j = _slot(meta, b, price)
            if j >= 0:
                lad[b, s, j] = z[r]
                z[r] = 0
                dead[b, s] += 1
                if s == 0:
                    meta[b, M_LIVE_BID] += 1
                    if j > meta[b, M_BEST_BID]:
                        meta[b, M_BEST_BID] = j
                else:
                    meta[b, M_LIVE_ASK] += 1
                    if meta[b, M_BEST_ASK] < 0 or j < meta[b, M_BEST_ASK]:
                        meta[b, M_BEST_ASK] = j
        _ov_compact(keys, sizes, cnt, dead, b, s)
    return OK


@nb.njit(cache=True, nogil=True)
def clear_book(lad, cnt, dead, meta, b) -> None:
    for s in range(2):
        if (meta[b, M_LIVE_BID] if s == 0 else meta[b, M_LIVE_ASK]) > 0:
            lad[b, s, :] = 0
        cnt[b, s] = 0
        dead[b, s] = 0
    meta[b, M_BEST_BID] = -1
    meta[b, M_BEST_ASK] = -1
    meta[b, M_LIVE_BID] = 0
    meta[b, M_LIVE_ASK] = 0
    meta[b, M_HAS_BASE] = 0


@nb.njit(cache=True, nogil=True, inline="always")
def set_level(lad, keys, sizes, cnt, dead, meta, b, s, price, size) -> int:
    """Set the absolute size of one level of book ``b`` side ``s`` (0 removes it).

    Removing a level the book does not hold is legal (venues publish beyond snapshot depth).
    """
    if meta[b, M_HAS_BASE] == 0 and size != 0:
        t = meta[b, M_TICK]
        meta[b, M_BASE] = price // t - (WINDOW >> 1)
        meta[b, M_HAS_BASE] = 1
    j = _slot(meta, b, price)
    if j < 0:
        return _ov_set(keys, sizes, cnt, dead, b, s, price, size)
    return _set_slot(lad, keys, sizes, cnt, dead, meta, b, s, j, size)


@nb.njit(cache=True, nogil=True, inline="always")
def _set_slot(lad, keys, sizes, cnt, dead, meta, b, s, j, size) -> int:
    """``set_level`` for a price already known to sit in ladder slot ``j``."""
    old = lad[b, s, j]
    lad[b, s, j] = size
    if s == 0:
        if old == 0 and size != 0:
            meta[b, M_LIVE_BID] += 1
            if j > meta[b, M_BEST_BID]:
                meta[b, M_BEST_BID] = j
                if j >= WINDOW - _EDGE:
                    return _recenter(lad, keys, sizes, cnt, dead, meta, b, meta[b, M_BASE] + j)
        elif old != 0 and size == 0:
            meta[b, M_LIVE_BID] -= 1
            if j == meta[b, M_BEST_BID]:
                _rescan(lad, meta, b, 0)
                bb = meta[b, M_BEST_BID]
                if (bb >= 0 and bb < _EDGE) or (bb < 0 and cnt[b, 0] > 0):
                    return _recenter(
                        lad, keys, sizes, cnt, dead, meta, b, _best_tick_any(lad, keys, sizes, cnt, meta, b)
                    )
    else:
        if old == 0 and size != 0:
            meta[b, M_LIVE_ASK] += 1
            ba = meta[b, M_BEST_ASK]
            if ba < 0 or j < ba:
                meta[b, M_BEST_ASK] = j
                if j < _EDGE:
                    return _recenter(lad, keys, sizes, cnt, dead, meta, b, meta[b, M_BASE] + j)
        elif old != 0 and size == 0:
            meta[b, M_LIVE_ASK] -= 1
            if j == meta[b, M_BEST_ASK]:
                _rescan(lad, meta, b, 1)
                ba = meta[b, M_BEST_ASK]
                if (ba >= WINDOW - _EDGE) or (ba < 0 and cnt[b, 1] > 0):
                    return _recenter(
                        lad, keys, sizes, cnt, dead, meta, b, _best_tick_any(lad, keys, sizes, cnt, meta, b)
                    )
    return OK


_BATCH_MIN = 4  # consecutive levels outside the window merged into the overflow at once


@nb.njit(cache=True, nogil=True)
def set_range(lad, keys, sizes, cnt, dead, meta, b, s, levels, start, stop) -> int:
    """Apply ``levels[start:stop]`` ((price, size) rows) to one side, in order; returns the index
    it stopped at (``stop`` when done, earlier when the overflow is full and must grow). A run of
    rows outside the ladder window (the deep levels of a large message) goes to the overflow in
    one merge. Each row's slot is computed once: it costs an integer division, the largest part
    of applying a level."""
    i = start
    while i < stop:
        if meta[b, M_HAS_BASE] == 0:
            if set_level(lad, keys, sizes, cnt, dead, meta, b, s, levels[i, 0], levels[i, 1]) == FULL:
                return i
            i += 1
            continue
        j = _slot(meta, b, levels[i, 0])
        if j >= 0:
            if _set_slot(lad, keys, sizes, cnt, dead, meta, b, s, j, levels[i, 1]) == FULL:
                return i
            i += 1
            continue
        # outside the window; nothing below moves the window until the run ends
        e = i + 1
        while e < stop and _slot(meta, b, levels[e, 0]) < 0:
            e += 1
        if e - i >= _BATCH_MIN:
            if _ov_batch(keys, sizes, cnt, dead, b, s, levels, i, e) == FULL:
                return i
        else:
            for r in range(i, e):
                if _ov_set(keys, sizes, cnt, dead, b, s, levels[r, 0], levels[r, 1]) == FULL:
                    return r
        i = e
    return stop


@nb.njit(cache=True, nogil=True)
def set_levels(lad, keys, sizes, cnt, dead, meta, b, s, levels, start) -> int:
    """``set_range`` to the end of ``levels``."""
    return set_range(lad, keys, sizes, cnt, dead, meta, b, s, levels, start, levels.shape[0])


@nb.njit(cache=True, nogil=True)
def _best_tick_any(lad, keys, sizes, cnt, meta, b) -> int:
    """A tick index near the top of the book, to centre a new window on."""
    bp = best_price(lad, keys, sizes, cnt, meta, b, 0)
    ap = best_price(lad, keys, sizes, cnt, meta, b, 1)
    t = meta[b, M_TICK]
    if bp != 0 and ap != 0:
        return (bp + ap) // 2 // t
    if bp != 0:
        return bp // t
    if ap != 0:
        return ap // t
    return meta[b, M_BASE] + (WINDOW >> 1)


@nb.njit(cache=True, nogil=True, inline="always")
def best_price(lad, keys, sizes, cnt, meta, b, s) -> int:
    """Best price of one side (0 when empty): the better of the ladder's and the overflow's."""
    t = meta[b, M_TICK]
    n = cnt[b, s]
    ov = 0
    if n > 0:
        ov = keys[b, s, n - 1] if s == 0 else -keys[b, s, n - 1]
    j = meta[b, M_BEST_BID] if s == 0 else meta[b, M_BEST_ASK]
    if j < 0:
        return ov
    lp = (meta[b, M_BASE] + j) * t
    if ov == 0:
        return lp
    if s == 0:
        return lp if lp > ov else ov
    return lp if lp < ov else ov


@nb.njit(cache=True, nogil=True)
def level_size(lad, keys, sizes, cnt, meta, b, s, price) -> int:
    j = _slot(meta, b, price)
    if j >= 0:
        return lad[b, s, j]
    return _ov_get(keys, sizes, cnt, b, s, price)


@nb.njit(cache=True, nogil=True)
def top_levels(lad, keys, sizes, cnt, meta, b, s, out) -> int:
    """Best-first non-empty levels of one side into ``out[:, (price, size)]``; returns how many.

    Merges the ladder (walked from its best slot) with the overflow (walked from its end)."""
    t = meta[b, M_TICK]
    base = meta[b, M_BASE]
    m = 0
    j = meta[b, M_BEST_BID] if s == 0 else meta[b, M_BEST_ASK]
    r = cnt[b, s] - 1
    cap = out.shape[0]
    while m < cap:
        while r >= 0 and sizes[b, s, r] == 0:
            r -= 1
        lp = 0
        if j >= 0 and j < WINDOW:
            lp = (base + j) * t
        op = 0
        if r >= 0:
            op = keys[b, s, r] if s == 0 else -keys[b, s, r]
        if lp == 0 and op == 0:
            break
        take_ladder = op == 0 or (lp != 0 and ((s == 0 and lp > op) or (s == 1 and lp < op)))
        if take_ladder:
            out[m, 0] = lp
            out[m, 1] = lad[b, s, j]
            m += 1
            if s == 0:
                j -= 1
                while j >= 0 and lad[b, s, j] == 0:
                    j -= 1
            else:
                j += 1
                while j < WINDOW and lad[b, s, j] == 0:
                    j += 1
        else:
            out[m, 0] = op
            out[m, 1] = sizes[b, s, r]
            m += 1
            r -= 1
    return m


@nb.njit(cache=True, nogil=True)
def top_of_book(lad, keys, sizes, cnt, meta, b, out) -> None:
    """out = [best bid, its size, best ask, its size] (zeros for an empty side)."""
    for s in range(2):
        p = best_price(lad, keys, sizes, cnt, meta, b, s)
        out[2 * s] = p
        out[2 * s + 1] = level_size(lad, keys, sizes, cnt, meta, b, s, p) if p != 0 else 0


@nb.njit(cache=True, nogil=True)
def live_count(lad, sizes, cnt, meta, b, s) -> int:
    m = meta[b, M_LIVE_BID] if s == 0 else meta[b, M_LIVE_ASK]
    for r in range(cnt[b, s]):
        if sizes[b, s, r] != 0:
            m += 1
    return m


@nb.njit(cache=True, nogil=True)
def walk_book(lad, keys, sizes, cnt, meta, b, buy, qty, limit, out) -> int:
    """Fills for a marketable order of ``qty`` against book ``b`` (not mutating it).

    ``limit`` 0 means no price limit (a market order). Writes (price, qty) pairs into ``out`` and
    returns how many. A simulated venue does not remove the liquidity it takes from a replayed
    book: the data already records what the real market did next.
    """
    s = 1 if buy else 0
    m = top_levels(lad, keys, sizes, cnt, meta, b, s, out)
    k = 0
    while k < m and qty > 0:
        px = out[k, 0]
        if limit != 0 and ((buy and px > limit) or (not buy and px < limit)):
            break
        take = out[k, 1] if out[k, 1] < qty else qty
        out[k, 1] = take
        qty -= take
        k += 1
    return k


class BookSet:
    """The books of several instruments in shared arrays (ladders, overflows, per-book meta)."""

    def __init__(self, n_books: int, capacity: int = 4096, ticks: list[int] | None = None) -> None:
        self.lad = np.zeros((n_books, 2, WINDOW), dtype=np.int64)
        self.keys = np.zeros((n_books, 2, capacity), dtype=np.int64)
        self.sizes = np.zeros((n_books, 2, capacity), dtype=np.int64)
        self.cnt = np.zeros((n_books, 2), dtype=np.int64)
        self.dead = np.zeros((n_books, 2), dtype=np.int64)
        self.meta = np.zeros((n_books, M_COLS), dtype=np.int64)
        self.meta[:, M_TICK] = 1
        self.meta[:, M_BEST_BID] = -1
        self.meta[:, M_BEST_ASK] = -1
        for i, t in enumerate(ticks or ()):
            self.set_tick(i, t)

    def set_tick(self, b: int, tick: int) -> None:
        if tick <= 0:
            raise ValueError(f"tick must be > 0, got {tick}")
        self.meta[b, M_TICK] = tick

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def grow(self) -> None:
        """Double the overflow capacity (called when ``set_level`` reports ``FULL``)."""
        nb_, _, cap = self.keys.shape
        keys = np.zeros((nb_, 2, cap * 2), dtype=np.int64)
        sizes = np.zeros((nb_, 2, cap * 2), dtype=np.int64)
        keys[:, :, :cap] = self.keys
        sizes[:, :, :cap] = self.sizes
        self.keys = keys
        self.sizes = sizes

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.lad, self.keys, self.sizes, self.cnt, self.dead, self.meta


class Book:
    """One instrument's book: a view into a ``BookSet`` plus its cached top of book.

    Prices/sizes come in two forms: fixed-point ints (``*_fixed``) and floats for strategies.
    ``update_id`` is the venue sequence of the last applied message; ``valid`` is False while the
    book is out of sync (before the first snapshot, after a gap) or crossed.
    """

    __slots__ = (
        "_half_pmul",
        "_pmul",
        "_smul",
        "_top",
        "best_ask_fixed",
        "best_ask_size_fixed",
        "best_bid_fixed",
        "best_bid_size_fixed",
        "books",
        "idx",
        "instrument",
        "symbol",
        "ts_event",
        "ts_recv",
        "update_id",
        "valid",
        "venue",
    )

    def __init__(self, instrument: Instrument, books: BookSet | None = None, idx: int = 0) -> None:
        self.instrument = instrument
        self.venue = instrument.venue
        self.symbol = instrument.symbol
        self.books = books if books is not None else BookSet(1)
        self.idx = idx
        self.books.set_tick(idx, instrument.tick)
        self.update_id = 0
        self.ts_event = 0
        self.ts_recv = 0
        self.valid = False
        self.best_bid_fixed = 0
        self.best_ask_fixed = 0
        self.best_bid_size_fixed = 0
        self.best_ask_size_fixed = 0
        self._top = np.zeros(4, dtype=np.int64)
        self._pmul = 1.0 / 10**instrument.price_scale
        self._half_pmul = 0.5 * self._pmul  # exact: (a + b) * h is (a + b) * 0.5 * pmul to the bit
        self._smul = 1.0 / 10**instrument.size_scale

    # --- mutation (feeds and replay) -------------------------------------------------------
    def clear(self) -> None:
        bs = self.books
        clear_book(bs.lad, bs.cnt, bs.dead, bs.meta, self.idx)
        self.valid = False
        self.refresh_top()

    def apply_level(self, side: int, price: int, size: int) -> None:
        """Apply one level change; ``side`` is +1 bid / -1 ask (the market-data side code)."""
        s = BID if side > 0 else ASK
        bs = self.books
        while set_level(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.dead, bs.meta, self.idx, s, price, size) == FULL:
            bs.grow()

    def apply_levels(self, side: int, levels: np.ndarray) -> None:
        """Apply a whole side of one venue message at once: ``levels`` is int64 (n, 2) of
        (price, size). One compiled call instead of one Python call per level (the live hot path)."""
        s = BID if side > 0 else ASK
        bs = self.books
        n = levels.shape[0]
        i = 0
        while True:
            i = set_levels(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.dead, bs.meta, self.idx, s, levels, i)
            if i >= n:
                return
            bs.grow()

    def apply_snapshot(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        bs = self.books
        clear_book(bs.lad, bs.cnt, bs.dead, bs.meta, self.idx)
        for p, q in bids:
            self.apply_level(1, p, q)
        for p, q in asks:
            self.apply_level(-1, p, q)
        self.refresh_top()

    def refresh_top(self) -> None:
        bs = self.books
        top = self._top
        top_of_book(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, self.idx, top)
        self.best_bid_fixed = int(top[0])
        self.best_bid_size_fixed = int(top[1])
        self.best_ask_fixed = int(top[2])
        self.best_ask_size_fixed = int(top[3])

    # --- reading ----------------------------------------------------------------------------
    @property
    def best_bid(self) -> float:
        return self.best_bid_fixed * self._pmul

    @property
    def best_ask(self) -> float:
        return self.best_ask_fixed * self._pmul

    @property
    def best_bid_size(self) -> float:
        return self.best_bid_size_fixed * self._smul

    @property
    def best_ask_size(self) -> float:
        return self.best_ask_size_fixed * self._smul

    def top(self) -> tuple[float, float, float, float]:
        """(best bid, best ask, their sizes) in one call: the four properties at once."""
        pm, sm = self._pmul, self._smul
        return (
            self.best_bid_fixed * pm,
            self.best_ask_fixed * pm,
            self.best_bid_size_fixed * sm,
            self.best_ask_size_fixed * sm,
        )

    def mid_price(self) -> float:
        """``mid``, as a method: a property read is not specialised on Python 3.11 (each one is a
        call into a new frame from C), a method call is; the engine reads it on every update."""
        bb = self.best_bid_fixed
        ba = self.best_ask_fixed
        if not (bb and ba):
            return _NAN
        return (bb + ba) * self._half_pmul

    mid = property(mid_price)

    @property
    def spread(self) -> float:
        if not (self.best_bid_fixed and self.best_ask_fixed):
            return float("nan")
        return (self.best_ask_fixed - self.best_bid_fixed) * self._pmul

    def is_crossed(self) -> bool:
        return bool(self.best_bid_fixed and self.best_ask_fixed and self.best_bid_fixed >= self.best_ask_fixed)

    @property
    def depth(self) -> tuple[int, int]:
        bs = self.books
        return (
            int(live_count(bs.lad, bs.sizes, bs.cnt, bs.meta, self.idx, 0)),
            int(live_count(bs.lad, bs.sizes, bs.cnt, bs.meta, self.idx, 1)),
        )

    def levels(self, side: int, n: int = 10) -> list[tuple[int, int]]:
        """Top ``n`` levels of one side (+1 bids, -1 asks) as fixed-point (price, size), best first."""
        bs = self.books
        out = np.empty((max(n, 0), 2), dtype=np.int64)
        m = top_levels(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, self.idx, BID if side > 0 else ASK, out)
        return [(int(p), int(q)) for p, q in out[:m]]

    def bids(self, n: int = 10) -> list[tuple[float, float]]:
        return [(p * self._pmul, q * self._smul) for p, q in self.levels(1, n)]

    def asks(self, n: int = 10) -> list[tuple[float, float]]:
        return [(p * self._pmul, q * self._smul) for p, q in self.levels(-1, n)]

    def size_at(self, side: int, price: int) -> int:
        bs = self.books
        return int(level_size(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, self.idx, BID if side > 0 else ASK, price))

    def walk(self, buy: bool, qty: int, limit: int = 0, max_levels: int = 256) -> list[tuple[int, int]]:
        """Fills (price, qty) a marketable order would get, best first, without changing the book."""
        bs = self.books
        out = np.empty((max_levels, 2), dtype=np.int64)
        m = walk_book(bs.lad, bs.keys, bs.sizes, bs.cnt, bs.meta, self.idx, buy, qty, limit, out)
        return [(int(p), int(q)) for p, q in out[:m]]

    def snapshot(self, n: int = 20) -> dict:
        """A JSON-friendly view (the operator API's order book endpoint)."""
        return {
            "venue": self.venue,
            "symbol": self.symbol,
            "valid": self.valid,
            "update_id": self.update_id,
            "ts_event": self.ts_event,
            "ts_recv": self.ts_recv,
            "bids": [[p, q] for p, q in self.bids(n)],
            "asks": [[p, q] for p, q in self.asks(n)],
        }
