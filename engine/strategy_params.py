"""Declared strategy parameters: each strategy says, in one place, which params it takes, their
types, bounds and defaults; anything else in a config is refused.

    PARAMS = Params(
        order_size=Param("number", 0.01, gt=0, doc="base units per quote"),
        post_only=Param("bool", True),
    )

    class MyStrategy(Strategy):
        params_schema = PARAMS

        def __init__(self, strategy_id, venue, symbols, params=None):
            super().__init__(strategy_id, venue, symbols, PARAMS.parse(params))

``Params.parse`` returns the params with every default filled in, or raises ``ParamError``
(a ``ValueError``: ``params.order_size: must be a number > 0, got -1``; an unknown name gets a
near-miss suggestion: ``params.order_sise: unknown field, did you mean 'order_size'?``). The run
config loader (``engine.runners.spec``) checks a strategy's params against its ``params_schema``
when the config is read, so the error names the config file before anything runs; a strategy
without a schema takes any params.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.config import unknown_field

TYPES = ("number", "int", "bool", "str")


class ParamError(ValueError):
    """A strategy param that is unknown or out of its declared type or bounds."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"params.{field}: {reason}" if field else f"params: {reason}")


@dataclass(frozen=True, slots=True)
class Param:
    """One param: ``kind`` is ``number`` (int or float, finite), ``int``, ``bool`` or ``str``;
    ``gt``/``ge``/``le`` bound numbers (exclusive, inclusive, inclusive); ``choices`` restricts a
    ``str``."""

    kind: str
    default: Any
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in TYPES:
            raise TypeError(f"param kind must be one of {TYPES}, got {self.kind!r}")

    def describe(self) -> str:
        """``a number > 0``, ``true or false``, ``one of 'a', 'b'``."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return f"one of {', '.join(map(repr, self.choices))}" if self.choices else "a non-empty string"
        bounds = [
            f"> {_num(self.gt)}" if self.gt is not None else "",
            f">= {_num(self.ge)}" if self.ge is not None else "",
            f"<= {_num(self.le)}" if self.le is not None else "",
        ]
        text = " and ".join(b for b in bounds if b)
        noun = "an integer" if self.kind == "int" else "a number"
        return f"{noun} {text}" if text else noun

    def check(self, name: str, value: Any) -> Any:
        ok = True
        if self.kind == "bool":
            ok = isinstance(value, bool)
        elif self.kind == "str":
            ok = isinstance(value, str) and bool(value) and (not self.choices or value in self.choices)
        else:
            if self.kind == "int":
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if ok:
                ok = (
                    (self.gt is None or value > self.gt)
                    and (self.ge is None or value >= self.ge)
                    and (self.le is None or value <= self.le)
                )
        if not ok:
            raise ParamError(name, f"must be {self.describe()}, got {value!r}")
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class Params:
    """A strategy's declared params, by name."""

    def __init__(self, **params: Param) -> None:
        self.params = params

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items()}

    def parse(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """``given`` checked and completed with the defaults; ``ParamError`` on the first problem
        (unknown names first, in sorted order, then values in declaration order)."""
        given = {} if given is None else given
        if not isinstance(given, Mapping):
            raise ParamError("", f"must be an object, got {type(given).__name__}")
        unknown = sorted(str(k) for k in given if k not in self.params)
        if unknown:
            raise ParamError(unknown[0], unknown_field(unknown[0], self.params))
        out = {}
        for name, p in self.params.items():
            out[name] = p.check(name, given[name]) if name in given else p.default
        return out
