"""A sweep's points: every combination of the grid's values × days × symbols, each a complete
backtest config, checked before anything runs.

Order is the grid's, first axis slowest, then the day, then the symbol, so the results table
reads like the command. A point's config is the base config made self-contained
(``grid.materialize``) with its values set, ``data.from``/``data.to`` in ns when a window is
given and ``data.symbols`` plus every strategy's ``symbols`` set to the point's symbol. Its id
hashes that config (``grid.point_id``).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, DataError
from engine.research.datasource import NS_PER_DAY, DataLocation, locate, stage
from engine.research.grid import Axis, SweepError, apply, materialize, parse_grid_arg, point_id, resolve_axis
from engine.runners.spec import load_run_spec


@dataclass(frozen=True, slots=True)
class Point:
    """One backtest of the sweep."""

    point_id: str
    #: the swept values by column: each ``--grid`` name, then ``day`` and ``symbol`` when swept
    settings: dict[str, Any]
    config: dict[str, Any]


@dataclass
class Plan:
    config_path: Path
    axes: list[Axis]
    points: list[Point]
    #: the data root as given (a path or a URI) and where it is
    data: DataLocation
    columns: list[str] = field(default_factory=list)


def parse_time(text: str, flag: str) -> int:
    """ns since epoch from ISO-8601 text (UTC without an offset) or an integer of ns."""
    import pandas as pd

    if text.isdigit():
        return int(text)
    try:
        ts = pd.Timestamp(text)
    except ValueError:
        raise SweepError(f"{flag} {text}: not a time (use ISO-8601 like 2024-08-08T23:55:00Z or ns)") from None
    return int((ts.tz_localize("UTC") if ts.tzinfo is None else ts).value)


def _time_of_day(text: str, flag: str) -> int:
    """ns after midnight of ``HH:MM``, ``HH:MM:SS`` or ``HH:MM:SS.fff`` (24:00 ends a day)."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?", text.strip())
    ns = None
    if m:
        h, mi, sec = int(m[1]), int(m[2]), int(m[3] or 0)
        frac = int(((m[4] or ".")[1:]).ljust(9, "0"))
        ns = ((h * 60 + mi) * 60 + sec) * 1_000_000_000 + frac
        if mi > 59 or sec > 59 or ns > NS_PER_DAY:
            ns = None
    if ns is None:
        raise SweepError(f"{flag} {text}: with --days, give a time of day such as 23:55 or 23:55:30")
    return ns


def windows(
    days: list[str] | None, start: str | None, end: str | None
) -> list[tuple[str | None, int | None, int | None]]:
    """(day label, from ns, to ns) per day; one window (label None) without ``--days``."""
    if not days:
        lo = parse_time(start, "--from") if start else None
        hi = parse_time(end, "--to") if end else None
        if lo is not None and hi is not None and hi <= lo:
            raise SweepError(f"--to {end}: must be after --from {start}")
        return [(None, lo, hi)]
    out = []
    for day in days:
        try:
            midnight = parse_time(day, "--days")
        except SweepError:
            raise SweepError(f"--days {day}: not a date (use YYYY-MM-DD)") from None
        if midnight % NS_PER_DAY:
            raise SweepError(f"--days {day}: give dates (YYYY-MM-DD), not times; --from/--to set the hours")
        lo = midnight + (_time_of_day(start, "--from") if start else 0)
        hi = midnight + (_time_of_day(end, "--to") if end else NS_PER_DAY)
        if hi <= lo:
            raise SweepError(f"--to {end}: must be after --from {start}")
        out.append((day, lo, hi))
    if len(set(days)) != len(days):
        raise SweepError("--days: a day is listed twice")
    return out


def build_plan(
    config: str,
    grid: list[str],
    days: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    symbols: list[str] | None = None,
    data: str | None = None,
) -> Plan:
    """Every point of the sweep, each loaded and built (not run) as a backtest: an unknown setting,
    a bad value, a day or symbol without data is a ``SweepError`` before anything runs."""
    path = Path(config)
    base_spec = load_run_spec(path)
    base = materialize(path)
    pairs = [pair for arg in grid for pair in parse_grid_arg(arg)]
    if not pairs:
        raise SweepError("--grid: give at least one PATH=V1,V2,... to sweep")
    axes = _axes(pairs, base_spec.strategies)
    if symbols is not None and (not symbols or len(set(symbols)) != len(symbols) or not all(symbols)):
        raise SweepError(f"--symbols {','.join(symbols)}: give distinct symbol names, e.g. BTC-USDT,ETH-USDT")
    root = data or base["data"]["root"]
    where = locate(root, path.resolve().parent)
    if where.local is not None:
        base["data"]["root"] = str(where.local)
    elif data is not None:
        base["data"]["root"] = data
    spans = windows(days, start, end)
    checker = _Checker(where)
    try:
        for axis in axes:  # each value alone first: the error names the --grid argument
            for value in axis.values:
                cfg = copy.deepcopy(base)
                apply(cfg, axis, value)
                checker.check(cfg, f"--grid {axis.name}={_text(value)}")
        points = []
        for combo in itertools.product(*(axis.values for axis in axes)):
            for day, lo, hi in spans:
                for sym in symbols or [None]:
                    cfg, settings = _point_config(base, axes, combo, (day, lo, hi), sym)
                    checker.check(cfg, f"point {_label(settings)}")
                    points.append(Point(point_id(cfg), settings, cfg))
    finally:
        checker.close()
    seen: dict[str, Point] = {}
    for p in points:
        if p.point_id in seen:
            first, second = _label(seen[p.point_id].settings), _label(p.settings)
            raise SweepError(f"points {first} and {second} are the same backtest (their configs are equal)")
        seen[p.point_id] = p
    columns = list(points[0].settings) if points else []
    return Plan(path, axes, points, where, columns)


def _axes(pairs: list[tuple[str, list[Any]]], strategies: list[Any]) -> list[Axis]:
    names = [name for name, _ in pairs]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SweepError(f"--grid {name}: given twice; list all its values in one --grid")
    axes = [resolve_axis(name, values, strategies) for name, values in pairs]
    fields: dict[tuple[Any, ...], str] = {}
    for axis in axes:
        f = _field(axis)
        if f in fields:
            raise SweepError(f"--grid {axis.name}: sets the same field as --grid {fields[f]}")
        fields[f] = axis.name
    return axes


def _point_config(
    base: dict[str, Any],
    axes: list[Axis],
    combo: tuple[Any, ...],
    window: tuple[str | None, int | None, int | None],
    symbol: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A point's config and its settings (the results table's columns)."""
    cfg = copy.deepcopy(base)
    settings: dict[str, Any] = {}
    for axis, value in zip(axes, combo, strict=True):
        apply(cfg, axis, value)
        settings[axis.name] = value
    day, lo, hi = window
    if day is not None or lo is not None or hi is not None:
        cfg["data"]["from"], cfg["data"]["to"] = lo, hi
    if day is not None:
        settings["day"] = day
    if symbol is not None:
        cfg["data"]["symbols"] = [symbol]
        for entry in cfg["strategies"]:
            entry["symbols"] = [symbol]
        settings["symbol"] = symbol
    return cfg, settings


def _label(settings: dict[str, Any]) -> str:
    return " ".join(f"{k}={_text(v)}" for k, v in settings.items())


def _field(axis: Axis) -> tuple[Any, ...]:
    """The field an axis sets, one duration whatever its unit (``order.us`` is ``order.ms``)."""
    *head, leaf = axis.target
    if isinstance(leaf, str) and leaf[-2:] in ("ns", "us", "ms"):
        leaf = leaf[:-2] + "<unit>"
    return (*head, leaf)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _Checker:
    """Loads a point's config as ``hft backtest`` would and builds its node (not run), sharing the
    opened data and the instruments between points with the same data selection."""

    def __init__(self, where: DataLocation) -> None:
        self.where = where
        self.tmp = tempfile.TemporaryDirectory(prefix="hft-sweep-check-")
        self.sources: dict[str, Any] = {}
        self.instruments: dict[str, Any] = {}
        self.n = 0

    def close(self) -> None:
        self.tmp.cleanup()

    def check(self, cfg: dict[str, Any], what: str) -> None:
        from engine.marketdata.instruments import load_instruments
        from engine.marketdata.reader import open_dataset
        from engine.runners.backtest import open_backtest

        self.n += 1
        file = Path(self.tmp.name) / f"point-{self.n}.json"
        file.write_text(json.dumps(cfg))
        try:
            overrides = {}
            if self.where.uri is not None:
                d = cfg["data"]
                overrides["data"] = str(stage(self.where.uri, d.get("venue"), d.get("symbols"), d.get("to")))
            spec = load_run_spec(file, overrides)
            key = json.dumps([str(spec.data_root), spec.venue, spec.symbols, spec.start_ns, spec.end_ns])
            if key not in self.sources:
                args = (spec.data_root, spec.venue, spec.symbols, spec.start_ns, spec.end_ns)
                # the warm-up reads history before the window: the window itself must hold rows
                windowed = spec.start_ns is not None or spec.end_ns is not None
                if windowed and open_dataset(*args).rows == 0:
                    raise DataError(str(spec.data_root), "no market data rows in the selected range")
                self.sources[key] = open_dataset(*args, warmup=True)
            ikey = str(spec.instruments_path)
            if ikey not in self.instruments:
                self.instruments[ikey] = load_instruments(spec.instruments_path)
            open_backtest(spec, None, source=self.sources[key], instruments_registry=self.instruments[ikey])
        except (ConfigError, DataError) as exc:
            mine = isinstance(exc, ConfigError) and exc.path.split("#")[0] == str(file)
            reason = exc.reason if mine else str(exc)
            raise SweepError(f"{what}: {reason}") from None
