"""Venue tools: what the operator's venue scripts ask a venue directly, outside any session.

The guide's scripts (``list_symbols.sh``, ``get_exchange_filters.sh``, ``query_exchange_order.sh``,
``check_balances.sh``, ``test_api_key.sh``, ``test_exchange_latency.sh``) query an exchange with
the system's own keys and endpoints, while the daemon may or may not run. This is an optional part
of the venue contract: a venue package that has it names a ``module:callable`` in its registry
entry (``VenueEntry.tools``), ``(config_path, env) -> VenueTools``, and ``hft venue ...``
(``engine.runners.venue_cli``) drives it; a venue without it is simply not offered there.

Everything comes back in shapes the scripts print without knowing the venue:

- symbols in the canonical dashed form (``BTC-USDT``), whatever the venue spells;
- filters as one JSON object with a ``filters`` object keyed by Binance's filter names, the names
  the guide pipes into ``jq`` (``.filters.LOT_SIZE``): ``PRICE_FILTER`` (``tickSize``, ``minPrice``,
  ``maxPrice``), ``LOT_SIZE`` (``stepSize``, ``minQty``, ``maxQty``), ``NOTIONAL``
  (``minNotional``, ``maxNotional``), each key present only where the venue has that rule, values
  as the venue's own decimal strings; the venue's own rules unchanged under ``raw``. Each venue
  documents its mapping in its ``tools.py``;
- an order as ``OrderView`` (prices and sizes as decimal strings, the venue's object under ``raw``).

Failures: ``ToolError`` when the venue answered with a refusal or could not be reached (the
scripts exit 1), its message in the guide's words (``Invalid API key``, ``Invalid signature``,
``Invalid passphrase``, ``Symbol not found``...); ``ValueError`` for an argument the venue could
never accept (exit 2); ``engine.errors.ConfigError`` for a bad config or missing keys (exit 2).
Keys come from the environment only and are never part of any answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from engine.venue.account import VenueBalance

#: the filter names every venue's ``filters`` answer carries (Binance's, as the guide spells them)
FILTER_NAMES = ("PRICE_FILTER", "LOT_SIZE", "NOTIONAL")


class ToolError(Exception):
    """The venue refused the request or did not answer; ``str()`` is the operator's line."""


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    symbol: str  # canonical, dashed
    status: str  # the venue's own word (TRADING, online, ...)
    tradable: bool


@dataclass(frozen=True, slots=True)
class OrderView:
    """One order as the venue reports it, in units an operator reads."""

    venue: str
    symbol: str
    venue_order_id: str
    client_order_id: str
    side: str  # BUY | SELL
    order_type: str  # the venue's word, upper case
    status: str  # the engine's OrderStatus name
    venue_status: str  # the venue's own word
    price: str
    qty: str
    filled: str
    time_in_force: str = ""
    post_only: bool = False
    created_ns: int = 0
    updated_ns: int = 0
    raw: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class VenueTools(Protocol):
    """One venue's answers to the operator's questions. Every call is a request to the venue."""

    venue: str
    #: where the requests go (the config's REST URL after environment overrides)
    endpoint: str
    #: what ``probe_public`` / ``probe_signed`` request, e.g. ``GET /api/v3/ping``
    public_probe: str
    signed_probe: str
    #: signed reads a latency run may make back to back without running into the venue's limits
    signed_probe_budget: int
    #: least time between two public probes the venue's public limit allows, s
    public_probe_interval_s: float

    async def list_symbols(self) -> list[SymbolInfo]:
        """Every instrument the venue lists, tradable now or not."""

    async def filters(self, symbol: str) -> dict[str, Any]:
        """``{"venue", "symbol", "venue_symbol", "status", "filters": {...}, "raw": {...}}``;
        ``ToolError`` ``Symbol not found on <venue>: ...`` when the venue does not list it."""

    async def balances(self) -> dict[str, VenueBalance]:
        """Every asset with a non-zero balance (signed)."""

    async def test_key(self) -> str:
        """One signed read with the configured keys; returns what it checked (one line)."""

    async def query_order(self, order_id: str, client_id: bool = False, symbol: str | None = None) -> OrderView | None:
        """The order with this venue id (``client_id``: this client order id) as the venue knows it;
        None when the venue does not know it. ``symbol`` narrows the search where the venue needs one."""

    def has_keys(self) -> bool:
        """Whether the environment holds this venue's keys."""

    async def probe_public(self) -> float:
        """Round trip of the venue's cheapest public request, s (local rate-limit waits excluded)."""

    async def probe_signed(self) -> float:
        """Round trip of a cheap signed read, s (local rate-limit waits excluded)."""

    async def close(self) -> None: ...
