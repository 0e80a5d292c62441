"""Database write throughput, and the hot path's latency while the store writes.

    python -m bench.store_write --pg [--ticks 1000000] [--fills 100000] [--hot-ticks 5000] [--repeat 3]
    python -m bench.store_write --dsn postgresql://user@host:5432/db ...
    python -m bench.store_write --duckdb ...

Three measurements, each printed with its rate and the process's peak memory:

1. **ticks/s by COPY**: event-log ``market`` rows into ``market_data_ticks``, (a) straight through
   ``PgStore.copy_ticks`` in the batches the service sends (5,000 rows), (b) end to end through
   the store service (hand-off, bounded queue, batching, COPY), once with the writer thread
   (``database.writer: "thread"``) and once with the writer process (``"process"``: the sender
   thread encodes and pipes, the child writes): rows handed over as fast as the service takes
   them, timed until the last is committed.
2. **fills/s**: fills through the same two services: each hand-off framed into the journal (one
   write and one fsync per wake-up), then written to ``fills`` in batches; timed until all are
   committed and the watermark has moved past them.
3. **hot path, with and without a store writing**: ``bench.hot_path`` (fake Binance in a child
   process, the real feed, engine and WS API order socket, event log on) in this process, in
   alternating cycles of the ``--variants``: ``alone``; ``thread``, while the writer thread in
   this process takes a steady ``--load-ticks`` ticks/s and ``--load-fills`` fills/s (defaults
   10,000 and 200: above what a trading process hands over, the hot path's own event log
   included) from a feeding thread here; ``writer``, the same load handed by the feeding thread
   here to the writer process (``engine.store.writer_process``: what ships for PostgreSQL); and
   ``process``, the control, where the feeding and a writer thread both run in a child process
   (nothing of the store in this interpreter). The percentile sets are printed, each run and the
   medians; the ``writer`` runs also print the sender thread's encoding cost (CPU time).

Between 2 and 3 it prints what the writer process costs the trading interpreter per hand-off
(``handoff_costs``: ``tap``, and the sender's encoding of a batch, msgpack against pickle).

``--pg`` starts a PostgreSQL of its own (``tests/pg.py``, the test suite's server, with
``fsync`` and ``synchronous_commit`` switched back on so the figures are a durable server's);
``--dsn`` takes an existing server (the password from ``HFT_DB_PASSWORD`` or ~/.pgpass).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from bench import REPO, interpreter
from engine.gcpolicy import thread_switch
from engine.store import StoreSettings, open_store
from engine.store.service import StoreService

T0 = 1_765_000_000_000_000_000
_LOADS = itertools.count(1)
SLICE = 5000  # rows per COPY: the service's default batch_rows


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def market_rows(n: int, base: int = 0) -> list[tuple]:
    return [
        (base + i, T0 + (base + i) * 1000, T0 + (base + i) * 1000, "binance", "BTC-USDT",
         60000.0 + (i % 50), 60001.0 + (i % 50), 1.5, 2.5, 60000.5 + (i % 50), base + i, 900)
        for i in range(n)
    ]  # fmt: skip


def fill_rows(n: int, base: int = 0) -> list[tuple]:
    return [
        (base + i, T0 + (base + i) * 1000, T0 + (base + i) * 1000, "s1", "binance", "BTC-USDT", f"c{base + i}",
         f"v{base + i}", f"t{base + i}", "buy" if i % 2 else "sell", 60000.0, 0.001, 60.0, 0.03, "USDT", "taker",
         60000.0, 60000.5, 60000.5, T0, T0, T0, T0, 0.001, 0.0)
        for i in range(n)
    ]  # fmt: skip


@contextlib.contextmanager
def database(args: argparse.Namespace, tmp: Path) -> Iterator[StoreSettings]:
    if args.duckdb:
        yield StoreSettings(backend="duckdb", duckdb_path=tmp / "bench.duckdb", journal_dir=tmp / "journal")
        return
    if args.dsn:
        u = urlparse(args.dsn)
        yield StoreSettings(
            backend="postgresql",
            host=u.hostname or "localhost",
            port=u.port or 5432,
            name=unquote(u.path.lstrip("/")) or "hft_db",
            user=unquote(u.username or "hft_user"),
            journal_dir=tmp / "journal",
            source=args.dsn,
        )
        return
    sys.path.insert(0, str(REPO / "tests"))
    from pg import PgServer  # the test suite's throwaway server

    server = PgServer()
    try:
        server.start()
        server.psql("ALTER SYSTEM SET fsync = on")
        server.psql("ALTER SYSTEM SET synchronous_commit = on")
        server.psql("SELECT pg_reload_conf()")
        name = server.create_database("hft_bench")
        if args.pg_nice:
            _renice_server(server.data, args.pg_nice)
        nice = f", niced +{args.pg_nice}" if args.pg_nice else ""
        print(f"PostgreSQL: own server {server.host}:{server.port} (fsync on, synchronous_commit on{nice})")
        yield StoreSettings(
            backend="postgresql",
            host=server.host,
            port=server.port,
            name=name,
            user="postgres",
            password_env="HFT_BENCH_NO_PASSWORD",
            journal_dir=tmp / "journal",
            source="bench server",
        )
    finally:
        server.cleanup()


# --- 1. ticks ---------------------------------------------------------------------------------------------
async def copy_direct(settings: StoreSettings, n: int) -> float:
    rows = market_rows(min(n, 100_000))
    store = open_store(settings)
    await store.connect()
    try:
        await store.migrate()
        done = 0
        t = time.perf_counter()
        while done < n:
            for i in range(0, len(rows), SLICE):
                part = rows[i : i + SLICE][: n - done]
                if not part:
                    break
                done += await store.copy_ticks(part, "bench") or len(part)
        return done / (time.perf_counter() - t)
    finally:
        await store.close()


def through_service(settings: StoreSettings, ticks: int, fills: int, writer: str) -> tuple[float, float, dict]:
    s = replace(
        settings,
        queue_rows=max(ticks, 1) * 2,
        batch_rows=5000,
        journal_dir=settings.journal_dir / f"a-{writer}",
        writer=writer,
    )
    svc = StoreService(s).open_sync()
    try:
        rows = market_rows(min(ticks, 100_000))
        t = time.perf_counter()
        sent = 0
        while sent < ticks:
            while svc.queue_depth() > 200_000:
                time.sleep(0.001)
            part = rows[: min(5000, ticks - sent)]
            svc.submit("market", part)
            sent += len(part)
        assert svc.flush_sync(600), "ticks not written in 10 minutes"
        tick_rate = ticks / (time.perf_counter() - t)
        frows = fill_rows(fills, base=next(_LOADS) * 1_000_000_000)  # new trade ids: each run inserts
        t = time.perf_counter()
        for i in range(0, fills, 500):
            svc.tap([("fills", frows[i : i + 500])])
            if svc.queue_depth() > 100_000:
                time.sleep(0.001)
        assert svc.flush_sync(600), "fills not written in 10 minutes"
        fill_rate = fills / (time.perf_counter() - t)
        return tick_rate, fill_rate, svc.metrics()
    finally:
        svc.close_sync(30)


def handoff_costs() -> None:
    """What the writer process costs the trading interpreter per hand-off: ``tap`` (an append,
    and an event set when rows for the journal wake the sender), and the sender's encoding of a
    200 ms batch at 1,000 ticks/s (20 hand-offs of 10 ticks, 4 fills), msgpack as shipped
    against pickle; CPU time of the calling thread, medians of 1,000."""
    import pickle

    from engine.store.writer_process import ProcessStoreService, _encode_into

    svc = ProcessStoreService(StoreSettings(backend="postgresql"))  # not opened: the appends alone
    ticks = market_rows(200)
    fills = fill_rows(4)
    lazy = [("market", ticks[:10])]
    kick = [("market", ticks[:10]), ("fills", fills[:1])]
    n = 100_000
    for name, job in (("market only", lazy), ("with a fill (sets the event)", kick)):
        t = time.thread_time()
        for _ in range(n):
            svc.tap(job)
            svc._kicked = False
        svc._inbox.clear()
        print(f"  tap, {name}: {(time.thread_time() - t) / n * 1e6:.2f} us")
    items = [("run", [("market", ticks[i : i + 10])]) for i in range(0, 200, 10)]
    items += [("run", [("fills", [f])]) for f in fills]

    def msgpack() -> int:
        buf = bytearray(b"D")
        _encode_into((1, items, {}), buf, 1)
        return len(buf)

    def pickled() -> int:
        return len(pickle.dumps((1, items, {}), pickle.HIGHEST_PROTOCOL))

    for name, fn in (("msgpack (shipped)", msgpack), ("pickle", pickled)):
        spent = []
        for _ in range(1000):
            t = time.thread_time()
            size = fn()
            spent.append(time.thread_time() - t)
        print(f"  sender, one 200 ms batch by {name}: {statistics.median(spent) * 1e6:.1f} us CPU, {size:,} bytes")


# --- 3. the hot path -------------------------------------------------------------------------------------
class Load:
    """A steady load on a store service: every 10 ms a slice of ticks and fills from lists built
    beforehand (the feeding thread does little but hand them over). ``where="thread"``: the
    writer thread runs in this process; ``"writer"``: the writer process, fed from this one (both
    as in a trading process); ``"process"``: feeding and writer thread in a child process (the
    control: the database path's CPU without sharing this interpreter)."""

    def __init__(
        self, settings: StoreSettings, ticks_per_s: int, fills_per_s: int, where: str = "thread", copy_slice: int = 0
    ) -> None:
        self.copy_slice = copy_slice
        self.settings = replace(
            settings,
            journal_dir=settings.journal_dir / f"load-{where}",
            queue_rows=1_000_000,
            writer="process" if where == "writer" else "thread",
        )
        self.ticks_per_s = ticks_per_s
        self.fills_per_s = fills_per_s
        self.where = where
        self.metrics: dict[str, Any] = {}
        self.sent = [0, 0]
        self.sender: dict[str, float] = {}  # the writer process's sender thread: batches, encoding CPU time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: Any = None
        self._conn: Any = None

    def start(self) -> Load:
        if self.where in ("thread", "writer"):
            svc = StoreService(self.settings).open_sync()
            if self.copy_slice and self.where == "thread":
                svc.copy_slice = self.copy_slice
            self._thread = threading.Thread(target=self._thread_main, args=(svc,), name="store-load", daemon=True)
            self._thread.start()
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(
                target=_load_process,
                args=(self.settings, self.ticks_per_s, self.fills_per_s, child, self.copy_slice),
                daemon=True,
            )
            self._proc.start()
            assert self._conn.recv() == "ready"
        return self

    def _thread_main(self, svc: StoreService) -> None:
        self.sent = feed(svc, self.ticks_per_s, self.fills_per_s, self._stop.is_set)
        svc.flush_sync(120)
        self.metrics = svc.metrics()
        if self.where == "writer":
            self.sender = {
                "batches": svc.sender_batches,
                "encode_s": svc.sender_encode_s,
                "encode_max_s": svc.sender_encode_max_s,
                "bytes": svc.sender_bytes,
            }
        svc.close_sync(30)

    def finish(self) -> dict[str, Any]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self._conn.send("stop")
            self.sent, self.metrics = self._conn.recv()
            self._proc.join(60)
        return self.metrics


def feed(svc: Any, ticks_per_s: int, fills_per_s: int, stopped: Any) -> list[int]:
    """Every 10 ms a hand-off of ``ticks_per_s / 100`` ticks (and the fills due by then) until
    ``stopped()``; returns [ticks, fills] handed over."""
    tick_step = max(ticks_per_s // 100, 1)
    ticks = market_rows(100_000)
    base = (next(_LOADS) * 100_000 + os.getpid()) * 1_000_000  # new trade ids for every load
    fills = fill_rows(max(fills_per_s * 180, 1), base=base)  # three minutes
    sent = [0, 0]
    i = f = 0
    t0 = next_t = time.monotonic()
    while not stopped():
        job: list[tuple[str, list[tuple]]] = [("market", ticks[i : i + tick_step])]
        i = (i + tick_step) % (len(ticks) - tick_step)
        due = min(int((time.monotonic() - t0) * fills_per_s), len(fills))
        if due > f:
            job.append(("fills", fills[f:due]))
            sent[1] += due - f
            f = due
        svc.tap(job)
        sent[0] += tick_step
        next_t += 0.01
        time.sleep(max(0.0, next_t - time.monotonic()))
    return sent


def _load_process(settings: StoreSettings, ticks_per_s: int, fills_per_s: int, conn: Any, copy_slice: int) -> None:
    svc = StoreService(settings).open_sync()
    if copy_slice:
        svc.copy_slice = copy_slice
    conn.send("ready")
    sent = feed(svc, ticks_per_s, fills_per_s, conn.poll)
    conn.recv()
    svc.flush_sync(120)
    conn.send((sent, svc.metrics()))
    svc.close_sync(30)


def hot_path(ticks: int) -> Any:
    """One ``bench.hot_path`` configuration in this process: WS API, a new IOC order per tick,
    the event log written (as paper and live trading do)."""
    from bench import hot_path as hp

    data = sorted(p for p in hp.DEFAULT_DATA.glob("*.gz"))
    run = hp.Run("ws", "place", gc_threshold=50_000, ticks=ticks, record=True)
    # a paper or live session trades with the interpreter's switch interval at 0.5 ms (its event
    # log and store have threads of their own: engine.runners.session); so does every variant here
    with thread_switch():
        samples, rounds = hp.bench(data, run)
    return samples, rounds, hp


VARIANTS = {
    "alone": "hot path alone (event log on)",
    "thread": "hot path while the writer thread in this process writes",
    "writer": "hot path while the writer process, fed from this process, writes",
    "process": "hot path while feeding and writer thread run in a child process (control)",
}


def hot_path_runs(settings: StoreSettings, args: argparse.Namespace) -> None:
    """``--repeat`` cycles of the variants (alternating, so that the shared machine's drift falls
    on all of them), each run printed, then the median of each percentile per variant."""
    from bench import hot_path as hp

    variants = {v: VARIANTS[v] for v in args.variants.split(",")}
    got: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    load_what = f"{args.load_ticks:,} ticks/s + {args.load_fills:,} fills/s"
    for cycle in range(args.repeat):
        for variant, title in variants.items():
            load = (
                Load(settings, args.load_ticks, args.load_fills, variant, args.copy_slice).start()
                if variant != "alone"
                else None
            )
            try:
                samples, rounds, _ = hot_path(args.hot_ticks)
            finally:
                lm = load.finish() if load is not None else {}
            extra = ""
            if load is not None:
                extra = (
                    f" {load_what} (handed {load.sent[0]:,} ticks, {load.sent[1]:,} fills; written "
                    f"{lm.get('hft_db_rows_written_total')}, dropped {lm.get('hft_db_rows_dropped_total') or 'none'})"
                )
                if load.sender:
                    sd = load.sender
                    n = max(int(sd["batches"]), 1)
                    extra += (
                        f"; sender: {int(sd['batches'])} batches, {sd['bytes'] / n / 1024:.1f} KiB each, encoding CPU "
                        f"mean {sd['encode_s'] / n * 1e6:.0f} us max {sd['encode_max_s'] * 1e6:.0f} us"
                    )
            print(f"[{cycle + 1}/{args.repeat}] {title}{extra}: {samples.ticks} ticks, {len(rounds)} round(s)")
            ns = samples.frame_to_order
            print(hp.line("frame handed over -> order bytes written", ns))
            got[variant].append((hp.pct(ns, 50), hp.pct(ns, 99), hp.pct(ns, 99.9)))
    print(f"medians over {args.repeat} run(s), frame handed over -> order bytes written:")
    for variant, runs in got.items():
        med = [statistics.median(r[i] for r in runs) for i in range(3)]
        print(f"  {variant:<8} p50={med[0]:7.1f} us  p99={med[1]:7.1f} us  p99.9={med[2]:7.1f} us")


def _renice_server(data_dir: Path, nice: int) -> None:
    """The server's postmaster and its processes at ``nice``: backends forked later inherit it.
    What an operator gets by giving the database other cores, on a machine with two."""
    pid = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    pids = [pid]
    for task in Path("/proc").iterdir():
        if task.name.isdigit():
            try:
                if int((task / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(task.name))
            except (OSError, ValueError, IndexError):
                continue
    for p in pids:
        with contextlib.suppress(ProcessLookupError):  # a backend that has just ended
            os.setpriority(os.PRIO_PROCESS, p, nice)


def rate(what: str, value: float, unit: str) -> None:
    print(f"{what:<55} {value:12,.0f} {unit}  peak {peak_mb():.0f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--pg", action="store_true", help="start a PostgreSQL of its own (tests/pg.py)")
    where.add_argument("--dsn", help="an existing PostgreSQL: postgresql://user@host:port/db")
    where.add_argument("--duckdb", action="store_true", help="the embedded DuckDB store instead")
    ap.add_argument("--ticks", type=int, default=1_000_000, help="ticks written (default 1,000,000)")
    ap.add_argument("--fills", type=int, default=100_000, help="fills written (default 100,000)")
    ap.add_argument("--hot-ticks", type=int, default=5000, help="measured hot-path ticks per run (0: skip)")
    ap.add_argument("--load-ticks", type=int, default=10_000, help="ticks/s the store takes during the hot path")
    ap.add_argument(
        "--copy-slice", type=int, default=0, help="market rows per COPY of the loaded service (default: the service's)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="cycles of the three hot-path variants (default 3)")
    ap.add_argument(
        "--pg-nice", type=int, default=0, help="with --pg: run the server's processes at this niceness (e.g. 10)"
    )
    ap.add_argument("--load-fills", type=int, default=200, help="fills/s the store takes during the hot path")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"hot-path variants, comma-separated, run in this order each cycle (default {','.join(VARIANTS)})",
    )
    args = ap.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        expected = ", ".join(VARIANTS)
        print(f"error: --variants: unknown {', '.join(unknown)} (expected some of {expected})", file=sys.stderr)
        return 2
    if args.ticks < 1 or args.fills < 1 or args.hot_ticks < 0 or args.repeat < 1:
        print("error: --ticks, --fills and --repeat must be at least 1, --hot-ticks at least 0", file=sys.stderr)
        return 2
    print(f"python: {interpreter()}")
    with tempfile.TemporaryDirectory(prefix="hft-bench-store-") as tmp, database(args, Path(tmp)) as settings:
        print(f"store: {settings.backend} {settings.where}")
        direct = asyncio.run(copy_direct(settings, args.ticks))
        rate(f"ticks, COPY straight (copy_ticks, {SLICE}-row slices)", direct, "ticks/s")
        for writer in ("thread", "process"):
            tick_rate, fill_rate, m = through_service(settings, args.ticks, args.fills, writer)
            rate(f"ticks, through the writer {writer} (queue, batches, COPY)", tick_rate, "ticks/s")
            rate(f"fills, through the writer {writer} (journal fsync + write)", fill_rate, "fills/s")
            lat = m["hft_db_write_latency_seconds"]
            print(
                f"  batches {lat['count']}, mean {lat['sum'] / max(lat['count'], 1) * 1e3:.1f} ms; "
                f"written {m['hft_db_rows_written_total']}; dropped {m['hft_db_rows_dropped_total'] or 'none'}"
            )
        print("the writer process's cost in the trading interpreter:")
        handoff_costs()
        if args.hot_ticks:
            hot_path_runs(settings, args)
        print(f"peak memory: {peak_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
