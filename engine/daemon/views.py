"""The JSON documents the operator API returns for the engine's objects (orders, positions,
books), in the shapes ``docs/daemon-contract.md`` fixes: floats in the instrument's units,
times ISO-8601 UTC with microseconds and ``Z``, statuses in the guide's words."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

from engine.model import OrderStatus

if TYPE_CHECKING:
    from engine.book import Book
    from engine.model import Instrument
    from engine.orders import Order
    from engine.portfolio import Position

#: the API's order statuses; ``canceled`` is accepted in filters as the engine's spelling
ORDER_STATUSES = ("pending", "open", "partially_filled", "filled", "cancelled", "rejected", "expired")


def iso(ns: int) -> str | None:
    """ns since the epoch as ``2026-12-07T19:50:41.123456Z`` (None for 0: never)."""
    if not ns:
        return None
    t = dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status_name(status: OrderStatus) -> str:
    return "cancelled" if status is OrderStatus.CANCELED else status.value


def parse_status(text: str) -> OrderStatus | None:
    t = text.strip().lower()
    if t in ("cancelled", "canceled"):
        return OrderStatus.CANCELED
    for s in OrderStatus:
        if s.value == t:
            return s
    return None


def order_doc(order: Order, inst: Instrument | None) -> dict[str, Any]:
    price = inst.price(order.price) if inst is not None else float(order.price)
    qty = inst.size(order.qty) if inst is not None else float(order.qty)
    filled = inst.size(order.filled) if inst is not None else float(order.filled)
    avg = inst.price(order.avg_fill_price) if inst is not None and order.filled else None
    created = order.ts_sent or order.ts_decided
    return {
        "order_id": order.client_order_id,
        "client_order_id": order.client_order_id,
        "exchange_order_id": order.venue_order_id or None,
        "exchange": order.venue,
        "symbol": order.symbol,
        "strategy_id": order.strategy_id,
        "side": order.side.name.lower(),
        "type": order.order_type.value,
        "price": price if order.price else None,
        "quantity": qty,
        "filled_quantity": filled,
        "avg_fill_price": avg,
        "status": status_name(order.status),
        "cancel_requested": order.cancel_requested,
        "created_at": iso(created),
        "updated_at": iso(order.ts_last or created),
        "acknowledged_at": iso(order.ts_acked),
        "error_message": order.reason or None,
    }


def stored_order_doc(row: dict[str, Any]) -> dict[str, Any]:
    """An order the order manager no longer holds (archived, or of an earlier process), from the
    store's ``orders`` row, in ``order_doc``'s shape; ``source`` says where it came from."""
    status = str(row.get("status") or "")
    created, updated = int(row.get("created_ns") or 0), int(row.get("updated_ns") or 0)
    return {
        "order_id": row["client_order_id"],
        "client_order_id": row["client_order_id"],
        "exchange_order_id": row.get("venue_order_id") or None,
        "exchange": row["venue"],
        "symbol": row["symbol"],
        "strategy_id": row["strategy_id"],
        "side": str(row.get("side") or "").lower(),
        "type": row.get("order_type"),
        "price": row.get("price") or None,
        "quantity": row.get("qty"),
        "filled_quantity": row.get("filled_qty"),
        "avg_fill_price": None,  # the fills table has them: GET /api/v1/fills would
        "status": "cancelled" if status == OrderStatus.CANCELED.value else status,
        "cancel_requested": False,
        "created_at": iso(created),
        "updated_at": iso(updated or created),
        "acknowledged_at": None,
        "error_message": row.get("reason") or None,
        "source": "database",
    }


def position_doc(strategy_id: str, pos: Position) -> dict[str, Any]:
    return {
        "symbol": pos.symbol,
        "strategy": strategy_id,
        "strategy_id": strategy_id,
        "exchange": pos.venue,
        "quantity": pos.qty_float,
        "avg_price": pos.avg_price,
        "mark_price": finite(pos.mark),
        "notional_usd": finite(pos.notional),
        "realized_pnl": finite(pos.realized_quote),
        "unrealized_pnl": finite(pos.unrealized_quote),
        "fees": finite(pos.fees_quote),
    }


def book_doc(book: Book, depth: int, reason: str) -> dict[str, Any]:
    return {
        "exchange": book.venue,
        "symbol": book.symbol,
        "valid": book.valid,
        "reason": reason,
        "update_id": book.update_id,
        "ts": iso(book.ts_recv),
        "bids": [[p, q] for p, q in book.bids(depth)],
        "asks": [[p, q] for p, q in book.asks(depth)],
    }


def finite(x: float) -> float | None:
    return x if isinstance(x, int | float) and math.isfinite(x) else None
