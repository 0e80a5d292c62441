"""``DirectConnection`` reads the server's frames itself after the handshake: complete messages go
to ``on_frame`` in order however the bytes are split across reads; pings, pongs, closes,
fragments and protocol errors go to websockets whole, which answers them as it would have."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import select
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from venues.common.ws import DirectConnection

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(payload: bytes, opcode: int = 0x1, fin: bool = True, mask: bool = False) -> bytes:
    """An (unmasked) server frame, built by hand."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if mask:
        return head + b"\x00\x00\x00\x00" + payload
    return head + payload


class RawServer:
    """A WebSocket server that writes whatever bytes the test gives it after the handshake."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first  # sent in the same write as the 101 response
        self.received = bytearray()
        self.writer: asyncio.StreamWriter | None = None
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + self.first
        )
        self.writer = writer
        while data := await reader.read(65536):
            self.received += data
        self.closed.set()

    async def wait_close(self, timeout: float = 5.0) -> Frame:
        """The client's close frame, once it has arrived."""
        for _ in range(int(timeout / 0.01)):
            closes = [f for f in self.client_frames() if f.opcode is Opcode.CLOSE]
            if closes:
                return closes[0]
            await asyncio.sleep(0.01)
        raise AssertionError("no close frame from the client")

    def client_frames(self) -> list[Frame]:
        r = StreamReader()
        r.feed_data(bytes(self.received))
        r.feed_eof()
        out = []
        while True:
            parser = Frame.parse(r.read_exact, mask=True)
            try:
                next(parser)
            except StopIteration as done:
                out.append(done.value)
            except EOFError:
                return out


@contextlib.asynccontextmanager
async def open_conn(server: RawServer, got: list[bytes], max_size: int = 2**20) -> AsyncIterator[DirectConnection]:
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]

    def factory(protocol, **kw):
        conn = DirectConnection(protocol, **kw)
        conn.on_frame = lambda data, ts: got.append(data)
        return conn

    ws = await connect(f"ws://127.0.0.1:{port}/", create_connection=factory, max_size=max_size, ping_interval=None)
    try:
        yield ws
    finally:
        if server.writer is not None:
            server.writer.close()  # the server ends TCP, so the client's close completes at once
        await ws.close()
        srv.close()


def stream_of_messages() -> tuple[bytes, list[bytes]]:
    msgs = [b'{"a":1}', bytes(range(200)), b"x" * 70_000, b"", b'{"b":"\xc3\xa9"}']
    blob = server_frame(msgs[0]) + server_frame(msgs[1], opcode=0x2) + server_frame(b"hb", opcode=0x9)  # ping
    blob += server_frame(msgs[2]) + server_frame(msgs[3])
    blob += server_frame(b'{"frag', fin=False) + server_frame(b'mented":1}', opcode=0x0)  # one message
    blob += server_frame(msgs[4])
    return blob, [*msgs[:4], b'{"fragmented":1}', msgs[4]]


@pytest.mark.parametrize("split", ["whole", "bytes", "random"])
async def test_messages_arrive_whole_and_in_order_however_split(split: str) -> None:
    blob, want = stream_of_messages()
    server = RawServer(first=server_frame(b"first"))  # in the same read as the handshake
    got: list[bytes] = []
    async with open_conn(server, got) as ws:
        await asyncio.sleep(0.05)
        assert got == [b"first"]
        if split == "whole":
            parts = [blob]
        elif split == "bytes":
            parts = [blob[i : i + 1] for i in range(len(blob))]
        else:
            rnd = random.Random(7)
            parts, i = [], 0
            while i < len(blob):
                k = rnd.randint(1, 300)
                parts.append(blob[i : i + k])
                i += k
        for p in parts:
            ws.data_received(p)  # as the event loop would, one socket read at a time
        assert got[1:] == want
        await asyncio.sleep(0.05)
        pongs = [f for f in server.client_frames() if f.opcode is Opcode.PONG]
        assert [p.data for p in pongs] == [b"hb"]  # websockets answered the ping, payload echoed


async def test_frames_after_the_handshake_in_one_write_over_the_socket() -> None:
    blob, want = stream_of_messages()
    server = RawServer(first=blob)
    got: list[bytes] = []
    async with open_conn(server, got):
        for _ in range(100):
            if len(got) == len(want):
                break
            await asyncio.sleep(0.01)
        assert got == want


@pytest.mark.parametrize(
    ("bad", "code"),
    [(server_frame(b"y" * 2000), 1009), (server_frame(b"masked", mask=True), 1002)],
)
async def test_oversized_or_masked_server_frames_close_the_connection(bad: bytes, code: int) -> None:
    server = RawServer()
    got: list[bytes] = []
    async with open_conn(server, got, max_size=1000) as ws:
        await asyncio.sleep(0.05)
        ws.data_received(server_frame(b"ok") + bad + server_frame(b"never"))
        close = await server.wait_close()
        assert got == [b"ok"] and struct.unpack("!H", close.data[:2])[0] == code


async def test_close_from_the_server_is_answered() -> None:
    server = RawServer()
    got: list[bytes] = []
    async with open_conn(server, got) as ws:
        await asyncio.sleep(0.05)
        ws.data_received(server_frame(b"last") + server_frame(struct.pack("!H", 1001) + b"bye", opcode=0x8))
        close = await server.wait_close()
        assert got == [b"last"] and struct.unpack("!H", close.data[:2])[0] == 1001
        ws.data_received(server_frame(b"after the close"))  # no longer ours: websockets drops it
        assert got == [b"last"]


def _order_sent_before_the_rest(loop_factory) -> list[tuple[bytes, bool]]:
    """One socket read holds four frames; the second makes the handler send an order on another
    connection (our HTTP/1.1 client). For every frame, whether the order's bytes had reached the
    order server's socket by the time the frame was handled."""
    from venues.common.http1 import Http1Connection

    async def main() -> list[tuple[bytes, bool]]:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        _, order_conn = await loop.create_connection(
            lambda: Http1Connection(loop), "127.0.0.1", listener.getsockname()[1]
        )
        accepted, _ = listener.accept()  # the order server's end, read by nobody
        seen: list[tuple[bytes, bool]] = []

        def on_frame(data: bytes, _ts: int) -> None:
            if data == b"order":
                order_conn.request(b"POST /api/v3/order HTTP/1.1\r\nHost: x\r\n\r\n")
            on_wire = bool(select.select([accepted], [], [], 0)[0])
            seen.append((data, on_wire))

        server = RawServer()
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)

        def factory(protocol, **kw):
            conn = DirectConnection(protocol, **kw)
            conn.on_frame = on_frame
            return conn

        port = srv.sockets[0].getsockname()[1]
        ws = await connect(f"ws://127.0.0.1:{port}/", create_connection=factory, ping_interval=None)
        assert server.writer is not None
        server.writer.write(b"".join(server_frame(m) for m in (b"a", b"order", b"b", b"c")))  # one write
        for _ in range(500):
            if len(seen) == 4:
                break
            await asyncio.sleep(0.01)
        server.writer.close()
        await ws.close()
        srv.close()
        order_conn.abort("test over")
        accepted.close()
        listener.close()
        return seen

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_an_order_leaves_before_the_rest_of_its_read_is_handled(loop: str) -> None:
    """uvloop sends a write only once the I/O callbacks of its loop turn return: the reader hands
    the loop back after the frame that sent an order, so the frames after it (in the same socket
    read) do not hold the order back. asyncio's own loop sends at once."""
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    seen = _order_sent_before_the_rest(factory)
    assert [m for m, _ in seen] == [b"a", b"order", b"b", b"c"]
    assert [on_wire for _, on_wire in seen] == [False, loop == "asyncio", True, True]


def test_frames_left_for_the_next_turn_keep_their_order() -> None:
    """Bytes that arrive while the rest of an earlier read waits are read after it, and frames
    still waiting when the connection ends are delivered before it closes."""
    uvloop = pytest.importorskip("uvloop")
    from venues.common.http1 import Http1Connection

    async def main() -> tuple[list[bytes], list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        _, order_conn = await loop.create_connection(
            lambda: Http1Connection(loop), "127.0.0.1", listener.getsockname()[1]
        )
        accepted, _ = listener.accept()
        got: list[bytes] = []
        lost: list[bool] = []  # per frame: had the connection's end been processed already

        def on_frame(data: bytes, _ts: int) -> None:
            if data.startswith(b"order"):
                order_conn.request(b"POST /api/v3/order HTTP/1.1\r\nHost: x\r\n\r\n")
            got.append(data)
            lost.append(ws_ref[0].connection_lost_waiter.done() if ws_ref else False)

        server = RawServer()
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)

        def factory(protocol, **kw):
            conn = DirectConnection(protocol, **kw)
            conn.on_frame = on_frame
            return conn

        ws_ref: list = []
        ws = await connect(f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/", create_connection=factory)
        ws_ref.append(ws)
        frames = [server_frame(m) for m in (b"a", b"order1", b"b", b"c", b"order2", b"d", b"e")]
        blob = b"".join(frames)
        cut = len(b"".join(frames[:3])) + 1  # the second read starts inside frame "c"
        ws.data_received(blob[:cut])  # as two socket reads in one loop turn
        after_first = list(got)
        ws.data_received(blob[cut:])
        after_second = list(got)
        for _ in range(500):
            if len(got) == 7:
                break
            await asyncio.sleep(0.01)
        in_order = list(got)
        # the connection ends while frames wait for their turn: they are delivered before it closes
        got.clear()
        lost.clear()
        closed = asyncio.get_running_loop().create_future()
        ws.transport.abort()  # its connection_lost is now scheduled, ahead of the resume below
        ws.data_received(server_frame(b"order3") + server_frame(b"f"))
        ws.connection_lost_waiter.add_done_callback(lambda _f: closed.set_result(list(got)))
        at_close = await asyncio.wait_for(closed, 5)
        server.writer.close()
        srv.close()
        order_conn.abort("test over")
        accepted.close()
        listener.close()
        assert lost == [False, False]  # both delivered before the connection's end was processed
        return after_first, after_second, [*in_order, b"|", *at_close]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        after_first, after_second, seen = runner.run(main())
    assert after_first == [b"a", b"order1"]  # the rest waits for the loop to send order1
    assert after_second == [b"a", b"order1", b"b", b"c", b"order2"]  # that rest first, then the new read
    assert seen == [b"a", b"order1", b"b", b"c", b"order2", b"d", b"e", b"|", b"order3", b"f"]
