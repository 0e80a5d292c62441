"""A WebSocket client that stays connected: reconnect with backoff, watchdog, clean stop.

Each message is handed to a synchronous ``on_message(data, ts_recv_ns)`` from inside the
socket's ``data_received`` (``DirectConnection``): no task switch, no loop turn between the bytes
arriving and the handler running, which is what keeps the market-data-to-order path free of
scheduling delays. ``send_now`` writes a frame to the transport before it returns, so an order
decided in that handler leaves in the same call stack. Pings from the server are answered by
``websockets`` itself (the pong echoes the payload, as Binance requires); our own keepalive pings
catch half-open connections. A text message that is not valid UTF-8 fails the connection with
close code 1007 (RFC 6455 8.1; ``websockets`` itself only checks when it decodes to ``str``, and
the frames here never are): it is never handed over, and the client reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State

from engine.messages import HEARTBEAT_TIMEOUT, WEBSOCKET_CONNECTION_CLOSED
from venues.common.backoff import ReconnectPolicy
from venues.common.loop import batches_writes, queued_sends

try:
    from websockets.speedups import apply_mask
except ImportError:  # the C extension is optional in websockets
    from websockets.utils import apply_mask

#: the close reason websockets gives when a ping's pong does not come back in time
_KEEPALIVE_TIMEOUT = "keepalive ping timeout"
_PACK_H = struct.Struct("!BBH").pack
_PACK_Q = struct.Struct("!BBQ").pack


class MaskSource:
    """Client masking keys (RFC 6455 10.3: from a strong source of entropy), read from
    ``os.urandom`` a block at a time instead of one system call per frame."""

    def __init__(self, block: int = 4096) -> None:
        self._block = block
        self._buf = b""
        self._pos = 0

    def take(self) -> bytes:
        pos = self._pos
        if pos + 4 > len(self._buf):
            self._buf = os.urandom(self._block)
            pos = 0
        self._pos = pos + 4
        return self._buf[pos : pos + 4]


def client_frame(payload: bytes, text: bool = True) -> bytes:
    """One unfragmented, masked client frame (no extensions negotiated)."""
    n = len(payload)
    head1 = 0x81 if text else 0x82  # FIN | TEXT / BINARY
    if n < 126:
        head = bytes((head1, 0x80 | n))
    elif n < 65536:
        head = _PACK_H(head1, 0x80 | 126, n)
    else:
        head = _PACK_Q(head1, 0x80 | 127, n)
    mask = _masks.take()
    return head + mask + apply_mask(payload, mask)


_masks = MaskSource()
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_OPEN = State.OPEN
_CONNECTING = State.CONNECTING
_END_OF_HEAD = b"\r\n\r\n"


def utf8_ok(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8: ASCII (every Binance frame) is checked without decoding."""
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class DirectConnection(ClientConnection):
    """A ``websockets`` client connection that delivers whole messages synchronously.

    ``on_frame(data, ts_recv_ns)`` runs inside ``data_received`` for every complete data message
    (fragments are joined first) instead of queueing it for ``recv()``; ``recv()`` then only
    reports the end of the connection. ``chunk_ns`` is the ``perf_counter_ns()`` at which the
    current socket read started (the earliest moment this process saw the bytes), and
    ``chunk_index`` counts messages within that read (0 for the first).
    """

    on_frame: Callable[[bytes, int], None] | None = None
    chunk_ns = 0
    chunk_index = 0
    _fragments: list[bytes] | None = None
    _fragments_text = False
    _corked: list[bytes] | None = None
    _failed = False  # failed with 1007: nothing more is handed over
    #: text messages refused as invalid UTF-8 (the connection is failed at the first)
    invalid_utf8 = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The per-read state on the instance from the start: on 3.11 an attribute read that finds
        # only the class default is not specialised, and these are read on every socket read
        # (``_corked`` on every order, and on uvloop it is never set otherwise).
        self._frames_here = self._paused_for_send = False
        self._max_size = self._rbuf = self._deferred = self._fragments = self._corked = None
        self._need = 0
        self._head_tail = b""
        self.chunk_ns = self.chunk_index = 0
        if "on_frame" not in self.__dict__:
            self.on_frame = type(self).on_frame
        if "on_read_done" not in self.__dict__:
            self.on_read_done = type(self).on_read_done
        super().connection_made(transport)
        self._yield_for_sends = batches_writes(asyncio.get_running_loop())
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # orders must not wait for Nagle

    _frames_here = False  # after the handshake: this class reads the frames (``_read_frames``)
    _max_size: int | None = None  # the largest message websockets would accept
    _rbuf: bytearray | None = None  # an incomplete frame at the end of the last read
    _need = 0  # bytes that frame needs in all (0 while its header is incomplete)
    _head_tail = b""  # the last bytes of the handshake response read so far
    _yield_for_sends = False  # the loop sends queued writes only when its I/O callbacks return
    _deferred: bytes | None = None  # the rest of a read, left for the next loop turn
    _paused_for_send = False  # reading paused until that rest has been read
    #: benchmarks: called with ``perf_counter_ns()`` when a read's callback returns (on a loop that
    #: batches writes, when what the frames before it wrote leaves)
    on_read_done: Callable[[int], None] | None = None

    def data_received(self, data: bytes) -> None:
        if self._deferred is not None:  # the rest of the last read first, in order
            self._resume()
            if self._deferred is not None:  # it handed the loop back again: queue behind it
                self._deferred += data
                return
        self.chunk_ns = time.perf_counter_ns()
        self.chunk_index = 0
        if self._frames_here:
            self._read_frames(data)
            if self.on_read_done is not None:
                self.on_read_done(time.perf_counter_ns())
            return
        if self.on_frame is not None and self.protocol.state is _CONNECTING:
            # websockets reads the handshake response; the frames after it are ours
            seen = self._head_tail + data
            end = seen.find(_END_OF_HEAD)
            if end >= 0:
                cut = end + 4 - len(self._head_tail)
                super().data_received(data[:cut])
                if self.protocol.state is _OPEN and not self.protocol.reader.buffer:
                    self._frames_here = True
                    # websockets' own limit for a whole unfragmented message, fixed at connect
                    limits = [
                        x for x in (self.protocol.max_message_size, self.protocol.max_fragment_size) if x is not None
                    ]
                    self._max_size = min(limits) if limits else None
                    if cut < len(data):
                        self._read_frames(data[cut:])
                elif cut < len(data):
                    super().data_received(data[cut:])
                return
            self._head_tail = seen[-3:]
        super().data_received(data)

    def _read_frames(self, data: bytes) -> None:
        """Split the stream into frames and hand each complete, unfragmented text or binary
        message to ``on_frame`` at once; every other frame (ping, pong, close, fragments,
        anything unusual) goes to websockets whole, so its protocol state machine sees it as if it
        had read it itself (it is always at a frame boundary). websockets' own reader parses a
        whole read (at full speed, hundreds of frames) before the first message is handed over,
        through a chain of generators per frame."""
        pending = self._rbuf
        if pending is not None:
            pending += data  # a large frame over many reads: appended, not copied every time
            if len(pending) < self._need:
                return
            data = bytes(pending)
            self._rbuf = None
        n = len(data)
        i = 0
        proto = self.protocol
        handler = self.on_frame
        max_size = self._max_size
        wall = time.time_ns
        self._need = 0  # stays 0 when what is left is an incomplete header
        while i + 2 <= n:
            b0 = data[i]
            b1 = data[i + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if i + 4 > n:
                    break
                length = int.from_bytes(data[i + 2 : i + 4], "big")
                head = 4
            elif length == 127:
                if i + 10 > n:
                    break
                length = int.from_bytes(data[i + 2 : i + 10], "big")
                head = 10
            if b1 & 0x80 or (max_size is not None and length > max_size):
                # a masked server frame or one over the size limit: websockets closes the
                # connection with the right code; the rest of the stream is its business
                self._frames_here = False
                super().data_received(data[i:])
                return
            end = i + head + length
            if end > n:
                self._need = end - i
                break
            if (b0 == 0x81 or b0 == 0x82) and handler is not None and not proto.expect_continuation_frame:
                payload = data[i + head : end]
                if b0 == 0x81 and not payload.isascii() and not utf8_ok(payload):
                    self._fail_invalid_utf8(data[end:])
                    return
                sends = queued_sends.count
                handler(payload, wall())
                self.chunk_index += 1
                if queued_sends.count != sends and self._yield_for_sends and end < n:
                    # this frame sent an order: let the loop put it on the wire before the rest
                    self._defer(data[end:])
                    return
            else:
                super().data_received(data[i:end])
                if proto.state is not _OPEN:
                    self._frames_here = False
                    if end < n:
                        super().data_received(data[end:])
                    return
            i = end
        if i < n:
            self._rbuf = bytearray(data[i:])

    def _defer(self, rest: bytes) -> None:
        """Leave ``rest`` for the next loop turn. Reading stops until then: libuv reads a stream
        again and again while it has data (calling ``data_received`` each time) before the loop
        gets to send anything."""
        self._deferred = rest
        if not self._paused_for_send:
            self._paused_for_send = True
            with contextlib.suppress(AttributeError, RuntimeError):
                self.transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._resume_later)

    def _resume(self) -> None:
        """Read what a frame that sent an order left of its socket read."""
        rest, self._deferred = self._deferred, None
        if rest is None:
            return
        if self._frames_here:
            self._read_frames(rest)
        else:  # websockets took the stream over meanwhile (a close, an oversized frame)
            super().data_received(rest)

    def _resume_later(self) -> None:
        if self._deferred is not None:
            self._resume()
            if self.on_read_done is not None:
                self.on_read_done(time.perf_counter_ns())
        if self._deferred is None and self._paused_for_send:
            self._paused_for_send = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        # frames that arrived before the end are still delivered, without handing the loop back
        self._yield_for_sends = False
        while self._deferred is not None:
            self._resume()
        super().connection_lost(exc)

    def _fail_invalid_utf8(self, rest: bytes = b"") -> None:
        """RFC 6455 8.1: a text message that is not valid UTF-8 fails the connection with 1007.
        The close frame is written now; the rest of the stream is websockets' (which discards it
        once failed), and the TCP connection is cut after the close timeout if the server does not
        end it first."""
        self.invalid_utf8 += 1
        self._failed = True
        self._frames_here = False
        self._deferred = None
        protocol = self.protocol
        if protocol.state is _OPEN:
            protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
            with contextlib.suppress(Exception):
                self.send_data()
            timeout = self.close_timeout if self.close_timeout is not None else 2.0
            if self.close_deadline is None:
                self.close_deadline = self.loop.time() + timeout
            self.loop.call_later(timeout, self._abort_if_open)
        if rest:
            super().data_received(rest)

    def _abort_if_open(self) -> None:
        if not self.connection_lost_waiter.done():
            self.transport.abort()

    def process_event(self, event: object) -> None:
        handler = self.on_frame
        if handler is None or self.response is None or type(event) is not Frame:
            super().process_event(event)  # type: ignore[arg-type]
            return
        if self._failed:
            return
        op = event.opcode
        if op is _TEXT or op is _BINARY:
            text = op is _TEXT
            if not event.fin:
                self._fragments = [bytes(event.data)]
                self._fragments_text = text
                return
            data = bytes(event.data)
        elif op is _CONT:
            parts = self._fragments
            if parts is None:
                return  # websockets' protocol layer rejects this before we see it
            parts.append(bytes(event.data))
            if not event.fin:
                return
            self._fragments = None
            data = b"".join(parts)
            text = self._fragments_text
        else:
            super().process_event(event)  # type: ignore[arg-type]
            return
        if text and not utf8_ok(data):
            self._fail_invalid_utf8()
            return
        handler(data, time.time_ns())
        self.chunk_index += 1

    def send_now(self, data: bytes, text: bool = True) -> None:
        """Write one message to the transport before returning (no await, no loop turn).

        The frame is built here (RFC 6455 5.2: FIN, opcode, masked payload, as ``websockets``
        would for a connection without extensions) and written in one ``transport.write``, so it
        never interleaves with the library's own control frames. Raises ``ConnectionError`` when
        the connection is not open. The transport buffers what the kernel does not take at once;
        a flood of orders is bounded by the rate limiter, not here.
        """
        protocol = self.protocol
        if protocol.state is not _OPEN or protocol.expect_continuation_frame or self.send_in_progress is not None:
            raise ConnectionError("WebSocket is not open")
        queued_sends.count += 1
        corked = self._corked
        if corked is not None:
            corked.append(client_frame(data, text))
            return
        self.transport.write(client_frame(data, text))

    def cork(self) -> None:
        """Hold ``send_now`` frames until ``uncork``: the messages one event produces (a cancel and
        its replacement) leave in one write, one system call."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        # closed meanwhile: the requests held here fail like any on a dropped connection
        if corked and self.protocol.state is _OPEN:
            self.transport.write(b"".join(corked))


@dataclass(frozen=True, slots=True)
class WsSettings:
    open_timeout_s: float = 10.0
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    close_timeout_s: float = 2.0
    max_size: int = 16 * 1024 * 1024
    #: close and reconnect when nothing arrived for this long (None: never)
    max_silence_s: float | None = None
    #: reconnect before the venue's own cut-off (Binance: 24 h); None: never
    max_age_s: float | None = None
    watchdog_interval_s: float = 1.0


class ReconnectingWebSocket:
    """Keeps one logical stream alive across disconnects.

    ``url`` is read before every attempt (the caller may change it between connections).
    ``on_open(ws)`` runs after each connect (subscribe, authenticate); ``on_message`` gets every
    frame as bytes; ``on_close(reason)`` after each disconnect. Exceptions from ``on_message`` are
    logged and counted, never allowed to end the loop.
    """

    def __init__(
        self,
        name: str,
        url: Callable[[], str],
        on_message: Callable[[bytes, int], None],
        policy: ReconnectPolicy,
        logger: logging.Logger,
        settings: WsSettings | None = None,
        on_open: Callable[[ClientConnection], Awaitable[None]] | None = None,
        on_close: Callable[[str], None] | None = None,
        on_tick: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self._on_open = on_open
        self._on_close = on_close
        self._on_tick = on_tick
        self.policy = policy
        self.log = logger
        self.settings = settings or WsSettings()
        self.ws: DirectConnection | None = None
        self.connected = asyncio.Event()
        #: the connection while ``connected`` is set (the hot path reads this, not the event)
        self.live: DirectConnection | None = None
        self.connects = 0
        self.attempts = 0
        self.handler_errors = 0
        self.last_recv_mono = 0.0
        self._connected_at = 0.0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._got_message = False
        self._closing: set[asyncio.Task[None]] = set()
        self.on_message = on_message

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"ws:{self.name}")
        return self._task

    async def stop(self) -> None:
        self._stopping = True
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called: a close now is ours, not an incident."""
        return self._stopping

    def reconnect_now(self, reason: str) -> None:
        """Drop the current connection (a ``serverShutdown`` notice, an operator request)."""
        ws = self.ws
        if ws is None or ws.state is State.CLOSING or ws.state is State.CLOSED:
            return  # already on its way out: one reconnect, one line
        self.log.info(f"{self.name}: reconnecting ({reason})")
        self.policy.immediate()
        task = asyncio.get_running_loop().create_task(ws.close(1000, reason[:100]))
        self._closing.add(task)  # keep a reference until it is done
        task.add_done_callback(self._closing.discard)

    async def send(self, text: str) -> None:
        ws = self.ws
        if ws is None:
            raise ConnectionError(f"{self.name}: not connected")
        await ws.send(text)

    def send_now(self, data: bytes) -> None:
        """Write a text message to the socket before returning; ``ConnectionError`` when closed."""
        ws = self.ws
        if ws is None:
            raise ConnectionError(f"{self.name}: not connected")
        ws.send_now(data)

    # --- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        s = self.settings
        while not self._stopping:
            delay = self.policy.next_delay()
            while delay > 0 and not self._stopping:
                await asyncio.sleep(delay)
                delay = self.policy.window.wait_time()
            if self._stopping:
                break
            self.policy.record_attempt()
            self.attempts += 1
            url = self._url()
            try:
                ws = await connect(
                    url,
                    open_timeout=s.open_timeout_s,
                    ping_interval=s.ping_interval_s,
                    ping_timeout=s.ping_timeout_s,
                    close_timeout=s.close_timeout_s,
                    max_size=s.max_size,
                    compression=None,
                    proxy=None,
                    create_connection=self._connection,  # type: ignore[arg-type]
                )
            except (TimeoutError, OSError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
                self.ws = None
                self.log.warning(f"Failed to connect to {self.name}: {type(exc).__name__}: {exc}")
                continue
            assert isinstance(ws, DirectConnection)
            self.ws = ws
            self.connects += 1
            self._connected_at = time.monotonic()
            self.last_recv_mono = self._connected_at
            self._got_message = False
            again = ", reconnected" if self.connects > 1 else ""
            self.log.info(f"WebSocket connected: {self.name} (connection {self.connects}{again})")
            reason = await self._serve(ws)
            self.ws = None
            self.live = None
            self.connected.clear()
            if _KEEPALIVE_TIMEOUT in reason:
                # websockets closes with 1011 when our ping's pong does not come back in time
                self.log.warning(f"{HEARTBEAT_TIMEOUT}: {self.name}: no pong within {s.ping_timeout_s}s")
            if self._stopping:  # our own stop: no drop to count
                self.log.info(f"{WEBSOCKET_CONNECTION_CLOSED}: {self.name}: {reason} (stopping)")
            else:  # lower-case "disconnect" too: the guide counts drops with grep "disconnect" (§10.2)
                self.log.warning(f"{WEBSOCKET_CONNECTION_CLOSED}: {self.name}: {reason} (disconnect)")
            if self._on_close is not None:
                try:
                    self._on_close(reason)
                except Exception:
                    self.log.exception(f"{self.name}: close handler failed")

    def _deliver(self, data: bytes, ts: int) -> None:
        """Every message, straight from the socket's ``data_received``."""
        self.last_recv_mono = time.monotonic()
        try:
            self.on_message(data, ts)
        except Exception:
            self.handler_errors += 1
            self.log.exception(f"{self.name}: message handler failed")
        if not self._got_message:
            self._got_message = True
            self.policy.on_connected()

    def _connection(self, protocol: ClientProtocol, **kwargs: Any) -> DirectConnection:
        # set before the handshake completes, so no message can slip into recv()'s queue
        conn = DirectConnection(protocol, **kwargs)
        conn.on_frame = self._deliver
        # a handler may act on the connection (reconnect_now on serverShutdown) before connect()
        # has returned: messages can arrive in the same read as the handshake response
        self.ws = conn
        return conn

    async def _serve(self, ws: DirectConnection) -> str:
        watchdog = asyncio.get_running_loop().create_task(self._watchdog(ws))
        try:
            if self._on_open is not None:
                await self._on_open(ws)
            self.live = ws
            self.connected.set()
            recv = ws.recv
            while True:
                # every message goes to _deliver from data_received; recv() returns only when a
                # connection ends (ConnectionClosed), or for a message a subclass chose to queue
                self._deliver(await recv(decode=False), time.time_ns())
        except websockets.ConnectionClosed as exc:
            rcvd, sent = exc.rcvd, exc.sent
            if sent is not None and (rcvd is None or not exc.rcvd_then_sent):
                return f"closed by client code={sent.code} reason={sent.reason!r}"
            if rcvd is not None:
                return f"closed by server code={rcvd.code} reason={rcvd.reason!r}"
            return f"connection lost ({type(exc).__name__})"
        except (TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(ws.close())
            raise
        except Exception as exc:
            self.log.exception(f"{self.name}: session failed")
            with contextlib.suppress(Exception):
                await ws.close(1011, "client error")
            return f"{type(exc).__name__}: {exc}"
        finally:
            watchdog.cancel()

    async def _watchdog(self, ws: ClientConnection) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(s.watchdog_interval_s)
            now = time.monotonic()
            if self._on_tick is not None:
                try:
                    self._on_tick(time.time_ns())
                except Exception:
                    self.log.exception(f"{self.name}: tick handler failed")
            if s.max_silence_s is not None and now - self.last_recv_mono > s.max_silence_s:
                self.log.warning(
                    f"{HEARTBEAT_TIMEOUT}: {self.name}: no data for {now - self.last_recv_mono:.1f}s, reconnecting"
                )
                self.policy.immediate()
                await ws.close(1000, "silent")
                return
            if s.max_age_s is not None and now - self._connected_at > s.max_age_s:
                self.log.info(f"{self.name}: connection is {now - self._connected_at:.0f}s old, rolling over")
                self.policy.immediate()
                await ws.close(1000, "max age")
                return
