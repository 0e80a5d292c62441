"""Reading the heap summaries the daemon writes on SIGUSR1 (``engine.daemon.heap``, format
``hft-heap-1``: one JSON object per file) for ``analyze_heap.sh`` and ``find_memory_leaks.sh``."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "hft-heap-1"  # engine.daemon.heap.FORMAT; read here without importing the daemon
LEAK_MIN_BYTES = 256 * 1024  # growth below this between first and last dump is noise


class HeapFileError(Exception):
    pass


@dataclass
class Dump:
    path: Path
    doc: dict[str, Any]

    @property
    def pid(self) -> int:
        return int(self.doc.get("pid") or 0)

    @property
    def ts(self) -> float:
        return float(self.doc.get("ts") or 0)

    def sites(self) -> dict[tuple[str, int], dict[str, Any]]:
        return {(str(s.get("file")), int(s.get("line") or 0)): s for s in self.doc.get("top_lines") or []}


def load(path: Path) -> Dump:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise HeapFileError(f"{path}: no such file (kill -USR1 $(cat /var/run/hft_system.pid) writes one)") from None
    except OSError as exc:
        raise HeapFileError(f"{path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise HeapFileError(f"{path}: not a heap dump (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise HeapFileError(f"{path}: format {got!r}, expected {FORMAT!r} (a heap summary of hft's daemon)")
    return Dump(path, doc)


def _mib(n: Any) -> str:
    return f"{(n or 0) / 2**20:.1f} MiB"


def _site(key: tuple[str, int]) -> str:
    return f"{key[0]}:{key[1]}"


def analyze(dumps: list[Dump], top: int = 20) -> str:
    out: list[str] = []
    for d in sorted(dumps, key=lambda d: (d.pid, d.ts)):
        doc = d.doc
        out.append(f"== {d.path}  pid {d.pid}  {doc.get('ts_iso', '')}")
        out.append(f"rss {_mib(doc.get('rss_bytes'))}; traced {_mib(doc.get('traced_bytes'))} "
                   f"(peak {_mib(doc.get('traced_peak_bytes'))}); tracing {doc.get('tracing', '?')}")  # fmt: skip
        if doc.get("tracing") == "started_now":
            out.append("tracing started with this dump: it lists almost nothing. Send SIGUSR1 again in a few "
                       "minutes, then compare: ./scripts/find_memory_leaks.sh /tmp/hft_heap_*.dump")  # fmt: skip
        lines = doc.get("top_lines") or []
        if lines:
            out.append(f"{'size':>12} {'count':>9}  allocation site")
            for s in lines[:top]:
                out.append(f"{_mib(s.get('size_bytes')):>12} {s.get('count', 0):>9}  {s.get('file')}:{s.get('line')}")
        files = doc.get("top_files") or []
        if files:
            out.append("by file:")
            for s in files[: min(top, 10)]:
                out.append(f"{_mib(s.get('size_bytes')):>12} {s.get('count', 0):>9}  {s.get('file')}")
        g = doc.get("gc") or {}
        types = ", ".join(f"{t.get('type')} {t.get('count')}" for t in (doc.get("types") or [])[:8])
        out.append(f"gc: {g.get('objects', '?')} objects, garbage {g.get('garbage', '?')}; most numerous: {types}")
        out.append("")
    return "\n".join(out).rstrip()


def leaks(dumps: list[Dump], top: int = 20) -> tuple[str, bool]:
    """Growth per allocation site from the first dump to the last of the same process (dumps of
    the tracing's first signal are left out: they saw nothing). Returns the report and whether a
    site grew at every step by more than ``LEAK_MIN_BYTES`` in all."""
    out: list[str] = []
    pids = sorted({d.pid for d in dumps})
    pid = max(pids, key=lambda p: max(d.ts for d in dumps if d.pid == p))  # the latest process
    if len(pids) > 1:
        out.append(f"dumps of {len(pids)} processes ({', '.join(map(str, pids))}): comparing pid {pid}, the latest")
    series = sorted((d for d in dumps if d.pid == pid), key=lambda d: d.ts)
    skipped = [d for d in series if d.doc.get("tracing") == "started_now"]
    series = [d for d in series if d.doc.get("tracing") != "started_now"]
    if skipped:
        out.append(f"left out {len(skipped)} dump(s) taken when tracing started (nothing traced before them)")
    if len(series) < 2:
        out.append("need two dumps taken after tracing started: send SIGUSR1 again later, then rerun")
        return "\n".join(out), False
    first, last = series[0], series[-1]
    span = last.ts - first.ts
    out.append(f"pid {pid}: {len(series)} dumps over {span:.0f} s; rss {_mib(first.doc.get('rss_bytes'))} -> "
               f"{_mib(last.doc.get('rss_bytes'))}; traced {_mib(first.doc.get('traced_bytes'))} -> "
               f"{_mib(last.doc.get('traced_bytes'))}")  # fmt: skip
    per = [d.sites() for d in series]
    full = 50  # engine.daemon.heap.summary lists the 50 largest sites
    rows = []
    for key in set().union(*per):
        # a site missing from a dump's top list is 0 when the list is not full (it holds every site)
        sizes = [p[key]["size_bytes"] if key in p else (0 if len(p) < full else None) for p in per]
        known = [s for s in sizes if s is not None]
        if len(known) < 2:
            continue
        growth = known[-1] - known[0]
        steady = None not in sizes and all(b >= a for a, b in itertools.pairwise(sizes))  # type: ignore[operator] and growth > 0
        rows.append((growth, steady, key, known[0], known[-1], per[-1].get(key, {}).get("count")))
    rows.sort(key=lambda r: -r[0])
    leaking = [r for r in rows if r[1] and r[0] > LEAK_MIN_BYTES]
    out.append(f"{'growth':>12} {'first':>12} {'last':>12} {'steady':>7}  allocation site")
    for growth, steady, key, a, b, _ in rows[:top]:
        if growth <= 0:
            break
        out.append(f"{_mib(growth):>12} {_mib(a):>12} {_mib(b):>12} {'yes' if steady else 'no':>7}  {_site(key)}")
    t0 = {t.get("type"): t.get("count", 0) for t in first.doc.get("types") or []}
    grew = sorted(((t.get("count", 0) - t0[t.get("type")], t.get("type")) for t in last.doc.get("types") or []
                   if t.get("type") in t0), reverse=True)[:5]  # fmt: skip
    if grew and grew[0][0] > 0:
        out.append("object types that grew: " + ", ".join(f"{t} +{n}" for n, t in grew if n > 0))
    if leaking:
        out.append(f"LEAK SUSPECTED: {len(leaking)} site(s) grew at every dump by over {_mib(LEAK_MIN_BYTES)} in all. "
                   "§5.3: report to engineering with these dumps; schedule a restart; monitor closely")  # fmt: skip
    else:
        out.append("no allocation site grew steadily")
    return "\n".join(out), bool(leaking)
