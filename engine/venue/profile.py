"""A venue's rules as plain data: client-id format and error vocabulary.

The core never spells a venue's codes or texts. The order manager makes client ids with
``ClientIdRules`` and reports its own filter rejections with the venue's code and text, and the
simulated venue rejects with the same words, so a backtest's reject rows read like the venue's.
Each venue package defines its ``VenueProfile``; the composition root hands it to both.

Canonical reasons (``REASONS``) are the engine's names for what went wrong; a vocabulary maps
each to the venue's ``(code, text)``. ``classify`` goes the other way, for reports from a venue.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

# canonical reasons: what the engine means, whatever the venue says
PRICE_FILTER = "price_filter"
LOT_SIZE = "lot_size"
NOTIONAL = "notional"
POST_ONLY_WOULD_TAKE = "post_only_would_take"
UNKNOWN_ORDER = "unknown_order"  # cancel / amend / query of an order the venue does not have
UNKNOWN_SYMBOL = "unknown_symbol"
INSUFFICIENT_BALANCE = "insufficient_balance"
DUPLICATE_ORDER = "duplicate_order"
MODIFY_NOT_SUPPORTED = "modify_not_supported"
RATE_LIMITED = "rate_limited"
INVALID_SIGNATURE = "invalid_signature"
INVALID_TIMESTAMP = "invalid_timestamp"
INVALID_NONCE = "invalid_nonce"
INVALID_CLIENT_ID = "invalid_client_id"
REJECTED = "rejected"  # anything else the venue refused

REASONS = (
    PRICE_FILTER,
    LOT_SIZE,
    NOTIONAL,
    POST_ONLY_WOULD_TAKE,
    UNKNOWN_ORDER,
    UNKNOWN_SYMBOL,
    INSUFFICIENT_BALANCE,
    DUPLICATE_ORDER,
    MODIFY_NOT_SUPPORTED,
    RATE_LIMITED,
    INVALID_SIGNATURE,
    INVALID_TIMESTAMP,
    INVALID_NONCE,
    INVALID_CLIENT_ID,
    REJECTED,
)


@dataclass(frozen=True, slots=True)
class VenueError:
    """One entry of a venue's vocabulary: its numeric code (0 where it has none) and text."""

    code: int
    text: str


#: the words of a venue that has no profile (hand-built test data, an unknown feed)
GENERIC_ERRORS: dict[str, VenueError] = {
    PRICE_FILTER: VenueError(0, "Filter failure: PRICE_FILTER"),
    LOT_SIZE: VenueError(0, "Filter failure: LOT_SIZE"),
    NOTIONAL: VenueError(0, "Filter failure: NOTIONAL"),
    POST_ONLY_WOULD_TAKE: VenueError(0, "Post-only order would take liquidity"),
    UNKNOWN_ORDER: VenueError(0, "Unknown order"),
    UNKNOWN_SYMBOL: VenueError(0, "Symbol not found"),
    INSUFFICIENT_BALANCE: VenueError(0, "Insufficient balance"),
    DUPLICATE_ORDER: VenueError(0, "Duplicate order"),
    MODIFY_NOT_SUPPORTED: VenueError(0, "Order modification not supported"),
    RATE_LIMITED: VenueError(0, "Rate limit exceeded"),
    INVALID_SIGNATURE: VenueError(0, "Invalid signature"),
    INVALID_TIMESTAMP: VenueError(0, "Invalid timestamp"),
    INVALID_NONCE: VenueError(0, "Invalid nonce"),
    INVALID_CLIENT_ID: VenueError(0, "Invalid client order id"),
    REJECTED: VenueError(0, "Order rejected"),
}


@dataclass(frozen=True)
class ErrorVocabulary:
    """canonical reason -> the venue's ``VenueError``; reasons a venue does not name fall back to
    ``GENERIC_ERRORS``."""

    errors: dict[str, VenueError] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.errors) - set(REASONS)
        if unknown:
            raise ValueError(f"unknown canonical reasons {sorted(unknown)}; expected some of {REASONS}")

    def error(self, reason: str) -> VenueError:
        got = self.errors.get(reason)
        return got if got is not None else GENERIC_ERRORS[reason]

    def classify(self, code: int, text: str) -> str:
        """The canonical reason of a venue's answer (``REJECTED`` when nothing matches): by code
        and text first, since one code can carry several texts (Binance -2010), then by text."""
        for reason, e in self.errors.items():
            if e.code == code and e.text == text:
                return reason
        for reason, e in self.errors.items():
            if e.text == text:
                return reason
        for reason, e in self.errors.items():
            if code and e.code == code and sum(1 for x in self.errors.values() if x.code == code) == 1:
                return reason
        return REJECTED


_DIGITS = 10  # room the counter keeps in a free-text id: ten billion orders per strategy and session


@dataclass(frozen=True)
class ClientIdRules:
    """What a venue accepts as a client order id.

    Free-text ids are ``<prefix>-<n>``: ``prefix`` is the strategy id cleaned to ``charset`` (and
    the session tag on a live clock), cut so that ``n`` keeps ten digits within ``max_len``. A
    venue that wants UUIDs (``uuid_only``), or whose ``max_len`` leaves too little room for a
    readable prefix, gets a UUID derived from ``<prefix>-<n>`` (version 5): still deterministic,
    so a backtest's ids are the same on every run.
    """

    max_len: int = 36
    charset: str = "A-Za-z0-9_-"  # a regex character class body
    uuid_only: bool = False
    #: UUIDs are accepted too (Kraken: a UUID or 18 characters of free text)
    uuid_ok: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile(f"^[{self.charset}]{{1,{self.max_len}}}$"))
        object.__setattr__(self, "_bad", re.compile(f"[^{self.charset}]"))

    @property
    def uses_uuid(self) -> bool:
        return self.uuid_only or (self.uuid_ok and self._prefix_room(True) < 4)

    def _prefix_room(self, session: bool) -> int:
        return self.max_len - 1 - _DIGITS - (7 if session else 0)

    def prefix(self, strategy_id: str, session: str = "") -> str:
        """The part of every id of ``strategy_id`` before its counter."""
        clean = self._bad.sub("_", strategy_id) or "s"  # type: ignore[attr-defined]
        room = max(self._prefix_room(bool(session)), 1)
        return f"{clean[:room]}-{session}" if session else clean[:room]

    def make(self, prefix: str, n: int) -> str:
        if self.uses_uuid:
            return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{prefix}-{n}"))
        return f"{prefix}-{n}"

    def valid(self, cid: str) -> bool:
        if self.uuid_only or self.uuid_ok:
            try:
                if str(uuid.UUID(cid)) == cid.lower():
                    return True
            except ValueError:
                pass
            if self.uuid_only:
                return False
        return bool(self._pattern.match(cid))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class VenueProfile:
    """Everything the core and the simulated venue need to act like a venue, as data."""

    name: str
    client_ids: ClientIdRules = field(default_factory=ClientIdRules)
    errors: ErrorVocabulary = field(default_factory=ErrorVocabulary)
    supports_modify: bool = False
    #: a post-only order that would take is rejected (Binance LIMIT_MAKER); False: it is cancelled
    post_only_rejects: bool = True

    def error(self, reason: str) -> VenueError:
        return self.errors.error(reason)


GENERIC_PROFILE = VenueProfile("generic")
