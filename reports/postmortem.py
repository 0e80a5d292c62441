"""The strategy post-mortem (guide 9.2): what happened, how execution went, and which cause it points to.

``post_mortem(run_dir)`` reports one run; ``post_mortem_runs(runs)`` aggregates several runs (the
``trades --days`` report). Every statistic is SQL over the event log (see ``reports.eventlog``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from engine.errors import RunLogError
from reports import breakdowns, execution, plots, pnl, roundtrips
from reports.diagnosis import Finding, diagnose, position_drift
from reports.errors import EmptyRunError, ReportWriteError
from reports.eventlog import EventLog, RunInfo, inspect_run
from reports.execution import HORIZONS, ExecutionStats
from reports.pnl import PnlSummary
from reports.render import Document, duration, num, pct, ts_text, write_document
from reports.roundtrips import RoundTripStats

STEM = "post_mortem"


class Plotter:
    """Draws each plot as soon as its data is queried, on one background thread when given a pool.

    DuckDB releases the GIL while it runs, so the plots of the early sections are drawn while the
    later queries run. Only that one thread touches matplotlib.
    """

    def __init__(self, pool: ThreadPoolExecutor | None = None) -> None:
        self.pool = pool
        self._images: dict[str, Future[bytes] | bytes] = {}

    def submit(self, name: str, fn: Callable[..., bytes], *args: Any) -> None:
        self._images[name] = self.pool.submit(fn, *args) if self.pool is not None else fn(*args)

    def get(self, name: str) -> bytes:
        v = self._images[name]
        return v.result() if isinstance(v, Future) else v


@dataclass
class PostMortem:
    title: str
    runs: list[RunInfo]
    strategy: str | None
    pnl: PnlSummary
    round_trips: RoundTripStats
    execution: ExecutionStats
    largest_losses: list[dict[str, Any]] = field(default_factory=list)
    breakdowns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    drift: dict[str, Any] = field(default_factory=dict)
    halves: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    images: Plotter = field(default_factory=lambda: Plotter())
    written: list[Path] = field(default_factory=list)

    @property
    def flagged(self) -> list[Finding]:
        return [f for f in self.findings if f.flagged]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "runs": [{"run_id": r.run_id, "path": str(r.path), "mode": r.mode} for r in self.runs],
            "strategy": self.strategy,
            "pnl": {**asdict(self.pnl), "gross": self.pnl.gross, "net": self.pnl.net},
            "round_trips": asdict(self.round_trips),
            "execution": asdict(self.execution),
            "largest_losses": self.largest_losses,
            "breakdowns": self.breakdowns,
            "diagnosis": [asdict(f) for f in self.findings],
            "position_check": self.drift,
            "market_halves": self.halves,
        }

    def headline(self) -> str:
        p, rt, ex = self.pnl, self.round_trips, self.execution
        lines = [self.title]
        if ex.fills == 0:
            lines.append(f"  no fills: {_no_fill_reason(ex)}")
        else:
            lines += [
                f"  net P&L        {num(p.net)}  (realized {num(p.realized)}, unrealized {num(p.unrealized)}, "
                f"fees {num(p.fees)})",
                f"  max drawdown   {num(p.max_drawdown)} at {ts_text(p.max_drawdown_ts)}",
                f"  fills          {ex.fills:,}  (orders submitted {ex.orders_submitted:,}, fill ratio "
                f"{pct(ex.fill_ratio)}, maker {pct(ex.maker_share)} of volume)",
                f"  round trips    {rt.count:,}: win rate {pct(rt.win_rate)}, avg win {num(rt.avg_win)}, "
                f"avg loss {num(rt.avg_loss)}, profit factor {_pf(rt)}",
                f"  slippage       {num(ex.slippage_bps, signed=True)} bps (positive = cost); markouts "
                + ", ".join(f"{m.horizon} {num(m.bps, signed=True)}" for m in ex.markouts)
                + " bps (positive = favourable)",
            ]
        causes = [f.cause for f in self.flagged]
        lines.append("  diagnosis      " + ("; ".join(causes) if causes else "none of the guide's causes is flagged"))
        if self.written:
            lines.append("  wrote          " + ", ".join(str(w) for w in self.written))
        return "\n".join(lines)


def _pf(rt: RoundTripStats) -> str:
    if rt.profit_factor is not None:
        return num(rt.profit_factor)
    return "inf (no losing round trip)" if rt.wins else "-"


def _no_fill_reason(ex: ExecutionStats) -> str:
    if ex.orders_submitted == 0:
        return "the strategy submitted no orders"
    if ex.orders_rejected >= ex.orders_submitted:
        top = ", ".join(f"{r['reason'] or '(no reason)'} x{r['count']}" for r in ex.rejections[:3])
        return f"all {ex.orders_submitted:,} orders were rejected ({top})"
    return (
        f"{ex.orders_submitted:,} orders submitted, {ex.orders_rejected:,} rejected, "
        f"{ex.orders_canceled:,} canceled, none filled"
    )


# --- analysis ------------------------------------------------------------------------------------
def analyse(log: EventLog, title: str, pool: ThreadPoolExecutor | None = None) -> PostMortem:
    """Run every query of the post-mortem over an opened event log (and start drawing its plots)."""
    log.load_post_mortem()
    images = Plotter(pool)
    # The markout ASOF join is the heaviest query and largely parallel; the FIFO and P&L queries are
    # mostly single-threaded streaming windows. Running them side by side keeps both cores busy. The
    # side queries are read-only SELECTs on a cursor, so they do not contend for the catalog.
    side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sql")
    cursor = log.con.cursor()
    aggregates = side.submit(execution.fetch_aggregates, cursor)
    has_fills = log.one("SELECT count(*) FROM fills")[0] > 0
    summary = pnl.compute_curve(log)
    curve, inventory = pnl.downsampled(log)
    series: dict[str, Any] = {"curve": curve, "inventory": inventory}
    if has_fills:
        images.submit("pnl", plots.pnl_over_time, series["curve"])
        images.submit("drawdown", plots.drawdown, series["curve"])
        images.submit("inventory", plots.inventory, series["inventory"])
    unit = roundtrips.compute_fill_sequence(log)
    drift_future = side.submit(position_drift, cursor)
    roundtrips.compute_round_trips(log, unit)
    rt = roundtrips.round_trip_stats(log, unit)
    series["pnl_hist"] = h = roundtrips.pnl_histogram(log)
    series["hold_hist"] = hh = roundtrips.holding_histogram(log)
    if has_fills:
        images.submit("rt_pnl_hist", plots.histogram, h["edges"], h["counts"], "Round-trip net P&L", "quote")
        args = (hh["log10_s"], hh["counts"], hh["per_decade"], "Holding times", "seconds")
        images.submit("holding_hist", plots.log_histogram, *args)
    try:
        execution.store_aggregates(log, aggregates.result())
        drift = drift_future.result()
    finally:
        side.shutdown()
        cursor.close()
    ex = execution.execution_stats(log)
    if has_fills:
        lines = {"all": [m.bps for m in ex.markouts]}
        lines.update({str(k): [m.bps for m in v] for k, v in ex.markouts_by_liquidity.items()})
        images.submit("markouts", plots.markouts, [name for name, _ in HORIZONS], lines)
    dims = ["symbol", "venue", "hour"]
    if log.strategy is None and len({r["strategy_id"] for r in summary.positions}) > 1:
        dims.insert(0, "strategy")
    by = {d: breakdowns.breakdown(log, d) for d in dims}
    if by["hour"]:
        labels = [f"{int(r['k']):02d}" for r in by["hour"]]
        values = [(r.get("realized") or 0.0) - (r.get("fees") or 0.0) for r in by["hour"]]
        images.submit("by_hour", plots.bars, labels, values, "Realized P&L after fees by hour (UTC)", "quote")
    findings, halves = diagnose(log, summary, ex, drift, log.strategy)
    pm = PostMortem(title, log.runs, log.strategy, summary, rt, ex, drift=drift, findings=findings, halves=halves)
    pm.largest_losses = roundtrips.largest_losses(log)
    pm.breakdowns = by
    pm.series = series
    pm.images = images
    return pm


# --- document ------------------------------------------------------------------------------------
def build_document(pm: PostMortem) -> Document:
    doc = Document(pm.title)
    p, rt, ex = pm.pnl, pm.round_trips, pm.execution
    doc.section("summary", "Summary")
    if len(pm.runs) > 1:
        doc.para(f"{len(pm.runs)} runs aggregated; per-run figures are in the Runs section.")
    if ex.fills == 0:
        doc.para(f"There were no fills: {_no_fill_reason(ex)}.")
    doc.table(
        ["figure", "value"],
        [
            ["strategy", pm.strategy or "all strategies"],
            ["runs", ", ".join(f"{r.run_id} ({r.mode})" for r in pm.runs)],
            ["period", f"{ts_text(p.start_ts)} to {ts_text(p.end_ts)}"],
            ["net P&L", num(p.net)],
            ["realized P&L (before fees)", num(p.realized)],
            ["unrealized P&L", num(p.unrealized)],
            ["fees", num(p.fees)],
            ["max drawdown", f"{num(p.max_drawdown)} at {ts_text(p.max_drawdown_ts)} (peak {ts_text(p.peak_ts)})"],
            ["fills", num(ex.fills)],
            ["round trips", num(rt.count)],
            ["win rate", pct(rt.win_rate)],
            ["diagnosis", "; ".join(f.cause for f in pm.flagged) or "none of the guide's causes is flagged"],
        ],
    )
    if ex.fills:
        _pnl_section(doc, pm)
        _round_trip_section(doc, pm)
    _execution_section(doc, pm)
    if ex.fills:
        _breakdown_section(doc, pm)
    _diagnosis_section(doc, pm)
    if len(pm.runs) > 1:
        doc.section("runs", "Runs")
        doc.table(["run", "mode", "path"], [[r.run_id, r.mode, str(r.path)] for r in pm.runs])
    return doc


def _pnl_section(doc: Document, pm: PostMortem) -> None:
    p = pm.pnl
    doc.section("pnl", "P&L over time")
    doc.para(
        f"From the positions ledger ({p.source}): realized P&L is before fees, net = realized + unrealized - fees, "
        "all in quote currency summed over symbols. Drawdown is net P&L minus its running peak."
    )
    doc.image("pnl", pm.images.get("pnl"), "P&L over time")
    doc.image("drawdown", pm.images.get("drawdown"), "Drawdown")
    doc.image("inventory", pm.images.get("inventory"), "Inventory over time")
    if p.positions:
        doc.subsection("Final positions")
        doc.table(
            ["strategy", "venue", "symbol", "position", "realized", "unrealized", "fees"],
            [
                [r["strategy_id"], r["venue"], r["symbol"], num(r["position"], 6), num(r["realized"]),
                 num(r["unrealized"]), num(r["fees"])]
                for r in p.positions
            ],
        )  # fmt: skip


def _round_trip_section(doc: Document, pm: PostMortem) -> None:
    rt = pm.round_trips
    doc.section("round-trips", "Round trips")
    doc.para(
        "FIFO lot matching per strategy, venue and symbol: the k-th unit bought is matched with the k-th unit sold. "
        "A round trip is one matched lot (an opening fill, or part of it, and the part of the later opposite fill "
        "FIFO pairs with it); its net P&L is (sell price - buy price) x quantity minus both fills' fees pro rata to "
        "the matched quantity. Holding time is from the opening to the closing fill. Lots still open at the end are "
        "in unrealized P&L, not here."
    )
    doc.table(
        ["figure", "value"],
        [
            ["round trips", num(rt.count)],
            ["wins / losses / scratches", f"{rt.wins:,} / {rt.losses:,} / {rt.scratches:,}"],
            ["win rate", pct(rt.win_rate)],
            ["average win", num(rt.avg_win, 4)],
            ["average loss", num(rt.avg_loss, 4)],
            ["profit factor (sum of wins / sum of losses)", _pf(rt)],
            ["expectancy (mean net per round trip)", num(rt.expectancy, 4)],
            ["gross / fees / net", f"{num(rt.gross)} / {num(rt.fees)} / {num(rt.net)}"],
            ["holding time mean / P50 / P90 / max",
             " / ".join(duration(v) for v in (rt.hold_mean_s, rt.hold_p50_s, rt.hold_p90_s, rt.hold_max_s))],
        ],
    )  # fmt: skip
    if rt.open_qty:
        doc.para(
            "Open at the end: "
            + ", ".join(f"{r['venue']}:{r['symbol']} {num(r['open_qty'], 6, signed=True)}" for r in rt.open_qty)
        )
    doc.subsection("Largest losses")
    if pm.largest_losses:
        doc.table(
            ["opened", "closed", "strategy", "venue:symbol", "side", "qty", "entry", "exit", "net", "held"],
            [
                [ts_text(r["open_ts"]), ts_text(r["close_ts"]), r["strategy_id"], f"{r['venue']}:{r['symbol']}",
                 r["direction"], num(r["qty"], 6), num(r["entry_price"], 6), num(r["exit_price"], 6),
                 num(r["net"], 4), duration(r["hold_s"])]
                for r in pm.largest_losses
            ],
        )  # fmt: skip
    else:
        doc.para("No losing round trip.")
    doc.image("rt_pnl_hist", pm.images.get("rt_pnl_hist"), "P&L histogram")
    doc.image("holding_hist", pm.images.get("holding_hist"), "Holding time histogram")


def _markout_rows(ms: list[execution.Markout], label: str) -> list[list[str]]:
    return [
        [label, m.horizon, num(m.fills), num(m.bps, signed=True), num(m.quote, signed=True),
         num(m.mid_move_bps, signed=True)]
        for m in ms
    ]  # fmt: skip


def _execution_section(doc: Document, pm: PostMortem) -> None:
    ex, p = pm.execution, pm.pnl
    doc.section("execution", "Execution quality")
    share = p.fees / p.gross if p.gross > 0 else None
    doc.table(
        ["figure", "value"],
        [
            ["orders submitted", num(ex.orders_submitted)],
            ["orders with a fill", num(ex.orders_filled)],
            ["fill ratio (orders with a fill / submitted)", pct(ex.fill_ratio)],
            ["orders canceled / cancel requests", f"{ex.orders_canceled:,} / {ex.cancel_requests:,}"],
            ["cancel-to-fill ratio (canceled / orders with a fill)", num(ex.cancel_to_fill)],
            ["orders rejected", num(ex.orders_rejected)],
            ["fills (maker / taker)", f"{ex.fills:,} ({ex.maker_fills:,} / {ex.taker_fills:,})"],
            ["maker share of volume", pct(ex.maker_share)],
            ["volume (quote)", num(ex.volume)],
            ["fees (quote, negative = rebate)", f"{num(ex.fees)} ({num(ex.fees_bps)} bps of volume)"],
            ["fees as share of gross P&L", pct(share) if share is not None else f"- (gross P&L {num(p.gross)})"],
            ["slippage vs mid at decision (positive = cost)",
             f"{num(ex.slippage_bps, signed=True)} bps, {num(ex.slippage_quote, signed=True)} quote "
             f"over {ex.slippage_fills:,} fills"],
            *[[f"  slippage, {liq}", f"{num(v, signed=True)} bps"] for liq, v in ex.slippage_by_liquidity.items()],
        ],
    )  # fmt: skip
    if ex.fills:
        doc.subsection("Markouts")
        doc.para(
            "Markout = side x (mid at fill time + horizon - fill price), notional-weighted, in bps of notional; "
            "positive = favourable to us. Mid move = side x (mid at + horizon - mid at the fill): the adverse "
            "selection part, spread excluded. Mids come from the market table (ASOF JOIN); fills whose horizon "
            "runs past the data are left out."
        )
        rows = _markout_rows(ex.markouts, "all")
        for liq, ms in ex.markouts_by_liquidity.items():
            rows += _markout_rows(ms, str(liq))
        doc.table(["fills", "horizon", "count", "markout bps", "markout quote", "mid move bps"], rows)
        doc.image("markouts", pm.images.get("markouts"), "Markouts")
    doc.subsection("Rejections by reason")
    if ex.rejections:
        doc.table(
            ["reason", "code", "count", "first", "last"],
            [[r["reason"] or "-", r["code"], num(r["count"]), ts_text(r["first_ts"]), ts_text(r["last_ts"])]
             for r in ex.rejections],
        )  # fmt: skip
    else:
        doc.para("No order was rejected.")
    if ex.bursts:
        doc.subsection("Rejection bursts")
        doc.table(
            ["start", "end", "count", "top reason"],
            [[ts_text(b["start_ts"]), ts_text(b["end_ts"]), num(b["count"]), b["top_reason"]] for b in ex.bursts],
        )
    if ex.risk_failures:
        doc.subsection("Failed risk checks")
        doc.table(
            ["check", "reason", "count", "first", "last"],
            [[r["check"], r["reason"], num(r["count"]), ts_text(r["first_ts"]), ts_text(r["last_ts"])]
             for r in ex.risk_failures],
        )  # fmt: skip
    if ex.incidents:
        doc.subsection("Incidents")
        doc.table(
            ["kind", "count", "first", "last"],
            [[r["kind"], num(r["count"]), ts_text(r["first_ts"]), ts_text(r["last_ts"])] for r in ex.incidents],
        )


_BREAKDOWN_HEADERS = [
    "fills", "volume", "maker", "fees", "realized", "slippage bps", "markout 1s bps", "markout 10s bps",
    "round trips", "win rate", "round-trip net",
]  # fmt: skip


def _breakdown_row(label: str, r: dict[str, Any], with_net: bool) -> list[str]:
    row = [
        label, num(r.get("fills")), num(r.get("volume")), pct(r.get("maker_share")), num(r.get("fees")),
        num(r.get("realized")), num(r.get("slip_bps"), signed=True), num(r.get("markout_1s_bps"), signed=True),
        num(r.get("markout_10s_bps"), signed=True), num(r.get("round_trips")), pct(r.get("win_rate")),
        num(r.get("rt_net")),
    ]  # fmt: skip
    if with_net:
        row.append(num(r.get("net")))
    return row


def _breakdown_section(doc: Document, pm: PostMortem) -> None:
    doc.section("breakdowns", "Breakdowns")
    doc.para("Hour is the hour of day (UTC) of the fill's local timestamp; round trips count in the hour they closed.")
    for dim, rows in pm.breakdowns.items():
        with_net = dim != "hour"
        doc.subsection(f"By {dim}")
        headers = [dim, *_BREAKDOWN_HEADERS] + (["net P&L (ledger)"] if with_net else [])
        doc.table(headers, [_breakdown_row(str(r["k"]), r, with_net) for r in rows])
    if pm.breakdowns.get("hour"):
        doc.image("by_hour", pm.images.get("by_hour"), "By hour")


def _diagnosis_section(doc: Document, pm: PostMortem) -> None:
    doc.section("diagnosis", "Diagnosis")
    flagged = pm.flagged
    ex = pm.execution
    if ex.fills == 0:
        doc.para(f"No fills, so no P&L to explain: {_no_fill_reason(ex)}.")
    if flagged:
        doc.para("The numbers point to: " + "; ".join(f.cause for f in flagged) + ".")
    else:
        doc.para("None of the guide's causes (section 9.2) is flagged by its threshold.")
    doc.bullets(
        [f"{'FLAGGED' if f.flagged else 'ok'}: {f.cause}: {f.figure} (threshold: {f.threshold})" for f in pm.findings]
    )
    if pm.halves:
        doc.subsection("Market conditions, first vs second half of the run")
        doc.table(
            ["venue:symbol", "half", "volatility bps/s", "spread bps", "returns", "mid move bps"],
            [[f"{h['venue']}:{h['symbol']}", "2nd" if h["late"] else "1st", num(h["vol_bps"], 3),
              num(h["spread_bps"], 3), num(h["n"]), num(h["drift_bps"], 1, signed=True)]
             for h in pm.halves],
        )  # fmt: skip


# --- entry points --------------------------------------------------------------------------------
def post_mortem_runs(
    runs: list[RunInfo],
    strategy: str | None,
    out_dir: str | Path,
    title: str,
    stem: str = STEM,
    threads: int | None = None,
) -> PostMortem:
    """Analyse ``runs`` together, write ``<stem>.html/.md/.json``; raise ``EmptyRunError`` after writing if no fills."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plots") as pool:
        with EventLog(runs, strategy, threads=threads) as log:
            try:
                pm = analyse(log, title, pool)
            except duckdb.Error as exc:  # the log loaded but a query failed: still one line, naming the run
                where = str(runs[0].path) if len(runs) == 1 else str(runs[0].path.parent)
                raise RunLogError(where, f"report query failed ({str(exc).strip().splitlines()[0]})") from None
        doc = build_document(pm)
    pm.written = write_document(doc, out_dir, stem)
    json_path = Path(out_dir) / f"{stem}.json"
    try:
        json_path.write_text(json.dumps(pm.to_json(), indent=2, default=str) + "\n")
    except OSError as exc:
        raise ReportWriteError(str(json_path), str(exc.strerror or exc)) from None
    pm.written.append(json_path)
    if pm.execution.fills == 0:
        where = str(runs[0].path) if len(runs) == 1 else str(runs[0].path.parent)
        who = f"strategy {strategy}" if strategy else "any strategy"
        raise EmptyRunError(where, f"no fills for {who}: {_no_fill_reason(pm.execution)}", pm.written)
    return pm


def post_mortem(
    run_dir: str | Path, strategy: str | None = None, out_dir: str | Path | None = None, threads: int | None = None
) -> PostMortem:
    """Post-mortem of one run; the report goes into the run directory unless ``out_dir`` is given."""
    run = inspect_run(run_dir)
    who = strategy or "all strategies"
    title = f"Post-mortem of {who}, run {run.run_id} ({run.mode})"
    return post_mortem_runs([run], strategy, out_dir or run.path, title, threads=threads)
