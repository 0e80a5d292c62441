"""Coinbase errors, and their mapping to the operator guide's wording.

Coinbase Exchange answers a refused REST request with an HTTP 4xx and ``{"message": "..."}``
(venues.md §2.1; ``exchange_error_insufficient_funds.json``); Advanced Trade's WebSocket sends
``{"type": "error", "message": "..."}``. The texts are matched case-insensitively because the
docs and real answers disagree on casing ("Invalid Passphrase" / "invalid passphrase").
``guide_reason`` gives the words an operator greps for (guide §8.2 and §11): ``Invalid
passphrase``, ``Invalid signature``, ``Insufficient balance``, ``Rate limit exceeded``; a text
the guide has no word for is kept as Coinbase wrote it.
"""

from __future__ import annotations

from engine.messages import (
    INSUFFICIENT_BALANCE,
    INVALID_SIGNATURE,
    ORDER_MODIFICATION_NOT_SUPPORTED,
    RATE_LIMIT_EXCEEDED,
    SYMBOL_NOT_FOUND,
)

INVALID_PASSPHRASE = "Invalid passphrase"  # the guide's spelling (§8.2)
INVALID_API_KEY = "Invalid API key"
INVALID_TIMESTAMP = "Invalid timestamp"
UNKNOWN_ORDER = "Unknown order"
ORDER_STATE_UNKNOWN = "Order state unknown"
EXCHANGE_OUTAGE = "Exchange outage"
AUTHENTICATION_FAILURE = "authentication failure"  # Advanced Trade WS (at_error_authentication_failure_live.json)

# Coinbase's own texts, lower case (CB-EX docs and real answers; the fake answers with these)
CB_INVALID_PASSPHRASE = "invalid passphrase"
CB_INVALID_SIGNATURE = "invalid signature"
CB_INVALID_API_KEY = "invalid api key"
CB_TIMESTAMP_EXPIRED = "request timestamp expired"
CB_INSUFFICIENT_FUNDS = "insufficient funds"
CB_RATE_LIMIT = "rate limit exceeded"
CB_NOT_FOUND = "notfound"
CB_ORDER_NOT_FOUND = "order not found"
CB_PRODUCT_NOT_FOUND = "product not found"

_BY_TEXT: tuple[tuple[str, str], ...] = (
    (CB_INVALID_PASSPHRASE, INVALID_PASSPHRASE),
    (CB_INVALID_SIGNATURE, INVALID_SIGNATURE),
    (CB_INVALID_API_KEY, INVALID_API_KEY),
    (CB_TIMESTAMP_EXPIRED, INVALID_TIMESTAMP),
    (CB_INSUFFICIENT_FUNDS, INSUFFICIENT_BALANCE),
    ("rate limit", RATE_LIMIT_EXCEEDED),
    (CB_ORDER_NOT_FOUND, UNKNOWN_ORDER),
    (CB_NOT_FOUND, UNKNOWN_ORDER),
    (CB_PRODUCT_NOT_FOUND, SYMBOL_NOT_FOUND),
    (AUTHENTICATION_FAILURE, INVALID_SIGNATURE),
)


def guide_reason(status: int, message: str) -> str:
    """The operator-facing reason for a Coinbase answer (HTTP ``status``, body ``message``)."""
    text = (message or "").strip()
    low = text.lower()
    for needle, reason in _BY_TEXT:
        if needle in low:
            return reason
    if status == 429:
        return RATE_LIMIT_EXCEEDED
    if status >= 500:
        return EXCHANGE_OUTAGE
    return text or f"Coinbase error HTTP {status}"


class CoinbaseError(Exception):
    """Base of the adapter's errors."""


class CoinbaseApiError(CoinbaseError):
    """A request Coinbase answered with an error: ``status``, Coinbase's ``message`` and the
    guide's wording in ``reason`` (also the exception's text)."""

    def __init__(self, status: int, message: str, path: str = "") -> None:
        self.status = status
        self.message = message
        self.path = path
        self.reason = guide_reason(status, message)
        where = f" ({path})" if path else ""
        super().__init__(f"{self.reason}: coinbase HTTP {status} {message!r}{where}")


class RateLimited(CoinbaseApiError):
    """HTTP 429: nothing more leaves before ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float, path: str = "") -> None:
        super().__init__(429, message, path)
        self.retry_after_s = retry_after_s


class VenueUnavailable(CoinbaseError):
    """No usable answer (5xx, timeout, refused): for an order, its state is unknown."""


MODIFY_NOT_SUPPORTED = ORDER_MODIFICATION_NOT_SUPPORTED
