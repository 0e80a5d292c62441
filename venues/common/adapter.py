"""What every venue adapter's set-up shares.

An adapter holds its config, the keys (None: market data only), the ``exchanges`` logger, one
connection-attempt budget per IP shared by every socket it opens (``attempts``), and the engine's
incident sink, which the engine may replace after construction (``set_incident_sink``): the
venue's REST client, feed and execution client all report through ``incident``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from engine.events import Incident
from engine.logs import get_logger
from venues.common.backoff import AttemptWindow, BackoffSettings


class _Config(Protocol):
    @property
    def reconnect(self) -> BackoffSettings: ...


ConfigT = TypeVar("ConfigT", bound=_Config)
CredentialsT = TypeVar("CredentialsT")


def with_symbols(config: ConfigT, symbols: Sequence[str]) -> ConfigT:
    """``config`` trading ``symbols`` instead of its own (in order, each once); unchanged when empty."""
    if not symbols:
        return config
    return dataclasses.replace(config, symbols=tuple(dict.fromkeys(symbols)))  # type: ignore[type-var]


class AdapterBase(Generic[ConfigT, CredentialsT]):
    """The state every venue adapter starts with; the venue's ``__init__`` calls this one first."""

    def __init__(
        self,
        config: ConfigT,
        credentials: CredentialsT | None = None,
        on_incident: Callable[[Incident], None] | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.log = get_logger("exchanges")
        self._on_incident = on_incident
        # one connection-attempt budget per IP for every socket this adapter opens
        rc = config.reconnect
        self.attempts = AttemptWindow(rc.max_attempts_per_window, rc.window_s)

    def set_incident_sink(self, on_incident: Callable[[Incident], None]) -> None:
        self._on_incident = on_incident

    def incident(self, inc: Incident) -> None:
        if self._on_incident is not None:
            self._on_incident(inc)
