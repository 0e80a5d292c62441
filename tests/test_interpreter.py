"""Which Python builds .venv (scripts/pick_python.sh), and benchmarks saying which one they ran on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import interpreter

REPO = Path(__file__).resolve().parents[1]
PICK = REPO / "scripts" / "pick_python.sh"


def _pick(env: dict[str, str]) -> str:
    out = subprocess.run([str(PICK)], capture_output=True, text=True, env=env, check=True, timeout=60)
    return out.stdout.strip()


def _loads_libpython(exe: str) -> bool:
    out = subprocess.run(["ldd", exe], capture_output=True, text=True, timeout=30)
    return "libpython" in out.stdout


def test_python_from_the_environment_wins() -> None:
    env = {**os.environ, "PYTHON": "/opt/some/python3.11"}
    assert _pick(env) == "/opt/some/python3.11"


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd is needed to tell how an interpreter is linked")
def test_the_pick_is_3_11_or_newer_and_static_when_the_machine_has_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    exe = _pick(env)
    version = subprocess.run(
        [exe, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert tuple(int(v) for v in version) >= (3, 11)
    candidates = [shutil.which(c) for c in ("python3.11", "python3", "python3.12", "python3.13")]
    candidates += [p for p in ("/usr/bin/python3.11", "/usr/local/bin/python3.11") if Path(p).exists()]
    real = []
    for c in filter(None, candidates):
        r = subprocess.run(
            [c, "-c", "import sys, ensurepip, venv; print(sys.executable if sys.version_info >= (3, 11) else '')"],
            capture_output=True,
            text=True,
        )
        if r.returncode == 0 and r.stdout.strip():
            real.append(r.stdout.strip())
    if any(not _loads_libpython(p) for p in real):
        assert not _loads_libpython(exe), f"{exe} loads libpython though a static interpreter is on this machine"


def test_benchmarks_name_the_interpreter() -> None:
    text = interpreter()
    assert sys.version.split()[0] in text and sys._base_executable in text  # type: ignore[attr-defined]
    maps = Path("/proc/self/maps")
    if maps.exists():
        shared = "libpython" in maps.read_text()
        assert f"libpython shared: {'yes' if shared else 'no'}" in text
