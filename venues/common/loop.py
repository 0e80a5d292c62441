"""Event loop choice for live adapters: uvloop where it is installed, asyncio otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop: uvloop's when available (faster socket reads and timers), else the default."""
    if uvloop_available():
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def batches_writes(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop``'s transports queue writes and send them once the I/O callbacks of the
    current loop iteration have run, in one system call per connection (uvloop's streams do;
    asyncio's selector loop sends each ``write`` at once when the socket takes it)."""
    return type(loop).__module__.startswith("uvloop")


class QueuedSends:
    """How many requests our connections have written (``count`` only grows): WebSocket
    ``send_now`` and HTTP/1.1 ``request``, orders above all.

    On a loop that ``batches_writes`` a request written inside a socket's ``data_received`` stays
    queued until the I/O callbacks of that loop iteration return: if the read that brought the
    market frame holds a hundred more frames, the order waits for all of them. The frame reader
    (``ws.DirectConnection``) compares the count around each frame it hands over and, when the
    frame caused a request, returns to the loop and reads the rest of the data one turn later,
    after the order has been sent.

    One instance, ``queued_sends``: the count is read around every frame, and an instance slot
    is a specialised load and store where a class attribute is not (on 3.11 a class attribute
    store also invalidates the class's attribute caches every time)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


queued_sends = QueuedSends()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the best available loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
