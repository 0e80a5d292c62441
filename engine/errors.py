"""Errors an operator sees as one clear line (the CLI turns them into exit code 2)."""

from __future__ import annotations


class HftError(Exception):
    """Base of every error the CLI reports without a traceback."""


class ConfigError(HftError):
    """A configuration file is missing, unreadable or has a bad field."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Failed to load configuration from {path}: {reason}")


class DataError(HftError):
    """Market data is missing, corrupt or not in the expected schema."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Bad market data at {path}: {reason}")


class RunLogError(HftError):
    """An event log (runs/<run_id>/) is missing or unreadable."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read event log at {path}: {reason}")
