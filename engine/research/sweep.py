"""Running a sweep: each point a Ray task writing its own run directory, finished points skipped,
one results table.

Layout of ``OUT``::

    configs/<point-id>.json   the point's complete backtest config (``hft backtest`` runs it as is)
    points/<point-id>/        its run directory: the event log of ``hft backtest`` of that config
    results.parquet           one row per point, in plan order (``results_table``)
    summary.html              the table and a heatmap (``summary_html``)
    sweep.lock                held while a sweep writes here

A point is finished when its manifest holds the summary and ``run_info.json`` exists (the last
file a backtest writes). A rerun skips finished points, clears the others' directories (what a
killed run left) and runs them again; a point's bytes depend only on its config, so the results
table of a resumed sweep equals that of an uninterrupted one (but for the wall-time columns).

Ray: a local cluster of ``workers`` CPUs by default (no dashboard, its log lines kept out of the
terminal, its session files in ``/tmp/hft-ray-*``, removed afterwards or, after a kill, by the
next local sweep), or the cluster at ``address``, whose nodes must import this package and see
``OUT`` (a shared filesystem). A Ray
already initialised in the process is used as it is. ``workers=0`` runs the points one after
another in this process, without Ray (the baseline of docs/research.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import HftError
from engine.research.grid import SweepError
from engine.research.plan import Plan, Point

CONFIGS = "configs"
POINTS = "points"
RESULTS = "results.parquet"
SUMMARY = "summary.html"
LOCK = "sweep.lock"
RAY_DIR_PREFIX = "hft-ray-"
#: summary fields copied into the results table (the manifest's summary holds them)
METRICS = (
    "net_pnl",
    "realized_pnl",
    "unrealized_pnl",
    "fees",
    "fills",
    "orders_submitted",
    "orders_filled",
    "orders_rejected",
    "fill_ratio",
    "max_drawdown",
    "rows",
)
#: columns that change from run to run of the same point (from ``run_info.json``)
WALL_COLUMNS = ("rows_per_s", "wall_s")
_INT_METRICS = {"fills", "orders_submitted", "orders_filled", "orders_rejected", "rows"}


@dataclass
class SweepOutcome:
    results: pa.Table
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: point id -> the error that stopped it
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    #: of ``wall_s``, the time Ray took to start (0 when it was running or not used)
    ray_start_s: float = 0.0


def is_finished(run_dir: Path) -> bool:
    """The backtest in ``run_dir`` ran to its end (see the module docstring)."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "summary" in manifest and (run_dir / "run_info.json").is_file()


def run_point(config_file: str, run_dir: str, data_uri: str | None = None, engine: str = "python") -> None:
    """One point, as ``hft backtest CONFIG --out RUN_DIR [--engine compiled]`` runs it (a Ray
    task, or in process)."""
    from engine.runners.backtest import run_backtest
    from engine.runners.spec import load_run_spec

    overrides: dict[str, Any] = {}
    if data_uri is not None:
        from engine.research.datasource import stage

        cfg = json.loads(Path(config_file).read_text())["data"]
        overrides["data"] = str(stage(data_uri, cfg.get("venue"), cfg.get("symbols"), cfg.get("to")))
    try:
        spec = load_run_spec(config_file, overrides)
        target = Path(run_dir)
        if target.exists():  # what a killed run left: a point starts from nothing
            shutil.rmtree(target)
        if engine == "compiled":
            from engine.logs import setup_logging
            from engine.runners.compiled import run_compiled

            target.mkdir(parents=True)
            setup_logging(target / "logs", buffered=True)
            run_compiled(spec, target)
        else:
            run_backtest(spec, target)
    except HftError as exc:
        # its message alone: an error with fields of its own may not survive Ray's pickling
        raise SweepError(str(exc)) from None


def run_sweep(
    plan: Plan,
    out: Path,
    workers: int = 2,
    address: str | None = None,
    progress: bool = True,
    engine: str = "python",
) -> SweepOutcome:
    """Run the plan's unfinished points into ``out`` and write ``results.parquet``. ``engine``
    ``compiled`` runs each point on the compiled path (``engine.runners.compiled``): the same
    event log, a fraction of the time, for the strategies that have a compiled twin."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"--out {out}: cannot create it: {exc.strerror or exc}") from None
    if not out.is_dir():
        raise SweepError(f"--out {out}: not a directory")
    t0 = time.perf_counter()
    with _locked(out):
        outcome = SweepOutcome(pa.table({}))
        todo: list[Point] = []
        for p in plan.points:
            _write_config(out / CONFIGS / f"{p.point_id}.json", p.config)
            if is_finished(out / POINTS / p.point_id):
                outcome.skipped.append(p.point_id)
            else:
                todo.append(p)
        bar = _bar(len(plan.points), len(outcome.skipped), progress)
        try:
            if workers == 0:
                _run_in_process(plan, out, todo, outcome, bar, engine)
            else:
                _run_on_ray(plan, out, todo, outcome, bar, workers, address, engine)
        finally:
            if bar is not None:
                bar.close()
        outcome.results = results_table(plan, out, outcome.failed)
        _write_atomic(out / RESULTS, lambda path: pq.write_table(outcome.results, path))
    outcome.wall_s = time.perf_counter() - t0
    return outcome


def _bar(total: int, done: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit=" points", desc="sweep", file=sys.stderr, dynamic_ncols=True)


def _run_in_process(
    plan: Plan, out: Path, todo: list[Point], outcome: SweepOutcome, bar: Any, engine: str = "python"
) -> None:
    from engine.logs import setup_logging

    try:
        for p in todo:
            try:
                run_point(*_task_args(plan, out, p, engine))
                outcome.ran.append(p.point_id)
            except HftError as exc:
                outcome.failed[p.point_id] = str(exc)
            if bar is not None:
                bar.update(1)
    finally:
        setup_logging(None)  # close the last point's log files


def _task_args(plan: Plan, out: Path, p: Point, engine: str) -> tuple[str, str, str | None, str]:
    return str(out / CONFIGS / f"{p.point_id}.json"), str(out / POINTS / p.point_id), plan.data.uri, engine


def _run_on_ray(
    plan: Plan,
    out: Path,
    todo: list[Point],
    outcome: SweepOutcome,
    bar: Any,
    workers: int,
    address: str | None,
    engine: str = "python",
) -> None:
    import ray

    if not todo:
        return
    t0 = time.perf_counter()
    with _ray_session(workers, address):
        outcome.ray_start_s = time.perf_counter() - t0
        task = ray.remote(num_cpus=1, max_retries=0)(run_point)
        pending = {task.remote(*_task_args(plan, out, p, engine)): p.point_id for p in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                pid = pending.pop(ref)
                try:
                    ray.get(ref)
                    outcome.ran.append(pid)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                    why = str(cause) if isinstance(cause, HftError) else f"{type(cause).__name__}: {cause}"
                    outcome.failed[pid] = why
                except ray.exceptions.RayError as exc:  # a worker died, a node went away
                    outcome.failed[pid] = f"{type(exc).__name__}: {exc}"
                if bar is not None:
                    bar.update(1)


@contextlib.contextmanager
def _ray_session(workers: int, address: str | None) -> Iterator[None]:
    """Ray for the sweep: the one already running in this process, the cluster at ``address``,
    or a local one of ``workers`` CPUs that is shut down (and its files removed) afterwards."""
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no prompt, no report sent anywhere
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    tmp = None
    try:
        if address:
            _reachable(address)
            try:
                ray.init(address=address, **quiet)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise SweepError(f"--address {address}: cannot connect to a Ray cluster: {exc}") from None
        else:
            remove_stale_ray_dirs()
            # short, under /tmp: Ray puts unix sockets in it and their paths are limited to ~107 bytes
            tmp = tempfile.mkdtemp(prefix=RAY_DIR_PREFIX, dir="/tmp")
            (Path(tmp) / "owner.pid").write_text(f"{os.getpid()}\n")
            # Ray runs its workers at nice 15: on a shared machine the points would get the CPU
            # last; they are the sweep's work, as a plain backtest's replay is (nice 0)
            ray.init(
                num_cpus=workers,
                include_dashboard=False,
                _temp_dir=tmp,
                _system_config={"worker_niceness": 0},
                **quiet,
            )
        yield
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _reachable(address: str) -> None:
    """A ``host:port`` that nothing answers on is an error now: Ray would retry for minutes."""
    import socket

    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # ``auto``, ``ray://…``: Ray finds or reaches it itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise SweepError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def remove_stale_ray_dirs() -> None:
    """Ray session directories of sweeps that were killed (their owner process is gone)."""
    for d in Path("/tmp").glob(f"{RAY_DIR_PREFIX}*"):
        try:
            pid = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def results_table(plan: Plan, out: Path, failed: dict[str, str] | None = None) -> pa.Table:
    """One row per point in plan order: its settings, status, summary metrics, wall time and run
    directory (relative to ``out``, so that the table does not depend on where the sweep ran)."""
    failed = failed or {}
    rows: list[dict[str, Any]] = []
    for p in plan.points:
        run_dir = out / POINTS / p.point_id
        row: dict[str, Any] = {"point_id": p.point_id, **p.settings}
        summary, info = _read_run(run_dir)
        if summary is not None:
            row["status"] = "finished"
        else:
            row["status"] = "failed" if p.point_id in failed else "not run"
        for key in METRICS:
            row[key] = None if summary is None else summary.get(key)
        for key in WALL_COLUMNS:
            row[key] = None if info is None else info.get(key)
        row["run_dir"] = f"{POINTS}/{p.point_id}"
        row["error"] = failed.get(p.point_id)
        rows.append(row)
    names = list(rows[0]) if rows else ["point_id"]
    columns = {}
    for name in names:
        values = [r[name] for r in rows]
        columns[name] = _column(name, values)
    return pa.table(columns)


def _column(name: str, values: list[Any]) -> pa.Array:
    if name in _INT_METRICS:
        return pa.array(values, pa.int64())
    if name in METRICS or name in WALL_COLUMNS:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if name in ("point_id", "status", "run_dir", "error"):
        return pa.array(values, pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a grid mixing text and numbers: its JSON text
        return pa.array([v if isinstance(v, str) else json.dumps(v) for v in values], pa.string())


def _read_run(run_dir: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if not is_finished(run_dir):
        return None, None
    summary = json.loads((run_dir / "manifest.json").read_text())["summary"]
    try:
        info = json.loads((run_dir / "run_info.json").read_text())
    except (OSError, ValueError):
        info = None
    return summary, info


def _write_config(path: Path, cfg: dict[str, Any]) -> None:
    text = json.dumps(cfg, indent=2, sort_keys=True) + "\n"
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, lambda tmp: tmp.write_text(text))


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One sweep at a time in ``out``; the kernel lets go of the lock when its holder dies."""
    import fcntl

    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"--out {out}: another sweep is writing there (it holds {LOCK})") from None
        yield
    finally:
        os.close(fd)
