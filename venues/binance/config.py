"""``config/exchanges/binance.json``: load, validate, and read the API keys from the environment.

Keys never live in files: the config names the environment variables that hold them
(``BINANCE_API_KEY`` / ``BINANCE_API_SECRET`` by default) and a file that carries a key is refused.
Endpoints default to Binance's production URLs; ``overrides`` (tests, paper runs against the
fake) or the environment variables ``BINANCE_REST_URL``, ``BINANCE_WS_URL``, ``BINANCE_WS_API_URL``
replace them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from venues.binance.symbols import is_canonical
from venues.common.backoff import BackoffSettings
from venues.common.config import RECONNECT_KEYS, Credentials, Reader, env_keys, read_json

DEFAULT_PATH = Path("config/exchanges/binance.json")
REST_URL = "https://api.binance.com"
WS_URL = "wss://stream.binance.com:9443"
WS_API_URL = "wss://ws-api.binance.com:443/ws-api/v3"
_ENDPOINT_ENV = {"rest_url": "BINANCE_REST_URL", "ws_url": "BINANCE_WS_URL", "ws_api_url": "BINANCE_WS_API_URL"}


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Local limits. Binance's live values come from exchangeInfo; these are the ceiling we keep
    to before it answers (and the values used when exchangeInfo does not say)."""

    request_weight_per_minute: int = 6000
    orders_per_10s: int = 50
    orders_per_day: int = 160000
    #: fraction of each limit held back for requests we cannot see (other processes, the WS API)
    safety_margin: float = 0.1
    #: lower our limits to exchangeInfo's when those are lower
    use_exchange_info: bool = True


@dataclass(frozen=True, slots=True)
class Fees:
    maker: float = 0.001
    taker: float = 0.001


@dataclass(frozen=True, slots=True)
class BinanceConfig:
    rest_url: str = REST_URL
    ws_url: str = WS_URL
    ws_api_url: str = WS_API_URL
    symbols: tuple[str, ...] = ("BTC-USDT",)
    api_key_env: str = "BINANCE_API_KEY"
    api_secret_env: str = "BINANCE_API_SECRET"
    recv_window_ms: int = 5000
    depth_snapshot_limit: int = 1000
    depth_update_ms: int = 100
    stale_data_timeout_s: float = 5.0
    #: the largest plausible step of the depth stream's update ids: ``u - U`` of one diff, a jump
    #: past the book's id, a snapshot's distance from the buffered diffs (``book_sync``). Real
    #: BTCUSDT: at most 1,465 ids in one 100 ms message
    max_update_id_jump: int = 1_000_000
    #: trades printed further than this from the book's mid (percent) are refused (``bad_trade``)
    trade_band_pct: float = 10.0
    #: reconnect when the market-data socket has been silent this long
    silence_reconnect_s: float = 30.0
    order_entry: str = "rest"  # rest | ws
    #: raw keep-alive connections for REST order entry (0: orders go through aiohttp)
    order_connections: int = 2
    order_timeout_s: float = 10.0
    new_order_resp_type: str = "FULL"
    http_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    max_connection_age_s: float = 23.5 * 3600
    reconnect: BackoffSettings = field(default_factory=BackoffSettings)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    fees: Fees = field(default_factory=Fees)
    path: str = ""

    def with_endpoints(self, rest_url: str, ws_url: str, ws_api_url: str) -> BinanceConfig:
        return replace(self, rest_url=rest_url.rstrip("/"), ws_url=ws_url.rstrip("/"), ws_api_url=ws_api_url)

    def credentials(self, env: Mapping[str, str] | None = None) -> Credentials | None:
        """Keys from the environment, or None when either is unset (market data needs none)."""
        keys = env_keys(env, self.api_key_env, self.api_secret_env)
        return None if keys is None else Credentials(*keys)

    def require_credentials(self, env: Mapping[str, str] | None = None) -> Credentials:
        creds = self.credentials(env)
        if creds is None:
            raise ConfigError(
                self.path or str(DEFAULT_PATH),
                f"api keys: set {self.api_key_env} and {self.api_secret_env} in the environment to trade on binance",
            )
        return creds


_TOP = {
    "venue",
    "description",
    "rest_url",
    "ws_url",
    "ws_api_url",
    "symbols",
    "api_key_env",
    "api_secret_env",
    "recv_window_ms",
    "depth_snapshot_limit",
    "depth_update_ms",
    "stale_data_timeout_s",
    "max_update_id_jump",
    "trade_band_pct",
    "silence_reconnect_s",
    "order_entry",
    "order_connections",
    "order_timeout_s",
    "new_order_resp_type",
    "http_timeout_s",
    "websocket",
    "reconnect",
    "rate_limits",
    "fees",
}


def parse_config(
    data: Any, path: str = "<config>", overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> BinanceConfig:
    """Validate a decoded config object; every problem is a ``ConfigError`` naming the field."""
    r = Reader(path)
    data = r.top(
        data,
        "binance",
        _TOP,
        "set BINANCE_API_KEY/BINANCE_API_SECRET in the environment",
        _ENDPOINT_ENV,
        overrides,
        env,
    )

    symbols = r.symbols(data, "BTC-USDT", is_canonical)

    ws = r.obj(data, "websocket", {"ping_interval_s", "ping_timeout_s", "max_connection_age_s"})
    rc = r.obj(data, "reconnect", RECONNECT_KEYS)
    rl = r.obj(
        data,
        "rate_limits",
        {"request_weight_per_minute", "orders_per_10s", "orders_per_day", "safety_margin", "use_exchange_info"},
    )
    fees = r.obj(data, "fees", {"maker", "taker"})

    backoff = r.backoff(rc, 300, 300, 300.0)
    use_ei = rl.get("use_exchange_info", True)
    if not isinstance(use_ei, bool):
        raise r.fail("rate_limits.use_exchange_info", f"must be true or false, got {use_ei!r}")
    limits = RateLimits(
        request_weight_per_minute=r.int_(
            rl, "request_weight_per_minute", 6000, 10, 1_000_000, "rate_limits.request_weight_per_minute"
        ),
        orders_per_10s=r.int_(rl, "orders_per_10s", 50, 1, 100_000, "rate_limits.orders_per_10s"),
        orders_per_day=r.int_(rl, "orders_per_day", 160000, 1, 10_000_000, "rate_limits.orders_per_day"),
        safety_margin=r.num(rl, "safety_margin", 0.1, 0.0, 0.9, "rate_limits.safety_margin"),
        use_exchange_info=use_ei,
    )
    speed = r.int_(data, "depth_update_ms", 100, 100, 1000)
    if speed not in (100, 1000):
        raise r.fail("depth_update_ms", f"Binance diff depth runs at 100 or 1000 ms, got {speed}")
    stale = r.num(data, "stale_data_timeout_s", 5.0, 0.01, 3600.0)
    silence = r.num(data, "silence_reconnect_s", max(30.0, stale * 2), 0.05, 86400.0)
    return BinanceConfig(
        rest_url=r.url(data, "rest_url", REST_URL, ("https://", "http://")),
        ws_url=r.url(data, "ws_url", WS_URL, ("wss://", "ws://")),
        ws_api_url=r.url(data, "ws_api_url", WS_API_URL, ("wss://", "ws://")),
        symbols=symbols,
        api_key_env=r.string(data, "api_key_env", "BINANCE_API_KEY"),
        api_secret_env=r.string(data, "api_secret_env", "BINANCE_API_SECRET"),
        recv_window_ms=r.int_(data, "recv_window_ms", 5000, 1, 60000),
        depth_snapshot_limit=r.int_(data, "depth_snapshot_limit", 1000, 1, 5000),
        depth_update_ms=speed,
        stale_data_timeout_s=stale,
        max_update_id_jump=r.int_(data, "max_update_id_jump", 1_000_000, 1_000, 2**40),
        trade_band_pct=r.num(data, "trade_band_pct", 10.0, 0.1, 1000.0),
        silence_reconnect_s=silence,
        order_entry=r.string(data, "order_entry", "rest", ("rest", "ws")),
        order_connections=r.int_(data, "order_connections", 2, 0, 16),
        order_timeout_s=r.num(data, "order_timeout_s", 10.0, 0.05, 120.0),
        new_order_resp_type=r.string(data, "new_order_resp_type", "FULL", ("ACK", "RESULT", "FULL")),
        http_timeout_s=r.num(data, "http_timeout_s", 10.0, 0.05, 120.0),
        ping_interval_s=r.num(ws, "ping_interval_s", 20.0, 1.0, 600.0, "websocket.ping_interval_s"),
        ping_timeout_s=r.num(ws, "ping_timeout_s", 20.0, 1.0, 600.0, "websocket.ping_timeout_s"),
        max_connection_age_s=r.num(
            ws, "max_connection_age_s", 23.5 * 3600, 1.0, 24 * 3600.0, "websocket.max_connection_age_s"
        ),
        reconnect=backoff,
        rate_limits=limits,
        fees=Fees(
            maker=r.num(fees, "maker", 0.001, -0.01, 0.05, "fees.maker"),
            taker=r.num(fees, "taker", 0.001, -0.01, 0.05, "fees.taker"),
        ),
        path=path,
    )


def load_config(
    path: str | os.PathLike[str] = DEFAULT_PATH,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> BinanceConfig:
    """Read and validate the Binance config; ``ConfigError(path, "<field>: <reason>")`` on any problem."""
    return parse_config(read_json(path), str(Path(path)), overrides, env)
