"""Coinbase product ids: ``BTC-USD`` on both APIs (venues.md §2.3), the canonical spelling too.

The only work is refusing what is not a product id, so a typo in a config fails at load with the
symbol named, instead of a subscription the venue answers with nothing.
"""

from __future__ import annotations

import re

_PRODUCT = re.compile(r"^[A-Z0-9]{1,16}-[A-Z0-9]{1,16}$")


def is_product_id(symbol: str) -> bool:
    """``BTC-USD``: upper-case base and quote joined by one dash."""
    return bool(_PRODUCT.match(symbol))


def to_wire(symbol: str) -> str:
    """Canonical symbol -> Coinbase product id (the same text; checked)."""
    if not is_product_id(symbol):
        raise ValueError(f"coinbase: {symbol!r} is not a product id like 'BTC-USD'")
    return symbol


def from_wire(product_id: str) -> str:
    return product_id
