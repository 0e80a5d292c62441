"""WebSocket connections of the fake: an outbound queue, keepalive pings and a lifetime.

Every connection writes through one queue and one writer task so frames leave in the order they
were produced (market data, control replies, WS API responses and user events alike), and a slow
reader never blocks the replay: at real-time speed a reader that falls ``max_backlog`` frames
behind is disconnected (as Binance drops slow consumers); at maximum speed the replay waits for it.

Keepalive follows Binance: a ping frame every ``ping_interval`` seconds; a connection that has not
answered a ping (a pong echoing its payload) within ``pong_timeout`` is closed. Unsolicited pongs
do not count. Every connection is closed after ``max_lifetime`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

LOW_WATER = 256


class Connection:
    kind = "ws"

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        ping_interval: float,
        pong_timeout: float,
        max_lifetime: float,
        max_backlog: int,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_lifetime = max_lifetime
        self.max_backlog = max_backlog
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.drained = asyncio.Event()
        self.drained.set()
        self.opened = time.monotonic()
        self.closed = False
        self.close_reason = ""
        self._pending_pings: set[bytes] = set()
        self._unanswered_since: float | None = None
        self._ping_seq = 0
        self._tasks: list[asyncio.Task] = []
        self.frames_sent = 0

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._writer()))
        self._tasks.append(asyncio.create_task(self._keepalive()))

    # --- sending ------------------------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        self.queue.put_nowait(frame)
        if self.queue.qsize() > self.max_backlog:
            self.drained.clear()

    @property
    def backlog(self) -> int:
        return self.queue.qsize()

    async def _writer(self) -> None:
        ws = self.ws
        send_frame = getattr(ws, "send_frame", None)
        try:
            while True:
                frame = await self.queue.get()
                if frame is None:
                    break
                if send_frame is not None:
                    await send_frame(frame, WSMsgType.TEXT)
                else:
                    await ws.send_str(frame.decode())
                self.frames_sent += 1
                if self.queue.qsize() <= LOW_WATER:
                    self.drained.set()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            self.drained.set()

    # --- keepalive ----------------------------------------------------------------------------
    def on_pong(self, payload: bytes) -> None:
        if payload in self._pending_pings:
            self._pending_pings.clear()
            self._unanswered_since = None

    async def _keepalive(self) -> None:
        next_ping = time.monotonic() + self.ping_interval
        try:
            while not self.closed:
                now = time.monotonic()
                if now - self.opened >= self.max_lifetime:
                    await self.close(1001, "connection lifetime reached")
                    return
                if self._unanswered_since is not None and now - self._unanswered_since > self.pong_timeout:
                    await self.close(1008, "no pong")
                    return
                if now >= next_ping:
                    self._ping_seq += 1
                    payload = str(self._ping_seq).encode()
                    self._pending_pings.add(payload)
                    if self._unanswered_since is None:
                        self._unanswered_since = now
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await self.ws.ping(payload)
                    next_ping = now + self.ping_interval
                deadlines = [next_ping, self.opened + self.max_lifetime]
                if self._unanswered_since is not None:
                    deadlines.append(self._unanswered_since + self.pong_timeout + 1e-3)
                await asyncio.sleep(max(0.0, min(deadlines) - time.monotonic()))
        except asyncio.CancelledError:
            pass

    # --- closing ------------------------------------------------------------------------------
    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.queue.put_nowait(None)
        writer = self._tasks[0] if self._tasks else None
        if writer is not None and not writer.done() and writer is not asyncio.current_task():
            # frames already queued (replies, events) go out before the close frame
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(writer), 1.0)
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.CancelledError):
            await self.ws.close(code=code, message=reason.encode())

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake (what a network fault looks like)."""
        self.closed = True
        self.close_reason = "aborted"
        self.queue.put_nowait(None)
        if self.transport is not None:
            self.transport.abort()

    def stop_tasks(self) -> None:
        self.closed = True
        for t in self._tasks:
            t.cancel()

    async def receive_loop(self, on_text, count_message=None) -> None:
        """Read frames until the peer goes away: answer pings, note pongs, hand text to ``on_text``."""
        ws = self.ws
        while not self.closed:
            try:
                msg = await ws.receive()
            except (ConnectionError, RuntimeError, asyncio.CancelledError):
                break
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if count_message is not None and not count_message():
                await self.close(1008, "too many messages")
                break
            if msg.type == WSMsgType.PING:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                self.on_pong(bytes(msg.data))
            elif msg.type == WSMsgType.TEXT:
                await on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await on_text(bytes(msg.data).decode("utf-8", "replace"))
