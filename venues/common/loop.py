"""Event loop choice for live adapters: uvloop where it is installed, asyncio otherwise; and
whether the loop holds a callback's socket writes until the callback returns, found by trying.

The live hot path relies on how the loop sends (``docs/hot-path.md``): uvloop's transports have
queued what a callback writes and sent it once the I/O callbacks of that loop turn returned, so
the cancel and the new order of a replace leave together, and the frame reader hands the loop
back after a frame that sent an order. asyncio's own loop sends each ``write`` at once, and the
adapter then corks its order connections itself for the length of a market event. Which of the
two a loop does is not a property of its type: a uvloop release may change it. So
``check_write_batching`` finds out once per loop, on a real socket pair: a transport writes a byte
inside its ``data_received`` callback, and the test looks at the peer socket before the callback
returns. ``batches_writes(loop)`` answers from that result; a loop nobody checked yet counts as
sending at once (the adapter corks: the safe side). ``new_event_loop`` and ``run`` check every loop
they make; the Binance REST client checks the running loop when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from engine.logs import get_logger, install_loop_exception_handler

T = TypeVar("T")

log = get_logger("system")

#: per loop: True when a write inside a callback waits for the callback to return
_batching: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, bool] = weakref.WeakKeyDictionary()
_SEEN_S = 0.2  # how long a written byte may take to reach the peer socket on loopback


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop: uvloop's when available (faster socket reads and timers), else the default;
    its write batching checked (``check_write_batching``) before it is returned."""
    if uvloop_available():
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    install_loop_exception_handler(loop)
    loop.run_until_complete(check_write_batching(loop))
    return loop


def batches_writes(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop``'s transports hold what a callback writes until the callback returns and
    then send it (one system call per connection for everything the callbacks of that loop turn
    wrote), as ``check_write_batching`` found. A loop not checked yet is checked now if it is not
    running; a running one counts as sending each write at once until it is checked."""
    held = _batching.get(loop)
    if held is None:
        if loop.is_running() or loop.is_closed():
            return False
        held = loop.run_until_complete(check_write_batching(loop))
    return held


def write_batching_known(loop: asyncio.AbstractEventLoop) -> bool | None:
    """The checked answer for ``loop``, None when it has not been checked."""
    return _batching.get(loop)


def set_write_batching(loop: asyncio.AbstractEventLoop, held: bool) -> None:
    """Record the answer for ``loop`` (tests standing in for a loop that behaves otherwise)."""
    _batching[loop] = held


async def check_write_batching(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Find out (once per loop, cached) whether a transport's ``write`` inside a callback leaves
    before the callback returns: False if it does, True if the loop holds it until the callback
    has returned.

    Over a TCP connection on loopback, a byte arrives at our transport; its ``data_received``
    writes one byte back and looks at the peer socket (``select``) before returning. Seen there:
    the write left at once. Not seen and still in the transport's buffer: held; that is then
    confirmed by the byte arriving after the callback returned. Anything else (not seen, yet not
    buffered either; or never arriving) counts as not held, so the adapter corks its order
    connections itself: correct on any loop, at worst a little slower."""
    loop = loop or asyncio.get_running_loop()
    known = _batching.get(loop)
    if known is not None:
        return known
    held = await _probe(loop)
    _batching[loop] = held
    log.info(describe_write_batching(loop))
    return held


def describe_write_batching(loop: asyncio.AbstractEventLoop) -> str:
    """One line for the logs: the loop, and what its check found."""
    held = _batching.get(loop)
    what = (
        "not checked yet"
        if held is None
        else "holds a callback's writes until it returns (checked)"
        if held
        else "sends each write at once (checked): order connections are corked per market event"
    )
    return f"event loop {type(loop).__module__}.{type(loop).__qualname__}: {what}"


async def _probe(loop: asyncio.AbstractEventLoop) -> bool:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ours: socket.socket | None = None
    peer: socket.socket | None = None
    transport: asyncio.BaseTransport | None = None
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        ours = socket.create_connection(listener.getsockname(), timeout=5.0)
        peer, _ = listener.accept()
        for s in (ours, peer):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        seen: asyncio.Future[tuple[bool, int]] = loop.create_future()
        probe_peer = peer

        class Probe(asyncio.Protocol):
            def connection_made(self, tr: asyncio.BaseTransport) -> None:
                self.tr: Any = tr

            def data_received(self, data: bytes) -> None:
                if seen.done():
                    return
                self.tr.write(b"w")
                buffered = self.tr.get_write_buffer_size()
                wait = 0.0 if buffered else _SEEN_S
                arrived = bool(select.select([probe_peer], [], [], wait)[0])
                seen.set_result((arrived, buffered))

        transport, _ = await loop.create_connection(Probe, sock=ours)
        ours = None  # the transport owns it now
        peer.send(b"r")
        arrived, buffered = await asyncio.wait_for(seen, 5.0)
        if arrived or not buffered:
            return False
        try:  # held while the callback ran: it must leave once it returned
            got = await asyncio.wait_for(loop.sock_recv(peer, 1), 5.0)
        except (TimeoutError, OSError):
            got = b""
        if got != b"w":
            log.warning(
                "event loop write check: a byte written in a callback never arrived; assuming writes go at once"
            )
            return False
        return True
    except (OSError, TimeoutError) as exc:
        log.warning("event loop write check failed (%s); assuming writes are sent at once", exc)
        return False
    finally:
        if transport is not None:
            transport.abort()
        for s in (listener, ours, peer):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()


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
    """``asyncio.run`` on the best available loop (its write batching checked first)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
