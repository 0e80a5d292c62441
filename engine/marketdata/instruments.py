"""The instrument registry: tick, lot, scales and fees per (venue, symbol) from ``config/instruments.json``.

The file is a JSON object with an ``instruments`` list. Each entry names ``venue``, canonical
``symbol`` (BASE-QUOTE), the wire ``venue_symbol``, ``price_scale``/``size_scale`` (decimals kept
in fixed point) and the venue's filters written as decimals (``"tick": "0.01"``). Decimals are
read as text or JSON numbers without going through float, and converted to fixed-point units with
the entry's scales, so a tick that the scale cannot represent is an error rather than a rounding.

Path resolution: an explicit path, else ``$HFT_INSTRUMENTS``, else the repository's
``config/instruments.json``. Every problem is a ``ConfigError`` naming the file and the field
(``instruments[3].tick: must be a positive decimal``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine.config import check_known, refuse_secrets
from engine.errors import ConfigError
from engine.model import Instrument

ENV_VAR = "HFT_INSTRUMENTS"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "instruments.json"
KINDS = ("spot", "perp", "future")
MAX_SCALE = 17  # fixed-point values must stay below 10**18 (see engine.marketdata.decimals)

Registry = dict[tuple[str, str], Instrument]

# JSON keys that describe the entry but are not Instrument fields.
_DOC_KEYS = frozenset({"note"})
# keys of the file's top-level object
_TOP_KEYS = frozenset({"instruments", "description", "note"})
# the venue's own spelling is required: the core knows no venue's way of writing symbols
_REQUIRED = ("venue", "symbol", "venue_symbol", "price_scale", "size_scale", "tick", "lot")


def default_path() -> Path:
    """Where the registry is read from when no path is given."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


def load_instruments(path: str | Path | None = None) -> Registry:
    """Read and validate the instrument file; keys are ``(venue, symbol)``."""
    file = Path(path) if path is not None else default_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(file), "file not found") from None
    except OSError as exc:
        raise ConfigError(str(file), f"cannot read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigError(str(file), f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("instruments"), list):
        raise ConfigError(str(file), 'expected an object with an "instruments" list')
    refuse_secrets(doc, str(file))
    check_known(doc, _TOP_KEYS, str(file))
    registry: Registry = {}
    wire_names: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(doc["instruments"]):
        inst = _parse_entry(str(file), f"instruments[{i}]", entry)
        if inst.key in registry:
            raise ConfigError(str(file), f"instruments[{i}]: duplicate instrument {inst.venue} {inst.symbol}")
        wire = (inst.venue, inst.venue_symbol)
        if wire in wire_names:
            raise ConfigError(
                str(file),
                f"instruments[{i}].venue_symbol: {inst.venue_symbol} on {inst.venue} already used by "
                f"instruments[{wire_names[wire]}]",
            )
        registry[inst.key] = inst
        wire_names[wire] = i
    return registry


def get_instrument(venue: str, symbol: str, registry: Registry | None = None) -> Instrument:
    """The instrument of ``venue``/``symbol``; a ConfigError names what is missing."""
    reg = registry if registry is not None else load_instruments()
    inst = reg.get((venue, symbol))
    if inst is not None:
        return inst
    source = str(default_path()) if registry is None else "instrument registry"
    venues = sorted({v for v, _ in reg})
    if venue not in venues:
        raise ConfigError(source, f"unknown venue {venue!r} (known: {', '.join(venues) or 'none'})")
    symbols = sorted(s for v, s in reg if v == venue)
    raise ConfigError(source, f"unknown symbol {symbol!r} on venue {venue!r} (known: {', '.join(symbols)})")


def find_by_venue_symbol(registry: Registry, venue: str, venue_symbol: str) -> Instrument | None:
    """Look an instrument up by its wire spelling (``BTCUSDT``, ``BTCUSD_PERP``, ``BTC-PERPETUAL``)."""
    wanted = venue_symbol.upper()
    for inst in registry.values():
        if inst.venue == venue and inst.venue_symbol.upper() == wanted:
            return inst
    return None


# --- validation ------------------------------------------------------------------------------


def _parse_entry(path: str, where: str, entry: Any) -> Instrument:
    if not isinstance(entry, dict):
        raise ConfigError(path, f"{where}: must be an object")
    check_known(entry, {f.name for f in dataclasses.fields(Instrument)} | _DOC_KEYS, path, where)
    for key in _REQUIRED:
        if key not in entry:
            raise ConfigError(path, f"{where}.{key}: missing")
    venue = _name(path, where, entry, "venue")
    symbol = _name(path, where, entry, "symbol")
    if symbol != symbol.upper() or symbol.count("-") != 1 or symbol.startswith("-") or symbol.endswith("-"):
        raise ConfigError(path, f"{where}.symbol: must be upper-case BASE-QUOTE, got {symbol!r}")
    venue_symbol = _name(path, where, entry, "venue_symbol")
    price_scale = _scale(path, where, entry, "price_scale")
    size_scale = _scale(path, where, entry, "size_scale")
    kwargs: dict[str, Any] = {
        "venue": venue,
        "symbol": symbol,
        "venue_symbol": venue_symbol,
        "price_scale": price_scale,
        "size_scale": size_scale,
        "tick": _fixed(path, where, entry, "tick", price_scale, positive=True),
        "lot": _fixed(path, where, entry, "lot", size_scale, positive=True),
    }
    for key, scale in (("min_qty", size_scale), ("min_price", price_scale), ("max_price", price_scale)):
        if key in entry:
            kwargs[key] = _fixed(path, where, entry, key, scale, positive=False)
    for key in ("min_notional", "maker_fee", "taker_fee", "contract_size"):
        if key in entry:
            value = _decimal(path, where, entry, key)
            if key in ("min_notional",) and value < 0:
                raise ConfigError(path, f"{where}.{key}: must not be negative")
            if key == "contract_size" and value <= 0:
                raise ConfigError(path, f"{where}.{key}: must be a positive decimal")
            if key.endswith("_fee") and abs(value) >= 1:
                raise ConfigError(path, f"{where}.{key}: must be a fraction such as 0.001 (0.1%)")
            kwargs[key] = float(value)
    if "inverse" in entry:
        if not isinstance(entry["inverse"], bool):
            raise ConfigError(path, f"{where}.inverse: must be true or false")
        kwargs["inverse"] = entry["inverse"]
    if "kind" in entry:
        if entry["kind"] not in KINDS:
            raise ConfigError(path, f"{where}.kind: must be one of {', '.join(KINDS)}")
        kwargs["kind"] = entry["kind"]
    if "note" in entry and not isinstance(entry["note"], str):
        raise ConfigError(path, f"{where}.note: must be a string")
    if kwargs.get("max_price") and kwargs.get("min_price", 0) > kwargs["max_price"]:
        raise ConfigError(path, f"{where}.min_price: above max_price")
    return Instrument(**kwargs)


def _name(path: str, where: str, entry: dict, key: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ConfigError(path, f"{where}.{key}: must be a non-empty string without surrounding spaces")
    return value


def _scale(path: str, where: str, entry: dict, key: str) -> int:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SCALE:
        raise ConfigError(path, f"{where}.{key}: must be an integer from 0 to {MAX_SCALE}")
    return value


def _decimal(path: str, where: str, entry: dict, key: str) -> Decimal:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ConfigError(path, f'{where}.{key}: must be a decimal (a number or a string such as "0.01")')
    try:
        dec = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ConfigError(path, f"{where}.{key}: {value!r} is not a decimal") from None
    if not dec.is_finite():
        raise ConfigError(path, f"{where}.{key}: must be finite")
    return dec


def _fixed(path: str, where: str, entry: dict, key: str, scale: int, positive: bool) -> int:
    value = entry[key]
    try:
        dec = _decimal(path, where, entry, key)
    except ConfigError:
        raise ConfigError(path, f"{where}.{key}: must be a {'positive ' if positive else ''}decimal") from None
    if (positive and dec <= 0) or dec < 0:
        raise ConfigError(path, f"{where}.{key}: must be a {'positive' if positive else 'non-negative'} decimal")
    units = dec.scaleb(scale)
    if units != units.to_integral_value():
        raise ConfigError(path, f"{where}.{key}: {value} has more decimals than the scale ({scale}) can hold")
    if units >= 10**18:
        raise ConfigError(path, f"{where}.{key}: {value} is too large for scale {scale}")
    return int(units)
