"""Report plots as PNG bytes (matplotlib, Agg canvas, no pyplot state).

Every figure is ``WIDTH_PX`` x ``HEIGHT_PX`` (taller for grids) so reports and tests know the size.
Inputs are already downsampled by SQL to a few thousand points.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

DPI = 100
WIDTH_PX = 900
HEIGHT_PX = 320
GRID_ROW_PX = 260


def _figure(height_px: int = HEIGHT_PX) -> Figure:
    # Fixed margins instead of a layout engine: a layout pass draws the figure twice.
    fig = Figure(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 36 / height_px, bottom=50 / height_px, hspace=0.55, wspace=0.2)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _hours(ts: Sequence[int], t0: int) -> np.ndarray:
    """Hours since ``t0``: a numeric axis is much cheaper to draw than a date axis."""
    return (np.asarray(ts, dtype="int64") - t0) / 3.6e12


def _time_axis(ax: object, t0: int) -> None:
    import datetime as dt

    start = dt.datetime.fromtimestamp(t0 / 1e9, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    ax.set_xlabel(f"hours since {start} UTC")  # type: ignore[attr-defined]


def _empty(ax: object, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")  # type: ignore[attr-defined]


def _log_x(ax: object) -> None:
    """Log x axis labelled at powers of ten only (minor labels overlap on narrow ranges)."""
    ax.set_xscale("log")  # type: ignore[attr-defined]
    ax.xaxis.set_minor_formatter(NullFormatter())  # type: ignore[attr-defined]


def _dense_log_bins(log10_x: Sequence[float], counts: Sequence[int], per_decade: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse (log10 of bin start, count) pairs on a 1/per_decade grid -> dense counts and bin edges."""
    idx = np.rint(np.asarray(log10_x, dtype=float) * per_decade).astype(int)
    lo, hi = idx.min(), idx.max()
    dense = np.zeros(hi - lo + 1)
    dense[idx - lo] = counts
    edges = np.power(10.0, np.arange(lo, hi + 2) / per_decade)
    return dense, edges


def pnl_over_time(series: Mapping[str, Sequence]) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    if series["ts"]:
        t0 = int(series["ts"][0])
        t = _hours(series["ts"], t0)
        _time_axis(ax, t0)
        ax.plot(t, series["net"], label="net", color="black", lw=1.4)
        ax.plot(t, series["realized"], label="realized", lw=1)
        ax.plot(t, series["unrealized"], label="unrealized", lw=1)
        ax.plot(t, -np.asarray(series["fees"], dtype=float), label="fees (negated)", lw=1)
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(loc="best", fontsize=8)
    else:
        _empty(ax, "no positions recorded")
    ax.set_title("P&L over time (quote currency)")
    return _png(fig)


def drawdown(series: Mapping[str, Sequence]) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    if series["ts"]:
        t0 = int(series["ts"][0])
        t = _hours(series["ts"], t0)
        _time_axis(ax, t0)
        ax.fill_between(t, series["drawdown"], 0, color="tab:red", alpha=0.4, step="post", lw=0)
    else:
        _empty(ax, "no positions recorded")
    ax.set_title("Drawdown of net P&L from its running peak")
    return _png(fig)


def inventory(series: Mapping[str, Mapping[str, Sequence]]) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    t0 = min((int(s["ts"][0]) for s in series.values() if s["ts"]), default=0)
    for key, s in series.items():
        ax.plot(_hours(s["ts"], t0), s["position"], label=key, lw=1, drawstyle="steps-post")
    if series:
        _time_axis(ax, t0)
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(loc="best", fontsize=8)
    else:
        _empty(ax, "no positions recorded")
    ax.set_title("Inventory (base units) over time")
    return _png(fig)


def histogram(edges: Sequence[float], counts: Sequence[int], title: str, xlabel: str) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    if counts and sum(counts):
        e = np.asarray(edges, dtype=float)
        c = np.asarray(counts, dtype=float)
        # One step artist per sign instead of a rectangle per bin: far cheaper to draw.
        centre = (e[:-1] + e[1:]) / 2
        ax.stairs(np.where(centre <= 0, c, 0), e, fill=True, color="tab:red", alpha=0.8, label="loss")
        ax.stairs(np.where(centre > 0, c, 0), e, fill=True, color="tab:green", alpha=0.8, label="win")
        ax.axvline(0, color="grey", lw=0.5)
    else:
        _empty(ax, "no data")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return _png(fig)


def log_histogram(log10_x: Sequence[float], counts: Sequence[int], per_decade: int, title: str, xlabel: str) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    if counts:
        ax.stairs(*_dense_log_bins(log10_x, counts, per_decade), fill=True, color="tab:blue")
        _log_x(ax)
    else:
        _empty(ax, "no data")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return _png(fig)


def markouts(horizons: Sequence[str], lines: Mapping[str, Sequence[float | None]]) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(len(horizons))
    for label, ys in lines.items():
        y = np.array([np.nan if v is None else v for v in ys], dtype=float)
        ax.plot(x, y, marker="o", label=label)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(x, list(horizons))
    ax.set_ylabel("bps (positive = favourable)")
    ax.set_title("Markouts after fills")
    if lines:
        ax.legend(loc="best", fontsize=8)
    return _png(fig)


def bars(labels: Sequence[str], values: Sequence[float | None], title: str, ylabel: str) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    v = [0.0 if x is None else float(x) for x in values]
    if labels:
        ax.bar(range(len(v)), v, color=["tab:green" if y >= 0 else "tab:red" for y in v])
        ax.set_xticks(range(len(v)), list(labels), fontsize=8)
        ax.axhline(0, color="grey", lw=0.5)
    else:
        _empty(ax, "no data")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    return _png(fig)


def latency_histograms(hists: Mapping[str, tuple[Sequence[float], Sequence[int]]], per_decade: int) -> bytes:
    """One log-x histogram per stage (x in µs), two per row."""
    names = list(hists)
    rows = max(1, math.ceil(len(names) / 2))
    fig = _figure(GRID_ROW_PX * rows)
    for i, name in enumerate(names or ["no stages"]):
        ax = fig.add_subplot(rows, 2, i + 1)
        log10_us, counts = hists.get(name, ([], []))
        if counts:
            ax.stairs(*_dense_log_bins(log10_us, counts, per_decade), fill=True, color="tab:blue")
            _log_x(ax)
        else:
            _empty(ax, "no samples")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("µs", fontsize=8)
    return _png(fig)


def latency_cdf(
    cdfs: Mapping[str, tuple[Sequence[float], Sequence[float]]], thresholds_us: Mapping[str, float] | None = None
) -> bytes:
    """CDF per stage: x = latency in µs (log), y = cumulative probability; dashed lines at the thresholds."""
    fig = _figure(HEIGHT_PX + 80)
    ax = fig.add_subplot()
    plotted = False
    for name, (xs, ps) in cdfs.items():
        x = np.asarray(xs, dtype=float)
        keep = x > 0
        if keep.any():
            ax.plot(x[keep], np.asarray(ps, dtype=float)[keep], label=name, lw=1.2)
            plotted = True
    if plotted:
        for label, x in (thresholds_us or {}).items():
            ax.axvline(x, color="grey", ls="--", lw=0.8)
            ax.text(x, 0.5, f" {label}", rotation=90, va="center", ha="left", fontsize=7, color="grey")
        _log_x(ax)
        ax.legend(loc="lower right", fontsize=8)
    else:
        _empty(ax, "no positive latency samples")
    ax.set_xlabel("latency (µs)")
    ax.set_ylabel("P(latency <= x)")
    ax.set_title("Latency CDF by stage")
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig)
