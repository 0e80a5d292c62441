"""Repeated warnings, summarised: the first one is logged, the repeats are counted.

A venue having a bad day says the same thing many times: 300 ``serverShutdown`` messages in a
burst, a request timing out every few seconds through a two-minute outage, every request in
flight answered 429 at once. One line per occurrence buries everything else in the log.

``Summary`` logs the first occurrence of a key as it is, then counts the repeats and writes at
most one line per ``interval_s`` for that key: ``<N> more like this in the last <T> s: <the
latest message>`` (the latest message keeps the guide's wording, so a grep for ``rate limit`` or
``binance`` still finds the summary). That line is written when the interval ends (a timer on
the running event loop), or at the next occurrence after it, or by ``flush``/``close``; a key
quiet for a whole interval starts over, its next occurrence logged at once::

    summary = Summary(get_logger("exchanges"), interval_s=60.0)
    summary.warning("serverShutdown", "binance market data: serverShutdown received, reconnecting")
    ...
    summary.close()  # at stop: what is still counted is written

``warning``/``info``/``log`` return True when the line was written, False when it was counted:
a caller can raise an incident for the written ones only.

``Outage`` builds on it for a service that fails for a while: an incident and a line when the
failures start, the repeats summarised while they last, an incident and a line with the
duration when the service answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.events import Incident


@dataclass(slots=True)
class _Key:
    since: float  # start of the current interval (monotonic)
    count: int = 0  # occurrences counted (not logged) in it
    last: str = ""  # the latest of them
    level: int = logging.WARNING
    timer: Any = None  # asyncio.TimerHandle writing the summary at the interval's end


class Summary:
    """At most one line per key per ``interval_s`` after the first (see the module docstring).

    ``clock`` is monotonic seconds; ``use_timer=False`` leaves the summary lines to the next
    occurrence and ``flush`` (tests with a fake clock)."""

    def __init__(
        self,
        log: logging.Logger,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        use_timer: bool = True,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"summary interval must be > 0 s, got {interval_s}")
        self.log = log
        self.interval_s = interval_s
        self._clock = clock
        self._use_timer = use_timer
        self._keys: dict[str, _Key] = {}
        self.written = 0  # lines written (first occurrences and summaries)
        self.counted = 0  # occurrences folded into a summary

    # --- use --------------------------------------------------------------------------------
    def warning(self, key: str, message: str) -> bool:
        return self.log_line(key, message, logging.WARNING)

    def info(self, key: str, message: str) -> bool:
        return self.log_line(key, message, logging.INFO)

    def log_line(self, key: str, message: str, level: int = logging.WARNING) -> bool:
        """Log ``message`` if it is the first of ``key`` in its interval, else count it."""
        now = self._clock()
        k = self._keys.get(key)
        if k is None or (k.count == 0 and now - k.since >= self.interval_s):
            if k is not None and k.timer is not None:
                k.timer.cancel()
            self._keys[key] = _Key(now, level=level)
            self._write(level, message)
            return True
        if now - k.since >= self.interval_s:
            self._summarise(k, now)  # the last interval's repeats; this one opens the next
        k.count += 1
        k.last = message
        k.level = max(k.level, level)
        self.counted += 1
        if k.timer is None and self._use_timer:
            loop = asyncio._get_running_loop()
            if loop is not None:
                k.timer = loop.call_later(max(k.since + self.interval_s - now, 0.0), self._on_timer, key)
        return False

    def pending(self, key: str) -> int:
        """Occurrences of ``key`` counted and not written yet."""
        k = self._keys.get(key)
        return 0 if k is None else k.count

    def flush(self, key: str | None = None) -> None:
        """Write the summary of ``key`` (every key: None) now, whatever is left of its interval.
        A key flushed starts over: its next occurrence is logged at once."""
        now = self._clock()
        for name in [key] if key is not None else list(self._keys):
            k = self._keys.pop(name, None)
            if k is not None:
                self._summarise(k, now)

    def close(self) -> None:
        """``flush`` everything (call when the component stops)."""
        self.flush()

    # --- internals --------------------------------------------------------------------------
    def _on_timer(self, key: str) -> None:
        k = self._keys.get(key)
        if k is None:
            return
        k.timer = None
        if k.count:
            self._summarise(k, self._clock())
        else:
            del self._keys[key]

    def _summarise(self, k: _Key, now: float) -> None:
        if k.timer is not None:
            k.timer.cancel()
            k.timer = None
        if k.count:
            self._write(k.level, f"{k.count} more like this in the last {now - k.since:.1f} s: {k.last}")
            k.count = 0
            k.last = ""
        k.since = now

    def _write(self, level: int, message: str) -> None:
        self.written += 1
        self.log.log(level, message)


@dataclass(slots=True)
class _Down:
    since: float  # monotonic
    last: float = 0.0  # the latest failure (monotonic)
    failures: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    kinds: set[str] = field(default_factory=set)


class Outage:
    """A service failing for a while (``venue``'s REST API, say), told once at each end.

    ``failure(kind, reason, detail)`` for each failed request: the first of an outage logs
    ``<reason>: <detail>`` and raises an incident of ``kind`` (``venue_unreachable``,
    ``venue_error``); so does the first failure of another kind during it; the rest are
    summarised (``Summary``, key ``<venue> <what> outage``). ``success()`` for each answer: ending
    an outage, it writes the summary still counted, then ``<venue> <what> answering again after
    <T> s (<n> failed requests: <reason> xN, ...[, the last <t> s ago])`` and raises
    ``restored_kind`` with T, the seconds from the first failure (dated back by its wait) to this
    answer, as its value."""

    def __init__(
        self,
        venue: str,
        what: str,
        log: logging.Logger,
        summary: Summary,
        on_incident: Callable[[Incident], None] | None = None,
        restored_kind: str = "venue_restored",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.venue = venue
        self.what = what
        self.log = log
        self.summary = summary
        self.on_incident = on_incident
        self.restored_kind = restored_kind
        self._clock = clock
        self._key = f"{venue} {what} outage"
        self.down: _Down | None = None
        self.outages = 0
        self.last_duration_s = 0.0

    @property
    def is_down(self) -> bool:
        return self.down is not None

    def failure(self, kind: str, reason: str, detail: str, waited_s: float = 0.0) -> None:
        """One failed request; ``waited_s``: how long it waited for nothing (a timeout), so an
        outage that starts with it is dated from when that request was sent."""
        now = self._clock()
        d = self.down
        message = f"{reason}: {detail}"
        if d is None:
            d = self.down = _Down(now - max(waited_s, 0.0))
            self.outages += 1
        d.failures += 1
        d.last = now
        d.reasons[reason] = d.reasons.get(reason, 0) + 1
        if kind not in d.kinds:  # an outage starts, or fails in a new way: told at once
            d.kinds.add(kind)
            self.summary.flush(self._key)  # what was counted before it
            self.summary.warning(self._key, message)
            self._incident(kind, message, 0.0)
        else:
            self.summary.warning(self._key, f"{message} (failing for {now - d.since:.1f} s)")

    def success(self) -> None:
        d = self.down
        if d is None:
            return
        self.down = None
        now = self._clock()
        duration = now - d.since
        self.last_duration_s = duration
        self.summary.flush(self._key)
        counts = ", ".join(f"{r} x{n}" for r, n in d.reasons.items())
        # with requests far apart, it may have come back long before: say when it last failed
        quiet = f", the last {now - d.last:.1f} s ago" if now - d.last >= 1.0 else ""
        message = (
            f"{self.venue} {self.what} answering again after {duration:.1f} s "
            f"({d.failures} failed request{'s' if d.failures != 1 else ''}: {counts}{quiet})"
        )
        self.log.warning(message)
        self._incident(self.restored_kind, message, duration)

    def _incident(self, kind: str, detail: str, value: float) -> None:
        if self.on_incident is not None:
            self.on_incident(Incident(time.time_ns(), self.venue, "", kind, detail, value))
