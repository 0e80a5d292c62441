"""Typed configs: unknown keys and wrong types name the file and the field (with a suggestion for a
near miss), strategy params are declared and checked, credentials are refused in every config file
at any depth, and what a manifest keeps of a config is redacted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main as hft_main
from engine.config import find_secrets, redact_secrets, refuse_secrets, suggestion, unknown_field
from engine.errors import ConfigError
from engine.logs import register_secret
from engine.marketdata.instruments import load_instruments
from engine.runners.spec import StrategySpec, load_run_spec
from engine.strategy_params import Param, ParamError, Params
from strategies.market_maker import MarketMaker
from strategies.quote_at_touch import QuoteAtTouch
from strategies.taker import TradeFlowTaker

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "config" / "backtests" / "market_maker_sample.json"
PAPER = REPO / "config" / "paper" / "market_maker_binance.json"
LIVE = REPO / "config" / "live" / "market_maker_binance.json"
MM_STRATEGY = REPO / "config" / "strategies" / "market_maker.json"
KEY = "Zq81mNv0TkWx7yHe3RbLpA6sDfGc2JuI"  # what an API key looks like


def _absolute(cfg: dict[str, Any]) -> dict[str, Any]:
    """A shipped config moved to a temporary folder: its relative paths made absolute."""
    if "data" in cfg:
        cfg["data"]["root"] = str(REPO / cfg["data"]["root"])
    if "instruments" in cfg:
        cfg["instruments"] = str(REPO / cfg["instruments"])
    if "exchange" in cfg:
        cfg["exchange"] = str(REPO / cfg["exchange"])
    if "exchanges" in cfg:
        cfg["exchanges"] = {v: str(REPO / p) for v, p in cfg["exchanges"].items()}
    cfg["strategies"] = [str(REPO / s) if isinstance(s, str) else s for s in cfg["strategies"]]
    return cfg


def _write(tmp_path: Path, source: Path, change, name: str = "c.json") -> Path:
    cfg = _absolute(json.loads(source.read_text()))
    change(cfg)
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return path


def _inline_mm(cfg: dict[str, Any], **params: Any) -> None:
    strat = json.loads(MM_STRATEGY.read_text())
    strat["params"].update(params)
    cfg["strategies"] = [strat]


# --- near misses ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field", "meant"),
    [
        (lambda c: c.update(sed=7), "sed", "seed"),
        (lambda c: c["data"].update(symbol=["BTC-USDT"]), "data.symbol", "symbols"),
        (lambda c: c["sim"].update(queue_modle="prob"), "sim.queue_modle", "queue_model"),
        (lambda c: c["sim"]["latency"].update(fed={"type": "constant", "ms": 1}), "sim.latency.fed", "feed"),
        (lambda c: c["sim"]["latency"]["order"].update(sigm=0.3), "sim.latency.order.sigm", "sigma"),
        (lambda c: c["sim"]["latency"].update(response={"type": "constant", "mss": 2}), "sim.latency.response.mss",
         "ms"),
        (lambda c: c["sim"]["venues"]["binance-futures"].update(maker_fe=0.0), "sim.venues.binance-futures.maker_fe",
         "maker_fee"),
        (lambda c: c["sim"]["venues"].update({"binance-futurs": {}}), "sim.venues.binance-futurs", "binance-futures"),
        (lambda c: c["balances"].update({"binance-futurs": {"USDT": 1.0}}), "balances.binance-futurs",
         "binance-futures"),
        (lambda c: c["risk"].update(max_positon_usd=1), "risk.max_positon_usd", "max_position_usd"),
        (lambda c: c.update(strategy_risk={"market_makr": {"max_position_usd": 1}}), "strategy_risk.market_makr",
         "market_maker"),
        (lambda c: c["output"].update(log_order=True), "output.log_order", "log_orders"),
        (lambda c: c.update(live={"unknown_order": "adopt"}), "live.unknown_order", "unknown_orders"),
        (lambda c: c.update(warm={"interval": 250}), "warm.interval", "interval_us"),
        (lambda c: c.update(strategies=[{"strategy_id": "s", "class": "strategies.taker:TradeFlowTaker",
                                         "venue": "binance-futures", "symbols": ["BTC-USDT"], "param": {}}]),
         "strategies[0].param", "params"),
        (lambda c: _inline_mm(c, order_sise=0.01), "strategies[0].params.order_sise", "order_size"),
    ],
)  # fmt: skip
def test_an_unknown_key_names_file_and_field_and_suggests_the_near_miss(tmp_path, change, field, meant):
    path = _write(tmp_path, SAMPLE, change)
    with pytest.raises(ConfigError) as err:
        load_run_spec(path)  # refused when the config is read, before any node is built
    assert err.value.path == str(path)
    assert err.value.reason.startswith(f"{field}: ")
    assert f"did you mean {meant!r}?" in err.value.reason


def test_no_suggestion_when_nothing_is_close() -> None:
    assert suggestion("zzzz", ["maker_fee", "taker_fee"]) == ""
    assert suggestion("Maker_Fee", ["maker_fee"]) == ", did you mean 'maker_fee'?"
    assert unknown_field("colour", {"b", "a"}) == "unknown field (expected one of a, b)"


def test_the_issue_fee_typo_stops_the_backtest_with_one_line(tmp_path, capsys) -> None:
    """``"maker_fe": 0.0`` ran with the default fee and exit 0; now nothing runs."""
    path = _write(tmp_path, SAMPLE, lambda c: c["sim"]["venues"]["binance-futures"].update(maker_fe=0.0))
    out = tmp_path / "run"
    assert hft_main(["backtest", str(path), "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: Failed to load configuration from {path}: sim.venues.binance-futures.maker_fe: unknown field, "
        "did you mean 'maker_fee'? (expected one of maker_fee, supports_modify, taker_fee)\n"
    )
    assert not out.exists()


def _strategy_file_error(tmp_path: Path, **params: object) -> tuple[ConfigError, Path]:
    """The error of a run config whose strategy file (the shipped market maker's, with ``params``
    added) is wrong, and that file."""
    strat = json.loads(MM_STRATEGY.read_text())
    strat["params"].update(params)
    sfile = tmp_path / "mm.json"
    sfile.write_text(json.dumps(strat))
    path = _write(tmp_path, SAMPLE, lambda c: c.update(strategies=[str(sfile)]))
    with pytest.raises(ConfigError) as err:
        load_run_spec(path)
    return err.value, sfile


def test_a_strategy_file_typo_names_the_strategy_file(tmp_path) -> None:
    err, sfile = _strategy_file_error(tmp_path, half_spread_bp=1.0)
    assert err.path == str(sfile)
    assert err.reason.startswith("params.half_spread_bp: unknown field, did you mean 'half_spread_bps'?")


@pytest.mark.parametrize(
    ("source", "mode"), [(SAMPLE, "backtest"), (PAPER, "paper"), (LIVE, "live")]
)  # fmt: skip
def test_every_mode_refuses_a_top_level_typo(tmp_path, source, mode) -> None:
    path = _write(tmp_path, source, lambda c: c.update(strategis=[]))
    with pytest.raises(ConfigError, match=r"strategis: unknown field, did you mean 'strategies'\?"):
        load_run_spec(path, mode=mode)


# --- wrong types ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c.update(seed="7"), "seed: must be an integer, got '7'"),
        (lambda c: c["data"].update(venue=5), "data.venue: must be a non-empty string, got 5"),
        (lambda c: c["sim"].update(queue_power=0), "sim.queue_power: must be > 0, got 0"),
        (lambda c: c["sim"]["latency"]["feed"].update(ms="2"), "sim.latency.feed.ms: must be a number, got '2'"),
        (lambda c: c["sim"]["latency"]["order"].update(type="gauss"),
         "sim.latency.order.type: must be one of constant, random, got 'gauss'"),
        (lambda c: c["sim"]["latency"].update(decision_us=-1), "sim.latency.decision_us: must be >= 0, got -1"),
        (lambda c: c["sim"]["venues"]["binance-futures"].update(maker_fee="0.0"),
         "sim.venues.binance-futures.maker_fee: must be a number, got '0.0'"),
        (lambda c: c["sim"]["venues"]["binance-futures"].update(taker_fee=5),
         "sim.venues.binance-futures.taker_fee: must be a fraction"),
        (lambda c: c["sim"]["venues"]["binance-futures"].update(supports_modify="no"),
         "sim.venues.binance-futures.supports_modify: must be true or false, got 'no'"),
        (lambda c: c.update(strategy_risk=[]), "strategy_risk: must be an object"),
        (lambda c: c["output"].update(mark_interval_ms="1s"), "output.mark_interval_ms: must be a number"),
        (lambda c: _inline_mm(c, order_size=-1), "strategies[0].params.order_size: must be a number > 0, got -1"),
        (lambda c: _inline_mm(c, post_only="yes"), "strategies[0].params.post_only: must be true or false, got 'yes'"),
        (lambda c: _inline_mm(c, refresh_ms=True), "strategies[0].params.refresh_ms: must be a number > 0, got True"),
        (lambda c: _inline_mm(c, skew_bps=-1), "strategies[0].params.skew_bps: must be a number >= 0, got -1"),
        (lambda c: c.update(strategies=[7]), "strategies[0]: must be a path or an object"),
    ],
)  # fmt: skip
def test_a_wrong_type_names_file_and_field(tmp_path, change, reason) -> None:
    path = _write(tmp_path, SAMPLE, change)
    with pytest.raises(ConfigError) as err:
        load_run_spec(path)
    assert err.value.path == str(path)
    assert err.value.reason.startswith(reason)


def test_two_strategies_with_one_id_are_refused(tmp_path) -> None:
    strat = json.loads(MM_STRATEGY.read_text())
    path = _write(tmp_path, SAMPLE, lambda c: c.update(strategies=[strat, dict(strat)]))
    with pytest.raises(ConfigError, match=r"strategies\[1\].strategy_id: 'market_maker' is used by another strategy"):
        load_run_spec(path)


def test_shipped_configs_load_in_their_modes() -> None:
    shipped = [(p, "backtest") for p in sorted((REPO / "config" / "backtests").glob("*.json"))]
    shipped += [(PAPER, "paper"), (LIVE, "live"), (REPO / "config" / "production.json", "paper")]
    shipped += [(REPO / "config" / "production.json", "live")]
    for path, mode in shipped:
        spec = load_run_spec(path, mode=mode) if mode != "backtest" else load_run_spec(path)
        built = [st.build() for st in spec.strategies]
        assert built and all(s.strategy_id for s in built), path
    assert load_instruments(REPO / "config" / "instruments.json")


# --- strategy params ----------------------------------------------------------------------------
def test_each_shipped_strategy_declares_its_params() -> None:
    for cls in (MarketMaker, TradeFlowTaker, QuoteAtTouch):
        schema = cls.params_schema
        assert isinstance(schema, Params) and schema.params
        built = cls("s", "v", ["A-B"], {})
        assert built.params == schema.defaults  # every default filled in, nothing else


def test_params_schema_checks_types_bounds_and_names() -> None:
    schema = Params(
        size=Param("number", 1.0, gt=0),
        count=Param("int", 3, ge=1, le=10),
        side=Param("str", "buy", choices=("buy", "sell")),
        on=Param("bool", True),
    )
    assert schema.parse(None) == {"size": 1.0, "count": 3, "side": "buy", "on": True}
    assert schema.parse({"size": 2, "count": 10}) == {"size": 2, "count": 10, "side": "buy", "on": True}
    cases = [
        ({"size": 0}, "params.size: must be a number > 0, got 0"),
        ({"size": float("nan")}, "params.size: must be a number > 0, got nan"),
        ({"count": 2.0}, "params.count: must be an integer >= 1 and <= 10, got 2.0"),
        ({"count": 11}, "params.count: must be an integer >= 1 and <= 10, got 11"),
        ({"side": "hold"}, "params.side: must be one of 'buy', 'sell', got 'hold'"),
        ({"on": 1}, "params.on: must be true or false, got 1"),
        ({"sise": 1}, "params.sise: unknown field, did you mean 'size'? (expected one of count, on, side, size)"),
        ([1], "params: must be an object, got list"),
    ]
    for given, message in cases:
        with pytest.raises(ParamError) as err:
            schema.parse(given)  # type: ignore[arg-type]
        assert str(err.value) == message
        assert isinstance(err.value, ValueError)  # code that builds strategies by hand sees a ValueError


def test_a_strategy_built_in_code_reports_the_param_as_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        StrategySpec("t", TradeFlowTaker, "v", ["A-B"], {"threshhold": 3.0}, "<test>").build()
    assert err.value.reason.startswith("params.threshhold: unknown field, did you mean 'threshold'?")
    with pytest.raises(ValueError, match=r"params.cooldown_ms: must be a number >= 0, got -1"):
        TradeFlowTaker("t", "v", ["A-B"], {"cooldown_ms": -1})


# --- secrets ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "mode", "change", "field"),
    [
        (SAMPLE, "backtest", lambda c: c.update(api_key=KEY), "api_key"),
        (SAMPLE, "backtest", lambda c: c["sim"]["venues"]["binance-futures"].update(apiKey=KEY),
         "sim.venues.binance-futures.apiKey"),
        (SAMPLE, "backtest", lambda c: _inline_mm(c, api_secret=KEY), "strategies[0].params.api_secret"),
        (PAPER, "paper", lambda c: c["strategies"][0]["params"].update(API_SECRET=KEY),
         "strategies[0].params.API_SECRET"),
        (PAPER, "paper", lambda c: c.update(api_key=KEY, api_secret=KEY), "api_key"),
        (LIVE, "live", lambda c: c["live"].update(credentials=[{"passphrase": KEY}]), "live.credentials[0].passphrase"),
        (LIVE, "live", lambda c: c.update(exchanges={"binance": {"api-secret": KEY}}), "exchanges.binance.api-secret"),
    ],
)  # fmt: skip
def test_a_secret_anywhere_in_a_run_config_is_refused(tmp_path, source, mode, change, field) -> None:
    path = _write(tmp_path, source, change)
    with pytest.raises(ConfigError) as err:
        load_run_spec(path, mode=mode)
    assert err.value.path == str(path)
    assert err.value.reason.startswith(f"{field}: API keys must not be stored in config files")
    assert KEY not in str(err.value)


def test_a_secret_in_a_strategy_file_is_refused_naming_that_file(tmp_path) -> None:
    err, sfile = _strategy_file_error(tmp_path, nested={"deeper": [{"secret_key": KEY}]})
    assert err.path == str(sfile)
    assert err.reason.startswith("params.nested.deeper[0].secret_key: API keys must not be stored")


def test_a_secret_in_an_exchange_file_a_paper_config_names_is_refused(tmp_path) -> None:
    exchange = json.loads((REPO / "config" / "exchanges" / "binance.json").read_text())
    exchange["rate_limits"]["api_secret"] = KEY
    efile = tmp_path / "binance.json"
    efile.write_text(json.dumps(exchange))
    path = _write(tmp_path, PAPER, lambda c: c.update(exchange=str(efile)))
    with pytest.raises(ConfigError) as err:
        load_run_spec(path, mode="paper")
    assert err.value.path == str(efile)
    assert err.value.reason.startswith("rate_limits.api_secret: API keys must not be stored in config files")


def test_a_secret_in_the_instrument_file_is_refused(tmp_path) -> None:
    doc = json.loads((REPO / "config" / "instruments.json").read_text())
    doc["instruments"][1]["token"] = KEY
    path = tmp_path / "instruments.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as err:
        load_instruments(path)
    assert err.value.reason.startswith("instruments[1].token: API keys must not be stored in config files")
    assert KEY not in str(err.value)


def test_the_instrument_file_suggests_near_misses(tmp_path) -> None:
    doc = json.loads((REPO / "config" / "instruments.json").read_text())
    doc["instruments"][0]["tik"] = doc["instruments"][0].pop("tick")
    path = tmp_path / "instruments.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"instruments\[0\].tik: unknown field, did you mean 'tick'\?"):
        load_instruments(path)
    path.write_text(json.dumps({"instruments": [], "instrumentz": []}))
    with pytest.raises(ConfigError, match=r"instrumentz: unknown field, did you mean 'instruments'\?"):
        load_instruments(path)


def test_the_backtest_cli_refuses_a_secret_in_one_line_and_writes_nothing(tmp_path, capsys) -> None:
    path = _write(tmp_path, SAMPLE, lambda c: _inline_mm(c, api_key=KEY))
    out = tmp_path / "run"
    assert hft_main(["backtest", str(path), "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "strategies[0].params.api_key: API keys must not be stored" in err
    assert KEY not in err and not out.exists()


def test_find_and_refuse_secrets_at_any_depth() -> None:
    cfg = {
        "a": {"b": [{"c": 1}, {"ApiKey": "x"}]},
        "api_key_env": "BINANCE_API_KEY",  # the name of a variable is not a credential
        "key": "not refused alone",
        "password": "p",
    }
    assert find_secrets(cfg) == ["a.b[1].ApiKey", "password"]
    with pytest.raises(ConfigError, match=r"a.b\[1\].ApiKey: API keys must not be stored in config files; set X"):
        refuse_secrets(cfg, "f.json", "set X")
    refuse_secrets({"api_key_env": "K", "api_secret_env": "S"}, "f.json")  # nothing to refuse


def test_redacted_copies_of_other_shapes() -> None:
    register_secret(KEY)
    cfg = {
        "name": "run",
        "API_KEY": KEY,
        "nested": [{"Api-Secret": {"deep": KEY}}, ("passphrase", {"passphrase": 1234})],
        "note": f"signature={'a' * 40} and {KEY} pasted",
        "api_key_env": "BINANCE_API_KEY",
        "numbers": [1, 2.5, None, True],
    }
    before = json.dumps(cfg, default=list)
    red = redact_secrets(cfg)
    assert json.dumps(cfg, default=list) == before  # the original is not touched
    assert red["API_KEY"] == "***"
    assert red["nested"][0] == {"Api-Secret": "***"}
    assert red["nested"][1] == ["passphrase", {"passphrase": "***"}]
    assert red["note"] == "signature=*** and *** pasted"  # labelled and exact values in text
    assert red["api_key_env"] == "BINANCE_API_KEY" and red["numbers"] == [1, 2.5, None, True]
    assert KEY not in json.dumps(red)
