"""Read market data ahead of the replay, on a thread of its own.

Decoding Parquet (pyarrow, outside the GIL) and merging streams take about as long as replaying
the rows; the replay kernel releases the GIL while it runs (``nogil``), so a reader thread that
stays ``depth`` batches ahead overlaps the two on a second core. The batches and their order are
exactly the source's: a backtest's event log does not change. An error of the reader (a corrupt
file: ``DataError``) is raised in the consumer, where the batch would have been.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(source: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``source``'s items, read ``depth`` ahead by a daemon thread. Stopping early (a consumer
    that breaks off) lets the thread finish its current item and exit."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(_Failed(exc))

    t = threading.Thread(target=read, name="replay-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        t.join(timeout=5)
