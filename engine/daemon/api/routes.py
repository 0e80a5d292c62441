"""The route table: the one place that says which HTTP call maps to which bridge op, what its
parameters and body may be, and whether it mutates. The Sanic app, the request validation and the
OpenAPI document are all built from it (docs/daemon-contract.md lists the ops).

Order matters: ``orders/archive`` comes before ``orders/{order_id}`` (an order id is never
``archive``), as the operator guide's call expects (operator-surface.md §1.4 item 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PREFIX = "/api/v1"

ORDER_STATUSES = ("pending", "open", "partially_filled", "filled", "cancelled", "rejected", "expired")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
#: ops that wait for the venue answer later than a plain read; the bridge call waits this long
SLOW_TIMEOUT_S = 15.0
FAST_TIMEOUT_S = 5.0
#: a whole account's reconciliation: open orders, trade history pages, order queries, the store
RECONCILE_TIMEOUT_S = 60.0


def _text(desc: str, max_len: int = 128) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_len, "description": desc}


EXCHANGE = _text("venue name, lower case (binance, coinbase, kraken)", 64)
SYMBOL = _text("symbol in the dashed canonical form, e.g. BTC-USDT", 64)
STRATEGY_ID = _text("strategy id, e.g. my_strategy")
ORDER_ID = _text("the daemon's order id (order_id in GET /orders)")
COMPONENT = _text("component name, e.g. position_manager", 64)
LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}
LIMIT_NUMBER = {"type": "number", "minimum": 0}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    path: str  # under PREFIX, OpenAPI template syntax: /orders/{order_id}
    op: str
    summary: str
    mutating: bool = False
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    #: the op receives the body under this argument name; ``None`` merges its keys into the args
    body_arg: str | None = None
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    timeout: float = FAST_TIMEOUT_S

    @property
    def name(self) -> str:
        return self.op

    def sanic_uri(self) -> str:
        out = PREFIX + self.path
        for p in self.params:
            if p.where == "path":
                out = out.replace("{" + p.name + "}", f"<{p.name}:str>")
        return out


def _obj(*names: str, **typed: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {n: {} for n in names}
    props.update(typed)
    return {"type": "object", "properties": props}


ORDER = _obj(
    "order_id",
    "client_order_id",
    "exchange_order_id",
    "exchange",
    "symbol",
    "strategy_id",
    "side",
    "type",
    "price",
    "quantity",
    "filled_quantity",
    "created_at",
    "updated_at",
    "error_message",
    status={"type": "string", "enum": list(ORDER_STATUSES)},
)

ROUTES: tuple[Route, ...] = (
    Route(
        ("GET",),
        "/status",
        "status",
        "Daemon status: mode, version, uptime, trading_enabled, each exchange's connection and books",
        response=_obj(
            "status",
            "mode",
            "version",
            "uptime_s",
            "started_at",
            "pid",
            "strategies",
            "open_orders",
            trading_enabled={"type": "boolean"},
            exchanges={"type": "object", "additionalProperties": _obj("status", "books", "reconnects")},
        ),
    ),
    Route(
        ("POST",),
        "/config",
        "config_set",
        'Change runtime settings: {"trading_enabled": false} stops new orders at once',
        mutating=True,
        body={
            "type": "object",
            "properties": {"trading_enabled": {"type": "boolean"}},
            "required": ["trading_enabled"],
            "additionalProperties": False,
        },
        response=_obj(trading_enabled={"type": "boolean"}),
    ),
    Route(
        ("GET", "POST"),
        "/config/reload",
        "config_reload",
        "Reload the configuration files (the guide calls it with GET; both reload)",
        mutating=True,
        response=_obj("reloaded", "changed", "unchanged", "refused"),
        timeout=SLOW_TIMEOUT_S,
    ),
    Route(
        ("POST",),
        "/exchanges/{exchange}/reconnect",
        "exchange_reconnect",
        "Drop and reopen an exchange's connections",
        mutating=True,
        params=(Param("exchange", "path", EXCHANGE, True),),
        response=_obj("exchange", "reconnecting"),
    ),
    Route(
        ("GET",),
        "/marketdata/orderbook/{exchange}/{symbol}",
        "orderbook",
        "The daemon's order book for a symbol, price and quantity per level on both sides",
        params=(
            Param("exchange", "path", EXCHANGE, True),
            Param("symbol", "path", SYMBOL, True),
            Param("depth", "query", {"type": "integer", "minimum": 1, "maximum": 5000, "default": 20}),
        ),
        response=_obj("exchange", "symbol", "valid", "reason", "ts", "bids", "asks"),
    ),
    Route(
        ("GET",),
        "/marketdata/ticker/{exchange}/{symbol}",
        "ticker",
        "Best bid and ask, mid, spread and last trade for a symbol",
        params=(Param("exchange", "path", EXCHANGE, True), Param("symbol", "path", SYMBOL, True)),
        response=_obj("exchange", "symbol", "bid", "ask", "mid", "spread", "spread_bps", "last_trade_price", "valid"),
    ),
    Route(
        ("POST",),
        "/marketdata/snapshot/{exchange}/{symbol}",
        "snapshot",
        "Request a fresh snapshot and rebuild the order book",
        mutating=True,
        params=(Param("exchange", "path", EXCHANGE, True), Param("symbol", "path", SYMBOL, True)),
        response=_obj("exchange", "symbol", "resync"),
        timeout=SLOW_TIMEOUT_S,
    ),
    Route(
        ("GET",),
        "/strategies",
        "strategies",
        "Every strategy with its status",
        response=_obj(strategies={"type": "array", "items": _obj("strategy_id", "status", "venue", "symbols")}),
    ),
    Route(
        ("GET",),
        "/strategies/{strategy_id}",
        "strategy",
        "One strategy: config (parameters, risk limits, log level) and performance",
        params=(Param("strategy_id", "path", STRATEGY_ID, True),),
        response=_obj("strategy_id", "status", "config", "performance"),
    ),
    Route(
        ("POST",),
        "/strategies/{strategy_id}/start",
        "strategy_start",
        "Start a stopped strategy",
        mutating=True,
        params=(Param("strategy_id", "path", STRATEGY_ID, True),),
        response=_obj("strategy_id", "status"),
    ),
    Route(
        ("POST",),
        "/strategies/{strategy_id}/stop",
        "strategy_stop",
        "Stop a strategy (its open orders are cancelled)",
        mutating=True,
        params=(Param("strategy_id", "path", STRATEGY_ID, True),),
        response=_obj("strategy_id", "status"),
        timeout=SLOW_TIMEOUT_S,
    ),
    Route(
        ("PUT",),
        "/strategies/{strategy_id}/config",
        "strategy_config",
        "Change a strategy's log level, risk limits or parameters (a partial update)",
        mutating=True,
        params=(Param("strategy_id", "path", STRATEGY_ID, True),),
        body={
            "type": "object",
            "properties": {
                # either case: an operator types "debug" as often as the guide's "DEBUG"
                "log_level": {"type": "string", "enum": [*LOG_LEVELS, *(v.lower() for v in LOG_LEVELS)]},
                "risk_limits": {"type": "object", "additionalProperties": LIMIT_NUMBER, "minProperties": 1},
                "parameters": {"type": "object", "minProperties": 1},
            },
            "additionalProperties": False,
            "minProperties": 1,
        },
        body_arg="body",
        response=_obj("strategy_id", "status", "config", "performance"),
    ),
    Route(
        ("GET",),
        "/orders",
        "orders",
        "Orders, newest first, filtered by status and strategy",
        params=(
            Param("status", "query", {"type": "string", "enum": list(ORDER_STATUSES)}),
            Param("strategy_id", "query", STRATEGY_ID),
            Param("limit", "query", LIMIT),
        ),
        response=_obj("count", orders={"type": "array", "items": ORDER}),
    ),
    Route(
        ("POST",),
        "/orders/archive",
        "orders_archive",
        "Archive finished orders older than N hours out of memory",
        mutating=True,
        body={
            "type": "object",
            "properties": {"older_than_hours": {"type": "number", "minimum": 0}},
            "required": ["older_than_hours"],
            "additionalProperties": False,
        },
        response=_obj("archived", "path"),
    ),
    Route(
        ("GET",),
        "/orders/{order_id}",
        "order",
        "One order, with both the daemon's and the venue's id",
        params=(Param("order_id", "path", ORDER_ID, True),),
        response=ORDER,
    ),
    Route(
        ("DELETE",),
        "/orders/{order_id}",
        "order_cancel",
        "Cancel an order",
        mutating=True,
        params=(Param("order_id", "path", ORDER_ID, True),),
        response=ORDER,
        timeout=SLOW_TIMEOUT_S,
    ),
    Route(
        ("POST",),
        "/orders/{order_id}/reconcile",
        "order_reconcile",
        "Update an order's local state (and the database's) from the exchange",
        mutating=True,
        params=(Param("order_id", "path", ORDER_ID, True),),
        response=ORDER,
        timeout=SLOW_TIMEOUT_S,
    ),
    Route(
        ("GET",),
        "/positions",
        "positions",
        "Positions per strategy and symbol",
        response=_obj(
            positions={
                "type": "array",
                "items": _obj("symbol", "strategy", "strategy_id", "exchange", "quantity", "avg_price", "notional_usd"),
            }
        ),
    ),
    Route(
        ("POST",),
        "/positions/reconcile",
        "positions_reconcile",
        "Reconcile positions, open orders and fills with the exchange and the database "
        "(scripts/reconcile_positions.sh); drift halts the strategies trading it; the answer is the report",
        mutating=True,
        params=(Param("exchange", "query", EXCHANGE, True),),
        response=_obj(
            "exchange",
            "mode",
            "venue",
            "store",
            "summary",
            "counts",
            "drift",
            "halted",
            "report",
            "positions",
            "actions",
        ),
        timeout=RECONCILE_TIMEOUT_S,
    ),
    Route(("GET",), "/risk/summary", "risk_summary", "Risk limits, their current usage and trading_enabled"),
    Route(
        ("POST",),
        "/risk/limits",
        "risk_limits",
        "Change global risk limits (position_limit_usd = max_global_position_usd)",
        mutating=True,
        body={"type": "object", "additionalProperties": LIMIT_NUMBER, "minProperties": 1},
        body_arg="body",
    ),
    Route(
        ("GET",),
        "/risk/violations",
        "risk_violations",
        "Recent risk-check refusals",
        params=(Param("limit", "query", LIMIT),),
        response=_obj(violations={"type": "array", "items": _obj("ts", "strategy_id", "symbol", "check", "message")}),
    ),
    Route(
        ("POST",),
        "/components/{component}/restart",
        "component_restart",
        "Restart a component in place (e.g. position_manager)",
        mutating=True,
        params=(Param("component", "path", COMPONENT, True),),
        response=_obj("component", "restarted"),
        timeout=SLOW_TIMEOUT_S,
    ),
    Route(
        ("GET",),
        "/incidents",
        "incidents",
        "Recent incidents (disconnects, sequence gaps, invalid books, rejects)",
        params=(Param("limit", "query", LIMIT),),
        response=_obj(incidents={"type": "array", "items": _obj("ts", "venue", "symbol", "kind", "detail")}),
    ),
)
