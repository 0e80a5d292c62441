"""msgspec structs for every Coinbase message this package reads, and their common types.

Market data comes from Advanced Trade's WebSocket (README): every frame is the envelope
``{"channel", "client_id"?, "timestamp", "sequence_num", "events": [...]}`` (venues.md §2.2; live
frames have no ``client_id`` and an integer ``heartbeat_counter``, the docs show a string, so both
are accepted). ``MarketFrameDecoder.decode(frame, ts_recv)`` turns one frame into one of:

- ``L2Message`` (``l2_data``): one product's snapshot or update, each side an int64 ``(n, 2)``
  array of fixed-point (price, new size) rows in the order sent (``new_quantity`` is the level's
  new size, "0" removes it);
- ``Heartbeat`` (``heartbeats``), ``Subscriptions`` (the ack), ``ErrorFrame`` (``{"type":
  "error"}``), ``TradeBatch`` (``market_trades``: engine ``Trade`` rows), ``TickerBatch``,
  ``StatusBatch``, ``UserBatch`` (``user``: order updates);

each carrying the envelope's ``sequence_num`` (one counter per connection across channels), so
the feed checks continuity before looking inside. A frame that does not decode is counted and
logged and ``decode`` returns None.

Coinbase Exchange's own frames (the 2021 capture used as the fake's data: ``snapshot``,
``l2update``, ``ticker``, ``match``/``last_match``, ``heartbeat``, ``subscriptions``) and its REST
bodies (products, orders, accounts, fills, errors) have structs here too.

Sizes and prices are decimal strings; they become fixed point at ``SCALE`` (8) exactly, never via
float.
"""

from __future__ import annotations

import logging
from datetime import datetime

import msgspec
import numpy as np

from engine.events import Trade
from engine.model import to_fixed

SCALE = 8
_EMPTY = np.zeros((0, 2), dtype=np.int64)


def parse_time_ns(text: str) -> int:
    """RFC 3339 with up to nanoseconds (``2026-09-07T23:37:22.675755362Z``) -> epoch ns."""
    if not text:
        return 0
    t = text[:-1] if text.endswith("Z") else text
    whole, _, frac = t.partition(".")
    tz = ""
    for sep in ("+", "-"):
        k = frac.find(sep) if frac else -1
        if k >= 0:
            frac, tz = frac[:k], frac[k:]
            break
    base = datetime.fromisoformat(whole + (tz or "+00:00"))
    ns = int(base.timestamp()) * 1_000_000_000
    if frac:
        ns += int((frac + "000000000")[:9])
    return ns


def fixed(text: str) -> int:
    return to_fixed(text, SCALE)


def fixed_trunc(text: str) -> int:
    """Amounts Coinbase gives with 16 decimals (fees, balances, executed value), truncated to
    ``SCALE``: what the engine keeps of them (never rounded up)."""
    whole, _, frac = (text or "0").partition(".")
    return to_fixed(f"{whole}.{frac[:SCALE]}" if frac else whole, SCALE)


# --- Advanced Trade WebSocket ---------------------------------------------------------------------
class Envelope(msgspec.Struct):
    channel: str
    timestamp: str = ""
    sequence_num: int = -1
    client_id: str = ""
    events: msgspec.Raw = msgspec.Raw(b"[]")
    # error frames have no channel: {"type": "error", "message": "..."}
    type: str = ""
    message: str = ""


class ErrorEnvelope(msgspec.Struct):
    type: str
    message: str = ""


class L2Level(msgspec.Struct):
    side: str  # bid | offer
    price_level: str
    new_quantity: str
    event_time: str = ""


class L2Event(msgspec.Struct):
    type: str  # snapshot | update
    product_id: str
    updates: list[L2Level] = []


class HeartbeatEvent(msgspec.Struct):
    current_time: str = ""
    heartbeat_counter: int | str = 0


class SubscriptionsEvent(msgspec.Struct):
    subscriptions: dict[str, list[str]] = {}


class AtTrade(msgspec.Struct):
    trade_id: str
    product_id: str
    price: str
    size: str
    side: str  # BUY | SELL
    time: str = ""


class TradesEvent(msgspec.Struct):
    type: str = ""
    trades: list[AtTrade] = []


class AtTicker(msgspec.Struct):
    product_id: str
    price: str = ""
    best_bid: str = ""
    best_bid_quantity: str = ""
    best_ask: str = ""
    best_ask_quantity: str = ""
    type: str = ""
    volume_24_h: str = ""


class TickerEvent(msgspec.Struct):
    type: str = ""
    tickers: list[AtTicker] = []


class ProductStatus(msgspec.Struct):
    id: str
    status: str = ""
    base_increment: str = ""
    quote_increment: str = ""
    min_market_funds: str = ""
    product_type: str = ""


class StatusEvent(msgspec.Struct):
    type: str = ""
    products: list[ProductStatus] = []


class UserOrder(msgspec.Struct):
    order_id: str
    client_order_id: str = ""
    product_id: str = ""
    status: str = ""
    order_side: str = ""
    order_type: str = ""
    cumulative_quantity: str = "0"
    leaves_quantity: str = "0"
    avg_price: str = "0"
    limit_price: str = ""
    total_fees: str = "0"
    creation_time: str = ""


class UserEvent(msgspec.Struct):
    type: str = ""
    orders: list[UserOrder] = []


# --- common types the decoder gives ----------------------------------------------------------------
class L2Message(msgspec.Struct, gc=False):
    symbol: str
    snapshot: bool
    seq: int
    bids: np.ndarray
    asks: np.ndarray
    ts_event: int
    ts_recv: int


class Heartbeat(msgspec.Struct, gc=False):
    seq: int
    counter: int
    ts_event: int


class Subscriptions(msgspec.Struct, gc=False):
    seq: int
    channels: dict[str, list[str]]


class ErrorFrame(msgspec.Struct, gc=False):
    seq: int
    message: str


class TradeBatch(msgspec.Struct, gc=False):
    seq: int
    snapshot: bool
    trades: list[Trade]


class TickerBatch(msgspec.Struct, gc=False):
    seq: int
    tickers: list[AtTicker]


class StatusBatch(msgspec.Struct, gc=False):
    seq: int
    products: list[ProductStatus]


class UserBatch(msgspec.Struct, gc=False):
    seq: int
    snapshot: bool
    orders: list[UserOrder]


class Unknown(msgspec.Struct, gc=False):
    """A channel this package does not read (``candles``, ...): still numbered."""

    seq: int
    channel: str


def levels(rows: list[tuple[int, int]]) -> np.ndarray:
    return np.array(rows, dtype=np.int64).reshape(-1, 2) if rows else _EMPTY


def l2_messages(env: Envelope, ts_recv: int, venue_symbols: dict[str, str] | None = None) -> list[L2Message]:
    """One ``L2Message`` per event of an ``l2_data`` envelope (in practice one per frame)."""
    out = []
    ts = parse_time_ns(env.timestamp)
    for ev in msgspec.json.decode(env.events, type=list[L2Event]):
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        for u in ev.updates:
            row = (fixed(u.price_level), fixed(u.new_quantity))
            if u.side == "bid":
                bids.append(row)
            elif u.side == "offer":
                asks.append(row)
            else:
                raise ValueError(f"l2_data side {u.side!r}")
        sym = venue_symbols.get(ev.product_id, ev.product_id) if venue_symbols else ev.product_id
        if ev.type not in ("snapshot", "update"):
            raise ValueError(f"l2_data event type {ev.type!r}")
        out.append(L2Message(sym, ev.type == "snapshot", env.sequence_num, levels(bids), levels(asks), ts, ts_recv))
    return out


def at_trades(env: Envelope, ts_recv: int, venue: str = "coinbase") -> TradeBatch:
    """``market_trades``: Coinbase's ``side`` is the taker's (the side that bought or sold into the
    book), the engine's aggressor side."""
    trades = []
    snapshot = False
    for ev in msgspec.json.decode(env.events, type=list[TradesEvent]):
        snapshot = snapshot or ev.type == "snapshot"
        for t in ev.trades:
            side = 1 if t.side == "BUY" else -1 if t.side == "SELL" else 0
            p, q = fixed(t.price), fixed(t.size)
            trades.append(
                Trade(venue, t.product_id, parse_time_ns(t.time), ts_recv, side, p / 10**SCALE, q / 10**SCALE, p, q)
            )
    return TradeBatch(env.sequence_num, snapshot, trades)


_envelope = msgspec.json.Decoder(Envelope)


class MarketFrameDecoder:
    """Advanced Trade frames -> common types; malformed frames counted, logged (the first 20, then
    every 1000th) and reported to ``on_malformed(n, what)``."""

    def __init__(self, logger: logging.Logger, venue: str = "coinbase") -> None:
        self.log = logger
        self.venue = venue
        self.malformed = 0
        self.on_malformed = None  # type: ignore[assignment]

    def decode(self, frame: bytes, ts_recv: int) -> object | list[L2Message] | None:
        try:
            env = _envelope.decode(frame)
            ch = env.channel
            seq = env.sequence_num
            if ch == "l2_data":
                return l2_messages(env, ts_recv)
            if ch == "heartbeats":
                hb = msgspec.json.decode(env.events, type=list[HeartbeatEvent])
                counter = int(hb[0].heartbeat_counter) if hb else 0
                return Heartbeat(seq, counter, parse_time_ns(env.timestamp))
            if ch == "subscriptions":
                subs = msgspec.json.decode(env.events, type=list[SubscriptionsEvent])
                merged: dict[str, list[str]] = {}
                for s in subs:
                    merged.update(s.subscriptions)
                return Subscriptions(seq, merged)
            if ch == "market_trades":
                return at_trades(env, ts_recv, self.venue)
            if ch == "ticker" or ch == "ticker_batch":
                evs = msgspec.json.decode(env.events, type=list[TickerEvent])
                return TickerBatch(seq, [t for e in evs for t in e.tickers])
            if ch == "status":
                evs = msgspec.json.decode(env.events, type=list[StatusEvent])
                return StatusBatch(seq, [p for e in evs for p in e.products])
            if ch == "user":
                evs = msgspec.json.decode(env.events, type=list[UserEvent])
                return UserBatch(seq, any(e.type == "snapshot" for e in evs), [o for e in evs for o in e.orders])
            return Unknown(seq, ch)
        except msgspec.ValidationError as exc:
            try:  # {"type": "error", "message": ...} has no channel
                err = msgspec.json.decode(frame, type=ErrorEnvelope)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return self._bad(frame, exc)
            if err.type == "error":
                return ErrorFrame(-1, err.message)
            return self._bad(frame, exc)
        except (msgspec.DecodeError, ValueError) as exc:
            return self._bad(frame, exc)

    def _bad(self, frame: bytes, exc: Exception) -> None:
        self.malformed += 1
        n = self.malformed
        if n <= 20 or n % 1000 == 0:
            self.log.warning(f"coinbase: malformed frame #{n} ({exc}): {frame[:200]!r}")
            if self.on_malformed is not None:
                self.on_malformed(n, str(exc))
        return None


# --- Coinbase Exchange WebSocket (the 2021 capture; the fake's data) ------------------------------
class ExchangeSnapshot(msgspec.Struct, tag_field="type", tag="snapshot"):
    product_id: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class ExchangeL2Update(msgspec.Struct, tag_field="type", tag="l2update"):
    product_id: str
    changes: list[tuple[str, str, str]]  # (buy|sell, price, new size)
    time: str = ""


class ExchangeTicker(msgspec.Struct, tag_field="type", tag="ticker"):
    product_id: str
    sequence: int = 0
    price: str = ""
    best_bid: str = ""
    best_ask: str = ""
    time: str = ""
    trade_id: int = 0
    side: str = ""
    last_size: str = ""


class ExchangeMatch(msgspec.Struct, tag_field="type", tag="match"):
    product_id: str
    trade_id: int
    sequence: int
    side: str  # the MAKER order's side (CB-EX channels: match)
    size: str
    price: str
    time: str = ""
    maker_order_id: str = ""
    taker_order_id: str = ""


class ExchangeLastMatch(ExchangeMatch, tag="last_match"):
    pass


# the authenticated ``user`` channel: the full channel's messages about our own orders
class ExchangeReceived(msgspec.Struct, tag_field="type", tag="received"):
    order_id: str
    product_id: str
    side: str
    client_oid: str = ""
    order_type: str = "limit"
    size: str = ""
    price: str = ""
    time: str = ""


class ExchangeOpen(msgspec.Struct, tag_field="type", tag="open"):
    order_id: str
    product_id: str
    side: str
    price: str = ""
    remaining_size: str = ""
    time: str = ""


class ExchangeDone(msgspec.Struct, tag_field="type", tag="done"):
    order_id: str
    product_id: str
    side: str
    reason: str  # filled | canceled
    price: str = ""
    remaining_size: str = ""
    time: str = ""


class UserMatch(msgspec.Struct, tag_field="type", tag="match"):
    """A ``match`` on the user channel: one of the two order ids is ours; the fee rate of our side
    is given (``maker_fee_rate`` or ``taker_fee_rate``)."""

    product_id: str
    trade_id: int
    maker_order_id: str
    taker_order_id: str
    side: str  # the maker's side
    size: str
    price: str
    time: str = ""
    maker_fee_rate: str = ""
    taker_fee_rate: str = ""


class ExchangeHeartbeat(msgspec.Struct, tag_field="type", tag="heartbeat"):
    sequence: int
    last_trade_id: int
    product_id: str
    time: str = ""


class ExchangeChannel(msgspec.Struct):
    name: str
    product_ids: list[str] = []


class ExchangeSubscriptions(msgspec.Struct, tag_field="type", tag="subscriptions"):
    channels: list[ExchangeChannel | str]


class ExchangeError(msgspec.Struct, tag_field="type", tag="error"):
    message: str
    reason: str = ""


UserFrame = (
    ExchangeReceived
    | ExchangeOpen
    | ExchangeDone
    | UserMatch
    | ExchangeHeartbeat
    | ExchangeSubscriptions
    | ExchangeError
)
user_frame = msgspec.json.Decoder(UserFrame)

ExchangeFrame = (
    ExchangeSnapshot
    | ExchangeL2Update
    | ExchangeTicker
    | ExchangeMatch
    | ExchangeLastMatch
    | ExchangeHeartbeat
    | ExchangeSubscriptions
    | ExchangeError
)
exchange_frame = msgspec.json.Decoder(ExchangeFrame)


def exchange_to_common(msg: object, ts_recv: int = 0, venue: str = "coinbase") -> object:
    """An Exchange frame as the same common type the Advanced Trade decoder gives."""
    if isinstance(msg, ExchangeSnapshot):
        return L2Message(
            msg.product_id,
            True,
            -1,
            levels([(fixed(p), fixed(q)) for p, q in msg.bids]),
            levels([(fixed(p), fixed(q)) for p, q in msg.asks]),
            0,
            ts_recv,
        )
    if isinstance(msg, ExchangeL2Update):
        bids = [(fixed(p), fixed(q)) for s, p, q in msg.changes if s == "buy"]
        asks = [(fixed(p), fixed(q)) for s, p, q in msg.changes if s == "sell"]
        return L2Message(msg.product_id, False, -1, levels(bids), levels(asks), parse_time_ns(msg.time), ts_recv)
    if isinstance(msg, ExchangeMatch):
        p, q = fixed(msg.price), fixed(msg.size)
        side = -1 if msg.side == "buy" else 1  # the taker is the other side of the maker's
        return Trade(venue, msg.product_id, parse_time_ns(msg.time), ts_recv, side, p / 10**SCALE, q / 10**SCALE, p, q)
    if isinstance(msg, ExchangeHeartbeat):
        return Heartbeat(msg.sequence, msg.last_trade_id, parse_time_ns(msg.time))
    if isinstance(msg, ExchangeSubscriptions):
        return Subscriptions(
            -1,
            {c.name: list(c.product_ids) for c in msg.channels if isinstance(c, ExchangeChannel)},
        )
    if isinstance(msg, ExchangeError):
        return ErrorFrame(-1, msg.message)
    return msg


# --- Coinbase Exchange REST -----------------------------------------------------------------------
class Product(msgspec.Struct):
    id: str
    base_currency: str
    quote_currency: str
    quote_increment: str  # price tick
    base_increment: str  # size step
    min_market_funds: str = "0"  # now the notional minimum of every order
    base_min_size: str = "0"  # removed 2022-06-30; the 2021 capture has it
    base_max_size: str = "0"
    max_market_funds: str = "0"
    display_name: str = ""
    status: str = "online"
    status_message: str = ""
    post_only: bool = False
    limit_only: bool = False
    cancel_only: bool = False
    trading_disabled: bool = False
    margin_enabled: bool = False


class ExchangeOrder(msgspec.Struct):
    id: str
    product_id: str
    side: str
    type: str = "limit"
    status: str = "pending"  # pending | open | active | done | rejected
    price: str = "0"
    size: str = "0"
    client_oid: str = ""
    time_in_force: str = "GTC"
    post_only: bool = False
    created_at: str = ""
    done_at: str = ""
    done_reason: str = ""  # filled | canceled | rejected
    reject_reason: str = ""
    fill_fees: str = "0"
    filled_size: str = "0"
    executed_value: str = "0"
    settled: bool = False
    profile_id: str = ""
    max_floor: str = ""
    funds: str = ""


class Account(msgspec.Struct):
    id: str
    currency: str
    balance: str
    available: str
    hold: str
    profile_id: str = ""
    trading_enabled: bool = True


class ExchangeFill(msgspec.Struct):
    trade_id: int
    product_id: str
    order_id: str
    price: str
    size: str
    side: str
    liquidity: str  # M | T
    fee: str
    created_at: str = ""
    settled: bool = True


class ErrorBody(msgspec.Struct):
    message: str


class ServerTime(msgspec.Struct):
    iso: str
    epoch: float


# --- Advanced Trade REST (account queries of an AT key; shapes from ccxt's recorded answers) -------
class AtOrder(msgspec.Struct):
    order_id: str
    product_id: str
    side: str
    status: str
    client_order_id: str = ""
    order_type: str = ""
    time_in_force: str = ""
    created_time: str = ""
    filled_size: str = "0"
    average_filled_price: str = "0"
    total_fees: str = "0"
    order_configuration: dict[str, dict[str, str | bool]] = {}


class AtOrders(msgspec.Struct):
    orders: list[AtOrder]
    has_next: bool = False
    cursor: str = ""
    sequence: str = ""


class AtFill(msgspec.Struct):
    entry_id: str
    trade_id: str
    order_id: str
    trade_time: str
    price: str
    size: str
    commission: str
    product_id: str
    liquidity_indicator: str
    side: str
    trade_type: str = "FILL"


class AtFills(msgspec.Struct):
    fills: list[AtFill]
    cursor: str = ""
