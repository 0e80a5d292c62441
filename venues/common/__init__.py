"""Helpers every live venue adapter shares: reconnect backoff, rate limiting, WebSocket loop."""
