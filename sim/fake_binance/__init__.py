"""A loopback fake of Binance spot: REST, market streams and WS API on one aiohttp server.

It replays real captures with their real update-id chain, matches orders against the replayed
book, and injects the faults a live adapter must survive. See ``README.md`` in this folder.
"""

from sim.fake_binance.errors import BinanceError
from sim.fake_binance.server import ENV_KEY, ENV_SECRET, FakeBinance, parse_speed

__all__ = ["ENV_KEY", "ENV_SECRET", "BinanceError", "FakeBinance", "parse_speed"]
