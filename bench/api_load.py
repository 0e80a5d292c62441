"""Tick-to-order latency of the daemon with its API hammered from another process, against none.

    python -m bench.api_load [--pairs 3] [--seconds 40] [--speed 10] [--clients 8]
        [--mode paper|live] [--every 1] [--paths /api/v1/status,/api/v1/orders,/api/v1/metrics]

Each run starts the fake Binance (``hft sim binance``, replaying the real BTCUSDT capture at
``--speed``) and the daemon as an operator runs it (``hft paper|live CONFIG --api --port 0
--log-dir ... --pid-file ...``: the trading process, its API process, component logs, the event
log and the metrics). The strategy is the hot-path benchmark's ``TickQuoter``: a new LIMIT IOC
bid on every ``--every``-th depth update, far below the market. In a *load* run a second process
(``aiohttp``, ``--clients`` keep-alive connections) requests ``--paths`` round-robin as fast as
the API answers for the measured window; in a *quiet* run nothing calls the API. Runs alternate
(quiet/load, then load/quiet, ...) so drift on this shared machine falls on both sides.

What is timed: the event log's ``submit`` rows, ``ts_sent - ts_tick``: from the moment the
feed read the depth frame the order was decided on to the order handed to the venue's client
(paper: the simulated venue; live: the order socket's write), the daemon's ``tick_to_order``
stage. Orders in the first ``--warmup`` seconds of the window are left out. The daemon's own
``hft_latency_seconds{stage="tick_to_order"}`` quantiles (from ``/api/v1/metrics``, read once
after the window) are printed beside them as a cross-check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import REPO, interpreter
from sim.fake_binance.process import FakeStartError, spawn_fake_binance

DEFAULT_DATA = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest"
HFT = [sys.executable, "-m", "engine.cli"]
LISTENING = re.compile(r"API listening on (http://\S+)")
DEFAULT_PATHS = "/api/v1/status,/api/v1/orders,/api/v1/metrics"


@dataclass
class Run:
    index: int
    load: bool
    latencies_us: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    window_s: float = 0.0
    daemon_quantiles: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.window_s if self.window_s else 0.0


# --- the load, in its own process ----------------------------------------------------------------
def _load_process(base: str, paths: list[str], clients: int, seconds: float, out: Any) -> None:
    if not paths:
        out.put(_burn(seconds))
        return
    out.put(asyncio.run(_load(base, paths, clients, seconds)))


def _burn(seconds: float) -> dict[str, Any]:
    """The control: a process as busy as the load client, but calling nothing (``--paths ''``)."""
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        n += sum(range(1000)) & 1
    return {"statuses": {}, "errors": 0, "elapsed": time.monotonic() - t0}


async def _load(base: str, paths: list[str], clients: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    statuses: dict[str, int] = {}
    errors = 0
    end = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession, k: int) -> None:
        nonlocal errors
        i = k
        while time.monotonic() < end:
            path = paths[i % len(paths)]
            i += 1
            try:
                async with session.get(base + path) as resp:
                    await resp.read()
                    statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
            except (TimeoutError, aiohttp.ClientError):
                errors += 1

    t0 = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(worker(session, k) for k in range(clients)))
    return {"statuses": statuses, "errors": errors, "elapsed": time.monotonic() - t0}


# --- one run -------------------------------------------------------------------------------------
def _config(tmp: Path, mode: str, every: int) -> Path:
    strategy = {
        "strategy_id": "tick_quoter",
        "class": "bench.hot_path:TickQuoter",
        "venue": "binance",
        "symbols": ["BTC-USDT"],
        "params": {"mode": "place", "offset_bps": 100, "qty": 0.001, "every": every},
    }
    risk = {
        "trading_enabled": True, "max_order_size_usd": 5000, "max_position_usd": 20000,
        "max_global_position_usd": 50000, "daily_loss_limit_usd": 2000, "max_orders_per_second": 1000,
        "price_band_pct": 5.0,
    }  # fmt: skip
    cfg: dict[str, Any] = {"name": f"api_load_{mode}", "risk": risk, "strategies": [strategy],
                           "output": {"runs_root": str(tmp / "runs"), "mark_interval_ms": 1000}}  # fmt: skip
    if mode == "paper":
        cfg.update(seed=11, exchange=str(REPO / "config" / "exchanges" / "binance.json"),
                   balances={"binance": {"USDT": 1000000.0, "BTC": 10.0}})  # fmt: skip
    else:
        cfg.update(exchanges={"binance": str(REPO / "config" / "exchanges" / "binance.json")},
                   live={"unknown_orders": "cancel", "cancel_on_stop": True, "reconcile_timeout_s": 30})  # fmt: skip
    path = tmp / f"{mode}.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def _spawn_fake(data: Path, speed: str, key: str, secret: str) -> tuple[subprocess.Popen, dict[str, str]]:
    try:
        return spawn_fake_binance(
            data, "--speed", speed, "--start", "now", "--api-key", key, "--api-secret", secret,
            "--weight-limit", str(10**9), "--balance", "USDT=1000000000", "--balance", "BTC=1000", quiet=True,
        )  # fmt: skip
    except FakeStartError as exc:
        raise SystemExit(str(exc)) from None


def _wait_listening(proc: subprocess.Popen, err: Path, timeout: float = 180) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = LISTENING.search(err.read_text(errors="replace"))
        if m:
            return m.group(1).rstrip("/")
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited {proc.returncode}:\n{err.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    raise SystemExit(f"the daemon did not listen within {timeout:.0f}s:\n{err.read_text(errors='replace')[-3000:]}")


def _api_pids(daemon_pid: int) -> list[int]:
    """The API process(es) the trading process spawned (``python -m engine.daemon.api``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == daemon_pid and b"engine.daemon.api" in cmdline:
            pids.append(int(entry.name))
    return pids


def _get_json_lines(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]


def _submits(run_dir: Path) -> list[tuple[int, int]]:
    """``(ts_sent, ts_sent - ts_tick)`` of every ``submit`` row of the run's event log."""
    import duckdb

    files = sorted(run_dir.rglob("orders*.parquet"))
    if not files:
        from engine.recorder import recover_run

        recover_run(run_dir)
        files = sorted(run_dir.rglob("orders*.parquet"))
    if not files:
        raise SystemExit(f"no orders table in {run_dir}")
    sql = (
        "SELECT ts_sent, ts_sent - ts_tick FROM read_parquet($files, union_by_name = true) "
        "WHERE event = 'submit' AND ts_tick > 0 AND ts_sent > 0 ORDER BY ts_sent"
    )
    return [(int(a), int(b)) for a, b in duckdb.connect().execute(sql, {"files": [str(f) for f in files]}).fetchall()]


def one_run(index: int, load: bool, args: argparse.Namespace, tmp: Path) -> Run:
    run = Run(index, load)
    work = tmp / f"run{index}"
    work.mkdir()
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    fake, urls = _spawn_fake(args.data, args.speed, key, secret)
    env = {**os.environ, **urls, "BINANCE_API_KEY": key, "BINANCE_API_SECRET": secret}
    err = work / "daemon.stderr"
    out = work / "run"
    cmd = [*HFT, args.mode, str(_config(work, args.mode, args.every)), "--out", str(out), "--api", "--port", "0",
           "--log-dir", str(work / "logs"), "--pid-file", str(work / "hft.pid")]  # fmt: skip
    with err.open("wb") as f:
        daemon = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=f)
    try:
        base = _wait_listening(daemon, err)
        if args.nice_api:
            for pid in _api_pids(daemon.pid):
                os.setpriority(os.PRIO_PROCESS, pid, args.nice_api)
        time.sleep(args.settle)  # connected, book synced, first orders out
        t0 = time.time_ns()
        if load:
            queue: Any = mp.get_context("spawn").Queue()
            paths = [p.strip() for p in args.paths.split(",") if p.strip()]
            client = mp.get_context("spawn").Process(
                target=_load_process, args=(base, paths, args.clients, args.seconds, queue)
            )
            client.start()
            result = queue.get(timeout=args.seconds + 120)
            client.join(30)
            run.statuses = result["statuses"]
            run.requests = sum(result["statuses"].values())
            run.errors = result["errors"]
            run.window_s = result["elapsed"]
        else:
            time.sleep(args.seconds)
            run.window_s = args.seconds
        t1 = time.time_ns()
        for line in _get_json_lines(base + "/api/v1/metrics"):
            if line.get("name") == "tick_to_order_latency":
                run.daemon_quantiles = line
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
        fake.terminate()
        fake.wait(30)
    start = t0 + int(args.warmup * 1e9)
    run.latencies_us = [d / 1e3 for ts, d in _submits(out) if start <= ts <= t1]
    return run


# --- summary -------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def row(run: Run) -> str:
    v = run.latencies_us
    dq = run.daemon_quantiles
    daemon = f"{dq.get('p50')} / {dq.get('p99')} / {dq.get('p999')}" if dq else "-"
    served = f"{run.rate:8.0f}/s ({run.errors} errors, {run.statuses})" if run.load else "-"
    return (
        f"run {run.index:2d} {'load ' if run.load else 'quiet'}  orders {len(v):6d}  "
        f"P50 {pct(v, 0.5):7.1f}  P99 {pct(v, 0.99):8.1f}  P99.9 {pct(v, 0.999):8.1f} us  "
        f"daemon's own P50/P99/P99.9 {daemon}  API {served}"
    )


def summary(runs: list[Run], control: bool = False) -> str:
    lines = []
    for load in (False, True):
        rs = [r for r in runs if r.load is load]
        pooled = [x for r in rs for x in r.latencies_us]
        med = {q: statistics.median(pct(r.latencies_us, q) for r in rs) for q in (0.5, 0.99, 0.999)}
        label = ("busy process" if control else "API under load") if load else "API quiet"
        line = (
            f"{label:15s} runs {len(rs)}  orders {len(pooled):7d}  "
            f"pooled P50 {pct(pooled, 0.5):7.1f}  P99 {pct(pooled, 0.99):8.1f}  P99.9 {pct(pooled, 0.999):8.1f} us  "
            f"median of runs {med[0.5]:.1f} / {med[0.99]:.1f} / {med[0.999]:.1f} us"
        )
        if load and not control:
            line += f"  requests served {statistics.median(r.rate for r in rs):.0f}/s (median)"
        lines.append(line)
    diffs = []
    for i in range(0, len(runs) - 1, 2):
        quiet, loaded = sorted(runs[i : i + 2], key=lambda r: r.load)
        diffs.append(pct(loaded.latencies_us, 0.5) - pct(quiet.latencies_us, 0.5))
    if diffs:
        lines.append(
            f"paired P50 difference (load - quiet): median {statistics.median(diffs):+.1f} us "
            f"(range {min(diffs):+.1f} to {max(diffs):+.1f})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.api_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=3, help="quiet/load pairs, alternating which goes first")
    p.add_argument("--seconds", type=float, default=40.0, help="measured window of a run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds at the start of the window not counted")
    p.add_argument("--settle", type=float, default=8.0, help="seconds between the API answering and the window")
    p.add_argument("--speed", default="10", help="replay speed of the fake (1 = real time)")
    p.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections of the load")
    p.add_argument(
        "--paths",
        default=DEFAULT_PATHS,
        help="comma-separated GET paths the load cycles through; '' for a control that only burns a CPU",
    )
    p.add_argument("--mode", choices=("paper", "live"), default="paper")
    p.add_argument("--nice-api", type=int, default=0, help="renice the API process by N (an experiment)")
    p.add_argument("--every", type=int, default=1, help="an order on every N-th depth update")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="capture file or directory")
    args = p.parse_args(argv)
    if not args.data.exists():
        p.error(f"--data: not found: {args.data}")
    if args.pairs < 1 or args.seconds <= args.warmup:
        p.error("--pairs must be >= 1 and --seconds > --warmup")
    print(interpreter(), flush=True)
    print(f"mode {args.mode}, fake speed {args.speed}, window {args.seconds:.0f}s (warmup {args.warmup:.0f}s), "
          f"load: {args.clients} connections over {args.paths}", flush=True)  # fmt: skip
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="api_load_") as tmp:
        for pair in range(args.pairs):
            order = (False, True) if pair % 2 == 0 else (True, False)
            for load in order:
                run = one_run(len(runs) + 1, load, args, Path(tmp))
                runs.append(run)
                print(row(run), flush=True)
    print(summary(runs, control=not args.paths.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
