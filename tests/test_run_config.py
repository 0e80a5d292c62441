"""Run configs refuse what they do not know: a typo must not run with a default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.runners.spec import load_run_spec

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "config" / "backtests" / "market_maker_sample.json"


def _write(tmp_path: Path, change) -> Path:
    cfg = json.loads(SAMPLE.read_text())
    change(cfg)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda c: c.update(sed=7), "sed"),
        (lambda c: c["data"].update(symbol=["BTC-USDT"]), "data.symbol"),
        (lambda c: c["sim"].update(queue_modle="prob"), "sim.queue_modle"),
        (lambda c: c["sim"]["latency"].update(fed={"type": "constant", "ms": 1}), "sim.latency.fed"),
        (lambda c: c["sim"]["venues"]["binance-futures"].update(maker_fe=0.0), "sim.venues.binance-futures.maker_fe"),
        (lambda c: c["output"].update(log_order=True), "output.log_order"),
        (lambda c: c.update(live={"unknown_order": "adopt"}), "live.unknown_order"),
        (lambda c: c.update(warm={"interval": 250}), "warm.interval"),
        (lambda c: c.update(strategies=[{"strategy_id": "s", "class": "strategies.taker:Taker", "venue": "v",
                                         "symbols": ["A-B"], "param": {}}]), "strategies[0].param"),
    ],
)  # fmt: skip
def test_an_unknown_key_is_named_with_its_file_and_the_run_does_not_start(tmp_path, change, field):
    path = _write(tmp_path, change)
    with pytest.raises(ConfigError) as err:
        load_run_spec(path)  # every section is checked when the config is read
    assert str(err.value).startswith(f"Failed to load configuration from {path}: {field}: unknown field")
