"""Persistence: PostgreSQL (TimescaleDB where available) or an embedded DuckDB file, one schema.

``open_store(settings)`` gives the configured ``Store`` (not yet connected); ``engine.store.schema``
holds the tables and migrations, ``retention`` the partition maintenance, ``load`` the loading of
a run's event log, ``cli`` the ``hft db`` commands. The journal and the store's writer (``journal``,
``service``: a thread, or a child process by default for PostgreSQL, ``writer_process``) feed it
from a running session.
"""

from __future__ import annotations

from engine.store import errors
from engine.store.base import Store
from engine.store.config import StoreSettings, load_store_settings, parse_store
from engine.store.errors import MigrationError, StoreError, StoreLocked, StoreTimeout, StoreUnavailable


def open_store(settings: StoreSettings) -> Store:
    """The store ``settings`` select (``backend`` postgresql or duckdb), not yet connected."""
    if settings.backend == "postgresql":
        from engine.store.pg import PgStore

        return PgStore(settings)
    if settings.backend == "duckdb":
        from engine.store.duck import DuckStore

        return DuckStore(settings)
    raise StoreError(
        f"the store is turned off (database.backend is {settings.backend!r} in {settings.source or 'the config'})"
    )


__all__ = [
    "MigrationError",
    "Store",
    "StoreError",
    "StoreLocked",
    "StoreSettings",
    "StoreTimeout",
    "StoreUnavailable",
    "errors",
    "load_store_settings",
    "open_store",
    "parse_store",
]
