"""Paper trading: live market data from the venues' adapters, execution simulated against the live
book by the backtest's own matching, latency, queue and fee models (``sim.paper``), the same
strategy, risk and order code, the same event log. One node (``node.build_node``), run by the
session every live mode shares (``session``): the feed applies each message once, on the same
fast path live trading uses, and the simulated venue matches on that book.

The feeds' market data is recorded into the run directory as the session trades
(``output.capture_market_data``, on by default here; ``--no-capture-market-data``), so
``hft parity RUN_DIR`` can replay the session as a backtest and compare (``docs/parity.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

from engine.runners.session import Session, SessionResult, run_session
from engine.runners.spec import RunSpec
from engine.venue import VenueAdapter

__all__ = ["install_signal_stop", "run_paper"]


async def run_paper(
    spec: RunSpec,
    run_dir: Path,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    adapters: dict[str, VenueAdapter] | None = None,
    ready: Callable[[Session], None] | None = None,
) -> SessionResult:
    """Run until ``duration_s`` elapses or ``stop`` is set. ``adapters`` (venue -> adapter)
    replace the registry's (tests point them at a fake exchange)."""
    return await run_session(spec, "paper", run_dir, duration_s, stop, ready, adapters)


def install_signal_stop(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop``: the session ends gracefully (``Session.stop``)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError, NotImplementedError):  # platforms without signal handlers
            loop.add_signal_handler(sig, stop.set)
