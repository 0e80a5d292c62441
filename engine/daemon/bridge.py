"""The bridge between the API process and the trading process: a unix stream socket carrying
one JSON object per line (UTF-8) each way.

- request  ``{"id": 7, "op": "orders", "args": {"status": "pending", "limit": 100}}``
- success  ``{"id": 7, "ok": true, "result": {...}}`` (``result`` is the HTTP JSON body as is)
- failure  ``{"id": 7, "ok": false, "status": 404, "error": "Order not found: 12", "field": "order_id"}``
  (``status`` is the HTTP status the API answers with; ``field`` names the bad input when there is one)

The server (:class:`BridgeServer`) runs on the trading loop and hands each request to a
``dispatch(op, args)`` callable. Most ops return their result at once; an op that must wait for
the venue returns an awaitable, which the server awaits in its own task so the connection keeps
answering other requests meanwhile (replies may therefore come out of request order: match them
by ``id``). ``dispatch`` raises :class:`OpError` for an answer in the guide's words; any other
exception becomes a ``500`` failure line and a logged error, never a dead server or connection.
A line that is not a JSON object with a string ``op`` is answered ``400`` (``id`` null when the
line had none).

The client (:class:`BridgeClient`) is what the API process uses: one connection, opened on the
first call and again after it drops; every call has a timeout. A call made while the trading
process is unreachable fails with :class:`BridgeError` status ``503``; one that is not answered
in time fails with status ``504``. A request is never sent twice: after a drop the caller
decides (a mutation may or may not have run).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import decimal
import inspect
import itertools
import logging
import os
import pathlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

log = logging.getLogger("hft.daemon.bridge")

# A reply may carry thousands of orders; requests are small. Lines longer than this are refused.
MAX_LINE = 64 * 1024 * 1024
MAX_REQUEST_LINE = 1024 * 1024

Dispatch = Callable[[str, dict[str, Any]], Any]


class OpError(Exception):
    """An operation's refusal, in the guide's words, with the HTTP status the API answers with."""

    def __init__(self, status: int, error: str, field: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "status": self.status, "error": self.error}
        if self.field:
            out["field"] = self.field
        return out


class BridgeError(OpError):
    """A failed call as the client sees it: the trading process's refusal, or 503/504 when it is
    unreachable or too slow."""


def _enc_hook(obj: Any) -> Any:
    # Ops should return plain JSON values; these are the few richer types that slip through.
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    if isinstance(obj, _dt.datetime | _dt.date | pathlib.PurePath):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.json.Decoder()


def encode_line(obj: dict[str, Any]) -> bytes:
    return _encoder.encode(obj) + b"\n"


class BridgeServer:
    """Serves ``dispatch`` on a unix socket at ``path`` (created 0600; a stale socket file is
    replaced). Start with :meth:`start` on the trading loop, stop with :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str], dispatch: Dispatch) -> None:
        self.path = os.fspath(path)
        self.dispatch = dispatch
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.requests = 0
        self.errors = 0

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_REQUEST_LINE)
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than the limit: the stream cannot be resynchronised
                    self._send(writer, {"id": None, **OpError(413, "request line too long").to_wire()})
                    break
                except (ConnectionError, asyncio.IncompleteReadError):
                    break
                if not line:
                    break
                if line.strip():
                    self._handle(line, writer)
        finally:
            self._writers.discard(writer)
            writer.close()

    def _handle(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        try:
            req = _decoder.decode(line)
        except msgspec.DecodeError as exc:
            self._send(writer, {"id": None, **OpError(400, f"request: not JSON ({exc})", "request").to_wire()})
            return
        rid = req.get("id") if isinstance(req, dict) else None
        op = req.get("op") if isinstance(req, dict) else None
        args = req.get("args") if isinstance(req, dict) else None
        if not isinstance(op, str):
            self._send(writer, {"id": rid, **OpError(400, "op: missing or not a string", "op").to_wire()})
            return
        if args is None:
            args = {}
        if not isinstance(args, dict):
            self._send(writer, {"id": rid, **OpError(400, "args: must be an object", "args").to_wire()})
            return
        try:
            result = self.dispatch(op, args)
        except Exception as exc:  # every failure becomes an answer, never a dead server
            self._send(writer, {"id": rid, **self._failure(op, exc)})
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._finish(rid, op, result, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._send(writer, {"id": rid, "ok": True, "result": result})

    async def _finish(self, rid: Any, op: str, pending: Awaitable[Any], writer: asyncio.StreamWriter) -> None:
        try:
            result = await pending
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._send(writer, {"id": rid, **self._failure(op, exc)})
            return
        self._send(writer, {"id": rid, "ok": True, "result": result})

    def _failure(self, op: str, exc: BaseException) -> dict[str, Any]:
        if isinstance(exc, OpError):
            return exc.to_wire()
        self.errors += 1
        log.error("bridge op %s failed: %s: %s", op, type(exc).__name__, exc, exc_info=exc)
        return OpError(500, f"Internal error in {op}: {type(exc).__name__}").to_wire()

    def _send(self, writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
        if writer.is_closing():
            return
        try:
            data = encode_line(msg)
        except (TypeError, msgspec.EncodeError) as exc:
            self.errors += 1
            log.error("bridge reply to %s not serialisable: %s", msg.get("id"), exc)
            data = encode_line(
                {"id": msg.get("id"), **OpError(500, "Internal error: reply not serialisable").to_wire()}
            )
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.write(data)


class BridgeClient:
    """The API process's end: ``await client.call(op, args)`` returns the result or raises
    :class:`BridgeError`. Safe to share between the tasks of one event loop."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self.connected:
                assert self._writer is not None
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(self.path, limit=MAX_LINE), self.timeout
                )
            except (OSError, TimeoutError) as exc:
                raise BridgeError(503, f"Trading process unreachable at {self.path}: {exc}") from None
            self._reader, self._writer = reader, writer
            self._read_task = asyncio.ensure_future(self._read_loop(reader, writer))
            return writer

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    msg = _decoder.decode(line)
                except msgspec.DecodeError:
                    log.error("bridge: undecodable reply line dropped")
                    continue
                fut = self._pending.pop(msg.get("id"), None) if isinstance(msg, dict) else None
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            if self._writer is writer:
                self._reader = self._writer = None
            writer.close()
            # Calls in flight on this connection will not be answered.
            for rid, fut in list(self._pending.items()):
                if not fut.done():
                    fut.set_exception(BridgeError(503, "Trading process closed the bridge connection"))
                self._pending.pop(rid, None)

    async def call(self, op: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        writer = await self._connect()
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            writer.write(encode_line({"id": rid, "op": op, "args": args or {}}))
            await writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._pending.pop(rid, None)
            raise BridgeError(503, f"Trading process unreachable at {self.path}: {exc}") from None
        wait = self.timeout if timeout is None else timeout
        try:
            msg = await asyncio.wait_for(fut, wait)
        except TimeoutError:
            self._pending.pop(rid, None)
            raise BridgeError(504, f"Trading process did not answer {op} within {wait:g}s") from None
        if msg.get("ok"):
            return msg.get("result")
        raise BridgeError(int(msg.get("status") or 500), str(msg.get("error") or "error"), msg.get("field"))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._read_task
        self._reader = self._writer = None


def call_sync(path: str | os.PathLike[str], op: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    """One blocking call over a fresh connection (for tools and tests outside an event loop)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(os.fspath(path))
        except OSError as exc:
            raise BridgeError(503, f"Trading process unreachable at {os.fspath(path)}: {exc}") from None
        s.sendall(encode_line({"id": 1, "op": op, "args": args or {}}))
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise BridgeError(503, "Trading process closed the bridge connection")
                buf += chunk
        except TimeoutError:
            raise BridgeError(504, f"Trading process did not answer {op} within {timeout:g}s") from None
    msg = _decoder.decode(buf)
    if msg.get("ok"):
        return msg.get("result")
    raise BridgeError(int(msg.get("status") or 500), str(msg.get("error") or "error"), msg.get("field"))
