"""Kraken spot: WebSocket v2 market data and order entry, REST for instruments and the account."""
