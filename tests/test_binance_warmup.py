"""The depth path is compiled before the feed connects (``venues.binance.warmup``): the synthetic
messages take the same fast path a real in-sync diff takes, and leave no trace."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.marketdata.instruments import load_instruments
from venues.binance import depth_apply
from venues.binance.warmup import warm_depth_path

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("symbol", ["BTC-USDT", "ETH-USDT"])
def test_the_fast_depth_path_takes_the_synthetic_diff(symbol: str, caplog) -> None:
    inst = load_instruments(REPO / "config" / "instruments.json")[("binance", symbol)]
    with caplog.at_level(logging.DEBUG):
        took = warm_depth_path(inst)  # raises when the fast path did not take the in-sync diff
    assert took >= 0
    assert depth_apply.apply_depth.signatures  # compiled (or loaded from the cache) by now
    assert not [r for r in caplog.records if "orderbook synced" in r.getMessage()]  # a scratch book
