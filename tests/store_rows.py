"""Event-log rows for store tests (``TABLES[...]`` column order), built by name so a reader sees
what each field is."""

from __future__ import annotations

from typing import Any

from engine.eventlog_schema import TABLES

NAN = float("nan")
T0 = 1_765_000_000_000_000_000  # 2025-12-06 05:46:40 UTC
SEC = 1_000_000_000
DAY = 86_400 * SEC

_DEFAULTS = {"int64": 0, "double": 0.0, "string": "", "bool": False}


def row(table: str, **values: Any) -> tuple:
    fields = TABLES[table]
    unknown = set(values) - set(fields.names)
    assert not unknown, f"{table} has no column {unknown}"
    return tuple(values.get(f.name, _DEFAULTS[str(f.type)]) for f in fields)


def order(seq: int, ts: int, coid: str, status: str, event: str = "accepted", **kw: Any) -> tuple:
    base = dict(
        seq=seq,
        ts=ts,
        event=event,
        strategy_id="mm",
        venue="binance",
        symbol="BTC-USDT",
        client_order_id=coid,
        venue_order_id=f"v-{coid}",
        side="buy",
        order_type="LIMIT",
        tif="GTC",
        price=50_000.0,
        qty=0.01,
        filled_qty=0.0,
        leaves_qty=0.01,
        status=status,
        mid=NAN,
        post_only=True,
    )
    base.update(kw)
    return row("orders", **base)


def fill(seq: int, ts: int, coid: str, trade_id: str, qty: float = 0.005, **kw: Any) -> tuple:
    base = dict(
        seq=seq,
        ts=ts,
        ts_event=ts - 1000,
        strategy_id="mm",
        venue="binance",
        symbol="BTC-USDT",
        client_order_id=coid,
        venue_order_id=f"v-{coid}",
        trade_id=trade_id,
        side="buy",
        price=50_000.0,
        qty=qty,
        notional=50_000.0 * qty,
        fee=-0.01,
        fee_asset="USDT",
        liquidity="maker",
        order_price=50_000.0,
        mid_at_decision=50_001.0,
        mid_at_fill=NAN,
    )
    base.update(kw)
    return row("fills", **base)


def position(seq: int, ts: int, pos: float, symbol: str = "BTC-USDT", **kw: Any) -> tuple:
    return row(
        "positions",
        seq=seq,
        ts=ts,
        strategy_id="mm",
        venue="binance",
        symbol=symbol,
        position=pos,
        avg_price=50_000.0,
        reason="fill",
        **kw,
    )


def tick(seq: int, ts: int, symbol: str = "BTC-USDT") -> tuple:
    return row(
        "market",
        seq=seq,
        ts=ts,
        ts_event=ts - 500,
        venue="binance",
        symbol=symbol,
        bid=49_999.0,
        ask=50_001.0,
        bid_size=1.0,
        ask_size=2.0,
        mid=50_000.0,
        data_seq=seq,
        feed_latency_ns=500,
    )


def same(a: Any, b: Any) -> bool:
    """Equality with NaN equal to NaN (stores keep NaN)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
