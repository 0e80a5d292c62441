"""Decision by decision and fill by fill: a session's event log against its replay's.

What is compared, and on which clock:

* **Decisions** are the strategy's order requests (``orders`` rows ``submit``, ``cancel_request``,
  ``modify_request``). Their time is the receive time of the market data the decision was made
  on: the last book the run showed its strategies before the decision (``market`` row of the
  same symbol with a lower ``seq``; for a submit it is the row's ``ts_tick``, while a cancel row
  carries its order's). The capture records the receive time the live feed stamped on each
  frame and the replay's clock is that time, so a decision made on the same message has the same
  time in both logs (``ts``, the live clock when the strategy ran, includes the live loop's delay
  and is not comparable). Two decisions match when kind, side, price and quantity are equal and
  their times are within the tolerance.
* **Fills** match when side, price, quantity and liquidity (maker/taker) are equal, the decision
  of the order they fill has the same time (``ts_tick``, within the tolerance) and the venue's
  fill time ``ts_event`` is within the tolerance (the simulated venue fills on a market message:
  its receive time in the replay, the live clock as the message was matched in the session).

Each (strategy, symbol, kind, side) is aligned in order: rows match pairwise; where they do not, the
nearer match ahead is taken and the rows skipped over count as unmatched on their side. The share
matched is ``matched / max(session, replay)``, so a decision only one run made lowers it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DECISIONS = ("submit", "cancel_request", "modify_request")
ANSWERS = ("accepted", "rejected", "canceled", "cancel_rejected", "modified", "partially_filled", "filled", "expired")
ORDER_COLS = [
    "seq", "ts", "event", "strategy_id", "venue", "symbol", "client_order_id", "side", "price", "qty", "status",
    "reason", "ts_tick", "ts_sent", "ts_acked", "ts_venue",
]  # fmt: skip
MARKET_COLS = ["seq", "ts", "venue", "symbol"]
FILL_COLS = [
    "seq", "ts", "ts_event", "strategy_id", "symbol", "client_order_id", "side", "price", "qty", "liquidity", "fee",
    "ts_tick",
]  # fmt: skip
LOOKAHEAD = 64


def read_table(run_dir: Path, table: str, columns: list[str]) -> pd.DataFrame:
    import duckdb

    files = sorted(run_dir.glob(f"{table}*.parquet"))
    if not files:
        return pd.DataFrame(columns=columns)
    sel = ", ".join(columns)
    return duckdb.connect().execute(f"select {sel} from read_parquet(?) order by seq", [[str(f) for f in files]]).df()


@dataclass
class Alignment:
    """Pairs of row indices (session, replay); a side's unmatched rows pair with None."""

    pairs: list[tuple[int | None, int | None]] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return sum(1 for a, b in self.pairs if a is not None and b is not None)


def align(a: list[dict], b: list[dict], same: Callable[[dict, dict], bool], tol_ns: int) -> Alignment:
    """Match two time-ordered lists in order (see the module docstring)."""
    out = Alignment()
    i = j = 0
    while i < len(a) and j < len(b):
        if same(a[i], b[j]):
            out.pairs.append((i, j))
            i += 1
            j += 1
            continue
        ahead_b = _ahead(a[i], b, j, same, tol_ns)
        ahead_a = _ahead(b[j], a, i, lambda x, y: same(y, x), tol_ns)
        if ahead_b is not None and (ahead_a is None or ahead_b - j <= ahead_a - i):
            out.pairs.extend((None, k) for k in range(j, ahead_b))
            j = ahead_b
        elif ahead_a is not None:
            out.pairs.extend((k, None) for k in range(i, ahead_a))
            i = ahead_a
        elif a[i]["tick"] <= b[j]["tick"]:
            out.pairs.append((i, None))
            i += 1
        else:
            out.pairs.append((None, j))
            j += 1
    out.pairs.extend((k, None) for k in range(i, len(a)))
    out.pairs.extend((None, k) for k in range(j, len(b)))
    return out


def _ahead(row: dict, rows: list[dict], start: int, same: Callable[[dict, dict], bool], tol_ns: int) -> int | None:
    limit = row["tick"] + tol_ns
    for k in range(start + 1, min(start + LOOKAHEAD, len(rows))):
        if rows[k]["tick"] > limit:
            return None
        if same(row, rows[k]):
            return k
    return None


def _eq(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12)


@dataclass
class Matched:
    """One table's comparison: per group alignments and the rows they index."""

    name: str
    session: int = 0
    replay: int = 0
    matched: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    unmatched: list[tuple[dict | None, dict | None, str]] = field(default_factory=list)  # (session, replay, kind)
    pairs: list[tuple[dict, dict]] = field(default_factory=list)

    @property
    def share(self) -> float:
        n = max(self.session, self.replay)
        return self.matched / n if n else 1.0

    def summary(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "replay": self.replay,
            "matched": self.matched,
            "share": round(self.share, 6),
            "by_kind": self.by_kind,
        }


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in df.to_dict("records")]


def _compare(
    name: str,
    s: pd.DataFrame,
    r: pd.DataFrame,
    keys: list[str],
    same: Callable[[dict, dict], bool],
    tol_ns: int,
    kind_of: Callable[[dict], str],
) -> Matched:
    m = Matched(name, len(s), len(r))
    by_s = {k if isinstance(k, tuple) else (k,): g for k, g in s.groupby(keys)} if len(s) else {}
    by_r = {k if isinstance(k, tuple) else (k,): g for k, g in r.groupby(keys)} if len(r) else {}
    for g in sorted(set(by_s) | set(by_r)):
        sel_s = _records(by_s[g].sort_values("seq")) if g in by_s else []
        sel_r = _records(by_r[g].sort_values("seq")) if g in by_r else []
        al = align(sel_s, sel_r, same, tol_ns)
        kind = kind_of(sel_s[0] if sel_s else sel_r[0])
        counts = m.by_kind.setdefault(kind, {"session": 0, "replay": 0, "matched": 0})
        counts["session"] += len(sel_s)
        counts["replay"] += len(sel_r)
        counts["matched"] += al.matched
        m.matched += al.matched
        for a, b in al.pairs:
            ra = sel_s[a] if a is not None else None
            rb = sel_r[b] if b is not None else None
            if ra is not None and rb is not None:
                m.pairs.append((ra, rb))
            else:
                m.unmatched.append((ra, rb, kind))
    return m


def decisions_of(orders: pd.DataFrame, market: pd.DataFrame, events: tuple[str, ...] = DECISIONS) -> pd.DataFrame:
    """The decision rows of ``orders`` (or those of ``events``) with ``tick``: the receive time of
    the last book shown before each (the order's own ``ts_tick`` when no book was logged)."""
    d = orders[orders["event"].isin(events)].copy()
    if d.empty or market.empty:
        d["tick"] = d["ts_tick"]
        return d
    m = market.rename(columns={"ts": "tick"}).sort_values("seq")
    d = pd.merge_asof(
        d.sort_values("seq"), m, on="seq", by=["venue", "symbol"], direction="backward", allow_exact_matches=False
    )
    d["tick"] = d["tick"].fillna(d["ts_tick"]).astype("int64")
    return d


def compare_decisions(session: pd.DataFrame, replay: pd.DataFrame, tol_ns: int) -> Matched:
    """``session`` and ``replay``: ``decisions_of`` each run."""
    s, r = session, replay

    def same(x: dict, y: dict) -> bool:
        return _eq(x["price"], y["price"]) and _eq(x["qty"], y["qty"]) and abs(x["tick"] - y["tick"]) <= tol_ns

    return _compare("decisions", s, r, ["strategy_id", "symbol", "event", "side"], same, tol_ns, lambda x: x["event"])


def compare_fills(session: pd.DataFrame, replay: pd.DataFrame, tol_ns: int) -> Matched:
    session = session.assign(tick=session["ts_event"])
    replay = replay.assign(tick=replay["ts_event"])

    def same(x: dict, y: dict) -> bool:
        return (
            _eq(x["price"], y["price"])
            and _eq(x["qty"], y["qty"])
            and x["liquidity"] == y["liquidity"]
            and abs(x["ts_tick"] - y["ts_tick"]) <= tol_ns
            and abs(x["ts_event"] - y["ts_event"]) <= tol_ns
        )

    return _compare(
        "fills", session, replay, ["strategy_id", "symbol", "side"], same, tol_ns, lambda x: f"fill {x['liquidity']}"
    )


def answer_differences(session: pd.DataFrame, replay: pd.DataFrame, decisions: Matched) -> list[dict[str, Any]]:
    """Orders submitted alike in both runs whose venue answers differ, earliest first: answered
    otherwise (rejected post-only in one, accepted in the other; filled in one, cancelled in the
    other) or at another point of the market data (an acknowledgement or a fill that reached one
    run before a book message and the other after it). ``session``/``replay``: the answer rows
    with their ``tick`` (``decisions_of(..., events=ANSWERS)``)."""
    groups_s = dict(list(session.groupby("client_order_id"))) if len(session) else {}
    groups_r = dict(list(replay.groupby("client_order_id"))) if len(replay) else {}
    out = []
    for a, b in decisions.pairs:
        if a["event"] != "submit":
            continue
        ga = _answers(groups_s.get(a["client_order_id"]))
        gb = _answers(groups_r.get(b["client_order_id"]))
        for k in range(max(len(ga), len(gb))):
            x = ga[k] if k < len(ga) else None
            y = gb[k] if k < len(gb) else None
            if x is not None and y is not None and x["event"] == y["event"] and x["tick"] == y["tick"]:
                continue
            out.append(
                {
                    "tick": min(r["tick"] for r in (x, y) if r is not None),
                    "order_tick": a["ts_tick"],
                    "side": a["side"],
                    "price": a["price"],
                    "session": x,
                    "replay": y,
                    "session_answers": [r["event"] for r in ga],
                    "replay_answers": [r["event"] for r in gb],
                }
            )
            break
    out.sort(key=lambda d: d["tick"])
    return out


def _answers(g: pd.DataFrame | None) -> list[dict]:
    if g is None:
        return []
    return _records(g[g["event"] != "partially_filled"].sort_values("seq"))


def row_time(row: dict) -> int:
    return int(row.get("tick") or row.get("ts_tick") or row.get("ts") or 0)


def first_unmatched(m: Matched) -> tuple[dict | None, dict | None, str] | None:
    if not m.unmatched:
        return None
    return min(m.unmatched, key=lambda u: row_time(u[0] if u[0] is not None else u[1]))  # type: ignore[arg-type]
