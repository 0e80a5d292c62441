"""The ladder book against a plain dict, under random level changes that force window moves."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.book import WINDOW, Book, BookSet
from engine.model import Instrument

INST = Instrument("x", "A-B", "AB", price_scale=0, size_scale=0, tick=1, lot=1)

# prices cluster around a drifting centre but also land far outside the ladder window
updates = st.lists(
    st.tuples(
        st.sampled_from([1, -1]),
        st.one_of(
            st.integers(1_000_000 - 50, 1_000_000 + 50),
            st.integers(1_000_000 - 3 * WINDOW, 1_000_000 + 3 * WINDOW),
            st.integers(1, 10**12),
        ),
        st.one_of(st.just(0), st.integers(1, 1000)),
    ),
    max_size=400,
)


def reference_levels(ref: dict, side: int, n: int) -> list[tuple[int, int]]:
    prices = sorted((p for (s, p), q in ref.items() if s == side and q), reverse=side > 0)
    return [(p, ref[(side, p)]) for p in prices[:n]]


@settings(max_examples=150, deadline=None)
@given(updates)
def test_ladder_book_matches_a_dict(changes):
    book = Book(INST, BookSet(1, capacity=8))
    ref: dict[tuple[int, int], int] = {}
    for side, price, size in changes:
        book.apply_level(side, price, size)
        ref[(side, price)] = size
    book.refresh_top()
    for side in (1, -1):
        assert book.levels(side, 25) == reference_levels(ref, side, 25)
    bids = reference_levels(ref, 1, 1)
    asks = reference_levels(ref, -1, 1)
    assert book.best_bid_fixed == (bids[0][0] if bids else 0)
    assert book.best_ask_fixed == (asks[0][0] if asks else 0)
    assert book.depth == (len(reference_levels(ref, 1, 10**9)), len(reference_levels(ref, -1, 10**9)))
    for (side, price), q in list(ref.items())[:50]:
        assert book.size_at(side, price) == q


def test_walking_the_market_across_many_windows_keeps_the_book_exact():
    book = Book(INST, BookSet(1, capacity=8))
    ref: dict[tuple[int, int], int] = {}
    mid = 1_000_000
    for step in range(3000):
        mid += 97  # a steady rally: the window must follow it many times over
        for side, price, size in (
            (1, mid - 1, 5),
            (-1, mid + 1, 5),
            (1, mid - 97 - 1, 0),
            (-1, mid - 97 + 1, 0),
            (1, mid - 5000, step % 7),
            (-1, mid + 9 * WINDOW, 3),
        ):
            book.apply_level(side, price, size)
            ref[(side, price)] = size
    book.refresh_top()
    assert book.best_bid_fixed == mid - 1 and book.best_ask_fixed == mid + 1
    for side in (1, -1):
        assert book.levels(side, 40) == reference_levels(ref, side, 40)


# whole venue messages: runs of levels on one side, sorted either way or not at all, a price
# possibly given twice (the later size wins), many of them outside the window (merged at once)
messages = st.lists(
    st.tuples(
        st.sampled_from([1, -1]),
        st.lists(
            st.tuples(
                st.one_of(
                    st.integers(1_000_000 - 50, 1_000_000 + 50),
                    st.integers(1_000_000 - 3 * WINDOW, 1_000_000 + 3 * WINDOW),
                    st.integers(1, 10**12),
                ),
                st.one_of(st.just(0), st.integers(1, 1000)),
            ),
            max_size=60,
        ),
        st.sampled_from(["asc", "desc", "as-is"]),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_whole_messages_match_a_dict(msgs):
    book = Book(INST, BookSet(1, capacity=8))  # tiny overflow: merges must grow it mid-message
    ref: dict[tuple[int, int], int] = {}
    for side, rows, order in msgs:
        if order != "as-is":
            rows = sorted(rows, key=lambda r: r[0], reverse=order == "desc")
        book.apply_levels(side, np.array(rows, dtype=np.int64).reshape(-1, 2))
        for price, size in rows:
            ref[(side, price)] = size
        book.refresh_top()
        for s in (1, -1):
            assert book.levels(s, 400) == reference_levels(ref, s, 400)
    assert book.depth == (len(reference_levels(ref, 1, 10**9)), len(reference_levels(ref, -1, 10**9)))
