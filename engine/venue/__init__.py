"""The venue contract: the parts every venue (simulated or live) gives the engine.

Protocols and plain types only; venue packages implement them and the composition root
(``engine.runners``) puts them together:

- ``profile``: client-id rules and the error vocabulary (``VenueProfile``), as data;
- ``execution``: order entry (``ExecutionClient``) and the engine's ``ExecSink``;
- ``feed``: market data kept in sync into the engine's books (``MarketDataFeed``);
- ``account``: open orders, balances and fills for reconciliation (``AccountClient``);
- ``adapter``: a live venue's set of parts and its status (``VenueAdapter``).
"""

from engine.venue.account import AccountClient, VenueBalance, VenueFill, VenueOrder
from engine.venue.adapter import VenueAdapter, VenueStatus
from engine.venue.execution import ExecSink, ExecutionClient, ExecutionVenue
from engine.venue.feed import BookStatus, FeedCallbacks, FeedStatus, MarketDataFeed, OnBookInvalid, OnLevels
from engine.venue.profile import GENERIC_PROFILE, ClientIdRules, ErrorVocabulary, VenueError, VenueProfile

__all__ = [
    "GENERIC_PROFILE",
    "AccountClient",
    "BookStatus",
    "ClientIdRules",
    "ErrorVocabulary",
    "ExecSink",
    "ExecutionClient",
    "ExecutionVenue",
    "FeedCallbacks",
    "FeedStatus",
    "MarketDataFeed",
    "OnBookInvalid",
    "OnLevels",
    "VenueAdapter",
    "VenueBalance",
    "VenueError",
    "VenueFill",
    "VenueOrder",
    "VenueProfile",
    "VenueStatus",
]
