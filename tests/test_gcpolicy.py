"""The collector's policy while trading: setup frozen, young generation collected less often,
everything as before afterwards (also after an error)."""

from __future__ import annotations

import gc

import pytest

from engine.gcpolicy import trading_gc


def test_policy_applies_and_restores() -> None:
    before = gc.get_threshold()
    setup = [object() for _ in range(10)]
    with trading_gc(12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() >= len(setup)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_restored_after_an_error_and_zero_keeps_thresholds() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), trading_gc(0):
        assert gc.get_threshold() == before
        raise RuntimeError("boom")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
