"""``FakeBinance``: one aiohttp server on loopback speaking Binance spot's REST, market streams and WS API.

    async with FakeBinance(data="../shared/data/real/binance_spot_hftbacktest", api_key=k, api_secret=s,
                           speed=0) as fb:
        fb.rest_url      # http://127.0.0.1:<port>        (REST base; paths /api/v3/...)
        fb.ws_url        # ws://127.0.0.1:<port>          (market streams base; /ws/<stream>, /stream?streams=)
        fb.ws_api_url    # ws://127.0.0.1:<port>/ws-api/v3

Faults are methods (``drop_diffs``, ``disconnect``, ``silence``, ``fail_next_requests``,
``hang_next_requests``, ``outage``, ``set_clock_skew``, ``set_ack_delay``, ``lose_next_acks``,
``server_shutdown``) and, for a server run by hand, POST endpoints under ``/_fake/`` (see the
package README).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from engine.book import Book, BookSet
from engine.model import Instrument, canonical_symbol
from sim.fake_binance import errors as E
from sim.fake_binance.capture import Capture, load_capture
from sim.fake_binance.errors import BinanceError
from sim.fake_binance.exchange import Exchange, cancel_json, new_order_json, query_json
from sim.fake_binance.ratelimit import RateLimiter
from sim.fake_binance.replay import Replayer
from sim.fake_binance.signing import check_timestamp, rest_payload, verify
from sim.fake_binance.streams import StreamConnection, StreamHub
from sim.fake_binance.symbols import DEFAULT_SPECS, SCALE, SymbolSpec, exchange_info, fmt, generic_spec
from sim.fake_binance.ws_api import ApiConnection, WsApi
from sim.queue import model_code

log = logging.getLogger(__name__)

ENV_KEY = "HFT_FAKE_BINANCE_KEY"
ENV_SECRET = "HFT_FAKE_BINANCE_SECRET"
DEFAULT_BALANCES = {"BTC": "1", "ETH": "10", "USDT": "100000"}
START_MODES = ("subscribe", "now", "manual")
LOST_ACK_MODES = ("drop", "timeout")
OUTAGE_MODES = ("error", "hang", "drop", "refuse")
SERVER_ERROR_STATUSES = (500, 502, 503, 504)
MSG_INTERNAL = "Internal error; unable to process your request. Please try again."  # -1001 DISCONNECTED
_JSON = "application/json;charset=UTF-8"
_encode = msgspec.json.encode


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scaled(name: str, value: Any) -> int:
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a number") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{name} {value!r} must be a number >= 0")
    return int(d * SCALE)


def _depth_weight(limit: int) -> int:
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


class FakeBinance:
    """A fake Binance spot on loopback; ``start()``/``stop()`` or ``async with``.

    ``data``: capture file(s) or a directory (None serves empty books). ``speed``: replay pacing,
    0/"max" = as fast as readers take it. ``start``: "subscribe" | "now" | "manual" (see ``advance``).
    Keys default to ``HFT_FAKE_BINANCE_KEY``/``HFT_FAKE_BINANCE_SECRET``, else a random pair.
    Limits and timers default to Binance's (6000 weight/min, 50 orders/10 s, ping 20 s, pong 60 s,
    24 h lifetime, 5 incoming messages/s) and can be shortened for tests.
    """

    def __init__(
        self,
        data: str | Path | list[str | Path] | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        speed: float | str = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        balances: Mapping[str, Any] | None = None,
        maker_fee: Any = "0.001",
        taker_fee: Any = "0.001",
        weight_limit: int = 6000,
        orders_per_10s: int = 50,
        orders_per_day: int = 160000,
        ban_seconds: float = 120.0,
        ping_interval: float = 20.0,
        pong_timeout: float = 60.0,
        max_lifetime: float = 24 * 3600.0,
        max_incoming_per_s: int | None = 5,
        max_connection_attempts: int = 300,
        start: str = "subscribe",
        restamp: bool = True,
        queue_model: str = "risk_averse",
        queue_power: float = 2.0,
        max_records: int | None = None,
        max_backlog: int = 100_000,
        symbols: Mapping[str, SymbolSpec] | None = None,
        seed: int = 0,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"host {host!r} is not a loopback address; the fake binds loopback only")
        if start not in START_MODES:
            raise ValueError(f"start {start!r} must be one of {START_MODES}")
        model_code(queue_model)  # fail now on an unknown queue model, not when the server starts
        self.data = data
        self.api_key = api_key or os.environ.get(ENV_KEY) or secrets.token_hex(32)
        self.api_secret = api_secret or os.environ.get(ENV_SECRET) or secrets.token_hex(32)
        self.speed = parse_speed(speed)
        self.host = host
        self.port = int(port)
        self.balances_cfg = {a: _scaled(f"balance of {a}", v) for a, v in (balances or DEFAULT_BALANCES).items()}
        self.maker_fee = _scaled("maker_fee", maker_fee)
        self.taker_fee = _scaled("taker_fee", taker_fee)
        self.ping_interval = float(ping_interval)
        self.pong_timeout = float(pong_timeout)
        self.max_lifetime = float(max_lifetime)
        self.max_incoming_per_s = max_incoming_per_s
        self.max_connection_attempts = int(max_connection_attempts)
        self.start_mode = start
        self.restamp = restamp
        self.queue_model = queue_model
        self.queue_power = queue_power
        self.max_records = max_records
        self.max_backlog = int(max_backlog)
        self.extra_specs = dict(symbols or {})
        self.seed = seed
        self.limiter = RateLimiter(weight_limit, orders_per_10s, orders_per_day, ban_seconds)
        self.hub = StreamHub()
        self.ws_api = WsApi(self)
        self._skew_ms = 0.0
        self._skew_visible = True
        self.ack_delay = 0.0
        self._lost_acks: deque[str] = deque()
        self._attempts: deque[float] = deque()
        self.capture: Capture | None = None
        self.specs: dict[str, SymbolSpec] = {}
        self.books: dict[str, Book] = {}
        self.exchange: Exchange
        self.replayer: Replayer
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._replay_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        # REST faults: the next requests' (mode, status, path or None), and an outage window
        self._rest_faults: deque[tuple[str, int, str | None]] = deque()
        self._outage_until = 0.0  # monotonic
        self._outage_mode = ""
        self._outage_status = 503
        self._outage_over: asyncio.Event | None = None  # set when the outage ends (or the server stops)
        self._stopping: asyncio.Event | None = None
        self.rest_faults_served = 0  # REST requests a fault answered (or held, or dropped)
        self._bad_snapshots: deque[int] = deque()  # lastUpdateId of the next depth answers
        self.frames_injected = 0

    # --- urls ---------------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}"

    @property
    def ws_api_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}/ws-api/v3"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    # --- clocks -------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """The server clock as clients see it (``/api/v3/time``, event times)."""
        return int(time.time() * 1000 + (self._skew_ms if self._skew_visible else 0.0))

    def validation_ms(self) -> float:
        """The clock that signed requests' ``timestamp`` is checked against."""
        return time.time() * 1000 + self._skew_ms

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> FakeBinance:
        if self.data is not None:
            self.capture = await asyncio.to_thread(load_capture, self.data, self.max_records)
        self._build_market()
        app = web.Application()
        app.on_response_prepare.append(self._weight_headers)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._stopping = asyncio.Event()
        site = self._site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self.capture is not None and self.start_mode != "manual":
            if self.start_mode == "now":
                self.replayer.started.set()
            else:
                self.hub.first_subscription = self.replayer.started
            self._replay_task = asyncio.create_task(self.replayer.run())
        log.info("fake binance listening on %s", self.rest_url)
        return self

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # requests held by a fault end now (their connections dropped)
        if self._outage_over is not None:
            self._outage_over.set()
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
        for task in list(self._background):
            task.cancel()
        for conn in list(self.hub.connections) + list(self.ws_api.connections):
            conn.stop_tasks()
            conn.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBinance:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _build_market(self) -> None:
        specs = dict(DEFAULT_SPECS)
        if self.capture is not None:
            for sym in self.capture.symbols:
                if sym not in specs:
                    specs[sym] = generic_spec(sym)
        specs.update(self.extra_specs)
        self.specs = specs
        bookset = BookSet(len(specs))
        for i, (sym, spec) in enumerate(specs.items()):
            inst = Instrument(
                venue="binance",
                symbol=canonical_symbol(sym),
                venue_symbol=sym,
                price_scale=8,
                size_scale=8,
                tick=spec.tick,
                lot=spec.step,
            )
            self.books[sym] = Book(inst, bookset, i)
        self.exchange = Exchange(
            specs,
            self.books,
            self.balances_cfg,
            self.maker_fee,
            self.taker_fee,
            self.now_ms,
            self._user_events,
            self.queue_model,
            self.queue_power,
            self.seed,
        )
        capture = self.capture if self.capture is not None else Capture([], {}, [])
        self.replayer = Replayer(capture, self.books, self.exchange, self.hub, self.now_ms, self.speed, self.restamp)

    def _user_events(self, events: list[dict]) -> None:
        for ev in events:
            self.ws_api.user_event(ev)

    # --- replay controls (tests) --------------------------------------------------------------
    def start_replay(self) -> None:
        self.replayer.started.set()

    def pause(self) -> None:
        self.replayer.pause()

    def resume(self) -> None:
        self.replayer.resume()

    async def advance(self, n: int | None = None, until: Callable[[], bool] | None = None) -> int:
        """Apply the next ``n`` records now (use with ``start="manual"`` for deterministic tests)."""
        return await self.replayer.advance(n, until)

    @property
    def replay_done(self) -> asyncio.Event:
        return self.replayer.done

    def book(self, symbol: str = "BTCUSDT") -> Book:
        return self.books[symbol]

    def last_update_id(self, symbol: str = "BTCUSDT") -> int:
        return self.books[symbol].update_id

    # --- faults -------------------------------------------------------------------------------
    def drop_diffs(self, n: int = 1, symbol: str | None = None) -> None:
        """The next ``n`` depth diffs are applied to the fake's book but not sent: a gap in ``U``/``u``."""
        self.replayer.drop_diffs(n, symbol)

    def disconnect(self, streams: bool = True, ws_api: bool = False, abrupt: bool = True) -> int:
        """Drop connections (TCP abort, or a 1001 close frame with ``abrupt=False``); returns how many."""
        conns = (list(self.hub.connections) if streams else []) + (list(self.ws_api.connections) if ws_api else [])
        for conn in conns:
            if abrupt:
                conn.abort()
            else:
                self._spawn(conn.close(1001, "disconnected"))
        return len(conns)

    def silence(self, seconds: float, keep_replaying: bool = False) -> None:
        self.replayer.silence(seconds, keep_replaying)

    def fail_next_requests(self, n: int = 1, status: int = 429, retry_after: int = 1, path: str | None = None) -> None:
        """Answer the next ``n`` REST / WS API requests (REST requests to ``path`` only, when given)
        with 429 (or 418) and ``Retry-After``; or, with a 5XX ``status``, the next ``n`` REST
        requests with that status and ``-1001 Internal error; ...``."""
        if status in SERVER_ERROR_STATUSES:
            self._rest_faults.extend([("error", int(status), path)] * int(n))
            return
        self.limiter.force(n, status, retry_after, path)

    def hang_next_requests(self, n: int = 1, path: str | None = None) -> None:
        """The next ``n`` REST requests (to ``path`` only, when given) are read and never answered:
        the connection stays open and silent until the client gives up (or the server stops)."""
        self._rest_faults.extend([("hang", 0, path)] * int(n))

    def outage(self, seconds: float, mode: str = "error", status: int = 503) -> None:
        """For ``seconds``, every REST request fails (``/_fake/`` excepted):

        - ``error``: answered with ``status`` (5XX) and ``-1001 Internal error; ...``;
        - ``hang``: held unanswered until the outage ends, then answered as usual (an order
          held this way is executed late, as when Binance's backend catches up);
        - ``drop``: the TCP connection is aborted without an answer;
        - ``refuse``: the listening socket is closed, so new connections of every kind (REST,
          streams, WS API) are refused; connections already open stay.

        ``seconds=0`` ends an outage now."""
        if mode not in OUTAGE_MODES:
            raise ValueError(f"outage mode must be one of {OUTAGE_MODES}, not {mode!r}")
        if mode == "error" and status not in SERVER_ERROR_STATUSES:
            raise ValueError(f"outage status must be one of {SERVER_ERROR_STATUSES}, not {status}")
        if self._outage_over is not None:
            self._outage_over.set()  # requests held by the previous outage go on
        loop = asyncio.get_running_loop()
        seconds = max(float(seconds), 0.0)
        self._outage_until = time.monotonic() + seconds
        self._outage_mode = mode if seconds > 0 else ""
        self._outage_status = int(status)
        over = self._outage_over = asyncio.Event()
        if seconds > 0:
            loop.call_later(seconds, over.set)
        if mode == "refuse" and seconds > 0:
            self._spawn(self._refuse_for(seconds, over))

    async def _refuse_for(self, seconds: float, over: asyncio.Event) -> None:
        site = self._site
        if site is None:
            return
        await site.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(over.wait(), seconds)
        if self._runner is not None and self._stopping is not None and not self._stopping.is_set():
            self._site = web.TCPSite(self._runner, self.host, self.port)
            await self._site.start()

    @property
    def outage_active(self) -> bool:
        return bool(self._outage_mode) and time.monotonic() < self._outage_until

    def set_clock_skew(self, ms: float, visible: bool = True) -> None:
        """Move the server clock by ``ms``. ``visible=False`` keeps ``/api/v3/time`` true, so a client
        that syncs its clock cannot avoid the -1021 answers."""
        self._skew_ms = float(ms)
        self._skew_visible = visible

    def set_ack_delay(self, ms: float) -> None:
        """Delay order responses (new, cancel, cancel-all) by ``ms`` after the order is processed."""
        self.ack_delay = max(0.0, float(ms) / 1000.0)

    def lose_next_acks(self, n: int = 1, mode: str = "drop") -> None:
        """The next ``n`` order requests are executed but their response is lost.

        ``drop``: REST drops the TCP connection without an answer, the WS API sends nothing.
        ``timeout``: Binance's own signal for this case, HTTP 503 (WS API status 503) with
        ``{"code":-1007,"msg":"Timeout waiting for response from backend server. Send status unknown;
        execution status unknown."}``.
        """
        if mode not in LOST_ACK_MODES:
            raise ValueError(f"lost-ack mode must be one of {LOST_ACK_MODES}, not {mode!r}")
        self._lost_acks.extend([mode] * int(n))

    def inject(self, kind: str, payload: bytes | str, symbol: str = "BTCUSDT") -> int:
        """Send ``payload`` as is (any bytes: hostile JSON, invalid UTF-8) on every subscribed
        stream of ``symbol`` whose name ends in ``@<kind>`` (``depth``, ``depth@100ms``, ``trade``,
        ``aggTrade``, ``bookTicker``), wrapped as the connection expects. Nothing else changes:
        the fake's book and the chain of ids go on as before. Returns the streams it went to."""
        raw = payload.encode() if isinstance(payload, str) else bytes(payload)
        prefix = symbol.lower() + "@"
        names = [n for n in self.hub.by_stream if n.startswith(prefix) and n[len(prefix) :] == kind]
        for name in names:
            self.hub.publish(name, raw)
        self.frames_injected += len(names)
        return len(names)

    def bad_snapshots(self, n: int = 1, last_update_id: int = 2**62) -> None:
        """The next ``n`` depth snapshots claim ``lastUpdateId = last_update_id`` (their levels are
        the book's): a venue handing out an implausible id."""
        self._bad_snapshots.extend([int(last_update_id)] * max(int(n), 0))

    def fill_order(self, client_order_id: str, qty: str | None = None, symbol: str = "BTCUSDT") -> dict:
        """Fill one of the account's open orders at its price (all that is left, or ``qty``, a
        decimal string), as the market would; its answer is the order as ``GET /api/v3/order``
        shows it. ``KeyError`` when it is not open."""
        q = None if qty is None else _scaled("qty", qty)
        return query_json(self.exchange.fill_resting(symbol, client_order_id, q))

    def deposit(self, asset: str, amount: str) -> None:
        """Add ``amount`` (a decimal string; negative: a withdrawal) to the free balance of
        ``asset`` without telling anyone: no user-stream event (a transfer the node never hears of)."""
        neg = amount.startswith("-")
        units = _scaled("amount", amount[1:] if neg else amount)
        bal = self.exchange.balances.setdefault(asset, [0, 0])
        if neg and units > bal[0]:
            raise ValueError(f"amount {amount}: only {fmt(bal[0])} {asset} free")
        bal[0] += -units if neg else units

    def cancel_order(self, client_order_id: str, symbol: str = "BTCUSDT") -> dict:
        """Cancel one of the account's open orders from outside the client (``KeyError`` when it
        is not open)."""
        return query_json(self.exchange.cancel_resting(symbol, client_order_id))

    def server_shutdown(self, close_after: float = 1.0, repeat: int = 1) -> None:
        """Send ``serverShutdown`` (``repeat`` times: a burst) on every connection, then close those
        connections ``close_after`` s later (not the ones clients opened since)."""
        for _ in range(max(int(repeat), 1)):
            event = {"e": "serverShutdown", "E": self.now_ms()}
            self.hub.broadcast(_encode(event))
            for conn in self.ws_api.connections:
                conn.send(_encode({"event": event}))

        told = list(self.hub.connections) + list(self.ws_api.connections)  # a reconnect is a new server

        async def close_all() -> None:
            await asyncio.sleep(close_after)
            for conn in told:
                await conn.close(1001, "server shutdown")

        self._spawn(close_all())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def deliver_ack(self, send: Callable[[], None], send_timeout: Callable[[], None]) -> None:
        """Send (or delay, or lose) a WS API order response."""
        mode = self._lost_acks.popleft() if self._lost_acks else None
        if mode == "drop":
            return
        fn = send_timeout if mode == "timeout" else send
        if self.ack_delay > 0:
            asyncio.get_running_loop().call_later(self.ack_delay, fn)
        else:
            fn()

    def status(self) -> dict:
        r = self.replayer
        return {
            "position": r.pos,
            "records": len(r.records),
            "done": r.done.is_set(),
            "last_update_id": dict(r.last_update_id),
            "diffs_dropped": r.diffs_dropped,
            "frames_published": self.hub.frames_published,
            "stream_connections": len(self.hub.connections),
            "ws_api_connections": len(self.ws_api.connections),
            "used_weight_1m": self.limiter.used_weight(),
            "open_orders": len(self.exchange.open_orders({})),
            "outage": self._outage_mode if self.outage_active else "",
            "rest_faults_pending": len(self._rest_faults),
            "rest_faults_served": self.rest_faults_served,
            "frames_injected": self.frames_injected,
            "bad_snapshots_pending": len(self._bad_snapshots),
        }

    # --- shared request helpers ---------------------------------------------------------------
    def depth_weight(self, params: dict[str, str]) -> int:
        raw = params.get("limit", "100")
        return _depth_weight(min(int(raw), 5000)) if raw.isdigit() else 5

    def _symbol(self, params: dict[str, str]) -> str:
        symbol = params.get("symbol")
        if not symbol:
            raise E.mandatory("symbol")
        if symbol not in self.specs:
            raise E.bad_symbol()
        return symbol

    def depth_json(self, params: dict[str, str]) -> dict:
        symbol = self._symbol(params)
        raw = params.get("limit", "100")
        if not raw.isdigit():
            raise E.illegal_chars("limit", E.INTEGER_RANGE)
        limit = max(1, min(int(raw), 5000))
        out = self.replayer.depth_json(symbol, limit)
        if self._bad_snapshots:
            out["lastUpdateId"] = self._bad_snapshots.popleft()
        return out

    def exchange_info_json(self, params: dict[str, str]) -> dict:
        only = None
        if params.get("symbol"):
            only = [self._symbol(params)]
        elif params.get("symbols"):
            try:
                only = json.loads(params["symbols"])
            except ValueError:
                raise BinanceError(
                    -1100,
                    "Illegal characters found in parameter 'symbols'; legal range is "
                    '\'^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$\'.',
                ) from None
            if not isinstance(only, list) or any(s not in self.specs for s in only):
                raise E.bad_symbol()
        return exchange_info(self.specs, self.limiter.exchange_limits(), self.now_ms(), only)

    def book_ticker_json(self, params: dict[str, str]) -> dict:
        symbol = self._symbol(params)
        b = self.books[symbol]
        return {
            "symbol": symbol,
            "bidPrice": fmt(b.best_bid_fixed),
            "bidQty": fmt(b.best_bid_size_fixed),
            "askPrice": fmt(b.best_ask_fixed),
            "askQty": fmt(b.best_ask_size_fixed),
        }

    def _ticker_price(self, params: dict[str, str]) -> dict | list:
        ticker = self.replayer.ticker
        if params.get("symbol"):
            return ticker.price_json(self._symbol(params))
        return [ticker.price_json(s) for s in self.specs]

    def _avg_price(self, params: dict[str, str]) -> dict:
        return self.replayer.ticker.avg_price_json(self._symbol(params), self.now_ms())

    def _ticker_24hr(self, params: dict[str, str]) -> dict | list:
        ticker, now = self.replayer.ticker, self.now_ms()
        if params.get("symbol"):
            return ticker.stats_json(self._symbol(params), now)
        return [ticker.stats_json(s, now) for s in self.specs]

    # --- REST ---------------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        ex = lambda: self.exchange  # noqa: E731 - the exchange is built at start
        r = app.router
        r.add_get("/api/v3/ping", self._rest(lambda p: {}, 1))
        r.add_get("/api/v3/time", self._rest(lambda p: {"serverTime": self.now_ms()}, 1))
        r.add_get("/api/v3/exchangeInfo", self._rest(self.exchange_info_json, 20))
        r.add_get("/api/v3/depth", self._rest(self.depth_json, self.depth_weight))
        r.add_get("/api/v3/ticker/bookTicker", self._rest(self.book_ticker_json, 2))
        r.add_get("/api/v3/ticker/price", self._rest(self._ticker_price, lambda p: 2 if p.get("symbol") else 4))
        r.add_get("/api/v3/ticker/24hr", self._rest(self._ticker_24hr, lambda p: 2 if p.get("symbol") else 80))
        r.add_get("/api/v3/avgPrice", self._rest(self._avg_price, 2))
        r.add_get(
            "/api/v3/account",
            self._rest(lambda p: ex().account_json(p.get("omitZeroBalances") == "true"), 20, signed=True),
        )
        r.add_post("/api/v3/order", self._rest(self._new_order, 1, signed=True, orders=True, ack=True))
        r.add_post("/api/v3/order/test", self._rest(lambda p: (ex().validate(p), {})[1], 1, signed=True))
        r.add_delete("/api/v3/order", self._rest(lambda p: cancel_json(*ex().cancel(p)), 1, signed=True, ack=True))
        r.add_get("/api/v3/order", self._rest(lambda p: query_json(ex().query(p)), 4, signed=True))
        r.add_get(
            "/api/v3/openOrders",
            self._rest(
                lambda p: [query_json(o) for o in ex().open_orders(p)],
                lambda p: 6 if p.get("symbol") else 80,
                signed=True,
            ),
        )
        r.add_delete(
            "/api/v3/openOrders",
            self._rest(lambda p: [cancel_json(o, c) for o, c in ex().cancel_all(p)], 1, signed=True, ack=True),
        )
        r.add_get("/api/v3/myTrades", self._rest(lambda p: ex().my_trades(p), 20, signed=True))
        r.add_get("/ws", self._ws_stream)
        r.add_get("/ws/{streams:.*}", self._ws_stream)
        r.add_get("/stream", self._ws_stream)
        r.add_get("/ws-api/v3", self._ws_api)
        r.add_get("/_fake/status", self._admin)
        r.add_get("/_fake/orders", self._orders)
        r.add_get("/_fake/trades", self._trades)
        r.add_post("/_fake/{action}", self._admin)

    async def _weight_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every HTTP answer carries the IP's used weight, as Binance's do (404s included)."""
        for name, value in self.limiter.headers().items():
            response.headers.setdefault(name, value)

    def _new_order(self, params: dict[str, str]) -> dict:
        self.limiter.check_orders()
        order, resp_type = self.exchange.place(params)
        self.limiter.count_order()
        return new_order_json(order, resp_type)

    def _json(
        self, body: bytes, status: int = 200, orders: bool = False, retry_after: int | None = None
    ) -> web.Response:
        headers = self.limiter.headers(orders)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return web.Response(body=body, status=status, headers=headers, content_type="application/json", charset="UTF-8")

    async def _read_params(self, request: web.Request) -> tuple[dict[str, str], str, str]:
        raw_q = request.rel_url.raw_query_string
        raw_b = ""
        if request.can_read_body:
            body = await request.read()
            if body and request.content_type != "application/json":
                raw_b = body.decode("utf-8", "replace")
        params: dict[str, str] = {}
        for k, v in parse_qsl(raw_q, keep_blank_values=True) + parse_qsl(raw_b, keep_blank_values=True):
            if k in params:
                raise BinanceError(-1101, "Duplicate values for a parameter detected.")
            params[k] = v
        return params, raw_q, raw_b

    def _authenticate(self, request: web.Request, params: dict[str, str], raw_q: str, raw_b: str) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise BinanceError(-2014, E.MSG_KEY_FORMAT, 401)
        if key != self.api_key:
            raise BinanceError(-2015, E.MSG_KEY_REJECTED, 401)
        check_timestamp(params, self.validation_ms())
        signature = params.get("signature")
        if not signature:
            raise E.mandatory("signature")
        if not verify(self.api_secret, rest_payload(raw_q, raw_b), signature):
            raise BinanceError(-1022, E.MSG_BAD_SIGNATURE)

    def _rest(
        self,
        fn: Callable[[dict[str, str]], Any],
        weight: int | Callable[[dict[str, str]], int],
        signed: bool = False,
        orders: bool = False,
        ack: bool = False,
    ):
        async def handler(request: web.Request) -> web.Response:
            fault = await self._rest_fault(request)
            if fault is not None:
                return fault
            try:
                params, raw_q, raw_b = await self._read_params(request)
                self.limiter.charge(weight(params) if callable(weight) else weight, request.path)
                if signed:
                    self._authenticate(request, params, raw_q, raw_b)
                result = fn(params)
            except BinanceError as err:
                return self._json(_encode(err.body()), err.status, orders, err.retry_after)
            body = _encode(result)
            if not ack:
                return self._json(body, 200, orders)
            mode = self._lost_acks.popleft() if self._lost_acks else None
            if self.ack_delay > 0:
                await asyncio.sleep(self.ack_delay)
            if mode == "drop":
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError  # the response is gone with the connection
            if mode == "timeout":
                err = BinanceError(-1007, E.MSG_TIMEOUT, 503)
                return self._json(_encode(err.body()), err.status, orders)
            return self._json(body, 200, orders)

        return handler

    async def _rest_fault(self, request: web.Request) -> web.Response | None:
        """The answer an injected fault gives this REST request (None: serve it as usual)."""
        faults = self._rest_faults
        mode, status = "", 0
        for i, (m, st, path) in enumerate(faults):
            if path is None or path == request.path:
                mode, status = m, st
                del faults[i]
                break
        if not mode and self.outage_active:
            mode, status = self._outage_mode, self._outage_status
            if mode == "refuse":  # a connection opened before the socket closed: it is an outage too
                mode = "drop"
        if not mode:
            return None
        self.rest_faults_served += 1
        if mode == "error":
            body = _encode({"code": -1001, "msg": MSG_INTERNAL})
            return web.Response(body=body, status=status, content_type="application/json", charset="UTF-8")
        if mode == "hang":
            waits = [self._stopping] if self._stopping is not None else []
            if self._outage_over is not None and self.outage_active:
                waits.append(self._outage_over)  # an outage's hang ends with it
            tasks = [asyncio.ensure_future(e.wait()) for e in waits]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
            if self._stopping is not None and not self._stopping.is_set():
                return None  # the outage is over: answered as usual, late
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # no answer: the connection is gone

    # --- WebSocket endpoints --------------------------------------------------------------------
    def _connection_allowed(self) -> bool:
        """Binance: 300 connection attempts per 5 minutes per IP."""
        now = time.monotonic()
        q = self._attempts
        q.append(now)
        while q and now - q[0] > 300:
            q.popleft()
        return len(q) <= self.max_connection_attempts

    def _conn_kw(self) -> dict:
        return {
            "ping_interval": self.ping_interval,
            "pong_timeout": self.pong_timeout,
            "max_lifetime": self.max_lifetime,
            "max_backlog": self.max_backlog,
        }

    async def _ws_stream(self, request: web.Request) -> web.StreamResponse:
        if not self._connection_allowed():
            return web.Response(status=429, text="Too many connection attempts")
        if request.path.startswith("/stream"):
            streams = [s for s in request.query.get("streams", "").split("/") if s]
            combined = True
        else:
            streams = [s for s in request.match_info.get("streams", "").split("/") if s]
            combined = False
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        conn = StreamConnection(
            ws, request.transport, combined=combined, max_incoming_per_s=self.max_incoming_per_s, **self._conn_kw()
        )
        # subscribed before the handshake completes: a client that is connected is already listening
        self.hub.add(conn, streams)
        try:
            await ws.prepare(request)
        except BaseException:
            self.hub.remove(conn)
            raise
        conn.start()

        async def on_text(text: str) -> None:
            conn.send(self.hub.control(conn, text))

        try:
            await conn.receive_loop(on_text, conn.count_incoming)
        finally:
            self.hub.remove(conn)
            await conn.close(1000)
            conn.stop_tasks()
        return ws

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        if not self._connection_allowed():
            return web.Response(status=429, text="Too many connection attempts")
        try:
            self.limiter.charge(2)  # connecting to the WS API costs 2 weight
        except BinanceError as err:
            return self._json(_encode(err.body()), err.status, retry_after=err.retry_after)
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        show = request.query.get("returnRateLimits", "true").lower() != "false"
        conn = ApiConnection(ws, request.transport, return_rate_limits=show, **self._conn_kw())
        await ws.prepare(request)
        conn.start()
        self.ws_api.connections.add(conn)

        async def on_text(text: str) -> None:
            await self.ws_api.handle_text(conn, text)

        try:
            await conn.receive_loop(on_text)
        finally:
            self.ws_api.connections.discard(conn)
            await conn.close(1000)
            conn.stop_tasks()
        return ws

    # --- admin (for a server run by hand; not part of Binance's API) ----------------------------
    async def _orders(self, request: web.Request) -> web.Response:
        """Every order the fake's account ever placed, oldest first (tests: nothing sent twice)."""
        return web.json_response([query_json(o) for o in self.exchange.orders.values()])

    async def _trades(self, request: web.Request) -> web.Response:
        """Every trade of the fake's account, oldest first, with its order's client id (tests:
        each one booked once)."""
        out = [
            {**t, "clientOrderId": o.client_order_id}
            for (o, _), t in zip(self.exchange.trades, self.exchange.trade_list(), strict=True)
        ]
        return web.json_response(out)

    async def _admin(self, request: web.Request) -> web.Response:
        action = request.match_info.get("action", "status")
        q = request.query
        if action in ("fill_order", "cancel_order", "deposit"):
            return self._admin_order(action, q)
        try:
            if action == "status":
                pass
            elif action == "drop_diffs":
                self.drop_diffs(int(q.get("n", "1")), q.get("symbol"))
            elif action == "disconnect":
                self.disconnect(
                    streams=q.get("streams", "true") == "true",
                    ws_api=q.get("ws_api", "false") == "true",
                    abrupt=q.get("abrupt", "true") == "true",
                )
            elif action == "silence":
                self.silence(float(q["seconds"]), q.get("keep_replaying", "false") == "true")
            elif action == "fail_requests":
                self.fail_next_requests(
                    int(q.get("n", "1")), int(q.get("status", "429")), int(q.get("retry_after", "1")), q.get("path")
                )
            elif action == "hang_requests":
                self.hang_next_requests(int(q.get("n", "1")), q.get("path"))
            elif action == "outage":
                self.outage(float(q["seconds"]), q.get("mode", "error"), int(q.get("status", "503")))
            elif action == "clock_skew":
                self.set_clock_skew(float(q["ms"]), q.get("visible", "true") == "true")
            elif action == "ack_delay":
                self.set_ack_delay(float(q["ms"]))
            elif action == "lose_acks":
                self.lose_next_acks(int(q.get("n", "1")), q.get("mode", "drop"))
            elif action == "server_shutdown":
                self.server_shutdown(float(q.get("close_after", "1")), int(q.get("repeat", "1")))
            elif action == "inject":
                self.inject(q["kind"], q["payload"], q.get("symbol", "BTCUSDT"))
            elif action == "bad_snapshots":
                self.bad_snapshots(int(q.get("n", "1")), int(q.get("last_update_id", str(2**62))))
            elif action == "pause":
                self.pause()
            elif action == "resume":
                self.resume()
            else:
                return web.json_response({"error": f"unknown action {action!r}"}, status=404)
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": f"bad parameters for {action}: {exc}"}, status=400)
        return web.json_response(self.status())

    def _admin_order(self, action: str, q: Mapping[str, str]) -> web.Response:
        if action == "deposit":
            try:
                self.deposit(q["asset"], q["amount"])
            except (KeyError, ValueError) as exc:
                return web.json_response({"error": f"bad parameters for deposit: {exc}"}, status=400)
            return web.json_response(self.exchange.account_json(omit_zero=True))
        cid, symbol = q.get("clientOrderId", ""), q.get("symbol", "BTCUSDT")
        if not cid:
            return web.json_response({"error": f"bad parameters for {action}: clientOrderId is required"}, status=400)
        try:
            if action == "fill_order":
                order = self.fill_order(cid, q.get("qty"), symbol)
            else:
                order = self.cancel_order(cid, symbol)
        except KeyError as exc:
            return web.json_response({"error": str(exc.args[0])}, status=404)
        except ValueError as exc:
            return web.json_response({"error": f"bad parameters for {action}: {exc}"}, status=400)
        return web.json_response(order)


def parse_speed(speed: float | str) -> float:
    """``1`` = real time, ``10`` = ten times faster, ``0`` or ``"max"`` = as fast as clients read."""
    if isinstance(speed, str):
        if speed.strip().lower() in ("max", "0"):
            return 0.0
        try:
            speed = float(speed)
        except ValueError:
            raise ValueError(f"speed {speed!r} must be a number or 'max'") from None
    if speed < 0:
        raise ValueError(f"speed {speed} must be >= 0")
    return float(speed)


__all__ = ["ENV_KEY", "ENV_SECRET", "FakeBinance", "parse_speed"]
