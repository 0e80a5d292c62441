"""Replay a window of the journal into the store: ``scripts/replay_fills.sh --from=T --to=T``.

The guide's §4.4 step after a failed database write. The store service already replays the
journal from its watermark whenever it (re)connects; this is the operator's way to make sure of a
window, or to fill a database that was restored from a backup older than the watermark. It reads
the journal (``database.journal_dir`` of the config; without a lock, so it may run beside a
running daemon: it reads what is whole on disk), takes the fills (``--orders``: the order events
too) whose event-log time ``ts`` lies in ``[from, to)``, and writes them through the store's
idempotent ``write``: what the database has is skipped. It prints how many were read, how many
were new and how many were already present, per table.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import HftError
from engine.store.journal import JournalError, open_readonly

TS = 1  # the event-log ``ts`` column of every table


class ReplayError(HftError):
    """Bad arguments or nothing to replay from."""


@dataclass
class ReplayCounts:
    read: dict[str, int] = field(default_factory=dict)
    new: dict[str, int] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)

    def line(self, table: str) -> str:
        r, n = self.read.get(table, 0), self.new.get(table, 0)
        return f"{table}: read {r}, new {n}, already present {r - n}"


def parse_when(text: str, what: str) -> int:
    """ns since epoch from integer ns or ISO-8601 (``2025-11-25 10:00:00`` too; UTC when no zone)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    import pandas as pd

    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ReplayError(
            f"{what}: not a time: {text!r} (use ISO-8601 UTC like 2025-11-25T10:00:00Z, "
            "'2025-11-25 10:00:00', or integer ns)"
        ) from None
    if ts is pd.NaT:
        raise ReplayError(f"{what}: not a time: {text!r}")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value)


def collect(journal_dir: Path, tables: Sequence[str], start_ns: int, end_ns: int, counts: ReplayCounts) -> dict:
    """``{(table, run_id): [rows]}`` of the journal's rows of ``tables`` with ``start <= ts < end``."""
    try:
        j = open_readonly(journal_dir)
    except JournalError as exc:
        raise ReplayError(str(exc)) from None
    j.on_corrupt = lambda err: counts.damaged.append(str(err))
    out: dict[tuple[str, str], list[tuple]] = {}
    for rec in j.read((0, 0)):
        if rec.table not in tables:
            continue
        rows = [r for r in rec.rows if start_ns <= r[TS] < end_ns]
        if rows:
            out.setdefault((rec.table, rec.run_id), []).extend(rows)
            counts.read[rec.table] = counts.read.get(rec.table, 0) + len(rows)
    return out


async def replay(settings: object, tables: Sequence[str], start_ns: int, end_ns: int) -> ReplayCounts:
    """Write the window's rows (``collect``) into the store ``settings`` names."""
    from engine.store import open_store

    counts = ReplayCounts()
    batches = collect(Path(settings.journal_dir), tables, start_ns, end_ns, counts)  # type: ignore[attr-defined]
    if not batches:
        return counts
    store = open_store(settings)
    await store.connect()
    try:
        await store.migrate()
        for (table, run_id), rows in batches.items():
            rows.sort(key=lambda r: r[0])
            for i in range(0, len(rows), 4096):
                n = await store.write(table, rows[i : i + 4096], run_id)
                counts.new[table] = counts.new.get(table, 0) + n
    finally:
        await store.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="replay_fills.sh",
        description=(
            "Replay the fills (and with --orders the order events) of a time window from the local journal "
            "into the database, idempotently: rows the database has are skipped. Prints how many were read, "
            "new and already present."
        ),
    )
    p.add_argument("--from", dest="start", required=True, help="window start: ISO-8601 UTC or ns")
    p.add_argument("--to", dest="end", required=True, help="window end (exclusive): ISO-8601 UTC or ns")
    p.add_argument("--config", default=None, help="run config whose database section to use (config/production.json)")
    p.add_argument("--orders", action="store_true", help="replay order events too")
    p.add_argument("--journal", default=None, help="journal directory (default: the config's database.journal_dir)")
    args = p.parse_args(argv)
    try:
        from dataclasses import replace

        from engine.store.config import DEFAULT_CONFIG, load_store_settings

        start = parse_when(args.start, "--from")
        end = parse_when(args.end, "--to")
        if end <= start:
            raise ReplayError(f"--to must be after --from ({args.start} .. {args.end})")
        settings = load_store_settings(args.config or DEFAULT_CONFIG)
        if not settings.enabled:
            raise ReplayError(f"{settings.source}: database.backend is none: there is no database to replay into")
        if args.journal:
            settings = replace(settings, journal_dir=Path(args.journal))
        tables = ("fills", "orders") if args.orders else ("fills",)
        counts = asyncio.run(replay(settings, tables, start, end))
    except HftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}", file=sys.stderr)
        return 2
    for table in tables:
        print(counts.line(table))
    for d in counts.damaged:
        print(f"warning: {d}", file=sys.stderr)
    print(f"journal {settings.journal_dir} -> {settings.backend} {settings.where}")
    return 1 if counts.damaged else 0


if __name__ == "__main__":
    raise SystemExit(main())
