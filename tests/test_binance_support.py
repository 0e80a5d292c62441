"""Helpers for the Binance adapter tests (no tests here): fixture paths, log capture, a sink that
records what the adapter reports, and tiny loopback servers that replay fixture messages.

The servers speak only as much of Binance's protocol as a test needs; everything they send is a
real recorded or documented Binance message from ``../shared/fixtures/venues/binance``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.events import ExecReport, Incident
from engine.logs import get_logger
from venues.binance.config import BinanceConfig, Credentials, parse_config

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures" / "venues" / "binance"
CAPTURE = SHARED / "data" / "real" / "binance_spot_hftbacktest"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
CREDS = Credentials(API_KEY, API_SECRET)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Records(logging.Handler):
    """Collects the formatted messages of one component logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def grep(self, text: str) -> list[str]:
        return [m for m in self.messages if text in m]


@contextlib.contextmanager
def capture_log(component: str) -> Iterator[Records]:
    """Attach a collector straight to ``hft.<component>`` (works whatever else set up logging)."""
    lg = get_logger(component)
    h = Records()
    old = lg.level
    lg.addHandler(h)
    lg.setLevel(logging.DEBUG)
    try:
        yield h
    finally:
        lg.removeHandler(h)
        lg.setLevel(old)


@dataclass
class Sink:
    """An ``ExecSink`` that keeps everything it is told."""

    reports: list[ExecReport] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    changed: asyncio.Event | None = None

    def on_exec_report(self, report: ExecReport) -> None:
        self.reports.append(report)
        if self.changed is not None:
            self.changed.set()

    def on_incident(self, incident: Incident) -> None:
        self.incidents.append(incident)

    def kinds(self, client_order_id: str | None = None) -> list[str]:
        return [r.kind for r in self.reports if client_order_id is None or r.client_order_id == client_order_id]

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise AssertionError(f"condition not met in {timeout}s; reports={self.kinds()}")
            await asyncio.sleep(0.005)


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.005)


def loop_config(
    rest_url: str = "http://127.0.0.1:1",
    ws_url: str = "ws://127.0.0.1:1",
    ws_api_url: str = "ws://127.0.0.1:1/ws-api/v3",
    **over: Any,
) -> BinanceConfig:
    """A config for loopback tests: fast reconnects, short timeouts, given endpoints."""
    data: dict[str, Any] = {
        "rest_url": rest_url,
        "ws_url": ws_url,
        "ws_api_url": ws_api_url,
        "reconnect": {"initial_delay_s": 0.05, "max_delay_s": 0.2, "jitter": 0.0},
        "order_timeout_s": 2.0,
        "http_timeout_s": 5.0,
    }
    data.update(over)
    return parse_config(data, "<test>", env={})


def verify_signature(query: str, body: str = "", secret: str = API_SECRET) -> bool:
    """Binance's server-side check: HMAC over everything before ``&signature=``."""
    payload, sep, sig = (query + body).rpartition("&signature=")
    if not sep:
        return False
    want = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig.lower())


@contextlib.asynccontextmanager
async def http_server(routes: list[web.RouteDef]) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 (random port); yields its base URL."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


WsHandler = Callable[[web.WebSocketResponse, web.Request], Awaitable[None]]


def ws_route(path: str, handler: WsHandler, autoping: bool = True) -> web.RouteDef:
    async def view(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=autoping)
        await ws.prepare(request)
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            await handler(ws, request)
        return ws

    return web.get(path, view)
