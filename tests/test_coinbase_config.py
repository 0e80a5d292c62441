"""``config/exchanges/coinbase.json``: production endpoints by default, keys only from the
environment, every mistake a ``ConfigError`` naming the file and the dotted key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.runners import registry
from venues.coinbase.config import REST_URL, USER_WS_URL, WS_URL, load_config, parse_config


def test_shipped_config_is_production_and_holds_no_keys() -> None:
    c = load_config(env={})
    urls = (c.rest_url, c.ws_url, c.user_ws_url)
    assert urls == (REST_URL, WS_URL, USER_WS_URL)
    assert urls == (
        "https://api.exchange.coinbase.com",
        "wss://advanced-trade-ws.coinbase.com",
        "wss://ws-feed.exchange.coinbase.com",
    )
    assert c.credentials({}) is None
    assert registry.entry("coinbase").config is not None and load_config(registry.entry("coinbase").config).symbols


def test_keys_come_from_the_environment_and_are_never_printed() -> None:
    c = load_config(env={})
    creds = c.credentials(
        {"COINBASE_API_KEY": "key-123456", "COINBASE_API_SECRET": "c2VjcmV0", "COINBASE_API_PASSPHRASE": "phrase-xyz"}
    )
    assert creds is not None and creds.passphrase == "phrase-xyz"
    assert "c2VjcmV0" not in repr(creds) and "phrase-xyz" not in repr(creds)
    with pytest.raises(ConfigError, match="COINBASE_API_PASSPHRASE"):
        c.require_credentials({"COINBASE_API_KEY": "k", "COINBASE_API_SECRET": "s"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"passphrase": "x"}, "passphrase: API keys must not be stored in config files"),
        ({"rate_limits": {"private_per_sec": 5}}, "rate_limits.private_per_sec: unknown field"),
        ({"reconnect": {"max_delay_s": 0.1, "initial_delay_s": 1}}, "reconnect.max_delay_s: must be >="),
        ({"symbols": ["BTCUSD"]}, "symbols: 'BTCUSD' is not a Coinbase product id"),
        ({"symbols": ["BTC-USD", "BTC-USD"]}, "symbols: lists a product twice"),
        ({"rest_url": "ftp://x"}, "rest_url: must be a URL"),
        ({"stale_data_timeout_s": 0}, "stale_data_timeout_s: must be between"),
        ({"venue": "kraken"}, "venue: must be 'coinbase'"),
        ({"websocket": {"ping": 1}}, "websocket.ping: unknown field"),
    ],
)
def test_bad_configs_name_file_and_key(data: dict, message: str, tmp_path: Path) -> None:
    path = tmp_path / "coinbase.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_endpoint_overrides_from_the_environment() -> None:
    c = parse_config(
        {}, "x.json", env={"COINBASE_REST_URL": "http://127.0.0.1:1", "COINBASE_WS_URL": "ws://127.0.0.1:1"}
    )
    assert (c.rest_url, c.ws_url) == ("http://127.0.0.1:1", "ws://127.0.0.1:1")


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        load_config(bad)
