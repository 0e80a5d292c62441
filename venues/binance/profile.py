"""Binance's rules as the engine's ``VenueProfile``: client ids and the words of its rejections.

Codes and texts from ``../shared/docs/venues.md`` §1.7-1.8 (BDOCS ``errors.md``, ``filters.md``);
client ids per ``newClientOrderId``: ``^[a-zA-Z0-9-_]{1,36}$``. Spot has no amend that moves the
price (``supports_modify`` False: the order manager cancels and replaces). A post-only
(``LIMIT_MAKER``) order that would take is rejected with -2010.

The USD-M and COIN-M data in ``data/samples`` (venues ``binance-futures`` / ``binance-delivery``)
use the same profile in backtests. Futures answer a few of these with their own codes (a GTX
order that would take: -5022); a backtest's reject rows then carry the spot code and text.
"""

from __future__ import annotations

from engine.venue import profile as vp
from engine.venue.profile import ClientIdRules, ErrorVocabulary, VenueError, VenueProfile
from venues.binance import errors as be

ERRORS = ErrorVocabulary(
    {
        vp.PRICE_FILTER: VenueError(be.INVALID_MESSAGE, "Filter failure: PRICE_FILTER"),
        vp.LOT_SIZE: VenueError(be.INVALID_MESSAGE, "Filter failure: LOT_SIZE"),
        vp.NOTIONAL: VenueError(be.INVALID_MESSAGE, "Filter failure: NOTIONAL"),
        vp.POST_ONLY_WOULD_TAKE: VenueError(be.NEW_ORDER_REJECTED, "Order would immediately match and take."),
        vp.UNKNOWN_ORDER: VenueError(be.CANCEL_REJECTED, "Unknown order sent."),
        vp.UNKNOWN_SYMBOL: VenueError(be.BAD_SYMBOL, "Invalid symbol."),
        vp.INSUFFICIENT_BALANCE: VenueError(
            be.NEW_ORDER_REJECTED, "Account has insufficient balance for requested action."
        ),
        vp.DUPLICATE_ORDER: VenueError(be.NEW_ORDER_REJECTED, "Duplicate order sent."),
        vp.INVALID_SIGNATURE: VenueError(be.INVALID_SIGNATURE, "Signature for this request is not valid."),
        vp.INVALID_TIMESTAMP: VenueError(
            be.INVALID_TIMESTAMP, "Timestamp for this request is outside of the recvWindow."
        ),
    }
)

PROFILE = VenueProfile(
    name="binance",
    client_ids=ClientIdRules(max_len=36, charset="A-Za-z0-9_-"),
    errors=ERRORS,
    supports_modify=False,
    post_only_rejects=True,
)
