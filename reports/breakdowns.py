"""Breakdowns of the post-mortem figures by strategy, symbol, venue and hour of day (UTC).

Each figure is a ratio of sums from the per-(key, hour, liquidity) aggregates ``fagg`` and ``magg``,
the round trips ``rt`` and each key's final ledger row ``lfinal``; the small per-group results are
merged by group value. Hour of day uses the fill's local ts (a round trip counts in the hour it closed).
"""

from __future__ import annotations

from typing import Any

from reports.eventlog import HOUR_NS, EventLog

# SQL per dimension over a table joined with ``keys``; ``{hour}`` is that table's hour-of-day expression.
DIMENSIONS: dict[str, str] = {
    "strategy": "keys.strategy_id",
    "symbol": "keys.symbol",
    "venue": "keys.venue",
    "hour": "{hour}",
}
RT_HOUR = f"CAST((close_ts // {HOUR_NS}) % 24 AS INTEGER)"


def breakdown(log: EventLog, dim: str) -> list[dict[str, Any]]:
    """Per group: fills, volume, maker share, fees, realized (engine), slippage, markouts, round trips, net."""
    expr = DIMENSIONS[dim].format(hour="hour")
    rows: dict[Any, dict[str, Any]] = {}

    def merge(sql: str) -> None:
        for r in log.dicts(sql):
            rows.setdefault(r["k"], {"k": r["k"]}).update(r)

    merge(
        f"""SELECT {expr} AS k, sum(n) AS fills, sum(notional) AS volume,
                   sum(notional) FILTER (WHERE liq = 1) / nullif(sum(notional), 0) AS maker_share,
                   sum(fee) AS fees, sum(realized) AS realized,
                   sum(slip_num) / nullif(sum(slip_den), 0) * 1e4 AS slip_bps
            FROM fagg JOIN keys USING (k) GROUP BY 1"""
    )
    merge(
        f"""SELECT {expr} AS k,
                   sum(num) FILTER (WHERE i = 2) / nullif(sum(den) FILTER (WHERE i = 2), 0) * 1e4 AS markout_1s_bps,
                   sum(num) FILTER (WHERE i = 3) / nullif(sum(den) FILTER (WHERE i = 3), 0) * 1e4 AS markout_10s_bps
            FROM magg JOIN keys USING (k) GROUP BY 1"""
    )
    merge(
        f"""SELECT {DIMENSIONS[dim].format(hour=RT_HOUR)} AS k, count(*) AS round_trips,
                   count(*) FILTER (WHERE net > 0) / count(*) AS win_rate, sum(net) AS rt_net
            FROM rt JOIN keys USING (k) GROUP BY 1"""
    )
    if dim != "hour":
        merge(
            f"""SELECT {expr} AS k, sum(realized + unrealized - fees) AS net
                FROM lfinal JOIN keys USING (k) GROUP BY 1"""
        )
    return [rows[k] for k in sorted(rows, key=lambda v: (v is None, v))]
