"""Validation of request parameters and bodies against the same JSON-schema fragments the OpenAPI
document publishes, so the document and the checks cannot drift apart.

Only the keywords the route table uses are understood: ``type`` (object, boolean, integer, number,
string), ``properties``, ``required``, ``additionalProperties``, ``minProperties``, ``minimum``,
``maximum``, ``enum``, ``minLength``, ``maxLength``, ``pattern``. Every refusal is a
:class:`FieldError` whose message starts with the field's name (``limit: must be an integer
1..10000``), as the contract requires.
"""

from __future__ import annotations

import math
import re
from typing import Any


class FieldError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.message = f"{field}: {problem}"


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def describe(schema: dict[str, Any]) -> str:
    """What a valid value looks like, in words (the tail of a refusal)."""
    if "enum" in schema:
        return "must be one of: " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type")
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if kind in ("integer", "number"):
        noun = "an integer" if kind == "integer" else "a number"
        if lo is not None and hi is not None:
            return f"must be {noun} {_num(lo)}..{_num(hi)}"
        if lo is not None:
            return f"must be {noun} >= {_num(lo)}"
        if hi is not None:
            return f"must be {noun} <= {_num(hi)}"
        return f"must be {noun}"
    if kind == "boolean":
        return "must be true or false"
    if kind == "object":
        return "must be a JSON object"
    if kind == "string":
        if "pattern" in schema:
            return f"must be text matching {schema['pattern']}"
        return "must be text"
    return "has the wrong type"


def check(value: Any, schema: dict[str, Any], field: str) -> Any:
    """``value`` if it satisfies ``schema``; raises :class:`FieldError` naming ``field`` otherwise."""
    kind = schema.get("type")
    if kind == "object":
        return _check_object(value, schema, field)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise FieldError(field, describe(schema))
    elif kind in ("integer", "number"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and kind == "integer":
            ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            value = int(value) if ok else value
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise FieldError(field, describe(schema))
        if ("minimum" in schema and value < schema["minimum"]) or ("maximum" in schema and value > schema["maximum"]):
            raise FieldError(field, describe(schema))
    elif kind == "string":
        if not isinstance(value, str):
            raise FieldError(field, describe(schema))
        if len(value) < schema.get("minLength", 0):
            raise FieldError(field, "must not be empty" if schema.get("minLength") == 1 else describe(schema))
        if len(value) > schema.get("maxLength", 1 << 30):
            raise FieldError(field, f"must be at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            raise FieldError(field, describe(schema))
    if "enum" in schema and value not in schema["enum"]:
        raise FieldError(field, describe(schema))
    return value


def _check_object(value: Any, schema: dict[str, Any], field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(field, describe(schema))
    props: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    prefix = f"{field}." if field != "body" else ""
    for name in schema.get("required", ()):
        if name not in value:
            raise FieldError(prefix + name, "required")
    if len(value) < schema.get("minProperties", 0):
        accepted = ", ".join(props) if props else "see /openapi.json"
        raise FieldError(field, f"must name at least one setting ({accepted})")
    out: dict[str, Any] = {}
    for name, item in value.items():
        sub = props.get(name)
        if sub is None:
            if extra is False:
                accepted = ", ".join(props)
                raise FieldError(prefix + name, f"unknown field (accepted: {accepted})")
            sub = extra if isinstance(extra, dict) else {}
        out[name] = check(item, sub, prefix + name) if sub else item
    return out


def coerce_query(raw: str, schema: dict[str, Any], field: str) -> Any:
    """A query-string value converted to the schema's type, then checked."""
    kind = schema.get("type")
    value: Any = raw
    if kind == "integer":
        try:
            value = int(raw.strip())
        except ValueError:
            raise FieldError(field, describe(schema)) from None
    elif kind == "number":
        try:
            value = float(raw.strip())
        except ValueError:
            raise FieldError(field, describe(schema)) from None
    elif kind == "boolean":
        low = raw.strip().lower()
        if low not in ("true", "false", "1", "0"):
            raise FieldError(field, describe(schema))
        value = low in ("true", "1")
    return check(value, schema, field)
