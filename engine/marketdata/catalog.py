"""What market data is on disk: dataset roots, and per (venue, symbol) dates, rows and time range.

A dataset root is a directory holding ``venue=<v>/symbol=<s>/date=<d>/*.parquet`` partitions.
``find_roots`` looks for them below a base directory (``data/`` holds ``data/samples/`` and
recorded data side by side); ``summarize`` asks DuckDB, reading the Parquet files with hive
partitioning, so listing costs only what DuckDB needs from the footers and columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from engine.errors import DataError
from engine.model import KIND_NAMES

MAX_DEPTH = 4


@dataclass(slots=True)
class DatasetSummary:
    """One (venue, symbol) stream under one root."""

    root: Path
    venue: str
    symbol: str
    dates: list[str]
    rows: int
    first_ts_recv: int
    last_ts_recv: int
    files: int
    rows_by_kind: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "venue": self.venue,
            "symbol": self.symbol,
            "dates": self.dates,
            "rows": self.rows,
            "rows_by_kind": self.rows_by_kind,
            "files": self.files,
            "first_ts_recv": self.first_ts_recv,
            "last_ts_recv": self.last_ts_recv,
            "first_utc": iso_utc(self.first_ts_recv),
            "last_utc": iso_utc(self.last_ts_recv),
        }


def iso_utc(ts_ns: int) -> str:
    """``2024-08-08T23:54:15.088176Z`` (microseconds; the nanoseconds stay in the data)."""
    sec, ns = divmod(int(ts_ns), 1_000_000_000)
    return datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1000:06d}Z"


def is_dataset_root(path: Path) -> bool:
    try:
        return any(p.is_dir() and p.name.startswith("venue=") for p in path.iterdir())
    except OSError:
        return False


def find_roots(base: str | Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """``base`` itself if it is a dataset root, else the dataset roots below it (sorted)."""
    start = Path(base)
    if not start.exists():
        raise DataError(str(start), "directory does not exist")
    if not start.is_dir():
        raise DataError(str(start), "not a directory")
    roots: list[Path] = []
    frontier = [start]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            if is_dataset_root(d):
                roots.append(d)
                continue
            try:
                nxt.extend(sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")))
            except OSError:
                continue
        frontier = nxt
    return sorted(roots)


def summarize(root: str | Path) -> list[DatasetSummary]:
    """Per (venue, symbol) summary of one dataset root, via DuckDB over its Parquet files."""
    base = Path(root)
    files = sorted(base.glob("venue=*/symbol=*/date=*/*.parquet"))
    if not files:
        return []
    pattern = str(base / "venue=*" / "symbol=*" / "date=*" / "*.parquet")
    kind_cols = ", ".join(f"count(*) FILTER (WHERE kind = {k}) AS k{k}" for k in KIND_NAMES)
    sql = f"""
        SELECT venue, symbol, list(DISTINCT CAST(date AS VARCHAR) ORDER BY CAST(date AS VARCHAR)) AS dates,
               count(*) AS n, min(ts_recv) AS first, max(ts_recv) AS last,
               count(DISTINCT filename) AS files, {kind_cols}
        FROM read_parquet(?, hive_partitioning = true, filename = true)
        GROUP BY venue, symbol
        ORDER BY venue, symbol
    """
    try:
        with duckdb.connect() as con:
            rows = con.execute(sql, [pattern]).fetchall()
    except duckdb.Error as exc:
        raise _which_file(base, files, exc) from None
    out = []
    for venue, symbol, dates, n, first, last, nfiles, *kinds in rows:
        by_kind = {name: int(c) for name, c in zip(KIND_NAMES.values(), kinds, strict=True)}
        out.append(
            DatasetSummary(base, venue, symbol, list(dates), int(n), int(first), int(last), int(nfiles), by_kind)
        )
    return out


def _which_file(base: Path, files: list[Path], exc: Exception) -> DataError:
    """The one-line error for a dataset DuckDB could not read: the first file that is not a
    readable Parquet file of this schema, named, with the reason in a few words (not DuckDB's
    message, which quotes the query)."""
    import pyarrow.parquet as pq

    for f in files:
        try:
            names = set(pq.read_schema(f).names)
        except Exception as bad:  # pyarrow raises several kinds for a damaged file
            return DataError(str(f), f"not a readable Parquet file ({_first_line(bad)})")
        missing = sorted({"ts_recv", "kind"} - names)
        if missing:
            return DataError(str(f), f"not a market-data Parquet file (no column {', '.join(missing)})")
    return DataError(str(base), f"cannot summarise the Parquet files: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def format_table(summaries: list[DatasetSummary]) -> str:
    """A plain-text table of summaries, one line per (venue, symbol), grouped by root."""
    header = ("venue", "symbol", "dates", "rows", "snapshot", "delta", "trade", "bbo", "first (UTC)", "last (UTC)")
    lines: list[str] = []
    by_root: dict[Path, list[DatasetSummary]] = {}
    for s in summaries:
        by_root.setdefault(s.root, []).append(s)
    for root, items in by_root.items():
        table = [header]
        for s in items:
            dates = s.dates[0] if len(s.dates) == 1 else f"{s.dates[0]}..{s.dates[-1]} ({len(s.dates)} days)"
            table.append(
                (
                    s.venue,
                    s.symbol,
                    dates,
                    f"{s.rows:,}",
                    *(f"{s.rows_by_kind.get(k, 0):,}" for k in ("snapshot", "delta", "trade", "bbo")),
                    iso_utc(s.first_ts_recv),
                    iso_utc(s.last_ts_recv),
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        if lines:
            lines.append("")
        lines.append(f"root: {root}")
        for row in table:
            cells = [
                c.rjust(w) if 3 <= i <= 7 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
