"""The garbage collector's policy while trading (paper, live, the hot-path benchmark).

CPython frees almost everything by reference counting; the cyclic collector exists for the rest,
and it runs whenever 700 more objects were allocated than freed, walking every young object -
in the middle of whatever tick is running. While trading:

- what setup built (instruments, books, strategies, connections, compiled code) is frozen: no
  collection walks it again (``gc.freeze``);
- the young generation is collected after ``gen0`` allocations instead of 700: fewer, slightly
  longer pauses, and far fewer ticks that pay for one. Memory stays bounded: cycles are still
  collected, only later.

On exit the previous thresholds come back and the frozen objects are collectable again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

DEFAULT_GEN0 = 50_000


@contextlib.contextmanager
def trading_gc(gen0: int = DEFAULT_GEN0) -> Iterator[None]:
    """Apply the policy for the duration of the block (``gen0 <= 0`` leaves the thresholds)."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    if gen0 > 0:
        gc.set_threshold(gen0, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()
