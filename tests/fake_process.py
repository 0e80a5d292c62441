"""The fake Binance as a subprocess (``hft sim binance``), for the tests that run ``hft`` the way
an operator does: it prints its URLs, then serves until terminated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HFT = [sys.executable, "-m", "engine.cli"]


def spawn_fake_binance(capture: Path, *args: str) -> tuple[subprocess.Popen, dict[str, str]]:
    """Start ``hft sim binance --data CAPTURE ARGS...``; returns the process and its URLs as the
    environment variables that point an adapter at it (``BINANCE_REST_URL``, ``BINANCE_WS_URL``,
    ``BINANCE_WS_API_URL``)."""
    proc = subprocess.Popen(
        [*HFT, "sim", "binance", "--data", str(capture), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    urls: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        parts = line.split()
        if line.startswith("  REST"):
            urls["BINANCE_REST_URL"] = parts[1]
        elif line.startswith("  WS market"):
            urls["BINANCE_WS_URL"] = parts[2]
        elif line.startswith("  WS API"):
            urls["BINANCE_WS_API_URL"] = parts[2]
        if len(urls) == 3:
            break
    if len(urls) != 3:
        proc.kill()
        raise AssertionError(f"the fake did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, urls
