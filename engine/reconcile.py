"""Start-up reconciliation: before any strategy trades, make the node's state the venue's.

A live node that starts (or restarts after a crash) knows no orders, while the venue may hold
open orders of an earlier process and balances that moved while nobody watched. For each venue,
in this order:

1. **Open orders** on the node's symbols. Each is *adopted* (tracked by the order manager like an
   order of its own, its balance held, reported on from then on) or *cancelled*, per
   ``ReconcilePolicy.unknown_orders``. An adopted order belongs to the strategy its client id
   names (``<strategy>-<session>-<n>``, the order manager's format); one no strategy's id
   matches goes to ``adopt_owner`` when set, else it is cancelled: nobody would manage it. A
   cancel the venue refuses leaves the order open there, so it is adopted after all and an
   incident says so: the node never trades beside an order it does not know.
2. **Balances**, after the cancels (they free what the orders locked): the venue's totals replace
   the config's starting balances; every asset that differs is a row.
3. Adopted orders then hold their part of those balances, as any open order does.

Every difference, and what was done about it, is a row of the event log's ``reconcile`` table;
the order manager's ``adopted`` rows and the ``reconcile`` incidents follow. Reconciliation
talks to venues only through the contract's ``AccountClient``.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.logs import get_logger
from engine.model import OrderStatus
from engine.orders import Order

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.venue.account import AccountClient, VenueOrder

_log = get_logger("system")
POLICIES = ("cancel", "adopt")


@dataclass(frozen=True)
class ReconcilePolicy:
    unknown_orders: str = "cancel"  # cancel | adopt
    adopt_owner: str | None = None  # strategy for adopted orders whose client id names none
    timeout_s: float = 30.0  # for the whole reconciliation of one venue

    def __post_init__(self) -> None:
        if self.unknown_orders not in POLICIES:
            raise ValueError(f"unknown_orders must be one of {POLICIES}, got {self.unknown_orders!r}")


@dataclass
class ReconcileResult:
    venue: str
    open_orders: int = 0
    adopted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    cancel_failed: list[str] = field(default_factory=list)
    balances: dict[str, float] = field(default_factory=dict)
    balance_differences: int = 0

    def line(self) -> str:
        return (
            f"reconciled {self.venue}: {self.open_orders} open orders at the venue, adopted {len(self.adopted)}, "
            f"cancelled {len(self.cancelled)}, cancel failed {len(self.cancel_failed)}; "
            f"{len(self.balances)} balances loaded, {self.balance_differences} differed from the config"
        )


def owner_of(engine: Engine, venue: str, cid: str) -> str | None:
    """The strategy whose client ids ``cid`` has the shape of, or None."""
    rules = engine.oms.profiles[venue].client_ids
    best = None
    for sid, strategy in engine.strategies.items():
        if strategy.venue != venue:
            continue
        prefix = rules.prefix(sid)
        if cid.startswith(prefix + "-") and (best is None or len(prefix) > len(rules.prefix(best))):
            best = sid
    return best


async def reconcile_venue(
    engine: Engine, venue: str, account: AccountClient, symbols: list[str], policy: ReconcilePolicy
) -> ReconcileResult:
    """Reconcile one venue (see the module docstring); raises ``TimeoutError`` past the policy's
    timeout and whatever the account client raises (the node must not start trading then)."""
    return await asyncio.wait_for(_reconcile(engine, venue, account, symbols, policy), policy.timeout_s)


async def _reconcile(
    engine: Engine, venue: str, account: AccountClient, symbols: list[str], policy: ReconcilePolicy
) -> ReconcileResult:
    log = engine.log
    now = engine.clock.now
    res = ReconcileResult(venue)
    venue_orders = [o for o in await account.open_orders(symbols) if not o.status.is_terminal]
    res.open_orders = len(venue_orders)
    keep: list[tuple[VenueOrder, str]] = []
    for vo in venue_orders:
        owner = owner_of(engine, venue, vo.client_order_id) or policy.adopt_owner
        if policy.unknown_orders == "adopt" and owner is not None and owner in engine.strategies:
            keep.append((vo, owner))
            continue
        why = "policy cancel" if policy.unknown_orders == "cancel" else "no strategy owns it"
        try:
            ok = await account.cancel(vo)
        except Exception as exc:  # a refusal must not stop the node from knowing the order
            ok = False
            why = f"{why}; cancel failed: {exc}"
        if ok:
            res.cancelled.append(vo.client_order_id)
            log.reconcile(
                now(), venue, vo.symbol, "order", "cancelled", vo.client_order_id, vo.venue_order_id,
                math.nan, _remaining(engine, vo), why,
            )  # fmt: skip
            continue
        res.cancel_failed.append(vo.client_order_id)
        log.reconcile(
            now(), venue, vo.symbol, "order", "cancel_failed", vo.client_order_id, vo.venue_order_id,
            math.nan, _remaining(engine, vo), why,
        )  # fmt: skip
        engine.incident(now(), venue, vo.symbol, "reconcile", f"open order {vo.client_order_id} could not be cancelled")
        fallback = owner or next(
            (sid for sid, s in engine.strategies.items() if s.venue == venue and vo.symbol in s.symbols), None
        )
        if fallback is not None:
            keep.append((vo, fallback))
    balances = await account.balances()
    local = engine.portfolio.balances().get(venue, {})
    for asset in sorted(set(balances) | set(local)):
        vb = balances.get(asset)
        total = vb.total if vb is not None else 0.0
        before = local.get(asset, 0.0)
        engine.portfolio.set_balance(venue, asset, total)
        res.balances[asset] = total
        if not math.isclose(before, total, rel_tol=1e-12, abs_tol=1e-12):
            res.balance_differences += 1
            detail = f"free {vb.free} locked {vb.locked}" if vb is not None else "not held at the venue"
            log.reconcile(now(), venue, "", "balance", "loaded", "", "", before, total, detail)
    for vo, owner in keep:
        order = _order_of(vo, owner)
        engine.oms.adopt(order, now())
        res.adopted.append(vo.client_order_id)
        log.reconcile(
            now(), venue, vo.symbol, "order", "adopted", vo.client_order_id, vo.venue_order_id,
            math.nan, _remaining(engine, vo), f"strategy {owner}",
        )  # fmt: skip
    if res.adopted or res.cancelled or res.cancel_failed or res.balance_differences:
        engine.incident(now(), venue, "", "reconcile", res.line())
    _log.info(res.line())
    return res


def _remaining(engine: Engine, vo: VenueOrder) -> float:
    inst = engine.instruments.get((vo.venue, vo.symbol))
    return (vo.qty - vo.filled) / 10**inst.size_scale if inst is not None else math.nan


def _order_of(vo: VenueOrder, owner: str) -> Order:
    order = Order(
        vo.client_order_id,
        owner,
        vo.venue,
        vo.symbol,
        vo.side,
        vo.order_type,
        vo.price,
        vo.qty,
        vo.tif,
        vo.post_only,
    )
    order.venue_order_id = vo.venue_order_id
    order.filled = vo.filled
    order.status = OrderStatus.PARTIALLY_FILLED if vo.filled else OrderStatus.OPEN
    order.fill_cost = vo.filled * vo.price
    order.ts_acked = vo.ts_created
    return order
