"""The fake Binance as a subprocess, for the tests that run ``hft`` the way an operator does
(``sim.fake_binance.process``; a fake that does not start fails the test)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sim.fake_binance.process import FakeStartError
from sim.fake_binance.process import spawn_fake_binance as _spawn


def spawn_fake_binance(capture: Path, *args: str) -> tuple[subprocess.Popen, dict[str, str]]:
    try:
        return _spawn(capture, *args)
    except FakeStartError as exc:
        raise AssertionError(str(exc)) from None
