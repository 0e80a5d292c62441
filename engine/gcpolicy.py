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

``thread_switch`` shortens the interpreter's thread switch interval while a helper thread (the
event recorder's writer) shares the process with the trading loop: a thread that wants the
interpreter back waits at most about that long (5 ms by default, 0.5 ms here).
"""

from __future__ import annotations

import contextlib
import gc
import sys
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


@contextlib.contextmanager
def thread_switch(interval_s: float = 0.0005) -> Iterator[None]:
    """``sys.setswitchinterval(interval_s)`` for the duration of the block."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(interval_s)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
