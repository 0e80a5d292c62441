"""``FakeCoinbase``: one aiohttp server on loopback speaking Coinbase's two APIs the adapter uses.

    async with FakeCoinbase(api_key=k, api_secret=s, passphrase=p) as fc:
        fc.ws_url    # ws://127.0.0.1:<port>       Advanced Trade market data (wss://advanced-trade-ws.coinbase.com)
        fc.rest_url  # http://127.0.0.1:<port>     Coinbase Exchange REST (https://api.exchange.coinbase.com)

WebSocket (Advanced Trade): ``subscribe`` / ``unsubscribe`` one channel per message (``level2``,
``heartbeats``, ``market_trades``) within ``subscribe_timeout_s`` of connecting, else the socket is
closed; each subscribe is acked on ``subscriptions`` and ``level2`` answers with an ``l2_data``
snapshot per product; every frame carries the connection's ``sequence_num`` (0, 1, 2, ...).
``heartbeats`` tick every ``heartbeat_interval_s`` with a growing ``heartbeat_counter``. An unknown
channel gets ``{"type":"error","message":"authentication failure"}`` as Coinbase sends it. The
same socket takes Coinbase Exchange's subscribe form for the authenticated ``user`` channel
(signed like ``GET /users/self/verify``): ``received``/``open``/``match``/``done`` of the
account's orders as they happen.

REST (Exchange): ``GET /time``, ``/products``, ``/products/{id}``, ``/products/{id}/book``,
``/products/{id}/ticker``; signed (``CB-ACCESS-KEY/SIGN/TIMESTAMP/PASSPHRASE``, checked in this
order: key, passphrase, timestamp within 30 s, signature): ``POST /orders``, ``DELETE /orders/{id}``
(``client:<oid>`` too), ``DELETE /orders``, ``GET /orders``, ``GET /orders/{id}``, ``GET /accounts``,
``GET /fills``. Private requests are limited per key (token bucket, 15/s burst 30), public per IP
(10/s burst 15): 429 ``{"message": "... rate limit exceeded"}``.

Faults (methods, and ``POST /_fake/<action>`` for a server run by hand): ``drop_updates``,
``silence``, ``stop_heartbeats``, ``disconnect``, ``fail_next_requests`` (5xx / 429),
``set_ack_delay``, ``lose_next_acks``, ``set_clock_skew``; ``pause`` / ``resume`` the replay.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import deque
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from sim.fake_coinbase.data import Market, Print, Update, load_binance_relabelled, load_market, merge
from sim.fake_coinbase.exchange import ApiError, Exchange, iso

log = logging.getLogger(__name__)

ENV_KEY = "HFT_FAKE_COINBASE_KEY"
ENV_SECRET = "HFT_FAKE_COINBASE_SECRET"
ENV_PASSPHRASE = "HFT_FAKE_COINBASE_PASSPHRASE"
DEFAULT_BALANCES = {"GBP": "100000", "BAND": "1000", "USD": "100000", "BTC": "1"}
CHANNELS = ("level2", "heartbeats", "market_trades")


class _Bucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Conn:
    """One market-data WebSocket: its subscriptions and its ``sequence_num``."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.seq = 0
        self.subs: dict[str, set[str]] = {}
        self.user: set[str] = set()  # products of an authenticated Exchange ``user`` subscription
        self.subscribed = asyncio.Event()

    def envelope(self, channel: str, events: list[dict]) -> bytes:
        body = {"channel": channel, "client_id": "", "timestamp": iso(), "sequence_num": self.seq, "events": events}
        self.seq += 1
        return json.dumps(body, separators=(",", ":")).encode()

    def send(self, channel: str, events: list[dict]) -> None:
        data = self.envelope(channel, events)
        if not self.ws.closed:
            asyncio.get_running_loop().create_task(self._send(data))

    async def _send(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(data.decode())

    def skip(self) -> None:
        """A frame that is lost on the way: its number is used, nothing is sent."""
        self.seq += 1


class FakeCoinbase:
    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        passphrase: str | None = None,
        interval_s: float = 0.02,
        heartbeat_interval_s: float = 1.0,
        start: str = "subscribe",
        balances: dict[str, str] | None = None,
        subscribe_timeout_s: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
        private_rate: tuple[float, int] = (15.0, 30),
        public_rate: tuple[float, int] = (10.0, 15),
        market: Market | None = None,
        products: tuple[str, ...] = ("BAND-GBP",),
        btc_events: int = 3000,
    ) -> None:
        self.api_key = api_key or secrets.token_hex(16)
        self.api_secret = api_secret or base64.b64encode(secrets.token_bytes(64)).decode()
        self.passphrase = passphrase or secrets.token_urlsafe(12)
        self._secret = base64.b64decode(self.api_secret)
        if market is None:
            parts = []
            if "BAND-GBP" in products:
                parts.append(load_market())
            if "BTC-USD" in products:
                parts.append(load_binance_relabelled(limit=btc_events))
            unknown = set(products) - {"BAND-GBP", "BTC-USD"}
            if unknown or not parts:
                served = "BAND-GBP (real capture) and BTC-USD (Binance's re-labelled)"
                raise ValueError(f"fake coinbase serves {served}, not {sorted(unknown)}")
            market = merge(*parts)
        self.market = market
        self.exchange = Exchange(
            dict(self.market.products), {k: Decimal(v) for k, v in (balances or DEFAULT_BALANCES).items()}
        )
        for pid, (bids, asks) in self.market.snapshots.items():
            self.exchange.set_book(pid, bids, asks)
        self.exchange.on_event = self._user_event
        self.interval_s = interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.start_mode = start
        self.subscribe_timeout_s = subscribe_timeout_s
        self.host, self.port = host, port
        self.conns: set[Conn] = set()
        self.pos = 0
        self.done = asyncio.Event()
        self.started = asyncio.Event()
        self._running = asyncio.Event()
        self._running.set()
        self.heartbeat_counter = 0
        self.heartbeats_on = True
        self._drop = 0
        self.dropped = 0
        self._silent_until = 0.0
        self._silence_drops = False
        self._faults: deque[tuple[int, float]] = deque()  # (status, retry_after)
        self.ack_delay_s = 0.0
        self._lost_acks = 0
        self.skew_s = 0.0
        self._private = _Bucket(*private_rate)
        self._public = _Bucket(*public_rate)
        self.requests = 0
        self.orders_placed = 0
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> FakeCoinbase:
        app = web.Application()
        app.router.add_get("/", self._ws)
        r = app.router
        r.add_get("/time", self._time)
        r.add_get("/currencies", self._currencies)
        r.add_get("/products", self._products)
        r.add_get("/products/{pid}", self._product)
        r.add_get("/products/{pid}/book", self._book)
        r.add_get("/products/{pid}/ticker", self._ticker)
        r.add_post("/orders", self._place)
        r.add_get("/orders", self._list_orders)
        r.add_delete("/orders", self._cancel_all)
        r.add_get("/orders/{ref}", self._get_order)
        r.add_delete("/orders/{ref}", self._cancel)
        r.add_get("/accounts", self._accounts)
        r.add_get("/fills", self._fills)
        r.add_get("/_fake/status", self._fake_status)
        r.add_post("/_fake/{action}", self._fake_action)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._spawn(self._heartbeats())
        self._spawn(self._replay())
        if self.start_mode == "now":
            self.started.set()
        return self

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for c in list(self.conns):
            with contextlib.suppress(Exception):
                await c.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeCoinbase:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # --- faults ----------------------------------------------------------------------------------
    def drop_updates(self, n: int = 1) -> None:
        """The next ``n`` level2 update frames are lost on every connection (their numbers used)."""
        self._drop += int(n)

    def silence(self, seconds: float, drop: bool = False) -> None:
        """Send nothing (heartbeats included) for ``seconds``. The replay waits meanwhile unless
        ``drop``: then the market moves on and its frames are lost (a sequence gap afterwards)."""
        self._silent_until = time.monotonic() + seconds
        self._silence_drops = drop

    def stop_heartbeats(self, stop: bool = True) -> None:
        self.heartbeats_on = not stop

    def disconnect(self) -> int:
        n = 0
        for c in list(self.conns):
            n += 1
            self._spawn(c.ws.close(code=1001, message=b"fake disconnect"))
        return n

    def fail_next_requests(self, n: int = 1, status: int = 503, retry_after: float = 1.0) -> None:
        """The next ``n`` REST requests answer ``status`` (5xx, or 429 with ``Retry-After``)."""
        self._faults.extend([(int(status), float(retry_after))] * int(n))

    def set_ack_delay(self, seconds: float) -> None:
        self.ack_delay_s = max(0.0, float(seconds))

    def lose_next_acks(self, n: int = 1) -> None:
        """The next ``n`` order requests are executed, then the connection drops with no answer."""
        self._lost_acks += int(n)

    def set_clock_skew(self, seconds: float) -> None:
        self.skew_s = float(seconds)

    def fill_order(self, client_oid: str, size: str | None = None) -> dict:
        """Fill one of the account's open orders at its price, as the market would (maker): whole,
        or ``size`` of it (a decimal string; the rest stays open). ``KeyError`` when it is not open."""
        o = self.exchange.orders.get(self.exchange.by_client.get(client_oid, ""))
        if o is None or o.status != "open":
            raise KeyError(client_oid)
        self.exchange.fill_resting(o, None if size is None else Decimal(size))
        return o.json()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def silent(self) -> bool:
        return time.monotonic() < self._silent_until

    def book(self, product: str, n: int = 50) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        return self.exchange.levels(product, "bid")[:n], self.exchange.levels(product, "offer")[:n]

    def status(self) -> dict:
        return {
            "position": self.pos,
            "events": len(self.market.events),
            "done": self.done.is_set(),
            "connections": len(self.conns),
            "dropped": self.dropped,
            "heartbeat_counter": self.heartbeat_counter,
            "open_orders": len(self.exchange.open_orders()),
            "requests": self.requests,
        }

    # --- market data -----------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None, autoping=True)
        await ws.prepare(request)
        conn = Conn(ws)
        self.conns.add(conn)
        watchdog = asyncio.get_running_loop().call_later(
            self.subscribe_timeout_s, lambda: conn.subscribed.is_set() or self._spawn(ws.close(code=1008))
        )
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    conn.send("error", [])
                    continue
                self._on_request(conn, req)
        finally:
            watchdog.cancel()
            self.conns.discard(conn)
        return ws

    def _on_request(self, conn: Conn, req: dict) -> None:
        if "channels" in req:  # Coinbase Exchange's form: the authenticated ``user`` channel
            self._on_exchange_request(conn, req)
            return
        kind, channel = req.get("type"), req.get("channel")
        if kind not in ("subscribe", "unsubscribe") or channel not in CHANNELS:
            self._send_raw(conn, {"type": "error", "message": "authentication failure"})
            return
        products = [p for p in req.get("product_ids") or [] if isinstance(p, str)]
        unknown = [p for p in products if p not in self.exchange.products]
        if unknown:
            self._send_raw(conn, {"type": "error", "message": f"Failure to subscribe: unknown product_id {unknown[0]}"})
            products = [p for p in products if p not in unknown]
        subs = conn.subs.setdefault(channel, set())
        if kind == "unsubscribe":
            subs.difference_update(products or subs)
            if not subs:
                conn.subs.pop(channel, None)
        else:
            subs.update(products or ([channel] if channel == "heartbeats" else []))
            conn.subscribed.set()
        ack = {c: sorted(s) for c, s in conn.subs.items()}
        conn.send("subscriptions", [{"subscriptions": ack}])
        if kind == "subscribe" and channel == "level2":
            for p in products:
                conn.send("l2_data", [self._snapshot(p)])
            self.started.set()
        # Coinbase sends recent trades first; the fake has none before its replay
        if kind == "subscribe" and channel == "market_trades" and products:
            conn.send("market_trades", [{"type": "snapshot", "trades": []}])

    def _on_exchange_request(self, conn: Conn, req: dict) -> None:
        """``{"type":"subscribe","channels":[{"name":"user","product_ids":[...]}], key, passphrase,
        timestamp, signature}``: signed like ``GET /users/self/verify`` (CB-EX websocket-feed/
        authentication). Only ``user`` is served in this form."""
        names = {c if isinstance(c, str) else c.get("name") for c in req.get("channels") or []}
        products = set(req.get("product_ids") or [])
        for c in req.get("channels") or []:
            if isinstance(c, dict):
                products |= set(c.get("product_ids") or [])
        if names != {"user"} or req.get("type") not in ("subscribe", "unsubscribe"):
            self._send_raw(conn, {"type": "error", "message": "Failed to subscribe", "reason": "only user is served"})
            return
        why = self._ws_auth(req)
        if why:
            self._send_raw(conn, {"type": "error", "message": "authentication failure", "reason": why})
            return
        if req["type"] == "subscribe":
            conn.user = products or set(self.exchange.products)
            conn.subscribed.set()
        else:
            conn.user = set()
        chans = [{"name": "user", "product_ids": sorted(conn.user)}] if conn.user else []
        self._send_raw(conn, {"type": "subscriptions", "channels": chans})

    def _ws_auth(self, req: dict) -> str:
        if req.get("key") != self.api_key:
            return "Invalid API Key"
        if req.get("passphrase") != self.passphrase:
            return "Invalid Passphrase"
        ts = str(req.get("timestamp", ""))
        try:
            t = float(ts)
        except ValueError:
            return "timestamp required"
        if abs(time.time() + self.skew_s - t) > 30.0:
            return "request timestamp expired"
        want = hmac.new(self._secret, f"{ts}GET/users/self/verify".encode(), hashlib.sha256).digest()
        try:
            got = base64.b64decode(str(req.get("signature", "")), validate=True)
        except (binascii.Error, ValueError):
            got = b""
        return "" if hmac.compare_digest(want, got) else "invalid signature"

    def _user_event(self, msg: dict) -> None:
        if self.silent():
            return
        for c in list(self.conns):
            if msg["product_id"] in c.user:
                self._send_raw(c, msg)

    def _send_raw(self, conn: Conn, obj: dict) -> None:
        if not conn.ws.closed:
            self._spawn(conn.ws.send_str(json.dumps(obj)))

    def _snapshot(self, product: str) -> dict:
        t = iso()
        ups = [
            {"side": "bid", "event_time": t, "price_level": str(p), "new_quantity": str(q)}
            for p, q in self.exchange.levels(product, "bid")
        ]
        ups += [
            {"side": "offer", "event_time": t, "price_level": str(p), "new_quantity": str(q)}
            for p, q in self.exchange.levels(product, "offer")
        ]
        return {"type": "snapshot", "product_id": product, "updates": ups}

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            self.heartbeat_counter += 1
            if not self.heartbeats_on or self.silent():
                continue
            now = time.time()
            ev = [{"current_time": iso(now), "heartbeat_counter": self.heartbeat_counter}]
            for c in list(self.conns):
                if "heartbeats" in c.subs:
                    c.send("heartbeats", ev)

    async def _replay(self) -> None:
        await self.started.wait()
        events = self.market.events
        while self.pos < len(events):
            await self._running.wait()
            while self.silent() and not self._silence_drops:
                await asyncio.sleep(0.01)
            ev = events[self.pos]
            self.pos += 1
            if isinstance(ev, Update):
                for side, px, q in ev.changes:
                    self.exchange.apply(ev.product_id, side, px, q)
                lost = self._drop > 0 or self.silent()
                if self._drop > 0:
                    self._drop -= 1
                if lost:
                    self.dropped += 1
                updates = [
                    {"side": s, "event_time": ev.time, "price_level": px, "new_quantity": q} for s, px, q in ev.changes
                ]
                for c in list(self.conns):
                    if ev.product_id in c.subs.get("level2", ()):
                        if lost:
                            c.skip()
                        else:
                            c.send("l2_data", [{"type": "update", "product_id": ev.product_id, "updates": updates}])
                self.exchange.cross_resting(ev.product_id)
            elif isinstance(ev, Print):
                trade = {
                    "trade_id": str(ev.trade_id),
                    "product_id": ev.product_id,
                    "price": ev.price,
                    "size": ev.size,
                    "side": ev.side,
                    "time": ev.time,
                }
                for c in list(self.conns):
                    if ev.product_id in c.subs.get("market_trades", ()) and not self.silent():
                        c.send("market_trades", [{"type": "update", "trades": [trade]}])
            await asyncio.sleep(self.interval_s)
        self.done.set()

    # --- REST ------------------------------------------------------------------------------------
    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"message": message}, status=status, headers=headers)

    def _fault(self) -> web.Response | None:
        self.requests += 1
        if not self._faults:
            return None
        status, retry = self._faults.popleft()
        if status == 429:
            return self._error(429, "Public rate limit exceeded", {"Retry-After": f"{retry:g}"})
        return self._error(status, "Internal server error")

    def _limit(self, private: bool) -> web.Response | None:
        bucket = self._private if private else self._public
        if not bucket.take():
            which = "Private" if private else "Public"
            return self._error(429, f"{which} rate limit exceeded", {"Retry-After": "1"})
        return None

    async def _auth(self, request: web.Request) -> tuple[web.Response | None, str]:
        """Coinbase Exchange's checks, in order; the body read once."""
        body = await request.text()
        bad = self._fault() or self._limit(True)
        if bad is not None:
            return bad, body
        h = request.headers
        if h.get("CB-ACCESS-KEY") != self.api_key:
            return self._error(401, "Invalid API Key"), body
        if h.get("CB-ACCESS-PASSPHRASE") != self.passphrase:
            return self._error(401, "Invalid Passphrase"), body
        ts = h.get("CB-ACCESS-TIMESTAMP", "")
        try:
            t = float(ts)
        except ValueError:
            return self._error(400, "CB-ACCESS-TIMESTAMP header is required"), body
        if abs(time.time() + self.skew_s - t) > 30.0:
            return self._error(401, "request timestamp expired"), body
        want = base64.b64encode(
            hmac.new(self._secret, f"{ts}{request.method}{request.path_qs}{body}".encode(), hashlib.sha256).digest()
        )
        try:
            got = base64.b64decode(h.get("CB-ACCESS-SIGN", ""), validate=True)
        except (binascii.Error, ValueError):
            got = b""
        if not hmac.compare_digest(base64.b64decode(want), got):
            return self._error(401, "invalid signature"), body
        return None, body

    async def _time(self, request: web.Request) -> web.Response:
        bad = self._fault() or self._limit(False)
        if bad is not None:
            return bad
        now = time.time() + self.skew_s
        return web.json_response({"iso": iso(now), "epoch": round(now, 3)})

    async def _currencies(self, request: web.Request) -> web.Response:
        bad = self._fault() or self._limit(False)
        if bad is not None:
            return bad
        assets = sorted({p[k] for p in self.exchange.products.values() for k in ("base_currency", "quote_currency")})
        fiat = {"GBP", "USD", "EUR"}
        return web.json_response(
            [
                {
                    "id": a,
                    "name": a,
                    "min_size": "0.01" if a in fiat else "0.00000001",
                    "status": "online",
                    "message": "",
                    "max_precision": "0.01" if a in fiat else "0.00000001",
                    "convertible_to": [],
                    "details": {"type": "fiat" if a in fiat else "crypto"},
                }
                for a in assets
            ]
        )

    async def _products(self, request: web.Request) -> web.Response:
        bad = self._fault() or self._limit(False)
        return bad or web.json_response(list(self.exchange.products.values()))

    async def _product(self, request: web.Request) -> web.Response:
        bad = self._fault() or self._limit(False)
        if bad is not None:
            return bad
        p = self.exchange.products.get(request.match_info["pid"])
        return web.json_response(p) if p else self._error(404, "NotFound")

    async def _book(self, request: web.Request) -> web.Response:
        bad = self._fault() or self._limit(False)
        if bad is not None:
            return bad
        pid = request.match_info["pid"]
        if pid not in self.exchange.products:
            return self._error(404, "NotFound")
        level = request.query.get("level", "1")
        n = 1 if level == "1" else 50
        bids, asks = self.book(pid, n if level != "3" else 10**9)
        return web.json_response(
            {
                "bids": [[str(p), str(q), 1] for p, q in bids],
                "asks": [[str(p), str(q), 1] for p, q in asks],
                "sequence": self.pos,
                "auction_mode": False,
                "auction": None,
                "time": iso(),
            }
        )

    async def _ticker(self, request: web.Request) -> web.Response:
        bad = self._fault() or self._limit(False)
        if bad is not None:
            return bad
        pid = request.match_info["pid"]
        if pid not in self.exchange.products:
            return self._error(404, "NotFound")
        bb, ba = self.exchange.best(pid)
        last = next((e for e in reversed(self.market.events[: self.pos]) if isinstance(e, Print)), None)
        return web.json_response(
            {
                "trade_id": last.trade_id if last else 0,
                "price": last.price if last else str(bb or 0),
                "size": last.size if last else "0",
                "bid": str(bb or 0),
                "ask": str(ba or 0),
                "volume": "0",
                "time": iso(),
            }
        )

    async def _order_answer(self, request: web.Request, payload: Any, status: int = 200) -> web.StreamResponse:
        if self._lost_acks > 0:
            self._lost_acks -= 1
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("fake coinbase: ack lost")
        if self.ack_delay_s:
            await asyncio.sleep(self.ack_delay_s)
        return web.json_response(payload, status=status)

    async def _place(self, request: web.Request) -> web.StreamResponse:
        bad, body = await self._auth(request)
        if bad is not None:
            return bad
        try:
            req = json.loads(body or "{}")
            o = self.exchange.place(req if isinstance(req, dict) else {})
        except ValueError:
            return self._error(400, "request body is not JSON")
        except ApiError as e:
            return self._error(e.status, e.message)
        self.orders_placed += 1
        return await self._order_answer(request, o.json())

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        bad, _ = await self._auth(request)
        if bad is not None:
            return bad
        try:
            oid = self.exchange.cancel(request.match_info["ref"])
        except ApiError as e:
            return self._error(e.status, e.message)
        return await self._order_answer(request, oid)

    async def _cancel_all(self, request: web.Request) -> web.StreamResponse:
        bad, _ = await self._auth(request)
        if bad is not None:
            return bad
        pid = request.query.get("product_id", "")
        return web.json_response([self.exchange.cancel(o.id) for o in self.exchange.open_orders(pid)])

    async def _get_order(self, request: web.Request) -> web.Response:
        bad, _ = await self._auth(request)
        if bad is not None:
            return bad
        try:
            return web.json_response(self.exchange.find(request.match_info["ref"]).json())
        except ApiError as e:
            return self._error(e.status, e.message)

    async def _list_orders(self, request: web.Request) -> web.Response:
        bad, _ = await self._auth(request)
        if bad is not None:
            return bad
        status = request.query.getall("status", ["open", "pending", "active"])
        pid = request.query.get("product_id", "")
        rows = [
            o.json()
            for o in self.exchange.orders.values()
            if (o.status in status or "all" in status) and (not pid or o.product_id == pid)
        ]
        return web.json_response(rows)

    async def _accounts(self, request: web.Request) -> web.Response:
        bad, _ = await self._auth(request)
        return bad or web.json_response(self.exchange.accounts())

    async def _fills(self, request: web.Request) -> web.Response:
        bad, _ = await self._auth(request)
        if bad is not None:
            return bad
        oid, pid = request.query.get("order_id", ""), request.query.get("product_id", "")
        if not oid and not pid:
            return self._error(400, "product_id or order_id is required")
        rows = [
            f.json()
            for f in reversed(self.exchange.fills)
            if (f.order.id == oid) or (not oid and f.order.product_id == pid)
        ]
        return web.json_response(rows)

    # --- control ---------------------------------------------------------------------------------
    async def _fake_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _fake_action(self, request: web.Request) -> web.Response:
        q = request.query
        action = request.match_info["action"]
        try:
            if action == "drop_updates":
                self.drop_updates(int(q.get("n", "1")))
            elif action == "silence":
                self.silence(float(q.get("seconds", "5")), q.get("drop", "false") == "true")
            elif action == "stop_heartbeats":
                self.stop_heartbeats(q.get("stop", "true") == "true")
            elif action == "disconnect":
                return web.json_response({"closed": self.disconnect()})
            elif action == "fail_requests":
                self.fail_next_requests(
                    int(q.get("n", "1")), int(q.get("status", "503")), float(q.get("retry_after", "1"))
                )
            elif action == "ack_delay":
                self.set_ack_delay(float(q.get("seconds", "0")))
            elif action == "lose_acks":
                self.lose_next_acks(int(q.get("n", "1")))
            elif action == "clock_skew":
                self.set_clock_skew(float(q.get("seconds", "0")))
            elif action == "pause":
                self.pause()
            elif action == "resume":
                self.resume()
            else:
                return self._error(404, f"unknown fake action {action!r}")
        except ValueError as exc:
            return self._error(400, f"bad parameter for {action}: {exc}")
        return web.json_response({"ok": True, "action": action})
