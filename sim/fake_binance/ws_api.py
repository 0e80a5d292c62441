"""The WebSocket API (``/ws-api/v3``): request/response envelope and the user data stream.

Requests are ``{"id", "method", "params"}``; answers ``{"id", "status", "result" | "error",
"rateLimits"}`` as in ``web-socket-api.md``. Signed methods carry ``apiKey``, ``timestamp`` and
``signature`` (HMAC over the other params sorted by name). ``userDataStream.subscribe.signature``
opens a subscription whose events arrive as ``{"subscriptionId": n, "event": {...}}``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from sim.fake_binance import errors as E
from sim.fake_binance.connections import Connection
from sim.fake_binance.errors import BinanceError
from sim.fake_binance.exchange import cancel_json, new_order_json, query_json
from sim.fake_binance.signing import check_timestamp, verify, ws_payload

if TYPE_CHECKING:
    from sim.fake_binance.server import FakeBinance

log = logging.getLogger(__name__)
_encode = msgspec.json.encode


class _Request(msgspec.Struct):
    method: str
    id: Any = None
    params: dict[str, msgspec.Raw] = {}


_decode_request = msgspec.json.Decoder(_Request)


def param_text(raw: msgspec.Raw) -> str:
    """A JSON param as the text the client signed: strings unquoted, everything else verbatim."""
    b = bytes(raw)
    if b[:1] == b'"':
        return msgspec.json.decode(b)
    return b.decode()


class ApiConnection(Connection):
    kind = "ws_api"

    def __init__(self, *args, return_rate_limits: bool = True, **kw) -> None:
        super().__init__(*args, **kw)
        self.subscriptions: list[int] = []
        self.next_subscription = 0
        self.return_rate_limits = return_rate_limits


# method -> (weight, signed, is an order placement)
METHODS: dict[str, tuple[int, bool, bool]] = {
    "ping": (1, False, False),
    "time": (1, False, False),
    "exchangeInfo": (20, False, False),
    "depth": (5, False, False),
    "order.place": (1, True, True),
    "order.test": (1, True, False),
    "order.status": (4, True, False),
    "order.cancel": (1, True, False),
    "openOrders.status": (6, True, False),
    "openOrders.cancelAll": (1, True, False),
    "account.status": (20, True, False),
    "myTrades": (20, True, False),
    "userDataStream.subscribe.signature": (2, True, False),
    "userDataStream.unsubscribe": (2, False, False),
    "session.subscriptions": (2, False, False),
}
ORDER_METHODS = {"order.place", "order.cancel", "openOrders.cancelAll"}


class WsApi:
    def __init__(self, fake: FakeBinance) -> None:
        self.fake = fake
        self.connections: set[ApiConnection] = set()

    def user_event(self, event: dict) -> None:
        for conn in self.connections:
            for sid in conn.subscriptions:
                conn.send(_encode({"subscriptionId": sid, "event": event}))

    def _reply(
        self,
        conn: ApiConnection,
        rid: Any,
        status: int,
        result: Any = None,
        error: BinanceError | None = None,
        orders: bool = False,
        show_limits: bool | None = None,
    ) -> bytes:
        msg: dict[str, Any] = {"id": rid, "status": status}
        if error is not None:
            err = error.body()
            if error.data is not None:
                err["data"] = error.data
            msg["error"] = err
        else:
            msg["result"] = result
        if conn.return_rate_limits if show_limits is None else show_limits:
            msg["rateLimits"] = self.fake.limiter.rate_limits(orders=orders)
        return _encode(msg)

    async def handle_text(self, conn: ApiConnection, text: str) -> None:
        try:
            req = _decode_request.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError):
            conn.send(
                self._reply(conn, None, 400, error=BinanceError(-1135, "Invalid JSON Request"), show_limits=False)
            )
            return
        method = req.method[3:] if req.method.startswith("v3/") else req.method
        try:
            params = {k: param_text(v) for k, v in req.params.items()}
        except (msgspec.DecodeError, UnicodeDecodeError):
            conn.send(self._reply(conn, req.id, 400, error=BinanceError(-1135, "Invalid JSON Request")))
            return
        # Binance signs every parameter but ``signature``, returnRateLimits included, so it stays
        # in ``params`` until the signature is checked
        show = params.get("returnRateLimits")
        show_limits = None if show is None else show == "true"
        spec = METHODS.get(method)
        if spec is None:
            conn.send(
                self._reply(
                    conn,
                    req.id,
                    400,
                    error=BinanceError(-1020, "This operation is not supported."),
                    show_limits=show_limits,
                )
            )
            return
        weight, signed, placing = spec
        fake = self.fake
        try:
            if method == "depth":
                weight = fake.depth_weight(params)
            elif method == "openOrders.status" and not params.get("symbol"):
                weight = 80
            fake.limiter.charge(weight)
            if signed:
                self._authenticate(params)
                # the signature covers apiKey/timestamp/signature; the handlers never see them
                for key in ("apiKey", "signature", "timestamp", "recvWindow"):
                    params.pop(key, None)
            params.pop("returnRateLimits", None)
            result = self._dispatch(conn, method, params)
        except BinanceError as err:
            conn.send(self._reply(conn, req.id, err.status, error=err, orders=placing, show_limits=show_limits))
            if err.status == 418:
                await conn.close(1008, "banned")
            return
        frame = self._reply(conn, req.id, 200, result=result, orders=placing, show_limits=show_limits)
        if method in ORDER_METHODS:
            fake.deliver_ack(lambda: conn.send(frame), self._lost_ack_frame(conn, req.id))
        else:
            conn.send(frame)

    def _lost_ack_frame(self, conn: ApiConnection, rid: Any):
        def send_timeout() -> None:
            conn.send(self._reply(conn, rid, 503, error=BinanceError(-1007, E.MSG_TIMEOUT, 503)))

        return send_timeout

    def _authenticate(self, params: dict[str, str]) -> None:
        fake = self.fake
        key = params.get("apiKey")
        if not key:
            raise E.mandatory("apiKey")
        if key != fake.api_key:
            raise BinanceError(-2015, E.MSG_KEY_REJECTED, 401)
        signature = params.get("signature")
        if not signature:
            raise E.mandatory("signature")
        check_timestamp(params, fake.validation_ms())
        if not verify(fake.api_secret, ws_payload(params), signature):
            raise BinanceError(-1022, E.MSG_BAD_SIGNATURE)

    def _dispatch(self, conn: ApiConnection, method: str, params: dict[str, str]) -> Any:
        fake = self.fake
        ex = fake.exchange
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": fake.now_ms()}
        if method == "exchangeInfo":
            return fake.exchange_info_json(params)
        if method == "depth":
            return fake.depth_json(params)
        if method == "order.place":
            fake.limiter.check_orders()
            order, resp_type = ex.place(params)
            fake.limiter.count_order()
            return new_order_json(order, resp_type)
        if method == "order.test":
            ex.validate(params)
            return {}
        if method == "order.status":
            return query_json(ex.query(params))
        if method == "order.cancel":
            order, cid = ex.cancel(params)
            return cancel_json(order, cid)
        if method == "openOrders.status":
            return [query_json(o) for o in ex.open_orders(params)]
        if method == "openOrders.cancelAll":
            return [cancel_json(o, cid) for o, cid in ex.cancel_all(params)]
        if method == "account.status":
            return ex.account_json(params.get("omitZeroBalances") == "true")
        if method == "myTrades":
            return ex.my_trades(params)
        if method == "userDataStream.subscribe.signature":
            sid = conn.next_subscription
            conn.next_subscription += 1
            conn.subscriptions.append(sid)
            return {"subscriptionId": sid}
        if method == "userDataStream.unsubscribe":
            raw = params.get("subscriptionId")
            if raw is None:
                ended = list(conn.subscriptions)
            else:
                if not raw.isdigit() or int(raw) not in conn.subscriptions:
                    raise BinanceError(-1130, "Data sent for parameter 'subscriptionId' is not valid.")
                ended = [int(raw)]
            for sid in ended:
                conn.subscriptions.remove(sid)
                conn.send(_encode({"subscriptionId": sid, "event": {"e": "eventStreamTerminated", "E": fake.now_ms()}}))
            return {}
        if method == "session.subscriptions":
            return [{"subscriptionId": sid} for sid in conn.subscriptions]
        raise BinanceError(-1020, "This operation is not supported.")
