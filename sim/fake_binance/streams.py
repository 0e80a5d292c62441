"""Market-data WebSocket streams: ``/ws/<stream>`` (raw), ``/stream?streams=a/b`` (combined) and the
``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` / ``GET_PROPERTY`` control
messages with the replies and error objects of Binance's ``web-socket-streams.md``.

Stream names are case-sensitive and lower case, as on Binance: a name that matches nothing in the
replay (``BTCUSDT@trade``, ``ethusdt@depth``) is accepted and simply carries no data.
"""

from __future__ import annotations

import re
import time
from collections import deque

import msgspec

from sim.fake_binance.connections import Connection

# Binance's SDKs send UUIDs (36 characters with hyphens) as request ids
_ID_STRING = re.compile(r"^[A-Za-z0-9-]{1,36}$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
MAX_STREAMS = 1024
_encode = msgspec.json.encode


class StreamConnection(Connection):
    kind = "stream"

    def __init__(self, *args, combined: bool, max_incoming_per_s: int | None, **kw) -> None:
        super().__init__(*args, **kw)
        self.combined = combined
        self.streams: list[str] = []
        self.max_incoming_per_s = max_incoming_per_s
        self._incoming: deque[float] = deque()

    def count_incoming(self) -> bool:
        """Binance allows 5 incoming messages per second (pings, pongs, control messages)."""
        if self.max_incoming_per_s is None:
            return True
        now = time.monotonic()
        q = self._incoming
        q.append(now)
        while q and now - q[0] > 1.0:
            q.popleft()
        return len(q) <= self.max_incoming_per_s


class StreamHub:
    """Who listens to which stream, and the fan-out of each published message."""

    def __init__(self) -> None:
        self.connections: set[StreamConnection] = set()
        self.by_stream: dict[str, set[StreamConnection]] = {}
        self.first_subscription = None  # set by the server: an asyncio.Event
        self.frames_published = 0

    def add(self, conn: StreamConnection, streams: list[str]) -> None:
        self.connections.add(conn)
        self.subscribe(conn, streams)

    def remove(self, conn: StreamConnection) -> None:
        self.connections.discard(conn)
        for name in conn.streams:
            subs = self.by_stream.get(name)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self.by_stream[name]
        conn.streams = []

    def subscribe(self, conn: StreamConnection, streams: list[str]) -> None:
        for name in streams:
            if name in conn.streams:
                continue
            conn.streams.append(name)
            self.by_stream.setdefault(name, set()).add(conn)
        if streams and self.first_subscription is not None:
            self.first_subscription.set()

    def unsubscribe(self, conn: StreamConnection, streams: list[str]) -> None:
        for name in streams:
            if name in conn.streams:
                conn.streams.remove(name)
                subs = self.by_stream.get(name)
                if subs is not None:
                    subs.discard(conn)
                    if not subs:
                        del self.by_stream[name]

    def wanted(self, name: str) -> bool:
        return name in self.by_stream

    def publish(self, name: str, payload: bytes) -> None:
        subs = self.by_stream.get(name)
        if not subs:
            return
        wrapped = None
        for conn in subs:
            if conn.combined:
                if wrapped is None:
                    wrapped = b'{"stream":"' + name.encode() + b'","data":' + payload + b"}"
                conn.send(wrapped)
            else:
                conn.send(payload)
            self.frames_published += 1

    def broadcast(self, frame: bytes) -> None:
        """A connection-level event (``serverShutdown``), sent unwrapped to every connection."""
        for conn in self.connections:
            conn.send(frame)

    # --- control messages ---------------------------------------------------------------------
    def control(self, conn: StreamConnection, text: str) -> bytes:
        """One JSON control message -> its reply (Binance's replies and error objects)."""
        try:
            req = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return _encode({"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"})
        if not isinstance(req, dict):
            return _encode({"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"})
        method = req.get("method")
        if method is None:
            return _encode({"code": 2, "msg": f"Invalid request: missing field `method` at line 1 column {len(text)}"})
        if "id" not in req:
            return _encode({"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"})
        rid = req.get("id")
        if not (
            rid is None
            or (isinstance(rid, int) and not isinstance(rid, bool))
            or (isinstance(rid, str) and _ID_STRING.match(rid))
        ):
            return _encode({"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"})
        if method not in _METHODS:
            return _encode(
                {
                    "code": 2,
                    "msg": f"Invalid request: unknown variant `{method}`, expected one of "
                    "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` "
                    "at line 1 column 28",
                }
            )
        params = req.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return _encode({"code": 2, "msg": "Invalid request: invalid type: expected a sequence of strings"})
            if method == "SUBSCRIBE":
                if len(set(conn.streams) | set(params)) > MAX_STREAMS:
                    return _encode({"code": 2, "msg": "Invalid request: too many parameters"})
                self.subscribe(conn, params)
            else:
                self.unsubscribe(conn, params)
            return _encode({"result": None, "id": rid})
        if method == "LIST_SUBSCRIPTIONS":
            return _encode({"result": list(conn.streams), "id": rid})
        if not isinstance(params, list) or not params:
            return _encode({"code": 2, "msg": "Invalid request: property name must be a string"})
        if not isinstance(params[0], str):
            return _encode({"code": 2, "msg": "Invalid request: property name must be a string"})
        if params[0] != "combined":
            return _encode({"code": 0, "msg": "Unknown property", "id": rid})
        if method == "GET_PROPERTY":
            return _encode({"result": conn.combined, "id": rid})
        if len(params) != 2:
            return _encode({"code": 2, "msg": "Invalid request: too many parameters"})
        if not isinstance(params[1], bool):
            return _encode({"code": 1, "msg": "Invalid value type: expected Boolean"})
        conn.combined = params[1]
        return _encode({"result": None, "id": rid})
