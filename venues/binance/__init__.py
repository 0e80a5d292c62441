"""Binance spot live adapter: market data, signed REST, WebSocket API user stream, execution."""
