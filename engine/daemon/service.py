"""``hft paper|live CONFIG`` as the long-lived service an operator runs: the trading process.

It starts in this order, and each step's failure is one line in the guide's words and a non-zero
exit, never a traceback:

1. the config (``Failed to load configuration from <path>: <field>: ...``);
2. the API's listening socket, bound here first (``Failed to bind to port 8080: Address already
   in use``); ``--port 0`` takes any free port;
3. the pid file (refused while another live process holds it);
4. the component logs in the log directory, then the session (venues, reconciliation in live
   trading, strategies, feeds);
5. the bridge (``engine.daemon.bridge``) on a unix socket, served on the trading loop;
6. the API process (``python -m engine.daemon.api --fd N --bridge SOCK --config PATH ...``), which
   inherits the listening socket; it is restarted when it dies. Then ``API listening on
   http://HOST:PORT`` on stderr and a ``system.log`` line saying what runs.

Signals: SIGTERM/SIGINT stop gracefully (the API process first, then the session: live trading
cancels its open orders), and the pid file goes; SIGHUP reloads the config (``reload``); SIGUSR1
writes a heap summary (``engine.daemon.heap``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from engine.daemon import heap
from engine.daemon.archive import EvictionArchive, mark_store_backed
from engine.daemon.bridge import BridgeServer, OpError
from engine.daemon.config import DaemonSettings
from engine.daemon.memory import MemoryWatch
from engine.daemon.ops import Ops
from engine.daemon.procstats import pid_alive
from engine.daemon.startup_log import enable_crash_log, record_startup_failure
from engine.daemon.telemetry import Telemetry
from engine.errors import ConfigError, HftError
from engine.latency_log import LatencyLog
from engine.logs import flush_logs, get_logger
from engine.oms import RETAIN_CLOSED_NS

_log = get_logger("system")
API_RESTART_MIN_S = 2.0
API_STOP_WAIT_S = 5.0


class StartupError(HftError):
    """A step of the start-up refused: its message is the one line the operator sees."""


def wants_daemon(args: argparse.Namespace, spec: Any) -> bool:
    return bool(getattr(args, "api", False)) or spec.daemon.present


def settings_for(args: argparse.Namespace, spec: Any) -> DaemonSettings:
    """The config's daemon section with the command line's overrides."""
    d = spec.daemon
    api = d.api
    if args.port is not None:
        api = replace(api, port=args.port)
    if args.host is not None:
        api = replace(api, host=args.host)
    out = replace(d, api=api)
    if args.log_dir is not None:
        out = replace(out, log_dir=Path(args.log_dir))
    if args.pid_file is not None:
        out = replace(out, pid_file=Path(args.pid_file))
    return out


# --- start-up steps ------------------------------------------------------------------------------
def bind_api(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound and listening, inheritable by the API process."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        why = "Address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise StartupError(f"Failed to bind to port {port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def write_pid_file(path: Path) -> None:
    """Write our pid; refuse when another live process's pid is there (a stale one is replaced)."""
    try:
        old = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        old = 0
    if old and old != os.getpid() and pid_alive(old):
        raise StartupError(f"Another hft daemon is running (pid {old} in {path}); stop it first or use --pid-file")
    try:
        # written in place: under systemd the file may be pre-created for the service's user in a
        # directory (/var/run) it cannot create files in
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise StartupError(f"Cannot write pid file {path}: {exc.strerror or exc}") from None


def check_log_dir(path: Path) -> None:
    """The component logs' directory exists (created) and takes files."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".hft-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"Cannot write logs to {path}: {exc.strerror or exc} (set daemon.log_dir or --log-dir)"
        ) from None


def remove_pid_file(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            try:
                path.unlink()
            except PermissionError:  # a directory we may not write in: leave it empty
                path.write_text("")


def apply_heartbeat(adapters: dict[str, Any], settings: DaemonSettings) -> None:
    """``daemon.heartbeat`` over each venue's own ping settings, before any connection opens (the
    feeds and order-entry sockets read them when they connect)."""
    interval, timeout = settings.heartbeat_interval_s, settings.heartbeat_timeout_s
    if interval is None and timeout is None:
        return
    for venue, adapter in adapters.items():
        config = getattr(adapter, "config", None)
        if config is None or not hasattr(config, "ping_interval_s"):
            _log.warning("daemon.heartbeat: venue %s has no ping settings to apply it to", venue)
            continue
        changes = {}
        if interval is not None:
            changes["ping_interval_s"] = interval
        if timeout is not None:
            changes["ping_timeout_s"] = timeout
        adapter.config = replace(config, **changes)
        _log.info(
            "heartbeat venue=%s ping_interval_s=%s ping_timeout_s=%s",
            venue, adapter.config.ping_interval_s, adapter.config.ping_timeout_s,
        )  # fmt: skip


# --- the API process -------------------------------------------------------------------------------
class ApiProcess:
    """The Sanic process on the inherited socket; restarted when it dies (not faster than every
    ``API_RESTART_MIN_S``)."""

    def __init__(self, sock: socket.socket, bridge: str, config: str, nice: int = 0) -> None:
        self.sock = sock
        self.nice = nice
        self.argv = [
            sys.executable, "-m", "engine.daemon.api",
            "--fd", str(sock.fileno()), "--bridge", bridge, "--config", config, "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.stopping = False
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0

    def spawn(self) -> None:
        self._started = time.monotonic()
        # no preexec_fn (unsafe with the recorder's thread running): the API process watches its
        # parent itself (--parent-pid) and exits when the trading process is gone, kill -9 included
        self.proc = subprocess.Popen(self.argv, pass_fds=(self.sock.fileno(),), stdin=subprocess.DEVNULL)
        if self.nice:
            with contextlib.suppress(OSError):  # a niceness refused leaves it at ours: still works
                os.setpriority(os.PRIO_PROCESS, self.proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + self.nice)
        _log.info("API process started: pid %d", self.proc.pid)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.spawn()
        self._task = loop.create_task(self._watch())

    def restart(self) -> bool:
        """Stop the API process; the watcher starts a new one."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return False
        proc.terminate()
        return True

    async def _watch(self) -> None:
        while not self.stopping:
            await asyncio.sleep(0.5)
            proc = self.proc
            if proc is None or proc.poll() is None or self.stopping:
                continue
            code = proc.returncode
            _log.error("API process (pid %d) exited with code %s; restarting it", proc.pid, code)
            wait = API_RESTART_MIN_S - (time.monotonic() - self._started)
            if wait > 0:
                await asyncio.sleep(wait)
            if not self.stopping:
                self.restarts += 1
                self.spawn()

    async def stop(self) -> None:
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        deadline = time.monotonic() + API_STOP_WAIT_S
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _log.info("API process stopped")

    def samples(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "hft_api_restarts_total",
                "type": "counter",
                "help": "Times the API process was restarted after it died",
                "labels": {},
                "value": self.restarts,
            }
        ]


# --- the service -----------------------------------------------------------------------------------
class Daemon:
    def __init__(self, args: argparse.Namespace, mode: str, spec: Any, settings: DaemonSettings) -> None:
        self.args = args
        self.mode = mode
        self.spec = spec
        self.settings = settings
        self.config_path = str(Path(args.config).resolve())
        self.sock: socket.socket | None = None
        # a short path of its own: a unix socket's path must fit in 108 bytes
        self.bridge_dir: Path | None = None
        self.bridge_path = ""
        self.url = ""
        self.telemetry = Telemetry()
        self.bridge: BridgeServer | None = None
        self.api: ApiProcess | None = None
        self.memory: MemoryWatch | None = None
        self.ops: Ops | None = None
        self.session: Any = None
        self.stop_event: asyncio.Event | None = None
        self._latency_lines: asyncio.Task[None] | None = None
        self._evict_task: asyncio.Task[None] | None = None
        self.evictions: EvictionArchive | None = None
        self.version = ""

    # --- run ------------------------------------------------------------------------------------
    def run(self, run_loop: Callable[[Coroutine[Any, Any, Any]], Any]) -> int:
        """``run_loop`` runs the main coroutine on the trading loop (the venues' uvloop runner)."""
        from engine.runners.backtest_cli import discard_if_empty, format_summary, positive_seconds, run_dir_for

        s = self.settings
        duration = positive_seconds(self.args.duration)
        self.sock = bind_api(s.api.host, s.api.port)
        host, port = self.sock.getsockname()[:2]
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        try:
            check_log_dir(s.log_dir)
            enable_crash_log(s.log_dir)
            write_pid_file(s.pid_file)
        except BaseException:
            self.sock.close()
            raise
        self.bridge_dir = Path(tempfile.mkdtemp(prefix="hft-"))
        self.bridge_path = str(self.bridge_dir / "bridge.sock")
        run_dir, existed = run_dir_for(self.args.out, self.spec.runs_root, self.spec.name)
        self.run_dir = run_dir
        try:
            if s.memory.tracemalloc:
                heap.start_tracing("since_start")
            result = run_loop(self._main(run_dir, duration))
            for r in result.reconciled:
                print(r.line(), file=sys.stderr)
            title = "Live session summary" if self.mode == "live" else "Paper session summary"
            print(format_summary(result.summary, run_dir, title=title))
            return 0
        except BaseException:
            discard_if_empty(run_dir, existed)
            raise
        finally:
            remove_pid_file(s.pid_file)
            if self.sock is not None:
                self.sock.close()
            shutil.rmtree(self.bridge_dir, ignore_errors=True)

    async def _main(self, run_dir: Path, duration: float | None) -> Any:
        from engine.runners.node import code_version
        from engine.runners.session import open_session

        self.version = code_version()
        loop = asyncio.get_running_loop()
        self.stop_event = stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        loop.add_signal_handler(signal.SIGUSR1, self._on_usr1)
        try:
            s = self.settings
            rotate = (s.log_rotate_mb, s.log_backups)
            session = await open_session(self.spec, self.mode, run_dir, log_dir=s.log_dir, log_rotate=rotate)
        except BaseException:
            flush_logs()
            raise
        self.session = session
        apply_heartbeat(session.node.adapters, self.settings)
        session.md_ring = self.telemetry.market_data
        self.telemetry.attach(session.node.engine)
        return await session.run(stop, duration, after_start=self._after_start, before_stop=self._before_stop)

    async def _after_start(self, session: Any) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        engine = session.node.engine
        if s.archive_dir is None:
            s.archive_dir = Path(session.node.run_dir or ".") / "archive"
        self.memory = MemoryWatch(s.memory, engine, s.archive_dir, log_dir=s.log_dir)
        self.ops = Ops(
            session,
            self.mode,
            self.version,
            self.telemetry,
            s.archive_dir,
            reload=self.reload,
            restart_api=lambda: self.api.restart() if self.api is not None else False,
            extra_status=self._extra_status,
        )
        self.telemetry.extra.append(self.memory.samples)
        store = getattr(session, "store", None)
        if store is not None:  # the database's metrics (hft_db_*) on /metrics beside the rest
            self.telemetry.extra.append(store.samples)
        self.bridge = BridgeServer(self.bridge_path, self.ops.dispatch)
        await self.bridge.start()
        self.telemetry.start(loop)
        self.memory.start(loop)
        self._latency_lines = loop.create_task(LatencyLog(self.telemetry.rings).run(s.latency_log_interval_s))
        # closed orders stay queryable for order_archive_after_hours, then leave memory into a file
        oms = engine.oms
        # with a database every order is in its orders table: no JSONL files then
        self.evictions = EvictionArchive(oms, s.archive_dir, store_backed=store is not None)
        if store is not None:
            mark_store_backed(oms)
        oms.retain_closed_ns = max(RETAIN_CLOSED_NS, int(s.memory.order_archive_after_hours * 3600e9))
        oms.on_evict = self.evictions.add
        self._evict_task = loop.create_task(self.evictions.run())
        assert self.sock is not None
        self.api = ApiProcess(self.sock, self.bridge_path, self.config_path, nice=s.api.nice)
        self.telemetry.extra.append(self.api.samples)
        self.api.start(loop)
        self._write_info(session)
        venues = ", ".join(sorted(session.node.adapters))
        strategies = ", ".join(engine.strategies)
        _log.info(
            "hft daemon started: mode=%s version=%s pid=%d api=%s bridge=%s config=%s venues=%s strategies=%s "
            "log_dir=%s run_dir=%s",
            self.mode, self.version, os.getpid(), self.url, self.bridge_path, self.config_path, venues, strategies,
            s.log_dir, session.node.run_dir,
        )  # fmt: skip
        print(f"{self.mode} trading {strategies} on {venues} -> {session.node.run_dir}", file=sys.stderr)
        print(f"Bridge at {self.bridge_path}", file=sys.stderr)
        print(f"API listening on {self.url}", file=sys.stderr, flush=True)

    async def _before_stop(self, _session: Any) -> None:
        _log.info("hft daemon stopping (pid %d)", os.getpid())
        if self.api is not None:
            await self.api.stop()
        if self.bridge is not None:
            await self.bridge.close()
        if self.memory is not None:
            await self.memory.stop()
        if self._evict_task is not None:
            self._evict_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._evict_task
        if self._latency_lines is not None:
            self._latency_lines.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._latency_lines
        await self.telemetry.stop()

    def _write_info(self, session: Any) -> None:
        """``daemon.json`` in the run directory: where to reach this process (tools, tests)."""
        run_dir = session.node.run_dir
        if run_dir is None:
            return
        info = {
            "pid": os.getpid(),
            "mode": self.mode,
            "url": self.url,
            "bridge": self.bridge_path,
            "config": self.config_path,
            "log_dir": str(self.settings.log_dir),
            "pid_file": str(self.settings.pid_file),
        }
        with contextlib.suppress(OSError):
            (Path(run_dir) / "daemon.json").write_text(json.dumps(info, indent=2) + "\n")

    def _extra_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"api_url": self.url, "log_dir": str(self.settings.log_dir)}
        if self.memory is not None:
            out["memory"] = {
                "usage_ratio": round(self.memory.usage, 4),
                "limit_bytes": self.memory.limit,
                "limit_source": self.memory.limit_source,
                "pressure": self.memory.pressure,
            }
        return out

    # --- signals ----------------------------------------------------------------------------------
    def _on_hup(self) -> None:
        _log.info("SIGHUP: reloading configuration from %s", self.config_path)
        try:
            self.reload()
        except OpError:
            pass  # ``reload`` said why in errors.log
        except Exception as exc:  # a reload must never take the daemon down
            _log.error("configuration not reloaded: %r", exc)

    def _on_usr1(self) -> None:
        first = not heap.tracemalloc.is_tracing()
        try:
            path = heap.write_dump(self.settings.heap_dump_dir)
        except Exception as exc:
            _log.error("heap dump failed: %r", exc)
            return
        note = " (tracemalloc started now: send SIGUSR1 again later to see what grows)" if first else ""
        _log.info("Heap dump written to %s%s", path, note)

    # --- reload -----------------------------------------------------------------------------------
    def reload(self) -> dict[str, Any]:
        """Re-read the config and apply what can change while trading: global risk limits (and
        ``trading_enabled``), each strategy's risk limits, parameters and log level, the memory
        settings. Venues, symbols, strategies added or removed, their classes, exchange files, the
        API's address and the ``database`` section need a restart: they are refused, each with a
        log line saying so."""
        from engine.runners.spec import load_run_spec

        try:
            new = load_run_spec(self.config_path, mode=self.mode)
        except ConfigError as exc:
            _log.error("configuration not reloaded: %s", exc)
            raise OpError(400, str(exc), "config") from None
        old = self.spec
        engine = self.session.node.engine
        changed: list[str] = []
        refused: list[str] = []
        unchanged: list[str] = []

        def refuse(what: str) -> None:
            refused.append(what)
            _log.warning("config reload: %s changed: a restart is needed to apply it", what)

        old_ids = {st.strategy_id: st for st in old.strategies}
        new_ids = {st.strategy_id: st for st in new.strategies}
        for sid in sorted(set(old_ids) ^ set(new_ids)):
            refuse(f"strategies.{sid} (added or removed)")
        if {k: str(v) for k, v in old.exchanges.items()} != {k: str(v) for k, v in new.exchanges.items()}:
            refuse("exchanges")
        elif _exchange_files(old) != _exchange_files(new):
            refuse("exchanges (file contents)")
        if (old.daemon.api.host, old.daemon.api.port) != (new.daemon.api.host, new.daemon.api.port):
            refuse("daemon.api (host/port)")
        if old.store != new.store:  # the store service was opened with the old settings
            refuse("database")
        if asdict(old.risk) != asdict(new.risk):
            diff = {k: v for k, v in asdict(new.risk).items() if asdict(engine.risk.limits).get(k) != v}
            if diff:
                engine.risk.set_limits(diff, where=f"{self.config_path} reload")
                changed += [f"risk.{k}" for k in sorted(diff)]
        else:
            unchanged.append("risk")
        for sid, st in new_ids.items():
            was = old_ids.get(sid)
            if was is None:
                continue
            if (was.venue, was.symbols, was.cls) != (st.venue, st.symbols, st.cls):
                refuse(f"strategies.{sid} (venue, symbols or class)")
                continue
            strategy = engine.strategies.get(sid)
            if strategy is None:
                continue
            if old.strategy_risk.get(sid) != new.strategy_risk.get(sid):
                engine.risk.replace_strategy_limits(sid, new.strategy_risk.get(sid) or {})
                changed.append(f"strategies.{sid}.risk_limits")
            # the file's values, when the file changed them: an operator's change through the API
            # stays until the file says otherwise (risk limits alike)
            if was.params != st.params:
                schema = getattr(st.cls, "params_schema", None)
                strategy.update_params(schema.parse(st.params) if schema is not None else dict(st.params))
                changed.append(f"strategies.{sid}.parameters")
            if st.log_level is not None and st.log_level != was.log_level:
                strategy.set_log_level(st.log_level)
                changed.append(f"strategies.{sid}.log_level")
            if not any(c.startswith(f"strategies.{sid}.") for c in changed):
                unchanged.append(f"strategies.{sid}")
        if old.daemon.memory != new.daemon.memory and self.memory is not None:
            self.memory.update(new.daemon.memory)
            changed.append("daemon.memory_management")
        # what was applied is the config now; what was refused stays as it runs
        self.spec = (
            replace(new, strategies=old.strategies, exchanges=old.exchanges, store=old.store) if refused else new
        )
        _log.info(
            "configuration reloaded from %s: changed %s; refused %s",
            self.config_path,
            ", ".join(changed) or "nothing",
            ", ".join(refused) or "nothing",
        )
        return {"reloaded": True, "changed": changed, "unchanged": unchanged, "refused": refused}


def _exchange_files(spec: Any) -> dict[str, bytes]:
    out = {}
    for venue, path in spec.exchanges.items():
        try:
            out[venue] = Path(path).read_bytes()
        except OSError:
            out[venue] = b""
    return out


def serve(args: argparse.Namespace, mode: str, spec: Any, run_loop: Callable[[Coroutine[Any, Any, Any]], Any]) -> int:
    """Run the daemon; a refused start-up step is one line on stderr and exit code 1."""
    daemon = Daemon(args, mode, spec, settings_for(args, spec))
    try:
        return daemon.run(run_loop)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        record_startup_failure(args, str(exc))
        return 1
