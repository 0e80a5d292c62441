"""Parsing of run configs shared by the backtest, paper and live runners.

Every section is typed: a key a section does not know, or a value of the wrong type, is a
``ConfigError`` naming the file and the dotted field, with a suggestion for a near miss
(``sim.venues.binance-futures.maker_fe: unknown field, did you mean 'maker_fee'?``). A
strategy's params are checked against the ``params_schema`` its class declares
(``engine.strategy_params``). A credential anywhere in a run config, a strategy file or an
exchange file it names is refused (``engine.config.refuse_secrets``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Section, load_json, read_json, refuse_secrets, resolve_path, suggestion, unknown_field
from engine.daemon.config import LOG_LEVELS, DaemonSettings, parse_daemon
from engine.errors import ConfigError
from engine.logs import get_logger
from engine.messages import STRATEGY_INITIALIZATION_FAILED
from engine.reconcile import POLICIES, ReconcilePolicy
from engine.risk import RiskLimits
from engine.store.config import StoreSettings, parse_store
from engine.strategy import Strategy
from engine.strategy_params import ParamError

INVALID_BOOK_POLICIES = ("cancel", "keep")


def _init_failed(strategy_id: str, path: str, reason: str) -> None:
    # strategies.log (and errors.log) say it in the guide's words before the run stops
    get_logger("strategies").error(
        "%s strategy_id: %s (%s): %s", STRATEGY_INITIALIZATION_FAILED, strategy_id, path, reason
    )


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
    #: the strategy's log level (``log_level`` of a strategy file; None: the process's)
    log_level: str | None = None
    #: the strategy file's ``risk_limits`` (partial overrides of the run's ``risk``, validated)
    risk_limits: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Strategy:
        try:
            strategy = self.cls(self.strategy_id, self.venue, self.symbols, self.params)
        except ParamError as exc:
            _init_failed(self.strategy_id, self.path, str(exc))
            raise ConfigError(self.path, str(exc)) from None
        except (ValueError, TypeError, KeyError) as exc:
            _init_failed(self.strategy_id, self.path, str(exc))
            raise ConfigError(self.path, f"{STRATEGY_INITIALIZATION_FAILED}: {exc}") from None
        if self.invalid_book is not None:
            strategy.invalid_book = self.invalid_book
        if self.log_level is not None:
            strategy.set_log_level(self.log_level)
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
    #: paper and live: tap the feeds' input into ``<run_dir>/market_data`` (raw capture, then the
    #: Parquet data root ``hft parity`` replays; ``output.capture_market_data``): on by default in
    #: a paper session, off live and in the daemon (a config with a ``daemon`` section)
    capture_market_data: bool = False
    #: the long-lived service's settings (``daemon`` section; defaults when absent)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    #: the database (``database`` section, ``engine.store.config``): paper and live sessions write
    #: to it; a config without the section gets the DuckDB file ``<runs_root>/hft.duckdb``. A spec
    #: made in code (``code_spec``) stores nothing
    store: StoreSettings = field(default_factory=lambda: StoreSettings(backend="none"))


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


_STRATEGY_KEYS = {
    "strategy_id",
    "class",
    "venue",
    "symbols",
    "params",
    "parameters",
    "description",
    "invalid_book",
    "log_level",
    "risk_limits",
}


def load_strategy(path: Path | str, entry: Any = None, where: str = "") -> StrategySpec:
    """A strategy file (``config/strategies/*.json``) or an inline object (``entry``, found at
    ``where`` in the run config ``path``, e.g. ``strategies[0]``)."""
    file = str(path)
    data = load_json(path) if entry is None else entry
    s = Section(data, file, where)
    s.known(_STRATEGY_KEYS)
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
    # ``parameters`` is the operator guide's name (``GET /strategies/{id}`` shows ``.config.parameters``)
    if s.has("params") and s.has("parameters"):
        raise s.fail("parameters", "give either 'params' or 'parameters', not both")
    pkey = "parameters" if s.has("parameters") else "params"
    params = s.raw(pkey, {})
    if not isinstance(params, dict):
        raise s.fail(pkey, "must be an object")
    schema = getattr(cls, "params_schema", None)
    if schema is not None:
        try:
            schema.parse(params)
        except ParamError as exc:
            raise s.fail(f"{pkey}.{exc.field}" if exc.field else pkey, exc.reason) from None
    log_level = s.str("log_level").upper() if s.has("log_level") else None
    if log_level is not None and log_level not in LOG_LEVELS:
        raise s.fail("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {s.data['log_level']!r}")
    risk_limits: dict[str, Any] = {}
    if s.has("risk_limits"):
        prefix = f"{where}." if where else ""
        try:
            risk_limits = RiskLimits.parse_updates(s.raw("risk_limits"), file)
        except ConfigError as exc:  # "risk.<field>: ..." -> "<where>.risk_limits.<field>: ..."
            raise ConfigError(file, prefix + exc.reason.replace("risk", "risk_limits", 1)) from None
    policy = s.str("invalid_book") if s.has("invalid_book") else None
    if policy is not None and policy not in INVALID_BOOK_POLICIES:
        raise s.fail("invalid_book", f"must be one of {', '.join(INVALID_BOOK_POLICIES)}, got {policy!r}")
    spec_path = f"{file}#{where}" if where else file
    return StrategySpec(
        s.str("strategy_id"),
        cls,
        s.str("venue"),
        s.str_list("symbols"),
        params,
        spec_path,
        policy,
        log_level,
        risk_limits,
    )


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
    root.known(_TOP_KEYS)
    base = Path(path).resolve().parent
    o = overrides or {}
    data = root.section("data", required=mode == "backtest")
    data.known({"root", "venue", "symbols", "from", "to"})
    if mode == "backtest":
        data_root = resolve_path(o.get("data") or data.str("root"), base)
    else:
        data_root = resolve_path(data.str("root", "data"), base)
    data_venue = data.str("venue") if data.has("venue") else None
    symbols = data.str_list("symbols") if data.has("symbols") else None
    start = parse_time(o.get("from", data.raw("from", None)), data, "from")
    end = parse_time(o.get("to", data.raw("to", None)), data, "to")
    if start is not None and end is not None and end <= start:
        raise data.fail("to", "must be after 'from'")
    strategies: list[StrategySpec] = []
    entries = root.raw("strategies")
    if not isinstance(entries, list) or not entries:
        raise root.fail("strategies", "must be a non-empty list of strategy config paths or objects")
    for i, entry in enumerate(entries):
        if isinstance(entry, str) and entry:
            spec = load_strategy(resolve_path(entry, base))
        elif isinstance(entry, dict):
            spec = load_strategy(where, entry, f"strategies[{i}]")
        else:
            raise root.fail(f"strategies[{i}]", "must be a path or an object")
        strategies.append(spec)
    ids = [st.strategy_id for st in strategies]
    for i, sid in enumerate(ids):
        if sid in ids[:i]:
            raise root.fail(f"strategies[{i}].strategy_id", f"{sid!r} is used by another strategy")
    # venues a section may name: those the strategies trade on (and the data's)
    venues = {st.venue for st in strategies} | ({data_venue} if data_venue else set())
    exchanges = _exchanges(root, base, venues)
    balances_raw = root.raw("balances", {})
    if not isinstance(balances_raw, dict):
        raise root.fail("balances", "must be an object of venue -> {asset: amount}")
    balances: dict[str, dict[str, float]] = {}
    for venue, assets in balances_raw.items():
        _known_venue(root, "balances", venue, venues)
        sec = Section(assets, where, f"balances.{venue}")
        balances[venue] = {a: sec.number(a, minimum=0) for a in assets}
    risk = RiskLimits.from_dict(root.raw("risk", {}), where)
    # a strategy file's own risk_limits first; the run config's strategy_risk overrides them
    strategy_risk: dict[str, Any] = {st.strategy_id: dict(st.risk_limits) for st in strategies if st.risk_limits}
    srisk = root.section("strategy_risk")
    for sid, limits in srisk.data.items():
        if sid not in ids:
            raise srisk.fail(sid, unknown_field(sid, ids, "strategy id"))
        # partial overrides: fields a strategy leaves out follow the global limits
        strategy_risk[sid] = {
            **strategy_risk.get(sid, {}),
            **RiskLimits.parse_updates(limits, f"{where}#strategy_risk.{sid}"),
        }
    sim = root.section("sim")
    _check_sim(sim, venues)
    out = root.section("output")
    out.known({"runs_root", "mark_interval_ms", "log_orders", "capture_market_data"})
    instruments = root.str("instruments") if root.has("instruments") else None
    warm = None
    if root.has("warm"):
        w = root.section("warm")
        w.known({"interval_us", "spin", "probe"})
        warm = {
            "interval_us": w.number("interval_us", 250.0, positive=True),
            "spin": w.bool("spin", True),
            "probe": w.bool("probe", True),
        }
    live, cancel_on_stop = _live(root)
    runs_root = resolve_path(o.get("runs_root") or out.str("runs_root", "runs"), base)
    store = parse_store(root.section("database") if root.has("database") else None, runs_root)
    if root.has("description") and not isinstance(root.data["description"], str):
        raise root.fail("description", "must be a string")
    return RunSpec(
        path=where,
        name=root.str("name", Path(path).stem),
        seed=root.int("seed", 0),
        data_root=data_root,
        venue=data_venue,
        symbols=symbols,
        start_ns=start,
        end_ns=end,
        instruments_path=resolve_path(instruments, base) if instruments else None,
        balances=balances,
        risk=risk,
        strategy_risk=strategy_risk,
        strategies=strategies,
        sim=sim,
        runs_root=runs_root,
        mark_interval_ns=int(out.number("mark_interval_ms", 1000, minimum=0) * 1_000_000),
        raw=root.data,
        warm=warm,
        exchanges=exchanges,
        live=live,
        live_cancel_on_stop=cancel_on_stop,
        log_orders=out.bool("log_orders", mode != "backtest"),
        # on for a paper session, off for the long-lived daemon (a config with a ``daemon``
        # section): days of depth would fill the disk and make its stop build Parquet for minutes
        capture_market_data=out.bool("capture_market_data", mode == "paper" and root.raw("daemon", None) is None),
        daemon=parse_daemon(root.raw("daemon", None), where, base),
        store=store,
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
    "daemon",
    "database",
}


def _known_venue(sec: Section, key: str, venue: str, venues: set[str]) -> None:
    """``<key>.<venue>`` must name a venue the run trades on: settings for any other venue would
    be silently ignored (a misspelt venue is the usual reason)."""
    if venue not in venues:
        trading = ", ".join(sorted(venues)) or "none"
        hint = suggestion(venue, venues)
        raise sec.fail(f"{key}.{venue}", f"no strategy trades on this venue{hint} (venues: {trading})")


# ``sim``: what ``engine.runners.node`` and ``sim.latency`` read, checked here so that a typo is an
# error when the config is read, in every mode
_SIM_KEYS = {"queue_model", "queue_power", "latency", "venues"}
_LATENCY_KEYS = {"feed", "order", "response", "decision_us"}
_SIM_VENUE_KEYS = {"maker_fee", "taker_fee", "supports_modify"}
_UNITS = ("ns", "us", "ms")
#: latency model type -> its fields (``sim.latency.from_config``/``feed_from_config``)
_LATENCY_MODELS = {
    "constant": {"type", *_UNITS},
    "random": {"type", "sigma", "seed", *(f"median_{u}" for u in _UNITS), *(f"min_{u}" for u in _UNITS)},
    "data": {"type", *(f"min_{u}" for u in _UNITS), *(f"clock_offset_{u}" for u in _UNITS)},
}


def _check_sim(sim: Section, venues: set[str]) -> None:
    sim.known(_SIM_KEYS)
    if sim.has("queue_model"):
        sim.str("queue_model")
    if sim.has("queue_power"):
        sim.number("queue_power", positive=True)
    if sim.has("latency"):
        lat = sim.section("latency")
        lat.known(_LATENCY_KEYS)
        for key in ("feed", "order", "response"):
            if lat.has(key):
                _check_latency_model(lat, key, feed=key == "feed")
        if lat.has("decision_us"):
            lat.number("decision_us", minimum=0)
    if sim.has("venues"):
        vs = sim.section("venues")
        for venue in vs.data:
            _known_venue(sim, "venues", venue, venues)
            v = vs.section(venue)
            v.known(_SIM_VENUE_KEYS)
            for fee in ("maker_fee", "taker_fee"):
                if v.has(fee):
                    rate = v.number(fee)
                    if not -0.01 <= rate < 1:
                        raise v.fail(fee, f"must be a fraction such as 0.0002 (0.02%), got {rate!r}")
            if v.has("supports_modify"):
                v.bool("supports_modify")


def _check_latency_model(lat: Section, key: str, feed: bool) -> None:
    value = lat.raw(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise lat.fail(key, f"must be >= 0 ns, got {value!r}")
        return
    m = lat.section(key)
    kind = m.str("type", "constant")
    # a random feed latency is refused by ``sim.latency``, which says why
    kinds = ("constant", "data", "random") if feed else ("constant", "random")
    if kind not in kinds:
        raise m.fail("type", f"must be one of {', '.join(kinds)}, got {kind!r}{suggestion(kind, kinds)}")
    m.known(_LATENCY_MODELS[kind])
    for field_name in sorted(_LATENCY_MODELS[kind] - {"type"}):
        if m.has(field_name):
            if field_name == "seed":
                m.int(field_name)
            elif field_name.startswith("clock_offset_"):
                m.number(field_name)
            else:
                m.number(field_name, minimum=0)


def _exchanges(root: Section, base: Path, venues: set[str]) -> dict[str, Path]:
    """``exchanges: {venue: path}``, or the single ``exchange: path`` of a one-venue config (the
    venue named by the strategies). A named exchange file that holds a credential is refused here,
    before anything connects."""
    out: dict[str, Path] = {}
    if root.has("exchanges"):
        ex = root.section("exchanges")
        for venue in ex.data:
            _known_venue(root, "exchanges", venue, venues)
            out[venue] = resolve_path(ex.str(venue), base)
    if root.has("exchange"):
        strategy_venues = {e.get("venue") for e in root.data.get("strategies", []) if isinstance(e, dict)}
        path = resolve_path(root.str("exchange"), base)
        name = _venue_of(path) or (strategy_venues.pop() if len(strategy_venues) == 1 else None)
        if name is None:
            raise root.fail("exchange", "names one exchange config; with several venues use 'exchanges': {venue: path}")
        out.setdefault(name, path)
    for path in out.values():
        _venue_of(path)
    return out


def _venue_of(path: Path) -> str | None:
    """The venue an exchange file names (None when it cannot be read: its adapter says why when
    it loads it); a file that holds a credential is refused."""
    try:
        data = read_json(path)
    except ConfigError:
        return None
    refuse_secrets(data, str(path))
    venue = data.get("venue")
    return venue if isinstance(venue, str) and venue else None


_LIVE_KEYS = {"unknown_orders", "adopt_owner", "reconcile_timeout_s", "cancel_on_stop"}


def _live(root: Section) -> tuple[ReconcilePolicy | None, bool]:
    if not root.has("live"):
        return None, True
    sec = root.section("live")
    sec.known(_LIVE_KEYS)
    policy = sec.str("unknown_orders", "cancel")
    if policy not in POLICIES:
        raise sec.fail("unknown_orders", f"must be one of {', '.join(POLICIES)}, got {policy!r}")
    owner = sec.str("adopt_owner") if sec.has("adopt_owner") else None
    timeout = sec.number("reconcile_timeout_s", 30.0, positive=True)
    return ReconcilePolicy(policy, owner, timeout), sec.bool("cancel_on_stop", True)
