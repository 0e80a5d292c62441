"""The conformance suite's fixtures: one run of every test per registered venue.

``venue`` is parametrised over ``engine.runners.registry.names()``, so a venue that is registered
but has no harness in ``harnesses.HARNESSES`` fails every case (it is not skipped): a venue joins
the registry and this suite together.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harnesses import HARNESSES, VenueHarness

from engine.runners import registry


@pytest.fixture(params=registry.names())
def venue(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def harness(venue: str, tmp_path: Path) -> AsyncIterator[VenueHarness]:
    make = HARNESSES.get(venue)
    if make is None:
        pytest.fail(f"venue {venue} has no conformance harness (add one to tests/conformance/harnesses.py)")
    h = make(tmp_path)
    assert h.venue == venue
    async with h:
        yield h
