"""Kraken's rules as the fake server applies them, written apart from the adapter's
(``sim`` never imports ``venues``): a bug in one shows up as a disagreement with the other, and
both are held to Kraken's published examples in the tests.

- ``checksum``: CRC32 over the top 10 asks (low to high) then the top 10 bids (high to low), each
  price and quantity written at the pair's precision without the point and leading zeros;
- ``api_sign``: ``base64(HMAC-SHA512(b64decode(secret), path + SHA256(nonce + body)))``;
- ``Counter``: a counter raised per call that decays continuously (REST: 15 at -0.33/s; trading:
  60 at -1/s per pair, the Starter tier).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import zlib
from decimal import Decimal


def _field(value: Decimal, places: int) -> str:
    digits = str(value.quantize(Decimal(1).scaleb(-places))).replace(".", "")
    return digits.lstrip("0")


def checksum(
    bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]], price_places: int, qty_places: int
) -> int:
    """``bids``/``asks`` in any order; only the best 10 of each count."""
    top_asks = sorted(asks)[:10]
    top_bids = sorted(bids, reverse=True)[:10]
    text = "".join(_field(p, price_places) + _field(q, qty_places) for p, q in top_asks + top_bids)
    return zlib.crc32(text.encode("ascii"))


def api_sign(path: str, body: str, nonce: str, secret_b64: str) -> str:
    inner = hashlib.sha256(nonce.encode() + body.encode()).digest()
    mac = hmac.new(base64.b64decode(secret_b64), path.encode() + inner, "sha512").digest()
    return base64.b64encode(mac).decode()


class Counter:
    def __init__(self, limit: float, decay_per_s: float) -> None:
        self.limit = limit
        self.decay = decay_per_s
        self.value = 0.0
        self.at = time.monotonic()

    def _decay(self) -> None:
        now = time.monotonic()
        self.value = max(0.0, self.value - (now - self.at) * self.decay)
        self.at = now

    def take(self, cost: float) -> bool:
        """Count a call; False (and nothing counted) when it would pass the limit."""
        self._decay()
        if self.value + cost > self.limit:
            return False
        self.value += cost
        return True

    def add(self, cost: float) -> None:
        self._decay()
        self.value += cost
