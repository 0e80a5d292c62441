"""Request signing for the operator API (docs/daemon-contract.md, "Auth").

``X-API-KEY`` names a key, ``X-TIMESTAMP`` is Unix milliseconds and ``X-SIGNATURE`` is the hex
HMAC-SHA256, under that key's secret, of ``timestamp + METHOD + path_with_query + body``. Keys and
secrets come from the environment only (``keys_env`` maps the variable holding a key id to the
one holding its secret), so none is ever written to a config file or a log.

A request is refused when the timestamp is outside the clock window, and when its signature was
already accepted inside the window (replay): accepted signatures are remembered until their
timestamp leaves the window, so the memory is bounded by the request rate times the window.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_KEYS_ENV: dict[str, str] = {"HFT_API_KEY": "HFT_API_SECRET"}
DEFAULT_MAX_SKEW_MS = 5000
#: signatures remembered at most; beyond this signed requests are refused until some expire
#: (evicting instead would let an old signature be replayed)
MAX_REMEMBERED = 100_000

HOW_TO_SIGN = (
    "sign with headers X-API-KEY, X-TIMESTAMP (Unix ms) and X-SIGNATURE = hex HMAC-SHA256(secret, "
    "timestamp + METHOD + path_with_query + body); `hft ctl METHOD PATH [JSON]` does it for you "
    "from HFT_API_KEY / HFT_API_SECRET"
)


def signature(secret: str, timestamp: str, method: str, path_with_query: str, body: bytes) -> str:
    """The hex HMAC-SHA256 the server expects for this request."""
    msg = timestamp.encode() + method.upper().encode() + path_with_query.encode() + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def sign_headers(key: str, secret: str, method: str, path_with_query: str, body: bytes) -> dict[str, str]:
    """Headers for one signed request (what ``hft ctl`` sends)."""
    ts = str(int(time.time() * 1000))
    return {
        "X-API-KEY": key,
        "X-TIMESTAMP": ts,
        "X-SIGNATURE": signature(secret, ts, method, path_with_query, body),
    }


def keys_from_env(keys_env: Mapping[str, str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """key id -> secret for every pair of variables that is set (an unset pair is skipped)."""
    env = os.environ if env is None else env
    keys: dict[str, str] = {}
    for key_var, secret_var in keys_env.items():
        key, secret = env.get(key_var, ""), env.get(secret_var, "")
        if key and secret:
            keys[key] = secret
    return keys


class AuthError(Exception):
    """A refused request: ``reason`` is one of missing, unknown key, bad signature, expired,
    replayed (and ``no keys`` when the daemon has none configured)."""

    def __init__(self, reason: str, error: str, status: int = 401) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error
        self.status = status


@dataclass
class Verifier:
    keys: dict[str, str]
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS
    key_vars: tuple[str, ...] = ("HFT_API_KEY", "HFT_API_SECRET")

    def __post_init__(self) -> None:
        # signature -> monotonic time it leaves the window; insertion order is expiry order
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(
        self,
        headers: Mapping[str, str],
        method: str,
        path_with_query: str,
        body: bytes,
        now_ms: int | None = None,
    ) -> str:
        """The key id of a correctly signed, fresh, first-seen request; raises :class:`AuthError`."""
        key = headers.get("x-api-key") or ""
        ts = headers.get("x-timestamp") or ""
        sig = headers.get("x-signature") or ""
        if not self.keys:
            raise AuthError(
                "missing",
                f"Authentication required, and this daemon has no API key: set {' and '.join(self.key_vars)} "
                f"in its environment and restart it; then {HOW_TO_SIGN}",
            )
        if not (key and ts and sig):
            absent = [h for h, v in (("X-API-KEY", key), ("X-TIMESTAMP", ts), ("X-SIGNATURE", sig)) if not v]
            raise AuthError("missing", f"Authentication required (missing {', '.join(absent)}): {HOW_TO_SIGN}")
        secret = self.keys.get(key)
        if secret is None:
            raise AuthError("unknown key", "Authentication failed: unknown X-API-KEY")
        try:
            ts_ms = int(ts)
        except ValueError:
            raise AuthError("bad signature", "Authentication failed: X-TIMESTAMP must be Unix milliseconds") from None
        expected = signature(secret, ts, method, path_with_query, body)
        if not hmac.compare_digest(expected.encode(), sig.strip().lower().encode()):
            raise AuthError("bad signature", f"Authentication failed: bad signature ({HOW_TO_SIGN})")
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if abs(now_ms - ts_ms) > self.max_skew_ms:
            raise AuthError(
                "expired",
                f"Authentication failed: X-TIMESTAMP is {abs(now_ms - ts_ms) / 1000:.1f}s from the daemon's clock "
                f"(window ±{self.max_skew_ms / 1000:g}s): sign again, check the clock",
            )
        self._remember(expected)
        return key

    def _remember(self, sig: str) -> None:
        now = time.monotonic()
        while self._seen:
            first, expires = next(iter(self._seen.items()))
            if expires > now:
                break
            del self._seen[first]
        if sig in self._seen:
            raise AuthError("replayed", "Authentication failed: this signed request was already used (replay)")
        if len(self._seen) >= MAX_REMEMBERED:
            raise AuthError("replayed", "Too many signed requests in the clock window: retry shortly", 429)
        # A timestamp accepted now stays valid for at most 2 windows of the daemon's clock.
        self._seen[sig] = now + 2 * self.max_skew_ms / 1000
