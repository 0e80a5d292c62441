"""Binance errors, and their mapping to the operator guide's wording.

The guide (section 11) names the messages an operator greps for: ``Rate limit exceeded``,
``Invalid signature``, ``Insufficient balance``, ``Symbol not found``, ... ``guide_reason`` turns
a Binance ``{"code", "msg"}`` into that wording; where the guide has no message (most -2010
matching-engine texts, -2011 cancel restrictions) Binance's own text is kept, and filter failures
keep their filter name (``Filter failure: LOT_SIZE``).
"""

from __future__ import annotations

import logging

from venues.common.summary import Summary

# codes (BDOCS errors.md)
TOO_MANY_REQUESTS = -1003
TIMEOUT = -1007
INVALID_MESSAGE = -1013
INVALID_TIMESTAMP = -1021
INVALID_SIGNATURE = -1022
INVALID_ORDER_TYPE_CODE = -1116
BAD_SYMBOL = -1121
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FMT = -2014
REJECTED_MBX_KEY = -2015

RATE_LIMIT_EXCEEDED = "Rate limit exceeded"
INVALID_SIGNATURE_TEXT = "Invalid signature"
INSUFFICIENT_BALANCE = "Insufficient balance"
SYMBOL_NOT_FOUND = "Symbol not found"
INVALID_ORDER_TYPE = "Invalid order type"
ORDER_DOES_NOT_EXIST = "Order does not exist"
UNKNOWN_ORDER = "Unknown order"
INVALID_API_KEY = "Invalid API key"
ORDER_STATE_UNKNOWN = "Order state unknown"
# a request that changes nothing got no usable answer (the guide's words, section 12 and 2.2)
EXCHANGE_CONNECTION_TIMEOUT = "Exchange connection timeout"
SNAPSHOT_TIMEOUT = "Order book snapshot timeout"
FAILED_TO_CONNECT = "Failed to connect to binance"
EXCHANGE_OUTAGE = "Exchange outage"


def guide_reason(code: int, msg: str) -> str:
    """The operator-facing reason for a Binance error."""
    text = (msg or "").strip()
    low = text.lower()
    if code == TOO_MANY_REQUESTS:
        return RATE_LIMIT_EXCEEDED
    if code in (INVALID_TIMESTAMP, INVALID_SIGNATURE):
        return INVALID_SIGNATURE_TEXT
    if code == NEW_ORDER_REJECTED:
        if "insufficient balance" in low:
            return INSUFFICIENT_BALANCE
        return text or "Order rejected"
    if code == BAD_SYMBOL:
        return SYMBOL_NOT_FOUND
    if code == INVALID_ORDER_TYPE_CODE:
        return INVALID_ORDER_TYPE
    if code == INVALID_MESSAGE:
        return text or "Filter failure"
    if code == CANCEL_REJECTED:
        if "unknown order" in low or "unknown_order" in low:
            return UNKNOWN_ORDER
        return text or "Cancel rejected"
    if code == NO_SUCH_ORDER:
        return ORDER_DOES_NOT_EXIST
    if code in (BAD_API_KEY_FMT, REJECTED_MBX_KEY):
        return INVALID_API_KEY
    if code == TIMEOUT:
        return ORDER_STATE_UNKNOWN
    return text or f"Binance error {code}"


class BinanceError(Exception):
    """Base of the adapter's errors."""


class BinanceApiError(BinanceError):
    """Binance answered with an error body (HTTP 4XX, or a WS API error status)."""

    def __init__(self, status: int, code: int, msg: str, endpoint: str = "") -> None:
        self.status = status
        self.code = code
        self.msg = msg
        self.endpoint = endpoint
        self.reason = guide_reason(code, msg)
        super().__init__(f"{self.reason} (binance {code} {msg!r}, HTTP {status}, {endpoint})")


class RateLimited(BinanceApiError):
    """429 (limit broken) or 418 (IP banned); nothing may be sent before ``retry_after_s`` passes."""

    def __init__(self, status: int, code: int, msg: str, retry_after_s: float, endpoint: str = "") -> None:
        super().__init__(status, code or TOO_MANY_REQUESTS, msg, endpoint)
        self.retry_after_s = retry_after_s
        self.reason = RATE_LIMIT_EXCEEDED


class OrderStateUnknown(BinanceError):
    """The request may or may not have been executed (5XX, -1007, timeout, lost connection)."""

    def __init__(self, detail: str, endpoint: str = "", status: int = 0, code: int = 0) -> None:
        self.detail = detail
        self.endpoint = endpoint
        self.status = status
        self.code = code
        super().__init__(f"{ORDER_STATE_UNKNOWN}: {detail} ({endpoint})")


class NotConnected(BinanceError):
    """The request could not be sent at all (no connection); it certainly did not execute."""


class VenueUnavailable(BinanceError):
    """A request that changes nothing (a depth snapshot, exchangeInfo, an order query, open
    orders, the account, the time) got no usable answer: no answer in time, the connection
    refused or dropped, a 5XX. Nothing is unknown about an order; try again later.

    ``reason`` is the guide's wording: ``Exchange connection timeout``, ``Order book snapshot
    timeout`` (a depth snapshot), ``Failed to connect to binance``, ``Exchange outage`` (5XX)."""

    def __init__(self, reason: str, detail: str, endpoint: str = "", status: int = 0, code: int = 0) -> None:
        self.reason = reason
        self.detail = detail
        self.endpoint = endpoint
        self.status = status
        self.code = code
        super().__init__(f"{reason}: binance {detail} ({endpoint})")


def log_api_error(
    log: logging.Logger,
    err: BinanceApiError,
    context: str,
    clock_offset_ms: float | None = None,
    summary: Summary | None = None,
) -> bool:
    """One exchanges.log line per error, in the guide's words; clock errors carry the measured
    offset. With ``summary``, repeats of the same reason and status are summarised
    (``venues.common.summary``); returns whether the line was written."""
    extra = ""
    if err.code in (INVALID_TIMESTAMP, INVALID_SIGNATURE) and clock_offset_ms is not None:
        extra = f" clock_offset_ms={clock_offset_ms:.1f}"
    if err.reason == RATE_LIMIT_EXCEEDED:
        extra += " (rate limit)"
    line = (
        f"{err.reason}: binance {context} code={err.code} status={err.status} msg={err.msg!r} "
        f"endpoint={err.endpoint}{extra}"
    )
    if summary is not None:
        return summary.warning(f"{err.reason} {err.status}", line)
    log.warning(line)
    return True
