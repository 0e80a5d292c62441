"""Request signing and timing checks, verified the way Binance documents them.

REST: the HMAC-SHA256 payload is the raw query string concatenated (no separator) with the raw
request body, both as sent (percent-encoding included) and without the ``signature`` parameter.
WS API: all ``params`` except ``signature``, sorted by name, joined as ``k=v`` with ``&``.
The hex signature is compared case-insensitively.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from sim.fake_binance.errors import (
    INTEGER_RANGE,
    MSG_TS_AHEAD,
    MSG_TS_WINDOW,
    BinanceError,
    illegal_chars,
    mandatory,
)

DEFAULT_RECV_WINDOW_MS = 5000.0
MAX_RECV_WINDOW_MS = 60000.0
_RECV_WINDOW = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,3})?$")
_RECV_WINDOW_RANGE = r"^[0-9]{1,20}(\.[0-9]{1,3})?$"


def sign(secret: str, payload: str) -> str:
    """Lower-case hex HMAC-SHA256 of ``payload`` keyed by ``secret``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def verify(secret: str, payload: str, signature: str | None) -> bool:
    if not signature:
        return False
    return hmac.compare_digest(sign(secret, payload), signature.lower())


def _without_signature(raw: str) -> str:
    if "signature=" not in raw:
        return raw
    return "&".join(part for part in raw.split("&") if not part.startswith("signature="))


def rest_payload(raw_query: str, raw_body: str) -> str:
    """The string a REST client signed: query string + body, minus the signature parameter."""
    return _without_signature(raw_query) + _without_signature(raw_body)


def ws_payload(params: dict[str, str]) -> str:
    """The string a WS API client signed: sorted ``k=v`` pairs of every param but ``signature``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")


def check_timestamp(params: dict[str, str], server_ms: float) -> None:
    """Binance's timing rule: ``timestamp < serverTime + 1000`` and ``serverTime - timestamp <= recvWindow``.

    ``timestamp`` may be in milliseconds or microseconds (16 digits); ``recvWindow`` defaults to
    5000 ms, allows three decimals and may not exceed 60000.
    """
    raw_ts = params.get("timestamp")
    if not raw_ts:
        raise mandatory("timestamp")
    if not raw_ts.isdigit() or len(raw_ts) > 20:
        raise illegal_chars("timestamp", INTEGER_RANGE)
    ts = int(raw_ts)
    ts_ms = ts / 1000.0 if ts >= 10**14 else float(ts)
    raw_rw = params.get("recvWindow")
    if raw_rw is None or raw_rw == "":
        recv_window = DEFAULT_RECV_WINDOW_MS
    else:
        if not _RECV_WINDOW.match(raw_rw):
            raise illegal_chars("recvWindow", _RECV_WINDOW_RANGE)
        recv_window = float(raw_rw)
        if recv_window > MAX_RECV_WINDOW_MS:
            raise BinanceError(-1102, "'recvWindow' contains unexpected value. Cannot be greater than '60000'.")
    if not ts_ms < server_ms + 1000:
        raise BinanceError(-1021, MSG_TS_AHEAD)
    if server_ms - ts_ms > recv_window:
        raise BinanceError(-1021, MSG_TS_WINDOW)
