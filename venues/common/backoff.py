"""Reconnect pacing: exponential backoff with jitter, capped by a connection-attempt window.

Venues limit how often one IP may open connections (Binance: 300 attempts per 5 minutes). A
reconnect storm must never cross that line, whatever the backoff says, so every attempt goes
through ``ReconnectPolicy.next_delay``, which returns the larger of the jittered backoff and the
time until the sliding window has room again.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffSettings:
    """``initial_s`` doubles (``factor``) per failed attempt up to ``max_s``; ``jitter`` is the
    random fraction taken off each delay (0 = none, 1 = full jitter)."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    max_attempts_per_window: int = 300
    window_s: float = 300.0

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ValueError(f"backoff needs 0 <= initial_s <= max_s, got {self.initial_s}, {self.max_s}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be in [0, 1], got {self.jitter}")
        if self.max_attempts_per_window < 1 or self.window_s <= 0:
            raise ValueError("connection window needs max_attempts_per_window >= 1 and window_s > 0")


class ExponentialBackoff:
    """Delay before the n-th consecutive retry: ``min(max, initial * factor**n)`` minus jitter."""

    __slots__ = ("_rng", "attempt", "settings")

    def __init__(self, settings: BackoffSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        s = self.settings
        raw = min(s.max_s, s.initial_s * s.factor**self.attempt) if self.attempt < 64 else s.max_s
        self.attempt += 1
        return raw * (1.0 - s.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempt = 0


class AttemptWindow:
    """Sliding-window counter: at most ``limit`` events in any ``window_s`` seconds."""

    __slots__ = ("_clock", "_times", "limit", "window_s")

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        edge = now - self.window_s
        while self._times and self._times[0] <= edge:
            self._times.popleft()

    def wait_time(self) -> float:
        """Seconds until one more event fits in the window (0 when it fits now)."""
        now = self._clock()
        self._trim(now)
        if len(self._times) < self.limit:
            return 0.0
        return self._times[len(self._times) - self.limit] + self.window_s - now

    def record(self) -> None:
        now = self._clock()
        self._trim(now)
        self._times.append(now)

    def count(self) -> int:
        self._trim(self._clock())
        return len(self._times)


class ReconnectPolicy:
    """Backoff plus the venue's connection-attempt window, one object per connection kind.

    Call ``next_delay()`` before an attempt, sleep that long, then ``record_attempt()`` as the
    connection is opened; ``on_connected()`` after a successful session resets the backoff.
    ``shared_window`` lets several connections to one venue share its per-IP attempt budget.
    """

    def __init__(
        self,
        settings: BackoffSettings,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        shared_window: AttemptWindow | None = None,
    ) -> None:
        self.settings = settings
        self.backoff = ExponentialBackoff(settings, rng)
        self.window = shared_window or AttemptWindow(settings.max_attempts_per_window, settings.window_s, clock)
        self._first = True

    def next_delay(self) -> float:
        """Delay before the next attempt: none for the very first, else backoff, never past the window."""
        delay = 0.0 if self._first else self.backoff.next_delay()
        self._first = False
        return max(delay, self.window.wait_time())

    def record_attempt(self) -> None:
        self.window.record()

    def on_connected(self) -> None:
        self.backoff.reset()

    def immediate(self) -> None:
        """The next attempt is a planned one (server asked us to move): skip the backoff, not the window."""
        self._first = True
