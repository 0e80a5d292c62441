"""``FakeKraken``: one aiohttp server on loopback speaking Kraken spot's REST and WebSocket v2.

    async with FakeKraken(api_key=k, api_secret=s, speed=0, start="manual") as fk:
        fk.rest_url      # http://127.0.0.1:<port>          (/0/public/..., /0/private/...)
        fk.ws_url        # ws://127.0.0.1:<port>/v2          (public: book, trade, ticker, ping)
        fk.ws_auth_url   # ws://127.0.0.1:<port>/auth/v2     (executions, add_order, cancel_order, amend_order)
        await fk.advance(500)   # apply 500 capture records now (manual start)

The market: the real fixtures' books (static) and a real Binance BTCUSDT capture re-labelled
BTC/USD, replayed at its own pace (``speed`` x real time; 0: as fast as asked with ``advance``).
Every subscription is sent exactly what Kraken would send it (``market.View``), checksums and all.

Faults (methods, and POST ``/_fake/<name>`` for a server run by hand): ``drop_updates`` (book
updates not sent: the client's next checksum fails), ``bad_checksum``, ``silence`` (nothing at all,
heartbeats included), ``disconnect``, ``fail_next_requests`` (HTTP status, e.g. 500/503),
``rate_limit_next`` (``EAPI:Rate limit exceeded``), ``set_clock_skew``, ``set_ack_delay``,
``lose_next_acks`` (order answers not sent), ``outage``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from sim.fake_binance.capture import DEPTH, TRADE, load_capture
from sim.fake_kraken.exchange import Exchange, KrakenReject
from sim.fake_kraken.market import DEFAULT_SPECS, PairBook, PairSpec, View, book_message, trade_message
from sim.fake_kraken.protocol import api_sign

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "venues" / "kraken"
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
ENV_KEY = "HFT_FAKE_KRAKEN_KEY"
ENV_SECRET = "HFT_FAKE_KRAKEN_SECRET"
START_MODES = ("subscribe", "now", "manual")
_FIXTURE_BOOKS = {
    "ETH/USD": "ws_v2_book_snapshot_ETH-USD_live.json",
    "MATIC/USD": "ws_v2_book_snapshot_MATIC-USD_docs.json",
}


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Subscriber:
    """One public WebSocket connection and what it subscribed to."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.books: dict[str, View] = {}
        self.trades: set[str] = set()
        self.last_sent = time.monotonic()

    async def send(self, data: bytes) -> None:
        if not self.ws.closed:
            self.last_sent = time.monotonic()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(data.decode())


class FakeKraken:
    def __init__(
        self,
        data: str | Path | None = CAPTURE,
        api_key: str | None = None,
        api_secret: str | None = None,
        speed: float = 1.0,
        start: str = "subscribe",
        host: str = "127.0.0.1",
        port: int = 0,
        balances: dict[str, str] | None = None,
        max_records: int | None = None,
        rest_limit: float = 15.0,
        rest_decay_per_s: float = 0.33,
    ) -> None:
        if start not in START_MODES:
            raise ValueError(f"start must be one of {START_MODES}, got {start!r}")
        self.api_key = api_key or os.environ.get(ENV_KEY) or secrets.token_hex(16)
        self.api_secret = api_secret or os.environ.get(ENV_SECRET) or base64.b64encode(secrets.token_bytes(64)).decode()
        self.host = host
        self.port = port
        self.speed = speed
        self.start_mode = start
        self.specs: dict[str, PairSpec] = dict(DEFAULT_SPECS)
        self.books: dict[str, PairBook] = {name: PairBook(spec) for name, spec in self.specs.items()}
        self._load_fixture_books()
        self.records: list[Any] = []
        self._pos = 0
        if data is not None:
            cap = load_capture(data, max_records)
            snap = cap.snapshots.get("BTCUSDT")
            if snap is None:
                raise ValueError(f"{data}: no BTCUSDT snapshot to re-label as BTC/USD")
            book = self.books["BTC/USD"]
            for p, q in snap.bids:
                book.set("bid", Decimal(p), Decimal(q))
            for p, q in snap.asks:
                book.set("ask", Decimal(p), Decimal(q))
            self.records = [r for r in cap.records if r.symbol == "BTCUSDT" and r.kind in (DEPTH, TRADE)]
        self.subscribers: set[Subscriber] = set()
        self.exchange = Exchange(self, balances, rest_limit, rest_decay_per_s)
        # faults
        self._drop_updates: dict[str | None, int] = {}
        self._bad_checksums: dict[str | None, int] = {}
        self._silent_until = 0.0
        self._fail: list[tuple[int, int, str | None]] = []  # (remaining, status, path)
        self._rate_limit_next = 0
        self._outage_until = 0.0
        self.clock_skew_ms = 0
        #: what SystemStatus answers: online | maintenance | cancel_only | post_only (Kraken's words)
        self.system_status = "online"
        self.ack_delay_ms = 0
        self.lose_acks = 0
        self._started = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._replay: asyncio.Task[None] | None = None
        self._heartbeats: asyncio.Task[None] | None = None
        self._trade_id = 1_000_000
        self.requests: list[str] = []

    # --- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> FakeKraken:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/0/public/{method}", self._public)
        app.router.add_post("/0/public/{method}", self._public)
        app.router.add_post("/0/private/{method}", self._private)
        app.router.add_get("/v2", self._ws_public)
        app.router.add_get("/auth/v2", self.exchange.ws_private)
        app.router.add_post("/_fake/{action}", self._control)
        app.router.add_get("/_fake/{action}", self._control)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        self._heartbeats = loop.create_task(self._heartbeat_loop())
        if self.start_mode != "manual" and self.records:
            self._replay = loop.create_task(self._replay_loop())
            if self.start_mode == "now":
                self._started.set()

    async def stop(self) -> None:
        for t in (self._replay, self._heartbeats):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        for sub in list(self.subscribers):
            with contextlib.suppress(Exception):
                await sub.ws.close()
        await self.exchange.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v2"

    @property
    def ws_auth_url(self) -> str:
        return f"ws://{self.host}:{self.port}/auth/v2"

    def now_ns(self) -> int:
        return time.time_ns() + self.clock_skew_ms * 1_000_000

    def book(self, wsname: str) -> PairBook:
        return self.books[wsname]

    def _load_fixture_books(self) -> None:
        for name, file in _FIXTURE_BOOKS.items():
            path = FIXTURES / file
            if not path.exists():
                continue
            d = json.loads(path.read_text(), parse_float=Decimal)["data"][0]
            book = self.books[name]
            for lv in d["bids"]:
                book.set("bid", Decimal(lv["price"]), Decimal(lv["qty"]))
            for lv in d["asks"]:
                book.set("ask", Decimal(lv["price"]), Decimal(lv["qty"]))

    # --- replay ------------------------------------------------------------------------------------
    async def _replay_loop(self) -> None:
        await self._started.wait()
        t0 = time.monotonic()
        ts0 = self.records[self._pos].ts if self._pos < len(self.records) else 0
        while self._pos < len(self.records):
            rec = self.records[self._pos]
            if self.speed > 0:
                due = t0 + (rec.ts - ts0) / 1e9 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.step()
            if self.speed <= 0:
                await asyncio.sleep(0)

    async def advance(self, n: int) -> int:
        """Apply the next ``n`` capture records now; returns how many were applied."""
        done = 0
        while done < n and self._pos < len(self.records):
            await self.step()
            done += 1
        return done

    async def step(self) -> None:
        rec = self.records[self._pos]
        self._pos += 1
        book = self.books["BTC/USD"]
        if rec.kind == DEPTH:
            for p, q in rec.bids:
                book.set("bid", Decimal(p), Decimal(q))
            for p, q in rec.asks:
                book.set("ask", Decimal(p), Decimal(q))
            self.exchange.on_book("BTC/USD")
            await self.publish_book("BTC/USD")
        else:
            side = "sell" if rec.buyer_maker else "buy"
            self._trade_id += 1
            await self.publish_trades(
                "BTC/USD", [(side, Decimal(rec.price), Decimal(rec.qty), self._trade_id, rfc3339(self.now_ns()))]
            )

    async def set_levels(self, wsname: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        """Change a book by hand (tests) and publish the update."""
        book = self.books[wsname]
        for p, q in bids:
            book.set("bid", Decimal(p), Decimal(q))
        for p, q in asks:
            book.set("ask", Decimal(p), Decimal(q))
        self.exchange.on_book(wsname)
        await self.publish_book(wsname)

    def _take(self, counters: dict[str | None, int], symbol: str) -> bool:
        for key in (symbol, None):
            n = counters.get(key, 0)
            if n > 0:
                counters[key] = n - 1
                return True
        return False

    @property
    def silent(self) -> bool:
        return time.monotonic() < self._silent_until

    async def publish_book(self, wsname: str) -> None:
        book = self.books[wsname]
        ts = rfc3339(self.now_ns())
        drop = self._take(self._drop_updates, wsname) if any(s.books.get(wsname) for s in self.subscribers) else False
        bad = self._take(self._bad_checksums, wsname) if not drop else False
        for sub in list(self.subscribers):
            view = sub.books.get(wsname)
            if view is None:
                continue
            got = view.update(book)
            if got is None or drop or self.silent:
                continue
            bids, asks, cks = got
            await sub.send(book_message("update", book.spec, bids, asks, cks ^ 1 if bad else cks, ts))

    async def publish_trades(self, wsname: str, trades: list[tuple[str, Decimal, Decimal, int, str]]) -> None:
        if self.silent:
            return
        spec = self.specs[wsname]
        frame = trade_message(spec, trades)
        for sub in list(self.subscribers):
            if wsname in sub.trades:
                await sub.send(frame)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            if self.silent:
                continue
            now = time.monotonic()
            for sub in list(self.subscribers):
                if now - sub.last_sent >= 1.0:
                    await sub.send(b'{"channel":"heartbeat"}')
            await self.exchange.heartbeats(now)

    # --- public WebSocket --------------------------------------------------------------------------
    def reply(self, method: str, req_id: Any, result: Any = None, error: str | None = None) -> bytes:
        now = rfc3339(self.now_ns())
        msg: dict[str, Any] = {"method": method}
        if req_id is not None:
            msg["req_id"] = req_id
        if error is None:
            if result is not None:
                msg["result"] = result
            msg["success"] = True
        else:
            msg["error"] = error
            msg["success"] = False
        msg["time_in"] = now
        msg["time_out"] = now
        return json.dumps(msg, separators=(",", ":")).encode()

    async def _ws_public(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        sub = Subscriber(ws)
        self.subscribers.add(sub)
        await sub.send(
            b'{"channel":"status","data":[{"api_version":"v2","connection_id":12393906104898154338,'
            b'"system":"online","version":"2.0.4"}],"type":"update"}'
        )
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                await self._on_public(sub, msg.data)
        finally:
            self.subscribers.discard(sub)
        return ws

    async def _on_public(self, sub: Subscriber, text: str) -> None:
        try:
            req = json.loads(text)
            method = req["method"]
        except (ValueError, KeyError, TypeError):
            await sub.send(b'{"error":"Unsupported event","success":false}')
            return
        req_id = req.get("req_id")
        if method == "ping":
            await sub.send(self.reply("pong", req_id))
            return
        if method not in ("subscribe", "unsubscribe"):
            await sub.send(self.reply(method, req_id, error="Unsupported event"))
            return
        params = req.get("params") or {}
        channel = params.get("channel")
        symbols = params.get("symbol") or []
        if channel not in ("book", "trade", "ticker"):
            await sub.send(self.reply(method, req_id, error=f"Channel {channel} not found"))
            return
        for s in symbols:
            if s not in self.specs:
                await sub.send(self.reply(method, req_id, error=f"Currency pair not supported {s}"))
                continue
            if channel == "book":
                depth = int(params.get("depth", 10))
                if depth not in (10, 25, 100, 500, 1000):
                    await sub.send(self.reply(method, req_id, error="EGeneral:Invalid arguments:depth"))
                    continue
                result = {"channel": "book", "depth": depth, "snapshot": True, "symbol": s}
                if method == "subscribe":
                    view = View(depth)
                    sub.books[s] = view
                    await sub.send(self.reply(method, req_id, result))
                    bids, asks, cks = view.snapshot(self.books[s])
                    await sub.send(book_message("snapshot", self.specs[s], bids, asks, cks, rfc3339(self.now_ns())))
                    if self.start_mode == "subscribe":
                        self._started.set()
                else:
                    sub.books.pop(s, None)
                    await sub.send(self.reply(method, req_id, result))
            elif channel == "trade":
                if method == "subscribe":
                    sub.trades.add(s)
                else:
                    sub.trades.discard(s)
                await sub.send(self.reply(method, req_id, {"channel": "trade", "snapshot": False, "symbol": s}))
            else:
                await sub.send(self.reply(method, req_id, {"channel": "ticker", "snapshot": True, "symbol": s}))

    # --- REST --------------------------------------------------------------------------------------
    def _answer(self, result: Any = None, errors: list[str] | None = None) -> web.Response:
        body = {"error": errors or []}
        if result is not None:
            body["result"] = result
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def _faulted(self, request: web.Request) -> web.Response | None:
        if time.monotonic() < self._outage_until:
            return web.Response(status=503, text="Service Unavailable")
        for i, (n, status, path) in enumerate(self._fail):
            if path is None or request.path.endswith(path):
                self._fail[i] = (n - 1, status, path)
                if n - 1 <= 0:
                    self._fail.pop(i)
                return web.Response(status=status, text=f"fake: HTTP {status}")
        if self._rate_limit_next > 0:
            self._rate_limit_next -= 1
            return self._answer(errors=["EAPI:Rate limit exceeded"])
        return None

    async def _public(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        faulted = await self._faulted(request)
        if faulted is not None:
            return faulted
        method = request.match_info["method"]
        q = dict(request.query)
        if request.method == "POST":
            q.update(dict(parse_qsl(await request.text())))
        if method == "Time":
            ns = self.now_ns()
            return self._answer(
                {"unixtime": ns // 1_000_000_000, "rfc1123": time.strftime("%a, %d %b %y %H:%M:%S +0000")}
            )
        if method == "SystemStatus":
            return self._answer({"status": self.system_status, "timestamp": rfc3339(self.now_ns())[:19] + "Z"})
        if method == "Assets":
            assets: dict[str, dict] = {}
            for spec in self.specs.values():
                for aid, places in ((spec.base_id, spec.qty_decimals), (spec.quote_id, 4)):
                    alt = aid[1:] if len(aid) == 4 and aid[0] in "XZ" else aid
                    assets[aid] = {
                        "aclass": "currency",
                        "altname": alt,
                        "decimals": max(places, 8),
                        "display_decimals": min(places, 5),
                        "status": "enabled",
                    }
            return self._answer(assets)
        if method == "AssetPairs":
            wanted = [p for p in q.get("pair", "").split(",") if p]
            out = {}
            for spec in self.specs.values():
                if not wanted or any(w in (spec.altname, spec.key, spec.wsname) for w in wanted):
                    out[spec.key] = spec.asset_pair()
            if wanted and not out:
                return self._answer(errors=["EQuery:Unknown asset pair"])
            return self._answer(out)
        if method == "Depth":
            spec = self._spec_by_pair(q.get("pair", ""))
            if spec is None:
                return self._answer(errors=["EQuery:Unknown asset pair"])
            count = int(q.get("count", 100) or 100)
            book = self.books[spec.wsname]
            ts = self.now_ns() // 1_000_000_000
            pd, qd = spec.price_decimals, spec.qty_decimals

            def rows(side: str) -> list:
                return [[f"{p:.{pd}f}", f"{v:.{qd}f}", ts] for p, v in book.top(side, count)]

            return self._answer({spec.key: {"bids": rows("bid"), "asks": rows("ask")}})
        if method == "Ticker":
            out = {}
            for spec in self.specs.values():
                bb, ba = self.books[spec.wsname].best()
                out[spec.key] = {"a": [str(ba), "1", "1.0"], "b": [str(bb), "1", "1.0"], "c": [str(bb), "0"]}
            return self._answer(out)
        return self._answer(errors=["EGeneral:Unknown method"])

    def _spec_by_pair(self, pair: str) -> PairSpec | None:
        for spec in self.specs.values():
            if pair in (spec.altname, spec.key, spec.wsname):
                return spec
        return None

    def verify(self, path: str, body: str, key: str | None, signature: str | None) -> str | None:
        """The error a signed request gets, or None."""
        if key != self.api_key:
            return "EAPI:Invalid key"
        fields = dict(parse_qsl(body, keep_blank_values=True))
        nonce = fields.get("nonce", "")
        if not nonce.isdigit():
            return "EAPI:Invalid nonce"
        if signature != api_sign(path, body, nonce, self.api_secret):
            return "EAPI:Invalid signature"
        if not self.exchange.check_nonce(int(nonce)):
            return "EAPI:Invalid nonce"
        return None

    async def _private(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        faulted = await self._faulted(request)
        if faulted is not None:
            return faulted
        body = await request.text()
        err = self.verify(request.path, body, request.headers.get("API-Key"), request.headers.get("API-Sign"))
        if err is not None:
            return self._answer(errors=[err])
        fields = dict(parse_qsl(body, keep_blank_values=True))
        try:
            result = await self.exchange.rest(request.match_info["method"], fields)
        except KrakenReject as exc:
            return self._answer(errors=[exc.text])
        return self._answer(result)

    # --- faults ------------------------------------------------------------------------------------
    def drop_updates(self, n: int = 1, symbol: str | None = None) -> None:
        self._drop_updates[symbol] = self._drop_updates.get(symbol, 0) + n

    def bad_checksum(self, n: int = 1, symbol: str | None = None) -> None:
        self._bad_checksums[symbol] = self._bad_checksums.get(symbol, 0) + n

    def silence(self, seconds: float) -> None:
        self._silent_until = time.monotonic() + seconds

    def disconnect(self) -> None:
        for sub in list(self.subscribers):
            asyncio.get_running_loop().create_task(sub.ws.close())
        self.exchange.disconnect()

    def fail_next_requests(self, n: int, status: int = 503, path: str | None = None) -> None:
        self._fail.append((n, status, path))

    def rate_limit_next(self, n: int = 1) -> None:
        self._rate_limit_next += n

    def outage(self, seconds: float) -> None:
        self._outage_until = time.monotonic() + seconds

    def set_clock_skew(self, ms: int) -> None:
        self.clock_skew_ms = ms

    def set_system_status(self, status: str) -> None:
        """What ``SystemStatus`` says from now on (maintenance: Kraken's scheduled downtime)."""
        self.system_status = status

    def set_ack_delay(self, ms: int) -> None:
        self.ack_delay_ms = ms

    def lose_next_acks(self, n: int) -> None:
        self.lose_acks += n

    async def fill_order(self, cl_ord_id: str, qty: str | None = None) -> dict:
        """Fill one of the account's open orders at its price, as the market would (maker): all
        that is left, or ``qty`` of it (a decimal string); the executions go out as for any fill.
        ``KeyError`` when it is not open."""
        o = next((x for x in self.exchange.orders.values() if x.cl_ord_id == cl_ord_id and x.status == "open"), None)
        if o is None:
            raise KeyError(cl_ord_id)
        size = o.leaves if qty is None else min(Decimal(qty), o.leaves)
        await self.exchange.publish(self.exchange._fill(o, o.price, size, maker=True))
        return self.exchange._rest_order(o)

    async def _control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        q = request.query
        n = int(q.get("n", 1))
        sym = q.get("symbol")
        actions: dict[str, Callable[[], Any]] = {
            "drop_updates": lambda: self.drop_updates(n, sym),
            "bad_checksum": lambda: self.bad_checksum(n, sym),
            "silence": lambda: self.silence(float(q.get("seconds", 5))),
            "disconnect": self.disconnect,
            "fail_requests": lambda: self.fail_next_requests(n, int(q.get("status", 503)), q.get("path")),
            "rate_limit": lambda: self.rate_limit_next(n),
            "outage": lambda: self.outage(float(q.get("seconds", 10))),
            "clock_skew": lambda: self.set_clock_skew(int(q.get("ms", 0))),
            "ack_delay": lambda: self.set_ack_delay(int(q.get("ms", 0))),
            "lose_acks": lambda: self.lose_next_acks(n),
        }
        if action == "status":
            return web.json_response(
                {
                    "records_applied": self._pos,
                    "records": len(self.records),
                    "subscribers": len(self.subscribers),
                    "orders": len(self.exchange.orders),
                }
            )
        if action == "orders":
            return web.json_response([o.public() for o in self.exchange.orders.values()])
        fn = actions.get(action)
        if fn is None:
            return web.json_response({"error": f"unknown action {action!r}", "actions": sorted(actions)}, status=404)
        try:
            fn()
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True, "action": action})
