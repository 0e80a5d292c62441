"""The venue registry: every venue's parts load by name and have the contract's shape."""

from __future__ import annotations

import inspect

import pytest

from engine.errors import ConfigError
from engine.runners import registry
from engine.venue import VenueAdapter, VenueProfile
from engine.venue.profile import GENERIC_PROFILE, REASONS

CONTRACT = [
    name
    for name, member in inspect.getmembers(VenueAdapter)
    if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
]


@pytest.mark.parametrize("venue", registry.names())
def test_every_venue_has_a_profile_an_adapter_a_fake_and_its_capture_format(venue: str) -> None:
    entry = registry.entry(venue)
    profile = registry.profile(venue)
    assert isinstance(profile, VenueProfile) and profile.name == venue
    # every canonical reason has words, the venue's own or the generic ones
    assert all(profile.error(r).text for r in REASONS)
    factory = registry.load(entry.adapter)
    adapter = factory(entry.config, ["BTC-USDT"], {})
    assert adapter.name == venue and adapter.profile is profile
    assert {"load_instruments", "market_data", "connect_execution", "account", "status", "close"} <= set(CONTRACT)
    missing = [m for m in CONTRACT if not callable(getattr(adapter, m, None))]
    assert not missing, f"{type(adapter).__name__} lacks {missing} of the venue contract"
    fake = registry.load(entry.fake)
    assert inspect.isclass(fake)
    capture = __import__(entry.capture_import, fromlist=["FORMAT"])
    assert isinstance(capture.FORMAT, str) and callable(capture.sniff) and callable(capture.import_files)
    for alias in entry.aliases:
        assert registry.entry(alias) is entry and registry.profile(alias) is profile


def test_a_venue_without_an_entry_trades_under_the_generic_profile_and_has_no_adapter() -> None:
    assert registry.profile("some-exchange") is GENERIC_PROFILE
    with pytest.raises(ConfigError, match="venue 'some-exchange' has no adapter"):
        registry.entry("some-exchange", "run.json")
