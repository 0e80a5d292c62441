"""Orders and the order manager (OMS): client ids, rounding, filters, the state machine."""

from __future__ import annotations

from engine.model import OrderStatus, OrderType, Side, TimeInForce


class Order:
    """One order's mutable state, owned by the order manager. Prices/quantities fixed-point."""

    __slots__ = (
        "cancel_requested",
        "client_order_id",
        "fill_cost",
        "filled",
        "held",
        "hold_asset",
        "mid_at_decision",
        "order_type",
        "post_only",
        "price",
        "qty",
        "reason",
        "replaces",
        "side",
        "status",
        "strategy_id",
        "symbol",
        "tif",
        "ts_acked",
        "ts_decided",
        "ts_last",
        "ts_sent",
        "ts_tick",
        "venue",
        "venue_order_id",
    )

    def __init__(
        self,
        client_order_id: str,
        strategy_id: str,
        venue: str,
        symbol: str,
        side: Side,
        order_type: OrderType,
        price: int,
        qty: int,
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
    ) -> None:
        self.client_order_id = client_order_id
        self.strategy_id = strategy_id
        self.venue = venue
        self.symbol = symbol
        self.side = side
        self.order_type = order_type
        self.tif = tif
        self.price = price
        self.qty = qty
        self.filled = 0
        self.status = _PENDING
        self.venue_order_id = ""
        self.post_only = post_only
        self.ts_tick = 0
        self.ts_decided = 0
        self.ts_sent = 0
        self.ts_acked = 0
        self.ts_last = 0
        self.reason = ""
        self.mid_at_decision = float("nan")
        self.fill_cost = 0  # sum(price * qty) of fills, for the average fill price
        self.cancel_requested = False
        self.replaces = ""  # client id of the order this one replaces (cancel-replace modify)
        # the balance this order holds while open (``Portfolio.reserve``): asset and amount left
        self.hold_asset = ""
        self.held = 0.0

    @property
    def leaves(self) -> int:
        return self.qty - self.filled

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal

    @property
    def avg_fill_price(self) -> int:
        return self.fill_cost // self.filled if self.filled else 0

    def __repr__(self) -> str:
        return (
            f"Order({self.client_order_id} {self.side.name} {self.qty}@{self.price} "
            f"{self.venue}:{self.symbol} {self.status.value} filled={self.filled})"
        )


_PENDING = OrderStatus.PENDING  # a global: a member read through the Enum class is slow on 3.11
