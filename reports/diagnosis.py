"""Which of the guide's causes of a losing strategy (section 9.2) the figures point to.

Each finding names the cause in the guide's words, whether the numbers flag it, the figure that
supports the verdict and the threshold used. Thresholds:

- adverse selection: markout at +10 s (at +1 s when no fill has 10 s of data after it) below 0 bps,
  i.e. after the mid moves the fills are worth less than they cost, spread included;
- fees too high: fees >= 50 % of gross P&L (realized + unrealized before fees) while gross P&L is
  positive: the edge exists but the fees eat most of it;
- market regime change: per-second mid volatility or mean spread of a traded symbol changes by a
  factor >= 2 between the first and second half of the run and the second half earns less than the
  first; or the mid trends by >= 3 standard deviations of its own noise over the run while P&L is negative;
- likely bug, position drift: any positions row differs from the start position plus the signed sum
  of fills up to it (or a fill's ``position_after`` from the running sum) by more than 1e-9 (relative);
- likely bug, rejections in bursts: any burst of >= 5 rejections each within 1 s of the previous;
- likely bug, strategy error: a ``strategy_halted`` incident for the strategy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import duckdb

from reports.eventlog import EventLog
from reports.execution import BURST_GAP_NS, BURST_MIN, ExecutionStats
from reports.pnl import PnlSummary, net_at

FEE_SHARE_MAX = 0.5
REGIME_RATIO = 2.0
TREND_Z = 3.0
DRIFT_TOL = 1e-9
MIN_RETURNS = 30  # per half, for a volatility figure to count


@dataclass
class Finding:
    cause: str
    flagged: bool
    figure: str
    threshold: str


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def position_drift(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Positions rows (and fills' position_after) against the start position plus the running sum of fills.

    The start position of a key is its first fill's ``position_after`` minus that fill (or its first
    positions row when it has no fill), so a run that starts with inventory is not a drift.
    Read-only (needs ``ledger``, ``fseq``, ``keys``): ``con`` may be a cursor working beside other queries.
    """
    start = """pos_start AS (
            SELECT k, coalesce(fs.start, ls.p0) AS start FROM
                (SELECT k, arg_min(position, seq) AS p0 FROM ledger GROUP BY k) ls
                FULL JOIN (SELECT k, arg_min(position_after - cum, seq) AS start FROM fseq GROUP BY k) fs USING (k))"""
    tol = f"{DRIFT_TOL} * greatest(1, abs(expected))"
    ledger = _dicts(
        con,
        f"""WITH {start}, chk AS (
                SELECT l.k, l.ts, l.position, s.start + coalesce(c.cum, 0) AS expected
                FROM ledger l JOIN pos_start s ON l.k = s.k
                ASOF LEFT JOIN fseq c ON l.k = c.k AND l.seq >= c.seq
            )
            SELECT count(*) AS checked,
                   count(*) FILTER (WHERE abs(position - expected) > {tol}) AS drifted,
                   max(abs(position - expected)) AS max_drift,
                   min(ts) FILTER (WHERE abs(position - expected) > {tol}) AS first_ts,
                   arg_min(k, ts) FILTER (WHERE abs(position - expected) > {tol}) AS first_k
            FROM chk""",
    )[0]
    ledger["first_key"] = None
    if ledger["first_k"] is not None:
        rows = con.execute(
            "SELECT strategy_id || ' ' || venue || ':' || symbol FROM keys WHERE k = $k", {"k": ledger["first_k"]}
        ).fetchall()
        ledger["first_key"] = rows[0][0] if rows else None
    fills = _dicts(
        con,
        f"""WITH {start}, chk AS (SELECT c.ts, c.position_after AS position, s.start + c.cum AS expected
                                 FROM fseq c JOIN pos_start s ON c.k = s.k)
            SELECT count(*) AS checked, count(*) FILTER (WHERE abs(position - expected) > {tol}) AS drifted,
                   max(abs(position - expected)) AS max_drift,
                   min(ts) FILTER (WHERE abs(position - expected) > {tol}) AS first_ts
            FROM chk""",
    )[0]
    return {"ledger": ledger, "fills": fills}


def market_halves(log: EventLog, t0: int, t1: int) -> list[dict[str, Any]]:
    """Per traded venue:symbol and half of [t0, t1]: per-second mid volatility, mean spread, trend."""
    tm = (t0 + t1) // 2
    return log.dicts(
        """WITH s AS (
               SELECT mkey, ts // 1000000000 AS sec, arg_max(mid, ts) AS mid,
                      avg((ask - bid) / mid) FILTER (WHERE ask > bid) AS spr
               FROM market WHERE mkey IN (SELECT DISTINCT mkey FROM fills) AND ts BETWEEN $t0 AND $t1
               GROUP BY ALL
           ),
           r AS (SELECT *, ln(mid / lag(mid) OVER (PARTITION BY mkey ORDER BY sec)) AS ret FROM s)
           SELECT m.venue, m.symbol, sec * 1000000000 >= $tm AS late,
                  stddev_samp(ret) * 1e4 AS vol_bps, avg(spr) * 1e4 AS spread_bps, count(ret) AS n,
                  sum(ret) * 1e4 AS drift_bps
           FROM r JOIN mkeys m USING (mkey) GROUP BY ALL ORDER BY m.venue, m.symbol, late""",
        {"t0": t0, "t1": t1, "tm": tm},
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return b / a


def regime(log: EventLog, pnl: PnlSummary) -> tuple[Finding, list[dict[str, Any]]]:
    name = "Market regime change"
    thr = (
        f"volatility or spread ratio (2nd half / 1st half) >= {REGIME_RATIO:g} or <= {1 / REGIME_RATIO:g} with the "
        f"2nd half earning less; or |trend| >= {TREND_Z:g} sigma with net P&L < 0"
    )
    if pnl.start_ts is None or pnl.end_ts is None or pnl.end_ts - pnl.start_ts < 2_000_000_000:
        return Finding(name, False, "run too short to compare market conditions", thr), []
    halves = market_halves(log, pnl.start_ts, pnl.end_ts)
    tm = (pnl.start_ts + pnl.end_ts) // 2
    first_net = net_at(log, tm)
    second_net = pnl.net - first_net
    by_key: dict[tuple[str, str], dict[bool, dict[str, Any]]] = {}
    for h in halves:
        by_key.setdefault((h["venue"], h["symbol"]), {})[bool(h["late"])] = h
    best: tuple[float, str] | None = None
    trend: tuple[float, str] | None = None
    for (venue, symbol), hs in sorted(by_key.items()):
        a, b = hs.get(False), hs.get(True)
        if a and b and a["n"] >= MIN_RETURNS and b["n"] >= MIN_RETURNS:
            for what in ("vol_bps", "spread_bps"):
                r = _ratio(a[what], b[what])
                if r is None:
                    continue
                strength = max(r, 1 / r)
                label = "volatility" if what == "vol_bps" else "spread"
                text = f"{venue}:{symbol} {label} {a[what]:.3g} -> {b[what]:.3g} bps (x{r:.2f})"
                if best is None or strength > best[0]:
                    best = (strength, text)
        n = sum(h["n"] for h in hs.values())
        vol = [h["vol_bps"] for h in hs.values() if h["vol_bps"]]
        if n >= 2 * MIN_RETURNS and vol:
            drift = sum(h["drift_bps"] or 0.0 for h in hs.values())
            z = drift / (max(vol) * math.sqrt(n))
            if trend is None or abs(z) > abs(trend[0]):
                trend = (z, f"{venue}:{symbol} moved {drift:+.1f} bps over the run ({z:+.1f} sigma)")
    parts = []
    flagged = False
    if best is not None:
        parts.append(best[1])
        if best[0] >= REGIME_RATIO and second_net < first_net:
            flagged = True
    if trend is not None:
        parts.append(trend[1])
        if abs(trend[0]) >= TREND_Z and pnl.net < 0:
            flagged = True
    parts.append(f"net P&L 1st half {first_net:,.2f}, 2nd half {second_net:,.2f}")
    return Finding(name, flagged, "; ".join(parts), thr), halves


def diagnose(
    log: EventLog, pnl: PnlSummary, ex: ExecutionStats, drift: dict[str, Any], strategy: str | None
) -> tuple[list[Finding], list[dict[str, Any]]]:
    findings: list[Finding] = []

    # Adverse selection
    mk = {m.horizon: m for m in ex.markouts}
    pick = mk.get("+10s") if mk.get("+10s") and mk["+10s"].fills else mk.get("+1s")
    thr = "markout at +10 s (else +1 s) < 0 bps"
    if pick is None or not pick.fills or pick.bps is None:
        findings.append(Finding("Adverse selection", False, "no markout data (no market data after the fills)", thr))
    else:
        mm = f"{pick.mid_move_bps:+.2f}" if pick.mid_move_bps is not None else "n/a"
        fig = (
            f"markout {pick.horizon} = {pick.bps:+.2f} bps over {pick.fills:,} fills ({pick.quote:+,.2f} quote); "
            f"mid move after fills {mm} bps"
        )
        findings.append(Finding("Adverse selection", pick.bps < 0, fig, thr))

    # Fees too high
    thr = f"fees >= {FEE_SHARE_MAX:.0%} of gross P&L while gross P&L > 0"
    gross = pnl.gross
    if gross > 0:
        share = pnl.fees / gross
        fig = f"fees {pnl.fees:,.2f} = {share:.0%} of gross P&L {gross:,.2f}"
        if ex.fees_bps is not None:
            fig += f" ({ex.fees_bps:.2f} bps of volume)"
        findings.append(Finding("Fees too high", share >= FEE_SHARE_MAX, fig, thr))
    else:
        fig = f"gross P&L {gross:,.2f} is not positive before fees; fees {pnl.fees:,.2f} add to it"
        findings.append(Finding("Fees too high", False, fig, thr))

    regime_finding, halves = regime(log, pnl)
    findings.append(regime_finding)

    # Likely bugs
    led, fil = drift["ledger"], drift["fills"]
    thr = f"any positions row or fill off the running sum of fills by > {DRIFT_TOL:g} (relative)"
    drifted = int(led["drifted"] or 0) + int(fil["drifted"] or 0)
    if drifted:
        fig = (
            f"{led['drifted']:,} of {led['checked']:,} positions rows and {fil['drifted']:,} of {fil['checked']:,} "
            f"fills disagree with the fills; max drift {max(led['max_drift'] or 0, fil['max_drift'] or 0):.6g}"
        )
        if led["first_key"]:
            fig += f", first on {led['first_key']}"
    else:
        fig = f"{led['checked']:,} positions rows and {fil['checked']:,} fills agree with the running sum of fills"
    findings.append(Finding("Bug in strategy logic: position drift", bool(drifted), fig, thr))

    thr = f">= {BURST_MIN} rejections each within {BURST_GAP_NS / 1e9:g} s of the previous"
    if ex.bursts:
        b = ex.bursts[0]
        span_s = (b["end_ts"] - b["start_ts"]) / 1e9
        fig = f"{len(ex.bursts)} burst(s); largest {b['count']} rejections in {span_s:.3f} s ({b['top_reason']})"
    else:
        fig = f"{ex.orders_rejected:,} rejections, none in bursts"
    findings.append(Finding("Bug in strategy logic: orders rejected in bursts", bool(ex.bursts), fig, thr))

    halted = log.dicts(
        "SELECT ts, detail FROM incidents WHERE kind = 'strategy_halted'"
        + (" AND detail LIKE $pat" if strategy else "")
        + " ORDER BY ts LIMIT 3",
        {"pat": f"%strategy_id={strategy}%"} if strategy else None,
    )
    thr = "any strategy_halted incident"
    fig = f"halted: {halted[0]['detail']}" if halted else "no strategy_halted incident"
    findings.append(Finding("Bug in strategy logic: strategy error", bool(halted), fig, thr))
    return findings, halves
