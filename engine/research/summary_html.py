"""``summary.html``: one self-contained page per sweep (no file or network fetched when opened):
the chosen metric's heatmap over two swept settings, as a PNG inlined in base64, then the
results table.

A heatmap cell is the mean of the metric over the points that share its two values (the other
settings, days and symbols averaged), and says how many points it holds when more than one.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import pyarrow as pa

#: columns the page leaves out of its table (long, or for machines)
_HIDDEN = ("realized_pnl", "unrealized_pnl", "orders_filled", "error")


def heatmap_cells(
    table: pa.Table, x: str, y: str, metric: str
) -> tuple[list[Any], list[Any], list[list[float]], list[list[int]]]:
    """(x values, y values, mean metric [y][x], points per cell [y][x]); values in first-seen
    order, which is the grid's; an empty cell is NaN."""
    xs = _distinct(table.column(x).to_pylist())
    ys = _distinct(table.column(y).to_pylist())
    total = [[0.0] * len(xs) for _ in ys]
    count = [[0] * len(xs) for _ in ys]
    rows = zip(table.column(x).to_pylist(), table.column(y).to_pylist(), table.column(metric).to_pylist(), strict=True)
    for xv, yv, m in rows:
        if m is None:
            continue
        i, j = ys.index(yv), xs.index(xv)
        total[i][j] += float(m)
        count[i][j] += 1
    mean = [
        [t / c if c else math.nan for t, c in zip(tr, cr, strict=True)] for tr, cr in zip(total, count, strict=True)
    ]
    return xs, ys, mean, count


def _distinct(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def heatmap_png(table: pa.Table, x: str, y: str, metric: str) -> bytes:
    """The heatmap as PNG bytes (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xs, ys, mean, count = heatmap_cells(table, x, y, metric)
    grid = np.array(mean, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(xs) + 2), max(3.0, 0.6 * len(ys) + 1.5)), dpi=100)
    try:
        finite = grid[np.isfinite(grid)]
        span = float(np.abs(finite).max()) if finite.size else 1.0
        # diverging around zero for P&L-like metrics, so that a loss reads red whatever the range
        signed = finite.size and finite.min() < 0 < finite.max()
        kw = {"cmap": "RdYlGn", "vmin": -span, "vmax": span} if signed else {"cmap": "viridis"}
        im = ax.imshow(grid, aspect="auto", origin="lower", **kw)
        ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_yticks(range(len(ys)), [str(v) for v in ys])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        for i in range(len(ys)):
            for j in range(len(xs)):
                if math.isfinite(mean[i][j]):
                    n = f"\n(n={count[i][j]})" if count[i][j] > 1 else ""
                    # viridis is dark at its low end: white text there
                    dark = not signed and im.norm(mean[i][j]) < 0.5
                    color = "white" if dark else "black"
                    ax.text(j, i, f"{mean[i][j]:.4g}{n}", ha="center", va="center", fontsize=8, color=color)
        fig.colorbar(im, ax=ax, label=metric)
        ax.set_title(f"{metric} by {x} and {y}")
        fig.tight_layout()
        buf = io.BytesIO()
        # no timestamp in the file: the same sweep gives the same page
        fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()
    finally:
        plt.close(fig)


def render(table: pa.Table, title: str, metric: str, heatmap: tuple[str, str] | None, note: str = "") -> str:
    """The page's HTML."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f0f0f0}"
        "td.t{text-align:left}.failed{background:#fdd}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if note:
        parts.append(f"<p>{html.escape(note)}</p>")
    if heatmap is not None:
        x, y = heatmap
        png = base64.b64encode(heatmap_png(table, x, y, metric)).decode()
        parts.append(f'<img alt="{html.escape(metric)} heatmap" src="data:image/png;base64,{png}">')
    parts.append(_table(table))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table(table: pa.Table) -> str:
    names = [n for n in table.column_names if n not in _HIDDEN]
    cols = {n: table.column(n).to_pylist() for n in names}
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for i in range(table.num_rows):
        status = cols.get("status", [None] * table.num_rows)[i]
        cls = ' class="failed"' if status not in (None, "finished") else ""
        cells = "".join(_cell(cols[n][i]) for n in names)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        text = f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.0f}"
        return f"<td>{text}</td>"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"<td>{v:,}</td>"
    return f'<td class="t">{html.escape("" if v is None else str(v))}</td>'
