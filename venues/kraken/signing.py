"""Kraken REST signing and nonces.

``API-Sign = base64(HMAC-SHA512(base64decode(secret), uri_path + SHA256(nonce + postdata)))``,
where ``uri_path`` is ``/0/private/<Method>``, ``postdata`` the exact url-encoded body (which
holds ``nonce=``) and the SHA256 the raw 32-byte digest (KDOCS guides/spot-rest-auth; the
documented example is ``tests/test_kraken_signing.py``).

Nonces must strictly increase per API key, forever: Kraken keeps the highest it has seen and has
no way to lower it. ``NonceSource`` hands out microseconds since the epoch, never less than one
above the last it gave, and persists a high-water mark in a small file (written ahead, in blocks,
so a crash cannot hand out a nonce twice): a restart after the wall clock stepped back, or two
restarts within one microsecond, still sends larger nonces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlencode


def sign(uri_path: str, postdata: str, nonce: str | int, secret_b64: str) -> str:
    """The ``API-Sign`` header of one private request."""
    digest = hashlib.sha256((str(nonce) + postdata).encode()).digest()
    mac = hmac.new(base64.b64decode(secret_b64), uri_path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


def encode_body(params: dict[str, object]) -> str:
    """The form body exactly as it is sent (and signed)."""
    return urlencode({k: v for k, v in params.items() if v is not None})


class NonceSource:
    """Strictly increasing nonces (µs since the epoch, with a floor) that survive restarts.

    ``path``: where the high-water mark lives (None: memory only, for tests and fakes). The file
    holds a value ``reserve`` µs ahead of the last nonce handed out; on start the floor is that
    value, so nothing given out before a crash is ever repeated.
    """

    def __init__(self, path: Path | str | None = None, reserve_us: int = 10_000_000) -> None:
        self.path = Path(path) if path is not None else None
        self.reserve_us = reserve_us
        self._lock = threading.Lock()
        self._last = 0
        self._reserved = 0
        if self.path is not None and self.path.exists():
            try:
                self._last = int(self.path.read_text().strip() or "0")
            except ValueError:
                raise ValueError(f"{self.path}: nonce high-water mark is not an integer") from None
            self._reserved = self._last

    @property
    def last(self) -> int:
        return self._last

    def next(self) -> int:
        with self._lock:
            n = max(time.time_ns() // 1000, self._last + 1)
            self._last = n
            if self.path is not None and n >= self._reserved:
                self._reserved = n + self.reserve_us
                self._write(self._reserved)
            return n

    def _write(self, value: int) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(f"{value}\n")
        os.replace(tmp, self.path)
