"""Execution quality: fill ratio, maker/taker mix, slippage, markouts, cancels and rejections.

Sign conventions (every figure is notional-weighted, so a big fill counts more than a small one):

- slippage vs the mid at decision, positive = cost:
  ``sum(side * (price - mid_at_decision) * qty) / sum(mid_at_decision * qty)`` in bps, side = +1 buy, -1 sell.
  A maker buying below the mid has negative slippage (it earned part of the spread).
- markout at horizon h, positive = favourable to us:
  ``sum(side * (mid(t + h) - price) * qty) / sum(price * qty)`` in bps, where ``mid(t + h)`` is the
  last mid in the ``market`` table at or before the fill's local ts + h (ASOF JOIN). Fills whose
  horizon runs past the end of the market data (or starts before it) are left out of that horizon.
- mid move at horizon h (the adverse-selection part of the markout, spread excluded):
  ``sum(side * (mid(t + h) - mid_at_fill) * qty) / sum(price * qty)`` in bps, over fills with a
  ``mid_at_fill`` (the mid the engine saw when the fill arrived).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from reports.eventlog import LIQUIDITY, EventLog

HORIZONS: tuple[tuple[str, int], ...] = (
    ("+100ms", 100_000_000),
    ("+1s", 1_000_000_000),
    ("+10s", 10_000_000_000),
    ("+60s", 60_000_000_000),
)
BURST_GAP_NS = 1_000_000_000  # rejections closer than this belong to one burst
BURST_MIN = 5  # a burst has at least this many rejections


@dataclass
class Markout:
    horizon: str
    horizon_ns: int
    fills: int
    bps: float | None
    quote: float
    mid_move_bps: float | None


@dataclass
class ExecutionStats:
    fills: int = 0
    orders_submitted: int = 0
    orders_filled: int = 0
    orders_canceled: int = 0
    orders_rejected: int = 0
    cancel_requests: int = 0
    fill_ratio: float | None = None
    cancel_to_fill: float | None = None
    maker_fills: int = 0
    taker_fills: int = 0
    maker_share: float | None = None  # by notional
    volume: float = 0.0
    quantity: float = 0.0
    fees: float = 0.0
    fees_bps: float | None = None
    slippage_bps: float | None = None
    slippage_quote: float = 0.0
    slippage_fills: int = 0
    slippage_by_liquidity: dict[str, float | None] = field(default_factory=dict)
    markouts: list[Markout] = field(default_factory=list)
    markouts_by_liquidity: dict[str, list[Markout]] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    risk_failures: list[dict[str, Any]] = field(default_factory=list)
    bursts: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)


def aggregate_queries(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """SELECTs of ``fagg`` (fills) and ``magg`` (markouts): sums per key, hour of day and liquidity.

    Every figure of the report and its breakdowns is a ratio of these sums, so the 1M-row tables
    are scanned once. ``magg`` has one row group per horizon ``i`` (index into ``HORIZONS`` + 1).
    The markout probes carry (k, hour, liq, i) packed in one integer: the ASOF join sorts them, and
    a narrower row sorts faster.
    """
    horizons = ", ".join(f"({i}, {ns})" for i, (_, ns) in enumerate(HORIZONS, start=1))
    ends = con.execute("SELECT mkey, max(ts) FROM market GROUP BY mkey").fetchall()
    tmax = "CASE f.mkey " + " ".join(f"WHEN {int(m)} THEN {int(t)}" for m, t in ends) + " END" if ends else "NULL"
    return {
        "fagg": """
            SELECT k, hour, liq, count(*) AS n, sum(notional) AS notional, sum(qty) AS qty, sum(fee) AS fee,
                   sum(realized_pnl) AS realized,
                   count(*) FILTER (WHERE mid_at_decision > 0) AS slip_n,
                   coalesce(sum(sgn * (price - mid_at_decision) * qty) FILTER (WHERE mid_at_decision > 0), 0)
                     AS slip_num,
                   coalesce(sum(mid_at_decision * qty) FILTER (WHERE mid_at_decision > 0), 0) AS slip_den
            FROM fills GROUP BY ALL""",
        "magg": f"""
            WITH h(i, ns) AS (VALUES {horizons}),
            p AS (
                SELECT ((CAST(f.k AS BIGINT) * 24 + f.hour) * 4 + f.liq) * 8 + h.i AS g, f.mkey, f.ts + h.ns AS t,
                       f.sgn * f.qty AS w, f.price, f.mid_at_fill AS m0
                FROM fills f CROSS JOIN h WHERE f.ts + h.ns <= {tmax}
            ), a AS (
                SELECT g, count(*) AS n, sum(p.w * (m.mid - p.price)) AS num, sum(abs(p.w) * p.price) AS den,
                       coalesce(sum(p.w * (m.mid - p.m0)) FILTER (WHERE p.m0 > 0), 0) AS mm_num,
                       coalesce(sum(abs(p.w) * p.price) FILTER (WHERE p.m0 > 0), 0) AS mm_den
                FROM p ASOF JOIN market m ON p.mkey = m.mkey AND p.t >= m.ts
                GROUP BY g
            )
            SELECT CAST(g // 8 // 4 // 24 AS INTEGER) AS k, CAST(g // 8 // 4 % 24 AS INTEGER) AS hour,
                   CAST(g // 8 % 4 AS TINYINT) AS liq, CAST(g % 8 AS INTEGER) AS i, n, num, den, mm_num, mm_den
            FROM a""",
    }


def fetch_aggregates(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Run the aggregate SELECTs (read-only: ``con`` may be a cursor working beside other queries)."""
    return {name: con.sql(sql).to_arrow_table() for name, sql in aggregate_queries(con).items()}


def store_aggregates(log: EventLog, results: dict[str, Any]) -> None:
    for name, table in results.items():
        log.con.register(f"_{name}", table)
        log.con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _{name}")
        log.con.unregister(f"_{name}")


def markouts_by(log: EventLog, group: str = "", join_keys: bool = False) -> dict[Any, list[Markout]]:
    """Markouts per value of ``group`` (an SQL expression over ``magg``/``keys``; '' = overall)."""
    g = group or "NULL"
    rows = log.query(
        f"""SELECT {g} AS g, i, sum(n), sum(num), sum(num) / nullif(sum(den), 0) * 1e4,
                   sum(mm_num) / nullif(sum(mm_den), 0) * 1e4
            FROM magg {"JOIN keys USING (k)" if join_keys else ""} GROUP BY g, i ORDER BY g, i"""
    )
    found: dict[Any, dict[int, tuple]] = {}
    for gv, i, n, q, bps, mm in rows:
        found.setdefault(gv, {})[int(i)] = (int(n), float(q or 0.0), bps, mm)
    out: dict[Any, list[Markout]] = {}
    for gv, byi in found.items():
        out[gv] = []
        for i, (name, ns) in enumerate(HORIZONS, start=1):
            n, q, bps, mm = byi.get(i, (0, 0.0, None, None))
            out[gv].append(Markout(name, ns, n, bps, q, mm))
    return out


def execution_stats(log: EventLog) -> ExecutionStats:
    st = ExecutionStats()
    counts = dict(log.query("SELECT event, sum(n) FROM order_events GROUP BY event"))
    st.orders_submitted = int(counts.get("submit", 0))
    st.orders_canceled = int(counts.get("canceled", 0))
    st.orders_rejected = int(counts.get("rejected", 0))
    st.cancel_requests = int(counts.get("cancel_request", 0))
    st.orders_filled = log.orders_filled
    f = log.dicts(
        """SELECT coalesce(sum(n), 0) AS fills,
                  coalesce(sum(n) FILTER (WHERE liq = 1), 0) AS maker_fills,
                  coalesce(sum(n) FILTER (WHERE liq = 2), 0) AS taker_fills,
                  sum(notional) FILTER (WHERE liq = 1) / nullif(sum(notional), 0) AS maker_share,
                  coalesce(sum(notional), 0) AS volume, coalesce(sum(qty), 0) AS quantity,
                  coalesce(sum(fee), 0) AS fees, sum(fee) / nullif(sum(notional), 0) * 1e4 AS fees_bps,
                  coalesce(sum(slip_n), 0) AS slip_n, coalesce(sum(slip_num), 0) AS slip_q,
                  sum(slip_num) / nullif(sum(slip_den), 0) * 1e4 AS slip_bps
           FROM fagg"""
    )[0]
    st.fills = int(f["fills"])
    st.maker_fills, st.taker_fills, st.maker_share = int(f["maker_fills"]), int(f["taker_fills"]), f["maker_share"]
    st.volume, st.quantity, st.fees, st.fees_bps = (
        float(f["volume"]),
        float(f["quantity"]),
        float(f["fees"]),
        f["fees_bps"],
    )
    st.slippage_bps, st.slippage_quote, st.slippage_fills = f["slip_bps"], float(f["slip_q"]), int(f["slip_n"])
    if st.orders_submitted:
        st.fill_ratio = st.orders_filled / st.orders_submitted
    if st.orders_filled:
        st.cancel_to_fill = st.orders_canceled / st.orders_filled
    for liq, bps in log.query(
        "SELECT liq, sum(slip_num) / nullif(sum(slip_den), 0) * 1e4 FROM fagg GROUP BY liq ORDER BY liq"
    ):
        st.slippage_by_liquidity[LIQUIDITY.get(int(liq), str(liq))] = bps
    if st.fills:
        overall = markouts_by(log)
        st.markouts = next(iter(overall.values())) if overall else _no_markouts()
        for liq, ms in markouts_by(log, "liq").items():
            st.markouts_by_liquidity[LIQUIDITY.get(int(liq), str(liq))] = ms
    st.rejections = log.dicts(
        """SELECT reason, code, count(*) AS count, min(ts) AS first_ts, max(ts) AS last_ts
           FROM rejects GROUP BY reason, code ORDER BY count DESC, reason"""
    )
    st.risk_failures = log.dicts(
        """SELECT "check", reason, count(*) AS count, min(ts) AS first_ts, max(ts) AS last_ts
           FROM risk_fail GROUP BY ALL ORDER BY count DESC, "check" """
    )
    st.bursts = rejection_bursts(log)
    st.incidents = log.dicts(
        "SELECT kind, count(*) AS count, min(ts) AS first_ts, max(ts) AS last_ts FROM incidents GROUP BY kind"
        " ORDER BY count DESC, kind"
    )
    return st


def _no_markouts() -> list[Markout]:
    return [Markout(name, ns, 0, None, 0.0, None) for name, ns in HORIZONS]


def rejection_bursts(log: EventLog) -> list[dict[str, Any]]:
    """Runs of >= BURST_MIN rejections each within BURST_GAP_NS of the previous one, biggest first."""
    return log.dicts(
        """WITH r AS (
               SELECT run, seq, ts, reason,
                      CASE WHEN ts - lag(ts) OVER (PARTITION BY run ORDER BY ts, seq) <= $gap THEN 0 ELSE 1 END AS brk
               FROM rejects
           ), g AS (
               SELECT *, sum(brk) OVER (PARTITION BY run ORDER BY ts, seq ROWS UNBOUNDED PRECEDING) AS burst FROM r
           )
           SELECT run, min(ts) AS start_ts, max(ts) AS end_ts, count(*) AS count, mode(reason) AS top_reason
           FROM g GROUP BY run, burst HAVING count(*) >= $min ORDER BY count DESC, start_ts LIMIT 20""",
        {"gap": BURST_GAP_NS, "min": BURST_MIN},
    )
