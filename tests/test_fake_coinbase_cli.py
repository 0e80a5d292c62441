"""``python -m sim.fake_coinbase`` serves the fake by hand: prints its URLs and keys, answers, stops
on SIGINT."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_module_serves_prints_and_stops() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.fake_coinbase", "--port", "0", "--passphrase", "pp", "--balance", "GBP=5"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.search(r"REST (http://127\.0\.0\.1:\d+)", first)
        assert m, first
        assert "passphrase pp" in proc.stdout.readline()
        with urllib.request.urlopen(f"{m.group(1)}/products/BAND-GBP", timeout=5) as r:
            assert json.load(r)["id"] == "BAND-GBP"
    finally:
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


def test_bad_balance_is_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sim.fake_coinbase", "--balance", "GBP"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode != 0 and "expected ASSET=AMOUNT" in out.stderr and "Traceback" not in out.stderr
