"""CPU profiles of the running daemon with py-spy (a sampling profiler that reads the process
from outside: nothing to install in the daemon, no restart) and their analysis.

py-spy is run with ``--nonblocking``: it does not stop the daemon to take a sample, so the hot
path keeps its timing while being profiled (a sample may then be slightly torn, which a profile
of thousands of samples absorbs). It needs ptrace rights on the daemon: root, or the daemon's
user with ``kernel.yama.ptrace_scope`` = 0; in a container, the ``SYS_PTRACE`` capability.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

DEFAULT_DIR = Path("/tmp")
PREFIX = "hft_cpu_"


class ProfileError(Exception):
    pass


def py_spy() -> str:
    """The py-spy binary: beside this interpreter (the project's venv), else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    if here.is_file():
        return str(here)
    found = shutil.which("py-spy")
    if found:
        return found
    raise ProfileError("py-spy not found: run ./scripts/setup.sh (it installs py-spy into .venv) or pip install py-spy")


def record(pid: int, seconds: float, out_dir: Path = DEFAULT_DIR, rate: int = 100, subprocesses: bool = False) -> Path:
    """Profile ``pid`` for ``seconds``; returns the profile (collapsed stacks: ``a;b;c COUNT``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{PREFIX}{pid}_{time.strftime('%Y%m%d_%H%M%S')}.txt"
    cmd = [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
           "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
    if subprocesses:
        cmd.append("--subprocesses")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        hint = " (needs ptrace rights on the daemon: run as root or as its user)" if "ermission" in proc.stderr else ""
        raise ProfileError(f"py-spy failed: {msg[-1] if msg else proc.returncode}{hint}")
    return out


def latest(directory: Path = DEFAULT_DIR) -> Path:
    files = sorted(directory.glob(f"{PREFIX}*.txt"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise ProfileError(f"no profile in {directory} ({PREFIX}*.txt): run ./scripts/profile_cpu.sh 30 first")
    return files[-1]


def parse(path: Path) -> list[tuple[list[str], int]]:
    """Collapsed stacks: one ``frame;frame;...;leaf COUNT`` per line."""
    stacks = []
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProfileError(f"{path}: {exc.strerror or exc}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            raise ProfileError(f"{path} line {n}: not a collapsed stack (frame;frame COUNT): {line[:80]!r}")
        stacks.append((stack.split(";"), int(count)))
    return stacks


def hot_functions(stacks: list[tuple[list[str], int]]) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, samples per leaf frame (self time) and per frame anywhere on the stack
    (inclusive time, a frame counted once per stack even when recursive)."""
    total = sum(c for _, c in stacks)
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, c in stacks:
        if frames:
            own[frames[-1]] += c
        for fr in set(frames):
            incl[fr] += c
    return total, own, incl


def report(path: Path, top: int = 20) -> str:
    total, own, incl = hot_functions(parse(path))
    if not total:
        return (f"{path}: no samples: the process was idle (py-spy keeps only samples where it was running "
                "code); profile longer, or while it is busy")  # fmt: skip
    lines = [f"{path}: {total} samples", "", f"top {top} by own time (the function itself was running):"]
    lines += [f"  {100 * c / total:5.1f}%  {fr}" for fr, c in own.most_common(top)]
    lines += ["", f"top {top} by total time (the function or what it called):"]
    lines += [f"  {100 * c / total:5.1f}%  {fr}" for fr, c in incl.most_common(top)]
    return "\n".join(lines)
