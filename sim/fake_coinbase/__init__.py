"""A loopback fake of Coinbase: Advanced Trade market data (WebSocket) and Coinbase Exchange REST
(products, signed orders and account queries) on one aiohttp server, replaying the real BAND-GBP
capture, matching orders against the replayed book and injecting faults. See ``README.md``."""

from sim.fake_coinbase.server import ENV_KEY, ENV_PASSPHRASE, ENV_SECRET, FakeCoinbase

__all__ = ["ENV_KEY", "ENV_PASSPHRASE", "ENV_SECRET", "FakeCoinbase"]
