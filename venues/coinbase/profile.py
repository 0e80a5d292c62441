"""Coinbase Exchange's rules as the engine's ``VenueProfile``: client ids and rejection words.

Orders go to Coinbase Exchange (see README: the guide's passphrase auth), whose ``client_oid``
must be a UUID (CB-EX create-order: "Order ID selected by you to identify your order"; the docs
example and every SDK send a UUID), so ids are version-5 UUIDs derived from ``<strategy>-<n>``:
deterministic, so a backtest's ids repeat. Exchange has no amend (``supports_modify`` False: the
order manager cancels and replaces, and a direct modify gets ``Order modification not
supported``). A post-only order that would take is rejected (classic docs: "the order will be
rejected and no part of it will execute").

Exchange errors carry no numeric code (HTTP status + ``message``): the codes here are the HTTP
statuses the fake and Coinbase answer with, the texts are Coinbase's.
"""

from __future__ import annotations

from engine.venue import profile as vp
from engine.venue.profile import ClientIdRules, ErrorVocabulary, VenueError, VenueProfile

ERRORS = ErrorVocabulary(
    {
        vp.PRICE_FILTER: VenueError(400, "price is too accurate"),
        vp.LOT_SIZE: VenueError(400, "size is too accurate"),
        vp.NOTIONAL: VenueError(400, "size is too small"),
        vp.POST_ONLY_WOULD_TAKE: VenueError(400, "post only"),
        vp.UNKNOWN_ORDER: VenueError(404, "order not found"),
        vp.UNKNOWN_SYMBOL: VenueError(404, "product not found"),
        vp.INSUFFICIENT_BALANCE: VenueError(400, "Insufficient funds"),
        vp.DUPLICATE_ORDER: VenueError(400, "duplicate client_oid"),
        vp.RATE_LIMITED: VenueError(429, "Rate limit exceeded"),
        vp.INVALID_SIGNATURE: VenueError(401, "invalid signature"),
        vp.INVALID_TIMESTAMP: VenueError(401, "request timestamp expired"),
        vp.INVALID_CLIENT_ID: VenueError(400, "Invalid client_oid"),
        vp.MODIFY_NOT_SUPPORTED: VenueError(0, "Order modification not supported"),
    }
)

PROFILE = VenueProfile(
    name="coinbase",
    client_ids=ClientIdRules(max_len=36, charset="a-f0-9-", uuid_only=True),
    errors=ERRORS,
    supports_modify=False,
    post_only_rejects=True,
)
