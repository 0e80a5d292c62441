"""The heap summary written on SIGUSR1 (guide §5.3: ``kill -USR1 $(cat /var/run/hft_system.pid)``,
then ``./scripts/analyze_heap.sh /tmp/hft_heap_*.dump``).

tracemalloc costs every allocation, so it is off until needed: it starts at the first SIGUSR1
(that first dump says so and can only list what was allocated since, i.e. nothing much: send
SIGUSR1 again later to see what grew), or at start-up when ``daemon.memory_management.tracemalloc``
is true. The dump is written on the trading loop: the loop pauses for the snapshot (tens of ms
with tracing on for a while).

File: ``<heap_dump_dir>/hft_heap_<pid>_<UTC stamp>.dump``, one JSON object (UTF-8, one line):

``format``            ``"hft-heap-1"``
``pid``, ``ts``       process id, Unix time (float) of the snapshot
``ts_iso``            the same time, ISO-8601 UTC
``rss_bytes``         resident memory of the process (``/proc/self/status`` VmRSS)
``tracing``           ``"started_now"`` (first dump: nothing traced before), ``"since_start"``
                      (config), or ``"since_first_signal"``
``tracing_since``     Unix time tracing started
``traced_bytes``, ``traced_peak_bytes``   what tracemalloc counts now, and its peak
``top_lines``         ``[{"file", "line", "size_bytes", "count"}]`` the 50 largest allocation sites
``top_files``         ``[{"file", "size_bytes", "count"}]`` the same summed by file, 30 largest
``gc``                ``{"objects": n, "counts": [gen0, gen1, gen2], "garbage": n}``
``types``             ``[{"type", "count"}]`` the 30 most numerous object types the collector tracks

Two dumps of the same pid compare: a site whose ``size_bytes`` keeps growing is the leak to look at.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

FORMAT = "hft-heap-1"
FRAMES = 10
_since: float | None = None
_how = ""


def start_tracing(reason: str = "since_start") -> None:
    """Start tracemalloc now (no-op when it runs)."""
    global _since, _how
    if not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)
        _since, _how = time.time(), reason


def rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def summary(limit: int = 50) -> dict[str, Any]:
    global _how
    started_now = not tracemalloc.is_tracing()
    if started_now:
        start_tracing("started_now")
    how = _how
    if _how == "started_now":
        _how = "since_first_signal"
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>"))
    )
    lines = snap.statistics("lineno")[:limit]
    files = snap.statistics("filename")[:30]
    current, peak = tracemalloc.get_traced_memory()
    types = Counter(type(o).__name__ for o in gc.get_objects())
    now = time.time()
    return {
        "format": FORMAT,
        "pid": os.getpid(),
        "ts": now,
        "ts_iso": dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z"),
        "rss_bytes": rss_bytes(),
        "tracing": how,
        "tracing_since": _since,
        "traced_bytes": current,
        "traced_peak_bytes": peak,
        "top_lines": [
            {
                "file": s.traceback[0].filename,
                "line": s.traceback[0].lineno,
                "size_bytes": s.size,
                "count": s.count,
            }
            for s in lines
        ],
        "top_files": [{"file": s.traceback[0].filename, "size_bytes": s.size, "count": s.count} for s in files],
        "gc": {"objects": sum(types.values()), "counts": list(gc.get_count()), "garbage": len(gc.garbage)},
        "types": [{"type": t, "count": n} for t, n in types.most_common(30)],
    }


def write_dump(directory: Path) -> Path:
    """Write one heap summary into ``directory``; returns its path."""
    doc = summary()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"hft_heap_{os.getpid()}_{stamp}.dump"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc) + "\n")
    tmp.rename(path)  # the analyser's glob never sees half a file
    return path
