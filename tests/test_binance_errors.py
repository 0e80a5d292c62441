"""Every Binance error fixture maps to the guide's wording (and keeps Binance's own text where the
guide has none)."""

from __future__ import annotations

import msgspec
import pytest
from test_binance_support import capture_log, fixture

from engine.logs import get_logger
from venues.binance.decode import decode_error, decode_ws_api
from venues.binance.errors import BinanceApiError, RateLimited, guide_reason, log_api_error

EXPECTED = {
    "error_-1003.json": "Rate limit exceeded",
    "error_-1013_lot_size.json": "Filter failure: LOT_SIZE",
    "error_-1021.json": "Invalid signature",
    "error_-1022.json": "Invalid signature",
    "error_-1121.json": "Symbol not found",
    "error_-1145.json": "Invalid cancelRestrictions",
    "error_-2010.json": "Insufficient balance",
    "error_-2011_cancel_restrictions.json": "Order was not canceled due to cancel restrictions.",
    "error_-2011_legacy_2018.json": "Unknown order",
    "error_-2011_unknown_order.json": "Unknown order",
    "error_-2013.json": "Order does not exist",
}


@pytest.mark.parametrize(("name", "reason"), sorted(EXPECTED.items()))
def test_rest_error_fixtures(name: str, reason: str) -> None:
    err = decode_error(fixture(name))
    assert err is not None
    assert guide_reason(err.code, err.msg) == reason
    exc = BinanceApiError(400, err.code, err.msg, "POST /api/v3/order")
    assert exc.reason == reason and exc.code == err.code
    assert str(exc).startswith(reason)


def test_ws_api_error_fixtures() -> None:
    m = decode_ws_api(fixture("ws_api_error_-2010.json"))
    assert m.error is not None and guide_reason(m.error.code, m.error.msg) == "Insufficient balance"
    banned = decode_ws_api(fixture("ws_api_error_-1003_banned.json"))
    assert banned.status == 418 and banned.error is not None
    assert guide_reason(banned.error.code, banned.error.msg) == "Rate limit exceeded"
    assert banned.error.data == {"serverTime": 1659142907531, "retryAfter": 1659146400000}


def test_other_2010_texts_kept() -> None:
    assert guide_reason(-2010, "Order would immediately match and take.") == "Order would immediately match and take."
    assert guide_reason(-2010, "Duplicate order sent.") == "Duplicate order sent."
    assert guide_reason(-2015, "Invalid API-key, IP, or permissions for action.") == "Invalid API key"
    assert guide_reason(-9999, "") == "Binance error -9999"


def test_not_an_error_body() -> None:
    assert decode_error(b"<html>502 Bad Gateway</html>") is None
    assert decode_error(msgspec.json.encode({"code": "x"})) is None


def test_log_lines_carry_guide_words_and_clock_offset() -> None:
    with capture_log("exchanges") as logs:
        err = BinanceApiError(
            400, -1021, "Timestamp for this request is outside of the recvWindow.", "POST /api/v3/order"
        )
        log_api_error(get_logger("exchanges"), err, "new order x", clock_offset_ms=-1234.5)
        log_api_error(get_logger("exchanges"), RateLimited(429, -1003, "Too much request weight used", 7.0), "burst")
    assert any("Invalid signature" in m and "clock_offset_ms=-1234.5" in m for m in logs.messages)
    assert any("Rate limit exceeded" in m and "rate limit" in m for m in logs.messages)
