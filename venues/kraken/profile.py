"""Kraken's rules as data (``engine.venue.profile``): client ids and the error texts.

Client order ids (``cl_ord_id``): a UUID, or free text of at most 18 characters (KDOCS add_order);
our free-text ids use ``[A-Za-z0-9_-]``. Kraken amends orders in place (``amend_order``:
quantity and limit price, queue priority kept where the docs say), so ``supports_modify``. A
post-only order that would take is rejected (``EOrder:Post only order``).
"""

from __future__ import annotations

from engine.venue import profile as vp
from engine.venue.profile import ClientIdRules, ErrorVocabulary, VenueError, VenueProfile
from venues.kraken import errors as ke

ERRORS = ErrorVocabulary(
    {
        vp.PRICE_FILTER: VenueError(0, "EGeneral:Invalid arguments:price"),
        vp.LOT_SIZE: VenueError(0, "EGeneral:Invalid arguments:volume"),
        vp.NOTIONAL: VenueError(0, ke.ORDER_MINIMUM),
        vp.POST_ONLY_WOULD_TAKE: VenueError(0, ke.POST_ONLY),
        vp.UNKNOWN_ORDER: VenueError(0, ke.UNKNOWN_ORDER),
        vp.UNKNOWN_SYMBOL: VenueError(0, ke.UNKNOWN_PAIR),
        vp.INSUFFICIENT_BALANCE: VenueError(0, ke.INSUFFICIENT_FUNDS),
        vp.DUPLICATE_ORDER: VenueError(0, "EOrder:Duplicate order"),
        vp.RATE_LIMITED: VenueError(0, ke.ORDER_RATE_LIMIT),
        vp.INVALID_SIGNATURE: VenueError(0, ke.INVALID_SIGNATURE),
        vp.INVALID_NONCE: VenueError(0, ke.INVALID_NONCE),
        vp.INVALID_CLIENT_ID: VenueError(0, "EGeneral:Invalid arguments:cl_ord_id"),
    }
)

PROFILE = VenueProfile(
    name="kraken",
    client_ids=ClientIdRules(max_len=18, charset="A-Za-z0-9_-", uuid_ok=True),
    errors=ERRORS,
    supports_modify=True,
    post_only_rejects=True,
)
