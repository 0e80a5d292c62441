"""Numba's on-disk cache, keyed by the source of every compiled module together.

Numba checks a cached function against its own file only. Our kernels call compiled functions
of other files (``sim/kernel.py`` and ``venues/binance/depth_apply.py`` inline ``engine/book.py``),
so after an edit of ``engine/book.py`` the cached kernel would still run the old book code: wrong
results, or writes past an array that has since changed shape. Every package that compiles
imports this module before numba, and it points ``NUMBA_CACHE_DIR`` at a directory named by a hash
of all the compiled sources: any edit to any of them starts a fresh cache. An operator's own
``NUMBA_CACHE_DIR`` is left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: every module with ``@njit(cache=True)`` functions, and what they call
COMPILED = (
    "engine/book.py",
    "engine/marketdata/decimals.py",
    "engine/marketdata/merge.py",
    "reports/bench.py",
    "sim/kernel.py",
    "sim/queue.py",
    "venues/binance/depth_apply.py",
    "venues/binance/numbers.py",
)
_KEEP = 3  # cache generations kept (switching branches back and forth stays warm)


def source_hash() -> str:
    h = hashlib.sha256()
    for rel in COMPILED:
        h.update(rel.encode())
        with contextlib.suppress(OSError):
            h.update((ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


def _base() -> Path:
    local = ROOT / ".numba_cache"
    if os.access(ROOT, os.W_OK):
        return local
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hft" / "numba"


def _prune(base: Path, current: Path) -> None:
    with contextlib.suppress(OSError):
        old = sorted((p for p in base.iterdir() if p.is_dir() and p != current), key=lambda p: p.stat().st_mtime)
        for p in old[: max(len(old) - (_KEEP - 1), 0)]:
            shutil.rmtree(p, ignore_errors=True)


def configure() -> str | None:
    """Set ``NUMBA_CACHE_DIR`` (unless the environment already does); returns the directory."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = _base()
    current = base / source_hash()
    try:
        current.mkdir(parents=True, exist_ok=True)
        os.utime(current)
    except OSError:
        return None  # numba's default (next to the sources) then; nothing worse than before
    _prune(base, current)
    os.environ["NUMBA_CACHE_DIR"] = str(current)
    if "numba" in sys.modules:  # imported before us: make it read the variable again
        from numba.core import config

        config.reload_config()
    return str(current)


configure()
