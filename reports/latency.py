"""The latency report (guide 5.1): percentiles per stage of the order path, from the event log.

Stages (definitions in ``engine.eventlog_schema``; a stage timestamp of 0 means "not recorded" and
the row is left out of that stage):

- feed: ``market.feed_latency_ns`` (rows with a venue timestamp);
- tick_to_decision: ``ts_decided - ts_tick`` on ``submit`` orders;
- decision_to_send: ``ts_sent - ts_decided`` on ``submit`` orders (risk + order manager);
- send_to_ack: ``ts_acked - ts_sent`` on ``accepted`` orders;
- ack_to_fill: ``fills.ts - fills.ts_acked`` (how long the order rested: not a delay of ours, no threshold);
- end_to_end: ``ts_acked - ts_tick`` on ``accepted`` orders.

Percentiles are ``quantile_cont`` (linear interpolation between order statistics, as numpy's default).
Thresholds from the guide: market data average > 100 µs, order path average > 500 µs, and P99 of a
critical operation > 1 ms (every stage but ack_to_fill).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from engine.errors import RunLogError
from reports import plots
from reports.errors import EmptyRunError, ReportWriteError
from reports.eventlog import EventLog, inspect_run
from reports.render import Document, num, ts_text, write_document

STEM = "latency_report"
STAGES = ("feed", "tick_to_decision", "decision_to_send", "send_to_ack", "ack_to_fill", "end_to_end")
MARKET_DATA_MEAN_US = 100.0
ORDER_PATH_MEAN_US = 500.0
CRITICAL_P99_US = 1000.0
ORDER_PATH = ("tick_to_decision", "decision_to_send", "send_to_ack", "end_to_end")
CRITICAL = ("feed", *ORDER_PATH)
QUANTILES = (0.5, 0.9, 0.99, 0.999)
HIST_PER_DECADE = 10
CDF_PER_DECADE = 50  # CDF resolution: bins per factor of ten


@dataclass
class StageStats:
    stage: str
    count: int = 0
    mean_us: float | None = None
    min_us: float | None = None
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None
    negative: int = 0
    flags: list[str] = field(default_factory=list)


@dataclass
class LatencyReport:
    run_id: str
    run_dir: Path
    mode: str
    latency_source: str
    source_note: str
    stages: list[StageStats]
    start_ts: int | None = None
    end_ts: int | None = None
    written: list[Path] = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        return [f"{s.stage}: {f}" for s in self.stages for f in s.flags]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "mode": self.mode,
            "latency_source": self.latency_source,
            "source_note": self.source_note,
            "unit": "us",
            "thresholds_us": {
                "market_data_mean": MARKET_DATA_MEAN_US,
                "order_path_mean": ORDER_PATH_MEAN_US,
                "critical_p99": CRITICAL_P99_US,
            },
            "stages": {s.stage: asdict(s) for s in self.stages},
            "flags": self.flags,
        }

    def table_rows(self) -> list[list[str]]:
        return [
            [s.stage, num(s.count), *(num(v, 1) for v in (s.mean_us, s.p50_us, s.p90_us, s.p99_us, s.p999_us,
                                                              s.max_us)), "; ".join(s.flags) or "ok"]
            for s in self.stages
        ]  # fmt: skip

    def text(self) -> str:
        headers = ["stage", "count", "mean", "P50", "P90", "P99", "P99.9", "max", "flags"]
        rows = self.table_rows()
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        fmt = [f"{{:<{w}}}" if i in (0, 8) else f"{{:>{w}}}" for i, w in enumerate(widths)]
        lines = [
            f"Latency report, run {self.run_id} ({self.mode}): {self.latency_source} latencies{self.source_note}",
            "all figures in µs",
            "  ".join(f.format(h) for f, h in zip(fmt, headers, strict=True)).rstrip(),
        ]
        lines += ["  ".join(f.format(c) for f, c in zip(fmt, r, strict=True)).rstrip() for r in rows]
        flags = self.flags
        lines.append("over the guide's thresholds: " + ("; ".join(flags) if flags else "none"))
        if self.written:
            lines.append("wrote " + ", ".join(str(w) for w in self.written))
        return "\n".join(lines)


def _source(manifest: dict[str, Any]) -> tuple[str, str]:
    src = manifest.get("latency_source")
    if src in ("simulated", "measured"):
        return str(src), ""
    mode = manifest.get("mode")
    if mode == "backtest":
        return "simulated", " (inferred from mode=backtest; the manifest has no latency_source)"
    if mode in ("paper", "live"):
        return "measured", f" (inferred from mode={mode}; the manifest has no latency_source)"
    return "unknown", " (the manifest says neither latency_source nor mode)"


def _load(log: EventLog) -> None:
    log.require(("orders", "fills", "market"))
    market = log.scan("market", ("ts_event", "feed_latency_ns"), where="ts_event <> 0", strategy_col=False)
    orders = log.scan("orders", ("ts", "event", "ts_tick", "ts_decided", "ts_sent", "ts_acked"),
                       where="event IN ('submit', 'accepted')")  # fmt: skip
    fills = log.scan("fills", ("ts", "ts_acked"), where="ts_acked <> 0")
    log.create("lat_orders", orders, "orders")
    log.create(
        "lat",
        f"""SELECT 0 AS stage, feed_latency_ns AS v FROM ({market})
        UNION ALL SELECT 1, ts_decided - ts_tick FROM lat_orders
                  WHERE event = 'submit' AND ts_tick <> 0 AND ts_decided <> 0
        UNION ALL SELECT 2, ts_sent - ts_decided FROM lat_orders
                  WHERE event = 'submit' AND ts_decided <> 0 AND ts_sent <> 0
        UNION ALL SELECT 3, ts_acked - ts_sent FROM lat_orders
                  WHERE event = 'accepted' AND ts_sent <> 0 AND ts_acked <> 0
        UNION ALL SELECT 4, ts - ts_acked FROM ({fills})
        UNION ALL SELECT 5, ts_acked - ts_tick FROM lat_orders
                  WHERE event = 'accepted' AND ts_tick <> 0 AND ts_acked <> 0
        """,
        "orders",
    )  # fmt: skip


def _flags(s: StageStats) -> list[str]:
    out = []
    if s.count == 0:
        return out
    if s.stage == "feed" and s.mean_us is not None and s.mean_us > MARKET_DATA_MEAN_US:
        out.append(f"market data mean {s.mean_us:,.1f} µs > {MARKET_DATA_MEAN_US:g} µs")
    if s.stage in ORDER_PATH and s.mean_us is not None and s.mean_us > ORDER_PATH_MEAN_US:
        out.append(f"order path mean {s.mean_us:,.1f} µs > {ORDER_PATH_MEAN_US:g} µs")
    if s.stage in CRITICAL and s.p99_us is not None and s.p99_us > CRITICAL_P99_US:
        out.append(f"P99 {s.p99_us:,.1f} µs > {CRITICAL_P99_US / 1000:g} ms")
    return out


def compute(log: EventLog) -> tuple[list[StageStats], dict[str, Any]]:
    _load(log)
    rows = {
        r[0]: r
        for r in log.query(
            f"""SELECT stage, count(*), avg(v) / 1e3, min(v) / 1e3, quantile_cont(v, {list(QUANTILES)}),
                       max(v) / 1e3, count(*) FILTER (WHERE v < 0)
                FROM lat GROUP BY stage"""
        )
    }
    stages = []
    for i, name in enumerate(STAGES):
        s = StageStats(name)
        r = rows.get(i)
        if r is not None:
            q = [v / 1e3 for v in r[4]]
            s.count, s.mean_us, s.min_us = int(r[1]), float(r[2]), float(r[3])
            s.p50_us, s.p90_us, s.p99_us, s.p999_us = q
            s.max_us, s.negative = float(r[5]), int(r[6])
            s.flags = _flags(s)
        stages.append(s)
    # CDF on fine log bins: cumulative share of samples at or below each bin's upper edge (µs).
    cdf: dict[str, tuple[list[float], list[float]]] = {}
    for st, b, share in log.query(
        """WITH b AS (SELECT stage, CAST(floor(log10(v / 1e3) * $k) AS BIGINT) AS b, count(*) AS c
                      FROM lat WHERE v > 0 GROUP BY ALL),
                n AS (SELECT stage, count(*) AS n, count(*) FILTER (WHERE v <= 0) AS z FROM lat GROUP BY stage)
           SELECT b.stage, b.b, (n.z + sum(b.c) OVER (PARTITION BY b.stage ORDER BY b.b)) / n.n
           FROM b JOIN n USING (stage) ORDER BY b.stage, b.b""",
        {"k": CDF_PER_DECADE},
    ):
        xs, ps = cdf.setdefault(STAGES[st], ([], []))
        xs.append(10 ** ((b + 1) / CDF_PER_DECADE))
        ps.append(float(share))
    hist: dict[str, tuple[list[float], list[int]]] = {name: ([], []) for name, s in zip(STAGES, stages, strict=True)
                                                       if s.count}  # fmt: skip
    for st, b, c in log.query(
        """SELECT stage, CAST(floor(log10(v / 1e3) * $k) AS BIGINT) AS b, count(*) FROM lat WHERE v > 0
           GROUP BY stage, b ORDER BY stage, b""",
        {"k": HIST_PER_DECADE},
    ):
        xs, cs = hist[STAGES[st]]
        xs.append(b / HIST_PER_DECADE)
        cs.append(int(c))
    span = log.one(f"SELECT min(ts), max(ts) FROM ({log.scan('market', ('ts',), strategy_col=False)})")
    return stages, {"cdf": cdf, "hist": hist, "span": span}


def build_document(rep: LatencyReport, series: dict[str, Any]) -> Document:
    doc = Document(f"Latency report, run {rep.run_id} ({rep.mode})")
    doc.section("source", "Source")
    doc.para(
        f"These are {rep.latency_source} latencies{rep.source_note}. Period {ts_text(rep.start_ts)} to "
        f"{ts_text(rep.end_ts)}. All figures in µs."
    )
    doc.section("stages", "Latency by stage")
    doc.table(["stage", "count", "mean", "P50", "P90", "P99", "P99.9", "max", "flags"], rep.table_rows())
    doc.para(
        "feed: venue time to local receipt; tick_to_decision: market data received to order decided (strategy); "
        "decision_to_send: decided to sent (risk checks + order manager); send_to_ack: sent to venue ack; "
        "ack_to_fill: ack to fill (time resting in the book); end_to_end: market data received to venue ack."
    )
    neg = [s for s in rep.stages if s.negative]
    if neg:
        doc.para(
            "Negative samples (clock offset between venue and local clocks): "
            + ", ".join(f"{s.stage} {s.negative:,}" for s in neg)
        )
    doc.section("thresholds", "Over the guide's thresholds")
    doc.para(
        f"Market data average > {MARKET_DATA_MEAN_US:g} µs; order path average > {ORDER_PATH_MEAN_US:g} µs "
        f"({', '.join(ORDER_PATH)}); P99 of a critical operation > {CRITICAL_P99_US / 1000:g} ms "
        f"({', '.join(CRITICAL)})."
    )
    doc.bullets([f"FLAGGED {f}" for f in rep.flags] or ["no stage is over a threshold"])
    doc.section("plots", "Distributions")
    lines = {
        f"market data {MARKET_DATA_MEAN_US:g} µs": MARKET_DATA_MEAN_US,
        f"order path {ORDER_PATH_MEAN_US:g} µs": ORDER_PATH_MEAN_US,
        f"P99 {CRITICAL_P99_US / 1000:g} ms": CRITICAL_P99_US,
    }
    doc.image("latency_cdf", plots.latency_cdf(series["cdf"], lines), "Latency CDF")
    doc.image("latency_hist", plots.latency_histograms(series["hist"], HIST_PER_DECADE), "Latency histograms")
    return doc


def latency_report(run_dir: str | Path, out_dir: str | Path | None = None, threads: int | None = None) -> LatencyReport:
    """Compute and write ``latency_report.html/.md/.json`` (into the run directory unless ``out_dir``)."""
    run = inspect_run(run_dir)
    source, note = _source(run.manifest)
    with EventLog([run], threads=threads) as log:
        try:
            stages, series = compute(log)
        except duckdb.Error as exc:  # the log loaded but a query failed: still one line, naming the run
            raise RunLogError(str(run.path), f"report query failed ({str(exc).strip().splitlines()[0]})") from None
    span = series["span"]
    rep = LatencyReport(run.run_id, run.path, run.mode, source, note, stages,
                        span[0] if span else None, span[1] if span else None)  # fmt: skip
    out = Path(out_dir) if out_dir else run.path
    rep.written = write_document(build_document(rep, series), out, STEM)
    json_path = out / f"{STEM}.json"
    try:
        json_path.write_text(json.dumps(rep.to_json(), indent=2) + "\n")
    except OSError as exc:
        raise ReportWriteError(str(json_path), str(exc.strerror or exc)) from None
    rep.written.append(json_path)
    if not any(s.count for s in rep.stages):
        raise EmptyRunError(
            str(run.path),
            "no latency samples: no market row has a venue timestamp and no order or fill has stage timestamps",
            rep.written,
        )
    return rep
