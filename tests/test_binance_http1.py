"""venues.common.http1: the raw keep-alive HTTP/1.1 client of the order hot path, against a loopback
server that answers with hand-written bytes (split, chunked, pipelined, closed mid-answer)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from venues.common.http1 import AnswerTimeout, Http1Pool, HttpProtocolError, format_request, header_block

Answer = Callable[[bytes], list[bytes] | None]  # request head -> the byte pieces to send back (None: hang)


@contextlib.asynccontextmanager
async def raw_server(answer: Answer, close_after: int | None = None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """Reads request heads, writes ``answer(head)`` piece by piece (with a loop turn between)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head)
                pieces = answer(head)
                if pieces is None:  # never answer again: read (and drop) until the client goes
                    await reader.read()
                    break
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
                served += 1
                if close_after is not None and served >= close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def req(path: str, pool: Http1Pool) -> bytes:
    return format_request("GET", path, header_block(pool.host_header, {"X-Test": "1"}))


async def started(url: str, **kw) -> Http1Pool:
    pool = Http1Pool(url, **kw)
    pool.start()
    assert await pool.wait_ready(5)
    return pool


async def test_pipelined_answers_in_order_whatever_their_framing() -> None:
    def answer(head: bytes) -> list[bytes]:
        path = head.split(b" ")[1]
        if path == b"/cl":
            whole = ok(b'{"a":1}', "X-MBX-USED-WEIGHT-1M: 7\r\n")
            return [whole[i : i + 1] for i in range(len(whole))]  # one byte at a time
        if path == b"/chunked":
            return [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n",
                b'{"b"\r\n3\r\n:2}\r\n0\r\nX-Trailer: t\r\n\r\n',
            ]
        if path == b"/interim":
            return [b"HTTP/1.1 100 Continue\r\n\r\n", ok(b"after")]
        return [b"HTTP/1.1 204 No Content\r\n\r\n"]

    async with raw_server(answer) as (url, seen):
        pool = await started(url, size=1, max_in_flight=8)
        conn = pool.pick()
        assert conn is not None
        futs = [conn.request(req(p, pool)) for p in ("/cl", "/chunked", "/interim", "/none", "/cl")]
        answers = await asyncio.wait_for(asyncio.gather(*futs), 5)
        await pool.close()
    assert [(s, b) for s, _, b in answers] == [
        (200, b'{"a":1}'),
        (200, b'{"b":2}'),
        (200, b"after"),
        (204, b""),
        (200, b'{"a":1}'),
    ]
    assert answers[0][1]["x-mbx-used-weight-1m"] == "7"  # headers are case-insensitive
    assert len(seen) == 5 and seen[0].startswith(b"GET /cl HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"X-Test: 1\r\nContent-Length: 0\r\n\r\n" in seen[0]


async def test_connection_close_and_server_drop() -> None:
    def answer(head: bytes) -> list[bytes]:
        if b"/bye" in head:
            return [ok(b"last", "Connection: close\r\n")]
        if b"/hang" in head:
            return []  # the answer never comes; the server then drops the connection
        return [ok(b"fine")]

    async with raw_server(answer, close_after=2) as (url, _):
        pool = await started(url, size=1, retry_delay_s=0.01)
        conn = pool.pick()
        assert conn is not None
        assert (await conn.request(req("/bye", pool)))[2] == b"last"
        await asyncio.wait_for(conn.lost, 5)  # closed as announced
        assert not conn.usable
        assert await pool.wait_ready(5) and pool.connects == 2  # reopened in the background
        conn2 = pool.pick()
        assert conn2 is not None and conn2 is not conn
        assert (await conn2.request(req("/x", pool)))[2] == b"fine"
        pending = conn2.request(req("/hang", pool))
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(pending, 5)  # the outcome is unknown, never a made-up answer
        with pytest.raises(ConnectionError):
            conn2.request(req("/x", pool))
        await pool.close()


async def test_garbage_answer_fails_the_request_and_drops_the_connection() -> None:
    async with raw_server(lambda head: [b"SMTP ready\r\n\r\n"]) as (url, _):
        pool = await started(url, size=1)
        conn = pool.pick()
        assert conn is not None
        with pytest.raises(HttpProtocolError):
            await asyncio.wait_for(conn.request(req("/", pool)), 5)
        await asyncio.wait_for(conn.lost, 5)
        await pool.close()


async def test_body_until_close_and_busy_pool() -> None:
    async with raw_server(lambda head: [b"HTTP/1.0 200 OK\r\n\r\nstream", b"ed"], close_after=1) as (url, _):
        pool = await started(url, size=1, max_in_flight=1)
        conn = pool.pick()
        assert conn is not None
        fut = conn.request(req("/", pool))
        assert pool.request_now(req("/", pool)) is None  # the only connection is busy: caller waits its turn
        status, _, body = await asyncio.wait_for(fut, 5)
        await pool.close()
    assert (status, body) == (200, b"streamed")


def test_pool_refuses_what_is_not_http() -> None:
    with pytest.raises(ValueError):
        Http1Pool("ws://127.0.0.1:1")
    https = Http1Pool("https://api.binance.com")
    assert (https.port, https.tls, https.host_header) == (443, True, "api.binance.com")
    odd = Http1Pool("http://127.0.0.1:8080/prefix/")
    assert (odd.host_header, odd.prefix) == ("127.0.0.1:8080", "/prefix")


async def test_overdue_answer_fails_the_request_and_drops_the_connection() -> None:
    """With ``answer_timeout_s`` the connection itself bounds every request's wait: an answer
    that never comes fails its request with ``AnswerTimeout`` (a ``TimeoutError``), the requests
    behind it on the connection with ``ConnectionError``, and the connection is reopened."""

    def answer(head: bytes) -> list[bytes] | None:
        return None if b"/hang" in head else [ok(b"fine")]

    async with raw_server(answer) as (url, _):
        pool = await started(url, size=1, answer_timeout_s=0.3, retry_delay_s=0.01)
        conn = pool.pick()
        assert conn is not None and conn.answer_timeout_s == 0.3
        assert (await asyncio.wait_for(conn.request(req("/x", pool)), 10))[2] == b"fine"
        hung = conn.request(req("/hang", pool))
        behind = conn.request(req("/x", pool))  # pipelined behind the hung one
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(AnswerTimeout):
            await asyncio.wait_for(hung, 30)  # the connection's own deadline fires first
        assert loop.time() - t0 >= 0.25
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(behind, 5)
        assert not conn.usable and not conn._deadlines
        assert await pool.wait_ready(10) and pool.connects == 2
        again = pool.pick()
        assert again is not None and again is not conn
        assert (await asyncio.wait_for(again.request(req("/x", pool)), 10))[2] == b"fine"
        await pool.close()


async def test_connection_failures_are_one_line_then_a_summary() -> None:
    import logging
    import socket

    from venues.common.summary import Summary

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("test.http1.connect")
    log.propagate = False
    log.addHandler(Keep())
    pool = Http1Pool(
        f"http://127.0.0.1:{port}", size=2, retry_delay_s=0.01, logger=log, name="binance", summary=Summary(log, 60.0)
    )
    pool.start()
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while pool.failures < 6 and loop.time() < end:
        await asyncio.sleep(0.01)
    assert pool.failures >= 6
    assert len(lines) == 1 and lines[0].startswith(
        f"Failed to connect to binance: order connection to 127.0.0.1:{port}"
    )
    await pool.close()  # the count is written when the pool closes
    assert len(lines) == 2 and lines[1].startswith(f"{pool.failures - 1} more like this in the last ")
