"""What the kernel says about a process: resident memory, open file descriptors, CPU seconds and
threads, read from ``/proc/<pid>`` (Linux only).

The API process reads these for the trading process (its pid comes with the metrics snapshot),
so that the trading loop spends nothing on them. The memory limit is the smaller of the host's
``MemTotal`` and the process's cgroup v2 ``memory.max`` (the systemd unit's ``MemoryMax``): the
"memory above 80 % of available" alert of the guide (5.3, 6.1) divides by it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class ProcStatsError(Exception):
    """The process is gone or its ``/proc`` entry cannot be read."""


@dataclass(frozen=True, slots=True)
class ProcStats:
    pid: int
    resident_memory_bytes: int
    virtual_memory_bytes: int
    open_fds: int
    max_fds: int | None
    cpu_seconds: float
    threads: int
    memory_limit_bytes: int | None

    def samples(self) -> list[dict[str, Any]]:
        """These figures as metrics-snapshot samples (docs/daemon-contract.md), ``hft_process_*``."""
        rows: list[tuple[str, str, float | None]] = [
            ("resident_memory_bytes", "Resident memory", self.resident_memory_bytes),
            ("virtual_memory_bytes", "Virtual memory", self.virtual_memory_bytes),
            ("open_fds", "Open file descriptors", self.open_fds),
            ("max_fds", "Open file descriptor limit", self.max_fds),
            ("threads", "Threads", self.threads),
            ("memory_limit_bytes", "Memory available (host MemTotal or cgroup memory.max, the smaller)",
             self.memory_limit_bytes),
        ]  # fmt: skip
        out = [
            {"name": f"hft_process_{name}", "type": "gauge", "help": f"{what} of the trading process.",
             "labels": {}, "value": value}
            for name, what, value in rows
            if value is not None
        ]  # fmt: skip
        out.append(
            {"name": "hft_process_cpu_seconds_total", "type": "counter", "labels": {},
             "help": "User and system CPU time of the trading process.", "value": self.cpu_seconds}
        )  # fmt: skip
        return out


def read(pid: int, proc: Path = PROC, cgroup_root: Path = CGROUP_ROOT) -> ProcStats:
    """The figures of process ``pid``; :class:`ProcStatsError` when it is gone or unreadable."""
    base = proc / str(pid)
    try:
        stat = (base / "stat").read_text()
        statm = (base / "statm").read_text().split()
        fds = sum(1 for _ in os.scandir(base / "fd"))
    except (FileNotFoundError, ProcessLookupError) as e:
        raise ProcStatsError(f"process {pid} is not running") from e
    except PermissionError as e:
        raise ProcStatsError(f"process {pid}: permission denied reading {e.filename}") from e
    # the command name (field 2) is in parentheses and may itself hold spaces and parentheses
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return ProcStats(
        pid=pid,
        resident_memory_bytes=int(statm[1]) * page,
        virtual_memory_bytes=int(statm[0]) * page,
        open_fds=fds,
        max_fds=_max_fds(base),
        cpu_seconds=(utime + stime) / ticks,
        threads=int(fields[17]),  # field 20 of proc(5)
        memory_limit_bytes=_memory_limit(base, proc, cgroup_root),
    )


def _max_fds(base: Path) -> int | None:
    try:
        for line in (base / "limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft)
    except OSError:
        pass
    return None


def _memory_limit(base: Path, proc: Path, cgroup_root: Path) -> int | None:
    limits: list[int] = []
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                limits.append(int(line.split()[1]) * 1024)
                break
    except OSError:
        pass
    try:
        for line in (base / "cgroup").read_text().splitlines():
            # cgroup v2: "0::/system.slice/hft_system.service"
            if line.startswith("0::"):
                rel = line[3:].strip().lstrip("/")
                value = (cgroup_root / rel / "memory.max").read_text().strip()
                if value != "max":
                    limits.append(int(value))
                break
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts: signalling it is refused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
