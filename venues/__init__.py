"""venues package."""

import engine.jitcache  # noqa: F401  (numba's cache, before numba loads)
