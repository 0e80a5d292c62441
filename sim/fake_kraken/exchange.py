"""The fake Kraken's account: balances, orders matched against the fake's book, the private
WebSocket v2 (``executions``, ``add_order``, ``cancel_order``, ``amend_order``) and the private REST
calls (``Balance``, ``BalanceEx``, ``OpenOrders``, ``QueryOrders``, ``TradesHistory``,
``AddOrder``, ``CancelOrder``, ``GetWebSocketsToken``).

Matching: a marketable order takes the book's levels up to its limit, at their prices (taker); the
rest rests (GTC) or is cancelled (IOC). A resting order fills whole, at its own price (maker), once
the book trades through it (the opposite best crosses its price). The book itself is not consumed:
the market is the replay's. Rules checked like Kraken's: the pair's ``ordermin`` and ``costmin``
(``EOrder:Order minimum not met``), decimals (``EGeneral:Invalid arguments:...``), balances
(``EOrder:Insufficient funds``), post-only (``EOrder:Post only order``), the per-pair trading
counter (threshold 60, -1/s: ``EOrder:Rate limit exceeded``), the REST counter (15, -0.33/s:
``EAPI:Rate limit exceeded``), client ids (a UUID or 18 characters).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from sim.fake_kraken.protocol import Counter

if TYPE_CHECKING:
    from sim.fake_kraken.server import FakeKraken

DEFAULT_BALANCES = {"XXBT": "10", "ZUSD": "1000000", "XETH": "100", "MATIC": "100000"}
MAKER_FEE = Decimal("0.0025")
TAKER_FEE = Decimal("0.004")


class KrakenReject(Exception):
    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)


def _txid() -> str:
    raw = secrets.token_hex(8).upper()
    return f"O{raw[:5]}-{raw[5:10]}-{raw[10:16]}"


def _tradeid() -> str:
    raw = secrets.token_hex(8).upper()
    return f"T{raw[:5]}-{raw[5:10]}-{raw[10:16]}"


def cl_ord_id_ok(cid: str) -> bool:
    try:
        if str(uuid.UUID(cid)) == cid.lower():
            return True
    except ValueError:
        pass
    return 0 < len(cid) <= 18 and cid.isprintable()


@dataclass
class FakeOrder:
    txid: str
    cl_ord_id: str
    wsname: str
    side: str
    order_type: str
    price: Decimal
    qty: Decimal
    tif: str = "gtc"
    post_only: bool = False
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    status: str = "open"  # pending | open | closed | canceled | expired
    opentm: float = field(default_factory=time.time)
    closetm: float = 0.0
    trades: list[str] = field(default_factory=list)
    created_mono: float = field(default_factory=time.monotonic)

    @property
    def leaves(self) -> Decimal:
        return self.qty - self.filled

    def public(self) -> dict:
        return {
            "txid": self.txid,
            "cl_ord_id": self.cl_ord_id,
            "symbol": self.wsname,
            "side": self.side,
            "type": self.order_type,
            "price": str(self.price),
            "qty": str(self.qty),
            "filled": str(self.filled),
            "status": self.status,
        }


class PrivateConnection:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.executions = False
        self.sequence = 0
        self.last_sent = time.monotonic()

    async def send(self, data: dict | bytes) -> None:
        if self.ws.closed:
            return
        text = data.decode() if isinstance(data, bytes) else json.dumps(data, separators=(",", ":"))
        self.last_sent = time.monotonic()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(text)


class Exchange:
    def __init__(self, fake: FakeKraken, balances: dict[str, str] | None, rest_limit: float, decay: float) -> None:
        self.fake = fake
        self.balances = {k: Decimal(v) for k, v in (balances or DEFAULT_BALANCES).items()}
        self.orders: dict[str, FakeOrder] = {}
        self.trades: dict[str, dict] = {}
        self.tokens: set[str] = set()
        self.conns: set[PrivateConnection] = set()
        self.rest_counter = Counter(rest_limit, decay)
        self.trading: dict[str, Counter] = {}
        self.last_nonce = 0

    # --- plumbing ----------------------------------------------------------------------------------
    async def close(self) -> None:
        for c in list(self.conns):
            with contextlib.suppress(Exception):
                await c.ws.close()

    def disconnect(self) -> None:
        for c in list(self.conns):
            asyncio.get_running_loop().create_task(c.ws.close())

    async def heartbeats(self, now: float) -> None:
        for c in list(self.conns):
            if c.executions and now - c.last_sent >= 1.0:
                await c.send(b'{"channel":"heartbeat"}')

    def _spec(self, wsname: str) -> Any:
        spec = self.fake.specs.get(wsname)
        if spec is None:
            raise KrakenReject("EQuery:Unknown asset pair")
        return spec

    def _counter(self, wsname: str) -> Counter:
        c = self.trading.get(wsname)
        if c is None:
            c = self.trading[wsname] = Counter(60.0, 1.0)
        return c

    def held(self, asset: str) -> Decimal:
        total = Decimal(0)
        for o in self.orders.values():
            if o.status != "open":
                continue
            spec = self.fake.specs[o.wsname]
            if o.side == "buy" and spec.quote_id == asset:
                total += o.leaves * o.price
            elif o.side == "sell" and spec.base_id == asset:
                total += o.leaves
        return total

    def free(self, asset: str) -> Decimal:
        return self.balances.get(asset, Decimal(0)) - self.held(asset)

    # --- orders ------------------------------------------------------------------------------------
    def _decimal(self, raw: Any, name: str, places: int) -> Decimal:
        try:
            d = Decimal(str(raw))
        except (InvalidOperation, ValueError):
            raise KrakenReject(f"EGeneral:Invalid arguments:{name}") from None
        if d <= 0 or (-d.as_tuple().exponent > places and d != d.quantize(Decimal(1).scaleb(-places))):
            raise KrakenReject(f"EGeneral:Invalid arguments:{name}")
        return d

    def add_order(
        self,
        wsname: str,
        side: str,
        order_type: str,
        qty_raw: Any,
        price_raw: Any = None,
        tif: str = "gtc",
        post_only: bool = False,
        cl_ord_id: str = "",
    ) -> tuple[FakeOrder, list[dict]]:
        """Place an order; returns it and the execution events it caused (oldest first)."""
        spec = self._spec(wsname)
        if side not in ("buy", "sell") or order_type not in ("limit", "market"):
            raise KrakenReject("EGeneral:Invalid arguments:order_type")
        if cl_ord_id:
            if not cl_ord_id_ok(cl_ord_id):
                raise KrakenReject("EGeneral:Invalid arguments:cl_ord_id")
            if any(o.cl_ord_id == cl_ord_id and o.status == "open" for o in self.orders.values()):
                raise KrakenReject("EOrder:Duplicate order")
        qty = self._decimal(qty_raw, "volume", spec.qty_decimals)
        if qty < Decimal(spec.ordermin):
            raise KrakenReject("EOrder:Order minimum not met")
        book = self.fake.books[wsname]
        bb, ba = book.best()
        if order_type == "limit":
            price = self._decimal(price_raw, "price", spec.price_decimals)
            tick = Decimal(spec.tick_size or Decimal(1).scaleb(-spec.price_decimals))
            if price % tick:
                raise KrakenReject("EGeneral:Invalid arguments:price")
        else:
            ref = ba if side == "buy" else bb
            if ref is None:
                raise KrakenReject("EOrder:Insufficient liquidity")
            price = ref * (Decimal("1.05") if side == "buy" else Decimal("0.95"))
        if qty * price < Decimal(spec.costmin):
            raise KrakenReject("EOrder:Order minimum not met")
        if side == "buy" and self.free(spec.quote_id) < qty * price * (1 + TAKER_FEE):
            raise KrakenReject("EOrder:Insufficient funds")
        if side == "sell" and self.free(spec.base_id) < qty:
            raise KrakenReject("EOrder:Insufficient funds")
        crosses = (side == "buy" and ba is not None and price >= ba) or (
            side == "sell" and bb is not None and price <= bb
        )
        if post_only and crosses:
            raise KrakenReject("EOrder:Post only order")
        if not self._counter(wsname).take(1):
            raise KrakenReject("EOrder:Rate limit exceeded")
        o = FakeOrder(_txid(), cl_ord_id, wsname, side, order_type, price, qty, tif, post_only)
        self.orders[o.txid] = o
        events = [self._event(o, "pending_new"), self._event(o, "new")]
        if crosses:
            levels = book.top("ask" if side == "buy" else "bid", 1000)
            for lp, lq in levels:
                if o.leaves <= 0 or (side == "buy" and lp > price) or (side == "sell" and lp < price):
                    break
                events += self._fill(o, lp, min(lq, o.leaves), maker=False)
        if o.status == "open" and (order_type == "market" or tif == "ioc"):
            o.status = "canceled"
            o.closetm = time.time()
            events.append(self._event(o, "canceled", reason="Insufficient liquidity" if order_type == "market" else ""))
        return o, events

    def _fill(self, o: FakeOrder, price: Decimal, qty: Decimal, maker: bool) -> list[dict]:
        spec = self.fake.specs[o.wsname]
        cost = price * qty
        fee = (cost * (MAKER_FEE if maker else TAKER_FEE)).quantize(Decimal("0.00000001"))
        if o.side == "buy":
            self.balances[spec.base_id] = self.balances.get(spec.base_id, Decimal(0)) + qty
            self.balances[spec.quote_id] = self.balances.get(spec.quote_id, Decimal(0)) - cost - fee
        else:
            self.balances[spec.base_id] = self.balances.get(spec.base_id, Decimal(0)) - qty
            self.balances[spec.quote_id] = self.balances.get(spec.quote_id, Decimal(0)) + cost - fee
        o.filled += qty
        o.cost += cost
        o.fee += fee
        tid = _tradeid()
        o.trades.append(tid)
        now = time.time()
        self.trades[tid] = {
            "ordertxid": o.txid,
            "postxid": _tradeid(),
            "pair": spec.altname,
            "time": now,
            "type": o.side,
            "ordertype": o.order_type,
            "price": str(price),
            "cost": str(cost),
            "fee": str(fee),
            "vol": str(qty),
            "margin": "0",
            "misc": "",
            "maker": maker,
            "cl_ord_id": o.cl_ord_id or None,
        }
        ev = self._event(o, "trade")
        ev.update(
            {
                "exec_id": tid,
                "trade_id": len(self.trades),
                "last_qty": qty,
                "last_price": price,
                "cost": cost,
                "liquidity_ind": "m" if maker else "t",
                "fees": [{"asset": spec.quote_id.removeprefix("Z"), "qty": fee}],
                "order_status": "filled" if o.leaves <= 0 else "partially_filled",
            }
        )
        out = [ev]
        if o.leaves <= 0:
            o.status = "closed"
            o.closetm = now
            out.append(self._event(o, "filled"))
        return out

    def cancel(self, txid: str | None = None, cl_ord_id: str | None = None) -> tuple[FakeOrder, list[dict]]:
        o = self._find(txid, cl_ord_id)
        if o is None or o.status != "open":
            raise KrakenReject("EOrder:Unknown order")
        age = time.monotonic() - o.created_mono
        cost = next((c for limit, c in ((5, 8), (10, 6), (15, 5), (45, 4), (90, 2), (300, 1)) if age < limit), 0)
        self._counter(o.wsname).add(cost)
        o.status = "canceled"
        o.closetm = time.time()
        return o, [self._event(o, "canceled", reason="User requested")]

    def amend(
        self, txid: str | None, cl_ord_id: str | None, qty_raw: Any, price_raw: Any
    ) -> tuple[FakeOrder, list[dict]]:
        o = self._find(txid, cl_ord_id)
        if o is None or o.status != "open":
            raise KrakenReject("EOrder:Unknown order")
        spec = self.fake.specs[o.wsname]
        qty = self._decimal(qty_raw, "order_qty", spec.qty_decimals) if qty_raw is not None else o.qty
        price = self._decimal(price_raw, "limit_price", spec.price_decimals) if price_raw is not None else o.price
        if qty < o.filled or qty < Decimal(spec.ordermin):
            raise KrakenReject("EGeneral:Invalid arguments:order_qty")
        bb, ba = self.fake.books[o.wsname].best()
        if o.post_only and (
            (o.side == "buy" and ba is not None and price >= ba)
            or (o.side == "sell" and bb is not None and price <= bb)
        ):
            raise KrakenReject("EOrder:Post only order")
        self._counter(o.wsname).add(1)
        o.qty, o.price = qty, price
        return o, [self._event(o, "amended")]

    def _find(self, txid: str | None, cl_ord_id: str | None) -> FakeOrder | None:
        if txid:
            return self.orders.get(txid)
        for o in self.orders.values():
            if cl_ord_id and o.cl_ord_id == cl_ord_id and o.status == "open":
                return o
        return None

    def on_book(self, wsname: str) -> None:
        """The book moved: resting orders it trades through fill (at their price, as makers)."""
        bb, ba = self.fake.books[wsname].best()
        events: list[dict] = []
        for o in list(self.orders.values()):
            if o.wsname != wsname or o.status != "open":
                continue
            if (o.side == "buy" and ba is not None and ba < o.price) or (
                o.side == "sell" and bb is not None and bb > o.price
            ):
                events += self._fill(o, o.price, o.leaves, maker=True)
        if events:
            asyncio.get_running_loop().create_task(self.publish(events))

    def _event(self, o: FakeOrder, exec_type: str, reason: str = "") -> dict:
        status = {"pending_new": "pending_new", "new": "new", "canceled": "canceled", "filled": "filled"}.get(
            exec_type, "partially_filled" if o.filled else "new"
        )
        ev: dict[str, Any] = {
            "order_id": o.txid,
            "exec_type": exec_type,
            "order_status": status,
            "timestamp": _rfc3339(self.fake.now_ns()),
            "symbol": o.wsname,
            "side": o.side,
            "order_type": o.order_type,
            "order_qty": o.qty,
            "limit_price": o.price,
            "time_in_force": o.tif.upper(),
            "post_only": o.post_only,
            "cum_qty": o.filled,
            "cum_cost": o.cost,
            "order_userref": 0,
        }
        if o.cl_ord_id:
            ev["cl_ord_id"] = o.cl_ord_id
        if reason:
            ev["reason"] = reason
        return ev

    async def publish(self, events: list[dict]) -> None:
        if not events:
            return
        for c in list(self.conns):
            if c.executions:
                c.sequence += 1
                await c.send(
                    _dumps({"channel": "executions", "type": "update", "data": events, "sequence": c.sequence})
                )

    # --- private WebSocket -------------------------------------------------------------------------
    async def ws_private(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = PrivateConnection(ws)
        self.conns.add(conn)
        await conn.send(
            b'{"channel":"status","data":[{"api_version":"v2","connection_id":1,"system":"online",'
            b'"version":"2.0.4"}],"type":"update"}'
        )
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_private(conn, msg.data)
        finally:
            self.conns.discard(conn)
        return ws

    async def _answer(self, conn: PrivateConnection, reply: bytes) -> None:
        fake = self.fake
        if fake.lose_acks > 0:
            fake.lose_acks -= 1
            return
        if fake.ack_delay_ms > 0:
            await asyncio.sleep(fake.ack_delay_ms / 1000)
        await conn.send(reply)

    async def _on_private(self, conn: PrivateConnection, text: str) -> None:
        fake = self.fake
        try:
            req = json.loads(text, parse_float=Decimal)
            method = req["method"]
            params = req.get("params") or {}
        except (ValueError, KeyError, TypeError):
            await conn.send(b'{"error":"Unsupported event","success":false}')
            return
        req_id = req.get("req_id")
        if method == "ping":
            await conn.send(fake.reply("pong", req_id))
            return
        if params.get("token") not in self.tokens:
            await conn.send(fake.reply(method, req_id, error="Token(s) not found"))
            return
        if method == "subscribe" and params.get("channel") == "executions":
            conn.executions = True
            await conn.send(fake.reply(method, req_id, {"channel": "executions", "maxratecount": 60, "snapshot": True}))
            snap = [self._event(o, "new") for o in self.orders.values() if o.status == "open"]
            conn.sequence += 1
            await conn.send(
                _dumps({"channel": "executions", "type": "snapshot", "data": snap, "sequence": conn.sequence})
            )
            return
        try:
            if method == "add_order":
                o, events = self.add_order(
                    str(params.get("symbol", "")),
                    str(params.get("side", "")),
                    str(params.get("order_type", "")),
                    params.get("order_qty"),
                    params.get("limit_price"),
                    str(params.get("time_in_force", "gtc")).lower(),
                    bool(params.get("post_only", False)),
                    str(params.get("cl_ord_id", "")),
                )
                result: dict = {"order_id": o.txid}
                if o.cl_ord_id:
                    result["cl_ord_id"] = o.cl_ord_id
            elif method == "cancel_order":
                events = []
                ids = [(t, None) for t in params.get("order_id") or []] + [
                    (None, c) for c in params.get("cl_ord_id") or []
                ]
                if not ids:
                    raise KrakenReject("EGeneral:Invalid arguments:order_id")
                for txid, cid in ids:
                    o, evs = self.cancel(txid, cid)
                    events += evs
                result = {"order_id": o.txid}
                if o.cl_ord_id:
                    result["cl_ord_id"] = o.cl_ord_id
            elif method == "amend_order":
                o, events = self.amend(
                    params.get("order_id"), params.get("cl_ord_id"), params.get("order_qty"), params.get("limit_price")
                )
                result = {"amend_id": secrets.token_hex(6), "order_id": o.txid}
                if o.cl_ord_id:
                    result["cl_ord_id"] = o.cl_ord_id
            else:
                await conn.send(fake.reply(method, req_id, error="Unsupported event"))
                return
        except KrakenReject as exc:
            await self._answer(conn, fake.reply(method, req_id, error=exc.text))
            return
        await self._answer(conn, fake.reply(method, req_id, result))
        await self.publish(events)

    # --- private REST ------------------------------------------------------------------------------
    def check_nonce(self, nonce: int) -> bool:
        if nonce <= self.last_nonce:
            return False
        self.last_nonce = nonce
        return True

    async def rest(self, method: str, f: dict[str, str]) -> Any:
        heavy = method in ("TradesHistory", "Ledgers", "QueryTrades", "QueryLedgers")
        if method not in ("AddOrder", "CancelOrder", "AmendOrder") and not self.rest_counter.take(2 if heavy else 1):
            raise KrakenReject("EAPI:Rate limit exceeded")
        if method == "GetWebSocketsToken":
            token = secrets.token_urlsafe(24)
            self.tokens.add(token)
            return {"token": token, "expires": 900}
        if method == "Balance":
            return {k: f"{v:.8f}" for k, v in self.balances.items()}
        if method == "BalanceEx":
            return {k: {"balance": f"{v:.8f}", "hold_trade": f"{self.held(k):.8f}"} for k, v in self.balances.items()}
        if method == "OpenOrders":
            return {"open": {o.txid: self._rest_order(o) for o in self.orders.values() if o.status == "open"}}
        if method == "ClosedOrders":  # the most recent first; ``cl_ord_id`` narrows them to one client id
            cid = f.get("cl_ord_id") or ""
            closed = [o for o in self.orders.values() if o.status != "open" and (not cid or o.cl_ord_id == cid)]
            closed.sort(key=lambda o: o.closetm or o.opentm, reverse=True)
            return {"closed": {o.txid: self._rest_order(o) for o in closed[:50]}, "count": len(closed)}
        if method == "QueryOrders":
            out = {}
            for txid in f.get("txid", "").split(","):
                o = self.orders.get(txid)
                if o is not None:
                    out[txid] = self._rest_order(o)
            if not out:
                raise KrakenReject("EOrder:Unknown order")
            return out
        if method == "TradesHistory":
            start = float(f.get("start", 0) or 0)
            return {"trades": {k: t for k, t in self.trades.items() if t["time"] >= start}, "count": len(self.trades)}
        if method == "AddOrder":
            spec = next((s for s in self.fake.specs.values() if f.get("pair") in (s.altname, s.key)), None)
            if spec is None:
                raise KrakenReject("EQuery:Unknown asset pair")
            oflags = f.get("oflags", "")
            o, events = self.add_order(
                spec.wsname,
                f.get("type", ""),
                f.get("ordertype", ""),
                f.get("volume"),
                f.get("price"),
                f.get("timeinforce", "GTC").lower(),
                "post" in oflags,
                f.get("cl_ord_id", ""),
            )
            await self.publish(events)
            price = f" @ limit {o.price}" if o.order_type == "limit" else " @ market"
            return {"descr": {"order": f"{o.side} {o.qty:.8f} {spec.altname}{price}"}, "txid": [o.txid]}
        if method == "CancelOrder":
            ident = f.get("txid") or ""
            o, events = self.cancel(ident if not ident or ident.startswith("O") else None, f.get("cl_ord_id") or None)
            await self.publish(events)
            return {"count": 1}
        raise KrakenReject("EGeneral:Unknown method")

    def _rest_order(self, o: FakeOrder) -> dict:
        spec = self.fake.specs[o.wsname]
        avg = o.cost / o.filled if o.filled else Decimal(0)
        return {
            "refid": None,
            "userref": 0,
            "cl_ord_id": o.cl_ord_id or None,
            "status": o.status,
            "opentm": o.opentm,
            "starttm": 0,
            "expiretm": 0,
            "descr": {
                "pair": spec.altname,
                "type": o.side,
                "ordertype": o.order_type,
                "price": f"{o.price:.{spec.price_decimals}f}",
                "price2": "0",
                "leverage": "none",
                "order": f"{o.side} {o.qty:.8f} {spec.altname} @ {o.order_type} {o.price}",
                "close": "",
            },
            "vol": f"{o.qty:.8f}",
            "vol_exec": f"{o.filled:.8f}",
            "cost": f"{o.cost:.8f}",
            "fee": f"{o.fee:.8f}",
            "price": f"{avg:.{spec.price_decimals}f}",
            "stopprice": "0",
            "limitprice": "0",
            "misc": "",
            "oflags": "fciq,post" if o.post_only else "fciq",
            "trades": list(o.trades),
            "closetm": o.closetm or None,
        }


def _rfc3339(ns: int) -> str:
    from sim.fake_kraken.server import rfc3339

    return rfc3339(ns)


def _dumps(obj: Any) -> bytes:
    """JSON with ``Decimal``s written as numbers, digits as they are (Kraken v2 sends numbers)."""

    def default(v: Any) -> Any:
        if isinstance(v, Decimal):
            return f"\x00{v}\x00"  # marked, then unquoted below
        raise TypeError(type(v).__name__)

    text = json.dumps(obj, separators=(",", ":"), default=default)
    return text.replace('"\\u0000', "").replace('\\u0000"', "").encode()
