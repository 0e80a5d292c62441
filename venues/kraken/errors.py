"""Kraken errors, and their mapping to the operator guide's wording.

Kraken answers REST with HTTP 200 and ``{"error": ["EAPI:Invalid nonce"], "result": ...}``, and
WebSocket v2 requests with ``{"success": false, "error": "EGeneral:Permission denied"}``; the
strings are ``<category>:<message>[:<detail>]`` (KDOCS guides/spot-errors). ``guide_reason``
gives the guide's message (``Invalid nonce``, ``Invalid signature``, ``Insufficient balance``,
``Rate limit exceeded``, ``Symbol not found``, ``Order modification not supported``...); a text
the guide has no word for is kept as Kraken wrote it.
"""

from __future__ import annotations

from engine import messages as m

# Kraken's own strings (KDOCS guides/spot-errors)
INVALID_NONCE = "EAPI:Invalid nonce"
INVALID_SIGNATURE = "EAPI:Invalid signature"
INVALID_KEY = "EAPI:Invalid key"
API_RATE_LIMIT = "EAPI:Rate limit exceeded"
ORDER_RATE_LIMIT = "EOrder:Rate limit exceeded"
ORDERS_LIMIT = "EOrder:Orders limit exceeded"
INSUFFICIENT_FUNDS = "EOrder:Insufficient funds"
ORDER_MINIMUM = "EOrder:Order minimum not met"
UNKNOWN_ORDER = "EOrder:Unknown order"
POST_ONLY = "EOrder:Post only order"
UNKNOWN_PAIR = "EQuery:Unknown asset pair"
INVALID_ARGUMENTS = "EGeneral:Invalid arguments"
PERMISSION_DENIED = "EGeneral:Permission denied"
INTERNAL_ERROR = "EGeneral:Internal error"
TEMPORARY_LOCKOUT = "EGeneral:Temporary lockout"
UNAVAILABLE = "EService:Unavailable"
BUSY = "EService:Busy"
THROTTLED = "EService:Throttled"
DEADLINE = "EService:Deadline elapsed"
CANCEL_ONLY = "EService:Market in cancel_only mode"
POST_ONLY_MODE = "EService:Market in post_only mode"
TOKEN_NOT_FOUND = "Token(s) not found"

INVALID_NONCE_TEXT = "Invalid nonce"
INVALID_API_KEY = "Invalid API key"
UNKNOWN_ORDER_TEXT = "Unknown order"
EXCHANGE_OUTAGE = "Exchange outage"
PERMISSION_DENIED_TEXT = "Permission denied"

_GUIDE = {
    INVALID_NONCE: INVALID_NONCE_TEXT,
    INVALID_SIGNATURE: m.INVALID_SIGNATURE,
    INVALID_KEY: INVALID_API_KEY,
    API_RATE_LIMIT: m.RATE_LIMIT_EXCEEDED,
    ORDER_RATE_LIMIT: m.RATE_LIMIT_EXCEEDED,
    THROTTLED: m.RATE_LIMIT_EXCEEDED,
    INSUFFICIENT_FUNDS: m.INSUFFICIENT_BALANCE,
    UNKNOWN_PAIR: m.SYMBOL_NOT_FOUND,
    UNKNOWN_ORDER: UNKNOWN_ORDER_TEXT,
    PERMISSION_DENIED: PERMISSION_DENIED_TEXT,
    UNAVAILABLE: EXCHANGE_OUTAGE,
    BUSY: EXCHANGE_OUTAGE,
    INTERNAL_ERROR: EXCHANGE_OUTAGE,
    DEADLINE: EXCHANGE_OUTAGE,
}


def error_key(text: str) -> str:
    """``EGeneral:Invalid arguments:volume`` -> ``EGeneral:Invalid arguments``;
    ``EService: Throttled: 1700000000`` -> ``EService:Throttled``."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) >= 2 and parts[0][:1] == "E":
        return f"{parts[0]}:{parts[1]}"
    return text.strip()


def guide_reason(text: str) -> str:
    """The operator-facing reason for one Kraken error string."""
    key = error_key(text)
    got = _GUIDE.get(key)
    if got is not None:
        return got
    return text.strip() or "Order rejected"


def is_rate_limit(text: str) -> bool:
    return error_key(text) in (API_RATE_LIMIT, ORDER_RATE_LIMIT, THROTTLED)


def is_outage(text: str) -> bool:
    return error_key(text) in (UNAVAILABLE, BUSY, INTERNAL_ERROR, DEADLINE)


class KrakenError(Exception):
    """Base of the adapter's errors; ``str()`` is the guide's message."""


class KrakenApiError(KrakenError):
    """Kraken answered with a non-empty ``error`` list (REST) or ``success: false`` (WebSocket)."""

    def __init__(self, errors: list[str], what: str = "") -> None:
        self.errors = list(errors) or ["EGeneral:Unknown error"]
        self.text = self.errors[0]
        self.reason = guide_reason(self.text)
        self.what = what
        where = f" ({what})" if what else ""
        super().__init__(f"{self.reason}: {self.text}{where}" if self.reason != self.text else f"{self.text}{where}")

    @property
    def key(self) -> str:
        return error_key(self.text)


class RateLimited(KrakenError):
    def __init__(self, retry_after_s: float, detail: str = "") -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"{m.RATE_LIMIT_EXCEEDED}{': ' + detail if detail else ''} (retry in {retry_after_s:.1f}s)")


class VenueUnavailable(KrakenError):
    """No usable answer: timeout, refused, 5XX, ``EService:Unavailable``."""
