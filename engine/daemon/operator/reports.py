"""Reports on a running daemon for the guide's scripts: exchange status (§8.4), WebSocket state
(§3.1), market-data age (§3.2), performance and latency (§5.1, §5.2), memory (§5.3, §6.1),
blocking and contention (§5.1, §5.2). Each prints for an operator and returns an exit code:
0 healthy, 1 unhealthy (so ``doctor`` and shell ``&&`` can chain them), 2 cannot tell."""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from engine.daemon.checks import facts as F
from engine.daemon.checks.model import (
    EVENT_LOOP_LAG_S,
    MARKET_DATA_US,
    ORDER_US,
    P99_CRITICAL_US,
    STALE_DATA_S,
)
from engine.daemon.operator import procfs

#: the pipeline's stages in the order a tick crosses them (docs/daemon-contract.md, hft_latency_seconds)
STAGES = ("market_data", "risk_check", "order_submit", "tick_to_order", "venue_ack")
STAGE_LIMIT_US = {"market_data": MARKET_DATA_US, "order_submit": ORDER_US, "risk_check": ORDER_US,
                  "tick_to_order": P99_CRITICAL_US}  # fmt: skip
CTX_SWITCH_PER_S = 10_000  # §5.2 "Healthy: ≤ 10,000/sec"


class Unavailable(Exception):
    """The daemon (or the figure asked for) cannot be read; the message says why."""


@dataclass
class Daemon:
    """A running daemon as the scripts see it: its API and its pid."""

    url: str = F.DEFAULT_URL
    pid_file: str | None = None
    config: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")

    def status(self) -> dict[str, Any]:
        try:
            return F.get_json(f"{self.url}/api/v1/status")
        except F.HttpError as exc:
            raise Unavailable(f"{exc} (is the daemon running? ./scripts/startup.sh)") from None

    def metrics(self) -> list[dict[str, Any]]:
        try:
            return F.get_metrics_lines(self.url)
        except F.HttpError as exc:
            raise Unavailable(str(exc)) from None

    def pid(self, status: dict[str, Any] | None = None) -> int:
        """The trading process: the status's ``pid``, else the pid file's."""
        if status is None:
            try:
                status = self.status()
            except Unavailable:
                status = {}
        pid = status.get("pid")
        if isinstance(pid, int) and procfs.alive(pid):
            return pid
        path = Path(self.pid_file or self._config_pid_file() or F.DEFAULT_PID_FILE)
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            raise Unavailable(f"daemon pid unknown: no answer from {self.url} and no pid file at {path}") from None
        if not procfs.alive(pid):
            raise Unavailable(f"pid {pid} from {path} is not running")
        return pid

    def _config_pid_file(self) -> str | None:
        cfg = Path(self.config or F.DEFAULT_CONFIG)
        if not cfg.is_file():
            return None
        try:
            from engine.daemon.config import load_daemon_settings

            ds = load_daemon_settings(cfg)
        except Exception:  # a bad config is the doctor's to report; here only the pid file matters
            return None
        return str(ds.pid_file) if ds.present else None

    def exchange_configs(self) -> dict[str, dict[str, Any]]:
        cfg = Path(self.config or F.DEFAULT_CONFIG)
        data: dict[str, Any] = {}
        if cfg.is_file():
            try:
                data = json.loads(cfg.read_text())
            except (OSError, json.JSONDecodeError):
                data = {}
        return F.exchange_configs(cfg, data if isinstance(data, dict) else {})

    def say(self, text: str = "") -> None:
        print(text, file=self.out)


def latency_lines(metrics: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """stage -> its ``*_latency`` line (p50/p99/p999 in µs, count)."""
    out = {}
    for m in metrics:
        name = str(m.get("name", ""))
        if name.endswith("_latency") and "p99" in m:
            out[name.removeprefix("hft_").removesuffix("_latency")] = m
    return out


def value(metrics: list[dict[str, Any]], name: str, **labels: str) -> float | None:
    vals = []
    for m in metrics:
        if str(m.get("name", "")).removeprefix("hft_") != name.removeprefix("hft_"):
            continue
        have = m.get("labels") or {}
        if all(str(have.get(k)) == v for k, v in labels.items()) and isinstance(m.get("value"), int | float):
            vals.append(float(m["value"]))
    return sum(vals) if vals else None


def _fmt_us(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, int | float) else "-"


def _guard(fn: Callable[..., int]) -> Callable[..., int]:
    """``Unavailable`` -> the reason on stderr and exit status 2 (cannot tell)."""

    @functools.wraps(fn)
    def run(d: Daemon, *args: Any) -> int:
        try:
            return fn(d, *args)
        except Unavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


# §8.4 -------------------------------------------------------------------------------------------


@_guard
def exchange_status(d: Daemon) -> int:
    """Every exchange: the daemon's connection and the venue's own status/ping endpoint."""
    bad = False
    try:
        ex = d.status().get("exchanges") or {}
    except Unavailable as exc:
        d.say(f"daemon: {exc}")
        ex, bad = {}, True
    venues = d.exchange_configs()
    for name in sorted(set(ex) | set(venues)):
        e = ex.get(name) or {}
        if e:
            st = e.get("status")
            bad |= st != "connected"
            d.say(
                f"{name}: daemon {st} (reconnects {e.get('reconnects', '?')}, "
                f"sequence gaps {e.get('sequence_gaps', '?')})"
            )
        elif ex:
            d.say(f"{name}: not traded by the running daemon")
        if name in venues:
            probe = F.venue_probe(name, venues[name])
            if probe.get("maintenance"):
                d.say(f"{name}: venue in MAINTENANCE: {probe['detail']} (§8.4: wait; the daemon reconnects by itself)")
                bad = True
            elif probe.get("ok") is False:
                d.say(f"{name}: venue DOWN: {probe['detail']} (§2.2: check the exchange status page)")
                bad = True
            else:
                d.say(f"{name}: venue {'up' if probe.get('ok') else 'unknown'}: {probe['detail']}")
        else:
            d.say(f"{name}: no exchange config found (pass --config) to ask the venue itself")
    if not ex and not venues:
        d.say("no exchange known: the daemon did not answer and no exchange config was found")
    return 1 if bad else 0


# §3.1 -------------------------------------------------------------------------------------------


def websocket(d: Daemon, exchange: str) -> int:
    """Prints ``WebSocket connected`` when the daemon's feed for ``exchange`` is connected."""
    try:
        ex = d.status().get("exchanges") or {}
    except Unavailable as exc:
        print(f"WebSocket not connected: {exc}")
        return 1
    if exchange not in ex:
        known = ", ".join(sorted(ex)) or "none"
        print(f"Exchange not found: {exchange} (the daemon trades: {known})")
        return 2
    e = ex[exchange]
    if e.get("status") == "connected":
        print("WebSocket connected")
        books = e.get("books") or {}
        for sym, b in books.items():
            print(
                f"  {exchange}:{sym}: book {'valid' if b.get('valid') else 'invalid'}, "
                f"data age {b.get('age_ms', '?')} ms"
            )
        return 0
    print(f"WebSocket not connected: {exchange} status {e.get('status')!r} (§3.1: check network and API key, §2.2)")
    return 1


# §3.2 -------------------------------------------------------------------------------------------


@_guard
def market_data_latency(d: Daemon) -> int:
    """Data age of every book (stale above the venue's stale_data_timeout_s, default 5 s) and the
    market-data handling latency."""
    st = d.status()
    venues = d.exchange_configs()
    bad = False
    d.say(f"{'book':<24} {'valid':<6} {'age ms':>9}  verdict")
    for name, e in (st.get("exchanges") or {}).items():
        stale_s = float((venues.get(name) or {}).get("stale_data_timeout_s") or STALE_DATA_S)
        for sym, b in (e.get("books") or {}).items():
            age = b.get("age_ms")
            if not b.get("valid"):
                verdict, bad = f"INVALID: {b.get('reason') or '?'}", True
            elif not isinstance(age, int | float):
                verdict, bad = "no update yet", True
            elif age / 1000 > stale_s:
                verdict, bad = f"STALE (> {stale_s:g} s)", True
            else:
                verdict = "ok"
            d.say(f"{name + ':' + sym:<24} {b.get('valid')!s:<6} {age if age is not None else '-':>9}  {verdict}")
    try:
        ms = d.metrics()
    except Unavailable:
        ms = []
    md = latency_lines(ms).get("market_data")
    if md:
        d.say(f"market data handling: P50={_fmt_us(md.get('p50'))}us P99={_fmt_us(md.get('p99'))}us "
              f"P999={_fmt_us(md.get('p999'))}us ({md.get('count', 0)} samples; "
              f"guide: < {MARKET_DATA_US:g}us)")  # fmt: skip
    for m in ms:
        if str(m.get("name", "")).removeprefix("hft_") == "market_data_queue_depth":
            d.say(f"queue depth {m.get('labels', {}).get('exchange', '')}: {m.get('value')}")
    if bad:
        d.say("stale or invalid data: §3.2 (clock: ntpdate -q time.nist.gov; network: ping; backlog: queue depth)")
    return 1 if bad else 0


# §5.1, §5.2 -------------------------------------------------------------------------------------


def _latency_table(d: Daemon, lat: dict[str, dict[str, Any]]) -> bool:
    bad = False
    d.say(f"{'stage':<16} {'P50 us':>9} {'P99 us':>9} {'P999 us':>9} {'count':>9}  guide")
    for stage in [*STAGES, *sorted(set(lat) - set(STAGES))]:
        m = lat.get(stage)
        if m is None:
            continue
        limit = STAGE_LIMIT_US.get(stage)
        p99 = m.get("p99")
        over = limit is not None and isinstance(p99, int | float) and bool(m.get("count")) and p99 > limit
        bad |= over and stage == "tick_to_order"
        note = "" if limit is None else (f"OVER {limit:g}us" if over else f"< {limit:g}us")
        d.say(f"{stage:<16} {_fmt_us(m.get('p50')):>9} {_fmt_us(p99):>9} {_fmt_us(m.get('p999')):>9} "
              f"{m.get('count', 0):>9}  {note}")  # fmt: skip
    return bad


@_guard
def performance_summary(d: Daemon, interval_s: float = 1.0) -> int:
    """Latency per stage, queues, event-loop lag, the process's CPU (sampled over ``interval_s``),
    memory and file descriptors, orders and fills."""
    st = d.status()
    pid = d.pid(st)
    cpu0, t0 = procfs.cpu_seconds(pid), time.monotonic()
    time.sleep(interval_s)
    cpu_pct = 100.0 * (procfs.cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    ms = d.metrics()
    d.say(f"daemon pid {pid}, {st.get('mode', '?')}, up {float(st.get('uptime_s') or 0):.0f} s, "
          f"trading_enabled {st.get('trading_enabled')}")  # fmt: skip
    bad = _latency_table(d, latency_lines(ms))
    fields = procfs.status_fields(pid)
    rss = procfs.kb(fields, "VmRSS") or 0
    d.say(f"cpu {cpu_pct:.1f}% of one core over {interval_s:g} s (guide §5.2: sustained > 80% is high)")
    d.say(
        f"rss {rss / 2**20:.0f} MiB, threads {fields.get('Threads', '?')}, "
        f"open fds {len(os.listdir(f'/proc/{pid}/fd'))}"
    )
    lag = value(ms, "event_loop_lag_seconds")
    if lag is not None:
        d.say(f"event loop lag {lag * 1e6:.0f} us")
    for name in ("market_data_queue_depth", "orderbook_memory_mb", "order_count"):
        v = value(ms, name)
        if v is not None:
            d.say(f"{name} {v:g}")
    for status in ("submitted", "filled", "cancelled", "rejected"):
        v = value(ms, "orders_total", status=status)
        if v is not None:
            d.say(f"orders {status} {v:g}")
    fills = value(ms, "fills_total")
    if fills is not None:
        d.say(f"fills {fills:g}")
    return 1 if bad else 0


@_guard
def e2e_latency(d: Daemon) -> int:
    """Signal-to-order time: the tick-to-order stage (tick received to order handed to the venue)
    and the venue's acknowledgement, against the guide's P99 < 1 ms."""
    lat = latency_lines(d.metrics())
    t2o = lat.get("tick_to_order")
    if not t2o or not t2o.get("count"):
        d.say("no tick-to-order sample yet: the strategies have sent no order since the daemon started")
        return 2
    d.say(f"tick to order: P50={_fmt_us(t2o.get('p50'))}us P99={_fmt_us(t2o.get('p99'))}us "
          f"P999={_fmt_us(t2o.get('p999'))}us over {t2o.get('count')} orders")  # fmt: skip
    ack = lat.get("venue_ack")
    if ack and ack.get("count"):
        d.say(f"venue ack (network + venue): P50={_fmt_us(ack.get('p50'))}us P99={_fmt_us(ack.get('p99'))}us")
    p99 = t2o.get("p99")
    if isinstance(p99, int | float) and p99 > P99_CRITICAL_US:
        d.say(f"HIGH: P99 {p99:.0f}us > {P99_CRITICAL_US:g}us (§5.1 step 4: ./scripts/profile_critical_path.sh; "
              "./scripts/check_blocking_calls.sh)")  # fmt: skip
        return 1
    d.say(f"ok: P99 within {P99_CRITICAL_US:g}us")
    return 0


@_guard
def critical_path(d: Daemon) -> int:
    """The hot path stage by stage (market data, risk check, order submit; tick to order is
    their sum plus the strategy's time) with each stage's share of the tick-to-order P99."""
    lat = latency_lines(d.metrics())
    bad = _latency_table(d, lat)
    t2o = (lat.get("tick_to_order") or {}).get("p99")
    if isinstance(t2o, int | float) and t2o > 0:
        parts = {s: (lat.get(s) or {}).get("p99") for s in ("market_data", "risk_check", "order_submit")}
        known = {s: v for s, v in parts.items() if isinstance(v, int | float)}
        for s, v in known.items():
            d.say(f"{s:<16} P99 is {100 * v / t2o:.0f}% of tick-to-order P99")
        rest = t2o - sum(known.values())
        if rest > 0:
            d.say(f"{'strategy+other':<16} ~{100 * rest / t2o:.0f}% (tick-to-order P99 minus the stages above; "
                  "P99s do not add exactly)")  # fmt: skip
        worst = max(known, key=lambda s: known[s] / STAGE_LIMIT_US.get(s, P99_CRITICAL_US), default=None)
        if worst:
            d.say(f"slowest against its budget: {worst}")
    return 1 if bad else 0


# §5.3, §6.1 -------------------------------------------------------------------------------------


@_guard
def memory_breakdown(d: Daemon) -> int:
    """Where the daemon's memory is: resident (anonymous, file, shared), peak, swap, the books and
    orders it holds, against its limit and the host's."""
    try:
        st: dict[str, Any] = d.status()
    except Unavailable:
        st = {}
    pid = d.pid(st)
    f = procfs.status_fields(pid)
    mib = lambda k: f"{(procfs.kb(f, k) or 0) / 2**20:.1f} MiB"  # noqa: E731
    d.say(f"daemon pid {pid}")
    for k, label in (("VmRSS", "resident"), ("RssAnon", "  anonymous (heap, Python objects)"),
                     ("RssFile", "  file-backed (code, mapped files)"), ("RssShmem", "  shared"),
                     ("VmHWM", "peak resident"), ("VmSwap", "swapped out"), ("VmSize", "virtual")):  # fmt: skip
        d.say(f"{label:<36} {mib(k)}")
    mi = F.meminfo()
    limit = F.cgroup_memory_max(pid)
    total = mi.get("MemTotal") or 0
    rss = procfs.kb(f, "VmRSS") or 0
    if limit:
        d.say(f"{'cgroup limit (MemoryMax)':<36} {limit / 2**20:.0f} MiB ({100 * rss / limit:.1f}% used)")
    if total:
        d.say(f"{'host memory':<36} {total / 2**20:.0f} MiB, available {mi.get('MemAvailable', 0) / 2**20:.0f} MiB "
              f"(daemon {100 * rss / total:.2f}%)")  # fmt: skip
    if st:
        try:
            ms = d.metrics()
        except Unavailable:
            ms = []
        for name, unit in (("orderbook_memory_mb", "MB in order books"), ("order_count", "orders held")):
            v = value(ms, name)
            if v is not None:
                d.say(f"{name:<36} {v:g} {unit}")
    return 0


@_guard
def memory_leak(d: Daemon, samples: int = 6, interval_s: float = 5.0) -> int:
    """Samples the daemon's resident memory ``samples`` times, ``interval_s`` apart; steady growth
    over the whole window (every sample at or above the last, > 1 MiB in all) is reported as a
    possible leak. A short window cannot tell a leak from a warming cache: confirm with
    ./scripts/find_memory_leaks.sh over heap dumps taken minutes apart."""
    pid = d.pid()
    series = []
    for i in range(samples):
        series.append(procfs.kb(procfs.status_fields(pid), "VmRSS") or 0)
        d.say(f"t+{i * interval_s:>5.0f} s  rss {series[-1] / 2**20:8.1f} MiB")
        if i + 1 < samples:
            time.sleep(interval_s)
    growth = series[-1] - series[0]
    rate = growth / 2**20 / max(interval_s * (samples - 1), 1e-9) * 60
    monotonic = all(b >= a for a, b in itertools.pairwise(series))
    if monotonic and growth > 2**20:
        d.say(f"GROWING: +{growth / 2**20:.1f} MiB ({rate:.1f} MiB/min). §5.3 step 5: kill -USR1 <pid> twice, "
              "minutes apart, then ./scripts/find_memory_leaks.sh /tmp/hft_heap_*.dump")  # fmt: skip
        return 1
    d.say(f"no steady growth: {growth / 2**20:+.1f} MiB over {interval_s * (samples - 1):.0f} s")
    return 0


@dataclass
class MemoryMonitor:
    """``enable_memory_monitoring.sh``: every ``interval_s``, the daemon's resident memory as a %
    of its limit; on crossing ``threshold_pct`` the ``action`` runs once (again only after it has
    gone back under): ``alert`` logs a WARNING line and posts to Alertmanager when
    ``alertmanager_url`` is set; ``heap-dump`` also sends SIGUSR1 (the daemon writes a heap
    summary); ``log`` only logs."""

    daemon: Daemon
    threshold_pct: float
    action: str
    interval_s: float = 10.0
    log_path: Path | None = None
    alertmanager_url: str | None = None
    above: bool = False

    def check(self, act: bool = True) -> tuple[float, bool]:
        """Usage now (% of the limit) and whether the action ran (``act`` False: only measure)."""
        pid = self.daemon.pid()
        rss = procfs.kb(procfs.status_fields(pid), "VmRSS") or 0
        limit = self.limit_bytes(pid)
        pct = 100.0 * rss / limit
        fired = False
        if act and pct > self.threshold_pct and not self.above:
            self.fire(pid, pct, rss, limit)
            fired = True
        self.above = pct > self.threshold_pct
        return pct, fired

    def limit_bytes(self, pid: int) -> int:
        cfg = Path(self.daemon.config or F.DEFAULT_CONFIG)
        if cfg.is_file():
            try:
                from engine.daemon.config import load_daemon_settings

                mb = load_daemon_settings(cfg).memory.memory_limit_mb
                if mb:
                    return int(mb * 2**20)
            except Exception:
                pass
        limits = [x for x in (F.cgroup_memory_max(pid), F.meminfo().get("MemTotal")) if x]
        if not limits:
            raise Unavailable("cannot read the memory limit (/proc/meminfo)")
        return min(limits)

    def fire(self, pid: int, pct: float, rss: int, limit: int) -> None:
        line = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} WARNING [memory_monitor] memory usage {pct:.1f}% of "
                f"{limit >> 20} MiB above threshold {self.threshold_pct:g}% "
                f"(rss {rss >> 20} MiB, pid {pid})")  # fmt: skip
        self.daemon.say(line)
        if self.log_path is not None:
            with self.log_path.open("a") as fh:
                fh.write(line + "\n")
        if self.action == "heap-dump":
            os.kill(pid, signal.SIGUSR1)
            self.daemon.say(f"sent SIGUSR1 to {pid}: the daemon writes a heap summary (./scripts/analyze_heap.sh)")
        if self.action == "alert" and self.alertmanager_url:
            body = json.dumps([{"labels": {"alertname": "hft_memory_high", "job": "hft_system", "severity": "warning"},
                                "annotations": {"summary": line}}]).encode()  # fmt: skip
            req = urllib.request.Request(f"{self.alertmanager_url.rstrip('/')}/api/v2/alerts", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")  # fmt: skip
            try:
                urllib.request.urlopen(req, timeout=5).close()
            except OSError as exc:
                self.daemon.say(f"could not post the alert to {self.alertmanager_url}: {exc}")

    def run(self, once: bool = False) -> int:
        while True:
            try:
                pct, _ = self.check(act=not once)
            except Unavailable as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if once:
                self.daemon.say(f"memory usage {pct:.1f}% (threshold {self.threshold_pct:g}%)")
                return 1 if pct > self.threshold_pct else 0
            time.sleep(self.interval_s)


# §5.1 blocking, §5.2 contention -----------------------------------------------------------------

_SLOW_CALLBACK = re.compile(r"Executing .* took [0-9.]+ seconds|slow callback", re.IGNORECASE)


def _grep(paths: list[Path], pattern: re.Pattern[str], limit: int = 10) -> list[str]:
    hits: list[str] = []
    for p in paths:
        if p.is_file():
            hits += [f"{p.name}: {line}" for line in F.tail(p) if pattern.search(line)]
    return hits[-limit:]


@_guard
def blocking_calls(d: Daemon, seconds: float = 5.0, log_dir: str | None = None) -> int:
    """How late the trading loop runs (``hft_event_loop_lag_seconds``, sampled every 0.5 s for
    ``seconds``) and asyncio's slow-callback warnings in the logs."""
    lags = []
    end = time.monotonic() + seconds
    while True:
        v = value(d.metrics(), "event_loop_lag_seconds")
        if v is not None:
            lags.append(v)
        if time.monotonic() >= end:
            break
        time.sleep(0.5)
    bad = False
    if lags:
        worst = max(lags)
        d.say(f"event loop lag over {seconds:g} s: max {worst * 1e6:.0f} us, mean {sum(lags) / len(lags) * 1e6:.0f} us "
              f"({len(lags)} samples)")  # fmt: skip
        if worst > EVENT_LOOP_LAG_S:
            bad = True
            d.say(f"BLOCKING: the loop ran {worst * 1e3:.1f} ms late: something held it (a sync call, GC, a long "
                  "callback). ./scripts/profile_cpu.sh 30 shows where the time goes")  # fmt: skip
    else:
        d.say("the daemon publishes no hft_event_loop_lag_seconds")
    ld = Path(log_dir or F.DEFAULT_LOG_DIR)
    hits = _grep([ld / "system.log", ld / "errors.log"], _SLOW_CALLBACK)
    if hits:
        bad = True
        d.say("asyncio slow-callback warnings (most recent):")
        for h in hits:
            d.say(f"  {h[:240]}")
    else:
        d.say(f"no asyncio slow-callback warning in {ld} (asyncio logs them only with PYTHONASYNCIODEBUG=1)")
    return 1 if bad else 0


@_guard
def lock_contention(d: Daemon, seconds: float = 5.0, log_dir: str | None = None) -> int:
    """Per thread: CPU and context switches per second over ``seconds`` (§5.2, healthy ≤ 10,000/s);
    the event-loop lag; and the logs' ``lock contention``/``mutex``/``Lock acquisition timeout``
    lines."""
    pid = d.pid()
    before = {t.tid: t for t in procfs.threads(pid)}
    t0 = time.monotonic()
    time.sleep(seconds)
    after = procfs.threads(pid)
    dt = time.monotonic() - t0
    bad = False
    total_cs = 0.0
    d.say(f"{'tid':>8} {'thread':<16} {'cpu %':>6} {'vol cs/s':>9} {'invol cs/s':>10}")
    for t in after:
        b = before.get(t.tid)
        if b is None:
            continue
        vol, inv = (t.voluntary - b.voluntary) / dt, (t.nonvoluntary - b.nonvoluntary) / dt
        total_cs += vol + inv
        d.say(f"{t.tid:>8} {t.name:<16} {100 * (t.cpu_s - b.cpu_s) / dt:>6.0f} {vol:>9.0f} {inv:>10.0f}")
    d.say(f"context switches: {total_cs:.0f}/s in all (guide: ≤ {CTX_SWITCH_PER_S:,}/s)")
    if total_cs > CTX_SWITCH_PER_S:
        bad = True
        d.say("HIGH: §5.2 step 5: fewer threads, pin the process (taskset), check what wakes it")
    try:
        lag = value(d.metrics(), "event_loop_lag_seconds")
    except Unavailable:
        lag = None
    if lag is not None:
        d.say(f"event loop lag now {lag * 1e6:.0f} us")
    ld = Path(log_dir or F.DEFAULT_LOG_DIR)
    hits = _grep([ld / "system.log", ld / "errors.log"], re.compile(r"lock contention|mutex|Lock acquisition timeout"))
    for h in hits:
        d.say(f"  {h[:240]}")
    if hits:
        bad = True
    else:
        d.say(f"no lock contention line in {ld}")
    return 1 if bad else 0
