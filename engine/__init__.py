"""The engine core: events, clocks, loop, book, orders, risk, portfolio, strategy API, recorder.

Nothing in here imports from ``venues``, ``sim`` or ``strategies``; the runners in
``engine.runners`` are the one place that wires a mode together.
"""

__version__ = "0.1.0"

from engine import jitcache as _jitcache  # noqa: F401  (numba's cache, before numba loads)
