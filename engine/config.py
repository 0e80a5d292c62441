"""Configuration files: JSON, validated up front, every error naming the file and the field.

Relative paths inside a config are resolved against the current directory first, then the
repository root, so the shipped configs work from a fresh clone wherever ``hft`` is run from.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.logs import redact

REPO_ROOT = Path(__file__).resolve().parents[1]
_MISSING = object()


def load_json(path: str | Path) -> dict[str, Any]:
    """A config file's top-level object; a credential anywhere in it is refused (``refuse_secrets``)."""
    data = read_json(path)
    refuse_secrets(data, str(path))
    return data


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON file's top-level object, nothing checked but the syntax."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "is a directory, expected a JSON file") from None
    except OSError as exc:
        raise ConfigError(str(path), exc.strerror or str(exc)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), f"top level must be a JSON object, got {type(data).__name__}")
    return data


def resolve_path(value: str | Path, relative_to: Path | None = None) -> Path:
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    for base in (Path.cwd(), relative_to, REPO_ROOT):
        if base is not None and (base / p).exists():
            return (base / p).resolve()
    return (Path.cwd() / p).resolve()


class Section:
    """Typed access to one object of a config file; errors say ``<file>: <dotted.field>: reason``."""

    def __init__(self, data: Any, path: str, where: str = "") -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"{where or 'top level'}: must be an object")
        self.data = data
        self.path = path
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.path, f"{self._name(key)}: {reason}")

    def known(self, keys: Collection[str]) -> None:
        """A typo must not silently run with a default: every key here must be one of ``keys``."""
        check_known(self.data, keys, self.path, self.where)

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.fail(key, "missing required field")
            return default
        return self.data[key]

    def section(self, key: str, required: bool = False) -> Section:
        if not self.has(key):
            if required:
                raise self.fail(key, "missing required section")
            return Section({}, self.path, self._name(key))
        return Section(self.data[key], self.path, self._name(key))

    def str(self, key: str, default: Any = _MISSING) -> str:
        v = self.raw(key, default)
        if not isinstance(v, str) or not v:
            raise self.fail(key, f"must be a non-empty string, got {v!r}")
        return v

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, f"must be true or false, got {v!r}")
        return v

    def number(self, key: str, default: Any = _MISSING, minimum: float | None = None, positive: bool = False) -> float:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(key, f"must be a number, got {v!r}")
        if positive and v <= 0:
            raise self.fail(key, f"must be > 0, got {v!r}")
        if minimum is not None and v < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {v!r}")
        return float(v)

    def int(self, key: str, default: Any = _MISSING, minimum: int | None = None) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"must be an integer, got {v!r}")
        if minimum is not None and v < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {v!r}")
        return v

    def str_list(self, key: str, default: Any = _MISSING) -> list[str]:
        v = self.raw(key, default)
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self.fail(key, f"must be a list of strings, got {v!r}")
        return list(v)


# --- unknown fields ---------------------------------------------------------------------------
def suggestion(name: str, choices: Iterable[str]) -> str:
    """``", did you mean 'maker_fee'?"`` when one of ``choices`` is a near miss of ``name``, else ``""``."""
    options = [c for c in choices if isinstance(c, str)]
    lowered = {c.lower(): c for c in options}
    if isinstance(name, str) and name.lower() in lowered:  # a case slip: ``Maker_Fee``
        return f", did you mean {lowered[name.lower()]!r}?"
    close = difflib.get_close_matches(str(name), options, n=1, cutoff=0.6)
    return f", did you mean {close[0]!r}?" if close else ""


def unknown_field(name: str, known: Collection[str], what: str = "field") -> str:
    """The reason of an unknown-key error: ``unknown field, did you mean 'x'? (expected one of ...)``."""
    return f"unknown {what}{suggestion(name, known)} (expected one of {', '.join(sorted(known))})"


def check_known(data: Any, keys: Collection[str], path: str, where: str = "") -> None:
    """``ConfigError(path, "<where>.<key>: unknown field, did you mean ...")`` for the first key of
    the mapping ``data`` that is not one of ``keys`` (in sorted order, so the error is stable)."""
    if not isinstance(data, dict):
        return
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(path, f"{name}: {unknown_field(unknown[0], keys)}")


# --- secrets ----------------------------------------------------------------------------------
#: keys whose values are credentials: refused in every config file, masked in every copy we keep
SECRET_KEYS = frozenset(
    {"api_key", "api_secret", "apikey", "secret", "secret_key", "passphrase", "private_key", "password", "token"}
)


#: the names above without ``_``/``-`` and case: ``apiKey``, ``API-SECRET`` and ``secretKey`` are credentials too
_SECRET_NAMES = frozenset(k.replace("_", "") for k in SECRET_KEYS) | {"accesstoken"}


def is_secret_key(key: Any) -> bool:
    """Whether a config key names a credential: ``api_key``, ``apiKey``, ``API-SECRET``, ``secret``,
    ``passphrase``... (``key`` alone is too common a word to refuse; these are not, and the names
    of the environment variables that hold keys, ``api_key_env``, are not credentials)."""
    return isinstance(key, str) and key.lower().replace("-", "").replace("_", "") in _SECRET_NAMES


def find_secrets(obj: Any, where: str = "") -> list[str]:
    """Dotted paths of every secret-named key, at any depth of a parsed config."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{where}.{k}" if where else str(k)
            if is_secret_key(k):
                found.append(path)
            found += find_secrets(v, path)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += find_secrets(v, f"{where}[{i}]")
    return found


def refuse_secrets(obj: Any, path: str, hint: str = "") -> None:
    """``ConfigError(path, "<dotted.field>: API keys must not be stored in config files ...")`` when
    a credential is found at any depth of ``obj`` (run, strategy, exchange and instrument files
    alike). The value is never echoed."""
    found = find_secrets(obj)
    if found:
        where = hint or "keys come from the environment (the exchange config names the variables)"
        raise ConfigError(path, f"{found[0]}: API keys must not be stored in config files; {where}")


def redact_secrets(obj: Any) -> Any:
    """A copy of ``obj`` with the value of every secret-named key replaced by ``"***"``, and every
    string passed through the log redactor (labelled keys and signatures, and the exact key and
    secret values this process holds): what a manifest may keep of a config."""
    if isinstance(obj, dict):
        return {k: "***" if is_secret_key(k) else redact_secrets(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_secrets(v) for v in obj]
    if isinstance(obj, str):
        return redact(obj)
    return obj
