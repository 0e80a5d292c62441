"""Binance wire messages as msgspec Structs, and the decoders that turn frames into engine events.

Market data arrives as combined-stream frames ``{"stream": "<name>", "data": <payload>}``; the
envelope is decoded first with ``data`` left raw, then the payload with the decoder its stream
name selects. Diff-depth payloads (the hot path) are read by one compiled scan straight into int64
``(price, size)`` arrays (``numbers.depth_from_json``); a payload not in Binance's plain form goes
through msgspec and the exact string parser instead. Prices and quantities become fixed-point
integers (scale 8) before anything touches a book: a message is converted whole, then applied
whole, so a bad level can never leave a book half-updated.

A frame that does not decode (bad JSON, wrong types, missing fields, bad numbers) is counted and
logged by ``MarketFrameDecoder`` / ``UserFrameDecoder`` and dropped; it never raises into a feed.
Market data is bounded here: every id (``U``, ``u``, ``lastUpdateId``, trade and bookTicker ids)
and every fixed-point price and quantity must lie in ``[0, 2**62]`` (``numbers.MAX_WIRE``), venue
times in ms at most ``MAX_EVENT_MS``, and a diff must have ``U <= u``; anything else is a
malformed frame. (A zero price is well-formed: the book's sync refuses it as ``bad_level``, the
feed a zero-price trade as ``bad_trade``.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
from msgspec import Raw, Struct, field

from engine.events import Trade
from engine.logs import get_logger
from venues.binance.numbers import (
    MAX_EVENT_MS,
    MAX_WIRE,
    SCALE,
    depth_from_json,
    levels_array,
    levels_from_json,
    parse_fixed,
    parse_wire,
    wire_int,
)
from venues.binance.symbols import SymbolMap

VENUE = "binance"
MS = 1_000_000  # ns per ms

# --------------------------------------------------------------------------------------------
# Wire structs: market streams


class Envelope(Struct, gc=False):
    """A combined-stream frame, or a control reply / bare event on the same connection."""

    stream: str = ""
    data: Raw = Raw(b"")
    e: str = ""  # bare events (serverShutdown)
    event_time: int = field(name="E", default=0)
    id: int | str | None = None  # SUBSCRIBE replies
    result: Raw = Raw(b"")  # empty when absent
    code: int | None = None  # error replies
    msg: str = ""


class DepthUpdateMsg(Struct, gc=False):
    e: str
    event_time: int = field(name="E")
    symbol: str = field(name="s")
    first_id: int = field(name="U")
    last_id: int = field(name="u")
    bids: Raw = field(name="b")  # [[price, qty], ...] as strings; converted by ``levels_fixed``
    asks: Raw = field(name="a")


class TradeMsg(Struct, gc=False):
    e: str
    event_time: int = field(name="E")
    symbol: str = field(name="s")
    trade_id: int = field(name="t")
    price: str = field(name="p")
    qty: str = field(name="q")
    trade_time: int = field(name="T")
    buyer_is_maker: bool = field(name="m")


class BookTickerMsg(Struct, gc=False):
    update_id: int = field(name="u")
    symbol: str = field(name="s")
    bid: str = field(name="b")
    bid_qty: str = field(name="B")
    ask: str = field(name="a")
    ask_qty: str = field(name="A")


# --------------------------------------------------------------------------------------------
# Wire structs: REST


class DepthSnapshotMsg(Struct, gc=False):
    last_update_id: int = field(name="lastUpdateId")
    bids: Raw
    asks: Raw


class ServerTimeMsg(Struct):
    server_time: int = field(name="serverTime")


class ApiErrorMsg(Struct):
    code: int
    msg: str = ""


class RateLimitRule(Struct):
    rate_limit_type: str = field(name="rateLimitType")
    interval: str
    interval_num: int = field(name="intervalNum")
    limit: int
    count: int | None = None  # WS API responses carry the current count


class SymbolInfo(Struct):
    symbol: str
    status: str = ""
    base_asset: str = field(name="baseAsset", default="")
    quote_asset: str = field(name="quoteAsset", default="")
    base_precision: int = field(name="baseAssetPrecision", default=8)
    quote_precision: int = field(name="quoteAssetPrecision", default=8)
    order_types: list[str] = field(name="orderTypes", default_factory=list)
    filters: list[dict[str, Any]] = field(default_factory=list)


class ExchangeInfoMsg(Struct):
    server_time: int = field(name="serverTime", default=0)
    rate_limits: list[RateLimitRule] = field(name="rateLimits", default_factory=list)
    symbols: list[SymbolInfo] = field(default_factory=list)


class OrderFillMsg(Struct):
    price: str
    qty: str
    commission: str = "0"
    commission_asset: str = field(name="commissionAsset", default="")
    trade_id: int = field(name="tradeId", default=-1)


class OrderMsg(Struct, kw_only=True):
    """New / cancel / query / open-orders answers (ACK, RESULT and FULL shapes)."""

    symbol: str
    order_id: int = field(name="orderId")
    client_order_id: str = field(name="clientOrderId")
    orig_client_order_id: str = field(name="origClientOrderId", default="")
    transact_time: int = field(name="transactTime", default=0)
    time: int = 0
    update_time: int = field(name="updateTime", default=0)
    price: str = "0"
    orig_qty: str = field(name="origQty", default="0")
    executed_qty: str = field(name="executedQty", default="0")
    cum_quote: str = field(name="cummulativeQuoteQty", default="0")
    status: str = ""
    time_in_force: str = field(name="timeInForce", default="")
    type: str = ""
    side: str = ""
    fills: list[OrderFillMsg] = field(default_factory=list)


class MyTradeMsg(Struct):
    """One of our trades (``GET /api/v3/myTrades``); Binance does not name the client order id."""

    symbol: str
    id: int
    order_id: int = field(name="orderId")
    price: str
    qty: str
    commission: str = "0"
    commission_asset: str = field(name="commissionAsset", default="")
    time: int = 0
    is_buyer: bool = field(name="isBuyer", default=False)
    is_maker: bool = field(name="isMaker", default=False)


class BalanceMsg(Struct):
    asset: str
    free: str
    locked: str


class AccountMsg(Struct):
    balances: list[BalanceMsg] = field(default_factory=list)
    can_trade: bool = field(name="canTrade", default=True)
    update_time: int = field(name="updateTime", default=0)


# --------------------------------------------------------------------------------------------
# Wire structs: WebSocket API and user data


class WsApiError(Struct):
    code: int
    msg: str = ""
    data: dict[str, Any] | None = None


class WsApiMessage(Struct, gc=False):
    """Anything the WS API sends: a response (``id``/``status``) or a user-data event."""

    id: int | str | None = None
    status: int = 0
    result: Raw = Raw(b"")  # empty when absent
    error: WsApiError | None = None
    rate_limits: list[RateLimitRule] | None = field(name="rateLimits", default=None)
    subscription_id: int | None = field(name="subscriptionId", default=None)
    event: Raw = Raw(b"")  # empty unless this is a user-data event


class _EventTag(Struct):
    e: str = ""


class ExecutionReportMsg(Struct, gc=False, kw_only=True):
    event_time: int = field(name="E")
    symbol: str = field(name="s")
    client_order_id: str = field(name="c")
    side: str = field(name="S")
    order_type: str = field(name="o")
    time_in_force: str = field(name="f")
    qty: str = field(name="q")
    price: str = field(name="p")
    orig_client_order_id: str = field(name="C", default="")
    exec_type: str = field(name="x")
    status: str = field(name="X")
    reject_reason: str = field(name="r", default="NONE")
    order_id: int = field(name="i")
    last_qty: str = field(name="l")
    cum_qty: str = field(name="z")
    last_price: str = field(name="L")
    commission: str = field(name="n", default="0")
    commission_asset: str | None = field(name="N", default=None)
    transact_time: int = field(name="T")
    trade_id: int = field(name="t", default=-1)
    maker: bool = field(name="m", default=False)
    cum_quote: str = field(name="Z", default="0")


class AccountBalanceMsg(Struct):
    asset: str = field(name="a")
    free: str = field(name="f")
    locked: str = field(name="l")


class OutboundAccountPositionMsg(Struct):
    event_time: int = field(name="E")
    update_time: int = field(name="u")
    balances: list[AccountBalanceMsg] = field(name="B")


class BalanceUpdateMsg(Struct):
    event_time: int = field(name="E")
    asset: str = field(name="a")
    delta: str = field(name="d")
    clear_time: int = field(name="T", default=0)


class EventStreamTerminatedMsg(Struct):
    event_time: int = field(name="E")


class ServerShutdownMsg(Struct):
    event_time: int = field(name="E", default=0)


class UnknownEvent(Struct):
    e: str


# --------------------------------------------------------------------------------------------
# Engine-facing decoded forms


class DepthDiff:
    """One diff-depth message, fixed-point. ``bids``/``asks`` are int64 arrays of shape (n, 2), one
    ``(price, size)`` row per level (size 0 removes it): what ``Book.apply_levels`` takes, and they
    iterate as pairs like lists do."""

    __slots__ = ("asks", "bids", "first_id", "last_id", "symbol", "ts_event", "ts_recv")

    def __init__(
        self,
        symbol: str,
        first_id: int,
        last_id: int,
        ts_event: int,
        ts_recv: int,
        bids: np.ndarray,
        asks: np.ndarray,
    ) -> None:
        self.symbol = symbol
        self.first_id = first_id
        self.last_id = last_id
        self.ts_event = ts_event
        self.ts_recv = ts_recv
        self.bids = bids
        self.asks = asks


class Snapshot:
    """A REST depth snapshot, fixed-point; ``bids``/``asks`` as in ``DepthDiff`` (lists of pairs are
    accepted too)."""

    __slots__ = ("asks", "bids", "last_update_id", "ts_recv")

    def __init__(self, last_update_id: int, bids: np.ndarray, asks: np.ndarray, ts_recv: int = 0):
        self.last_update_id = last_update_id
        self.bids = bids
        self.asks = asks
        self.ts_recv = ts_recv


class BookTop:
    """A bookTicker: Binance's own best bid/ask at update id ``update_id`` (spot: no timestamp)."""

    __slots__ = ("ask", "ask_qty", "bid", "bid_qty", "symbol", "ts_recv", "update_id")

    def __init__(self, symbol: str, update_id: int, bid: int, bid_qty: int, ask: int, ask_qty: int, ts_recv: int):
        self.symbol = symbol
        self.update_id = update_id
        self.bid = bid
        self.bid_qty = bid_qty
        self.ask = ask
        self.ask_qty = ask_qty
        self.ts_recv = ts_recv


class ServerShutdown:
    __slots__ = ("ts_event",)

    def __init__(self, ts_event: int) -> None:
        self.ts_event = ts_event


class ControlReply:
    """A reply to SUBSCRIBE/LIST_SUBSCRIPTIONS (``code`` set when it is an error)."""

    __slots__ = ("code", "id", "msg")

    def __init__(self, id: int | str | None, code: int | None, msg: str) -> None:
        self.id = id
        self.code = code
        self.msg = msg


MarketEvent = DepthDiff | BookTop | Trade | ServerShutdown | ControlReply


# --------------------------------------------------------------------------------------------
# Decoders

_envelope = msgspec.json.Decoder(Envelope)
_depth = msgspec.json.Decoder(DepthUpdateMsg)
_trade = msgspec.json.Decoder(TradeMsg)
_ticker = msgspec.json.Decoder(BookTickerMsg)
_snapshot = msgspec.json.Decoder(DepthSnapshotMsg)
_server_time = msgspec.json.Decoder(ServerTimeMsg)
_api_error = msgspec.json.Decoder(ApiErrorMsg)
_exchange_info = msgspec.json.Decoder(ExchangeInfoMsg)
_order = msgspec.json.Decoder(OrderMsg)
_orders = msgspec.json.Decoder(list[OrderMsg])
_account = msgspec.json.Decoder(AccountMsg)
_my_trades = msgspec.json.Decoder(list[MyTradeMsg])
_ws_api = msgspec.json.Decoder(WsApiMessage)
_event_tag = msgspec.json.Decoder(_EventTag)
_user_events: dict[str, msgspec.json.Decoder] = {
    "executionReport": msgspec.json.Decoder(ExecutionReportMsg),
    "outboundAccountPosition": msgspec.json.Decoder(OutboundAccountPositionMsg),
    "balanceUpdate": msgspec.json.Decoder(BalanceUpdateMsg),
    "eventStreamTerminated": msgspec.json.Decoder(EventStreamTerminatedMsg),
    "serverShutdown": msgspec.json.Decoder(ServerShutdownMsg),
}


_levels = msgspec.json.Decoder(list[tuple[str, str]])


def levels_fixed(raw: bytes | Raw, scale: int = SCALE) -> np.ndarray:
    """The JSON array ``[["61837.63","1.5"],...]`` -> int64 (n, 2) fixed-point ``(price, size)`` rows.

    The compact form Binance sends takes the compiled scan; anything else (whitespace, odd
    shapes, bad numbers) goes through msgspec and ``parse_fixed``, which raise on bad input.
    """
    fast = levels_from_json(raw, scale)
    if fast is not None:
        return fast
    return levels_array(_levels.decode(raw), scale)


def decode_snapshot(body: bytes, ts_recv: int = 0, scale: int = SCALE) -> Snapshot:
    """A REST depth snapshot; ValueError (msgspec's errors are ValueErrors too) when it is malformed
    or carries an id or value beyond ``MAX_WIRE``."""
    m = _snapshot.decode(body)
    lid = wire_int(m.last_update_id, "lastUpdateId")
    return Snapshot(lid, levels_fixed(m.bids, scale), levels_fixed(m.asks, scale), ts_recv)


def decode_server_time(body: bytes) -> int:
    return _server_time.decode(body).server_time


def decode_error(body: bytes) -> ApiErrorMsg | None:
    """The ``{"code":..,"msg":..}`` body of a failed request, or None if the body is not one."""
    try:
        return _api_error.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def decode_exchange_info(body: bytes) -> ExchangeInfoMsg:
    return _exchange_info.decode(body)


def decode_order(body: bytes) -> OrderMsg:
    return _order.decode(body)


def decode_orders(body: bytes) -> list[OrderMsg]:
    return _orders.decode(body)


def decode_my_trades(body: bytes) -> list[MyTradeMsg]:
    return _my_trades.decode(body)


def decode_account(body: bytes) -> AccountMsg:
    return _account.decode(body)


def decode_ws_api(body: bytes) -> WsApiMessage:
    return _ws_api.decode(body)


def decode_user_event(raw: bytes | Raw) -> Struct:
    """One user-data event payload -> its Struct (``UnknownEvent`` for types we do not use)."""
    tag = _event_tag.decode(raw).e
    dec = _user_events.get(tag)
    if dec is None:
        return UnknownEvent(tag)
    return dec.decode(raw)


_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, UnicodeDecodeError)


class _MalformedCounter:
    """Counts bad frames and logs them without letting a flood of them flood the log."""

    LOG_FIRST = 20
    LOG_EVERY = 1000

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.log = logger
        self.malformed = 0
        #: told ``(count, description)`` whenever a malformed frame is logged (the first 20, then
        #: every 1000th): the market-data feed raises a ``decode_error`` incident from it
        self.on_malformed: Callable[[int, str], None] | None = None

    def bad(self, frame: bytes | str, exc: BaseException) -> None:
        self.malformed += 1
        n = self.malformed
        if n <= self.LOG_FIRST or n % self.LOG_EVERY == 0:
            sample = frame[:200] if isinstance(frame, (bytes, str)) else repr(frame)[:200]
            what = f"{type(exc).__name__}: {str(exc)[:200]}"
            self.log.warning(f"Malformed {self.what} frame dropped (#{n}): {what}; frame={sample!r}")
            if self.on_malformed is not None:
                self.on_malformed(n, what)


class MarketFrameDecoder(_MalformedCounter):
    """Combined-stream frame -> ``DepthDiff`` / ``BookTop`` / engine ``Trade`` / ``ServerShutdown``
    / ``ControlReply``; ``None`` for frames it drops (malformed, or streams it does not know)."""

    def __init__(self, symbols: SymbolMap, scale: int = SCALE, logger: logging.Logger | None = None) -> None:
        super().__init__("market data", logger or get_logger("market_data"))
        self.symbols = symbols
        self.scale = scale
        self.unknown_streams = 0
        self._routes: dict[str, tuple[int, str]] = {}
        #: the symbol whose depth message the last ``decode`` dropped as malformed (its book lost a
        #: message), else None; the feed reads and clears it
        self.lost_depth: str | None = None

    def _route(self, stream: str) -> tuple[int, str] | None:
        hit = self._routes.get(stream)
        if hit is not None:
            return hit
        name, _, kind = stream.partition("@")
        if kind.startswith("depth") and not kind[5:6].isdigit():
            k = 0
        elif kind == "trade":
            k = 1
        elif kind == "bookTicker":
            k = 2
        else:
            return None
        try:
            symbol = self.symbols.from_stream(name)
        except ValueError:
            return None
        if len(self._routes) < 4096:
            self._routes[stream] = (k, symbol)
        return k, symbol

    def decode(self, frame: bytes, ts_recv: int) -> MarketEvent | None:
        depth_of = None
        try:
            env = _envelope.decode(frame)
            if env.stream:
                route = self._route(env.stream)
                if route is None:
                    self.unknown_streams += 1
                    return None
                kind, symbol = route
                if kind == 0:
                    depth_of = symbol
                    fast = depth_from_json(env.data, self.scale)
                    if fast is not None:  # ids and values: at most 18 digits each
                        ev, first, last, bids, asks = fast
                        if last < first or ev > MAX_EVENT_MS:
                            raise ValueError(f"depth update with U={first} u={last} E={ev}")
                        return DepthDiff(symbol, first, last, ev * MS, ts_recv, bids, asks)
                    m = _depth.decode(env.data)
                    sc = self.scale
                    first = wire_int(m.first_id, "U")
                    last = wire_int(m.last_id, "u")
                    if last < first or not 0 <= m.event_time <= MAX_EVENT_MS:
                        raise ValueError(f"depth update with U={first} u={last} E={m.event_time}")
                    return DepthDiff(
                        symbol,
                        first,
                        last,
                        m.event_time * MS,
                        ts_recv,
                        levels_fixed(m.bids, sc),
                        levels_fixed(m.asks, sc),
                    )
                if kind == 1:
                    t = _trade.decode(env.data)
                    px = parse_fixed(t.price, self.scale)
                    qty = parse_fixed(t.qty, self.scale)
                    if (
                        px > MAX_WIRE
                        or qty > MAX_WIRE
                        or not (0 <= t.trade_id <= MAX_WIRE and 0 <= t.trade_time <= MAX_EVENT_MS)
                    ):
                        raise ValueError(f"trade p={t.price[:40]} q={t.qty[:40]} t={t.trade_id} T={t.trade_time}")
                    div = 10.0**self.scale
                    # m = buyer is the maker, so the aggressor sold
                    return Trade(
                        VENUE,
                        symbol,
                        t.trade_time * MS,
                        ts_recv,
                        -1 if t.buyer_is_maker else 1,
                        px / div,
                        qty / div,
                        px,
                        qty,
                    )
                b = _ticker.decode(env.data)
                sc = self.scale
                return BookTop(
                    symbol,
                    wire_int(b.update_id, "u"),
                    parse_wire(b.bid, sc),
                    parse_wire(b.bid_qty, sc),
                    parse_wire(b.ask, sc),
                    parse_wire(b.ask_qty, sc),
                    ts_recv,
                )
            if env.e == "serverShutdown":
                return ServerShutdown(env.event_time * MS)
            if env.id is not None or env.code is not None or env.result:
                return ControlReply(env.id, env.code, env.msg)
            raise ValueError("frame has neither a stream nor a known event")
        except _DECODE_ERRORS as exc:
            self.lost_depth = depth_of
            self.bad(frame, exc)
            return None


class UserFrameDecoder(_MalformedCounter):
    """WS API frames: responses and ``{"subscriptionId":..,"event":{..}}`` user-data events."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        super().__init__("user data", logger or get_logger("exchanges"))

    def decode(self, frame: bytes) -> tuple[WsApiMessage, Struct | None] | None:
        """``(message, event)``; ``event`` is the decoded user-data event when the frame is one."""
        try:
            msg = _ws_api.decode(frame)
            if msg.event:
                return msg, decode_user_event(msg.event)
            if msg.id is None and msg.subscription_id is None:
                raise ValueError("frame is neither a response nor a user-data event")
            return msg, None
        except _DECODE_ERRORS as exc:
            self.bad(frame, exc)
            return None
