"""Live trading: the venues' feeds and their live order entry, after reconciling each account.

The same node and session as paper trading (``session``), with the venues' execution clients in
place of the simulated venue. Before any strategy starts, every venue's open orders are adopted
or cancelled and its balances loaded (``engine.reconcile``); a graceful stop (SIGINT, SIGTERM,
``--duration``) cancels open orders when ``live.cancel_on_stop`` (the default) and writes the
event log. API keys come from the environment only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from engine.runners.session import Session, SessionResult, run_session
from engine.runners.spec import RunSpec
from engine.venue import VenueAdapter

__all__ = ["run_live"]


async def run_live(
    spec: RunSpec,
    run_dir: Path,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    adapters: dict[str, VenueAdapter] | None = None,
    ready: Callable[[Session], None] | None = None,
) -> SessionResult:
    return await run_session(spec, "live", run_dir, duration_s, stop, ready, adapters)
