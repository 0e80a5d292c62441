"""Which Python strategies have a compiled twin (``engine.compiled_strategy``), by ``module:Class``."""

from __future__ import annotations

import importlib
from types import ModuleType

TWINS: dict[str, str] = {
    "strategies.quote_at_touch:QuoteAtTouch": "strategies.quote_at_touch_compiled",
}


def twin_of(cls: type) -> ModuleType | None:
    """The compiled module for strategy class ``cls``, or None when it has none."""
    name = TWINS.get(f"{cls.__module__}:{cls.__qualname__}")
    return importlib.import_module(name) if name is not None else None
