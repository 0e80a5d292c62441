"""``analyze_strategy_trades``: the post-mortem statistics over every run of a strategy in the last N days."""

from __future__ import annotations

from pathlib import Path

from engine.errors import RunLogError
from reports.postmortem import PostMortem, post_mortem_runs
from reports.render import ts_text
from reports.runs import DAY_NS, now_ns, runs_in_window

STEM = "trades_report"


def default_out_dir(runs_root: str | Path, strategy: str, days: float) -> Path:
    return Path(runs_root) / "reports" / f"{strategy}-last-{days:g}d"


def trades_report(
    strategy: str,
    days: float,
    runs_root: str | Path,
    now: int | None = None,
    out_dir: str | Path | None = None,
    threads: int | None = None,
) -> PostMortem:
    """Aggregate the runs of ``strategy`` whose time span overlaps the ``days`` before ``now`` (ns, default: now)."""
    if days <= 0:
        raise RunLogError(str(runs_root), f"--days must be positive, got {days:g}")
    t_now = now if now is not None else now_ns()
    runs, total = runs_in_window(runs_root, strategy, days, t_now)
    if not runs:
        raise RunLogError(
            str(runs_root),
            f"no run of strategy '{strategy}' in the {days:g} days before {ts_text(t_now)} UTC "
            f"({total} run(s) of that strategy in all)",
        )
    title = (
        f"Trades of {strategy}, {days:g} days to {ts_text(t_now)} UTC "
        f"({len(runs)} run{'s' if len(runs) != 1 else ''} from {ts_text(t_now - int(days * DAY_NS))})"
    )
    out = Path(out_dir) if out_dir else default_out_dir(runs_root, strategy, days)
    return post_mortem_runs([r.info for r in runs], strategy, out, title, stem=STEM, threads=threads)
