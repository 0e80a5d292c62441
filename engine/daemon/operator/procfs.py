"""Per-process and per-thread figures from ``/proc`` that the reports sample over time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ThreadSample:
    tid: int
    name: str
    cpu_s: float
    voluntary: int
    nonvoluntary: int


def status_fields(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict (``VmRSS`` -> ``"123456 kB"``)."""
    return status_fields_path(Path(f"/proc/{pid}/status"))


def kb(fields: dict[str, str], key: str) -> int | None:
    v = fields.get(key, "").split()
    return int(v[0]) * 1024 if v and v[0].isdigit() else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    f = stat[stat.rindex(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def threads(pid: int) -> list[ThreadSample]:
    out = []
    for t in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name)):
        try:
            st = status_fields_path(t / "status")
            stat = (t / "stat").read_text()
        except OSError:
            continue  # the thread ended between the listing and the read
        f = stat[stat.rindex(")") + 2 :].split()
        out.append(
            ThreadSample(
                tid=int(t.name),
                name=st.get("Name", "?"),
                cpu_s=(int(f[11]) + int(f[12])) / CLK_TCK,
                voluntary=int(st.get("voluntary_ctxt_switches", "0")),
                nonvoluntary=int(st.get("nonvoluntary_ctxt_switches", "0")),
            )
        )
    return out


def status_fields_path(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").is_dir()
