"""The event log as an object: the one place that turns engine state into event-log rows.

The order manager, the risk checks, the portfolio's marks and the engine's own inputs all write
through an ``EventLog``; none of them builds a row tuple. Rows follow the schemas in
``engine.eventlog_schema`` and go to a ``Recorder``, which numbers and writes them.

Rows of the order path are *numbered* before the order's bytes leave and *built* after
(``next_seq`` then ``seq=``): the venue call must not wait for formatting, and the log must read
as if everything had been recorded first. ``Recorder.add_at`` explains why that stays
byte-identical.

Incidents are also counted and logged here, in the guide's words (``Market data sequence gap``,
``Crossed order book``, ...), so an incident row, its count and its log line cannot drift apart.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from engine.logs import get_logger

if TYPE_CHECKING:
    from engine.book import Book
    from engine.events import ExecReport, Fill
    from engine.model import Instrument
    from engine.orders import Order
    from engine.portfolio import Position
    from engine.recorder import Recorder
    from engine.risk import RiskDecision

_md_log = get_logger("market_data")
_sys_log = get_logger("system")
NAN = math.nan

#: incident kind -> the guide's wording; these go to market_data.log, other kinds to system.log
INCIDENT_MESSAGES = {
    "sequence_gap": "Market data sequence gap",
    "crossed_book": "Crossed order book",
    "bad_level": "Invalid order book level",
    "stale_data": "Stale market data",
}


class EventLog:
    """Builds and appends the rows of one run. ``books`` is read for the mid at each order event
    (the engine's own dict, filled as books are added)."""

    __slots__ = ("books", "incident_counts", "instruments", "recent_incidents", "recorder")

    def __init__(
        self, recorder: Recorder, instruments: dict[tuple[str, str], Instrument], books: dict[tuple[str, str], Book]
    ) -> None:
        self.recorder = recorder
        self.instruments = instruments
        self.books = books
        self.incident_counts: dict[str, int] = {}
        #: the latest incidents as (ts, venue, symbol, kind, detail), for the operator API
        self.recent_incidents: deque[tuple[int, str, str, str, str]] = deque(maxlen=1000)

    @property
    def enabled(self) -> bool:
        return self.recorder.enabled

    def next_seq(self) -> int:
        """A row number taken now for a row built later (0 when the log is off)."""
        rec = self.recorder
        return rec.next_seq() if rec.enabled else 0

    def _mid(self, key: tuple[str, str]) -> float:
        book = self.books.get(key)
        return book.mid_price() if book is not None and book.valid else NAN

    # --- orders --------------------------------------------------------------------------------
    def order(
        self, event: str, o: Order, now: int, reason: str = "", code: int = 0, ts_venue: int = 0, seq: int = 0
    ) -> None:
        """One ``orders`` row; ``seq`` when it was numbered earlier."""
        rec = self.recorder
        if not rec.enabled:
            return
        key = (o.venue, o.symbol)
        inst = self.instruments[key]
        # Instrument.price/size and Enum.value, spelled out: every order event of a live session
        # passes here (``.value`` is a Python-level descriptor)
        pdiv = 10**inst.price_scale
        sdiv = 10**inst.size_scale
        row = (
            now,
            event,
            o.strategy_id,
            o.venue,
            o.symbol,
            o.client_order_id,
            o.venue_order_id,
            "buy" if o.side > 0 else "sell",
            o.order_type._value_,
            o.tif._value_,
            o.price / pdiv,
            o.qty / sdiv,
            o.filled / sdiv,
            (o.qty - o.filled) / sdiv,
            o.status._value_,
            reason or o.reason,
            code,
            o.ts_tick,
            o.ts_decided,
            o.ts_sent,
            o.ts_acked,
            ts_venue,
            self._mid(key),
            o.post_only,
        )
        if seq:
            rec.add_at(seq, "orders", row)
        else:
            rec.add("orders", row)

    def fill(self, o: Order, r: ExecReport, fill: Fill, inst: Instrument, now: int) -> None:
        rec = self.recorder
        if not rec.enabled:
            return
        rec.add(
            "fills",
            (
                now,
                r.ts_event,
                o.strategy_id,
                o.venue,
                o.symbol,
                o.client_order_id,
                o.venue_order_id or r.venue_order_id,
                r.trade_id,
                "buy" if o.side > 0 else "sell",
                fill.price,
                fill.qty,
                inst.notional(r.price, r.qty),
                r.fee,
                r.fee_asset,
                r.liquidity,
                inst.price(o.price),
                o.mid_at_decision,
                self._mid((o.venue, o.symbol)),
                o.ts_tick,
                o.ts_decided,
                o.ts_sent,
                o.ts_acked,
                fill.position_after,
                fill.realized_pnl,
            ),
        )

    def risk(self, order: Order, d: RiskDecision, now: int, seq: int = 0) -> None:
        rec = self.recorder
        if not rec.enabled:
            return
        row = (
            now,
            order.strategy_id,
            order.venue,
            order.symbol,
            order.client_order_id,
            d.check,
            d.passed,
            d.reason,
            d.value,
            d.limit,
        )
        if seq:
            rec.add_at(seq, "risk", row)
        else:
            rec.add("risk", row)

    # --- positions, market, timers -------------------------------------------------------------
    def position(self, strategy_id: str, inst: Instrument, pos: Position, now: int, reason: str) -> None:
        rec = self.recorder
        if not rec.enabled:
            return
        rec.add(
            "positions",
            (
                now,
                strategy_id,
                inst.venue,
                inst.symbol,
                pos.qty_float,
                pos.avg_price,
                pos.realized_quote,
                pos.unrealized_quote,
                pos.fees_quote,
                pos.mark,
                reason,
            ),
        )

    def market(self, book: Book, mid: float, feed_latency_ns: int, seq: int) -> None:
        """The book as the strategies were shown it, numbered ``seq`` before they ran."""
        bid, ask, bid_size, ask_size = book.top()
        self.recorder.add_at(
            seq,
            "market",
            (
                book.ts_recv,
                book.ts_event,
                book.venue,
                book.symbol,
                bid,
                ask,
                bid_size,
                ask_size,
                mid,
                book.update_id,
                feed_latency_ns,
            ),
        )

    def timer(self, now: int, strategy_id: str, name: str) -> None:
        self.recorder.add("timers", (now, strategy_id, name))

    # --- incidents and reconciliation ----------------------------------------------------------
    def incident(self, ts: int, venue: str, symbol: str, kind: str, detail: str = "", value: float = 0.0) -> None:
        """Count it, record it, say it in the guide's words."""
        self.incident_counts[kind] = self.incident_counts.get(kind, 0) + 1
        self.recent_incidents.append((ts, venue, symbol, kind, detail))
        self.recorder.add("incidents", (ts, venue, symbol, kind, detail, value))
        msg = INCIDENT_MESSAGES.get(kind, kind.replace("_", " "))
        logger = _md_log if kind in INCIDENT_MESSAGES else _sys_log
        logger.warning("%s venue=%s symbol=%s %s", msg, venue, symbol, detail)

    def reconcile(
        self,
        ts: int,
        venue: str,
        symbol: str,
        item: str,
        action: str,
        client_order_id: str = "",
        venue_order_id: str = "",
        local_value: float = NAN,
        venue_value: float = NAN,
        detail: str = "",
    ) -> None:
        """One difference found between the venue and this node, and what was done about it."""
        self.recorder.add(
            "reconcile",
            (ts, venue, symbol, item, action, client_order_id, venue_order_id, local_value, venue_value, detail),
        )
