"""``run_parity``: replay a recorded session, compare the two event logs, name the first divergence.

The cause of the first divergence is named in this order:

1. **a model the replay changed** (``--set``): the difference itself, e.g. "latency model differs:
   order latency constant 100us recorded vs 5000us replayed";
2. **market data**: the session decided on a book the replay was never shown (nothing in the
   capture at that receive time), or the two books at that time differ;
3. **venue answers**: an order both runs sent alike was answered differently before the
   divergence (rejected post-only in one, accepted in the other; filled in one, cancelled in the
   other): the live loop's timing moved an order's arrival or a fill across a market message;
4. otherwise a decision (or fill) one run made and the other did not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from engine.errors import HftError
from engine.parity.compare import (
    ANSWERS,
    FILL_COLS,
    MARKET_COLS,
    ORDER_COLS,
    Matched,
    answer_differences,
    compare_decisions,
    compare_fills,
    decisions_of,
    first_unmatched,
    read_table,
    row_time,
)
from engine.parity.plot import net_pnl, plot_pnl
from engine.parity.spec import ParityError, Session, read_session, replay_config

DEFAULT_TOLERANCE_US = 1000.0
DECISION_THRESHOLD = 0.99
FILL_THRESHOLD = 1.0
REPORT_JSON = "parity.json"
REPORT_TEXT = "parity.txt"
PNL_PNG = "parity_pnl.png"

#: config path prefix -> what a changed field there is named as
MODELS = (
    ("sim.latency", "latency model differs"),
    ("sim.queue", "queue model differs"),
    ("sim.venues", "fee model differs"),
    ("risk", "risk limits differ"),
    ("strategy_risk", "risk limits differ"),
    ("strategies", "strategy parameters differ"),
    ("seed", "seed differs"),
    ("balances", "balances differ"),
)


def run_parity(
    run_dir: Path,
    out: Path | None = None,
    sets: list[str] | None = None,
    tolerance_us: float = DEFAULT_TOLERANCE_US,
    decision_threshold: float = DECISION_THRESHOLD,
    fill_threshold: float = FILL_THRESHOLD,
) -> dict[str, Any]:
    """Replay ``run_dir`` into ``out`` (default ``run_dir/parity``) and compare; the report (also
    written as ``parity.json``, ``parity.txt`` and ``parity_pnl.png`` in ``out``)."""
    from engine.runners.backtest import run_backtest
    from engine.runners.spec import load_run_spec

    if tolerance_us < 0:
        raise HftError(f"--tolerance-us must be >= 0, got {tolerance_us:g}")
    session = read_session(Path(run_dir))
    out = Path(out) if out is not None else session.run_dir / "parity"
    cfg, applied = replay_config(session, sets or [], out.parent)
    _fresh(out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "replay_config.json"
    config_path.write_text(json.dumps(cfg, indent=2) + "\n")
    spec = load_run_spec(config_path)
    registry = _registry(session, spec)
    result = run_backtest(spec, out, instruments_registry=registry)
    report = compare_runs(session, out, result.manifest, applied, int(tolerance_us * 1000))
    report["thresholds"] = {"decisions": decision_threshold, "fills": fill_threshold}
    report["passed"] = report["decisions"]["share"] >= decision_threshold and report["fills"]["share"] >= fill_threshold
    s_pnl, r_pnl = net_pnl(session.run_dir), net_pnl(out)
    report["pnl"] = {
        "session_net": float(s_pnl.iloc[-1]) if not s_pnl.empty else 0.0,
        "replay_net": float(r_pnl.iloc[-1]) if not r_pnl.empty else 0.0,
        "plot": str(out / PNL_PNG),
    }
    plot_pnl(s_pnl, r_pnl, session.first_book_ns or 0, out / PNL_PNG)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / REPORT_TEXT).write_text(format_report(report) + "\n")
    return report


def _fresh(out: Path) -> None:
    """An earlier parity report in ``out`` is replaced; anything else there is refused."""
    if not out.exists():
        return
    if not out.is_dir():
        raise HftError(f"--out {out} exists and is not a directory")
    if (out / REPORT_JSON).exists() or (out / "replay_config.json").exists():
        shutil.rmtree(out)
    elif any(out.iterdir()):
        raise HftError(f"--out {out} is not empty and holds no earlier parity report")


def _registry(session: Session, spec: Any) -> dict | None:
    """The instruments the session traded (as its venue gave them), else the configured file's."""
    if not session.instruments:
        return None
    from engine.marketdata.instruments import load_instruments

    registry = dict(load_instruments(spec.instruments_path))
    registry.update(session.instruments)
    return registry


def compare_runs(
    session: Session, replay_dir: Path, replay_manifest: dict[str, Any], applied: list[tuple], tol_ns: int
) -> dict[str, Any]:
    s_orders = read_table(session.run_dir, "orders", ORDER_COLS)
    r_orders = read_table(replay_dir, "orders", ORDER_COLS)
    s_fills = read_table(session.run_dir, "fills", FILL_COLS)
    r_fills = read_table(replay_dir, "fills", FILL_COLS)
    s_dec = decisions_of(s_orders, read_table(session.run_dir, "market", MARKET_COLS))
    r_dec = decisions_of(r_orders, read_table(replay_dir, "market", MARKET_COLS))
    decisions = compare_decisions(s_dec, r_dec, tol_ns)
    fills = compare_fills(s_fills, r_fills, tol_ns)
    changes = model_changes(session.manifest, replay_manifest, applied)
    answers = answer_differences(
        decisions_of(s_orders, read_table(session.run_dir, "market", MARKET_COLS), ANSWERS),
        decisions_of(r_orders, read_table(replay_dir, "market", MARKET_COLS), ANSWERS),
        decisions,
    )
    return {
        "run_dir": str(session.run_dir),
        "replay_dir": str(replay_dir),
        "tolerance_us": tol_ns / 1000,
        "window": {"from_ns": session.first_book_ns, "streams": [f"{v}:{s}" for v, s in session.streams]},
        "decisions": decisions.summary(),
        "fills": fills.summary(),
        "model_changes": changes,
        "answer_differences": len(answers),
        "first_divergence": first_divergence(session, replay_dir, decisions, fills, changes, answers),
    }


def model_changes(session_m: dict[str, Any], replay_m: dict[str, Any], applied: list[tuple]) -> list[str]:
    """One line per model the replay runs differently from the session."""
    out: list[str] = []
    s_lat = ((session_m.get("sim") or {}).get("latency")) or {}
    r_lat = ((replay_m.get("sim") or {}).get("latency")) or {}
    for key in ("feed", "order", "response") if s_lat else ():  # a live session's latencies are the venue's
        a, b = s_lat.get(key), r_lat.get(key)
        if a != b and key != "feed":  # the live book has no feed latency of its own: see docs/parity.md
            out.append(f"latency model differs: {key} latency {_describe(a)} recorded vs {_describe(b)} replayed")
    for path, old, new in applied:
        model = next((name for prefix, name in MODELS if path == prefix or path.startswith(prefix)), "config differs")
        if model.startswith("latency model") and out:
            continue  # the effective models, above, already say it
        out.append(f"{model}: {path} {json.dumps(old)} recorded vs {json.dumps(new)} replayed")
    return out


def _describe(model: Any) -> str:
    if not isinstance(model, dict):
        return json.dumps(model)
    kind = model.get("type", "")
    rest = []
    for k, v in model.items():
        if k == "type":
            continue
        if k.endswith("ns") and isinstance(v, int | float):
            name = k[: -len("ns")].rstrip("_")
            rest.append(f"{name + ' ' if name else ''}{v / 1000:g}us")
        else:
            rest.append(f"{k} {v}")
    return " ".join([kind, *rest]).strip()


def _row(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {k: v for k, v in row.items() if not (isinstance(v, float) and pd.isna(v))}


def first_divergence(
    session: Session,
    replay_dir: Path,
    decisions: Matched,
    fills: Matched,
    changes: list[str],
    answers: list[dict[str, Any]],
) -> dict[str, Any] | None:
    candidates = []
    for what, m in (("decision", decisions), ("fill", fills)):
        u = first_unmatched(m)
        if u is not None:
            row = u[0] if u[0] is not None else u[1]
            candidates.append((row_time(row), what, u))  # type: ignore[arg-type]
    if not candidates:
        return None
    t, what, (s_row, r_row, kind) = min(candidates, key=lambda c: c[0])
    one = "session" if s_row is not None else "replay"
    row = s_row if s_row is not None else r_row
    assert row is not None
    label = f"{kind} {row['side']} {row['price']:g} x {row['qty']:g}"
    detail = f"the {one} made {label} (market data received at {t}) and the other run has no match"
    cause, cause_kind = _cause(session, replay_dir, t, changes, answers, one)
    return {
        "what": what,
        "kind": kind,
        "time_ns": t,
        "time": pd.Timestamp(t, unit="ns", tz="UTC").isoformat(),
        "only_in": one,
        "detail": detail,
        "session": _row(s_row),
        "replay": _row(r_row) if r_row is not None else _nearest(replay_dir, s_row, what),
        "replay_is_nearest": r_row is None,
        "cause": cause,
        "cause_kind": cause_kind,
    }


def _nearest(run_dir: Path, row: dict | None, what: str) -> dict | None:
    """The other run's row nearest in time of the same kind and side (what it did instead)."""
    if row is None:
        return None
    if what == "decision":
        df = decisions_of(read_table(run_dir, "orders", ORDER_COLS), read_table(run_dir, "market", MARKET_COLS))
        df = df[(df["event"] == row["event"]) & (df["side"] == row["side"])]
        col = "tick"
    else:
        df = read_table(run_dir, "fills", FILL_COLS)
        df = df[df["side"] == row["side"]]
        col = "ts_event"
    if df.empty:
        return None
    k = (df[col] - row[col]).abs().idxmin()
    return _row({c: (v.item() if hasattr(v, "item") else v) for c, v in df.loc[k].items()})


def _cause(
    session: Session, replay_dir: Path, t: int, changes: list[str], answers: list[dict[str, Any]], one: str
) -> tuple[str, str]:
    if changes:
        return "; ".join(changes), "model"
    s_book = _book_at(session.run_dir, t)
    r_book = _book_at(replay_dir, t)
    if s_book is not None and r_book is None:
        return (
            f"missing market data around {t}: the session was shown a book received at {t} that the replay "
            "never was (the capture has no message at that receive time)",
            "market_data",
        )
    if s_book is not None and r_book is not None and (s_book["bid"], s_book["ask"]) != (r_book["bid"], r_book["ask"]):
        return (
            f"book state differs at {t}: session bid/ask {s_book['bid']:g}/{s_book['ask']:g}, replay "
            f"{r_book['bid']:g}/{r_book['ask']:g}",
            "book_state",
        )
    earlier = [a for a in answers if a["tick"] <= t]
    if earlier:
        # the runs knew different things from the first of the two arrivals to the second: prefer
        # the difference still open at t, the earliest begun
        open_at_t = [a for a in earlier if _last_tick(a) >= t]
        return _answer_cause(open_at_t[0] if open_at_t else earlier[-1]), "venue_answer"
    other = "replay" if one == "session" else "session"
    return f"a decision the {one} made that the {other} did not, on the same book and the same answers", "decision"


def _last_tick(a: dict[str, Any]) -> int:
    ticks = [r["tick"] for r in (a["session"], a["replay"]) if r is not None]
    return max(ticks) if len(ticks) == 2 else 1 << 62


def _answer_cause(a: dict[str, Any]) -> str:
    x, y = a["session"], a["replay"]
    order = f"the {a['side']} order at {a['price']:g} decided on the book received at {a['order_tick']}"
    if x is not None and y is not None and x["event"] == y["event"]:
        late_x, late_y = x["ts"] - (x.get("ts_venue") or x["ts"]), y["ts"] - (y.get("ts_venue") or y["ts"])
        return (
            f"venue answer timing: the '{x['event']}' of {order} reached the session after the book received at "
            f"{x['tick']} and the replay after the book received at {y['tick']} (venue to engine: "
            f"{late_x / 1000:,.0f} us in the session, {late_y / 1000:,.0f} us in the replay): in the session the "
            "simulated venue's answer fell on the other side of a market message (the live loop runs it on a wall-"
            "clock timer, after the rest of a burst of frames read at once)"
        )
    why = next((r["reason"] for r in (x, y) if r is not None and r.get("reason")), "")
    return (
        f"venue answer differs: {order} was {'/'.join(a['session_answers']) or 'unanswered'} in the session and "
        f"{'/'.join(a['replay_answers']) or 'unanswered'} in the replay{f' ({why})' if why else ''}: the order's "
        "arrival or a fill fell on the other side of a market message"
    )


def _book_at(run_dir: Path, t: int) -> dict | None:
    import duckdb

    files = sorted(run_dir.glob("market*.parquet"))
    if not files:
        return None
    row = (
        duckdb.connect()
        .execute("select bid, ask from read_parquet(?) where ts = ? limit 1", [[str(f) for f in files], t])
        .fetchone()
    )
    return {"bid": row[0], "ask": row[1]} if row else None


def format_report(r: dict[str, Any]) -> str:
    d, f = r["decisions"], r["fills"]
    lines = [
        f"parity of {r['run_dir']} (replayed into {r['replay_dir']}, tolerance {r['tolerance_us']:g} us)",
        f"  decisions matched  {d['matched']:,} of {max(d['session'], d['replay']):,} "
        f"({100 * d['share']:.2f}%; session {d['session']:,}, replay {d['replay']:,})",
    ]
    for kind, c in sorted(d["by_kind"].items()):
        lines.append(f"    {kind:<16} {c['matched']:,} matched (session {c['session']:,}, replay {c['replay']:,})")
    lines.append(
        f"  fills matched      {f['matched']:,} of {max(f['session'], f['replay']):,} "
        f"({100 * f['share']:.2f}%; session {f['session']:,}, replay {f['replay']:,})"
    )
    pnl = r.get("pnl") or {}
    if pnl:
        lines.append(f"  net P&L            session {pnl['session_net']:,.4f}, replay {pnl['replay_net']:,.4f}")
    for c in r["model_changes"]:
        lines.append(f"  model change       {c}")
    div = r["first_divergence"]
    if div is None:
        lines.append("  first divergence   none")
    else:
        lines.append(f"  first divergence   {div['time']}: {div['detail']}")
        lines.append(f"    cause            {div['cause']}")
        lines.append(f"    session row      {_short(div['session'])}")
        lines.append(f"    replay row       {_short(div['replay'])}{' (nearest)' if div['replay_is_nearest'] else ''}")
    th = r.get("thresholds") or {}
    if th:
        verdict = "PASS" if r["passed"] else "FAIL"
        lines.append(
            f"  {verdict}: decisions >= {100 * th['decisions']:g}% and fills >= {100 * th['fills']:g}% "
            f"{'met' if r['passed'] else 'not met'}"
        )
    return "\n".join(lines)


def _short(row: dict | None) -> str:
    if row is None:
        return "-"
    keys = (
        "event", "side", "price", "qty", "liquidity", "tick", "ts_tick", "ts", "ts_event", "client_order_id", "status",
        "reason",
    )  # fmt: skip
    return ", ".join(f"{k}={row[k]}" for k in keys if k in row and row[k] not in ("", None))


__all__ = ["DEFAULT_TOLERANCE_US", "ParityError", "format_report", "run_parity"]
