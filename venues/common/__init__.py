"""Helpers every live venue adapter shares: reconnect backoff, rate limiting, WebSocket loop,
config loading (``config``), the feed's connection lifecycle (``feed``), book invalidation
(``book_sync``) and the adapter's common set-up (``adapter``)."""
