"""``config/exchanges/kraken.json``: load, validate, and read the API keys from the environment.

Keys never live in files: the config names the environment variables that hold them
(``KRAKEN_API_KEY`` / ``KRAKEN_API_SECRET``) and a file that carries a key is refused. Endpoints
default to Kraken's production URLs; ``overrides`` (tests, paper runs against the fake) or the
environment variables ``KRAKEN_REST_URL``, ``KRAKEN_WS_URL``, ``KRAKEN_WS_AUTH_URL`` replace them.
Every unknown key is a ``ConfigError`` naming the file and the dotted key.

Rate limits follow Kraken's documented tiers (KDOCS guides/spot-rest-ratelimits,
guides/spot-ratelimits): the REST counter *decays* (Starter: max 15, -0.33/s), the trading counter
per pair decays by 1/s (Starter) with a threshold of 60.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from venues.common.backoff import BackoffSettings
from venues.common.config import RECONNECT_KEYS, Credentials, Reader, env_keys, read_json
from venues.kraken.symbols import is_canonical

DEFAULT_PATH = Path("config/exchanges/kraken.json")
REST_URL = "https://api.kraken.com"
WS_URL = "wss://ws.kraken.com/v2"
WS_AUTH_URL = "wss://ws-auth.kraken.com/v2"
_ENDPOINT_ENV = {"rest_url": "KRAKEN_REST_URL", "ws_url": "KRAKEN_WS_URL", "ws_auth_url": "KRAKEN_WS_AUTH_URL"}
BOOK_DEPTHS = (10, 25, 100, 500, 1000)

#: tier -> (REST counter max, REST decay/s, trading counter threshold, trading decay/s)
TIERS: dict[str, tuple[float, float, float, float]] = {
    "starter": (15.0, 0.33, 60.0, 1.0),
    "intermediate": (20.0, 0.5, 125.0, 2.34),
    "pro": (20.0, 1.0, 180.0, 3.75),
}


@dataclass(frozen=True, slots=True)
class RateLimits:
    tier: str = "starter"
    rest_max: float = 15.0
    rest_decay_per_s: float = 0.33
    order_max: float = 60.0
    order_decay_per_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Fees:
    maker: float = 0.0025
    taker: float = 0.004


@dataclass(frozen=True, slots=True)
class KrakenConfig:
    rest_url: str = REST_URL
    ws_url: str = WS_URL
    ws_auth_url: str = WS_AUTH_URL
    symbols: tuple[str, ...] = ("BTC-USD",)
    api_key_env: str = "KRAKEN_API_KEY"
    api_secret_env: str = "KRAKEN_API_SECRET"
    book_depth: int = 10
    stale_data_timeout_s: float = 5.0
    #: Kraken sends a heartbeat every second when nothing else flows; it recommends reconnecting
    #: when nothing at all arrived for a few seconds (KDOCS guides/websockets/reconnection)
    silence_reconnect_s: float = 10.0
    trade_band_pct: float = 10.0
    http_timeout_s: float = 10.0
    order_timeout_s: float = 10.0
    #: the nonce high-water mark (relative paths: to the working directory)
    nonce_file: str = "data/state/kraken_nonce"
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    reconnect: BackoffSettings = field(default_factory=BackoffSettings)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    fees: Fees = field(default_factory=Fees)
    path: str = ""

    def credentials(self, env: Mapping[str, str] | None = None) -> Credentials | None:
        keys = env_keys(env, self.api_key_env, self.api_secret_env)
        return None if keys is None else Credentials(*keys)

    def require_credentials(self, env: Mapping[str, str] | None = None) -> Credentials:
        creds = self.credentials(env)
        if creds is None:
            raise ConfigError(
                self.path or str(DEFAULT_PATH),
                f"api keys: set {self.api_key_env} and {self.api_secret_env} in the environment to trade on kraken",
            )
        return creds


_TOP = {
    "venue",
    "description",
    "rest_url",
    "ws_url",
    "ws_auth_url",
    "symbols",
    "api_key_env",
    "api_secret_env",
    "book_depth",
    "stale_data_timeout_s",
    "silence_reconnect_s",
    "trade_band_pct",
    "http_timeout_s",
    "order_timeout_s",
    "nonce_file",
    "websocket",
    "reconnect",
    "rate_limits",
    "fees",
}


def parse_config(
    data: Any, path: str = "<config>", overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> KrakenConfig:
    """Validate a decoded config object; every problem is a ``ConfigError`` naming the field."""
    r = Reader(path)
    data = r.top(
        data, "kraken", _TOP, "set KRAKEN_API_KEY/KRAKEN_API_SECRET in the environment", _ENDPOINT_ENV, overrides, env
    )

    symbols = r.symbols(data, "BTC-USD", is_canonical)

    ws = r.obj(data, "websocket", {"ping_interval_s", "ping_timeout_s"})
    rc = r.obj(data, "reconnect", RECONNECT_KEYS)
    rl = r.obj(data, "rate_limits", {"tier", "rest_max", "rest_decay_per_s", "order_max", "order_decay_per_s"})
    fees = r.obj(data, "fees", {"maker", "taker"})

    backoff = r.backoff(rc, 150, 10_000, 600.0)
    tier = r.string(rl, "tier", "starter", tuple(TIERS))
    t_rest, t_decay, t_order, t_odecay = TIERS[tier]
    limits = RateLimits(
        tier=tier,
        rest_max=r.num(rl, "rest_max", t_rest, 1.0, 1000.0, "rate_limits.rest_max"),
        rest_decay_per_s=r.num(rl, "rest_decay_per_s", t_decay, 0.01, 100.0, "rate_limits.rest_decay_per_s"),
        order_max=r.num(rl, "order_max", t_order, 1.0, 10_000.0, "rate_limits.order_max"),
        order_decay_per_s=r.num(rl, "order_decay_per_s", t_odecay, 0.01, 1000.0, "rate_limits.order_decay_per_s"),
    )
    depth = r.int_(data, "book_depth", 10, 10, 1000)
    if depth not in BOOK_DEPTHS:
        raise r.fail("book_depth", f"Kraken books come in depths {list(BOOK_DEPTHS)}, got {depth}")
    stale = r.num(data, "stale_data_timeout_s", 5.0, 0.01, 3600.0)
    return KrakenConfig(
        rest_url=r.url(data, "rest_url", REST_URL, ("https://", "http://")),
        ws_url=r.url(data, "ws_url", WS_URL, ("wss://", "ws://")),
        ws_auth_url=r.url(data, "ws_auth_url", WS_AUTH_URL, ("wss://", "ws://")),
        symbols=symbols,
        api_key_env=r.string(data, "api_key_env", "KRAKEN_API_KEY"),
        api_secret_env=r.string(data, "api_secret_env", "KRAKEN_API_SECRET"),
        book_depth=depth,
        stale_data_timeout_s=stale,
        silence_reconnect_s=r.num(data, "silence_reconnect_s", max(10.0, stale * 2), 0.05, 86400.0),
        trade_band_pct=r.num(data, "trade_band_pct", 10.0, 0.1, 1000.0),
        http_timeout_s=r.num(data, "http_timeout_s", 10.0, 0.05, 120.0),
        order_timeout_s=r.num(data, "order_timeout_s", 10.0, 0.05, 120.0),
        nonce_file=r.string(data, "nonce_file", "data/state/kraken_nonce"),
        ping_interval_s=r.num(ws, "ping_interval_s", 20.0, 1.0, 600.0, "websocket.ping_interval_s"),
        ping_timeout_s=r.num(ws, "ping_timeout_s", 20.0, 1.0, 600.0, "websocket.ping_timeout_s"),
        reconnect=backoff,
        rate_limits=limits,
        fees=Fees(
            maker=r.num(fees, "maker", 0.0025, -0.01, 0.05, "fees.maker"),
            taker=r.num(fees, "taker", 0.004, -0.01, 0.05, "fees.taker"),
        ),
        path=path,
    )


def load_config(
    path: str | os.PathLike[str] = DEFAULT_PATH,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> KrakenConfig:
    """Read and validate the Kraken config; ``ConfigError(path, "<field>: <reason>")`` on any problem."""
    return parse_config(read_json(path), str(Path(path)), overrides, env)
