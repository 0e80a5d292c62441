"""A loopback fake of Kraken spot (REST + WebSocket v2) for tests, paper trading and third-party clients."""

from sim.fake_kraken.server import ENV_KEY, ENV_SECRET, FakeKraken

__all__ = ["ENV_KEY", "ENV_SECRET", "FakeKraken"]
