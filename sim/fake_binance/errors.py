"""Binance error replies with the venue's own codes, messages and HTTP statuses.

Messages are copied from Binance's ``errors.md`` (see ``../shared/docs/venues.md`` §1.8) so a client's
error mapping can be tested against the exact text it will see in production.
"""

from __future__ import annotations

NUMBER_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
INTEGER_RANGE = r"^[0-9]{1,20}$"
CLIENT_ID_RANGE = r"^[a-zA-Z0-9-_]{1,36}$"

MSG_WEIGHT = (
    "Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
MSG_BANNED = (
    "Way too much request weight used; IP banned until {until}. "
    "Please use WebSocket Streams for live updates to avoid bans."
)
MSG_TIMEOUT = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
MSG_TS_AHEAD = "Timestamp for this request was 1000ms ahead of the server's time."
MSG_TS_WINDOW = "Timestamp for this request is outside of the recvWindow."
MSG_BAD_SIGNATURE = "Signature for this request is not valid."
MSG_BAD_SYMBOL = "Invalid symbol."
MSG_KEY_FORMAT = "API-key format invalid."
MSG_KEY_REJECTED = "Invalid API-key, IP, or permissions for action."
MSG_INSUFFICIENT = "Account has insufficient balance for requested action."
MSG_WOULD_TAKE = "Order would immediately match and take."
MSG_DUPLICATE = "Duplicate order sent."
MSG_UNKNOWN_ORDER = "Unknown order sent."
MSG_NO_SUCH_ORDER = "Order does not exist."
MSG_CANCEL_RESTRICTED = "Order was not canceled due to cancel restrictions."


class BinanceError(Exception):
    """One rejected request: ``{"code": code, "msg": msg}`` with HTTP ``status``.

    ``retry_after`` (seconds) becomes the ``Retry-After`` header; ``data`` is the WS API's
    ``error.data`` object (``serverTime``/``retryAfter`` on rate-limit errors).
    """

    def __init__(
        self, code: int, msg: str, status: int = 400, retry_after: int | None = None, data: dict | None = None
    ):
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after = retry_after
        self.data = data

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def either(first: str, second: str) -> BinanceError:
    return BinanceError(-1102, f"Param '{first}' or '{second}' must be sent, but both were empty/null!")


def illegal_chars(name: str, legal: str) -> BinanceError:
    return BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def not_required(name: str) -> BinanceError:
    return BinanceError(-1106, f"Parameter '{name}' sent when not required.")


def too_much_precision(name: str) -> BinanceError:
    return BinanceError(-1111, f"Parameter '{name}' has too much precision.")


def empty_param(name: str) -> BinanceError:
    return BinanceError(-1105, f"Parameter '{name}' was empty.")


def filter_failure(name: str) -> BinanceError:
    return BinanceError(-1013, f"Filter failure: {name}")


def new_order_rejected(msg: str) -> BinanceError:
    return BinanceError(-2010, msg)


def bad_symbol() -> BinanceError:
    return BinanceError(-1121, MSG_BAD_SYMBOL)
