"""Recording a venue's raw market data (``hft record``): what a venue's capture gives the node.

A capture taps a feed's input (the frames and the REST snapshots, as received) into files of the
venue's own capture format, which that venue's importer turns into the market-data Parquet
(``hft data import``), so a recording is both the raw truth and a backtest data root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from engine.venue.feed import MarketDataFeed


class Capture(Protocol):
    #: bytes taken in and not yet written (the recorder flushes early when this grows)
    pending_bytes: int

    def attach(self, feed: MarketDataFeed) -> None:
        """Record everything ``feed`` receives from now on (before it decodes it)."""

    async def flush(self) -> None:
        """Write what is buffered (off the event loop's thread)."""

    async def close(self) -> None:
        """Write the rest; nothing received is lost."""

    async def to_parquet(self, root: Path, instruments: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Import every recorded file into ``root`` (canonical symbol -> what was written)."""
