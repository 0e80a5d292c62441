"""Instrumentation of a socket's writes, for latency measurements and tests.

``TransportTap`` stands in for an asyncio transport: every ``write`` is timed and counted, then
passed on; everything else is the real transport's. Installing it on a connection
(``conn.transport = TransportTap(conn.transport, ...)``) changes nothing about what is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class TransportTap:
    """Wraps ``transport``; ``on_write(nbytes, perf_counter_ns)`` runs just after each write."""

    def __init__(self, transport: asyncio.Transport, on_write: Callable[[int, int], None] | None = None) -> None:
        self._transport = transport
        self.on_write = on_write
        self.writes = 0
        self.bytes = 0
        self.last_write_ns = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)
        now = time.perf_counter_ns()
        self.writes += 1
        self.bytes += len(data)
        self.last_write_ns = now
        if self.on_write is not None:
            self.on_write(len(data), now)

    def writelines(self, chunks: Any) -> None:
        for c in chunks:
            self.write(c)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
