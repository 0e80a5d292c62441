"""Finding runs under a runs root: the latest run of a strategy, and the runs of the last N days.

A run is a directory directly under the root holding a ``manifest.json`` or event-log Parquet
files (or, for a paper or live session still running or crashed, the streams it writes, read as
``reports.eventlog`` says). Its strategies come from the manifest (else from the strategy ids in
its fills and orders); its time span from ``run_info.json`` for backtests (when the run was made),
else the manifest's ``data.from_ns``/``data.to_ns``, else the first and last event timestamps.
"Latest" means most recently written: the manifest's modification time (else the directory's),
ties broken by name. A session writes its manifest when it starts and when it closes; a session
that continues a crashed run writes its own after marking the crashed one, so it is the latest.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from engine.errors import HftError, RunLogError
from engine.eventlog_schema import MANIFEST
from reports.eventlog import RunInfo, inspect_run, sql_list

DAY_NS = 86_400_000_000_000
DEFAULT_RUNS_ROOT = "runs"


def default_runs_root() -> Path:
    return Path(os.environ.get("HFT_RUNS_ROOT") or DEFAULT_RUNS_ROOT)


@dataclass
class RunEntry:
    info: RunInfo
    mtime: float

    @property
    def path(self) -> Path:
        return self.info.path


def discover_runs(root: str | Path) -> list[RunEntry]:
    """Every run directly under ``root``; unreadable candidates are skipped (the report on one names them)."""
    base = Path(root)
    if not base.is_dir():
        raise RunLogError(str(base), "no such runs directory")
    out = []
    for p in sorted(base.iterdir()):
        if not p.is_dir():
            continue
        try:
            info = inspect_run(p)
        except HftError:
            continue
        manifest = p / MANIFEST
        out.append(RunEntry(info, (manifest if manifest.exists() else p).stat().st_mtime))
    return out


def _event_stat(info: RunInfo, sql_agg: str, tables: tuple[str, ...]) -> list[tuple]:
    try:
        files = [f for t in tables for f in info.table_paths(t)]
    except HftError:
        return []
    if not files:
        return []
    try:
        return duckdb.sql(f"SELECT {sql_agg} FROM read_parquet({sql_list(files)}, union_by_name = true)").fetchall()
    except duckdb.Error:
        return []


def run_strategies(info: RunInfo) -> set[str]:
    named = set(info.strategies())
    if named:
        return named
    rows = _event_stat(info, "DISTINCT strategy_id", ("fills", "orders"))
    return {r[0] for r in rows if r[0]}


def _created_ns(info: RunInfo) -> int | None:
    """Wall-clock time a run was made (``run_info.json``, kept apart from the deterministic log)."""
    try:
        created = json.loads((info.path / "run_info.json").read_text()).get("created_at")
        return int(dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp() * 1e9)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def run_span(info: RunInfo) -> tuple[int | None, int | None]:
    """(start, end) in ns. A backtest replays old data, so for "the last N days" it counts when the
    run was made (``run_info.json``); paper and live runs use their data range, else the first and
    last event timestamps."""
    if info.mode == "backtest":
        created = _created_ns(info)
        if created is not None:
            return created, created
    data = info.manifest.get("data")
    if isinstance(data, dict):
        lo, hi = data.get("from_ns"), data.get("to_ns")
        if isinstance(lo, int) and isinstance(hi, int):
            return lo, hi
    rows = _event_stat(info, "min(ts), max(ts)", ("orders", "fills", "market", "positions"))
    if rows and rows[0][0] is not None:
        return int(rows[0][0]), int(rows[0][1])
    return None, None


def latest_run(root: str | Path, strategy: str | None = None) -> RunEntry:
    runs = discover_runs(root)
    if strategy is not None:
        runs = [r for r in runs if strategy in run_strategies(r.info)]
    if not runs:
        who = f" of strategy '{strategy}'" if strategy else ""
        raise RunLogError(str(root), f"no run{who} found")
    return max(runs, key=lambda r: (r.mtime, r.path.name))


def runs_in_window(root: str | Path, strategy: str, days: float, now_ns: int) -> tuple[list[RunEntry], int]:
    """Runs of ``strategy`` whose time span overlaps the ``days`` before ``now_ns``, oldest first.

    Also returns how many runs of the strategy there are in all (for the message when none is recent).
    """
    since = now_ns - int(days * DAY_NS)
    found: list[tuple[int, RunEntry]] = []
    total = 0
    for r in discover_runs(root):
        if strategy not in run_strategies(r.info):
            continue
        total += 1
        start, end = run_span(r.info)
        if start is None or end is None:
            continue
        if end >= since and start <= now_ns:
            found.append((start, r))
    found.sort(key=lambda x: (x[0], x[1].path.name))
    return [r for _, r in found], total


def parse_time(value: str) -> int:
    """ISO-8601 (``2024-05-01T00:00:00Z``; naive means UTC) or integer nanoseconds since the epoch."""
    v = value.strip()
    if v.lstrip("-").isdigit():
        return int(v)
    try:
        t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad time '{value}': use ISO-8601 like 2024-05-01T00:00:00Z or nanoseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def now_ns() -> int:
    return time.time_ns()
