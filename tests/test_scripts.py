"""The guide's operator scripts (``scripts/*.sh``): each answers ``--help``; those that need no
daemon run for real here (log archive, heap dumps, CPU profiles, dependency check); the rest run
against a real paper daemon (``hft paper CONFIG --api``) on the fake Binance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
# the scripts of this issue, with the arguments the guide gives them
GUIDE_SCRIPTS = {
    "health_check.sh": [],
    "install_dependencies.sh": [],
    "check_websocket.sh": ["binance"],
    "check_market_data_latency.sh": [],
    "performance_summary.sh": [],
    "measure_e2e_latency.sh": [],
    "profile_critical_path.sh": [],
    "check_blocking_calls.sh": [],
    "profile_cpu.sh": ["30"],
    "analyze_cpu_profile.sh": [],
    "check_lock_contention.sh": [],
    "check_memory_leak.sh": [],
    "analyze_heap.sh": ["/tmp/hft_heap_*.dump"],
    "find_memory_leaks.sh": ["/tmp/hft_heap_*.dump"],
    "memory_breakdown.sh": [],
    "enable_memory_monitoring.sh": ["--threshold=80", "--action=alert"],
    "startup.sh": [],
    "archive_logs.sh": ["--days=30"],
    "check_exchange_status.sh": [],
}


def run(script: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([str(SCRIPTS / script), *args], cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.mark.parametrize("script", sorted(GUIDE_SCRIPTS))
def test_help(script: str, tmp_path: Path) -> None:
    path = SCRIPTS / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    text = path.read_text()
    assert "set -euo pipefail" in text
    p = run(script, "--help", cwd=tmp_path)  # from anywhere: the scripts find the repo themselves
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert "usage:" in out and "Traceback" not in out
    assert script in out  # the usage names the script as the guide calls it


def _age(path: Path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_archive_logs_takes_old_rotated_and_daily_metrics_logs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old = {"system.log.3": 40, "orders.log.2": 31, "metrics_20200101.log": 0}
    keep = {"system.log": 40, "system.log.1": 2, f"metrics_{time.strftime('%Y%m%d')}.log": 0}
    for name, age in {**old, **keep}.items():
        (logs / name).write_text(f"{name}\n" * 100)
        _age(logs / name, age)
    p = run("archive_logs.sh", "--days=30", "--log-dir=logs", cwd=tmp_path)  # relative to where it ran
    assert p.returncode == 0, p.stderr
    [archive] = list((logs / "archive").glob("hft_logs_*.tar.gz"))
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == sorted(old)
        member = tar.extractfile("orders.log.2")
        assert member is not None and member.read().decode().startswith("orders.log.2\n")
    assert sorted(p.name for p in logs.iterdir() if p.is_file()) == sorted(keep)
    again = run("archive_logs.sh", "--days=30", f"--log-dir={logs}")
    assert again.returncode == 0 and "nothing to archive" in again.stdout


def test_archive_logs_bad_arguments(tmp_path: Path) -> None:
    p = run("archive_logs.sh", "--days=-3", f"--log-dir={tmp_path}")
    assert p.returncode == 2 and "--days" in p.stderr and "Traceback" not in p.stderr
    p = run("archive_logs.sh", "--days=30", f"--log-dir={tmp_path / 'missing'}")
    assert p.returncode == 2 and "not a directory" in p.stderr


def _heap_dumps(directory: Path, leak: bool) -> list[Path]:
    """Heap summaries written by the daemon's own writer (engine.daemon.heap) in a process that
    grows a list between dumps, or does not."""
    code = f"""
from pathlib import Path
from engine.daemon import heap
kept = []
def grow():
    kept.extend(bytes(1000) for _ in range(1000))
heap.write_dump(Path({str(directory)!r}))
for _ in range(3):
    if {leak}:
        grow()
    heap.write_dump(Path({str(directory)!r}))
"""
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
    return sorted(directory.glob("hft_heap_*.dump"))


def test_heap_scripts_find_a_growing_site(tmp_path: Path) -> None:
    dumps = _heap_dumps(tmp_path / "heap", leak=True)
    assert len(dumps) == 4
    p = run("analyze_heap.sh", *(str(d) for d in dumps))
    assert p.returncode == 0, p.stderr
    assert "tracing started with this dump" in p.stdout and "allocation site" in p.stdout
    # relative paths from the operator's directory, and the guide's several-file glob
    p = run("find_memory_leaks.sh", *(f"heap/{d.name}" for d in dumps), cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "LEAK SUSPECTED" in p.stdout and "<string>:6" in p.stdout


def test_heap_scripts_no_leak_and_bad_files(tmp_path: Path) -> None:
    dumps = _heap_dumps(tmp_path / "heap", leak=False)
    p = run("find_memory_leaks.sh", *(str(d) for d in dumps))
    assert p.returncode == 0 and "no allocation site grew steadily" in p.stdout
    bogus = tmp_path / "hft_heap_1.dump"
    bogus.write_text('{"format": "other"}')
    p = run("analyze_heap.sh", str(bogus))
    assert p.returncode == 2 and "expected 'hft-heap-1'" in p.stderr
    p = run("analyze_heap.sh", str(tmp_path / "nope.dump"))
    assert p.returncode == 2 and "no such file" in p.stderr


def test_analyze_cpu_profile_ranks_hot_functions(tmp_path: Path) -> None:
    prof = tmp_path / "hft_cpu_1_x.txt"
    prof.write_text(
        "<module> (run.py:1);main (run.py:5);parse (feed.py:10) 60\n"
        "<module> (run.py:1);main (run.py:5);risk (risk.py:3) 30\n"
        "<module> (run.py:1);_run_once (base_events.py:1900);select (selectors.py:468) 10\n"
    )
    p = run("analyze_cpu_profile.sh", "--dir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "100 samples" in p.stdout
    own = p.stdout.split("by total time")[0]
    assert own.index("parse (feed.py:10)") < own.index("risk (risk.py:3)")
    assert " 60.0%  parse (feed.py:10)" in own and " 90.0%  main (run.py:5)" in p.stdout
    prof.write_text("not a profile\n")
    p = run("analyze_cpu_profile.sh", str(prof))
    assert p.returncode == 2 and "not a collapsed stack" in p.stderr


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.is_file() else shutil.which("py-spy")


@pytest.mark.skipif(_py_spy() is None, reason="py-spy is not installed (./scripts/setup.sh installs it)")
def test_profile_cpu_profiles_a_running_python(tmp_path: Path) -> None:
    code = "def spin():\n    while True:\n        sum(range(1000))\nprint('ready', flush=True)\nspin()"
    busy = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout is not None and busy.stdout.readline() == "ready\n"  # the interpreter is up
        p = run("profile_cpu.sh", "2", "--pid", str(busy.pid), "--out-dir", str(tmp_path))
        if p.returncode == 2 and "ptrace" in p.stderr:
            pytest.skip(f"py-spy may not trace here: {p.stderr.strip()}")
        assert p.returncode == 0, p.stderr
        profile = Path(p.stdout.strip())
        assert profile.parent == tmp_path and profile.is_file()
        a = run("analyze_cpu_profile.sh", str(profile))
        assert a.returncode == 0 and "spin (<string>" in a.stdout
    finally:
        busy.kill()
        busy.wait()


def test_daemon_scripts_say_so_when_no_daemon_runs(tmp_path: Path) -> None:
    env = {**os.environ, "HFT_URL": "http://127.0.0.1:9"}
    p = run("check_websocket.sh", "binance", env=env)
    assert p.returncode == 1 and "WebSocket not connected" in p.stdout
    p = run("health_check.sh", "--pid-file", str(tmp_path / "none.pid"), "--log-dir", str(tmp_path), env=env)
    assert p.returncode == 1 and "[FAIL] status API" in p.stdout
    p = run("check_market_data_latency.sh", env=env)
    assert p.returncode == 2 and "startup.sh" in p.stderr and "Traceback" not in p.stderr
    p = run("check_websocket.sh")
    assert p.returncode == 2 and "usage:" in p.stderr
    p = run("enable_memory_monitoring.sh", "--threshold=80")
    assert p.returncode == 2 and "--action are required" in p.stderr
    p = run("startup.sh", "--config", str(tmp_path / "missing.json"), env=env)
    assert p.returncode == 1 and "Failed to load configuration from" in p.stderr


def test_install_dependencies_check(tmp_path: Path) -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system: dpkg-query missing")
    p = run("install_dependencies.sh", "--check", cwd=tmp_path)
    assert p.returncode in (0, 1), p.stderr
    assert "Debian package python3" in p.stdout
    assert "the daemon's modules import" in p.stdout and "compiled module" in p.stdout


# --- against a running daemon ---------------------------------------------------------------------


@pytest.mark.slow
def test_daemon_scripts_against_a_running_daemon(tmp_path: Path) -> None:
    from daemon_process import CAPTURE, start_daemon, wait_until

    if not CAPTURE.exists():
        pytest.skip(f"the fake Binance's capture is missing: {CAPTURE}")
    d = start_daemon(tmp_path)
    try:
        wait_until(lambda: d.get("/api/v1/status").json["exchanges"]["binance"]["status"] == "connected", 60,
                   "binance connected", d)  # fmt: skip
        env = {**d.env, "HFT_URL": d.url, "HFT_LOG_DIR": str(tmp_path / "logs")}
        common = ["--pid-file", str(tmp_path / "hft.pid"), "--config", str(tmp_path / "paper.json")]
        p = run("check_websocket.sh", "binance", env=env)
        assert p.returncode == 0 and p.stdout.splitlines()[0] == "WebSocket connected", p.stdout + p.stderr
        p = run("check_exchange_status.sh", *common, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "binance: daemon connected" in p.stdout and "/api/v3/ping -> 200" in p.stdout
        p = run("memory_breakdown.sh", *common, env=env)
        assert p.returncode == 0 and "resident" in p.stdout and "anonymous" in p.stdout, p.stderr
        p = run("check_memory_leak.sh", "--samples", "2", "--interval", "0.2", *common, env=env)
        assert p.returncode in (0, 1) and "rss" in p.stdout, p.stderr
        p = run("check_lock_contention.sh", "--seconds", "1", "--log-dir", str(tmp_path / "logs"), *common, env=env)
        assert p.returncode in (0, 1) and "context switches" in p.stdout, p.stderr
        p = run("enable_memory_monitoring.sh", "--threshold=80", "--action=alert", "--once", *common, env=env)
        assert p.returncode == 0 and "memory usage" in p.stdout, p.stderr
        p = run("health_check.sh", "--log-dir", str(tmp_path / "logs"), *common, env=env)
        assert "[PASS] status API" in p.stdout, p.stdout + p.stderr
        p = run("check_market_data_latency.sh", *common, env=env)
        assert "binance:BTC-USDT" in p.stdout, p.stdout + p.stderr
        # these read /api/v1/metrics
        for script, args in (("performance_summary.sh", ["--interval", "0.5"]), ("profile_critical_path.sh", []),
                             ("check_blocking_calls.sh", ["--seconds", "1"])):  # fmt: skip
            p = run(script, *args, "--url", d.url, env=env)
            assert p.returncode in (0, 1), f"{script}: {p.stdout}{p.stderr}"
        p = run("measure_e2e_latency.sh", env=env)
        assert p.returncode in (0, 1, 2) and ("tick to order" in p.stdout or "no tick-to-order" in p.stdout)
        if _py_spy() is not None:  # the daemon found from its status API, profiled while it trades
            p = run("profile_cpu.sh", "2", "--out-dir", str(tmp_path / "prof"), *common, env=env)
            assert p.returncode == 0, p.stderr
            a = run("analyze_cpu_profile.sh", "--dir", str(tmp_path / "prof"))
            assert a.returncode == 0 and "samples" in a.stdout, a.stderr
    finally:
        d.stop()


def test_scripts_quote_no_secret(tmp_path: Path) -> None:
    """A script's output never carries the API secret, even in an error (keys come from the env)."""
    secret = "s3cr3t-" + "x" * 20
    env = {**os.environ, "HFT_URL": "http://127.0.0.1:9", "HFT_API_KEY": "k", "HFT_API_SECRET": secret}
    p = run("health_check.sh", "--log-dir", str(tmp_path), "--pid-file", str(tmp_path / "p"), env=env)
    assert secret not in p.stdout + p.stderr


@pytest.mark.slow
def test_startup_starts_the_daemon_and_waits_for_its_api(tmp_path: Path) -> None:
    import signal

    from daemon_process import CAPTURE, paper_config, start_fake_binance

    if not CAPTURE.exists():
        pytest.skip(f"the fake Binance's capture is missing: {CAPTURE}")
    fake = start_fake_binance()
    pid_file = tmp_path / "hft.pid"
    try:
        config = paper_config(tmp_path)
        env = {**os.environ, **fake.urls, "HFT_URL": "http://127.0.0.1:9"}  # nothing answers there: start one
        p = run("startup.sh", "--config", str(config), "--output", str(tmp_path / "out.log"), "--timeout", "120",
                "--port", "0", "--log-dir", str(tmp_path / "logs"), "--pid-file", str(pid_file), env=env)  # fmt: skip
        assert p.returncode == 0, p.stdout + p.stderr + (tmp_path / "out.log").read_text()
        assert "the daemon answers at http://127.0.0.1:" in p.stdout
        status = json.loads(p.stdout.strip().splitlines()[-1])
        assert status["status"] == "running" and status["mode"] == "paper"
        assert int(pid_file.read_text()) == status["pid"]
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):  # the daemon stops gracefully; wait for it to be gone
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
        fake.stop()
