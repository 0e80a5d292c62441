"""``config/exchanges/coinbase.json``: load, validate, and read the API keys from the environment.

Two Coinbase hosts (README): market data from Advanced Trade's public WebSocket (``ws_url``),
instruments, orders and account queries on Coinbase Exchange's REST API (``rest_url``) with the
key + secret + passphrase the operator guide describes. Keys never live in files: the config names
the environment variables (``COINBASE_API_KEY`` / ``COINBASE_API_SECRET`` /
``COINBASE_API_PASSPHRASE`` by default) and a file that carries a credential is refused.
Order and fill events come from Exchange's authenticated ``user`` channel (``user_ws_url``).
Endpoints default to production; ``overrides`` (tests, paper runs against the fake) or the
environment variables ``COINBASE_REST_URL`` / ``COINBASE_WS_URL`` / ``COINBASE_USER_WS_URL``
replace them. Every problem is a
``ConfigError`` naming the file and the dotted key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Section, refuse_secrets
from engine.errors import ConfigError
from venues.coinbase.symbols import is_product_id
from venues.common.backoff import BackoffSettings
from venues.common.config import RECONNECT_KEYS, apply_endpoints, env_keys, read_json

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "exchanges" / "coinbase.json"
REST_URL = "https://api.exchange.coinbase.com"
SANDBOX_REST_URL = "https://api-public.sandbox.exchange.coinbase.com"
WS_URL = "wss://advanced-trade-ws.coinbase.com"
USER_WS_URL = "wss://ws-feed.exchange.coinbase.com"
_ENDPOINT_ENV = {"rest_url": "COINBASE_REST_URL", "ws_url": "COINBASE_WS_URL", "user_ws_url": "COINBASE_USER_WS_URL"}


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Coinbase Exchange REST (CB-EX rest-api/rate-limits): token buckets per profile (private)
    and per IP (public); kept to locally with a margin, a 429 waits ``Retry-After``."""

    private_per_s: float = 15.0
    private_burst: int = 30
    public_per_s: float = 10.0
    public_burst: int = 15
    safety_margin: float = 0.1


@dataclass(frozen=True, slots=True)
class Fees:
    maker: float = 0.004
    taker: float = 0.006


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str
    api_secret: str
    passphrase: str

    def __repr__(self) -> str:  # never print the secret or the passphrase
        return f"Credentials(api_key={self.api_key[:4]}..., api_secret=***, passphrase=***)"


@dataclass(frozen=True, slots=True)
class CoinbaseConfig:
    rest_url: str = REST_URL
    ws_url: str = WS_URL
    #: Coinbase Exchange's feed, for the authenticated ``user`` channel (our orders and fills)
    user_ws_url: str = USER_WS_URL
    #: poll open orders and fills every this many seconds while orders are open (a safety net
    #: under the user channel; the only source of order state when the channel is down)
    poll_interval_s: float = 1.0
    symbols: tuple[str, ...] = ("BTC-USD",)
    api_key_env: str = "COINBASE_API_KEY"
    api_secret_env: str = "COINBASE_API_SECRET"
    api_passphrase_env: str = "COINBASE_API_PASSPHRASE"
    #: a book is stale when the connection brought nothing (heartbeats included) for this long
    stale_data_timeout_s: float = 3.0
    #: no heartbeat (nor anything else) for this long: the connection is dead, reconnect
    heartbeat_timeout_s: float = 5.0
    trade_band_pct: float = 10.0
    http_timeout_s: float = 10.0
    order_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    reconnect: BackoffSettings = field(default_factory=BackoffSettings)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    fees: Fees = field(default_factory=Fees)
    path: str = ""

    def credentials(self, env: Mapping[str, str] | None = None) -> Credentials | None:
        """Keys from the environment, or None when any is unset (market data needs none)."""
        keys = env_keys(env, self.api_key_env, self.api_secret_env, self.api_passphrase_env)
        return None if keys is None else Credentials(*keys)

    def require_credentials(self, env: Mapping[str, str] | None = None) -> Credentials:
        creds = self.credentials(env)
        if creds is None:
            raise ConfigError(
                self.path or str(DEFAULT_PATH),
                f"api keys: set {self.api_key_env}, {self.api_secret_env} and {self.api_passphrase_env} "
                "in the environment to trade on coinbase (Coinbase requires the API passphrase too)",
            )
        return creds


_TOP = (
    "venue",
    "description",
    "rest_url",
    "ws_url",
    "user_ws_url",
    "poll_interval_s",
    "symbols",
    "api_key_env",
    "api_secret_env",
    "api_passphrase_env",
    "stale_data_timeout_s",
    "heartbeat_timeout_s",
    "trade_band_pct",
    "http_timeout_s",
    "order_timeout_s",
    "websocket",
    "reconnect",
    "rate_limits",
    "fees",
)


def _url(s: Section, key: str, default: str, schemes: tuple[str, ...]) -> str:
    v = s.str(key, default)
    if not v.startswith(schemes) or len(v) <= len(schemes[0]) + 3:
        raise s.fail(key, f"must be a URL starting with {' or '.join(schemes)}, got {v!r}")
    return v.rstrip("/")


def _range(s: Section, key: str, default: float, lo: float, hi: float) -> float:
    v = s.number(key, default)
    if not lo <= v <= hi:
        raise s.fail(key, f"must be between {lo} and {hi}, got {v:g}")
    return v


def parse_config(
    data: Any, path: str = "<config>", overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> CoinbaseConfig:
    top = Section(data, path)
    refuse_secrets(data, path, "set COINBASE_API_KEY/COINBASE_API_SECRET/COINBASE_API_PASSPHRASE in the environment")
    top.known(_TOP)
    data = dict(data)
    apply_endpoints(data, path, _ENDPOINT_ENV, overrides, _TOP, env)
    top = Section(data, path)
    if data.get("venue", "coinbase") != "coinbase":
        raise top.fail("venue", f"must be 'coinbase', got {data.get('venue')!r}")
    symbols = top.str_list("symbols", ["BTC-USD"])
    if not symbols:
        raise top.fail("symbols", 'must list at least one product, like ["BTC-USD"]')
    for sym in symbols:
        if not is_product_id(sym):
            raise top.fail("symbols", f"{sym!r} is not a Coinbase product id like 'BTC-USD'")
    if len(set(symbols)) != len(symbols):
        raise top.fail("symbols", "lists a product twice")
    ws = top.section("websocket")
    ws.known(("ping_interval_s", "ping_timeout_s"))
    rc = top.section("reconnect")
    rc.known(RECONNECT_KEYS)
    rl = top.section("rate_limits")
    rl.known(("private_per_s", "private_burst", "public_per_s", "public_burst", "safety_margin"))
    fees = top.section("fees")
    fees.known(("maker", "taker"))
    initial = _range(rc, "initial_delay_s", 0.5, 0.0, 3600.0)
    max_delay = _range(rc, "max_delay_s", 30.0, 0.0, 3600.0)
    if max_delay < initial:
        raise rc.fail("max_delay_s", f"must be >= reconnect.initial_delay_s ({initial:g}), got {max_delay:g}")
    stale = _range(top, "stale_data_timeout_s", 3.0, 0.05, 3600.0)
    return CoinbaseConfig(
        rest_url=_url(top, "rest_url", REST_URL, ("https://", "http://")),
        ws_url=_url(top, "ws_url", WS_URL, ("wss://", "ws://")),
        user_ws_url=_url(top, "user_ws_url", USER_WS_URL, ("wss://", "ws://")),
        poll_interval_s=_range(top, "poll_interval_s", 1.0, 0.01, 600.0),
        symbols=tuple(symbols),
        api_key_env=top.str("api_key_env", "COINBASE_API_KEY"),
        api_secret_env=top.str("api_secret_env", "COINBASE_API_SECRET"),
        api_passphrase_env=top.str("api_passphrase_env", "COINBASE_API_PASSPHRASE"),
        stale_data_timeout_s=stale,
        heartbeat_timeout_s=_range(top, "heartbeat_timeout_s", max(5.0, stale), 0.1, 3600.0),
        trade_band_pct=_range(top, "trade_band_pct", 10.0, 0.1, 1000.0),
        http_timeout_s=_range(top, "http_timeout_s", 10.0, 0.05, 120.0),
        order_timeout_s=_range(top, "order_timeout_s", 10.0, 0.05, 120.0),
        ping_interval_s=_range(ws, "ping_interval_s", 20.0, 1.0, 600.0),
        ping_timeout_s=_range(ws, "ping_timeout_s", 20.0, 1.0, 600.0),
        reconnect=BackoffSettings(
            initial_s=initial,
            max_s=max_delay,
            factor=_range(rc, "factor", 2.0, 1.0, 10.0),
            jitter=_range(rc, "jitter", 0.5, 0.0, 1.0),
            max_attempts_per_window=int(_range(rc, "max_attempts_per_window", 300, 1, 10_000)),
            window_s=_range(rc, "window_s", 300.0, 1.0, 3600.0),
        ),
        rate_limits=RateLimits(
            private_per_s=_range(rl, "private_per_s", 15.0, 0.1, 1000.0),
            private_burst=int(_range(rl, "private_burst", 30, 1, 10_000)),
            public_per_s=_range(rl, "public_per_s", 10.0, 0.1, 1000.0),
            public_burst=int(_range(rl, "public_burst", 15, 1, 10_000)),
            safety_margin=_range(rl, "safety_margin", 0.1, 0.0, 0.9),
        ),
        fees=Fees(maker=_range(fees, "maker", 0.004, -0.01, 0.05), taker=_range(fees, "taker", 0.006, -0.01, 0.05)),
        path=path,
    )


def load_config(
    path: str | os.PathLike[str] = DEFAULT_PATH,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> CoinbaseConfig:
    """Read and validate the Coinbase config; ``ConfigError(path, "<field>: <reason>")`` on any problem."""
    return parse_config(read_json(path), str(Path(path)), overrides, env)
