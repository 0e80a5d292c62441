"""Benchmarks: a plain directory of the source checkout, not an installed package.

Run from the repository root as ``python -m bench.<name>`` (``bench/README.md`` lists them);
``hft bench`` runs ``bench.backtest``. Benchmarks may import every package of the system and
each other; nothing installed imports them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine import jitcache as _jitcache

REPO = Path(__file__).resolve().parents[1]

#: modules with cached compiled functions (engine.jitcache); they inline nothing of the packages
_jitcache.register(__name__, ("reports.py",))


def interpreter() -> str:
    """The interpreter running this, and whether it loads libpython as a shared library: such
    builds run pure-Python code measurably slower (``scripts/pick_python.sh``), so every
    benchmark says which one it ran on."""
    import sysconfig

    shared = "unknown"
    maps = Path("/proc/self/maps")
    if maps.exists():
        shared = "yes" if "libpython" in maps.read_text() else "no"
    elif sysconfig.get_config_var("Py_ENABLE_SHARED") == 0:
        shared = "no"
    return f"{sys._base_executable} {sys.version.split()[0]} (libpython shared: {shared})"
