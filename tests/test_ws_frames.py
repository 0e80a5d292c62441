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
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from venues.common.loop import check_write_batching, set_write_batching
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


class OrderRig:
    """A market-data WebSocket (``RawServer``) read by ``DirectConnection`` and an order connection
    (our HTTP/1.1 client) to a server socket nobody reads, so a test can see with ``on_wire``
    whether an order's bytes have left. ``on_frame(rig, data)`` is the market-data handler; a
    frame starting with ``order`` sends an order first."""

    ORDER = b"POST /api/v3/order HTTP/1.1\r\nHost: x\r\n\r\n"

    def __init__(self, on_frame: Callable[[OrderRig, bytes], None]) -> None:
        self.on_frame = on_frame
        self.server = RawServer()

    async def __aenter__(self) -> OrderRig:
        from venues.common.http1 import Http1Connection

        loop = asyncio.get_running_loop()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        _, self.order_conn = await loop.create_connection(
            lambda: Http1Connection(loop), "127.0.0.1", self.listener.getsockname()[1]
        )
        self.accepted, _ = self.listener.accept()

        def handler(data: bytes, _ts: int) -> None:
            if data.startswith(b"order"):
                self.order_conn.request(self.ORDER)
            self.on_frame(self, data)

        def factory(protocol, **kw):
            conn = DirectConnection(protocol, **kw)
            conn.on_frame = handler
            return conn

        self.srv = await asyncio.start_server(self.server.handle, "127.0.0.1", 0)
        port = self.srv.sockets[0].getsockname()[1]
        self.ws = await connect(f"ws://127.0.0.1:{port}/", create_connection=factory, ping_interval=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server.writer is not None:
            self.server.writer.close()
        await self.ws.close()
        self.srv.close()
        self.order_conn.abort("test over")
        self.accepted.close()
        self.listener.close()

    def on_wire(self) -> bool:
        return bool(select.select([self.accepted], [], [], 0)[0])


async def _until(cond: Callable[[], bool]) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)


def _order_sent_before_the_rest(loop_factory, filler: int = 0) -> tuple[bool, list[tuple[bytes, bool]]]:
    """One write holds four frames, the second of which sends an order, then ``filler`` bytes
    of 64 KB frames (more than one socket read: libuv would read again at once). Whether the loop
    holds a callback's writes (``check_write_batching``), and for every frame whether the order's
    bytes had reached the order server's socket when it was handled."""
    seen: list[tuple[bytes, bool]] = []
    frames = [server_frame(m) for m in (b"a", b"order", b"b", b"c")]
    frames += [server_frame(b"f" * 65_000)] * (filler // 65_000)

    async def main() -> bool:
        held = await check_write_batching()  # as the adapter does when it starts
        async with OrderRig(lambda rig, data: seen.append((data[:5], rig.on_wire()))) as rig:
            assert rig.server.writer is not None
            sock = rig.ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # room for more than one read
            rig.ws.transport.pause_reading()  # let the bytes pile up in the socket first
            rig.server.writer.write(b"".join(frames))
            await asyncio.sleep(0.2)
            rig.ws.transport.resume_reading()
            await _until(lambda: len(seen) == len(frames))
        return held

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        held = runner.run(main())
    return held, seen


@pytest.mark.parametrize("filler", [0, 2_000_000], ids=["one-read", "many-reads"])
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_an_order_leaves_before_the_rest_of_its_read_is_handled(loop: str, filler: int) -> None:
    """Where the loop holds a callback's writes until it returns (uvloop up to 0.22, as its check
    finds), the reader hands the loop back after the frame that sent an order, so the frames after
    it (in the same socket read) do not hold the order back. Where writes go at once (asyncio's own
    loop, uvloop 0.23), the order is on the wire before the frame's handler returns. Either way
    the order has left before the next frame is handled."""
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    held, seen = _order_sent_before_the_rest(factory, filler)
    if loop == "asyncio":
        assert not held
    assert [m for m, _ in seen[:4]] == [b"a", b"order", b"b", b"c"] and len(seen) == 4 + filler // 65_000
    assert [on_wire for _, on_wire in seen] == [False, not held] + [True] * (len(seen) - 2)


def test_frames_left_for_the_next_turn_keep_their_order() -> None:
    """Bytes that arrive while the rest of an earlier read waits are read after it, and frames
    still waiting when the connection ends are delivered before it closes. (The reader leaves the
    rest of a read for the next turn on a loop that holds writes: this loop is taken for one,
    whatever its check would say, so the test runs on every uvloop release.)"""
    uvloop = pytest.importorskip("uvloop")
    got: list[bytes] = []
    lost: list[bool] = []  # per frame: had the connection's end been processed already

    def on_frame(rig: OrderRig, data: bytes) -> None:
        got.append(data)
        lost.append(rig.ws.connection_lost_waiter.done())

    async def main() -> tuple[list[bytes], list[bytes], list[bytes]]:
        set_write_batching(asyncio.get_running_loop(), True)
        async with OrderRig(on_frame) as rig:
            ws = rig.ws
            frames = [server_frame(m) for m in (b"a", b"order1", b"b", b"c", b"order2", b"d", b"e")]
            blob = b"".join(frames)
            cut = len(b"".join(frames[:3])) + 1  # the second read starts inside frame "c"
            ws.data_received(blob[:cut])  # as two socket reads in one loop turn
            after_first = list(got)
            ws.data_received(blob[cut:])
            after_second = list(got)
            await _until(lambda: len(got) == 7)
            in_order = list(got)
            # the connection ends while frames wait for their turn: delivered before it closes
            got.clear()
            lost.clear()
            closed = asyncio.get_running_loop().create_future()
            ws.transport.abort()  # its connection_lost is now scheduled, ahead of the resume below
            ws.data_received(server_frame(b"order3") + server_frame(b"f"))
            ws.connection_lost_waiter.add_done_callback(lambda _f: closed.set_result(list(got)))
            at_close = await asyncio.wait_for(closed, 5)
            assert lost == [False, False]
        return after_first, after_second, [*in_order, b"|", *at_close]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        after_first, after_second, seen = runner.run(main())
    assert after_first == [b"a", b"order1"]  # the rest waits for the loop to send order1
    assert after_second == [b"a", b"order1", b"b", b"c", b"order2"]  # that rest first, then the new read
    assert seen == [b"a", b"order1", b"b", b"c", b"order2", b"d", b"e", b"|", b"order3", b"f"]
