"""``hft sim binance``: run by hand, prints its URLs, serves until Ctrl-C; bad input is one clear line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest

from sim.fake_binance.signing import sign

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest"


def _default_sigint() -> None:
    # a test run started in the background of a non-interactive shell inherits SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler: the server would never hear Ctrl-C
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hft(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
        **kw,
    )


def test_cli_serves_until_interrupted() -> None:
    env = {**os.environ, "HFT_FAKE_BINANCE_KEY": "cli-key", "HFT_FAKE_BINANCE_SECRET": "cli-secret-value"}
    proc = hft(
        "sim", "binance", "--data", str(DATA), "--speed", "max", "--start", "now", "--balance", "USDT=5000", env=env
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("Ctrl-C") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, (lines, proc.stderr.read())
            lines.append(proc.stdout.readline().strip())
        text = "\n".join(lines)
        rest = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)", text).group(1)
        assert re.search(r"WS market\s+ws://127\.0\.0\.1:\d+", text)
        assert re.search(r"WS API\s+ws://127\.0\.0\.1:\d+/ws-api/v3", text)
        assert "from HFT_FAKE_BINANCE_KEY" in text and "cli-secret-value" not in text
        with urlopen(f"{rest}/api/v3/ping", timeout=5) as r:
            assert r.status == 200 and r.headers["X-MBX-USED-WEIGHT-1M"] == "1"
        q = urlencode({"timestamp": int(time.time() * 1000)})
        req = Request(
            f"{rest}/api/v3/account?{q}&signature={sign('cli-secret-value', q)}", headers={"X-MBX-APIKEY": "cli-key"}
        )
        with urlopen(req, timeout=5) as r:
            assert b'"asset":"USDT","free":"5000.00000000"' in r.read()
        with urlopen(Request(f"{rest}/_fake/drop_diffs?n=2", method="POST"), timeout=5) as r:
            assert r.status == 200 and b'"records"' in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "fake binance stopped" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "error: host '0.0.0.0' is not a loopback address"),
        (["--speed", "fast"], "error: speed 'fast' must be a number or 'max'"),
        (["--balance", "USDT"], "error: --balance 'USDT' is not ASSET=AMOUNT"),
    ],
)
def test_cli_rejects_bad_options(args: list[str], message: str) -> None:
    proc = hft("sim", "binance", "--data", str(DATA), *args)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().startswith(message) and len(err.strip().splitlines()) == 1


def test_cli_reports_missing_data_in_one_line(tmp_path: Path) -> None:
    proc = hft("sim", "binance", "--data", str(tmp_path / "nope.gz"))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip() == f"error: Bad market data at {tmp_path / 'nope.gz'}: no such file or directory"
