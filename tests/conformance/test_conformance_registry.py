"""Conformance, the suite itself: every venue in the registry is held to it."""

from __future__ import annotations

from harnesses import HARNESSES

from engine.runners import registry


def test_every_registered_venue_has_a_conformance_harness() -> None:
    missing = [v for v in registry.names() if v not in HARNESSES]
    assert not missing, f"venues with no conformance harness: {missing} (add them to tests/conformance/harnesses.py)"
    assert set(HARNESSES) <= set(registry.names()), "a harness for a venue the registry does not know"
