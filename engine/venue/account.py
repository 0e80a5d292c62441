"""Account queries: what a live node asks a venue before trading and when it reconciles.

Plain records in the engine's units (fixed-point prices and sizes of the instrument, canonical
symbols), so reconciliation compares them with the order manager's and the portfolio's state
without knowing any venue's wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.model import OrderStatus, OrderType, Side, TimeInForce


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the venue reports it."""

    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int
    qty: int
    filled: int
    status: OrderStatus
    post_only: bool = False
    ts_created: int = 0  # venue time, ns
    ts_updated: int = 0


@dataclass(frozen=True, slots=True)
class VenueBalance:
    asset: str
    free: float
    locked: float = 0.0

    @property
    def total(self) -> float:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class VenueFill:
    """One of our trades as the venue lists it (``recent_fills``)."""

    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str
    trade_id: str
    side: Side
    price: int
    qty: int
    fee: float  # quote currency
    fee_asset: str
    liquidity: str  # maker | taker
    ts_event: int


class AccountClient(Protocol):
    """Account state at the venue. Every call is a request to the venue (rate limits apply)."""

    async def open_orders(self, symbols: list[str]) -> list[VenueOrder]:
        """Open orders of these canonical symbols."""

    async def balances(self) -> dict[str, VenueBalance]:
        """Every asset with a non-zero balance."""

    async def recent_fills(self, symbol: str, since_ns: int) -> list[VenueFill]:
        """Our trades in ``symbol`` since venue time ``since_ns`` (oldest first)."""

    async def cancel(self, order: VenueOrder) -> bool:
        """Cancel an order the venue reported; True when the venue confirmed it (or it was
        already gone)."""
