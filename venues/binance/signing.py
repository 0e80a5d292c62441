"""HMAC-SHA256 request signing, exactly as Binance documents it.

REST: the payload is the query string (in the order sent) concatenated with the body, non-ASCII
characters percent-encoded; ``signature = hex(HMAC-SHA256(secret, payload))`` is appended as the
last parameter. WebSocket API: every parameter except ``signature`` sorted by name, joined as
``k=v`` with ``&``, values as they are (UTF-8, not escaped).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

try:
    import _hashlib
except ImportError:  # a Python built without OpenSSL: the hmac module's own objects are used
    _hashlib = None  # type: ignore[assignment]
from urllib.parse import quote


def sign(secret: str, payload: str) -> str:
    """Lower-case hex HMAC-SHA256 of ``payload`` under ``secret``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def param_str(value: object) -> str:
    """How one parameter value is spelled on the wire (booleans as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def encode_query(params: Mapping[str, object]) -> str:
    """``k=v&k=v`` in the given order, percent-encoding what is not URL-safe (non-ASCII included)."""
    return "&".join(f"{quote(k, safe='')}={quote(param_str(v), safe='')}" for k, v in params.items())


def signed_query(secret: str, params: Mapping[str, object]) -> str:
    """The full signed query string: ``params`` then ``&signature=<hex>``."""
    query = encode_query(params)
    return f"{query}&signature={sign(secret, query)}"


def ws_payload(params: Mapping[str, object]) -> str:
    """The WebSocket API signature payload: sorted ``k=v`` pairs, ``signature`` excluded."""
    parts = []
    for k in sorted(params):
        if k == "signature":
            continue
        v = params[k]
        parts.append(k + "=" + v if type(v) is str else k + "=" + param_str(v))
    return "&".join(parts)


def sign_ws_params(secret: str, params: Mapping[str, object]) -> str:
    return sign(secret, ws_payload(params))


class HmacSigner:
    """``sign`` for one secret, keyed once: each signature copies a prepared HMAC state instead of
    deriving the inner and outer keys again (the order hot path signs every request).

    ``sign_after(prefix, rest)`` signs ``prefix + rest`` from a state that has absorbed the key
    and ``prefix`` already (RFC 2104 spelled out over SHA-256: ``H((K ^ opad) || H((K ^ ipad) ||
    msg))``). An order template's payload starts with the same text every time (the apiKey and
    the first parameter names), so only the part that changes is hashed per order.
    """

    __slots__ = ("_base", "_inner", "_outer", "_prefixed")

    def __init__(self, secret: str) -> None:
        key = secret.encode()
        try:  # OpenSSL's HMAC object itself: its copy() skips the pure-Python wrapper
            self._base: Any = _hashlib.hmac_new(key, digestmod="sha256")
        except (AttributeError, TypeError, ValueError):
            self._base = hmac.new(key, digestmod=hashlib.sha256)
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))
        self._prefixed: dict[str, Any] = {}

    def sign(self, payload: str) -> str:
        m = self._base.copy()
        m.update(payload.encode())
        return m.hexdigest()

    def sign_after(self, prefix: str, rest: str) -> str:
        """``sign(prefix + rest)``, with the inner hash of the key and ``prefix`` kept per prefix."""
        inner = self._prefixed.get(prefix)
        if inner is None:
            if len(self._prefixed) >= 64:  # templates are few; this only bounds a misuse
                self._prefixed.clear()
            inner = self._prefixed[prefix] = self._inner.copy()
            inner.update(prefix.encode())
        h = inner.copy()
        h.update(rest.encode())
        outer = self._outer.copy()
        outer.update(h.digest())
        return outer.hexdigest()

    def sign_ws_params(self, params: Mapping[str, object]) -> str:
        return self.sign(ws_payload(params))

    def signed_query(self, params: Mapping[str, object]) -> str:
        query = encode_query(params)
        return f"{query}&signature={self.sign(query)}"


_BLOCK = 64  # SHA-256's block size: the HMAC key is padded to it
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=8)
def keyed_signer(secret: str) -> HmacSigner:
    """The ``HmacSigner`` of ``secret``, keyed once per process and shared by REST and the WS API
    (new keys get a new one)."""
    return HmacSigner(secret)
