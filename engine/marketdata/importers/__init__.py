"""Importers of third-party market data into the Parquet layout of ``engine.marketdata.schema``.

Venue-neutral formats live here (Tardis CSV); a venue's own capture format lives with the venue
(``venues.binance.capture_import``) and is found through the venue registry by ``hft data import``.
"""

from engine.marketdata.importers.result import ImportResult, Position
from engine.marketdata.importers.tardis import import_tardis

__all__ = ["ImportResult", "Position", "import_tardis"]
