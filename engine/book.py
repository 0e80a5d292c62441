"""L2 order books on sorted fixed-point arrays, shared by replay, paper and live.

Each side is an ascending array of keys (bid key = price, ask key = -price) so the best level
is always the last element: updates near the top, by far the most frequent, shift only a few
slots. Books of all symbols in a run live in one ``BookSet`` so the numba replay kernel can
update any of them without a Python call per row.

A book is *valid* only when it is in sync with its venue and not crossed; strategies are never
shown an invalid book.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from engine.model import Instrument

BID = 0
ASK = 1
_NO_PRICE = 0

# set_level return codes
OK = 0
FULL = 1


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


@nb.njit(cache=True, nogil=True)
def set_level(keys: np.ndarray, sizes: np.ndarray, cnt: np.ndarray, b: int, s: int, price: int, size: int) -> int:
    """Set the absolute size of one level of book ``b`` side ``s`` (0 removes it).

    Removing a level the book does not hold is legal (venues publish beyond the snapshot depth).
    Returns ``FULL`` when an insert needs more capacity; nothing is changed then.
    """
    key = price if s == 0 else -price
    n = cnt[b, s]
    k = keys[b, s]
    z = sizes[b, s]
    i = lower_bound(k, n, key)
    if i < n and k[i] == key:
        if size == 0:
            for j in range(i, n - 1):
                k[j] = k[j + 1]
                z[j] = z[j + 1]
            cnt[b, s] = n - 1
        else:
            z[i] = size
        return OK
    if size == 0:
        return OK
    if n == k.shape[0]:
        return FULL
    for j in range(n, i, -1):
        k[j] = k[j - 1]
        z[j] = z[j - 1]
    k[i] = key
    z[i] = size
    cnt[b, s] = n + 1
    return OK


@nb.njit(cache=True, nogil=True, inline="always")
def best_price(keys: np.ndarray, cnt: np.ndarray, b: int, s: int) -> int:
    n = cnt[b, s]
    if n == 0:
        return 0
    v = keys[b, s, n - 1]
    return v if s == 0 else -v


@nb.njit(cache=True, nogil=True, inline="always")
def best_size(sizes: np.ndarray, cnt: np.ndarray, b: int, s: int) -> int:
    n = cnt[b, s]
    if n == 0:
        return 0
    return sizes[b, s, n - 1]


@nb.njit(cache=True, nogil=True)
def level_size(keys: np.ndarray, sizes: np.ndarray, cnt: np.ndarray, b: int, s: int, price: int) -> int:
    key = price if s == 0 else -price
    n = cnt[b, s]
    i = lower_bound(keys[b, s], n, key)
    if i < n and keys[b, s, i] == key:
        return sizes[b, s, i]
    return 0


class BookSet:
    """The books of several instruments in shared arrays: ``keys[book, side, level]``."""

    def __init__(self, n_books: int, capacity: int = 4096) -> None:
        self.keys = np.zeros((n_books, 2, capacity), dtype=np.int64)
        self.sizes = np.zeros((n_books, 2, capacity), dtype=np.int64)
        self.cnt = np.zeros((n_books, 2), dtype=np.int64)

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def grow(self) -> None:
        """Double the per-side capacity (called when ``set_level`` reports ``FULL``)."""
        nb_, _, cap = self.keys.shape
        keys = np.zeros((nb_, 2, cap * 2), dtype=np.int64)
        sizes = np.zeros((nb_, 2, cap * 2), dtype=np.int64)
        keys[:, :, :cap] = self.keys
        sizes[:, :, :cap] = self.sizes
        self.keys = keys
        self.sizes = sizes


class Book:
    """One instrument's book: a view into a ``BookSet`` plus its cached top of book.

    Prices/sizes come in two forms: fixed-point ints (``*_fixed``) and floats for strategies.
    ``update_id`` is the venue sequence of the last applied message; ``valid`` is False while the
    book is out of sync (before the first snapshot, after a gap) or crossed.
    """

    __slots__ = (
        "instrument",
        "venue",
        "symbol",
        "books",
        "idx",
        "update_id",
        "ts_event",
        "ts_recv",
        "valid",
        "best_bid_fixed",
        "best_ask_fixed",
        "best_bid_size_fixed",
        "best_ask_size_fixed",
        "_pmul",
        "_smul",
    )

    def __init__(self, instrument: Instrument, books: BookSet | None = None, idx: int = 0) -> None:
        self.instrument = instrument
        self.venue = instrument.venue
        self.symbol = instrument.symbol
        self.books = books if books is not None else BookSet(1)
        self.idx = idx
        self.update_id = 0
        self.ts_event = 0
        self.ts_recv = 0
        self.valid = False
        self.best_bid_fixed = 0
        self.best_ask_fixed = 0
        self.best_bid_size_fixed = 0
        self.best_ask_size_fixed = 0
        self._pmul = 1.0 / 10**instrument.price_scale
        self._smul = 1.0 / 10**instrument.size_scale

    # --- mutation (feeds and replay) -------------------------------------------------------
    def clear(self) -> None:
        self.books.cnt[self.idx, 0] = 0
        self.books.cnt[self.idx, 1] = 0
        self.valid = False
        self.refresh_top()

    def apply_level(self, side: int, price: int, size: int) -> None:
        """Apply one level change; ``side`` is +1 bid / -1 ask (the market-data side code)."""
        s = BID if side > 0 else ASK
        bs = self.books
        while set_level(bs.keys, bs.sizes, bs.cnt, self.idx, s, price, size) == FULL:
            bs.grow()

    def apply_snapshot(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        self.books.cnt[self.idx, 0] = 0
        self.books.cnt[self.idx, 1] = 0
        for p, q in bids:
            self.apply_level(1, p, q)
        for p, q in asks:
            self.apply_level(-1, p, q)
        self.refresh_top()

    def refresh_top(self) -> None:
        bs = self.books
        i = self.idx
        nb_ = bs.cnt[i, 0]
        na = bs.cnt[i, 1]
        if nb_:
            self.best_bid_fixed = int(bs.keys[i, 0, nb_ - 1])
            self.best_bid_size_fixed = int(bs.sizes[i, 0, nb_ - 1])
        else:
            self.best_bid_fixed = 0
            self.best_bid_size_fixed = 0
        if na:
            self.best_ask_fixed = -int(bs.keys[i, 1, na - 1])
            self.best_ask_size_fixed = int(bs.sizes[i, 1, na - 1])
        else:
            self.best_ask_fixed = 0
            self.best_ask_size_fixed = 0

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

    @property
    def mid(self) -> float:
        if not (self.best_bid_fixed and self.best_ask_fixed):
            return float("nan")
        return (self.best_bid_fixed + self.best_ask_fixed) * 0.5 * self._pmul

    @property
    def spread(self) -> float:
        if not (self.best_bid_fixed and self.best_ask_fixed):
            return float("nan")
        return (self.best_ask_fixed - self.best_bid_fixed) * self._pmul

    def is_crossed(self) -> bool:
        return bool(self.best_bid_fixed and self.best_ask_fixed and self.best_bid_fixed >= self.best_ask_fixed)

    @property
    def depth(self) -> tuple[int, int]:
        return int(self.books.cnt[self.idx, 0]), int(self.books.cnt[self.idx, 1])

    def levels(self, side: int, n: int = 10) -> list[tuple[int, int]]:
        """Top ``n`` levels of one side (+1 bids, -1 asks) as fixed-point (price, size), best first."""
        bs = self.books
        s = BID if side > 0 else ASK
        cnt = int(bs.cnt[self.idx, s])
        m = min(n, cnt)
        keys = bs.keys[self.idx, s, cnt - m : cnt][::-1]
        sizes = bs.sizes[self.idx, s, cnt - m : cnt][::-1]
        sign = 1 if s == BID else -1
        return [(int(k) * sign, int(z)) for k, z in zip(keys, sizes, strict=True)]

    def bids(self, n: int = 10) -> list[tuple[float, float]]:
        return [(p * self._pmul, q * self._smul) for p, q in self.levels(1, n)]

    def asks(self, n: int = 10) -> list[tuple[float, float]]:
        return [(p * self._pmul, q * self._smul) for p, q in self.levels(-1, n)]

    def size_at(self, side: int, price: int) -> int:
        bs = self.books
        return int(level_size(bs.keys, bs.sizes, bs.cnt, self.idx, BID if side > 0 else ASK, price))

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
