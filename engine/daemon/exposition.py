"""The metrics snapshot (op ``metrics``, docs/daemon-contract.md) in the two forms the API serves.

- Prometheus text (``/metrics``, and ``/api/v1/metrics`` to an ``Accept`` naming ``text/plain``
  or ``openmetrics``): ``prometheus_client``'s ``generate_latest`` over a private
  :class:`~prometheus_client.CollectorRegistry` whose one collector turns the snapshot's samples
  into metric families. Histograms keep the snapshot's buckets, in seconds.
- One JSON object per line (``/api/v1/metrics`` to anything else, curl's ``*/*`` included), for
  the guide's ``grep NAME`` and ``grep latency | jq -r '"\\(.name): P50=\\(.p50)us ..."'`` (5.1):
  names lose the ``hft_`` prefix (``market_data_queue_depth``, ``orderbook_memory_mb``,
  ``order_count``); every latency histogram is one line
  ``{"name": "tick_to_order_latency", "p50": 41.0, "p99": 180.0, "p999": 220.0, "unit": "us", "count": 12}``
  and no other line contains the text ``latency``, so that grep hands jq only lines it can read
  (a label value holding the word is written with a JSON escape, ``l\\u0061tency``, which
  every JSON reader decodes back).

All functions here are pure: the API process fetches the snapshot over the bridge and the
trading process's ``/proc`` figures (:mod:`engine.daemon.procstats`) and passes them in. A sample
that does not follow the contract is left out (and logged once), never a failed scrape.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

log = logging.getLogger("hft.daemon.exposition")

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST
JSON_LINES_CONTENT_TYPE = "application/x-ndjson; charset=utf-8"
PREFIX = "hft_"
LATENCY_HISTOGRAM = "hft_latency_seconds"
QUANTILES = (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TYPES = ("gauge", "counter", "histogram")
_warned: set[str] = set()


class SampleError(ValueError):
    """A sample that does not follow the snapshot contract; the message names the field."""


# --- content negotiation -----------------------------------------------------------------------
def wants_prometheus_text(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for Prometheus text: one of its media ranges names
    ``text/plain`` or ``openmetrics`` with a non-zero ``q``. curl's ``*/*`` (and no header) gets
    JSON lines; Prometheus's scrape header names both text forms."""
    if not accept:
        return False
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        if media != "text/plain" and "openmetrics" not in media:
            continue
        q = 1.0
        for p in params:
            key, _, value = p.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            return True
    return False


def render(samples: Iterable[dict[str, Any]], accept: str | None) -> tuple[bytes, str]:
    """The body and ``Content-Type`` of ``/api/v1/metrics`` for this ``Accept`` header."""
    if wants_prometheus_text(accept):
        return prometheus_text(samples), PROMETHEUS_CONTENT_TYPE
    return json_lines(samples).encode(), JSON_LINES_CONTENT_TYPE


def snapshot_samples(snapshot: dict[str, Any], *extra: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The snapshot's samples followed by ``extra`` ones (the trading process's ``/proc``
    figures, the API process's own counters)."""
    samples = snapshot.get("samples") if isinstance(snapshot, dict) else None
    out = list(samples) if isinstance(samples, list) else []
    for more in extra:
        out.extend(more)
    return out


# --- validation ----------------------------------------------------------------------------------
def check_sample(sample: Any) -> dict[str, Any]:
    """``sample`` with its labels as strings and its numbers as floats; :class:`SampleError`
    naming the field when it does not follow the contract."""
    if not isinstance(sample, dict):
        raise SampleError("sample: expected an object")
    name = sample.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SampleError(f"name: not a Prometheus metric name: {name!r}")
    kind = sample.get("type")
    if kind not in _TYPES:
        raise SampleError(f"{name}: type: expected one of {', '.join(_TYPES)}, got {kind!r}")
    labels = sample.get("labels") or {}
    if not isinstance(labels, dict):
        raise SampleError(f"{name}: labels: expected an object")
    for key in labels:
        if not isinstance(key, str) or not _LABEL.match(key) or key == "le":
            raise SampleError(f"{name}: labels: not a label name: {key!r}")
    out = {
        "name": name,
        "type": kind,
        "help": str(sample.get("help") or name),
        "labels": {k: "" if v is None else str(v) for k, v in labels.items()},
    }
    if kind == "histogram":
        out["buckets"] = _check_buckets(name, sample.get("buckets"))
        out["count"] = _number(name, "count", sample.get("count", out["buckets"][-1][1]))
        out["sum"] = _number(name, "sum", sample.get("sum", 0.0))
        q = sample.get("quantiles_us")
        out["quantiles_us"] = q if isinstance(q, dict) else {}
    else:
        out["value"] = _number(name, "value", sample.get("value"))
    return out


def _number(name: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SampleError(f"{name}: {field}: expected a number, got {value!r}")
    return float(value)


def _check_buckets(name: str, buckets: Any) -> list[tuple[float, float]]:
    if not isinstance(buckets, list) or not buckets:
        raise SampleError(f"{name}: buckets: expected a list of [upper bound, cumulative count]")
    out: list[tuple[float, float]] = []
    for b in buckets:
        if not isinstance(b, list | tuple) or len(b) != 2:
            raise SampleError(f"{name}: buckets: expected [upper bound, cumulative count], got {b!r}")
        bound = math.inf if b[0] in ("+Inf", "Inf", "inf") else _number(name, "buckets bound", b[0])
        count = _number(name, "buckets count", b[1])
        if out and (bound <= out[-1][0] or count < out[-1][1]):
            raise SampleError(f"{name}: buckets: bounds must rise and counts never fall, at {b!r}")
        out.append((bound, count))
    if out[-1][0] != math.inf:
        raise SampleError(f"{name}: buckets: the last bucket must be +Inf")
    return out


def valid_samples(samples: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """The samples that follow the contract, checked; each kind of fault is logged once."""
    for s in samples:
        try:
            yield check_sample(s)
        except SampleError as e:
            key = str(e).split(":")[0]
            if key not in _warned:
                _warned.add(key)
                log.warning("metrics sample left out: %s", e)


# --- Prometheus text -----------------------------------------------------------------------------
class SnapshotCollector:
    """A ``prometheus_client`` collector over a fixed list of samples."""

    def __init__(self, samples: Iterable[Any]) -> None:
        self._samples = list(valid_samples(samples))

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for s in self._samples:
            name, kind, labels = s["name"], s["type"], s["labels"]
            family = families.get(name)
            if family is None:
                family = _family(name, kind, s["help"], list(labels))
                families[name] = family
            elif family.type != kind:
                continue  # one name, one type: the first sample's wins
            values = list(labels.values())
            if kind == "histogram":
                buckets = [(floatToGoString(b), c) for b, c in s["buckets"]]
                family.add_metric(values, buckets, s["sum"])  # type: ignore[attr-defined]
            else:
                family.add_metric(values, s["value"])  # type: ignore[attr-defined]
        yield from families.values()


def _family(name: str, kind: str, help_: str, labelnames: list[str]) -> Metric:
    if kind == "counter":
        return CounterMetricFamily(name, help_, labels=labelnames)
    if kind == "histogram":
        return HistogramMetricFamily(name, help_, labels=labelnames)
    return GaugeMetricFamily(name, help_, labels=labelnames)


def prometheus_text(samples: Iterable[Any]) -> bytes:
    """The samples in Prometheus text exposition format (0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(samples))  # type: ignore[arg-type]
    return generate_latest(registry)


# --- JSON lines ----------------------------------------------------------------------------------
def json_lines(samples: Iterable[Any]) -> str:
    """One JSON object per line, newline-terminated (see the module docstring)."""
    lines: list[str] = []
    for s in valid_samples(samples):
        if s["type"] == "histogram" and _is_latency(s):
            lines.append(_dumps(latency_line(s), whole=False))
            continue
        short = _short(s["name"])
        obj: dict[str, Any] = {"name": short, "labels": s["labels"]}
        if s["type"] == "histogram":
            obj.update(count=s["count"], sum=s["sum"])
        else:
            obj["value"] = s["value"]
        # only latency lines may match ``grep latency``; the escape reads back as the same text
        lines.append(_dumps(obj).replace("latency", "l\\u0061tency"))
    return "".join(line + "\n" for line in lines)


def _is_latency(s: dict[str, Any]) -> bool:
    return "latency" in s["name"]


def latency_line(s: dict[str, Any]) -> dict[str, Any]:
    """``{"name", "p50", "p99", "p999", "unit": "us", "count"}`` of a latency histogram (µs, one
    decimal); quantiles the snapshot lacks are estimated from the buckets as Prometheus's
    ``histogram_quantile`` does, and are ``null`` when nothing was counted."""
    labels = dict(s["labels"])
    stage = labels.pop("stage", None)
    if stage:
        name = f"{stage}_latency"
    else:
        name = _short(s["name"]).removesuffix("_seconds")
    out: dict[str, Any] = {"name": name}
    given = s["quantiles_us"]
    for key, q in QUANTILES:
        value = given.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            est = bucket_quantile(s["buckets"], q)
            value = None if est is None else est * 1e6
        out[key] = None if value is None or s["count"] <= 0 else round(float(value), 1)
    out["unit"] = "us"
    out["count"] = int(s["count"])
    if labels:
        out["labels"] = labels
    return out


def bucket_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of cumulative ``buckets`` by linear interpolation within the bucket it
    falls in (Prometheus's ``histogram_quantile``); the highest finite bound when it falls in
    ``+Inf``; ``None`` when the histogram is empty."""
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == math.inf:
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _short(name: str) -> str:
    return name.removeprefix(PREFIX)


def _dumps(obj: dict[str, Any], whole: bool = True) -> str:
    """JSON text with NaN and infinities as ``null`` (jq rejects them) and, with ``whole``,
    integral floats as integers (a count of 312 reads better than 312.0)."""
    return json.dumps(_finite(obj, whole), separators=(", ", ": "), allow_nan=False)


def _finite(value: Any, whole: bool) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value) if whole and value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        return {k: _finite(v, whole) for k, v in value.items()}
    return value
