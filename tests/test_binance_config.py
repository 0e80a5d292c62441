"""config/exchanges/binance.json: defaults, validation errors naming the field, keys from env only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ConfigError
from venues.binance.config import load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "config" / "exchanges" / "binance.json"


def test_shipped_config_points_at_binance() -> None:
    c = load_config(SHIPPED, env={})
    assert c.rest_url == "https://api.binance.com"
    assert c.ws_url == "wss://stream.binance.com:9443"
    assert c.ws_api_url == "wss://ws-api.binance.com:443/ws-api/v3"
    assert c.symbols == ("BTC-USDT",)
    assert c.rate_limits.request_weight_per_minute > 0 and c.rate_limits.orders_per_10s > 0
    assert c.reconnect.max_attempts_per_window <= 300 and c.reconnect.window_s == 300
    assert c.stale_data_timeout_s > 0
    assert c.credentials(env={}) is None
    text = SHIPPED.read_text().lower()
    assert 'secret":' not in text.replace("api_secret_env", "")


def test_keys_come_from_environment_only(tmp_path: Path) -> None:
    c = load_config(SHIPPED, env={})
    creds = c.credentials(env={"BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64})
    assert creds is not None and creds.api_key == "k" * 64
    assert "s" * 10 not in repr(creds)
    with pytest.raises(ConfigError, match="BINANCE_API_KEY"):
        c.require_credentials(env={})
    p = tmp_path / "binance.json"
    p.write_text(json.dumps({"symbols": ["BTC-USDT"], "api_secret": "abc"}))
    with pytest.raises(ConfigError, match="api_secret: API keys must not be stored in config files"):
        load_config(p, env={})


def test_endpoints_overridable() -> None:
    c = load_config(SHIPPED, overrides={"rest_url": "http://127.0.0.1:5"}, env={"BINANCE_WS_URL": "ws://127.0.0.1:6"})
    assert c.rest_url == "http://127.0.0.1:5" and c.ws_url == "ws://127.0.0.1:6"
    c2 = c.with_endpoints("http://127.0.0.1:7/", "ws://127.0.0.1:8", "ws://127.0.0.1:8/ws-api/v3")
    assert c2.rest_url == "http://127.0.0.1:7" and c2.ws_api_url.endswith("/ws-api/v3")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"symbols": []}, "symbols: must be a non-empty list"),
        ({"symbols": ["BTCUSDT"]}, "symbols: 'BTCUSDT' is not in BASE-QUOTE form"),
        ({"rest_url": "ftp://x"}, "rest_url: must be a URL starting with https://"),
        ({"ws_url": 5}, "ws_url: must be a URL"),
        ({"recv_window_ms": 70000}, "recv_window_ms: must be between 1 and 60000"),
        ({"depth_snapshot_limit": 0}, "depth_snapshot_limit: must be between 1 and 5000"),
        ({"depth_update_ms": 250}, "depth_update_ms: Binance diff depth runs at 100 or 1000 ms"),
        ({"stale_data_timeout_s": "5"}, "stale_data_timeout_s: must be a number"),
        ({"order_entry": "fix"}, "order_entry: must be one of"),
        (
            {"reconnect": {"max_attempts_per_window": 301}},
            "reconnect.max_attempts_per_window: must be between 1 and 300",
        ),
        ({"reconnect": {"initial_delay_s": 5, "max_delay_s": 1}}, "reconnect.max_delay_s: must be >="),
        ({"reconnect": {"jiter": 0.1}}, "reconnect.jiter: unknown field"),
        ({"rate_limits": {"safety_margin": 2}}, "rate_limits.safety_margin: must be between"),
        ({"rate_limits": []}, "rate_limits: must be an object"),
        ({"surprise": 1}, "surprise: unknown field"),
        ({"venue": "kraken"}, "venue: must be 'binance'"),
    ],
)
def test_bad_fields_are_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "config/exchanges/binance.json", env={})
    assert str(err.value).startswith("Failed to load configuration from config/exchanges/binance.json: ")
    assert message in str(err.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"symbols": [')
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        load_config(bad)
