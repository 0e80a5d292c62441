"""The replay of a recorded session: its backtest config, built from what the run directory holds.

A paper or live run directory has ``manifest.json`` (the config as run, the instruments the venue
gave, the strategies' parameters under ``replay``) and, when its market data was captured
(``output.capture_market_data``), the Parquet data root ``market_data/``. The replay is a backtest
of that data with the same models (latency, queue, fees, risk, strategy parameters, seed): the
config's live-only sections are dropped, ``data`` points at the capture, and the window starts at
the first book the session's strategies were shown (its books are rebuilt from the snapshot
before it, as a backtest ``--from`` does), so the replay is not shown the snapshot the live feed
applies silently.

``--set PATH=VALUE`` changes one config field for the replay (a dotted path into the config;
VALUE is JSON, else text): ``--set sim.latency.order.us=5000``. What differs from the session's
models is listed (``model_changes``) and named as the cause of what diverges.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import HftError
from engine.model import Instrument
from engine.runners.record import MARKET_DATA_DIR

#: config sections a backtest does not take (venues' connections, the service, the database)
LIVE_ONLY = ("exchange", "exchanges", "live", "daemon", "database", "warm")
REPLAYABLE_MODES = ("paper", "live")


class ParityError(HftError):
    """A run directory that cannot be replayed (not a run, not a session, nothing captured)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot replay {path}: {reason}")


@dataclass
class Session:
    """What a recorded session's run directory says about itself."""

    run_dir: Path
    manifest: dict[str, Any]
    data_root: Path
    streams: list[tuple[str, str]]
    first_book_ns: int | None
    instruments: dict[tuple[str, str], Instrument] = field(default_factory=dict)


def read_session(run_dir: Path) -> Session:
    """The session at ``run_dir``; a ``ParityError`` naming what is missing otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ParityError(run_dir, "not a directory")
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise ParityError(run_dir, "no manifest.json: not a run directory")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ParityError(path, f"unreadable manifest: {exc}") from None
    mode = manifest.get("mode")
    if mode not in REPLAYABLE_MODES:
        raise ParityError(run_dir, f"a {mode or 'unknown'} run: only paper and live sessions are replayed")
    if not isinstance(manifest.get("config"), dict):
        raise ParityError(path, "config: missing (the manifest holds the config the session ran)")
    if not (run_dir / "orders.parquet").is_file():
        raise ParityError(
            run_dir,
            f"no orders.parquet: the session did not close (recover it first: python -m engine.recorder {run_dir})",
        )
    data_root = run_dir / MARKET_DATA_DIR
    parts = sorted(data_root.glob("venue=*/symbol=*/date=*/*.parquet"))
    if not parts:
        raw = sorted(data_root.glob("capture/*/raw/*.gz"))
        hint = (
            f"its raw capture is there (a session that did not close): `hft data import {raw[0].parent}/<symbol>_*.gz "
            f"--out {data_root}` builds it"
            if raw
            else "run paper or live with output.capture_market_data (paper's default) to record it"
        )
        raise ParityError(run_dir, f"no captured market data under {data_root}: {hint}")
    streams = sorted({(p.parents[2].name.partition("=")[2], p.parents[1].name.partition("=")[2]) for p in parts})
    replay = manifest.get("replay") or {}
    instruments: dict[tuple[str, str], Instrument] = {}
    for entry in replay.get("instruments", []):
        try:
            inst = Instrument(**entry)
        except TypeError as exc:
            raise ParityError(path, f"replay.instruments: {exc}") from None
        instruments[inst.key] = inst
    return Session(run_dir, manifest, data_root, streams, _first_book(run_dir), instruments)


def _first_book(run_dir: Path) -> int | None:
    import duckdb

    files = sorted(run_dir.glob("market*.parquet"))
    if not files:
        return None
    row = duckdb.connect().execute("select min(ts) from read_parquet(?)", [[str(f) for f in files]]).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def apply_set(config: dict[str, Any], assignment: str) -> tuple[str, Any, Any]:
    """``PATH=VALUE`` into ``config`` (in place); returns (path, old value, new value)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise HftError(f"--set {assignment!r}: expected PATH=VALUE (e.g. sim.latency.order.us=5000)")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    parts = key.split(".")
    node: Any = config
    for i, part in enumerate(parts[:-1]):
        child = _child(node, part, key, ".".join(parts[: i + 1]))
        if child is None:
            child = node[part] = {}
        node = child
    _child(node, parts[-1], key, key)  # a list position must exist; a new object key may not
    slot: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
    old = node[slot] if isinstance(node, list) else node.get(slot)
    node[slot] = value
    return key, old, value


def _child(node: Any, part: str, key: str, where: str) -> Any:
    """``node[part]`` of a config walk: a list is indexed by position (``strategies.0.params``)."""
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise HftError(f"--set {key}: {where}: no such position (the list has {len(node)} entries)")
        return node[int(part)]
    if isinstance(node, dict):
        return node.get(part)
    raise HftError(f"--set {key}: {where.rpartition('.')[0]} is not an object")


def replay_config(session: Session, sets: list[str], runs_root: Path) -> tuple[dict[str, Any], list[tuple]]:
    """The backtest config of ``session`` with ``sets`` applied, and the assignments made."""
    m = session.manifest
    cfg = copy.deepcopy(m["config"])
    for key in LIVE_ONLY:
        cfg.pop(key, None)
    strategies = (m.get("replay") or {}).get("strategies")
    if strategies:
        cfg["strategies"] = strategies
    else:  # an older manifest: strategy files are read again, relative to the config that named them
        base = Path(m.get("config_path") or ".").resolve().parent
        cfg["strategies"] = [
            str(base / s) if isinstance(s, str) and not Path(s).is_absolute() else s for s in cfg.get("strategies", [])
        ]
    venues = sorted({v for v, _ in session.streams})
    data: dict[str, Any] = {"root": str(session.data_root.resolve())}
    if len(venues) == 1:
        data["venue"] = venues[0]
    data["symbols"] = sorted({s for _, s in session.streams})
    if session.first_book_ns is not None:
        data["from"] = session.first_book_ns
    cfg["data"] = data
    output = dict(cfg.get("output") or {})
    output.pop("capture_market_data", None)
    output["runs_root"] = str(runs_root)
    cfg["output"] = output
    cfg.setdefault("name", m.get("name") or "session")
    applied = [apply_set(cfg, s) for s in sets]
    return cfg, applied
