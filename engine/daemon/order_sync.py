"""Reconciling one order with its venue (``POST /api/v1/orders/{id}/reconcile``, and the order
manager's restart): the venue is asked about the order (its own order query when the account
client has one, else its open orders) and what it knows that the order manager does not is fed
back as the venue's reports would have been: missing fills from the venue's trade list, then the
final state. The portfolio, risk and event log follow as for any report."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from engine.daemon.bridge import OpError
from engine.daemon.views import order_doc
from engine.events import CANCELED, EXPIRED, FILL, REJECTED, ExecReport
from engine.logs import get_logger
from engine.model import OrderStatus

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.orders import Order

_log = get_logger("system")
VENUE_WAIT_S = 5.0


def _doc(engine: Engine, order: Order) -> dict[str, Any]:
    return order_doc(order, engine.instruments.get((order.venue, order.symbol)))


async def reconcile_order(engine: Engine, node: Any, mode: str, order: Order) -> dict[str, Any]:
    """Ask the order's venue about it and apply what it says (``_apply``); the order's document
    with a ``reconcile`` part. Paper: the simulated venue shares the order's state, so this only
    says whether it rests there."""
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
        return doc
    adapter = node.adapters.get(order.venue)
    if adapter is None:
        raise OpError(409, f"Order {order.client_order_id}: no venue connection for {order.venue}", "order_id")
    account = adapter.account()
    try:
        async with asyncio.timeout(VENUE_WAIT_S):
            seen = await _venue_order(account, order)
            applied = await _apply(engine, account, order, seen)
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
    _log.info("order %s reconciled with %s: %s", order.client_order_id, order.venue, applied or "no change")
    return doc


async def _apply(engine: Engine, account: Any, order: Order, seen: Any) -> list[str]:
    """Feed the order manager what the venue knows and it does not: missing fills (from the
    venue's trade list), then the terminal state. Reports go through ``on_exec_report``
    like the venue's own, so the portfolio, risk and event log follow."""
    applied: list[str] = []
    now = time.time_ns()
    if seen is None:
        if not order.status.is_terminal and order.ts_acked == 0 and now - (order.ts_sent or now) > 30e9:
            # never acknowledged and unknown to the venue: it never arrived
            engine.on_exec_report(_report(REJECTED, order, now, reason="unknown to the venue (reconcile)"))
            applied.append("rejected: unknown to the venue")
        return applied
    if seen.venue_order_id and not order.venue_order_id:
        order.venue_order_id = seen.venue_order_id
    if seen.filled > order.filled:
        fills = await account.recent_fills(order.symbol, max((order.ts_sent or now) - 60_000_000_000, 0))
        mine = [f for f in fills if f.venue_order_id == (order.venue_order_id or seen.venue_order_id)]
        missing = seen.filled - order.filled
        # the venue's trades oldest first: those beyond what we booked are the missing ones
        skip = order.filled
        for f in mine:
            take = f.qty
            if skip >= take:
                skip -= take
                continue
            take -= skip
            skip = 0
            take = min(take, missing)
            if take <= 0:
                break
            engine.on_exec_report(
                ExecReport(
                    kind=FILL,
                    venue=order.venue,
                    symbol=order.symbol,
                    client_order_id=order.client_order_id,
                    ts_event=f.ts_event,
                    ts_recv=now,
                    venue_order_id=f.venue_order_id,
                    price=f.price,
                    qty=take,
                    liquidity=f.liquidity,
                    fee=f.fee,
                    fee_asset=f.fee_asset,
                    trade_id=f.trade_id,
                )
            )
            missing -= take
            applied.append(f"fill {f.trade_id}")
    if not order.status.is_terminal and seen.status.is_terminal and seen.status is not OrderStatus.FILLED:
        kind = {OrderStatus.CANCELED: CANCELED, OrderStatus.EXPIRED: EXPIRED, OrderStatus.REJECTED: REJECTED}
        engine.on_exec_report(_report(kind[seen.status], order, now, reason="reconcile"))
        applied.append(seen.status.value)
    elif order.status is OrderStatus.PENDING and seen.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
        engine.on_exec_report(_report("accepted", order, now))
        applied.append("accepted")
    return applied


def _report(kind: str, order: Order, now: int, reason: str = "") -> ExecReport:
    return ExecReport(
        kind=kind,
        venue=order.venue,
        symbol=order.symbol,
        client_order_id=order.client_order_id,
        ts_event=now,
        ts_recv=now,
        venue_order_id=order.venue_order_id,
        reason=reason,
    )


def _size(engine: Engine, order: Order, qty: int) -> float:
    inst = engine.instruments.get((order.venue, order.symbol))
    return inst.size(qty) if inst is not None else float(qty)


async def _venue_order(account: Any, order: Order) -> Any:
    """The venue's view of one order: its own query when the account client has one, else the
    open orders of the symbol (None: not open there, or unknown)."""
    query = getattr(account, "query_order", None)
    if query is not None:
        return await query(order.symbol, order.client_order_id)
    for vo in await account.open_orders([order.symbol]):
        if vo.client_order_id == order.client_order_id:
            return vo
    return None
