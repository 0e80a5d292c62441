"""Small immutable records that cross component boundaries.

``ExecReport`` is the one message a venue (simulated or live) sends back to the engine; the
order manager turns it into order state. ``Trade`` is a public trade as a strategy sees it.
"""

from __future__ import annotations

import msgspec

# ExecReport.kind values
ACCEPTED = "accepted"
REJECTED = "rejected"
CANCELED = "canceled"
CANCEL_REJECTED = "cancel_rejected"
EXPIRED = "expired"
FILL = "fill"
MODIFIED = "modified"


class ExecReport(msgspec.Struct, gc=False):
    """A venue's answer about one order. Prices and quantities are fixed-point.

    ``ts_event`` is venue time, ``ts_recv`` the local time the engine receives it.
    For fills, ``qty``/``price`` are the fill's; ``liquidity`` is ``maker`` or ``taker``;
    ``fee`` is in quote currency (negative for rebates).
    ``code`` carries the venue's numeric error code (Binance ``-2010``...) when there is one.
    """

    kind: str
    venue: str
    symbol: str
    client_order_id: str
    ts_event: int
    ts_recv: int
    venue_order_id: str = ""
    price: int = 0
    qty: int = 0
    liquidity: str = ""
    fee: float = 0.0
    fee_asset: str = ""
    trade_id: str = ""
    reason: str = ""
    code: int = 0


class Trade(msgspec.Struct, gc=False):
    """A public trade. ``side`` is the aggressor: +1 buy, -1 sell, 0 unknown."""

    venue: str
    symbol: str
    ts_event: int
    ts_recv: int
    side: int
    price: float
    size: float
    price_fixed: int
    size_fixed: int


class Incident(msgspec.Struct, gc=False):
    """Something an operator must hear about: a gap, a crossed book, a disconnect, a stale feed.

    ``kind`` is one of the names listed in ``engine.eventlog_schema.INCIDENT_KINDS``.
    """

    ts: int
    venue: str
    symbol: str
    kind: str
    detail: str = ""
    value: float = 0.0


class Fill(msgspec.Struct, gc=False):
    """A fill as a strategy sees it (floats; the fixed-point truth is in the order manager)."""

    client_order_id: str
    strategy_id: str
    venue: str
    symbol: str
    side: int  # +1 buy, -1 sell
    price: float
    qty: float
    fee: float
    liquidity: str
    ts_event: int
    ts_recv: int
    realized_pnl: float
    position_after: float
