"""Reconciling one order with its venue (``POST /api/v1/orders/{id}/reconcile``, and the order
manager's restart): the venue is asked about the order (its own order query when the account
client has one, else its open orders) and what it knows that the order manager does not is fed
back as the venue's reports would have been: missing fills from the venue's trade list, then the
final state (``engine.reconcile.apply_venue_state``, the restart's reconciliation uses the same).
The portfolio, risk and event log follow as for any report, and so does the store: with one, the
fills it already holds are matched by trade id (never applied twice), and the answer says what
the store held for the order before and after."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from engine.daemon.bridge import OpError
from engine.daemon.views import order_doc
from engine.logs import get_logger
from engine.reconcile import apply_venue_state, booked_fills, catch_up, hand_over, remember_fill, venue_order

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.orders import Order

_log = get_logger("system")
VENUE_WAIT_S = 5.0
#: the venue's trades of an order are read from this long before it was sent
TRADES_BEFORE_NS = 60_000_000_000
_STORED = ("status", "filled_qty", "leaves_qty", "venue_order_id", "updated_ns")


def _doc(engine: Engine, order: Order) -> dict[str, Any]:
    return order_doc(order, engine.instruments.get((order.venue, order.symbol)))


async def reconcile_order(engine: Engine, node: Any, mode: str, order: Order, store: Any = None) -> dict[str, Any]:
    """Ask the order's venue about it and apply what it says; the order's document with a
    ``reconcile`` part (and, with a store, ``reconcile.store``: its row before and after). Paper:
    the simulated venue shares the order's state, so this only says whether it rests there."""
    before = _doc(engine, order)
    if mode == "paper":
        venue = node.sim.venues.get(order.venue) if node.sim is not None else None
        slot = venue._slot_of.get(order.client_order_id) if venue is not None else None
        doc = _doc(engine, order)
        doc["reconcile"] = {
            "venue": "simulated",
            "resting_at_venue": slot is not None,
            "changed": False,
            "detail": "the simulated venue and the order manager share the order's state",
        }
        if store is not None:
            row = await _stored(engine, store, order)
            doc["reconcile"]["store"] = {"before": row, "after": row, "changed": False}
        return doc
    adapter = node.adapters.get(order.venue)
    if adapter is None:
        raise OpError(409, f"Order {order.client_order_id}: no venue connection for {order.venue}", "order_id")
    account = adapter.account()
    stored_before: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(VENUE_WAIT_S):
            booked = None
            if store is not None:
                since = max((order.ts_sent or order.ts_last) - TRADES_BEFORE_NS, 0)
                booked = await booked_fills(engine, store, order.venue, order.symbol, since)
                stored_before = await _stored(engine, store, order)
            seen = await venue_order(account, order)
            applied = await apply_venue_state(
                engine,
                account,
                order,
                seen,
                booked=booked,
                on_fill=lambda f, _q: remember_fill(engine, order, f.trade_id),
            )
            if applied:
                hand_over(engine, order)
    except TimeoutError:
        raise OpError(504, f"{order.venue} did not answer within {VENUE_WAIT_S:g}s", "order_id") from None
    except OpError:
        raise
    except Exception as exc:
        raise OpError(502, f"{order.venue} refused the order query: {exc}", "order_id") from None
    doc = _doc(engine, order)
    doc["reconcile"] = {
        "venue_status": seen.status.value if seen is not None else "unknown",
        "venue_filled_quantity": _size(engine, order, seen.filled) if seen is not None else None,
        "changed": doc != before,
        "applied": applied,
    }
    if store is not None:
        try:
            after = await _stored(engine, store, order)
        except Exception as exc:  # the venue's answer stands; the store's view is what is missing
            after = {"error": f"store not read: {exc}"}
        doc["reconcile"]["store"] = {"before": stored_before, "after": after, "changed": stored_before != after}
    _log.info("order %s reconciled with %s: %s", order.client_order_id, order.venue, applied or "no change")
    return doc


async def _stored(engine: Engine, store: Any, order: Order) -> dict[str, Any] | None:
    """The store's row of the order once it has everything recorded (the fields an operator
    compares), None when it has none."""
    await catch_up(engine, store)
    row = await store.query("order", order.venue, order.client_order_id)
    return {k: row.get(k) for k in _STORED} if row else None


def _size(engine: Engine, order: Order, qty: int) -> float:
    inst = engine.instruments.get((order.venue, order.symbol))
    return inst.size(qty) if inst is not None else float(qty)
