"""What an import did: rows per kind, messages, malformed lines, sequence gaps, time range, files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.model import KIND_NAMES

# Positions kept per problem list; counts are always complete.
MAX_POSITIONS = 100


@dataclass(slots=True)
class Position:
    """A place in an input file (1-based line number) and what was wrong there."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(slots=True)
class ImportResult:
    """Summary of one import of one (venue, symbol) stream.

    ``rows`` counts written rows per kind name. ``levels_seen`` counts the level changes found in
    book delta messages, applied or not; ``dropped_book_*`` are the delta messages/rows that were
    not written because no synced book could take them (before the first snapshot, after a gap).
    ``book_resets`` counts the empty snapshot rows written where the book lost sync.
    """

    venue: str
    symbol: str
    source_format: str
    sources: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: {name: 0 for name in KIND_NAMES.values()})
    messages: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    malformed_positions: list[Position] = field(default_factory=list)
    gaps: int = 0
    gap_positions: list[Position] = field(default_factory=list)
    levels_seen: int = 0
    book_resets: int = 0
    dropped_book_messages: int = 0
    dropped_book_rows: int = 0
    skipped: int = 0
    skipped_positions: list[Position] = field(default_factory=list)
    first_ts_recv: int | None = None
    last_ts_recv: int | None = None
    files_written: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0

    def count_message(self, name: str, n: int = 1) -> None:
        self.messages[name] = self.messages.get(name, 0) + n

    def add_malformed(self, file: str, line: int, reason: str) -> None:
        self.malformed += 1
        if len(self.malformed_positions) < MAX_POSITIONS:
            self.malformed_positions.append(Position(file, line, reason))

    def add_gap(self, file: str, line: int, reason: str) -> None:
        self.gaps += 1
        if len(self.gap_positions) < MAX_POSITIONS:
            self.gap_positions.append(Position(file, line, reason))

    def add_skipped(self, file: str, line: int, reason: str) -> None:
        self.skipped += 1
        if len(self.skipped_positions) < MAX_POSITIONS:
            self.skipped_positions.append(Position(file, line, reason))

    def note_time(self, first: int, last: int) -> None:
        self.first_ts_recv = first if self.first_ts_recv is None else min(self.first_ts_recv, first)
        self.last_ts_recv = last if self.last_ts_recv is None else max(self.last_ts_recv, last)
