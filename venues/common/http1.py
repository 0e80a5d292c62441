"""A minimal HTTP/1.1 keep-alive client whose ``request`` writes the bytes before it returns.

``aiohttp`` sends a request from a task, on a later turn of the event loop, after building a
request object per call: fine for queries, too slow for an order decided in a market-data
callback. ``Http1Pool`` keeps a few persistent connections (TCP, or TLS for ``https://``) open and
writes an already-formatted request straight to one of them; the answer comes back as a future
``(status, headers, body)``. Responses arrive in request order on each connection (pipelining is
allowed up to ``max_in_flight``), so a FIFO of futures matches them.

Only what venue order entry needs: ``Content-Length`` and ``chunked`` bodies, ``Connection:
close``. A connection that dies fails its in-flight futures with ``ConnectionError`` (the caller
must treat the request's outcome as unknown) and is reopened in the background.

Every request has a deadline: with ``answer_timeout_s`` a connection fails a request whose answer
is overdue with ``AnswerTimeout`` and drops itself (the answers after it could no longer be
matched to their requests), failing the others in flight with ``ConnectionError``. Every request
waits with the same timeout, so the deadlines come in order: one sweep every ``SWEEP_S`` while
requests are in flight replaces a timer per request. Opening a connection is bounded by
``connect_timeout_s``; failed attempts are logged once and then summarised
(``venues.common.summary``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque

from multidict import CIMultiDict
from yarl import URL

from venues.common.loop import queued_sends
from venues.common.summary import Summary

Response = tuple[int, CIMultiDict[str], bytes]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
SWEEP_S = 0.05  # how often overdue answers are looked for; how late a timeout may fire


class HttpProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.1 we understand; the connection is dropped."""


class AnswerTimeout(TimeoutError):
    """No answer within the connection's ``answer_timeout_s``; the connection was dropped."""


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection; ``request(data)`` writes and returns the answer's future.

    ``answer_timeout_s``: a request not answered by then fails with ``AnswerTimeout`` and the
    connection drops (None: the caller bounds its wait itself)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, answer_timeout_s: float | None = None) -> None:
        self.loop = loop
        self.answer_timeout_s = answer_timeout_s
        self.transport: asyncio.Transport | None = None
        self.pending: deque[asyncio.Future[Response]] = deque()
        self._deadlines: deque[tuple[float, asyncio.Future[Response]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = loop.create_future()
        self.closing = False
        self.requests = 0
        self._corked: list[bytes] | None = None
        self._buf = bytearray()
        self._status = 0
        self._headers: CIMultiDict[str] | None = None
        self._length = -1  # body bytes still expected; -1 until the head is read
        self._chunked = False
        self._until_close = False
        self._close_after = False
        self._body = bytearray()

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        try:
            self._parse()
        except HttpProtocolError as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost settles what is pending

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._until_close and self._headers is not None:
            self._finish(bytes(self._body))
        self._fail(ConnectionError(f"connection closed ({exc or 'by the server'})"))
        if not self.lost.done():
            self.lost.set_result(None)

    # --- use -------------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.closing

    def request(self, data: bytes) -> asyncio.Future[Response]:
        """Write one formatted request now; the future gets its ``(status, headers, body)``."""
        t = self.transport
        if t is None or self.closing:
            raise ConnectionError("connection is not open")
        queued_sends.count += 1
        if self._corked is not None:
            self._corked.append(data)
        else:
            t.write(data)
        # the answer is read in a later loop iteration, so its future can wait until the bytes
        # are written: on the order path that is a future's creation less before the send
        loop = self.loop
        fut: asyncio.Future[Response] = loop.create_future()
        self.pending.append(fut)
        self.requests += 1
        timeout = self.answer_timeout_s
        if timeout is not None:
            self._deadlines.append((loop.time() + timeout, fut))
            if self._sweeper is None:
                self._sweeper = loop.call_later(SWEEP_S, self._sweep)
        return fut

    def _sweep(self) -> None:
        self._sweeper = None
        deadlines = self._deadlines
        now = self.loop.time()
        while deadlines and (deadlines[0][1].done() or deadlines[0][0] <= now):
            fut = deadlines.popleft()[1]
            if not fut.done():
                timeout = self.answer_timeout_s
                self.abort(f"no answer within {timeout} s", AnswerTimeout(f"no answer within {timeout} s"))
                return
        if deadlines:
            self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def cork(self) -> None:
        """Hold requests until ``uncork`` writes them together (one system call per event)."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked and self.transport is not None and not self.closing:
            self.transport.write(b"".join(corked))
        # on a connection lost meanwhile the futures of these requests already failed

    def abort(self, reason: str, first: Exception | None = None) -> None:
        """Drop the connection (e.g. an answer overdue: later answers on it cannot be trusted).
        ``first``: the exception for the oldest request in flight (the others get
        ``ConnectionError(reason)``)."""
        self.closing = True
        if self.transport is not None:
            self.transport.abort()
        self._fail(ConnectionError(reason), first)

    # --- parsing ---------------------------------------------------------------------------
    def _fail(self, exc: Exception, first: Exception | None = None) -> None:
        self.closing = True
        pending, self.pending = self.pending, deque()
        for fut in pending:
            if not fut.done():
                fut.set_exception(first or exc)
                first = None
        self._deadlines.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _finish(self, body: bytes) -> None:
        status, headers = self._status, self._headers
        self._headers = None
        self._length = -1
        self._chunked = self._until_close = False
        self._body = bytearray()
        if status < 200:  # 1xx interim answers belong to no request of ours
            return
        if self.pending:
            fut = self.pending.popleft()
            if not fut.done():  # a caller that gave up (timeout) no longer waits
                assert headers is not None
                fut.set_result((status, headers, body))
        if self._close_after:
            self.closing = True
            if self.transport is not None:
                self.transport.close()

    def _parse(self) -> None:
        buf = self._buf
        while True:
            if self._headers is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise HttpProtocolError("response head too large")
                    return
                self._read_head(bytes(buf[:end]))
                del buf[: end + 4]
                if self._length == 0 and not self._chunked and not self._until_close:
                    self._finish(b"")
                    continue
            if self._until_close:
                self._body += buf
                buf.clear()
                if len(self._body) > _MAX_BODY:
                    raise HttpProtocolError("response body too large")
                return
            if self._chunked:
                if not self._read_chunks():
                    return
                continue
            if len(buf) < self._length:
                return
            body = bytes(buf[: self._length])
            del buf[: self._length]
            self._finish(body)

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpProtocolError(f"bad status line {lines[0][:80]!r}")
        self._status = int(parts[1])
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise HttpProtocolError(f"bad header line {line[:80]!r}")
            headers.add(name.strip().decode("latin-1"), value.strip().decode("latin-1"))
        self._headers = headers
        self._close_after = headers.get("Connection", "").lower() == "close" or parts[0] == b"HTTP/1.0"
        if self._status < 200 or self._status in (204, 304):
            self._length = 0
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._chunked = True
            self._length = 0
        elif "Content-Length" in headers:
            cl = headers["Content-Length"]
            if not cl.isdigit() or int(cl) > _MAX_BODY:
                raise HttpProtocolError(f"bad Content-Length {cl!r}")
            self._length = int(cl)
        else:
            self._until_close = True
            self._length = 0

    def _read_chunks(self) -> bool:
        """Consume complete chunks; True once the whole body (and trailers) is in."""
        buf = self._buf
        while True:
            end = buf.find(b"\r\n")
            if end < 0:
                return False
            size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", end)  # the last-chunk line's CRLF, trailers, CRLF
                if trailer_end < 0:
                    return False
                del buf[: trailer_end + 4]
                self._finish(bytes(self._body))
                return True
            if len(buf) < end + 2 + size + 2:
                return False
            self._body += buf[end + 2 : end + 2 + size]
            del buf[: end + 2 + size + 2]
            if len(self._body) > _MAX_BODY:
                raise HttpProtocolError("response body too large")


class Http1Pool:
    """``size`` keep-alive connections to one origin, reopened in the background when they drop.

    ``request_now(data)`` writes on the connection with the fewest answers outstanding (at most
    ``max_in_flight`` each) and returns the answer's future, or None when no connection can take
    it now (the caller then takes its ordinary, awaited path). ``answer_timeout_s`` bounds every
    request's wait (``Http1Connection``); ``name`` (the venue) starts the connect-failure lines
    (``Failed to connect to <name>``), summarised by ``summary`` (one is made when not given).
    """

    def __init__(
        self,
        url: str,
        size: int = 2,
        *,
        max_in_flight: int = 32,
        connect_timeout_s: float = 5.0,
        retry_delay_s: float = 0.5,
        logger: logging.Logger | None = None,
        answer_timeout_s: float | None = None,
        name: str = "",
        summary: Summary | None = None,
    ) -> None:
        u = URL(url)
        if u.scheme not in ("http", "https") or not u.host:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = u
        self.host = u.host
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.tls = u.scheme == "https"
        default_port = u.port is None or u.port == (443 if self.tls else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.prefix = u.path.rstrip("/")
        self.size = size
        self.max_in_flight = max_in_flight
        self.connect_timeout_s = connect_timeout_s
        self.retry_delay_s = retry_delay_s
        self.answer_timeout_s = answer_timeout_s
        self.name = name or self.host_header
        self.log = logger or logging.getLogger(__name__)
        self.summary = summary or Summary(self.log)
        self._slots: list[Http1Connection | None] = [None] * size
        self.connects = 0
        self.failures = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self.tls else None

    @property
    def conns(self) -> list[Http1Connection]:
        return [c for c in self._slots if c is not None]

    @property
    def ready(self) -> bool:
        return any(c is not None and c.usable for c in self._slots)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._closing = False
        for i in range(self.size):
            task = loop.create_task(self._keep(i), name=f"http1 {self.host_header} #{i}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait_ready(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not self.ready:
            if loop.time() >= end:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self) -> None:
        self._closing = True
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for c in self.conns:
            if c.transport is not None:
                c.transport.close()
        self._slots = [None] * self.size
        self.summary.flush(f"connect {self.host_header}")

    def pick(self) -> Http1Connection | None:
        best = None
        for c in self._slots:
            if c is None or not c.usable or len(c.pending) >= self.max_in_flight:
                continue
            if best is None or len(c.pending) < len(best.pending):
                best = c
        return best

    def cork(self) -> None:
        for c in self._slots:
            if c is not None:
                c.cork()

    def uncork(self) -> None:
        for c in self._slots:
            if c is not None:
                c.uncork()

    def request_now(self, data: bytes) -> tuple[Http1Connection, asyncio.Future[Response]] | None:
        conn = self.pick()
        if conn is None:
            return None
        return conn, conn.request(data)

    async def _keep(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        delay = self.retry_delay_s
        while not self._closing:
            conn = Http1Connection(loop, self.answer_timeout_s)
            try:
                await asyncio.wait_for(
                    loop.create_connection(
                        lambda c=conn: c,  # type: ignore[misc]
                        self.host,
                        self.port,
                        ssl=self._ssl,
                        server_hostname=self.host if self.tls else None,
                    ),
                    self.connect_timeout_s,
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                self.failures += 1
                if isinstance(exc, TimeoutError):
                    exc = TimeoutError(f"no connection within {self.connect_timeout_s} s")
                self.summary.warning(
                    f"connect {self.host_header}",
                    f"Failed to connect to {self.name}: order connection to {self.host_header}: "
                    f"{type(exc).__name__}: {exc}",
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = self.retry_delay_s
            self.connects += 1
            self._slots[slot] = conn
            await conn.lost
            if not self._closing:
                await asyncio.sleep(0.05)  # a server that closes at once must not make us spin


def header_block(host: str, headers: dict[str, str] | None = None) -> bytes:
    """The header lines of a body-less request (Binance takes every parameter in the query
    string), ending with the blank line: prepared once, reused for every request."""
    lines = [f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items()), "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def format_request(method: str, target: str, block: bytes) -> bytes:
    """``METHOD target HTTP/1.1`` followed by a prepared ``header_block``."""
    return f"{method} {target} HTTP/1.1\r\n".encode("latin-1") + block
