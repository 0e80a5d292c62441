"""The engine core: events, clocks, loop, book, orders, risk, portfolio, strategy API, recorder.

Nothing in here imports from ``venues``, ``sim``, ``strategies`` or ``reports``
(``tests/test_layering.py``); the runners in ``engine.runners`` and the CLI are the one place
that wires a mode together.
"""

__version__ = "0.1.0"

from engine import jitcache as _jitcache

#: modules with cached compiled functions: their cache is keyed by these files (engine.jitcache)
_jitcache.register(__name__, ("book.py", "compiled_strategy.py", "marketdata/decimals.py", "marketdata/merge.py"))
