"""Kraken WebSocket v2 messages as msgspec structs, and their translation into common types.

Every v2 frame is a JSON object with either a ``channel`` (data pushed by the server: ``status``,
``heartbeat``, ``book``, ``trade``, ``ticker``, ``executions``) or a ``method`` (the answer to a
request: ``subscribe``, ``pong``, ``add_order``, ...). The envelope is decoded first, then the
frame again with its channel's struct: a second pass over a few hundred bytes is cheaper than a
union of every shape, and keeps each struct exact.

Numbers are JSON numbers, not strings, and the book checksum is computed on their decimal text, so
prices and quantities decode as ``Decimal`` straight from the frame's digits (msgspec keeps the
text exact; a float would turn ``0.1`` into ``0.1000000000000000055...``). ``connection_id``
exceeds int64 (it is a u64); msgspec's ``int`` takes it.
"""

from __future__ import annotations

import calendar
import logging
from decimal import Decimal
from typing import Any

import msgspec

from engine.events import Trade
from venues.kraken.symbols import from_ws

# --- envelope and control ------------------------------------------------------------------------


class Envelope(msgspec.Struct):
    channel: str | None = None
    method: str | None = None
    type: str | None = None


class StatusData(msgspec.Struct):
    system: str
    api_version: str = ""
    connection_id: int = 0
    version: str = ""


class Status(msgspec.Struct):
    channel: str
    data: list[StatusData]
    type: str = "update"


class Heartbeat(msgspec.Struct):
    channel: str


class MethodReply(msgspec.Struct):
    """The answer to any request (``subscribe``, ``pong``, ``add_order``, ``cancel_order``, ...):
    ``success`` with a ``result``, or ``error`` text. ``pong`` carries neither."""

    method: str
    req_id: int | None = None
    success: bool | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    time_in: str | None = None
    time_out: str | None = None
    warnings: list[str] | None = None


# --- market data -----------------------------------------------------------------------------------


class Level(msgspec.Struct):
    price: Decimal
    qty: Decimal


class BookData(msgspec.Struct):
    symbol: str
    bids: list[Level]
    asks: list[Level]
    checksum: int
    timestamp: str | None = None


class BookMessage(msgspec.Struct):
    channel: str
    type: str  # snapshot | update
    data: list[BookData]


class TradeData(msgspec.Struct):
    symbol: str
    side: str  # the taker's
    price: Decimal
    qty: Decimal
    ord_type: str
    trade_id: int
    timestamp: str


class TradeMessage(msgspec.Struct):
    channel: str
    type: str
    data: list[TradeData]


class TickerData(msgspec.Struct):
    symbol: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    last: Decimal
    volume: Decimal
    vwap: Decimal
    low: Decimal
    high: Decimal
    change: Decimal
    change_pct: Decimal


class TickerMessage(msgspec.Struct):
    channel: str
    type: str
    data: list[TickerData]


# --- private: executions ---------------------------------------------------------------------------


class Fee(msgspec.Struct):
    asset: str
    qty: Decimal


class ExecutionData(msgspec.Struct):
    """One execution event (``exec_type``: pending_new, new, trade, filled, canceled, expired,
    amended, restated, ...). Only ``order_id``, ``exec_type`` and ``timestamp`` are always there:
    with ``order_status`` updates a ``new`` or ``canceled`` event names nothing else."""

    order_id: str
    exec_type: str
    timestamp: str
    order_status: str | None = None
    cl_ord_id: str | None = None
    symbol: str | None = None
    side: str | None = None
    order_type: str | None = None
    order_qty: Decimal | None = None
    limit_price: Decimal | None = None
    time_in_force: str | None = None
    post_only: bool | None = None
    cum_qty: Decimal | None = None
    cum_cost: Decimal | None = None
    avg_price: Decimal | None = None
    exec_id: str | None = None
    trade_id: int | None = None
    last_qty: Decimal | None = None
    last_price: Decimal | None = None
    cost: Decimal | None = None
    liquidity_ind: str | None = None  # t | m
    fees: list[Fee] | None = None
    fee_usd_equiv: Decimal | None = None
    order_userref: int | None = None
    reason: str | None = None
    cancel_reason: str | None = None


class ExecutionsMessage(msgspec.Struct):
    channel: str
    type: str  # snapshot | update
    data: list[ExecutionData]
    sequence: int | None = None


_envelope = msgspec.json.Decoder(Envelope)
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "status": msgspec.json.Decoder(Status),
    "heartbeat": msgspec.json.Decoder(Heartbeat),
    "book": msgspec.json.Decoder(BookMessage),
    "trade": msgspec.json.Decoder(TradeMessage),
    "ticker": msgspec.json.Decoder(TickerMessage),
    "executions": msgspec.json.Decoder(ExecutionsMessage),
}
_reply = msgspec.json.Decoder(MethodReply)

Message = Status | Heartbeat | MethodReply | BookMessage | TradeMessage | TickerMessage | ExecutionsMessage


class UnknownMessage(msgspec.Struct):
    """A well-formed frame of a channel this adapter does not subscribe to."""

    channel: str


def decode(frame: bytes) -> Message | UnknownMessage:
    """One v2 frame -> its struct; ``msgspec.DecodeError`` / ``ValidationError`` when malformed."""
    env = _envelope.decode(frame)
    if env.channel is not None:
        dec = _DECODERS.get(env.channel)
        if dec is None:
            return UnknownMessage(env.channel)
        return dec.decode(frame)
    if env.method is not None:
        return _reply.decode(frame)
    raise msgspec.ValidationError("frame has neither 'channel' nor 'method'")


class FrameDecoder:
    """``decode`` that counts and logs malformed frames (the first 20, then every 1000th) instead
    of raising: a feed goes on after one bad frame."""

    def __init__(self, logger: logging.Logger, what: str = "kraken") -> None:
        self.log = logger
        self.what = what
        self.malformed = 0

    def decode(self, frame: bytes) -> Message | UnknownMessage | None:
        try:
            return decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.malformed += 1
            n = self.malformed
            if n <= 20 or n % 1000 == 0:
                self.log.warning(f"{self.what}: malformed frame #{n}: {exc}: {frame[:200]!r}")
            return None


# --- conversions -----------------------------------------------------------------------------------


def ts_ns(rfc3339: str | None) -> int:
    """``2024-05-27T12:43:11.798009Z`` -> ns since the epoch (0 for None/empty)."""
    if not rfc3339:
        return 0
    s = rfc3339.rstrip("Z")
    date, _, clock = s.partition("T")
    y, mo, d = date.split("-")
    hms, _, frac = clock.partition(".")
    h, mi, sec = hms.split(":")
    whole = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(sec), 0, 0, 0))
    return whole * 1_000_000_000 + int((frac or "0")[:9].ljust(9, "0"))


def to_fixed(value: Decimal, scale: int) -> int:
    """An exact decimal -> integer at ``scale`` decimals; ``ValueError`` if digits would be lost."""
    scaled = value.scaleb(scale)
    i = int(scaled)
    if i != scaled:
        raise ValueError(f"{value} has more than {scale} decimals")
    return i


def trades(msg: TradeMessage, price_scale: int, size_scale: int, ts_recv: int) -> list[Trade]:
    """A trade message -> the engine's ``Trade``s (``side`` is the taker's: +1 buy, -1 sell)."""
    out = []
    for t in msg.data:
        out.append(
            Trade(
                "kraken",
                from_ws(t.symbol),
                ts_ns(t.timestamp),
                ts_recv,
                1 if t.side == "buy" else -1,
                float(t.price),
                float(t.qty),
                to_fixed(t.price, price_scale),
                to_fixed(t.qty, size_scale),
            )
        )
    return out


def levels_fixed(levels: list[Level], price_scale: int, size_scale: int) -> list[tuple[int, int]]:
    return [(to_fixed(lv.price, price_scale), to_fixed(lv.qty, size_scale)) for lv in levels]
