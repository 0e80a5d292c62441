"""Writing small event logs from rows (tests, fixtures, examples): the engine's schemas, defaults filled in.

Rows are dicts keyed by column name; missing columns get 0 (integers), NaN (floats), "" (strings)
or False. Rows without a ``seq`` are numbered after the rows' ``ts`` across all tables (ties: market,
timers, risk, orders, fills, positions, incidents, then the order given), the order in which the
engine records what happens at one instant.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.eventlog_schema import MANIFEST, TABLES

SEQ_ORDER = ("market", "timers", "risk", "orders", "fills", "positions", "incidents")


def _default(t: pa.DataType) -> Any:
    if pa.types.is_integer(t):
        return 0
    if pa.types.is_floating(t):
        return math.nan
    if pa.types.is_boolean(t):
        return False
    return ""


def table_from_rows(name: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    schema = TABLES[name]
    unknown = {k for r in rows for k in r} - set(schema.names)
    if unknown:
        raise ValueError(f"{name}: unknown column(s) {', '.join(sorted(unknown))}")
    cols = {f.name: [r.get(f.name, _default(f.type)) for r in rows] for f in schema}
    return pa.Table.from_pydict(cols, schema=schema)


def write_event_log(
    run_dir: str | Path,
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    manifest: Mapping[str, Any] | None = None,
    empty_tables: bool = True,
    in_seq_order: bool = True,
) -> Path:
    """Write ``<table>.parquet`` for each table given (and empty ones for the rest) plus ``manifest.json``.

    Rows are written in seq order, as the recorder does, unless ``in_seq_order`` is False (then as given).
    """
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    prio = {t: i for i, t in enumerate(SEQ_ORDER)}
    copies = {name: [dict(r) for r in tables.get(name, [])] for name in TABLES}
    pending = [
        (int(r.get("ts", 0)), prio[name], i, r)
        for name, rows in copies.items()
        for i, r in enumerate(rows)
        if "seq" not in r
    ]
    taken = {int(r["seq"]) for rows in copies.values() for r in rows if "seq" in r}
    seq = 0
    for _, _, _, r in sorted(pending, key=lambda x: x[:3]):
        seq += 1
        while seq in taken:
            seq += 1
        r["seq"] = seq
    for name, rows in copies.items():
        if rows or empty_tables:
            if in_seq_order:
                rows.sort(key=lambda r: r["seq"])
            pq.write_table(table_from_rows(name, rows), out / f"{name}.parquet")
    if manifest is not None:
        (out / MANIFEST).write_text(json.dumps(dict(manifest), indent=2, sort_keys=True) + "\n")
    return out
