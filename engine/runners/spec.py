"""Parsing of run configs shared by the backtest, paper and live runners."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Section, load_json, resolve_path
from engine.errors import ConfigError
from engine.reconcile import POLICIES, ReconcilePolicy
from engine.risk import RiskLimits
from engine.strategy import Strategy

INVALID_BOOK_POLICIES = ("cancel", "keep")


@dataclass
class StrategySpec:
    strategy_id: str
    cls: type[Strategy]
    venue: str
    symbols: list[str]
    params: dict[str, Any]
    path: str
    #: ``cancel``/``keep`` the strategy's resting orders when its book turns invalid (None: the
    #: strategy class's own ``invalid_book``)
    invalid_book: str | None = None

    def build(self) -> Strategy:
        try:
            strategy = self.cls(self.strategy_id, self.venue, self.symbols, self.params)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(self.path, f"Strategy initialization failed: {exc}") from None
        if self.invalid_book is not None:
            strategy.invalid_book = self.invalid_book
        return strategy


@dataclass
class RunSpec:
    path: str
    name: str
    seed: int
    data_root: Path
    venue: str | None
    symbols: list[str] | None
    start_ns: int | None
    end_ns: int | None
    instruments_path: Path | None
    balances: dict[str, dict[str, float]]
    risk: RiskLimits
    strategy_risk: dict[str, Any]
    strategies: list[StrategySpec]
    sim: Section
    runs_root: Path
    mark_interval_ns: int
    raw: dict[str, Any] = field(default_factory=dict)
    #: the live path warmer (``engine.warm``), paper and live only: None when the config has no
    #: ``warm`` section, else ``PathWarmer`` keyword arguments (interval_us, spin, probe)
    warm: dict[str, Any] | None = None
    #: venue -> its exchange config (paper, live); venues not named use the registry's default
    exchanges: dict[str, Path] = field(default_factory=dict)
    #: live trading's start-up reconciliation (``engine.reconcile``); None: the defaults
    live: ReconcilePolicy | None = None
    #: live trading: cancel every open order on a graceful stop (SIGINT/SIGTERM, --duration)
    live_cancel_on_stop: bool = True
    #: a line per order in ``orders.log`` (``output.log_orders``): on by default in paper and live
    #: trading, off in backtests, whose event log holds every order (a line costs tens of µs)
    log_orders: bool = True


def code_spec(
    name: str,
    risk: RiskLimits | None = None,
    balances: dict[str, dict[str, float]] | None = None,
    sim: dict[str, Any] | None = None,
    mark_interval_ns: int = 1_000_000_000,
) -> RunSpec:
    """A run spec made in code, not read from a file (benchmarks, tools): no strategies of its own
    (``build_node(strategies=...)`` brings them)."""
    return RunSpec(
        path=f"<{name}>",
        name=name,
        seed=0,
        data_root=Path("data"),
        venue=None,
        symbols=None,
        start_ns=None,
        end_ns=None,
        instruments_path=None,
        balances=balances or {},
        risk=risk or RiskLimits(),
        strategy_risk={},
        strategies=[],
        sim=Section(sim or {}, f"<{name}>", "sim"),
        runs_root=Path("runs"),
        mark_interval_ns=mark_interval_ns,
    )


def load_strategy(path: Path | str, entry: Any = None) -> StrategySpec:
    """A strategy file (``config/strategies/*.json``) or an inline object."""
    where = str(path)
    data = load_json(path) if entry is None else entry
    s = Section(data, where)
    _known(s, {"strategy_id", "class", "venue", "symbols", "params", "description", "invalid_book"})
    target = s.str("class")
    module_name, _, cls_name = target.partition(":")
    if not cls_name:
        raise s.fail("class", f"must look like 'package.module:ClassName', got {target!r}")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise s.fail("class", f"cannot import {target!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise s.fail("class", f"{target!r} is not a Strategy subclass")
    params = s.raw("params", {})
    if not isinstance(params, dict):
        raise s.fail("params", "must be an object")
    policy = s.str("invalid_book") if s.has("invalid_book") else None
    if policy is not None and policy not in INVALID_BOOK_POLICIES:
        raise s.fail("invalid_book", f"must be one of {', '.join(INVALID_BOOK_POLICIES)}, got {policy!r}")
    return StrategySpec(s.str("strategy_id"), cls, s.str("venue"), s.str_list("symbols"), params, where, policy)


def parse_time(value: Any, s: Section, key: str) -> int | None:
    """ns since epoch from an int (ns) or an ISO-8601 string (UTC when no offset)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        import pandas as pd

        try:
            ts = pd.Timestamp(value)
        except ValueError:
            raise s.fail(key, f"not a time: {value!r} (use ISO-8601 like 2024-08-08T23:55:00Z or ns)") from None
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        return int(ts.value)
    raise s.fail(key, f"must be ISO-8601 text or integer ns, got {value!r}")


def load_run_spec(path: str | Path, overrides: dict[str, Any] | None = None, mode: str = "backtest") -> RunSpec:
    """A backtest config (``data`` section required) or a paper/live config (``exchange`` instead)."""
    where = str(path)
    root = Section(load_json(path), where)
    _known(root, _TOP_KEYS)
    base = Path(path).resolve().parent
    o = overrides or {}
    data = root.section("data", required=mode == "backtest")
    _known(data, {"root", "venue", "symbols", "from", "to"})
    _known(root.section("sim"), {"queue_model", "queue_power", "latency", "venues"})
    if mode == "backtest":
        data_root = resolve_path(o.get("data") or data.str("root"), base)
    else:
        data_root = resolve_path(data.str("root", "data"), base)
    exchanges = _exchanges(root, base)
    start = parse_time(o.get("from", data.raw("from", None)), data, "from")
    end = parse_time(o.get("to", data.raw("to", None)), data, "to")
    if start is not None and end is not None and end <= start:
        raise data.fail("to", "must be after 'from'")
    balances_raw = root.raw("balances", {})
    if not isinstance(balances_raw, dict):
        raise root.fail("balances", "must be an object of venue -> {asset: amount}")
    balances: dict[str, dict[str, float]] = {}
    for venue, assets in balances_raw.items():
        sec = Section(assets, where, f"balances.{venue}")
        balances[venue] = {a: sec.number(a, minimum=0) for a in assets}
    risk_raw = root.raw("risk", {})
    risk = RiskLimits.from_dict(risk_raw, where)
    strategy_risk: dict[str, Any] = {}
    strategies: list[StrategySpec] = []
    entries = root.raw("strategies")
    if not isinstance(entries, list) or not entries:
        raise root.fail("strategies", "must be a non-empty list of strategy config paths or objects")
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            spec = load_strategy(resolve_path(entry, base))
        elif isinstance(entry, dict):
            spec = load_strategy(f"{where}#strategies[{i}]", entry)
        else:
            raise root.fail(f"strategies[{i}]", "must be a path or an object")
        strategies.append(spec)
    for sid, limits in root.raw("strategy_risk", {}).items():
        # partial overrides: fields a strategy leaves out follow the global limits
        strategy_risk[sid] = RiskLimits.parse_updates(limits, f"{where}#strategy_risk.{sid}")
    out = root.section("output")
    unknown = sorted(set(out.data) - {"runs_root", "mark_interval_ms", "log_orders"})
    if unknown:
        raise out.fail(unknown[0], "unknown field (expected runs_root, mark_interval_ms, log_orders)")
    instruments = root.raw("instruments", None)
    warm = None
    if root.has("warm"):
        w = root.section("warm")
        _known(w, {"interval_us", "spin", "probe"})
        warm = {
            "interval_us": w.number("interval_us", 250.0, positive=True),
            "spin": w.bool("spin", True),
            "probe": w.bool("probe", True),
        }
    live, cancel_on_stop = _live(root)
    return RunSpec(
        path=where,
        name=root.str("name", Path(path).stem),
        seed=root.int("seed", 0),
        data_root=data_root,
        venue=data.raw("venue", None),
        symbols=data.str_list("symbols") if data.has("symbols") else None,
        start_ns=start,
        end_ns=end,
        instruments_path=resolve_path(instruments, base) if instruments else None,
        balances=balances,
        risk=risk,
        strategy_risk=strategy_risk,
        strategies=strategies,
        sim=root.section("sim"),
        runs_root=resolve_path(o.get("runs_root") or out.str("runs_root", "runs"), base),
        mark_interval_ns=int(out.number("mark_interval_ms", 1000, minimum=0) * 1_000_000),
        raw=root.data,
        warm=warm,
        exchanges=exchanges,
        live=live,
        live_cancel_on_stop=cancel_on_stop,
        log_orders=out.bool("log_orders", mode != "backtest"),
    )


_TOP_KEYS = {
    "name",
    "description",
    "seed",
    "data",
    "instruments",
    "balances",
    "sim",
    "risk",
    "strategy_risk",
    "strategies",
    "output",
    "warm",
    "exchange",
    "exchanges",
    "live",
}


def _known(sec: Section, keys: set[str]) -> None:
    """A typo must not silently run with a default: every key of ``sec`` must be one of ``keys``."""
    unknown = sorted(set(sec.data) - keys)
    if unknown:
        raise sec.fail(unknown[0], f"unknown field (expected one of {', '.join(sorted(keys))})")


def _exchanges(root: Section, base: Path) -> dict[str, Path]:
    """``exchanges: {venue: path}``, or the single ``exchange: path`` of a one-venue config (the
    venue named by the strategies)."""
    out: dict[str, Path] = {}
    if root.has("exchanges"):
        ex = root.section("exchanges")
        for venue in ex.data:
            out[venue] = resolve_path(ex.str(venue), base)
    if root.has("exchange"):
        venues = {e.get("venue") for e in root.data.get("strategies", []) if isinstance(e, dict)}
        path = resolve_path(root.str("exchange"), base)
        name = _venue_of(path) or (venues.pop() if len(venues) == 1 else None)
        if name is None:
            raise root.fail("exchange", "names one exchange config; with several venues use 'exchanges': {venue: path}")
        out.setdefault(name, path)
    return out


def _venue_of(path: Path) -> str | None:
    try:
        data = load_json(path)
    except ConfigError:
        return None
    venue = data.get("venue")
    return venue if isinstance(venue, str) and venue else None


_LIVE_KEYS = {"unknown_orders", "adopt_owner", "reconcile_timeout_s", "cancel_on_stop"}


def _live(root: Section) -> tuple[ReconcilePolicy | None, bool]:
    if not root.has("live"):
        return None, True
    sec = root.section("live")
    unknown = sorted(set(sec.data) - _LIVE_KEYS)
    if unknown:
        raise sec.fail(unknown[0], f"unknown field (expected one of {', '.join(sorted(_LIVE_KEYS))})")
    policy = sec.str("unknown_orders", "cancel")
    if policy not in POLICIES:
        raise sec.fail("unknown_orders", f"must be one of {', '.join(POLICIES)}, got {policy!r}")
    owner = sec.str("adopt_owner") if sec.has("adopt_owner") else None
    timeout = sec.number("reconcile_timeout_s", 30.0, positive=True)
    return ReconcilePolicy(policy, owner, timeout), sec.bool("cancel_on_stop", True)
