"""The venue registry: a venue's name -> its profile, its live adapter and its loopback fake.

Entries name their parts by import path and are loaded only when asked for, so a backtest does
not import a WebSocket client and the core never imports a venue. A venue package joins by adding
an entry here (or ``register`` at run time, for a venue kept outside this repository), and passes
the same tests as the others.

Market data names venues as the data does (Tardis ids: ``binance``, ``binance-futures``, ...).
Those that trade under another venue's rules are aliases of its entry (USD-M and COIN-M data use
Binance's profile); a venue with no entry gets the generic profile.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import REPO_ROOT
from engine.errors import ConfigError
from engine.venue.profile import GENERIC_PROFILE, VenueProfile


@dataclass(frozen=True)
class VenueEntry:
    name: str
    #: ``module:attribute`` of the ``VenueProfile``
    profile: str
    #: ``module:callable``: ``(config_path, symbols, env) -> VenueAdapter``
    adapter: str | None = None
    #: ``module:class`` of the loopback fake exchange (``hft sim <venue>``, the tests)
    fake: str | None = None
    #: the exchange config a node reads when its run config names none
    config: Path | None = None
    #: module of the venue's own capture format for ``hft data import`` (``FORMAT``, ``sniff``,
    #: ``import_files``), and of ``hft record``'s raw capture
    capture_import: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)
    #: ``module:callable``: ``(config_path, env) -> engine.venue.tools.VenueTools``, what the
    #: operator's venue scripts ask the venue directly (``hft venue ...``)
    tools: str | None = None


def load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


_ENTRIES: dict[str, VenueEntry] = {}
_ALIASES: dict[str, str] = {}


def register(entry: VenueEntry) -> None:
    _ENTRIES[entry.name] = entry
    for alias in (entry.name, *entry.aliases):
        _ALIASES[alias] = entry.name


def names() -> list[str]:
    return sorted(_ENTRIES)


def entry(venue: str, where: str = "<run config>") -> VenueEntry:
    name = _ALIASES.get(venue)
    if name is None:
        raise ConfigError(where, f"venue {venue!r} has no adapter (known venues: {', '.join(names())})")
    return _ENTRIES[name]


def profile(venue: str) -> VenueProfile:
    """The rules the simulated venue and the order manager use for ``venue``'s orders."""
    name = _ALIASES.get(venue)
    return load(_ENTRIES[name].profile) if name is not None else GENERIC_PROFILE


register(
    VenueEntry(
        "binance",
        profile="venues.binance.profile:PROFILE",
        adapter="venues.binance.adapter:open_adapter",
        fake="sim.fake_binance:FakeBinance",
        config=REPO_ROOT / "config" / "exchanges" / "binance.json",
        capture_import="venues.binance.capture_import",
        tools="venues.binance.tools:open_tools",
        aliases=("binance-futures", "binance-delivery"),
    )
)

register(
    VenueEntry(
        "kraken",
        profile="venues.kraken.profile:PROFILE",
        adapter="venues.kraken.adapter:open_adapter",
        fake="sim.fake_kraken:FakeKraken",
        config=REPO_ROOT / "config" / "exchanges" / "kraken.json",
        capture_import="venues.kraken.capture_import",
        tools="venues.kraken.tools:open_tools",
    )
)

register(
    VenueEntry(
        "coinbase",
        profile="venues.coinbase.profile:PROFILE",
        adapter="venues.coinbase.adapter:open_adapter",
        fake="sim.fake_coinbase:FakeCoinbase",
        config=REPO_ROOT / "config" / "exchanges" / "coinbase.json",
        capture_import="venues.coinbase.capture_import",
        tools="venues.coinbase.tools:open_tools",
    )
)
