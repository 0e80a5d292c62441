"""Round-trip trades by FIFO lot matching of fills, in SQL.

Definition. Per (run, strategy, venue, symbol), the k-th unit bought is matched with the k-th unit
sold: that is exactly FIFO on the signed position, whether the position is long or short and
across flips. A *round trip* is one matched lot: the part of an opening fill and the part of the
later, opposite fill that FIFO pairs with it (a fill that closes several lots, or is closed in
several pieces, takes part in several round trips):

- quantity: the matched quantity;
- gross P&L: quantity * (sell price - buy price);
- fees: each fill's fee pro rata to the matched quantity (each fill's fee is shared by its lots);
- net P&L = gross - fees; a win has net > 0, a loss net < 0 (net = 0 is a scratch);
- holding time: closing fill ts - opening fill ts;
- side: long when the buy opened the lot, short when the sell did.

Lots still open at the end of the run are not round trips (they are in unrealized P&L).

How. Quantities become integer units (``unit`` per base unit, chosen so every running sum stays
exact in a double). Running sums per side turn each buy and each sell into an interval (lo, hi] of
units. The ends of all intervals, sorted downwards, split the matched range (0, min(bought, sold)]
into elementary segments; the buy (sell) covering a segment is the one with the smallest end at
or above it, i.e. the last buy (sell) seen walking the ends downwards (``last_value ... IGNORE
NULLS``). Each segment is one (buy, sell) pair, i.e. one round trip. Every step is a sort or a
streaming window over a table in storage order, so the cost stays near that of sorting the fills.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from reports.eventlog import EventLog

RUNNING = "OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
MAX_UNIT = 1_000_000_000  # finest quantity unit: 1e-9 of the base unit
EXACT = 2.0**52  # doubles hold integers exactly below 2**53; keep a factor 2 of margin


@dataclass
class RoundTripStats:
    count: int = 0
    wins: int = 0
    losses: int = 0
    scratches: int = 0
    win_rate: float | None = None
    avg_win: float | None = None
    avg_loss: float | None = None
    profit_factor: float | None = None  # None when there are no losses (infinite) or no trades
    gross: float = 0.0
    fees: float = 0.0
    net: float = 0.0
    expectancy: float | None = None
    hold_mean_s: float | None = None
    hold_p50_s: float | None = None
    hold_p90_s: float | None = None
    hold_max_s: float | None = None
    open_qty: list[dict[str, Any]] = field(default_factory=list)


def quantity_unit(total_qty: float) -> int:
    """Largest power of ten <= 1e9 such that ``total_qty`` in those units is an exact double."""
    if total_qty <= 0 or not math.isfinite(total_qty):
        return MAX_UNIT
    return int(min(MAX_UNIT, 10 ** math.floor(math.log10(EXACT / total_qty))))


def _case_k(values: dict[int, float], default: float = 0) -> str:
    """SQL: the value for the row's key ``k`` from a small per-key table, without a join."""
    if not values:
        return str(default)
    whens = " ".join(f"WHEN {int(k)} THEN {v!r}" for k, v in values.items())
    return f"CASE k {whens} ELSE {default!r} END"


def compute_fill_sequence(log: EventLog) -> int:
    """Create ``fseq``: per fill, running units bought (``cb``) and sold (``cs``) within its key.

    ``fills`` is stored in (k, seq) order, so running sums over the whole table minus the totals of
    the keys before give the running sums within each key. ``cum`` is the position change since the
    start of the key, in base units. Returns the quantity unit.
    """
    total = log.one("SELECT coalesce(sum(abs(qty)), 0) FROM fills")[0]
    unit = quantity_unit(float(total))
    q = f"round(qty * {unit})"
    per_key = log.query(
        f"""SELECT k, coalesce(sum({q}) FILTER (WHERE sgn = 1), 0), coalesce(sum({q}) FILTER (WHERE sgn = -1), 0)
            FROM fills GROUP BY k ORDER BY k"""
    )
    ob: dict[int, float] = {}
    os_: dict[int, float] = {}
    acc_b = acc_s = 0.0
    for k, tb, ts_ in per_key:  # a handful of keys: the offsets of each key are the totals before it
        ob[k], os_[k] = acc_b, acc_s
        acc_b += float(tb)
        acc_s += float(ts_)
    log.con.execute(
        f"""CREATE OR REPLACE TABLE fseq AS
        WITH r AS (
            SELECT k, seq, ts, sgn, price, fee, position_after, {q} AS q,
                   sum(CASE WHEN sgn = 1 THEN {q} ELSE 0 END) {RUNNING} - {_case_k(ob)} AS cb,
                   sum(CASE WHEN sgn = -1 THEN {q} ELSE 0 END) {RUNNING} - {_case_k(os_)} AS cs
            FROM fills
        )
        SELECT *, (cb - cs) / {unit} AS cum FROM r"""
    )
    return unit


def compute_round_trips(log: EventLog, unit: int) -> None:
    """Create table ``rt``: one row per round trip (matched lot). Needs ``fseq``."""
    con = log.con
    # One row per fill: the end of its interval and what the lots it is part of need from it.
    con.execute(
        """CREATE OR REPLACE TABLE ends AS
        SELECT k, sgn, CASE WHEN sgn = 1 THEN cb ELSE cs END AS p, seq, ts, price, fee / q AS fpq
        FROM fseq WHERE q > 0 ORDER BY k DESC, p DESC"""
    )
    lim = {
        int(k): float(v)
        for k, v in log.query(
            "SELECT k, least(max(p) FILTER (WHERE sgn = 1), max(p) FILTER (WHERE sgn = -1)) FROM ends GROUP BY k"
        )
        if v is not None
    }
    # Walking the ends downwards, the last buy (sell) seen is the one covering the segment that ends here.
    side = []
    for name, sign in (("b", 1), ("s", -1)):
        for col in ("k", "seq", "ts", "price", "fpq"):
            side.append(f"last_value(CASE WHEN sgn = {sign} THEN {col} END IGNORE NULLS) {RUNNING} AS {name}{col}")
    con.execute(
        f"""CREATE OR REPLACE TABLE rt AS
        WITH w AS (
            SELECT k, p AS hi, CASE WHEN lead(k) OVER () = k THEN lead(p) OVER () ELSE 0 END AS lo,
                   {_case_k(lim, -1.0)} AS lim, {", ".join(side)}
            FROM ends
        ), m AS (
            SELECT w.*, (w.hi - w.lo) / {unit} AS qty, (w.hi - w.lo) * (w.bfpq + w.sfpq) AS fees
            FROM w WHERE w.hi > w.lo AND w.hi <= w.lim AND w.bk = w.k AND w.sk = w.k
        )
        SELECT k, CASE WHEN bseq < sseq THEN 'long' ELSE 'short' END AS direction,
               least(bts, sts) AS open_ts, greatest(bts, sts) AS close_ts,
               least(bseq, sseq) AS open_seq, greatest(bseq, sseq) AS close_seq,
               qty, CASE WHEN bseq < sseq THEN bprice ELSE sprice END AS entry_price,
               CASE WHEN bseq < sseq THEN sprice ELSE bprice END AS exit_price,
               qty * (sprice - bprice) AS gross, fees, qty * (sprice - bprice) - fees AS net,
               greatest(bts, sts) - least(bts, sts) AS hold_ns
        FROM m"""
    )
    con.execute("DROP TABLE ends")


def round_trip_stats(log: EventLog, unit: int) -> RoundTripStats:
    st = RoundTripStats()
    row = log.one(
        """SELECT count(*), count(*) FILTER (WHERE net > 0), count(*) FILTER (WHERE net < 0),
                  count(*) FILTER (WHERE net = 0),
                  avg(net) FILTER (WHERE net > 0), avg(net) FILTER (WHERE net < 0),
                  coalesce(sum(net) FILTER (WHERE net > 0), 0), coalesce(sum(net) FILTER (WHERE net < 0), 0),
                  coalesce(sum(gross), 0), coalesce(sum(fees), 0), coalesce(sum(net), 0), avg(net),
                  avg(hold_ns) / 1e9, quantile_cont(hold_ns, 0.5) / 1e9, quantile_cont(hold_ns, 0.9) / 1e9,
                  max(hold_ns) / 1e9
           FROM rt"""
    )
    st.count, st.wins, st.losses, st.scratches = (int(v) for v in row[:4])
    st.avg_win, st.avg_loss = row[4], row[5]
    sum_win, sum_loss = float(row[6]), float(row[7])
    st.gross, st.fees, st.net, st.expectancy = float(row[8]), float(row[9]), float(row[10]), row[11]
    st.hold_mean_s, st.hold_p50_s, st.hold_p90_s, st.hold_max_s = row[12:16]
    if st.count:
        st.win_rate = st.wins / st.count
        st.profit_factor = sum_win / -sum_loss if sum_loss < 0 else None
    st.open_qty = log.dicts(
        f"""SELECT keys.strategy_id, keys.venue, keys.symbol, o.open_qty
            FROM (SELECT k, (arg_max(cb, seq) - arg_max(cs, seq)) / {unit} AS open_qty FROM fseq GROUP BY k) o
            JOIN keys USING (k)
            WHERE o.open_qty <> 0 ORDER BY k"""
    )
    return st


def largest_losses(log: EventLog, n: int = 10) -> list[dict[str, Any]]:
    return log.dicts(
        """SELECT keys.run, keys.strategy_id, keys.venue, keys.symbol, direction, open_ts, close_ts, qty, entry_price,
                  exit_price, gross, fees, net, hold_ns / 1e9 AS hold_s
           FROM rt JOIN keys USING (k) WHERE net < 0 ORDER BY net, close_ts LIMIT $n""",
        {"n": n},
    )


def pnl_histogram(log: EventLog, bins: int = 40) -> dict[str, list]:
    """Bins of round-trip net P&L between the 0.5th and 99.5th percentiles (outliers go to the end bins)."""
    row = log.one("SELECT quantile_cont(net, 0.005), quantile_cont(net, 0.995), count(*) FROM rt")
    if not row or not row[2]:
        return {"edges": [], "counts": []}
    lo, hi = float(row[0]), float(row[1])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / bins
    rows = log.query(
        """SELECT least(greatest(CAST(floor((net - $lo) / $w) AS BIGINT), 0), $nb - 1) AS b, count(*)
           FROM rt GROUP BY b ORDER BY b""",
        {"lo": lo, "w": width, "nb": bins},
    )
    counts = [0] * bins
    for b, c in rows:
        counts[int(b)] = int(c)
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts}


def holding_histogram(log: EventLog, per_decade: int = 5) -> dict[str, list]:
    """Counts of holding times on log10-seconds bins (holding times under 1 µs go to the first bin)."""
    rows = log.query(
        """SELECT CAST(floor(log10(greatest(hold_ns, 1000) / 1e9) * $k) AS BIGINT) AS b, count(*)
           FROM rt GROUP BY b ORDER BY b""",
        {"k": per_decade},
    )
    return {"log10_s": [b / per_decade for b, _ in rows], "counts": [int(c) for _, c in rows], "per_decade": per_decade}
