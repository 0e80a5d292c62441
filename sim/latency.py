"""Latency models for the simulated venue: feed (venue -> us), order entry (us -> venue), response.

All are seeded so a backtest is reproducible. ``sample()`` returns nanoseconds.
"""

from __future__ import annotations

import numpy as np

from sim.venue_time import ConstantVenueTime, DataVenueTime


class ConstantLatency:
    def __init__(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("latency must be >= 0 ns")
        self.ns = int(ns)

    def sample(self) -> int:
        return self.ns

    def describe(self) -> dict:
        return {"type": "constant", "ns": self.ns}


class RandomLatency:
    """Lognormal around ``median_ns`` with ``sigma`` (log-space), floored at ``min_ns``.

    Network latency is right-skewed: most packets near the median, a long tail of slow ones. Draws
    come in blocks from a seeded generator, so the sequence depends only on the seed and the count.
    """

    _BLOCK = 4096

    def __init__(self, median_ns: int, sigma: float = 0.25, min_ns: int = 0, seed: int = 0) -> None:
        if median_ns <= 0 or sigma < 0 or min_ns < 0:
            raise ValueError("random latency needs median_ns > 0, sigma >= 0, min_ns >= 0")
        self.median_ns = int(median_ns)
        self.sigma = float(sigma)
        self.min_ns = int(min_ns)
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)
        self._buf: list[int] = []

    def sample(self) -> int:
        if not self._buf:
            draws = self._rng.lognormal(np.log(self.median_ns), self.sigma, self._BLOCK)
            self._buf = np.maximum(draws, self.min_ns).astype(np.int64)[::-1].tolist()
        return self._buf.pop()

    def describe(self) -> dict:
        return {
            "type": "random",
            "median_ns": self.median_ns,
            "sigma": self.sigma,
            "min_ns": self.min_ns,
            "seed": self.seed,
        }


def _ns(cfg: dict, prefix: str, default: int | None) -> int:
    for unit, mul in (("ns", 1), ("us", 1_000), ("ms", 1_000_000)):
        key = f"{prefix}{unit}"
        if key in cfg:
            return int(float(cfg[key]) * mul)
    if default is None:
        raise ValueError(f"latency needs '{prefix}ms' (or {prefix}us / {prefix}ns)")
    return default


def from_config(cfg: dict | int | None, default_ns: int, seed: int) -> ConstantLatency | RandomLatency:
    """``{"type": "constant", "ms": 5}`` / ``{"type": "random", "median_ms": 5, "sigma": 0.3}`` / plain ns."""
    if cfg is None:
        return ConstantLatency(default_ns)
    if isinstance(cfg, int | float):
        return ConstantLatency(int(cfg))
    kind = cfg.get("type", "constant")

    def ns(prefix: str, default: int | None = None) -> int:
        return _ns(cfg, prefix, default)

    if kind == "constant":
        return ConstantLatency(ns(""))
    if kind == "random":
        return RandomLatency(ns("median_"), float(cfg.get("sigma", 0.25)), ns("min_", 0), int(cfg.get("seed", seed)))
    raise ValueError(f"unknown latency type {kind!r}; expected 'constant' or 'random'")


def feed_from_config(cfg: dict | int | None, default_ns: int) -> ConstantVenueTime | DataVenueTime:
    """The feed latency, i.e. how the venue's clock relates to ours (``sim.venue_time``):
    ``{"type": "constant", "ms": 2}`` / ``{"type": "data"[, "min_us": 0][, "clock_offset_ms": X]}``.
    A latency drawn at random per message is refused: the venue needs one time per message, and a
    draw per row would tear messages apart."""
    if cfg is None:
        return ConstantVenueTime(default_ns)
    if isinstance(cfg, int | float) and not isinstance(cfg, bool):
        return ConstantVenueTime(int(cfg))
    if not isinstance(cfg, dict):
        raise ValueError(f"must be an object or a number of ns, got {cfg!r}")
    kind = cfg.get("type", "constant")
    if kind == "constant":
        return ConstantVenueTime(from_config(cfg, default_ns, 0).sample())
    if kind == "data":
        unknown = set(cfg) - {
            "type",
            "min_ns",
            "min_us",
            "min_ms",
            "clock_offset_ns",
            "clock_offset_us",
            "clock_offset_ms",
        }
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} for type 'data'")
        floor = _ns(cfg, "min_", 0)
        offset = _ns(cfg, "clock_offset_", None) if any(k.startswith("clock_offset_") for k in cfg) else None
        return DataVenueTime(floor, offset)
    if kind == "random":
        raise ValueError(
            "a random feed latency is not supported: the venue needs one time per market-data message; "
            "use 'constant', or 'data' (the data's own venue timestamps)"
        )
    raise ValueError(f"unknown latency type {kind!r}; expected 'constant' or 'data'")
