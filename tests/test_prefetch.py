"""Reading ahead (``engine.marketdata.prefetch``): the same items in the same order, a reader's
error raised where its item would have been, and a consumer that stops early stops the reader."""

from __future__ import annotations

import threading
import time

import pytest

from engine.errors import DataError
from engine.marketdata.prefetch import prefetch


def test_items_arrive_in_order_and_the_reader_stays_bounded_ahead() -> None:
    produced: list[int] = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    it = prefetch(source(), depth=2)
    assert next(it) == 0
    time.sleep(0.2)  # the reader runs ahead, but no further than the queue holds
    assert len(produced) <= 1 + 2 + 1
    assert [0, *it] == list(range(50))


def test_an_error_of_the_reader_is_raised_at_its_place() -> None:
    def source():
        yield 1
        yield 2
        raise DataError("part-0.parquet", "corrupt data in row groups [1]")

    got = []
    with pytest.raises(DataError, match="corrupt data in row groups"):
        for item in prefetch(source()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_ends_the_reader_thread() -> None:
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    it = prefetch(endless(), depth=1)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # what a ``for`` that breaks, or a garbage-collected generator, does
    time.sleep(0.3)
    assert threading.active_count() == before
