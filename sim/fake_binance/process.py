"""The fake Binance as a subprocess (``hft sim binance``), the way an operator runs it: it prints
its URLs, then serves until terminated. Tests and benchmarks that drive ``hft`` as a separate
process start it here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HFT = [sys.executable, "-m", "engine.cli"]


class FakeStartError(RuntimeError):
    """The fake exited or printed no URLs."""


def spawn_fake_binance(capture: Path, *args: str, quiet: bool = False) -> tuple[subprocess.Popen, dict[str, str]]:
    """Start ``hft sim binance --data CAPTURE ARGS...``; returns the process and its URLs as the
    environment variables that point an adapter at it (``BINANCE_REST_URL``, ``BINANCE_WS_URL``,
    ``BINANCE_WS_API_URL``). ``quiet`` discards its stderr (a long benchmark would otherwise fill
    the pipe nobody reads)."""
    proc = subprocess.Popen(
        [*HFT, "sim", "binance", "--data", str(capture), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else subprocess.PIPE, text=True,
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
            return proc, urls
    proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    raise FakeStartError(f"the fake Binance did not start: {err}")
