"""Symbol spellings: canonical ``BTC-USDT`` (configs, API, engine) <-> wire ``BTCUSDT`` <-> stream ``btcusdt``."""

from __future__ import annotations

import re

from engine.model import canonical_symbol

_CANONICAL = re.compile(r"^[A-Z0-9]{1,20}-[A-Z0-9]{1,20}$")
_WIRE = re.compile(r"^[A-Z0-9]{2,40}$")


def is_canonical(symbol: str) -> bool:
    return bool(_CANONICAL.match(symbol))


def to_wire(symbol: str) -> str:
    """``BTC-USDT`` -> ``BTCUSDT``. Raises ValueError for anything that is not BASE-QUOTE."""
    if not _CANONICAL.match(symbol):
        raise ValueError(f"symbol {symbol!r} is not in BASE-QUOTE form (e.g. BTC-USDT)")
    return symbol.replace("-", "")


def to_stream(symbol: str) -> str:
    """``BTC-USDT`` -> ``btcusdt`` (stream names are lower case)."""
    return to_wire(symbol).lower()


class SymbolMap:
    """Both directions for the symbols one adapter trades.

    Wire -> canonical needs the base/quote split, which only exchangeInfo knows for sure
    (``BTCUSDT`` could be BTC/USDT or BTCU/SDT); ``add`` records it, ``from_wire`` falls back to
    the engine's quote-suffix guess for symbols never registered.
    """

    __slots__ = ("_by_stream", "_by_wire")

    def __init__(self, symbols: list[str] | tuple[str, ...] = ()) -> None:
        self._by_wire: dict[str, str] = {}
        self._by_stream: dict[str, str] = {}
        for s in symbols:
            self.add(s)

    def add(self, symbol: str, base: str = "", quote: str = "") -> str:
        """Register ``symbol`` (canonical, or wire with ``base``/``quote``); returns the canonical form."""
        if base and quote:
            canonical = f"{base.upper()}-{quote.upper()}"
        else:
            canonical = symbol.upper()
        wire = to_wire(canonical)
        self._by_wire[wire] = canonical
        self._by_stream[wire.lower()] = canonical
        return canonical

    def from_wire(self, wire: str) -> str:
        hit = self._by_wire.get(wire)
        if hit is not None:
            return hit
        if not _WIRE.match(wire.upper()):
            raise ValueError(f"{wire!r} is not a Binance symbol")
        return canonical_symbol(wire)

    def from_stream(self, stream_symbol: str) -> str:
        hit = self._by_stream.get(stream_symbol)
        return hit if hit is not None else self.from_wire(stream_symbol.upper())

    @property
    def canonical(self) -> list[str]:
        return list(self._by_wire.values())
