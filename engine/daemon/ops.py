"""The operations the operator API exposes, run on the trading loop against the live session
(``docs/daemon-contract.md`` lists each op, its args and its result).

Each op is one short synchronous call, except those that must hear from the venue (an order's
cancel acknowledgement, a reconcile, a component restart that re-reads the account): they
return a coroutine the bridge awaits, bounded by ``VENUE_WAIT_S``. Bad input is an ``OpError``
400 naming the field; an unknown exchange, symbol, order, strategy or component a 404 in the
guide's words.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.daemon.archive import archive_orders
from engine.daemon.bridge import OpError
from engine.daemon.config import LOG_LEVELS
from engine.daemon.order_sync import VENUE_WAIT_S, reconcile_order
from engine.daemon.views import (
    ORDER_STATUSES,
    book_doc,
    finite,
    iso,
    order_doc,
    parse_status,
    position_doc,
    stored_order_doc,
)
from engine.errors import ConfigError
from engine.logs import get_logger
from engine.reconcile import ReconcilePolicy, catch_up, reconcile_running
from engine.risk import RiskLimits
from engine.strategy_params import ParamError

if TYPE_CHECKING:
    from engine.daemon.telemetry import Telemetry
    from engine.engine import Engine
    from engine.orders import Order
    from engine.runners.session import Session

_log = get_logger("system")
MAX_ORDERS = 10_000
MAX_DEPTH = 5000
#: a reconciliation of positions asked for by the operator waits this long for the venue and the store
RECONCILE_WAIT_S = 50.0
COMPONENTS = ("position_manager", "market_data", "order_manager", "api")
#: the guide's name for the system-wide position limit (``POST /risk/limits``, §4.1, §9.3): all
#: strategies' gross position together. In a strategy's own ``risk_limits`` the same name is that
#: strategy's ``max_position_usd`` (``engine.risk.ALIASES``).
GLOBAL_ALIASES = {"position_limit_usd": "max_global_position_usd"}


class Ops:
    """``dispatch(op, args)`` for the bridge. ``reload`` and ``restart_api`` are the service's."""

    def __init__(
        self,
        session: Session,
        mode: str,
        version: str,
        telemetry: Telemetry,
        archive_dir: Any,
        reload: Callable[[], dict[str, Any]],
        restart_api: Callable[[], bool],
        extra_status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.session = session
        self.mode = mode
        self.version = version
        self.telemetry = telemetry
        self.archive_dir = archive_dir
        self.reload = reload
        self.restart_api = restart_api
        self.extra_status = extra_status
        self.started_ns = time.time_ns()
        self._t0 = time.monotonic()

    @property
    def engine(self) -> Engine:
        return self.session.node.engine

    def dispatch(self, op: str, args: dict[str, Any]) -> Any:
        fn = getattr(self, "op_" + op, None) if op.isidentifier() else None
        if fn is None:
            raise OpError(404, f"Unknown op: {op}", "op")
        return fn(args)

    # --- lookups in the guide's words ----------------------------------------------------------
    def _exchange(self, args: dict[str, Any]) -> str:
        ex = _text(args, "exchange")
        if ex not in self.session.node.adapters:
            raise OpError(404, f"Exchange not found: {ex}", "exchange")
        return ex

    def _book(self, args: dict[str, Any]) -> tuple[str, str, Any]:
        ex = self._exchange(args)
        sym = _text(args, "symbol")
        book = self.engine.books.get((ex, sym))
        if book is None:
            # the guide's §4.3: Binance writes BTCUSDT, the API BTC-USDT; say which we know
            raise OpError(404, f"Symbol not found: {ex} {sym}", "symbol")
        return ex, sym, book

    def _strategy(self, args: dict[str, Any]) -> Any:
        sid = _text(args, "strategy_id")
        s = self.engine.strategies.get(sid)
        if s is None:
            raise OpError(404, f"Strategy not found: {sid}", "strategy_id")
        return s

    def _order(self, args: dict[str, Any]) -> Order:
        oid = _text(args, "order_id")
        oms = self.engine.oms
        order = oms.orders.get(oid)
        if order is None:
            order = next((o for o in oms.orders.values() if o.venue_order_id == oid), None)
        if order is None:
            raise OpError(404, f"Order not found: {oid}", "order_id")
        return order

    def _order_doc(self, order: Order) -> dict[str, Any]:
        return order_doc(order, self.engine.instruments.get((order.venue, order.symbol)))

    # --- status and metrics --------------------------------------------------------------------
    def op_status(self, _args: dict[str, Any]) -> dict[str, Any]:
        node = self.session.node
        engine = self.engine
        now = time.time_ns()
        exchanges: dict[str, Any] = {}
        for venue, adapter in node.adapters.items():
            try:
                st = adapter.status()
                state = st.status
                md = st.market_data
            except Exception as exc:  # a venue's status must not take the whole status down
                state, md = "unknown", None
                _log.error("status of %s failed: %r", venue, exc)
            books = {}
            for (v, sym), book in engine.books.items():
                if v != venue:
                    continue
                books[sym] = {
                    "valid": book.valid,
                    "reason": engine.invalid_books.get((v, sym), "" if book.valid else "not synced"),
                    "age_ms": round((now - book.ts_recv) / 1e6, 3) if book.ts_recv else None,
                }
            exchanges[venue] = {
                "status": state,
                # where the daemon's requests go (the config's URL or its environment override):
                # the doctor probes this, not what its own environment would say
                "endpoint": getattr(adapter, "endpoint", "") or "",
                "books": books,
                "reconnects": max(md.connects - 1, 0) if md is not None else 0,
                "sequence_gaps": sum(b.gaps for b in md.books) if md is not None else 0,
            }
        running = sum(1 for sid in engine.strategies if self._strategy_status(sid) == "running")
        out = {
            "status": "running",
            "mode": self.mode,
            "version": self.version,
            "uptime_s": round(time.monotonic() - self._t0, 3),
            "started_at": iso(self.started_ns),
            "pid": os.getpid(),
            "trading_enabled": engine.risk.trading_enabled,
            "exchanges": exchanges,
            "strategies": {"running": running, "stopped": len(engine.strategies) - running},
            "open_orders": len(engine.oms.all_open()),
            "run_dir": str(node.run_dir) if node.run_dir is not None else None,
        }
        if self.extra_status is not None:
            out.update(self.extra_status())
        return out

    def op_metrics(self, _args: dict[str, Any]) -> dict[str, Any]:
        node = self.session.node
        return self.telemetry.snapshot(self.engine, node.feeds, node.adapters)

    # --- config --------------------------------------------------------------------------------
    def op_config_set(self, args: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(args) - {"trading_enabled"})
        if unknown:
            raise OpError(400, f"{unknown[0]}: unknown field (only trading_enabled can be set)", unknown[0])
        if "trading_enabled" not in args:
            raise OpError(400, "trading_enabled: missing required field", "trading_enabled")
        value = args["trading_enabled"]
        if not isinstance(value, bool):
            raise OpError(400, f"trading_enabled: must be true or false, got {value!r}", "trading_enabled")
        self.engine.risk.trading_enabled = value  # the risk check's kill switch: the next order
        return {"trading_enabled": self.engine.risk.trading_enabled}

    def op_config_reload(self, _args: dict[str, Any]) -> dict[str, Any]:
        return self.reload()

    # --- exchanges and market data -------------------------------------------------------------
    def op_exchange_reconnect(self, args: dict[str, Any]) -> dict[str, Any]:
        ex = self._exchange(args)
        feed = self.session.node.feeds.get(ex)
        if feed is None:
            raise OpError(409, f"Exchange {ex} has no market data connection yet", "exchange")
        _log.info("reconnect of %s requested by operator", ex)
        feed.reconnect("operator request")
        return {"exchange": ex, "reconnecting": True}

    def op_orderbook(self, args: dict[str, Any]) -> dict[str, Any]:
        ex, sym, book = self._book(args)
        depth = _int(args, "depth", 20, 1, MAX_DEPTH)
        return book_doc(book, depth, self.engine.invalid_books.get((ex, sym), ""))

    def op_ticker(self, args: dict[str, Any]) -> dict[str, Any]:
        ex, sym, book = self._book(args)
        bid, ask, bid_size, ask_size = book.top()
        has = bool(book.best_bid_fixed and book.best_ask_fixed)
        mid = (bid + ask) / 2 if has else None
        spread = ask - bid if has else None
        trade = self.engine.last_trades.get((ex, sym))
        return {
            "exchange": ex,
            "symbol": sym,
            "bid": bid if book.best_bid_fixed else None,
            "ask": ask if book.best_ask_fixed else None,
            "bid_size": bid_size,
            "ask_size": ask_size,
            "mid": mid,
            "spread": spread,
            "spread_bps": round(spread / mid * 1e4, 4) if mid and spread is not None else None,
            "last_trade_price": trade.price if trade is not None else None,
            "ts": iso(book.ts_recv),
            "valid": book.valid,
        }

    def op_snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        ex, sym, _book = self._book(args)
        feed = self.session.node.feeds.get(ex)
        if feed is None:
            raise OpError(409, f"Exchange {ex} has no market data connection yet", "exchange")
        _log.info("fresh snapshot of %s %s requested by operator", ex, sym)
        feed.resync(sym, "operator request")
        return {"exchange": ex, "symbol": sym, "resync": "requested"}

    # --- strategies ----------------------------------------------------------------------------
    def _strategy_status(self, sid: str) -> str:
        engine = self.engine
        if sid in engine.stopped:
            return "stopped"
        if engine.risk.is_halted(sid):
            return "halted"
        return "running" if engine.running else "stopped"

    def _strategy_row(self, s: Any) -> dict[str, Any]:
        cls = type(s)
        return {
            "strategy_id": s.strategy_id,
            "status": self._strategy_status(s.strategy_id),
            "venue": s.venue,
            "symbols": list(s.symbols),
            "class": f"{cls.__module__}:{cls.__name__}",
        }

    def _strategy_doc(self, s: Any) -> dict[str, Any]:
        engine = self.engine
        sid = s.strategy_id
        realized, unrealized, fees = engine.portfolio.strategy_pnl(sid)
        positions = {pos.symbol: pos.qty_float for owner, pos in engine.portfolio.positions() if owner == sid}
        doc = self._strategy_row(s)
        halt = engine.risk.halt_reason(sid)
        if halt:
            doc["halt_reason"] = halt
        doc["config"] = {
            "parameters": dict(s.params),
            "risk_limits": asdict(engine.risk.limits_for(sid)),
            "log_level": logging.getLevelName(s.log.getEffectiveLevel()),
        }
        doc["performance"] = {
            "net_pnl": finite(realized + unrealized - fees),
            "realized_pnl": finite(realized),
            "unrealized_pnl": finite(unrealized),
            "fees": finite(fees),
            "fills": engine.oms.fills_by_strategy.get(sid, 0),
            "orders_submitted": self.telemetry.submitted_by.get(sid, 0),
            "open_orders": len(engine.oms.open_orders(sid)),
            "position": positions,
        }
        return doc

    def op_strategies(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"strategies": [self._strategy_row(s) for s in self.engine.strategies.values()]}

    def op_strategy(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._strategy_doc(self._strategy(args))

    def op_strategy_start(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self._strategy(args)
        engine = self.engine
        sid = s.strategy_id
        if engine.risk.is_halted(sid):
            engine.risk.resume(sid)  # the operator starts it: a halt ends too
        engine.start_strategy(sid)
        return {"strategy_id": sid, "status": self._strategy_status(sid)}

    def op_strategy_stop(self, args: dict[str, Any]) -> Any:
        s = self._strategy(args)
        sid = s.strategy_id
        orders = self.engine.stop_strategy(sid)

        async def answered() -> dict[str, Any]:
            left = await _wait_closed(orders)
            out: dict[str, Any] = {"strategy_id": sid, "status": self._strategy_status(sid)}
            out["cancelled_orders"] = len(orders) - len(left)
            if left:
                out["still_open"] = [o.client_order_id for o in left]
            return out

        return answered()

    def op_strategy_config(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self._strategy(args)
        body = args.get("body")
        if not isinstance(body, dict):
            raise OpError(400, "body: must be a JSON object", "body")
        unknown = sorted(set(body) - {"log_level", "risk_limits", "parameters"})
        if unknown:
            raise OpError(
                400, f"{unknown[0]}: unknown field (log_level, risk_limits, parameters can be set)", unknown[0]
            )
        # everything is checked before anything changes
        level = None
        if "log_level" in body:
            raw = body["log_level"]
            level = raw.upper() if isinstance(raw, str) else None
            if level not in LOG_LEVELS:
                raise OpError(400, f"log_level: must be one of {', '.join(LOG_LEVELS)}, got {raw!r}", "log_level")
        limits = None
        if "risk_limits" in body:
            limits = _risk_updates(body["risk_limits"], "risk_limits", {})
        params = None
        if "parameters" in body:
            given = body["parameters"]
            if not isinstance(given, dict):
                raise OpError(400, "parameters: must be an object", "parameters")
            merged = {**s.params, **given}
            schema = getattr(type(s), "params_schema", None)
            try:
                params = schema.parse(merged) if schema is not None else merged
            except ParamError as exc:
                field = f"parameters.{exc.field}" if exc.field else "parameters"
                raise OpError(400, f"{field}: {exc.reason}", field) from None
        sid = s.strategy_id
        if level is not None:
            s.set_log_level(level)
            get_logger("strategies").info("strategy_id: %s log level %s (operator)", sid, level)
        if limits is not None:
            self.engine.risk.set_limits(limits, sid)
        if params is not None:
            try:
                s.update_params(params)
            except (ValueError, TypeError, KeyError) as exc:
                raise OpError(400, f"parameters: {exc}", "parameters") from None
            get_logger("strategies").info("strategy_id: %s parameters updated (operator): %s", sid, params)
        return self._strategy_doc(s)

    # --- orders --------------------------------------------------------------------------------
    def op_orders(self, args: dict[str, Any]) -> dict[str, Any]:
        oms = self.engine.oms
        status = None
        if args.get("status") not in (None, ""):
            status = parse_status(str(args["status"]))
            if status is None:
                raise OpError(
                    400, f"status: must be one of {', '.join(ORDER_STATUSES)}, got {args['status']!r}", "status"
                )
        sid = args.get("strategy_id")
        if sid not in (None, ""):
            sid = str(sid)
            if sid not in self.engine.strategies:
                raise OpError(404, f"Strategy not found: {sid}", "strategy_id")
        else:
            sid = None
        limit = _int(args, "limit", 100, 1, MAX_ORDERS)
        found = [
            o
            for o in oms.orders.values()
            if (status is None or o.status is status) and (sid is None or o.strategy_id == sid)
        ]
        found.sort(key=lambda o: o.ts_sent or o.ts_decided, reverse=True)  # newest first
        docs = [self._order_doc(o) for o in found[:limit]]
        return {"orders": docs, "count": len(docs), "total": len(found)}

    def op_order(self, args: dict[str, Any]) -> Any:
        """An order in memory, else (archived, or of an earlier process) the store's row of it."""
        store = getattr(self.session, "store", None)
        try:
            return self._order_doc(self._order(args))
        except OpError:
            if store is None:
                raise
        oid = _text(args, "order_id")

        async def stored() -> dict[str, Any]:
            try:
                row = await store.query("order", None, oid)
            except Exception as exc:  # the database down must not hide that the order is unknown here
                _log.warning("order %s not in memory and the database did not answer: %s", oid, exc)
                row = None
            if row is None:
                raise OpError(404, f"Order not found: {oid}", "order_id")
            return stored_order_doc(row)

        return stored()

    def op_order_cancel(self, args: dict[str, Any]) -> Any:
        order = self._order(args)
        if order.status.is_terminal:
            raise OpError(
                409, f"Order {order.client_order_id} is already {self._order_doc(order)['status']}", "order_id"
            )
        if order.venue not in self.engine.oms.venues:
            raise OpError(409, f"Order {order.client_order_id}: no order entry on {order.venue}", "order_id")
        _log.info("cancel of order %s requested by operator", order.client_order_id)
        self.engine.oms.cancel(order)

        async def answered() -> dict[str, Any]:
            await _wait_closed([order], until_answered=True)
            return self._order_doc(order)

        return answered()

    def op_order_reconcile(self, args: dict[str, Any]) -> Any:
        store = getattr(self.session, "store", None)
        return reconcile_order(self.engine, self.session.node, self.mode, self._order(args), store)

    def op_orders_archive(self, args: dict[str, Any]) -> Any:
        hours = _number(args, "older_than_hours", None, 0.0)
        store = getattr(self.session, "store", None)
        if store is None:
            return self._archive(hours)

        async def stored_first() -> dict[str, Any]:
            # an order leaves memory only once the store holds it, so GET order still finds it
            await catch_up(self.engine, store)
            return self._archive(hours)

        return stored_first()

    def _archive(self, hours: float) -> dict[str, Any]:
        try:
            n, path = archive_orders(self.engine.oms, int(hours * 3600e9), time.time_ns(), Path(self.archive_dir))
        except OSError as exc:
            raise OpError(503, f"Cannot write the order archive in {self.archive_dir}: {exc.strerror or exc}") from None
        _log.info("archived %d orders older than %g hours to %s", n, hours, path or "the database (orders table)")
        return {"archived": n, "path": str(path) if path is not None else None, "older_than_hours": hours}

    # --- positions and risk --------------------------------------------------------------------
    def op_positions(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"positions": [position_doc(sid, pos) for sid, pos in self.engine.portfolio.positions()]}

    def op_positions_reconcile(self, args: dict[str, Any]) -> Any:
        """``scripts/reconcile_positions.sh <exchange>``: the venue's account, the store and memory
        compared (``engine.reconcile.reconcile_running``), every difference resolved or, for
        position drift, the strategies trading it halted; the answer is the report. Paper: the
        venue is simulated in this process, so memory is compared with the store only."""
        if not args.get("exchange"):
            raise OpError(400, "exchange: missing required query parameter (?exchange=binance)", "exchange")
        venue = self._exchange(args)
        store = getattr(self.session, "store", None)
        _log.info("reconciliation of %s positions requested by operator", venue)
        if self.mode != "live":
            return self._reconcile_paper(venue, store)
        return self._reconcile_live(venue, store)

    async def _reconcile_live(self, venue: str, store: Any) -> dict[str, Any]:
        node = self.session.node
        policy = node.spec.live or ReconcilePolicy()
        policy = replace(policy, timeout_s=min(policy.timeout_s, RECONCILE_WAIT_S))
        symbols = [s for v, s in node.streams if v == venue]
        try:
            res = await reconcile_running(
                self.engine, venue, node.adapters[venue].account(), symbols, policy, store, node.run_dir
            )
        except TimeoutError:
            raise OpError(
                504, f"Reconciliation with {venue} timed out after {policy.timeout_s:g}s", "exchange"
            ) from None
        except Exception as exc:
            raise OpError(502, f"Reconciliation with {venue} failed: {exc}", "exchange") from None
        return self._reconcile_doc(
            venue,
            venue_kind="live",
            store=res.store,
            summary=res.line(),
            counts=res.counts(),
            drift=res.drift,
            halted=res.halted,
            report=res.report or None,
            actions=res.actions,
        )

    async def _reconcile_paper(self, venue: str, store: Any) -> dict[str, Any]:
        actions: list[dict[str, Any]] = []
        if store is not None:
            self.engine.recorder.handoff()
            await store.flush(RECONCILE_WAIT_S)
            stored = {(r["strategy_id"], r["symbol"]): r for r in await store.query("positions", venue)}
            for sid, pos in self.engine.portfolio.positions():
                row = stored.get((sid, pos.symbol))
                kept = float(row["position"]) if row is not None else 0.0
                if pos.venue == venue and not math.isclose(kept, pos.qty_float, abs_tol=1e-12):
                    detail = f"strategy {sid}: memory {pos.qty_float:g}, store {kept:g}"
                    actions.append({"symbol": pos.symbol, "item": "position", "action": "differs", "detail": detail})
        line = (
            f"reconciled {venue} (paper): the simulated venue is this process, its orders and fills are the order "
            f"manager's; {len(actions)} positions differ between memory and the store"
            + ("" if store is not None else " (no store: nothing to compare)")
        )
        _log.info(line)
        return self._reconcile_doc(
            venue,
            venue_kind="simulated",
            store=store is not None,
            summary=line,
            counts={"position_differences": len(actions)},
            drift=[],
            halted=[],
            report=None,
            actions=actions,
        )

    def _reconcile_doc(self, venue: str, venue_kind: str, **fields: Any) -> dict[str, Any]:
        """The answer of ``positions_reconcile``: the reconciliation's fields and the positions after it."""
        positions = [position_doc(sid, p) for sid, p in self.engine.portfolio.positions() if p.venue == venue]
        return _json_safe({"exchange": venue, "mode": self.mode, "venue": venue_kind, **fields, "positions": positions})

    def op_risk_summary(self, _args: dict[str, Any]) -> dict[str, Any]:
        risk = self.engine.risk
        out = _json_safe(risk.summary())
        out["violations"] = sum(risk._failed.values())
        out["aliases"] = {**GLOBAL_ALIASES}
        return out

    def op_risk_limits(self, args: dict[str, Any]) -> dict[str, Any]:
        body = args.get("body", args)
        parsed = _risk_updates(body, "", GLOBAL_ALIASES)
        limits = self.engine.risk.set_limits(parsed)
        return {"limits": asdict(limits), "changed": sorted(parsed)}

    def op_risk_violations(self, args: dict[str, Any]) -> dict[str, Any]:
        limit = _int(args, "limit", 100, 1, MAX_ORDERS)
        rows = self.engine.risk.violations(limit)
        return {
            "violations": [
                {
                    "ts": iso(v["ts"]),
                    "strategy_id": v["strategy_id"],
                    "exchange": v.get("venue", ""),
                    "symbol": v["symbol"],
                    "order_id": v.get("client_order_id", ""),
                    "check": v["check"],
                    "message": v["reason"],
                    "value": finite(v["value"]) if v["value"] is not None else None,
                    "limit": v["limit"],
                }
                for v in reversed(rows)  # newest first
            ]
        }

    # --- components and incidents --------------------------------------------------------------
    def op_component_restart(self, args: dict[str, Any]) -> Any:
        name = _text(args, "component")
        if name not in COMPONENTS:
            raise OpError(404, f"Component not found: {name}", "component")
        _log.info("restart of component %s requested by operator", name)
        if name == "market_data":
            for feed in self.session.node.feeds.values():
                feed.reconnect("operator restart of market_data")
            return {"component": name, "restarted": True, "detail": "every market data connection reconnects"}
        if name == "api":
            return {"component": name, "restarted": bool(self.restart_api())}
        if name == "position_manager":
            return self._restart_positions()
        return self._restart_orders()

    async def _restart_positions(self) -> dict[str, Any]:
        """Rebuild what the position manager derives: every position re-marked at its book's mid,
        every balance hold recomputed from the open orders, and (live) the balances re-read from
        the venues. Positions themselves are the sum of their fills: they are not re-read."""
        engine = self.engine
        pf = engine.portfolio
        for (venue, symbol), book in engine.books.items():
            mid = book.mid_price()
            if math.isfinite(mid):
                pf.mark(venue, symbol, mid)
        oms = engine.oms
        for order in oms.all_open():
            oms._release(order)
            oms._hold(order)
        detail = ["marks", "holds"]
        if self.mode == "live":
            for venue, adapter in self.session.node.adapters.items():
                try:
                    async with asyncio.timeout(VENUE_WAIT_S):
                        balances = await adapter.account().balances()
                except Exception as exc:
                    raise OpError(502, f"{venue} balances not read: {exc}", "component") from None
                held = pf.balance_detail().get(venue, {})
                for asset, bal in balances.items():
                    pf.set_balance(venue, asset, bal.total - held.get(asset, {}).get("held", 0.0))
                detail.append(f"{venue} balances")
        return {"component": "position_manager", "restarted": True, "detail": detail}

    async def _restart_orders(self) -> dict[str, Any]:
        """Every open order reconciled with its venue (live); in paper the venue is this process."""
        done = []
        if self.mode == "live":
            for order in list(self.engine.oms.all_open()):
                await reconcile_order(self.engine, self.session.node, self.mode, order)
                done.append(order.client_order_id)
        return {"component": "order_manager", "restarted": True, "reconciled": done}

    def op_incidents(self, args: dict[str, Any]) -> dict[str, Any]:
        limit = _int(args, "limit", 100, 1, MAX_ORDERS)
        rows = list(self.engine.log.recent_incidents)[-limit:]
        return {
            "incidents": [
                {"ts": iso(ts), "venue": v, "symbol": s, "kind": k, "detail": d} for ts, v, s, k, d in reversed(rows)
            ],
            "counts": dict(sorted(self.engine.incident_counts.items())),
        }


# --- helpers -------------------------------------------------------------------------------------
def _text(args: dict[str, Any], key: str) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v:
        raise OpError(400, f"{key}: must be a non-empty string", key)
    return v


def _int(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = args.get(key)
    if v is None or v == "":
        return default
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            raise OpError(400, f"{key}: must be an integer {lo}..{hi}, got {args[key]!r}", key) from None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise OpError(400, f"{key}: must be an integer {lo}..{hi}, got {args[key]!r}", key)
    return v


def _number(args: dict[str, Any], key: str, default: float | None, lo: float) -> float:
    v = args.get(key)
    if v is None or v == "":
        if default is None:
            raise OpError(400, f"{key}: missing required field", key)
        return default
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise OpError(400, f"{key}: must be a number >= {lo:g}, got {args[key]!r}", key) from None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < lo:
        raise OpError(400, f"{key}: must be a number >= {lo:g}, got {args[key]!r}", key)
    return float(v)


def _risk_updates(body: Any, prefix: str, aliases: dict[str, str]) -> dict[str, Any]:
    """Risk limit updates validated like the config's ``risk`` section; 400 names the field."""
    if not isinstance(body, dict) or not body:
        name = prefix or "body"
        raise OpError(400, f"{name}: must be an object of limit names to values", name)
    sent = body
    body = {aliases.get(k, k): v for k, v in body.items()}
    try:
        return RiskLimits.parse_updates(body, "request")
    except ConfigError as exc:
        # "risk.<field>: reason" -> "<prefix>.<field>: reason"
        reason = exc.reason
        field, _, what = reason.partition(": ")
        field = field.removeprefix("risk.").removeprefix("risk")
        for alias, name in aliases.items():  # the name the operator sent
            if field == name and alias in sent:
                field = alias
        full = f"{prefix}.{field}" if prefix and field else (prefix or field or "body")
        raise OpError(400, f"{full}: {what}", full) from None


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


async def _wait_closed(orders: list[Order], until_answered: bool = False) -> list[Order]:
    """Wait (at most ``VENUE_WAIT_S``) for the orders to close, or, with ``until_answered``,
    for the venue to answer their cancel (a refusal clears ``cancel_requested``); returns those
    still open."""
    deadline = time.monotonic() + VENUE_WAIT_S

    def pending(o: Order) -> bool:
        return not o.status.is_terminal and (not until_answered or o.cancel_requested)

    while time.monotonic() < deadline and any(pending(o) for o in orders):
        await asyncio.sleep(0.02)
    return [o for o in orders if not o.status.is_terminal]
