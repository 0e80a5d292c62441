"""P&L, drawdown and inventory over time, from the positions ledger of the event log.

The ``positions`` table holds, per key (run, strategy, venue, symbol), cumulative realized P&L, fees
and the current unrealized P&L at every fill and periodic mark. The total over all keys at any
instant is the sum of each key's latest row. With the ledger stored in time order, SQL gets it at
every row as the sum over keys of ``last_value(... IGNORE NULLS)`` of that key so far (with many
keys: each key's increments from ``lag``, then a running sum); drawdown is net P&L minus its running
maximum. These are streaming window functions (no ORDER BY in the window), which DuckDB evaluates
in one pass in storage order.

The plotted series are downsampled in SQL to ``points`` time buckets: the last value of each key
in each bucket, carried forward through buckets where the key has no row, summed over keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reports.eventlog import EventLog

RUNNING = "OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
MAX_STREAM_KEYS = 16  # up to this many keys, one streaming last_value per key; beyond, lag per key + running sum


@dataclass
class PnlSummary:
    realized: float = 0.0
    unrealized: float = 0.0
    fees: float = 0.0
    max_drawdown: float = 0.0
    max_drawdown_ts: int | None = None
    peak_ts: int | None = None
    start_ts: int | None = None
    end_ts: int | None = None
    source: str = "positions"
    positions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gross(self) -> float:
        return self.realized + self.unrealized

    @property
    def net(self) -> float:
        return self.realized + self.unrealized - self.fees


def build_ledger_from_fills(log: EventLog) -> None:
    """Stand-in ledger when a log has fills but no positions rows (a session that died before writing them).

    Unrealized P&L at each fill is mark-to-market of the position at the mid seen with the fill,
    minus realized; that holds for any cost basis when the run started flat.
    """
    log.con.execute(
        """INSERT INTO ledger
        SELECT k, run, seq, ts, position_after,
               sum(realized_pnl) OVER w,
               -sum(sgn * qty * price) OVER w + position_after * coalesce(mid_at_fill, price)
                 - sum(realized_pnl) OVER w,
               sum(fee) OVER w
        FROM fills WINDOW w AS (PARTITION BY k ORDER BY seq ROWS UNBOUNDED PRECEDING)
        ORDER BY ts, run, seq"""
    )


def compute_curve(log: EventLog) -> PnlSummary:
    """Create table ``curve`` (total net P&L and drawdown at every ledger row, in time order)."""
    summary = PnlSummary()
    if log.one("SELECT count(*) FROM ledger")[0] == 0 and log.one("SELECT count(*) FROM fills")[0] > 0:
        build_ledger_from_fills(log)
        summary.source = "fills (the log has no positions rows)"
    con = log.con
    keys = [r[0] for r in log.query("SELECT DISTINCT k FROM ledger ORDER BY k")]
    if len(keys) <= MAX_STREAM_KEYS:
        # ledger is in time order: the total is the sum over keys of each key's last value so far.
        last = " + ".join(
            f"coalesce(last_value(CASE WHEN k = {k} THEN realized + unrealized - fees END IGNORE NULLS) {RUNNING}, 0)"
            for k in keys
        )
        net = f"SELECT row_number() OVER () AS rn, ts, {last or '0'} AS net FROM ledger"
    else:
        con.execute(
            """CREATE OR REPLACE TABLE ldelta AS
            SELECT ts, run, seq,
                   realized + unrealized - fees - coalesce(lag(realized + unrealized - fees) OVER w, 0) AS dn
            FROM ledger WINDOW w AS (PARTITION BY k ORDER BY seq)
            ORDER BY ts, run, seq"""
        )
        net = f"SELECT row_number() OVER () AS rn, ts, sum(dn) {RUNNING} AS net FROM ldelta"
    con.execute(
        f"CREATE OR REPLACE TABLE curve AS SELECT rn, ts, net, net - max(net) {RUNNING} AS drawdown FROM ({net})"
    )
    con.execute("DROP TABLE IF EXISTS ldelta")
    # Final figures straight from each key's last row (exact, no accumulated rounding).
    con.execute(
        """CREATE OR REPLACE TABLE lfinal AS
           SELECT k, arg_max(position, seq) AS position, arg_max(realized, seq) AS realized,
                  arg_max(unrealized, seq) AS unrealized, arg_max(fees, seq) AS fees
           FROM ledger GROUP BY k"""
    )
    row = log.one("SELECT sum(realized), sum(unrealized), sum(fees) FROM lfinal")
    if row and row[0] is not None:
        summary.realized, summary.unrealized, summary.fees = float(row[0]), float(row[1]), float(row[2])
    dd = log.one("SELECT min(drawdown), arg_min(rn, drawdown), min(ts), max(ts) FROM curve")
    if dd and dd[0] is not None:
        summary.max_drawdown = float(dd[0])
        summary.start_ts, summary.end_ts = int(dd[2]), int(dd[3])
        if summary.max_drawdown < 0:
            at = log.one(
                "SELECT (SELECT ts FROM curve WHERE rn = $rn), arg_max(ts, net) FROM curve WHERE rn <= $rn",
                {"rn": int(dd[1])},
            )
            summary.max_drawdown_ts, summary.peak_ts = int(at[0]), int(at[1])
    summary.positions = log.dicts(
        """SELECT keys.strategy_id, keys.venue, keys.symbol, l.position, l.realized, l.unrealized, l.fees
           FROM lfinal l JOIN keys USING (k) ORDER BY keys.run, keys.strategy_id, keys.venue, keys.symbol"""
    )
    return summary


def bucket(col: str, n: int) -> str:
    """SQL: index in [0, n) of the time bucket of ``col`` between ``$t0`` and ``$t1`` (float maths: no overflow)."""
    return f"least(CAST(floor(({col} - $t0) / ($t1 - $t0 + 1) * {n}) AS BIGINT), {n - 1})"


def bucket_end(b: str, n: int) -> str:
    return f"$t0 + CAST(($t1 - $t0) / {n} * ({b} + 1) AS BIGINT)"


def _build_grid(log: EventLog, points: int) -> tuple[int, int] | None:
    """Create ``lgrid``: per key and time bucket, each ledger column's last value, carried forward."""
    row = log.one("SELECT min(ts), max(ts) FROM ledger")
    if not row or row[0] is None:
        return None
    t0, t1 = int(row[0]), int(row[1])
    log.con.execute(
        f"""CREATE OR REPLACE TABLE lgrid AS
        WITH b AS (
            SELECT k, {bucket("ts", points)} AS b,
                   arg_max(realized, seq) AS r, arg_max(unrealized, seq) AS u, arg_max(fees, seq) AS f,
                   arg_max(position, seq) AS p
            FROM ledger GROUP BY k, b
        ), g AS (SELECT kk.k, t.b FROM (SELECT DISTINCT k FROM b) kk CROSS JOIN range({points}) t(b))
        SELECT g.k, g.b,
               last_value(b.r IGNORE NULLS) OVER w AS r, last_value(b.u IGNORE NULLS) OVER w AS u,
               last_value(b.f IGNORE NULLS) OVER w AS f, last_value(b.p IGNORE NULLS) OVER w AS p
        FROM g LEFT JOIN b ON g.k = b.k AND g.b = b.b
        WINDOW w AS (PARTITION BY g.k ORDER BY g.b ROWS UNBOUNDED PRECEDING)""",
        {"t0": t0, "t1": t1},
    )
    return t0, t1


def downsampled(log: EventLog, points: int = 1500, max_keys: int = 8) -> tuple[dict[str, list], dict[str, dict]]:
    """Series for the plots, at ``points`` bucket ends.

    Totals: ts, realized, unrealized, fees, net, drawdown (the deepest in each bucket); and the
    position per venue:symbol (summed over strategies and runs) for the ``max_keys`` most active.
    """
    names = ("ts", "realized", "unrealized", "fees", "net", "drawdown")
    span = _build_grid(log, points)
    if span is None:
        return {k: [] for k in names}, {}
    params = {"t0": span[0], "t1": span[1]}
    rows = log.query(
        f"""WITH tot AS (SELECT b, sum(coalesce(r, 0)) AS r, sum(coalesce(u, 0)) AS u, sum(coalesce(f, 0)) AS f
                         FROM lgrid GROUP BY b),
            dd AS (SELECT {bucket("ts", points)} AS b, min(drawdown) AS d FROM curve GROUP BY b)
        SELECT {bucket_end("tot.b", points)} AS ts, r, u, f, r + u - f,
               last_value(dd.d IGNORE NULLS) OVER (ORDER BY tot.b ROWS UNBOUNDED PRECEDING)
        FROM tot LEFT JOIN dd USING (b) ORDER BY tot.b""",
        params,
    )
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    curve = {k: list(v) for k, v in zip(names, cols, strict=True)}
    inv_rows = log.query(
        f"""WITH names AS (SELECT k, venue || ':' || symbol AS name FROM keys),
            top AS (SELECT name FROM ledger JOIN names USING (k) GROUP BY name ORDER BY count(*) DESC, name LIMIT $m)
        SELECT name, {bucket_end("g.b", points)} AS ts, sum(coalesce(p, 0))
        FROM lgrid g JOIN names USING (k) WHERE name IN (SELECT name FROM top)
        GROUP BY name, g.b ORDER BY name, g.b""",
        {**params, "m": max_keys},
    )
    inventory: dict[str, dict[str, list]] = {}
    for name, ts, pos in inv_rows:
        s = inventory.setdefault(str(name), {"ts": [], "position": []})
        s["ts"].append(ts)
        s["position"].append(pos)
    return curve, inventory


def net_at(log: EventLog, ts: int) -> float:
    """Total net P&L as of ``ts`` (0 before the first ledger row)."""
    row = log.one("SELECT arg_max(net, rn) FROM curve WHERE ts <= $ts", {"ts": ts})
    return float(row[0]) if row and row[0] is not None else 0.0
