"""Kraken's spellings of a pair: canonical ``BTC-USD`` <-> WebSocket v2 ``BTC/USD`` <-> REST
altname ``XBTUSD`` (and AssetPairs' v1 ``wsname`` ``XBT/USD``).

WebSocket v2 uses the common asset codes (BTC, DOGE); REST and WebSocket v1 keep Kraken's own
(XBT, XDG). Balances name assets by id (``XXBT``, ``ZUSD``, ``ETH``): ``asset_name`` strips the
X/Z prefix of the four-letter legacy ids.
"""

from __future__ import annotations

import re

_CANONICAL = re.compile(r"^[A-Z0-9]{1,12}-[A-Z0-9]{1,12}$")
#: common code -> Kraken's REST/v1 code
_TO_KRAKEN = {"BTC": "XBT", "DOGE": "XDG"}
_FROM_KRAKEN = {v: k for k, v in _TO_KRAKEN.items()}
#: legacy asset ids with an X (crypto) or Z (fiat) prefix
_LEGACY = {"XXBT", "XETH", "XLTC", "XXRP", "XXLM", "XXMR", "XZEC", "XETC", "XXDG", "XREP", "XMLN"}
_FIAT = {"ZUSD", "ZEUR", "ZGBP", "ZJPY", "ZCAD", "ZAUD", "ZCHF"}


def is_canonical(symbol: str) -> bool:
    return bool(_CANONICAL.match(symbol))


def to_ws(symbol: str) -> str:
    """``BTC-USD`` -> ``BTC/USD`` (WebSocket v2)."""
    return symbol.replace("-", "/")


def from_ws(ws: str) -> str:
    """``BTC/USD`` (v2) or ``XBT/USD`` (v1 wsname) -> ``BTC-USD``."""
    base, _, quote = ws.partition("/")
    return f"{_FROM_KRAKEN.get(base, base)}-{_FROM_KRAKEN.get(quote, quote)}"


def to_altname(symbol: str) -> str:
    """``BTC-USD`` -> ``XBTUSD`` (REST ``pair``)."""
    base, _, quote = symbol.partition("-")
    return f"{_TO_KRAKEN.get(base, base)}{_TO_KRAKEN.get(quote, quote)}"


def asset_name(asset_id: str) -> str:
    """A balance's asset id -> the common code: ``XXBT`` -> ``BTC``, ``ZUSD`` -> ``USD``,
    ``XBT.F`` (earn/futures suffixes) -> ``BTC``."""
    a = asset_id.split(".")[0]
    if a in _LEGACY or a in _FIAT:
        a = a[1:]
    return _FROM_KRAKEN.get(a, a)


def asset_id(code: str) -> str:
    """The common code -> the legacy id Kraken's Balance uses for the old assets (``BTC`` -> ``XXBT``)."""
    k = _TO_KRAKEN.get(code, code)
    if "X" + k in _LEGACY:
        return "X" + k
    if "Z" + k in _FIAT:
        return "Z" + k
    return k
