"""``python -m engine.runners.warm_cache``: compile every package's numba code once, at install.

numba compiles a function the first time it is called with new argument types and caches it on
disk (``engine.jitcache``). On a fresh clone that first call would otherwise fall inside the
first backtest, the first session or the first test run, tens of seconds each; ``scripts/setup.sh``
runs this instead, and says how long it took.
"""

from __future__ import annotations

import time


def main() -> int:
    t0 = time.perf_counter()
    from sim.kernel_state import warm_up as warm_replay

    got = warm_replay()
    print(f"replay kernels: {got['compiled']} compiled, the rest from the cache ({got['seconds']:.1f} s)")
    t = time.perf_counter()
    import sim.compiled.loop  # noqa: F401  (the compiled path's loop compiles on import)

    print(f"compiled path: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    from venues.binance.depth_apply import warm_up as warm_binance

    warm_binance()
    print(f"Binance feed: {time.perf_counter() - t:.1f} s")
    print(f"compiled code ready in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
