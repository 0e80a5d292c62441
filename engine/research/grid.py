"""``--grid PATH=V1,V2,...``: which settings of a backtest config a sweep varies, and how one point's
config is written.

A path names a strategy param or a run setting:

- ``order_size``: a param of the config's strategy (with several strategies, the one strategy
  whose ``params_schema`` declares it; ``<strategy_id>.order_size`` picks one explicitly);
- ``sim.…``, ``risk.…``, ``strategy_risk.<id>.…``, ``balances.<venue>.<asset>``, ``seed``: that
  field of the run config, e.g. ``sim.latency.order.us`` or ``sim.queue_model``.

Values are JSON scalars (``0.001``, ``50``, ``true``, ``null``); anything else is text
(``sim.queue_model=prob,risk_averse``). ``--grid @FILE`` reads ``{"path": [values], ...}`` from a
JSON file. A duration given in one unit replaces the same duration given in another
(``sim.latency.order.us=50`` drops an ``ms`` the config had): the latency reader takes ``ns`` before
``us`` before ``ms``, so a leftover would silently win.

Every value is checked by loading the config it makes (``engine.runners.spec``) and building its
backtest node without running it, so an unknown path or a bad value is an error naming the
``--grid`` argument before any point runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import load_json, resolve_path, suggestion
from engine.errors import ConfigError, HftError
from engine.runners.spec import StrategySpec

#: run-config sections a grid may vary (data, strategies and output are the sweep's own business)
SETTING_ROOTS = ("sim", "risk", "strategy_risk", "balances", "seed")
_UNITS = ("ns", "us", "ms")


class SweepError(HftError):
    """A sweep's grid, days, symbols, data or output directory is wrong (one line, exit 2)."""


@dataclass(frozen=True, slots=True)
class Axis:
    """One ``--grid`` setting: its name as written, its values, and where it goes in a config."""

    name: str
    values: tuple[Any, ...]
    target: tuple[str | int, ...]


def parse_value(token: str) -> Any:
    """``0.001`` -> 0.001, ``50`` -> 50, ``true`` -> True, ``null`` -> None, ``prob`` -> 'prob'."""
    try:
        value = json.loads(token)
    except json.JSONDecodeError:
        return token
    return value if value is None or isinstance(value, bool | int | float | str) else token


def parse_grid_arg(text: str) -> list[tuple[str, list[Any]]]:
    """``PATH=V1,V2`` or ``@FILE`` as (path, values) pairs; a malformed one is a ``SweepError``."""
    if text.startswith("@"):
        return _grid_file(text[1:])
    path, sep, values = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise SweepError(f"--grid {text}: expected PATH=V1,V2,... (e.g. order_size=0.001,0.002) or @FILE")
    tokens = [t.strip() for t in values.split(",")]
    if not values.strip() or any(not t for t in tokens):
        raise SweepError(f"--grid {text}: empty value in the list after '='")
    return [(path, [parse_value(t) for t in tokens])]


def _grid_file(name: str) -> list[tuple[str, list[Any]]]:
    try:
        data = load_json(name)
    except ConfigError as exc:
        raise SweepError(f"--grid @{name}: {exc.reason}") from None
    out = []
    for path, values in data.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"--grid @{name}: {path}: must be a non-empty list of values")
        if any(isinstance(v, dict | list) for v in values):
            raise SweepError(f"--grid @{name}: {path}: values must be numbers, text, true/false or null")
        out.append((path, values))
    return out


def materialize(config: Path) -> dict[str, Any]:
    """The backtest config at ``config`` made self-contained: its paths absolute (resolved as
    ``load_run_spec`` resolves them) and its strategy files inlined, so a point's config can live
    anywhere and a grid can reach the strategies' params."""
    cfg = copy.deepcopy(load_json(config))
    base = config.resolve().parent
    data = cfg.get("data")
    if isinstance(data, dict) and isinstance(data.get("root"), str) and "://" not in data["root"]:
        data["root"] = str(resolve_path(data["root"], base))
    if isinstance(cfg.get("instruments"), str):
        cfg["instruments"] = str(resolve_path(cfg["instruments"], base))
    out = cfg.get("output")
    if isinstance(out, dict) and isinstance(out.get("runs_root"), str):
        out["runs_root"] = str(resolve_path(out["runs_root"], base))
    entries = cfg.get("strategies")
    if isinstance(entries, list):
        cfg["strategies"] = [load_json(resolve_path(e, base)) if isinstance(e, str) and e else e for e in entries]
    return cfg


def resolve_axis(name: str, values: list[Any], strategies: list[StrategySpec]) -> Axis:
    """Where ``name`` goes in a materialized config (``strategies[i]`` in the order of ``strategies``)."""
    parts = name.split(".")
    if any(not p for p in parts):
        raise SweepError(f"--grid {name}: empty part in the dotted path")
    if len(set(map(_key, values))) != len(values):
        raise SweepError(f"--grid {name}: a value is listed twice")
    if parts[0] in SETTING_ROOTS:
        if parts[0] == "seed" and len(parts) > 1:
            raise SweepError(f"--grid {name}: seed is a number, it has no fields")
        if parts[0] != "seed" and len(parts) < 2:
            raise SweepError(f"--grid {name}: name a field of {parts[0]}, e.g. {parts[0]}.<field>")
        return Axis(name, tuple(values), tuple(parts))
    ids = [s.strategy_id for s in strategies]
    if len(parts) == 2 and parts[0] in ids:
        return Axis(name, tuple(values), ("strategies", ids.index(parts[0]), "params", parts[1]))
    if len(parts) == 1:
        takers = [i for i, s in enumerate(strategies) if _declares(s, parts[0])]
        if len(takers) == 1:
            return Axis(name, tuple(values), ("strategies", takers[0], "params", parts[0]))
        if len(takers) > 1:
            both = ", ".join(f"{ids[i]}.{name}" for i in takers)
            raise SweepError(f"--grid {name}: several strategies take this param; name one ({both})")
        declared = sorted({p for s in strategies for p in _schema_names(s)})
        raise SweepError(
            f"--grid {name}: no strategy takes a param '{name}'{suggestion(name, declared)} "
            f"(params: {', '.join(declared) or 'none'}; settings start with {', '.join(SETTING_ROOTS)})"
        )
    raise SweepError(
        f"--grid {name}: unknown setting: a path starts with {', '.join(SETTING_ROOTS)} "
        f"or a strategy id ({', '.join(ids)}){suggestion(parts[0], [*SETTING_ROOTS, *ids])}"
    )


def _schema_names(s: StrategySpec) -> list[str]:
    schema = getattr(s.cls, "params_schema", None)
    return list(schema.params) if schema is not None else []


def _declares(s: StrategySpec, param: str) -> bool:
    schema = getattr(s.cls, "params_schema", None)
    return schema is None or param in schema.params


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def apply(cfg: dict[str, Any], axis: Axis, value: Any) -> None:
    """Set ``axis`` to ``value`` in the materialized config ``cfg`` (in place)."""
    node: Any = cfg
    target = axis.target
    if target[0] == "strategies":
        entry = cfg["strategies"][target[1]]
        key = "parameters" if "parameters" in entry else "params"
        target = ("strategies", target[1], key, *target[3:])
    for depth, step in enumerate(target[:-1]):
        child = node[step] if isinstance(step, int) else node.get(step)
        if child is None:
            child = node[step] = {}
        if not isinstance(child, dict) and not isinstance(target[depth + 1], int):
            where = ".".join(str(p) for p in target[: depth + 1])
            raise SweepError(f"--grid {axis.name}: {where} is {json.dumps(child)} in the config, not an object")
        node = child
    leaf = target[-1]
    for unit in _UNITS:
        if isinstance(leaf, str) and leaf.endswith(unit):
            prefix = leaf[: -len(unit)]
            for other in _UNITS:
                node.pop(prefix + other, None)
    node[leaf] = value


def point_id(cfg: dict[str, Any]) -> str:
    """A stable name for a point: the hash of its whole config (settings, data window, strategies),
    so that the same point in a rerun of the sweep finds its run directory."""
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
