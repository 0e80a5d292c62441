"""Importers of third-party market data into the Parquet layout of ``engine.marketdata.schema``."""

from engine.marketdata.importers.binance_capture import import_binance_capture
from engine.marketdata.importers.result import ImportResult, Position
from engine.marketdata.importers.tardis import import_tardis

__all__ = ["ImportResult", "Position", "import_binance_capture", "import_tardis"]
