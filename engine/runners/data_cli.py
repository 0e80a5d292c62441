"""``hft data import`` and ``hft data ls``: convert third-party market data and list what is on disk."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

from engine.errors import DataError
from engine.marketdata.catalog import find_roots, format_table, iso_utc, summarize
from engine.marketdata.importers.result import ImportResult
from engine.marketdata.importers.tardis import import_tardis
from engine.runners import registry

SHOWN_POSITIONS = 5


def capture_formats() -> dict[str, ModuleType]:
    """Each venue's own capture format (registry ``capture_import``): a module with ``FORMAT``,
    ``sniff(path)`` and ``import_files(paths, out, venue, symbol, include_bbo=, overwrite=)``."""
    out = {}
    for name in registry.names():
        target = registry.entry(name).capture_import
        if target is not None:
            module = importlib.import_module(target)
            out[module.FORMAT] = module
    return out


FORMATS = ("tardis", *sorted(capture_formats()))


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="market data: import and list Parquet datasets")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda _args: _help(data))

    imp = sub.add_parser(
        "import",
        help="convert captures or vendor files into the partitioned Parquet layout",
        description="Convert Binance collector captures (<recv_ns> <json> lines, gzip) or Tardis.dev CSV files "
        "into <out>/venue=/symbol=/date=/part-N.parquet. Consecutive capture files of one stream are "
        "stitched (the book carries across day files); pass them all in one call.",
    )
    imp.add_argument("sources", nargs="+", metavar="SOURCE", help="input files")
    imp.add_argument("--out", required=True, metavar="ROOT", help="dataset root to write")
    imp.add_argument("--format", choices=FORMATS, help="input format (detected when omitted)")
    imp.add_argument("--venue", help="venue id (binance, binance-futures, binance-delivery, or a Tardis exchange)")
    imp.add_argument("--symbol", help="canonical symbol such as BTC-USDT (found from the data when omitted)")
    imp.add_argument("--bbo", action="store_true", help="also import bookTicker messages as bbo rows")
    imp.add_argument("--overwrite", action="store_true", help="replace partitions that already hold files")
    imp.add_argument("--strict", action="store_true", help="exit 1 when a line is malformed or the book had a gap")
    imp.set_defaults(func=cmd_import)

    ls = sub.add_parser("ls", help="list datasets: venue, symbol, dates, rows and time range")
    ls.add_argument("root", nargs="?", default="data", help="a dataset root or a directory above roots (default: data)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_ls)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def detect_format(path: Path) -> str:
    """``tardis`` for CSV files, else the first venue capture format that recognises the file."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "tardis"
    for fmt, module in capture_formats().items():
        try:
            if module.sniff(path):
                return fmt
        except FileNotFoundError:
            raise DataError(str(path), "file not found") from None
        except (OSError, EOFError) as exc:
            raise DataError(str(path), f"cannot read: {exc}") from None
    raise DataError(str(path), f"cannot tell the format: pass --format ({', '.join(FORMATS)})")


def run_import(args: argparse.Namespace) -> list[ImportResult]:
    paths = [Path(s) for s in args.sources]
    for p in paths:
        if not p.is_file():
            raise DataError(str(p), "file not found" if not p.exists() else "not a file")
        if p.stat().st_size == 0:
            raise DataError(str(p), "the file is empty")
    fmt = args.format or detect_format(paths[0])
    if fmt == "tardis":
        return import_tardis(paths, args.out, args.venue, args.symbol, overwrite=args.overwrite)
    module = capture_formats()[fmt]
    return module.import_files(paths, args.out, args.venue, args.symbol, include_bbo=args.bbo, overwrite=args.overwrite)


def format_result(r: ImportResult) -> str:
    rows = ", ".join(f"{k} {v:,}" for k, v in r.rows.items())
    msgs = ", ".join(f"{k} {v:,}" for k, v in r.messages.items())
    lines = [
        f"{r.venue} {r.symbol} ({r.source_format}: {', '.join(r.sources)})",
        f"  rows: {r.total_rows:,} ({rows}) in {r.seconds:.2f} s, {r.rows_per_second:,.0f} rows/s",
        f"  messages: {msgs}",
        f"  gaps: {r.gaps}, book resets: {r.book_resets}, malformed: {r.malformed}, skipped: {r.skipped}, "
        f"book rows not applied (no synced book): {r.dropped_book_rows:,} in {r.dropped_book_messages:,} messages",
    ]
    if r.first_ts_recv is not None and r.last_ts_recv is not None:
        lines.append(f"  time (ts_recv): {iso_utc(r.first_ts_recv)} .. {iso_utc(r.last_ts_recv)}")
    for title, count, positions in (
        ("gap", r.gaps, r.gap_positions),
        ("malformed", r.malformed, r.malformed_positions),
        ("skipped", r.skipped, r.skipped_positions),
    ):
        for pos in positions[:SHOWN_POSITIONS]:
            lines.append(f"  {title}: {pos}")
        if count > SHOWN_POSITIONS:
            lines.append(f"  ... {count - SHOWN_POSITIONS} more {title} entries")
    for f in r.files_written:
        lines.append(f"  wrote {f}")
    return "\n".join(lines)


def cmd_import(args: argparse.Namespace) -> int:
    results = run_import(args)
    for r in results:
        print(format_result(r))
    bad = any(r.gaps or r.malformed for r in results)
    if bad:
        print("warning: the input had malformed lines or sequence gaps (see above)", file=sys.stderr)
    return 1 if bad and args.strict else 0


def cmd_ls(args: argparse.Namespace) -> int:
    roots = find_roots(args.root)
    summaries = [s for root in roots for s in summarize(root)]
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
    elif not summaries:
        print(f"no market data under {args.root}")
    else:
        print(format_table(summaries))
    return 0
