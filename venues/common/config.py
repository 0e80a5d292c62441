"""What every venue's ``config/exchanges/<venue>.json`` loader shares.

Each venue keeps its own dataclass, defaults and limits (they follow that venue's documentation);
what is the same everywhere lives here so a fix reaches all of them: reading the file (a missing
file, an unreadable one and bad JSON are ``ConfigError``s naming the file), the endpoint
environment variables and test overrides laid over the file, API keys read from the environment
(and registered for masking before anything can log them), and ``Reader``'s typed field checks
that name the dotted key of every problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import refuse_secrets, unknown_field
from engine.errors import ConfigError
from engine.logs import register_secret
from venues.common.backoff import BackoffSettings


@dataclass(frozen=True, slots=True)
class Credentials:
    """An API key and secret (Binance, Kraken); Coinbase adds a passphrase in its own class."""

    api_key: str
    api_secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(api_key={self.api_key[:4]}..., api_secret=***)"


def read_json(path: str | os.PathLike[str]) -> Any:
    """The decoded JSON of ``path``; ``ConfigError(path, reason)`` when it is missing, unreadable or bad."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), "file not found") from None
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(str(p), f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def env_keys(env: Mapping[str, str] | None, *names: str) -> tuple[str, ...] | None:
    """The stripped values of the environment variables ``names``, or None when any is unset.

    The values are registered as secrets first, so every log line from now on masks them."""
    env = os.environ if env is None else env
    values = tuple(env.get(name, "").strip() for name in names)
    if not all(values):
        return None
    register_secret(*values)
    return values


def apply_endpoints(
    data: dict[str, Any],
    path: str,
    endpoint_env: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    allowed: Collection[str],
    env: Mapping[str, str] | None,
) -> None:
    """Lay the endpoint environment variables (``field -> VARIABLE``), then ``overrides``, over
    ``data`` in place; an override of a field the file does not have is a ``ConfigError``."""
    env = os.environ if env is None else env
    for name, var in endpoint_env.items():
        if env.get(var):
            data[name] = env[var]
    for k, v in (overrides or {}).items():
        if k not in allowed:
            raise ConfigError(path, f"{k}: unknown override")
        data[k] = v


class Reader:
    """Typed checks of one config file's fields; every failure is ``ConfigError(path, "<label>: ...")``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.path, f"{name}: {reason}")

    def top(
        self,
        data: Any,
        venue: str,
        allowed: Collection[str],
        secrets_hint: str,
        endpoint_env: Mapping[str, str],
        overrides: Mapping[str, Any] | None,
        env: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        """The top-level object checked (an object, no credentials, no unknown keys, this venue's)
        as a copy with the endpoint environment variables and ``overrides`` applied."""
        if not isinstance(data, dict):
            raise ConfigError(self.path, f"top level must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        refuse_secrets(data, self.path, secrets_hint)
        for k in data:
            if k not in allowed:
                raise self.fail(k, unknown_field(k, allowed))
        if data.get("venue", venue) != venue:
            raise self.fail("venue", f"must be {venue!r}, got {data.get('venue')!r}")
        apply_endpoints(data, self.path, endpoint_env, overrides, allowed, env)
        return data

    def obj(self, data: Mapping[str, Any], name: str, allowed: set[str]) -> Mapping[str, Any]:
        v = data.get(name, {})
        if not isinstance(v, dict):
            raise self.fail(name, f"must be an object, got {type(v).__name__}")
        for k in v:
            if k not in allowed:
                raise self.fail(f"{name}.{k}", unknown_field(k, allowed))
        return v

    def num(self, data: Mapping[str, Any], name: str, default: float, lo: float, hi: float, label: str = "") -> float:
        v = data.get(name, default)
        label = label or name
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(label, f"must be a number, got {v!r}")
        if not lo <= v <= hi:
            raise self.fail(label, f"must be between {lo} and {hi}, got {v}")
        return float(v)

    def int_(self, data: Mapping[str, Any], name: str, default: int, lo: int, hi: int, label: str = "") -> int:
        v = data.get(name, default)
        label = label or name
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(label, f"must be an integer, got {v!r}")
        if not lo <= v <= hi:
            raise self.fail(label, f"must be between {lo} and {hi}, got {v}")
        return v

    def url(self, data: Mapping[str, Any], name: str, default: str, schemes: tuple[str, ...]) -> str:
        v = data.get(name, default)
        if not isinstance(v, str) or not v.startswith(schemes) or len(v) <= len(schemes[0]) + 3:
            raise self.fail(name, f"must be a URL starting with {' or '.join(schemes)}, got {v!r}")
        return v.rstrip("/")

    def string(self, data: Mapping[str, Any], name: str, default: str, choices: tuple[str, ...] = ()) -> str:
        v = data.get(name, default)
        if not isinstance(v, str) or not v:
            raise self.fail(name, f"must be a non-empty string, got {v!r}")
        if choices and v not in choices:
            raise self.fail(name, f"must be one of {list(choices)}, got {v!r}")
        return v

    def symbols(self, data: Mapping[str, Any], default: str, is_canonical: Callable[[str], bool]) -> tuple[str, ...]:
        """``symbols``: a non-empty list of distinct BASE-QUOTE symbols (``default`` when absent)."""
        symbols = data.get("symbols", [default])
        if not isinstance(symbols, list) or not symbols:
            raise self.fail("symbols", f'must be a non-empty list like ["{default}"], got {symbols!r}')
        for s in symbols:
            if not isinstance(s, str) or not is_canonical(s):
                raise self.fail("symbols", f"{s!r} is not in BASE-QUOTE form (e.g. {default})")
        if len(set(symbols)) != len(symbols):
            raise self.fail("symbols", "lists a symbol twice")
        return tuple(symbols)

    def backoff(self, rc: Mapping[str, Any], attempts: int, max_attempts: int, window_s: float) -> BackoffSettings:
        """The ``reconnect`` object; the venue's connection-attempt budget (``attempts`` per
        ``window_s``, at most ``max_attempts``) is its documented limit, the rest is shared."""
        initial = self.num(rc, "initial_delay_s", 0.5, 0.0, 3600.0, "reconnect.initial_delay_s")
        max_delay = self.num(rc, "max_delay_s", 30.0, 0.0, 3600.0, "reconnect.max_delay_s")
        if max_delay < initial:
            raise self.fail(
                "reconnect.max_delay_s", f"must be >= reconnect.initial_delay_s ({initial}), got {max_delay}"
            )
        return BackoffSettings(
            initial_s=initial,
            max_s=max_delay,
            factor=self.num(rc, "factor", 2.0, 1.0, 10.0, "reconnect.factor"),
            jitter=self.num(rc, "jitter", 0.5, 0.0, 1.0, "reconnect.jitter"),
            max_attempts_per_window=self.int_(
                rc, "max_attempts_per_window", attempts, 1, max_attempts, "reconnect.max_attempts_per_window"
            ),
            window_s=self.num(rc, "window_s", window_s, 1.0, 3600.0, "reconnect.window_s"),
        )


RECONNECT_KEYS = {"initial_delay_s", "max_delay_s", "factor", "jitter", "max_attempts_per_window", "window_s"}
