"""The operator commands behind the guide's scripts: ``hft doctor``, ``hft ops ...`` (reports on
a running daemon), ``hft heap`` (heap dumps), ``hft profile`` (CPU profiles) and ``hft logs``
(log archive). Each returns 0 healthy / 1 unhealthy / 2 cannot tell or bad arguments."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.daemon import doctor
from engine.daemon.checks import facts as F


def _daemon_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("HFT_URL", F.DEFAULT_URL),
                   help="the daemon's API (default $HFT_URL or %(default)s)")  # fmt: skip
    p.add_argument("--pid-file", help=f"the daemon's pid file (default: the config's, else {F.DEFAULT_PID_FILE})")
    p.add_argument("--config", help=f"the daemon's config (default {F.DEFAULT_CONFIG})")


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    doctor.register(sub)

    ops = sub.add_parser("ops", help="reports on a running daemon (what the guide's scripts print)")
    osub = ops.add_subparsers(dest="ops_command", metavar="REPORT", required=True)
    specs = [
        ("exchange-status", "every exchange: the daemon's connection and the venue's own status (§8.4)"),
        ("websocket", "prints 'WebSocket connected' when the daemon's feed for EXCHANGE is connected (§3.1)"),
        ("md-latency", "data age per book, stale over the venue's stale_data_timeout_s (5 s) (§3.2)"),
        ("perf", "latency per stage, CPU, memory, queues, orders (§5.1)"),
        ("e2e-latency", "tick-to-order (signal-to-order) latency against P99 < 1 ms (§5.1)"),
        ("critical-path", "the hot path stage by stage, each stage's share of tick-to-order (§5.1)"),
        ("memory", "the daemon's memory: resident, anonymous, file-backed, peak, books, orders (§5.3)"),
        ("memory-leak", "sample the daemon's resident memory over time: steady growth? (§5.3)"),
        ("memory-monitor", "watch memory against a threshold and act when it is crossed (§6.1)"),
        ("blocking", "event-loop lag and asyncio slow-callback warnings (§5.1 blocking calls)"),
        ("contention", "per-thread CPU and context switches, lock contention lines (§5.2)"),
    ]
    parsers = {}
    for name, help_ in specs:
        p = osub.add_parser(name, help=help_, description=help_)
        _daemon_args(p)
        p.set_defaults(func=cmd_ops)
        parsers[name] = p
    parsers["websocket"].add_argument("exchange", help="venue name, e.g. binance")
    parsers["perf"].add_argument("--interval", type=_positive, default=1.0, help="CPU sampling window, s")
    parsers["memory-leak"].add_argument("--samples", type=int, default=6, help="number of samples (default 6)")
    parsers["memory-leak"].add_argument("--interval", type=_positive, default=5.0, help="seconds between samples")
    mm = parsers["memory-monitor"]
    mm.add_argument("--threshold", type=_positive, default=80.0, help="percent of the memory limit (default 80)")
    mm.add_argument("--action", choices=("alert", "heap-dump", "log"), default="alert",
                    help="alert: a WARNING line (+ Alertmanager if given); heap-dump: also SIGUSR1")  # fmt: skip
    mm.add_argument("--interval", type=_positive, default=10.0, help="seconds between checks (default 10)")
    mm.add_argument("--log-file", help="append the alert lines here too")
    mm.add_argument("--alertmanager-url", default=os.environ.get("ALERTMANAGER_URL"),
                    help="post alerts to this Alertmanager (env ALERTMANAGER_URL)")  # fmt: skip
    mm.add_argument("--once", action="store_true", help="check once and exit (1 when above the threshold)")
    for name in ("blocking", "contention"):
        parsers[name].add_argument("--seconds", type=_positive, default=5.0, help="sampling window (default 5)")
        parsers[name].add_argument("--log-dir", help=f"the component logs (default {F.DEFAULT_LOG_DIR})")

    heap = sub.add_parser("heap", help="heap summaries the daemon writes on SIGUSR1 (§5.3)")
    hsub = heap.add_subparsers(dest="heap_command", metavar="ACTION", required=True)
    for name, help_ in (("analyze", "largest allocation sites in each heap dump"),
                        ("leaks", "growth per allocation site between successive heap dumps")):  # fmt: skip
        p = hsub.add_parser(name, help=help_, description=help_)
        p.add_argument("files", nargs="+", metavar="FILE", help="heap dumps, e.g. /tmp/hft_heap_*.dump")
        p.add_argument("--top", type=int, default=20, help="rows to show (default 20)")
        p.set_defaults(func=cmd_heap)

    prof = sub.add_parser("profile", help="CPU profiles of the running daemon (py-spy) (§5.2)")
    psub = prof.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    p = psub.add_parser("cpu", help="profile the daemon for SECONDS with py-spy (non-blocking sampling)")
    p.add_argument("seconds", type=_positive, help="how long to profile")
    _daemon_args(p)
    p.add_argument("--pid", type=int, help="profile this pid instead of the daemon's")
    p.add_argument("--out-dir", default="/tmp", help="where the profile goes (default /tmp)")
    p.add_argument("--rate", type=int, default=100, help="samples per second (default 100)")
    p.add_argument("--subprocesses", action="store_true", help="also profile the API process")
    p.set_defaults(func=cmd_profile)
    p = psub.add_parser("analyze", help="hot functions of a profile (default: the latest /tmp/hft_cpu_*.txt)")
    p.add_argument("file", nargs="?", help="the profile (collapsed stacks)")
    p.add_argument("--dir", default="/tmp", help="where to look for the latest profile")
    p.add_argument("--top", type=int, default=20, help="rows to show (default 20)")
    p.set_defaults(func=cmd_profile)

    logs = sub.add_parser("logs", help="the component logs (§6.2)")
    lsub = logs.add_subparsers(dest="logs_command", metavar="ACTION", required=True)
    p = lsub.add_parser("archive", help="compress rotated and daily metrics logs older than N days, then remove them")
    p.add_argument("--days", type=_positive, required=True, help="archive files older than this many days")
    p.add_argument("--log-dir", default=os.environ.get("HFT_LOG_DIR", F.DEFAULT_LOG_DIR),
                   help="the log directory (default $HFT_LOG_DIR or %(default)s)")  # fmt: skip
    p.add_argument("--archive-dir", help="where the .tar.gz goes (default LOG_DIR/archive)")
    p.add_argument("--dry-run", action="store_true", help="list what would be archived")
    p.set_defaults(func=cmd_logs)


def cmd_ops(args: argparse.Namespace) -> int:
    from engine.daemon.operator import reports as R

    d = R.Daemon(url=args.url, pid_file=args.pid_file, config=args.config)
    c = args.ops_command
    if c == "exchange-status":
        return R.exchange_status(d)
    if c == "websocket":
        return R.websocket(d, args.exchange)
    if c == "md-latency":
        return R.market_data_latency(d)
    if c == "perf":
        return R.performance_summary(d, args.interval)
    if c == "e2e-latency":
        return R.e2e_latency(d)
    if c == "critical-path":
        return R.critical_path(d)
    if c == "memory":
        return R.memory_breakdown(d)
    if c == "memory-leak":
        if args.samples < 2:
            print("error: --samples: must be at least 2", file=sys.stderr)
            return 2
        return R.memory_leak(d, args.samples, args.interval)
    if c == "memory-monitor":
        mon = R.MemoryMonitor(d, args.threshold, args.action, args.interval,
                              Path(args.log_file) if args.log_file else None, args.alertmanager_url)  # fmt: skip
        return mon.run(once=args.once)
    if c == "blocking":
        return R.blocking_calls(d, args.seconds, args.log_dir)
    if c == "contention":
        return R.lock_contention(d, args.seconds, args.log_dir)
    raise AssertionError(c)


def cmd_heap(args: argparse.Namespace) -> int:
    from engine.daemon.operator import heapfiles

    try:
        dumps = [heapfiles.load(Path(f)) for f in args.files]
    except heapfiles.HeapFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.heap_command == "analyze":
        print(heapfiles.analyze(dumps, args.top))
        return 0
    if len(dumps) < 2:
        print("error: leaks needs two or more dumps taken apart in time (kill -USR1 the daemon twice)", file=sys.stderr)
        return 2
    text, growing = heapfiles.leaks(dumps, args.top)
    print(text)
    return 1 if growing else 0


def cmd_profile(args: argparse.Namespace) -> int:
    from engine.daemon.operator import profiling

    try:
        if args.profile_command == "cpu":
            if args.pid is not None:
                pid = args.pid
            else:
                from engine.daemon.operator.reports import Daemon, Unavailable

                try:
                    pid = Daemon(url=args.url, pid_file=args.pid_file, config=args.config).pid()
                except Unavailable as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
            print(f"profiling pid {pid} for {args.seconds:g} s (py-spy, non-blocking) ...", file=sys.stderr)
            out = profiling.record(pid, args.seconds, Path(args.out_dir), args.rate, args.subprocesses)
            print(out)
            return 0
        path = Path(args.file) if args.file else profiling.latest(Path(args.dir))
        print(profiling.report(path, args.top))
        return 0
    except profiling.ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_logs(args: argparse.Namespace) -> int:
    from engine.daemon.operator import logarchive

    try:
        res = logarchive.archive(Path(args.log_dir), args.days,
                                 Path(args.archive_dir) if args.archive_dir else None, args.dry_run)  # fmt: skip
    except (FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not res.files:
        print(f"nothing to archive in {args.log_dir}: no rotated or daily log older than {args.days:g} days")
        return 0
    for p in res.files:
        print(f"{'would archive' if args.dry_run else 'archived'} {p}")
    if res.archive:
        print(
            f"{len(res.files)} file(s), {res.bytes_in / 2**20:.1f} MiB -> {res.archive} "
            f"({res.bytes_out / 2**20:.1f} MiB)"
        )
    return 0
