"""The store's errors: one clear line each, starting with the guide's message where it has one.

``StoreUnavailable`` and ``StoreTimeout`` start with the guide's §12.1 texts (``engine.messages``)
so an operator grepping for ``Database connection failed`` or ``Database query timeout`` finds
them; all are ``HftError``s, so the CLI reports them as one line with exit code 2.
"""

from __future__ import annotations

from engine.errors import HftError
from engine.messages import DATABASE_CONNECTION_FAILED, DATABASE_QUERY_TIMEOUT


class StoreError(HftError):
    """Anything the store refuses or cannot do (bad schema state, bad input)."""


class StoreUnavailable(StoreError):
    """The database server cannot be reached, or the connection was lost."""

    def __init__(self, host: str, port: int | str, cause: str) -> None:
        self.host = host
        self.port = port
        self.cause = cause
        super().__init__(f"{DATABASE_CONNECTION_FAILED}: could not connect to server {host}:{port}: {cause}")


class StoreTimeout(StoreError):
    """A statement ran past the configured query timeout."""

    def __init__(self, operation: str, timeout_s: float) -> None:
        self.operation = operation
        self.timeout_s = timeout_s
        super().__init__(f"{DATABASE_QUERY_TIMEOUT}: {operation} took longer than {timeout_s:g} s")


class StoreLocked(StoreError):
    """The DuckDB file is held by another process (DuckDB allows one writer process per file)."""

    def __init__(self, path: str, pid: int | None, detail: str = "") -> None:
        self.path = path
        self.pid = pid
        holder = f" (pid {pid})" if pid else ""
        tail = f": {detail}" if detail else ""
        super().__init__(
            f"DuckDB file {path} is locked by another process{holder}; stop it or use another "
            f"database.duckdb_path{tail}"
        )


class MigrationError(StoreError):
    """The database's schema history does not match this code's migrations."""
