"""What every venue's per-symbol book sync shares: taking a book out of use.

A book stops being valid on a gap, a bad level, a disconnect or a resync; strategies are told
once per valid -> invalid transition (``on_book_invalid``), and a failing callback is logged
instead of breaking the feed that called it. Only transitions come here, never a normal frame.
"""

from __future__ import annotations

import logging

from engine.book import Book
from engine.venue.feed import OnBookInvalid


def invalidate(
    book: Book, on_invalid: OnBookInvalid | None, log: logging.Logger, venue: str, symbol: str, reason: str
) -> None:
    """Mark ``book`` invalid and call ``on_invalid(book, reason)`` if it was valid until now."""
    if not book.valid:
        return
    book.valid = False
    if on_invalid is not None:
        try:
            on_invalid(book, reason)
        except Exception:
            log.exception(f"on_book_invalid failed venue={venue} symbol={symbol} ({reason})")
