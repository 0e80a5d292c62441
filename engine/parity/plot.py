"""Cumulative net P&L of the session and of its replay, on one time axis (seconds from the
session's first book), from each run's ``positions`` table: realized + unrealized - fees, summed
over strategies and symbols."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.parity.compare import read_table

COLS = ["seq", "ts", "strategy_id", "symbol", "realized_pnl", "unrealized_pnl", "fees"]


def net_pnl(run_dir: Path) -> pd.Series:
    """ts -> net P&L of the whole run (each strategy and symbol's last value carried forward)."""
    df = read_table(run_dir, "positions", COLS)
    if df.empty:
        return pd.Series(dtype=float)
    df["net"] = df["realized_pnl"] + df["unrealized_pnl"] - df["fees"]
    df["key"] = df["strategy_id"] + "/" + df["symbol"]
    wide = df.pivot_table(index="ts", columns="key", values="net", aggfunc="last").sort_index().ffill().fillna(0.0)
    return wide.sum(axis=1)


def plot_pnl(session: pd.Series, replay: pd.Series, t0_ns: int, path: Path) -> None:
    """A PNG of both curves at ``path`` (matplotlib's Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.15)
    ax = fig.add_subplot(1, 1, 1)
    for series, label, style in ((session, "session", "-"), (replay, "replay", "--")):
        if not series.empty:
            x = (series.index.to_numpy() - t0_ns) / 1e9
            ax.step(x, series.to_numpy(), style, where="post", label=label, linewidth=1.2)
    ax.set_xlabel("seconds from the session's first book")
    ax.set_ylabel("net P&L (quote)")
    ax.set_title("Cumulative net P&L: session vs replay")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.savefig(path, format="png")
