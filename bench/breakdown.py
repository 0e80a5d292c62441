"""Where a tick's time goes: the live hot path replayed in-process, one depth frame per loop turn.

    python -m bench.breakdown [--ticks 6000] [--entry ws|rest] [--mode place|replace]
                               [--back-to-back] [--spans] [--count] [--record]

``bench.hot_path`` measures the path as it runs (the fake in its own process, frames as they come
off the socket). This tool trades that realism for a steadier, finer view: the fake runs on this
process's loop with its replay stopped, and the real capture's depth frames, continuing the
book's update-id chain, are handed one by one to the feed's frame handler (what the WebSocket
frame reader calls), each followed by two loop turns in which the fake answers the order and this
process handles the answer. The same stack and strategy as ``bench.hot_path`` (``build_engine``).

- default: frame -> order bytes written, P50 / P90 / P99 over the ticks;
- ``--back-to-back``: frames without the loop turns between them (49 of every 50), so each tick
  finds the caches as the previous one left them: the same code, warm;
- ``--spans``: timing wrappers on the path's functions and the P50 of each span between them
  (the wrappers add a fraction of a microsecond each);
- ``--record``: with the event log written, as paper and live trading write it;
- ``--gap-us N``: N microseconds of spinning after each tick, before the next frame: what the time
  between ticks does to the path (a live depth stream updates every 100 ms); with ``--warm-us W``
  the path warmer (``engine.warm``) makes a pass every W microseconds of that gap;
- ``--count``: CPython bytecodes and Python/C calls per tick (``sys.settrace``/``sys.setprofile``
  over 50 ticks), by function: a measure of the path's work that no machine noise moves;
- ``--adaptive``: the instructions of the path that CPython 3.11's adaptive interpreter could not
  specialise, after the whole run (``dis`` with ``adaptive=True``, for the instructions the path
  executed in 50 traced ticks): a property read, an Enum member read through its class, a method
  call on a callable held in a slot, mixed int/float arithmetic. Each costs a generic lookup or
  a call from C on every tick; none shows in a bytecode count.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dis
import gzip
import itertools
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from bench import hot_path as hot
from engine.gcpolicy import trading_gc
from engine.logs import setup_logging
from engine.warm import PathWarmer
from venues.binance.adapter import BinanceAdapter
from venues.binance.config import Credentials
from venues.common.loop import run
from venues.common.tap import TransportTap

_DEPTH = b'"stream":"btcusdt@depth'


class _Ids(msgspec.Struct):
    U: int


class _Frame(msgspec.Struct):
    data: _Ids


def _first_id(frame: bytes) -> int:
    return msgspec.json.decode(frame, type=_Frame).data.U


def depth_frames(data: Path) -> list[bytes]:
    """The capture's BTCUSDT depth frames (combined-stream envelopes), in order."""
    files = sorted(data.glob("*.gz")) if data.is_dir() else [data]
    out = []
    for p in files:
        with gzip.open(p, "rb") as f:
            for line in f:
                _, _, frame = line.partition(b" ")
                if _DEPTH in frame[:40]:
                    out.append(frame.strip())
    return out


# --- spans -----------------------------------------------------------------------------------------
def _span_points() -> list[tuple[Any, str, str, bool]]:
    """(class, method, label, also time its return) along a new order's path."""
    import engine.oms as oms
    import engine.risk as risk
    import venues.binance.book_sync as bs
    import venues.binance.execution as ex
    import venues.binance.order_wire as ow
    import venues.binance.ws_api as wa
    import venues.common.ws as ws

    return [
        (bs.BookSync, "on_frame", "book sync", False),
        (bs.BookSync, "_applied", "book applied", False),  # the engine's bound on_book is held by the feed
        (hot.TickQuoter, "on_book", "strategy", False),
        (oms.OrderManager, "submit", "OMS", True),
        (risk.RiskEngine, "check", "risk", True),
        (ex.BinanceExecutionClient, "submit_order", "execution client", True),
        (ex.BinanceExecutionClient, "_write_template", "template written", False),
        (wa.BinanceWsApi, "send_template_now", "WS API send", False),
        (ow.SignedTemplate, "render_ws", "render + sign", True),
        (ws.DirectConnection, "send_now", "frame + write", True),
    ]


@contextlib.contextmanager
def timing_wrappers(marks: list[tuple[str, int]]) -> Iterator[None]:
    """Wrap the span points' methods to append ``(label, perf_counter_ns())`` on entry (and
    ``label + " done"`` on return); the originals are put back afterwards."""
    clock = time.perf_counter_ns
    saved = []

    def wrapper(fn: Callable[..., Any], label: str, done: bool) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            marks.append((label, clock()))
            r = fn(*a, **k)
            if done:
                marks.append((label + " done", clock()))
            return r

        return timed

    for cls, name, label, done in _span_points():
        fn = cls.__dict__[name]
        saved.append((cls, name, fn))
        setattr(cls, name, wrapper(fn, label, done))
    try:
        yield
    finally:
        for cls, name, fn in saved:
            setattr(cls, name, fn)


# --- counting ------------------------------------------------------------------------------------
class OpCounter:
    """Bytecodes per Python function and calls per function (C functions by name)."""

    def __init__(self) -> None:
        self.ops: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()

    def _trace(self, frame: Any, event: str, _arg: Any) -> Any:
        frame.f_trace_opcodes = True
        code = frame.f_code
        key = f"{Path(code.co_filename).name}:{code.co_name}"
        if event == "call":
            self.calls[key] += 1
        elif event == "opcode":
            self.ops[key] += 1
        return self._trace

    def _profile(self, _frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            self.calls["C " + getattr(arg, "__qualname__", str(arg))] += 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        sys.settrace(self._trace)
        sys.setprofile(self._profile)
        try:
            yield
        finally:
            sys.settrace(None)
            sys.setprofile(None)


# --- the replay ----------------------------------------------------------------------------------
async def _replay(args: argparse.Namespace, frames: list[bytes]) -> dict[str, Any]:
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    data = [str(p) for p in (sorted(args.data.glob("*.gz")) if args.data.is_dir() else [args.data])]
    async with hot.fake_binance(data, key, secret, start="manual") as fb:
        loop = asyncio.get_running_loop()
        cfg = hot._config((fb.rest_url, fb.ws_url, fb.ws_api_url), args.entry)
        adapter = BinanceAdapter(cfg, Credentials(key, secret))
        inst = (await adapter.load_instruments())[hot.SYMBOL]
        pool = adapter.rest.open_order_connections()
        assert pool is not None
        pool.max_in_flight = 1_000_000
        log_dir = tempfile.TemporaryDirectory(prefix="hft-bench-") if args.record else None
        run_dir = Path(log_dir.name) if log_dir is not None else None
        engine, book = hot.build_engine(loop, inst, args.mode, log_orders=False, run_dir=run_dir)
        on_book, telemetry = hot.daemon_telemetry(engine, loop) if args.telemetry else (engine.on_book, None)
        written = [0]

        def on_write(_n: int, now: int) -> None:
            written[0] = now

        with trading_gc(50_000):
            await adapter.start(on_book, engine.on_trade, sink=engine, books={hot.SYMBOL: book})
            feed, execution, ws_api = adapter.feed, adapter.execution, adapter.ws_api
            assert feed is not None and execution is not None and ws_api is not None
            engine.add_venue(execution, adapter.profile)
            engine.start()
            try:
                await _until(lambda: feed.connected and len(pool.conns) == pool.size, "connected")
                await fb.advance(400)
                await _until(lambda: book.valid and book.update_id == fb.last_update_id(), "book in sync")
                conns = [ws_api.ws.ws] if args.entry == "ws" else pool.conns
                for c in conns:
                    c.transport = TransportTap(c.transport, on_write)
                first = book.update_id + 1
                start = next(i for i, f in enumerate(frames) if _first_id(f) == first)
                todo = frames[start : start + args.ticks + 300]
                if args.count:
                    return await _count(feed.ws.on_message, todo)
                if args.adaptive:
                    return await _adaptive(feed.ws.on_message, todo)
                warmer = PathWarmer(engine, args.warm_us, feeds=[feed.warm]) if args.warm_us > 0 else None
                return await _time(args, feed.ws.on_message, todo, written, warmer)
            finally:
                if telemetry is not None:
                    await telemetry.stop()
                await hot.stop_measured(engine, adapter, log_dir)


async def _until(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"bench.breakdown: not {what} after {timeout_s:.0f}s")
        await asyncio.sleep(0.01)


def _idle(gap_ns: int, warmer: PathWarmer | None) -> None:
    """``gap_ns`` with nothing to do but spin (the CPU stays busy: what the path loses meanwhile is
    the caches', not an idle CPU's), and a warm pass every ``warmer.interval_ns`` of it."""
    clock = time.perf_counter_ns
    end = clock() + gap_ns
    if warmer is None:
        while clock() < end:
            pass
        return
    next_pass = clock() + warmer.interval_ns
    while (now := clock()) < end:
        if now >= next_pass:
            warmer.warm_once()
            next_pass = clock() + warmer.interval_ns


async def _time(
    args: argparse.Namespace,
    on_frame: Callable[[bytes, int], None],
    todo: list[bytes],
    written: list[int],
    warmer: PathWarmer | None = None,
) -> dict[str, Any]:
    clock = time.perf_counter_ns
    gap_ns = int(args.gap_us * 1000)
    totals: list[int] = []
    marks: list[tuple[str, int]] = []
    spans: collections.defaultdict[tuple[str, str], list[int]] = collections.defaultdict(list)
    wrappers = timing_wrappers(marks) if args.spans else contextlib.nullcontext()
    with wrappers:
        for n, frame in enumerate(todo):
            written[0] = 0
            marks.clear()
            t0 = clock()
            on_frame(frame, time.time_ns())
            if written[0] and n >= 300:  # the first 300 ticks warm up
                totals.append(written[0] - t0)
                points = sorted([("frame", t0), *marks, ("written", written[0])], key=lambda m: m[1])
                for (a, ta), (b, tb) in itertools.pairwise(points):
                    spans[(a, b)].append(tb - ta)
            if not args.back_to_back or n % 50 == 0:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            if gap_ns:
                _idle(gap_ns, warmer)
    return {"totals": totals, "spans": spans if args.spans else {}}


async def _count(on_frame: Callable[[bytes, int], None], todo: list[bytes]) -> dict[str, Any]:
    counter = OpCounter()
    for n, frame in enumerate(todo[:350]):
        if n >= 300:
            with counter.counting():
                on_frame(frame, time.time_ns())
        else:
            on_frame(frame, time.time_ns())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    return {"counter": counter, "ticks": 50}


class ExecutedSites:
    """The code objects a traced stretch of the path ran, and which of their instructions."""

    def __init__(self) -> None:
        self.calls: collections.Counter[Any] = collections.Counter()
        self.offsets: set[tuple[Any, int]] = set()

    def _trace(self, frame: Any, event: str, _arg: Any) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
            self.calls[frame.f_code] += 1
        elif event == "opcode":
            self.offsets.add((frame.f_code, frame.f_lasti))
        return self._trace

    def unspecialised(self) -> list[tuple[Any, int, list[str]]]:
        """(code, calls, ["line:OPNAME(arg)", ...]) for every traced function with executed
        instructions still in their adaptive (unspecialised) form, most called first. A ``CALL``
        after a specialised ``PRECALL`` is skipped: the ``PRECALL`` made the call itself."""
        out = []
        for code, n in self.calls.most_common():
            sites = []
            prev = ""
            for ins in dis.get_instructions(code, adaptive=True):
                name = ins.opname
                executed = (code, ins.offset) in self.offsets
                skip = name == "CALL_ADAPTIVE" and prev.startswith("PRECALL_") and prev != "PRECALL_ADAPTIVE"
                prev = name
                if executed and not skip and name.endswith("_ADAPTIVE"):
                    line = ins.positions.lineno if ins.positions is not None else 0
                    sites.append(f"{line}:{name.removesuffix('_ADAPTIVE')}({ins.argrepr})")
            if sites:
                out.append((code, n, sites))
        return out


async def _adaptive(on_frame: Callable[[bytes, int], None], todo: list[bytes]) -> dict[str, Any]:
    sites = ExecutedSites()
    for n, frame in enumerate(todo):
        if 300 <= n < 350:
            sys.settrace(sites._trace)
            try:
                on_frame(frame, time.time_ns())
            finally:
                sys.settrace(None)
        else:
            on_frame(frame, time.time_ns())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    return {"sites": sites, "ticks": 50}


def _p(values: list[int], q: float) -> float:
    s = sorted(values)
    return s[min(int(len(s) * q), len(s) - 1)] / 1e3 if s else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=6000, help="measured ticks (default 6000; 300 more warm up)")
    ap.add_argument("--entry", choices=("ws", "rest"), default="ws", help="order entry (default ws)")
    ap.add_argument("--mode", choices=("place", "replace"), default="place", help="strategy (default place)")
    ap.add_argument("--back-to-back", action="store_true", help="no loop turns between 49 of 50 ticks (warm)")
    ap.add_argument("--spans", action="store_true", help="time the spans between the path's functions")
    ap.add_argument("--count", action="store_true", help="count bytecodes and calls per tick instead of timing")
    ap.add_argument(
        "--adaptive", action="store_true", help="list the path's instructions the interpreter left unspecialised"
    )
    ap.add_argument("--record", action="store_true", help="write the event log, as paper and live trading do")
    ap.add_argument(
        "--telemetry", action="store_true", help="the daemon's latency histograms on the path (engine.daemon.telemetry)"
    )
    ap.add_argument(
        "--gap-us",
        type=float,
        default=0.0,
        help="after each tick (and its answer), spin this many microseconds before the next frame: how "
        "long the path sits unused between ticks",
    )
    ap.add_argument(
        "--warm-us",
        type=float,
        default=0.0,
        help="with --gap-us: a path warmer pass (engine.warm) every this many microseconds of the gap",
    )
    ap.add_argument("--data", type=Path, default=hot.DEFAULT_DATA, help="capture file or directory")
    args = ap.parse_args(argv)
    if args.gap_us < 0 or args.warm_us < 0:
        print("error: --gap-us and --warm-us must be at least 0", file=sys.stderr)
        return 2
    if not args.data.exists():
        print(f"error: no capture at {args.data}", file=sys.stderr)
        return 2
    setup_logging(None)
    frames = depth_frames(args.data)
    ref = hot.reference_ms()
    res = run(_replay(args, frames))
    log = "on" if args.record else "off"
    ref_after = hot.reference_ms()
    idle = f", {args.gap_us:g} us between ticks" if args.gap_us else ""
    if args.gap_us and args.warm_us:
        idle += f" (a warm pass every {args.warm_us:g} us of it)"
    print(
        f"in-process replay: {args.entry} {args.mode}, event log {log}{idle}, reference {ref:.0f} / {ref_after:.0f} ms"
    )
    if args.count:
        c: OpCounter = res["counter"]
        k = res["ticks"]
        py = sum(v for name, v in c.calls.items() if not name.startswith("C "))
        cc = sum(v for name, v in c.calls.items() if name.startswith("C "))
        print(f"per tick: {sum(c.ops.values()) / k:.0f} bytecodes, {py / k:.0f} Python calls, {cc / k:.0f} C calls")
        for name, v in c.ops.most_common(60):
            print(f"  {v / k:7.1f} bytecodes {c.calls[name] / k:4.1f} calls  {name}")
        return 0
    if args.adaptive:
        found = res["sites"].unspecialised()
        total = sum(len(s) for _, _, s in found)
        print(f"unspecialised instructions executed on the path: {total} (in {len(found)} functions)")
        for code, calls, s in found:
            where = f"{Path(code.co_filename).name}:{code.co_name}"
            print(f"  {where} ({calls / res['ticks']:.0f}/tick): {', '.join(s)}")
        return 0
    totals = res["totals"]
    warm = " (back to back)" if args.back_to_back else ""
    print(
        f"frame -> order bytes written{warm}: n={len(totals)} p50={_p(totals, 0.5):.1f} us "
        f"p90={_p(totals, 0.9):.1f} us p99={_p(totals, 0.99):.1f} us"
    )
    for (a, b), v in res["spans"].items():
        print(f"  {a:>22} -> {b:<22} p50 {_p(v, 0.5):6.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
