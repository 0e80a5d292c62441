"""Report errors the CLI prints as one line (exit code 2)."""

from __future__ import annotations

from pathlib import Path

from engine.errors import HftError, RunLogError


class EmptyRunError(RunLogError):
    """The log has no fills for what was asked; the report saying so has been written to ``written``."""

    def __init__(self, path: str, reason: str, written: list[Path] | None = None) -> None:
        self.written = list(written or [])
        if self.written:
            reason = f"{reason}; report written to {self.written[0]}"
        super().__init__(path, reason)


class ReportWriteError(HftError):
    """The report could not be written (permissions, full disk, a file where a directory should be)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot write report to {path}: {reason}")
