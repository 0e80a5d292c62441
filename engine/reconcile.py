"""Reconciliation: before any strategy trades, and whenever an operator asks, make the node's state
the venue's, and say what differed.

A live node that starts (or restarts after a crash) knows nothing in memory, while the venue may
hold open orders of an earlier process, fills that happened while nobody listened, and balances
that moved. Every difference, and what was done about it, is a row of the event log's
``reconcile`` table (``engine.log.reconcile``); the order manager's own rows (``adopted``, fills)
and incidents follow, and a JSON report is written when a report directory is given.

**Without a store** (``store=None``), for each venue, in this order:

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

**With a store** (the database the node writes every order event and fill to, through the
``StoreService``; ``engine/store``), the store is the node's memory across processes. First the
store catches up (the recorder hands over what it buffers, the service writes it), then:

1. **Positions** of this node's strategies come back from the store (quantity, average price,
   realized P&L and fees) when memory has none; with a position in memory (a running node) the
   two are compared.
2. **Orders the store says are open**, when a run of this node (the same config name) stored
   them, are the node's own again: they go back to the order manager *before* the venue is
   asked anything, so a report the private stream delivers meanwhile finds its order. Each is
   then compared with the venue: still open there, it is kept with what it filled; no longer
   listed, the venue is asked for the order (``query_order``) and its final state is applied as
   the venue's reports would have been (``order_gone_at_venue``). Acknowledged once and unknown
   to the venue now, it is closed; still pending at start-up, it never arrived (rejected).
3. **Fills missed while down**: the venue's trades since the last stored fill (less
   ``FILL_MARGIN_NS``), per symbol. A trade of one of the node's orders whose (trade id, client
   order id) the store does not hold goes through the normal fill path (order manager,
   portfolio, risk, event log, and so the journal and the store), once (``fill_missed``); the
   store's key, and this process's own record of what it applied, keep a second reconciliation
   from applying it again.
4. **Open orders the store does not know** (``order_unknown_locally``): the policy above; an
   adopted one's trades the store does not hold are booked to its strategy.
5. **Orders nobody knows that traded** (sent just before a crash, their rows lost with it; or
   cancelled by the policy after trading): the venue is asked for the order by its id; when its
   client id has the shape of one of this node's strategies', that strategy takes it back and
   its trades go through the fill path. A trade of no order anyone can name is *unattributed*:
   reported, and it shows as drift.
6. **Balances** from the venue (free = total less what open orders hold), then the **drift
   check** per base asset the node trades (spot): the balance last stored (the session stores
   the portfolio's every few seconds, a reconciliation the venue's), plus every stored fill
   booked since, plus the fills just recovered (base fees included), must be the venue's balance
   within ``DRIFT_LOTS`` lots. Beyond it: a ``position_drift`` row, an incident, and every
   strategy trading that asset's symbols is halted with a reason that says which asset differs
   by how much. Without drift the venue's balances become the stored baseline.
7. The report ``<report_dir>/reconciliation-<UTC stamp>.json`` (every action, the counts, the
   drift) and one summary line in the system log.

``reconcile_running`` runs the same flow on a node that trades (the operator's
``POST /api/v1/positions/reconcile``); ``apply_venue_state`` is the one-order step it shares with
``POST /api/v1/orders/{id}/reconcile`` (``engine.daemon.order_sync``). Orders this process did
not send are handed to the venue's execution client (``hand_over``), so that their later
reports book only what is new.

Reconciliation talks to venues only through the contract's ``AccountClient`` and to the store
only through ``await store.query(name, ...)`` (a bare ``Store``'s own methods do as well).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.events import CANCELED, EXPIRED, FILL, REJECTED, ExecReport
from engine.logs import get_logger
from engine.model import OrderStatus, OrderType, Side, TimeInForce
from engine.orders import Order
from engine.recorder import read_manifest
from engine.venue.account import VenueFill

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.model import Instrument
    from engine.venue.account import AccountClient, VenueOrder

_log = get_logger("system")
POLICIES = ("cancel", "adopt")
#: the venue's trades are read from this long before the newest stored fill: a fill stored
#: slightly out of order, or a venue clock a little behind ours, is still seen
FILL_MARGIN_NS = 60 * 1_000_000_000
#: a balance further than this many lots from what the store explains is drift
DRIFT_LOTS = 1.0
#: (venue, symbol, trade id, client order id) of fills a reconciliation applied, per engine: a
#: second reconciliation in the same process never applies one again, whether or not the store
#: has written it yet
_APPLIED: weakref.WeakKeyDictionary[Any, set[tuple[str, str, str, str]]] = weakref.WeakKeyDictionary()


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
    # with a store
    store: bool = False
    restored_positions: list[str] = field(default_factory=list)  # "strategy venue:symbol qty"
    restored_orders: list[str] = field(default_factory=list)  # stored-open orders taken back
    gone: list[str] = field(default_factory=list)  # of those, no longer open at the venue
    unknown: list[str] = field(default_factory=list)  # open at the venue, unknown to the store
    fills_missed: list[str] = field(default_factory=list)  # trade ids applied
    fills_unattributed: list[str] = field(default_factory=list)  # trade ids of no known order
    drift: list[dict[str, Any]] = field(default_factory=list)
    halted: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)  # every reconcile row, in order
    report: str = ""  # the report's path

    def line(self) -> str:
        out = (
            f"reconciled {self.venue}: {self.open_orders} open orders at the venue, adopted {len(self.adopted)}, "
            f"cancelled {len(self.cancelled)}, cancel failed {len(self.cancel_failed)}; "
            f"{len(self.balances)} balances loaded, {self.balance_differences} differed from the config"
        )
        if self.store:
            out += (
                f"; from the store: {len(self.restored_positions)} positions, {len(self.restored_orders)} open orders "
                f"({len(self.gone)} gone at the venue), {len(self.unknown)} unknown locally, "
                f"{len(self.fills_missed)} missed fills applied, {len(self.fills_unattributed)} unattributed, "
                f"{len(self.drift)} drifts" + (f" (halted: {', '.join(self.halted)})" if self.halted else "")
            )
        return out

    def counts(self) -> dict[str, int]:
        return {
            "open_orders_at_venue": self.open_orders,
            "adopted": len(self.adopted),
            "cancelled": len(self.cancelled),
            "cancel_failed": len(self.cancel_failed),
            "balances_loaded": len(self.balances),
            "balance_differences": self.balance_differences,
            "positions_restored": len(self.restored_positions),
            "orders_restored": len(self.restored_orders),
            "order_gone_at_venue": len(self.gone),
            "order_unknown_locally": len(self.unknown),
            "fill_missed": len(self.fills_missed),
            "fill_unattributed": len(self.fills_unattributed),
            "position_drift": len(self.drift),
            "strategies_halted": len(self.halted),
        }


class _Rows:
    """``engine.log.reconcile`` that also keeps each row for the report."""

    def __init__(self, engine: Engine, res: ReconcileResult) -> None:
        self.engine = engine
        self.res = res

    def __call__(
        self,
        symbol: str,
        item: str,
        action: str,
        cid: str = "",
        void: str = "",
        local: float = math.nan,
        venue: float = math.nan,
        detail: str = "",
    ) -> None:
        ts = self.engine.clock.now()
        self.engine.log.reconcile(ts, self.res.venue, symbol, item, action, cid, void, local, venue, detail)
        self.res.actions.append(
            {
                "ts": ts,
                "symbol": symbol,
                "item": item,
                "action": action,
                "client_order_id": cid,
                "venue_order_id": void,
                "local_value": _num(local),
                "venue_value": _num(venue),
                "detail": detail,
            }
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
    engine: Engine,
    venue: str,
    account: AccountClient,
    symbols: list[str],
    policy: ReconcilePolicy,
    store: Any = None,
    report_dir: Path | None = None,
) -> ReconcileResult:
    """Reconcile one venue at start-up (see the module docstring); ``store`` is the
    ``StoreService`` (or a ``Store``), None for the reconciliation without one. The report goes to
    ``report_dir`` (with a store and none given: the run directory). Raises ``TimeoutError`` past
    the policy's timeout and whatever the account client or the store raises (the node must not
    start trading then)."""
    if store is None:
        job = _reconcile(engine, venue, account, symbols, policy)
    else:
        job = _WithStore(engine, venue, account, symbols, policy, store).run()
        if report_dir is None:
            report_dir = engine.recorder.run_dir
    return _finish(await asyncio.wait_for(job, policy.timeout_s), report_dir)


async def reconcile_running(
    engine: Engine,
    venue: str,
    account: AccountClient,
    symbols: list[str],
    policy: ReconcilePolicy,
    store: Any = None,
    report_dir: Path | None = None,
) -> ReconcileResult:
    """Reconcile a node that is trading (``scripts/reconcile_positions.sh``, ``POST
    /api/v1/positions/reconcile``): the flow "with a store" against memory, the store when there
    is one, and the venue. Orders in memory are the node's own; without a store nothing is
    restored and no drift is judged (nothing says what the balances should be)."""
    job = _WithStore(engine, venue, account, symbols, policy, store).run()
    return _finish(await asyncio.wait_for(job, policy.timeout_s), report_dir)


def _finish(res: ReconcileResult, report_dir: Path | None) -> ReconcileResult:
    if report_dir is not None:
        try:
            res.report = str(write_report(res, Path(report_dir)))
        except OSError as exc:  # the reconciliation stands; only its file is missing
            _log.error(f"reconciliation report not written in {report_dir}: {exc}")
    _log.info(res.line() + (f"; report {res.report}" if res.report else ""))
    return res


# --- without a store -------------------------------------------------------------------------------
async def _reconcile(
    engine: Engine, venue: str, account: AccountClient, symbols: list[str], policy: ReconcilePolicy
) -> ReconcileResult:
    now = engine.clock.now
    res = ReconcileResult(venue)
    row = _Rows(engine, res)
    venue_orders = [o for o in await account.open_orders(symbols) if not o.status.is_terminal]
    res.open_orders = len(venue_orders)
    keep = await _unknown_orders(engine, account, policy, venue_orders, res, row)
    await _load_balances(engine, account, res, row)
    for vo, owner in keep:
        order = _order_of(vo, owner)
        engine.oms.adopt(order, now())
        hand_over(engine, order)
        res.adopted.append(vo.client_order_id)
        row(vo.symbol, "order", "adopted", vo.client_order_id, vo.venue_order_id, math.nan, _remaining(engine, vo),
            f"strategy {owner}")  # fmt: skip
    if res.adopted or res.cancelled or res.cancel_failed or res.balance_differences:
        engine.incident(now(), venue, "", "reconcile", res.line())
    return res


async def _unknown_orders(
    engine: Engine,
    account: AccountClient,
    policy: ReconcilePolicy,
    orders: list[VenueOrder],
    res: ReconcileResult,
    row: _Rows,
) -> list[tuple[VenueOrder, str]]:
    """Open orders at the venue this node does not know: cancelled, or (to adopt) returned with
    their owner, per the policy."""
    now = engine.clock.now
    keep: list[tuple[VenueOrder, str]] = []
    for vo in orders:
        owner = owner_of(engine, vo.venue, vo.client_order_id) or policy.adopt_owner
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
            row(vo.symbol, "order", "cancelled", vo.client_order_id, vo.venue_order_id, math.nan,
                _remaining(engine, vo), why)  # fmt: skip
            continue
        res.cancel_failed.append(vo.client_order_id)
        row(vo.symbol, "order", "cancel_failed", vo.client_order_id, vo.venue_order_id, math.nan,
            _remaining(engine, vo), why)  # fmt: skip
        engine.incident(
            now(), vo.venue, vo.symbol, "reconcile", f"open order {vo.client_order_id} could not be cancelled"
        )
        fallback = owner or next(
            (sid for sid, s in engine.strategies.items() if s.venue == vo.venue and vo.symbol in s.symbols), None
        )
        if fallback is not None:
            keep.append((vo, fallback))
    return keep


async def _load_balances(engine: Engine, account: AccountClient, res: ReconcileResult, row: _Rows) -> dict[str, Any]:
    """The venue's balances into the portfolio: free is the total less what open orders hold."""
    venue = res.venue
    balances = await account.balances()
    pf = engine.portfolio
    local = pf.balance_detail().get(venue, {})
    for asset in sorted(set(balances) | set(local)):
        vb = balances.get(asset)
        total = vb.total if vb is not None else 0.0
        before = local.get(asset, {}).get("total", 0.0)
        pf.set_balance(venue, asset, total - pf.held(venue, asset))
        res.balances[asset] = total
        if not math.isclose(before, total, rel_tol=1e-12, abs_tol=1e-12):
            res.balance_differences += 1
            detail = f"free {vb.free} locked {vb.locked}" if vb is not None else "not held at the venue"
            row("", "balance", "loaded", "", "", before, total, detail)
    return balances


# --- with a store ----------------------------------------------------------------------------------
class _WithStore:
    """One reconciliation of one venue against the store (module docstring, "With a store")."""

    def __init__(
        self,
        engine: Engine,
        venue: str,
        account: AccountClient,
        symbols: list[str],
        policy: ReconcilePolicy,
        store: Any,
    ) -> None:
        self.engine = engine
        self.venue = venue
        self.account = account
        self.symbols = [s for s in symbols if (venue, s) in engine.instruments]
        self.policy = policy
        self.store = store
        self.res = ReconcileResult(venue, store=store is not None)
        self.row = _Rows(engine, self.res)
        #: base-asset change of every fill applied here, per asset: what the drift check adds
        self.recovered: dict[str, float] = {}
        #: (trade id, client order id) of those fills: the store has them too by the drift check
        self.recovered_keys: set[tuple[str, str]] = set()

    async def run(self) -> ReconcileResult:
        engine, venue, res, row = self.engine, self.venue, self.res, self.row
        now = engine.clock.now
        store = self.store
        await catch_up(engine, store)
        stored_open = await _q(store, "open_orders", venue, self.symbols)
        own, foreign = await self._split(stored_open)
        self._positions(await _q(store, "positions", venue))
        restored = [o for o in (self._restore(r) for r in own) if o is not None]
        local = [
            o for o in engine.oms.all_open() if o.venue == venue and o.symbol in self.symbols and o not in restored
        ]
        # the venue's view
        venue_orders = [o for o in await self.account.open_orders(self.symbols) if not o.status.is_terminal]
        res.open_orders = len(venue_orders)
        at_venue = {vo.client_order_id: vo for vo in venue_orders}
        since = {s: await self._since(s, stored_open) for s in self.symbols}
        fills = {s: await self.account.recent_fills(s, t) if t is not None else [] for s, t in since.items()}
        since = {s: t or 0 for s, t in since.items()}
        booked = {s: await booked_fills(engine, store, venue, s, since[s]) for s in self.symbols}
        # the node's own orders: open at the venue still, or gone
        for order in [*restored, *local]:
            vo = at_venue.pop(order.client_order_id, None)
            seen = vo if vo is not None else await _venue_order(self.account, order)
            await self._sync(order, seen, fills[order.symbol], booked[order.symbol], gone=vo is None)
        # open at the venue, unknown to the node and its store
        unknown = list(at_venue.values())
        foreign_ids = {r["client_order_id"] for r in foreign}
        for vo in unknown:
            res.unknown.append(vo.client_order_id)
            whose = "stored by another node" if vo.client_order_id in foreign_ids else "not in the store"
            row(vo.symbol, "order", "order_unknown_locally", vo.client_order_id, vo.venue_order_id, math.nan,
                _remaining(engine, vo), f"{whose}; policy {self.policy.unknown_orders}")  # fmt: skip
        keep = await _unknown_orders(engine, self.account, self.policy, unknown, res, row)
        for vo, owner in keep:
            # what it filled that no store holds comes in through the fill path below, once; the
            # rest (booked by whoever sent it) is taken as filled
            cid = vo.client_order_id
            unbooked = sum(
                f.qty
                for f in fills[vo.symbol]
                if f.venue_order_id == vo.venue_order_id and (f.trade_id, cid) not in booked[vo.symbol]
            )
            order = _order_of(vo, owner)
            order.filled = max(vo.filled - unbooked, 0)
            order.fill_cost = order.filled * order.price
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.OPEN
            engine.oms.adopt(order, now())
            res.adopted.append(cid)
            row(vo.symbol, "order", "adopted", cid, vo.venue_order_id, math.nan, _remaining(engine, vo),
                f"strategy {owner}")  # fmt: skip
            await self._sync(order, vo, fills[vo.symbol], booked[vo.symbol], gone=False)
        if store is not None:
            await self._lost_orders(fills, booked)
        # trades of no order the node knows (without a store, nothing says what it knew before)
        known = {o.venue_order_id for o in engine.oms.orders.values() if o.venue == venue and o.venue_order_id}
        for s in self.symbols if store is not None else ():
            booked_ids = {t for t, _ in booked[s]}
            for f in fills[s]:
                if f.trade_id in booked_ids or f.venue_order_id in known:
                    continue
                res.fills_unattributed.append(f.trade_id)
                row(s, "fill", "fill_unattributed", "", f.venue_order_id, math.nan, _size(engine, venue, s, f.qty),
                    f"trade {f.trade_id} {_fill_text(engine, f)} of an order this node does not know")  # fmt: skip
        t_read = time.time_ns()
        balances = await _load_balances(engine, self.account, res, row)
        if store is not None:
            await self._drift(balances, t_read)
        if res.restored_orders or res.unknown or res.fills_missed or res.fills_unattributed or res.drift:
            engine.incident(now(), venue, "", "reconcile", res.line())
        return res

    async def _lost_orders(self, fills: dict[str, list[VenueFill]], booked: dict[str, set]) -> None:
        """Trades of orders neither memory nor the store knows, not open at the venue (or just
        cancelled by the policy): an order sent in the last moment before a crash, whose rows
        never reached the journal, and that traded since. The venue is asked for the order by its
        id; when its client id is one of this node's strategies', it is taken back as that
        strategy's and its trades go through the fill path like any missed fill."""
        engine, res = self.engine, self.res
        query = getattr(self.account, "query_order_by_id", None)
        if query is None:
            return
        for s in self.symbols:
            known = {o.venue_order_id for o in engine.oms.orders.values() if o.venue == self.venue and o.venue_order_id}
            booked_ids = {t for t, _ in booked[s]}
            lost = sorted({f.venue_order_id for f in fills[s] if f.trade_id not in booked_ids} - known)
            for void in lost:
                vo = await query(s, void)
                owner = owner_of(engine, self.venue, vo.client_order_id) if vo is not None else None
                if vo is None or owner is None:
                    continue  # nobody's here: its trades are unattributed
                order = _order_of(vo, owner)
                order.filled = order.fill_cost = 0
                order.status = OrderStatus.OPEN
                engine.oms.adopt(order, engine.clock.now())
                filled = _size(engine, self.venue, s, vo.filled)
                if vo.client_order_id not in res.unknown:
                    res.unknown.append(vo.client_order_id)
                why = f"{vo.status.value} at the venue, not in the store; its trades go to strategy {owner}"
                self.row(s, "order", "order_unknown_locally", vo.client_order_id, void, math.nan, filled, why)
                await self._sync(order, vo, fills[s], booked[s], gone=True)

    # --- the store's view ----------------------------------------------------------------------
    async def _split(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Stored-open orders of this node (runs of the same config name) and of others."""
        run_dir = self.engine.recorder.run_dir
        my_run = run_dir.name if run_dir is not None else ""
        my_name = str(read_manifest(run_dir).get("name") or "") if run_dir is not None else ""
        names: dict[str, str] = {}
        for rid in {str(r.get("run_id") or "") for r in rows}:
            names[rid] = await _run_name(self.store, rid, run_dir)
        own, foreign = [], []
        for r in rows:
            rid = str(r.get("run_id") or "")
            name = names.get(rid, "")
            mine = rid == my_run or not my_name or not name or name == my_name
            (own if mine and r.get("strategy_id") in self.engine.strategies else foreign).append(r)
        return own, foreign

    def _positions(self, rows: list[dict[str, Any]]) -> None:
        """Positions of this node's strategies from the store: restored where memory has none,
        compared where it has."""
        engine, pf, now = self.engine, self.engine.portfolio, self.engine.clock.now
        restored = False
        for r in rows:
            sid, symbol = str(r.get("strategy_id")), str(r.get("symbol"))
            inst = engine.instruments.get((self.venue, symbol))
            if inst is None or sid not in engine.strategies:
                continue
            qty = inst.size_to_fixed(float(r.get("position") or 0.0))
            pos = pf.find(sid, self.venue, symbol)
            if pos is not None:
                if pos.qty != qty:
                    self.row(symbol, "position", "differs", "", "", pos.qty_float, inst.size(qty),
                             f"strategy {sid}: memory {pos.qty_float:g}, store {inst.size(qty):g}")  # fmt: skip
                continue
            if qty == 0 and not r.get("realized_pnl") and not r.get("fees"):
                continue
            pos = pf.position(sid, self.venue, symbol)
            pos.qty = qty
            pos.avg_price = float(r.get("avg_price") or 0.0) if qty else 0.0
            if not inst.inverse:  # stored in quote; an inverse position keeps them in base
                pos.realized = float(r.get("realized_pnl") or 0.0)
                pos.fees = float(r.get("fees") or 0.0)
            engine.log.position(sid, inst, pos, now(), "restored")
            restored = True
            self.res.restored_positions.append(f"{sid} {self.venue}:{symbol} {pos.qty_float:g}")
            detail = f"strategy {sid}: avg price {pos.avg_price:g}, realized {pos.realized:g}, fees {pos.fees:g}"
            self.row(symbol, "position", "restored", "", "", 0.0, pos.qty_float, detail)
        if restored and not engine.running:
            # the daily loss limit counts from this start: yesterday's P&L is not today's loss
            pf.start_day(now() // 86_400_000_000_000)

    def _restore(self, r: dict[str, Any]) -> Order | None:
        """A stored-open order back into the order manager as the node's own (None: memory has it)."""
        engine = self.engine
        cid = str(r["client_order_id"])
        if cid in engine.oms.orders:
            return None
        inst = engine.instruments[(self.venue, str(r["symbol"]))]
        try:
            side = Side.BUY if str(r.get("side")).lower() == "buy" else Side.SELL
            order_type = OrderType(str(r.get("order_type") or "LIMIT"))
            tif = TimeInForce(str(r.get("tif") or "GTC"))
            status = OrderStatus(str(r.get("status") or "open"))
        except ValueError as exc:
            self.row(str(r["symbol"]), "order", "unreadable", cid, str(r.get("venue_order_id") or ""),
                     detail=f"stored order not restored: {exc}")  # fmt: skip
            return None
        order = Order(
            cid,
            str(r["strategy_id"]),
            self.venue,
            inst.symbol,
            side,
            order_type,
            inst.price_to_fixed(float(r.get("price") or 0.0)),
            inst.size_to_fixed(float(r.get("qty") or 0.0)),
            tif,
            bool(r.get("post_only")),
        )
        order.venue_order_id = str(r.get("venue_order_id") or "")
        order.filled = inst.size_to_fixed(float(r.get("filled_qty") or 0.0))
        order.fill_cost = order.filled * order.price
        created = int(r.get("created_ns") or 0)
        order.ts_sent = created
        if status is OrderStatus.PENDING:
            order.status = OrderStatus.PENDING
        else:
            order.status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.OPEN
            order.ts_acked = created
        engine.oms.adopt(order, engine.clock.now())
        self.res.restored_orders.append(cid)
        self.row(inst.symbol, "order", "restored", cid, order.venue_order_id, math.nan, inst.size(order.leaves),
                 f"strategy {order.strategy_id}, stored open by run {r.get('run_id') or '?'}")  # fmt: skip
        return order

    async def _since(self, symbol: str, stored_open: list[dict[str, Any]]) -> int | None:
        """Where the venue's trades are read from: the newest stored fill or the oldest open order
        (stored, or in memory), whichever is older, less the margin; None: nothing to read (no
        fill stored and no order open: no trade could be one of ours that the node has not booked)."""
        last = await _q(self.store, "last_fill_ns", self.venue, symbol)
        created = [int(r.get("created_ns") or 0) for r in stored_open if r.get("symbol") == symbol]
        created += [o.ts_sent for o in self.engine.oms.all_open() if o.venue == self.venue and o.symbol == symbol]
        created = [c for c in created if c > 0]
        # every trade of the orders the node takes back is read (their ids then say what is
        # booked), and every trade since the newest stored fill (anything after it was missed)
        starts = ([int(last)] if last else []) + ([min(created)] if created else [])
        if not starts:
            return None
        return max(min(starts) - FILL_MARGIN_NS, 0)

    # --- one order ------------------------------------------------------------------------------
    async def _sync(self, order: Order, seen: Any, fills: list[VenueFill], booked: set, gone: bool) -> None:
        engine, res = self.engine, self.res
        before = order.filled

        def on_fill(f: VenueFill, qty: int) -> None:
            remember_fill(engine, order, f.trade_id)
            res.fills_missed.append(f.trade_id)
            inst = engine.instruments[(self.venue, order.symbol)]
            self.recovered[inst.base] = self.recovered.get(inst.base, 0.0) + _base_change(inst, f, qty)
            self.recovered_keys.add((f.trade_id, order.client_order_id))
            self.row(order.symbol, "fill", "fill_missed", order.client_order_id, f.venue_order_id, math.nan,
                     inst.size(qty), f"trade {f.trade_id} {_fill_text(engine, f)} applied")  # fmt: skip

        applied = await apply_venue_state(engine, self.account, order, seen, fills, booked, on_fill)
        if seen is None and order.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
            # acknowledged once, unknown to the venue now: it cannot be open here (one still
            # pending may be on its way: ``apply_venue_state`` gives it 30 s)
            engine.on_exec_report(_report(CANCELED, order, time.time_ns(), reason="unknown to the venue (reconcile)"))
            applied.append("closed: unknown to the venue")
        elif seen is None and order.status is OrderStatus.PENDING and not engine.running:
            # sent by a process that is gone, unknown to the venue since: it never arrived
            engine.on_exec_report(_report(REJECTED, order, time.time_ns(), reason="unknown to the venue (reconcile)"))
            applied.append("rejected: unknown to the venue")
        hand_over(engine, order)
        if not gone:
            return
        res.gone.append(order.client_order_id)
        inst = engine.instruments[(self.venue, order.symbol)]
        state = seen.status.value if seen is not None else "unknown to the venue"
        self.row(order.symbol, "order", "order_gone_at_venue", order.client_order_id, order.venue_order_id,
                 inst.size(before), inst.size(order.filled),
                 f"{state} at the venue, filled {inst.size(order.filled):g} of {inst.size(order.qty):g}; "
                 f"now {order.status.value}" + (f" ({'; '.join(applied)})" if applied else ""))  # fmt: skip

    # --- balances and drift --------------------------------------------------------------------
    async def _drift(self, balances: dict[str, Any], t_read: int) -> None:
        """Per base asset: stored balance + stored fills since + recovered fills = the venue's."""
        engine, venue, res = self.engine, self.venue, self.res
        now = engine.clock.now
        stored = await _q(self.store, "balances", venue) or {}
        spot = [engine.instruments[(venue, s)] for s in self.symbols]
        spot = [i for i in spot if i.kind == "spot" and not i.inverse]
        drifted: set[str] = set()
        for base in sorted({i.base for i in spot}):
            insts = [i for i in spot if i.base == base]
            tolerance = DRIFT_LOTS * max(i.size(i.lot) for i in insts)
            have = balances.get(base)
            actual = have.total if have is not None else 0.0
            base_row = stored.get(base)
            if not base_row:
                self.row("", "balance", "baseline", "", "", math.nan, actual,
                         f"{base}: no stored balance, the venue's becomes the baseline")  # fmt: skip
                continue
            baseline = float(base_row.get("total") or 0.0)
            t_base = int(base_row.get("updated_ns") or 0)
            stored_change = 0.0
            for inst in insts:
                for fl in await _q(
                    self.store, "fills", venue=venue, symbol=inst.symbol, since_ns=t_base - FILL_MARGIN_NS
                ):
                    if (str(fl.get("trade_id")), str(fl.get("client_order_id"))) in self.recovered_keys:
                        continue  # counted as recovered
                    if int(fl.get("ts") or 0) > t_base:  # booked after the balance was taken (local clock)
                        stored_change += _stored_base_change(inst, fl)
            recovered = self.recovered.get(base, 0.0)
            expected = baseline + stored_change + recovered
            diff = actual - expected
            if abs(diff) <= tolerance + 1e-12:
                continue
            drifted.add(base)
            symbols = [i.symbol for i in insts]
            unexplained = res.fills_unattributed
            reason = (
                f"position drift on {venue} {base}: the venue holds {actual:.8g}, the store explains {expected:.8g} "
                f"(stored balance {baseline:.8g} + stored fills {stored_change:+.8g} "
                f"+ recovered fills {recovered:+.8g}), off by {diff:+.8g} {base} (tolerance {tolerance:g})"
                + (f"; unattributed trades {', '.join(unexplained)}" if unexplained else "")
            )
            res.drift.append(
                {
                    "asset": base,
                    "symbols": symbols,
                    "venue_balance": actual,
                    "expected": expected,
                    "stored_balance": baseline,
                    "stored_fills": stored_change,
                    "recovered_fills": recovered,
                    "difference": diff,
                    "tolerance": tolerance,
                }
            )
            self.row(symbols[0] if len(symbols) == 1 else "", "position", "position_drift", "", "", expected, actual,
                     reason)  # fmt: skip
            engine.incident(now(), venue, symbols[0] if len(symbols) == 1 else "", "reconcile", reason, diff)
            for sid, s in engine.strategies.items():
                if s.venue == venue and any(sym in s.symbols for sym in symbols) and sid not in res.halted:
                    engine.halt_strategy(sid, reason, now())
                    res.halted.append(sid)
        if drifted:
            return  # the baseline stays: the drift is there until someone resolves it
        keep = {a: (b.free, b.locked) for a, b in balances.items()}
        await _q(self.store, "put_balances", venue, keep, t_read)


# --- one order against the venue (restart, ``POST /api/v1/orders/{id}/reconcile``) ------------------
async def booked_fills(engine: Engine, store: Any, venue: str, symbol: str, since_ns: int) -> set[tuple[str, str]]:
    """(trade id, client order id) of the fills of ``symbol`` the node has booked since
    ``since_ns``: what the store holds once it has taken everything handed to it, and what a
    reconciliation of this process applied (``remember_fill``)."""
    got: set[tuple[str, str]] = set()
    if store is not None:
        await catch_up(engine, store)
        got = set(await _q(store, "fill_trade_ids", venue, symbol, since_ns))
    return got | {(t, c) for v, s, t, c in _APPLIED.get(engine, ()) if v == venue and s == symbol}


def remember_fill(engine: Engine, order: Order, trade_id: str) -> None:
    """A fill a reconciliation applied: never applied again by this process."""
    _APPLIED.setdefault(engine, set()).add((order.venue, order.symbol, trade_id, order.client_order_id))


async def apply_venue_state(
    engine: Engine,
    account: Any,
    order: Order,
    seen: VenueOrder | None,
    fills: list[VenueFill] | None = None,
    booked: set[tuple[str, str]] | None = None,
    on_fill: Callable[[VenueFill, int], None] | None = None,
) -> list[str]:
    """Feed the order manager what the venue knows about ``order`` and it does not: missing fills
    from the venue's trade list (``fills``, read here when None), then the terminal state. Reports
    go through ``on_exec_report`` like the venue's own, so the portfolio, risk and event log follow.

    With ``booked`` (the (trade id, client order id) pairs the store holds), trades are matched by
    id: each one not booked is applied once and added to ``booked``. Without it they are matched
    by quantity: those beyond what the order has booked, oldest first. ``on_fill`` hears of each
    fill applied (the trade and the quantity). Returns what was applied, in words."""
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
        if fills is None:
            fills = await account.recent_fills(order.symbol, max((order.ts_sent or now) - 60_000_000_000, 0))
        mine = [f for f in fills if f.venue_order_id == (order.venue_order_id or seen.venue_order_id)]
        missing = seen.filled - order.filled
        skip = order.filled if booked is None else 0
        if booked is not None:  # what is booked counts even where the order's own row lags behind
            missing = seen.filled - max(
                order.filled, sum(f.qty for f in mine if (f.trade_id, order.client_order_id) in booked)
            )
        for f in mine:
            if missing <= 0:
                break
            if booked is not None and (f.trade_id, order.client_order_id) in booked:
                continue
            take = f.qty
            if skip >= take:  # matched by quantity: the venue's trades oldest first
                skip -= take
                continue
            take = min(take - skip, missing)
            skip = 0
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
                    fee=f.fee * take / f.qty if f.qty else f.fee,
                    fee_asset=f.fee_asset,
                    trade_id=f.trade_id,
                )
            )
            if booked is not None:
                booked.add((f.trade_id, order.client_order_id))
            if on_fill is not None:
                on_fill(f, take)
            missing -= take
            applied.append(f"fill {f.trade_id}")
        if booked is not None and missing > 0:
            # filled at the venue beyond the trades it lists (older than the window read): money
            # moved, so the rest is booked at the order's price, under an id of its own
            trade_id = f"reconcile-{order.venue_order_id or order.client_order_id}-{seen.filled}"
            rest = VenueFill(order.venue, order.symbol, order.client_order_id, order.venue_order_id, trade_id,
                             order.side, order.price, missing, 0.0, "", "maker", now)  # fmt: skip
            engine.on_exec_report(
                ExecReport(FILL, order.venue, order.symbol, order.client_order_id, now, now, order.venue_order_id,
                           order.price, missing, "maker", 0.0, "", trade_id)
            )  # fmt: skip
            booked.add((trade_id, order.client_order_id))
            if on_fill is not None:
                on_fill(rest, missing)
            applied.append(f"fill {trade_id} (not in the venue's trade list: at the order's price, fee unknown)")
    if not order.status.is_terminal and seen.status.is_terminal and seen.status is not OrderStatus.FILLED:
        kind = {OrderStatus.CANCELED: CANCELED, OrderStatus.EXPIRED: EXPIRED, OrderStatus.REJECTED: REJECTED}
        engine.on_exec_report(_report(kind[seen.status], order, now, reason="reconcile"))
        applied.append(seen.status.value)
    elif order.status is OrderStatus.PENDING and seen.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
        engine.on_exec_report(_report("accepted", order, now))
        applied.append("accepted")
    return applied


def hand_over(engine: Engine, order: Order) -> None:
    """Tell the venue's execution client what an order it did not send (or whose fills came from
    reconciliation) has filled, so that its later reports book only what is new: a client that
    counts an order's fills from its cumulative quantity would otherwise book them again. Venues
    whose client has no ``track_adopted`` are left as they are."""
    if order.status.is_terminal:
        return
    hook = getattr(engine.venues.get(order.venue), "track_adopted", None)
    if hook is not None:
        hook(order)


async def _venue_order(account: Any, order: Order) -> VenueOrder | None:
    """The venue's view of one order: its own query when the account client has one, else the
    open orders of the symbol (None: not open there, or unknown)."""
    query = getattr(account, "query_order", None)
    if query is not None:
        return await query(order.symbol, order.client_order_id)
    for vo in await account.open_orders([order.symbol]):
        if vo.client_order_id == order.client_order_id:
            return vo
    return None


venue_order = _venue_order


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


# --- the report ------------------------------------------------------------------------------------
def write_report(res: ReconcileResult, report_dir: Path) -> Path:
    """``reconciliation-<UTC stamp>.json`` in ``report_dir``: every action, the counts, the drift."""
    report_dir.mkdir(parents=True, exist_ok=True)
    t = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f"{int(t % 1 * 1000):03d}Z"
    path = report_dir / f"reconciliation-{stamp}.json"
    if path.exists():
        path = report_dir / f"reconciliation-{stamp}-{res.venue}.json"
    doc = {
        "venue": res.venue,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z",
        "store": res.store,
        "summary": res.line(),
        "counts": res.counts(),
        "drift": res.drift,
        "halted": res.halted,
        "result": {k: v for k, v in asdict(res).items() if k not in ("actions", "drift", "halted", "report")},
        "actions": res.actions,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


# --- helpers ---------------------------------------------------------------------------------------
_NOTHING: dict[str, Any] = {"open_orders": [], "positions": [], "balances": {}, "fills": [], "fill_trade_ids": set()}


async def _q(store: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """A store read or write: through the ``StoreService``'s own loop, or a bare ``Store``'s method;
    without a store (a running node that stores nothing), what an empty one would answer."""
    if store is None:
        return _NOTHING.get(name)
    query = getattr(store, "query", None)
    if query is not None:
        return await query(name, *args, **kwargs)
    return await getattr(store, name)(*args, **kwargs)


async def catch_up(engine: Engine, store: Any) -> None:
    """Wait until the store has every row the node has recorded: the recorder hands over what it
    buffers (it does so every second, and right after a fill), then the ``StoreService`` writes
    what it was handed (a bare store has nothing pending)."""
    engine.recorder.handoff()
    flush = getattr(store, "flush", None) if store is not None else None
    if flush is not None and await flush(10.0) is False:
        _log.warning("reconcile: the store has not taken every row handed to it within 10 s; reading it anyway")


async def _run_name(store: Any, run_id: str, run_dir: Path | None) -> str:
    """The config name of the run that stored a row: the store's ``strategy_runs`` when it can say
    (``Store.run``), else the run's manifest beside this run's directory; "" when unknown."""
    if not run_id:
        return ""
    with contextlib.suppress(AttributeError, TypeError):  # a store without runs: the manifest says
        row = await _q(store, "run", run_id)
        if isinstance(row, dict) and row.get("name"):
            return str(row["name"])
    if run_dir is not None:
        m = read_manifest(run_dir.parent / run_id)
        config = m.get("config")
        return str(m.get("name") or (config.get("name") if isinstance(config, dict) else "") or "")
    return ""


def _base_change(inst: Instrument, f: VenueFill, qty: int) -> float:
    """What a (part of a) venue fill did to the base balance: the quantity, less a fee taken in base."""
    size = inst.size(qty) * inst.contract_size
    change = size if f.side is Side.BUY else -size
    if f.fee_asset == inst.base and f.price:
        fee = f.fee * (qty / f.qty if f.qty else 1.0)
        change -= fee / inst.price(f.price)
    return change


def _stored_base_change(inst: Instrument, fl: dict[str, Any]) -> float:
    size = float(fl.get("qty") or 0.0) * inst.contract_size
    change = size if str(fl.get("side")).lower() == "buy" else -size
    price = float(fl.get("price") or 0.0)
    if fl.get("fee_asset") == inst.base and price > 0:
        change -= float(fl.get("fee") or 0.0) / price
    return change


def _fill_text(engine: Engine, f: VenueFill) -> str:
    inst = engine.instruments.get((f.venue, f.symbol))
    side = "buy" if f.side is Side.BUY else "sell"
    if inst is None:
        return f"{side} {f.qty}@{f.price}"
    return f"{side} {inst.size(f.qty):g}@{inst.price(f.price):g}"


def _size(engine: Engine, venue: str, symbol: str, qty: int) -> float:
    inst = engine.instruments.get((venue, symbol))
    return inst.size(qty) if inst is not None else float(qty)


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


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
