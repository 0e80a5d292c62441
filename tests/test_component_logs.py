"""The component logs an operator greps (the guide's §1.3 files, the greps of its §2-§10).

One paper session trades the real capture against the fake Binance over loopback while the
venue misbehaves (a dropped diff, a 429 on the snapshot, a dropped connection) and the strategy
``my_strategy`` (the guide's own example id) is switched to DEBUG. Then the guide's grep
commands are run with ``grep`` itself on the log directory, as written in the guide (with the
directory in place of ``/var/log/hft_system``). Rotation and the latency lines' ``awk`` averages
are checked on their own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.latency_log import LatencyLog
from engine.logs import COMPONENTS, flush_logs, get_logger, setup_logging
from engine.model import Side

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
server = pytest.importorskip("sim.fake_binance.server")
GREP = shutil.which("grep")
AWK = shutil.which("awk")
pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(GREP is None or AWK is None, reason="the guide's commands need grep and awk"),
]


def sh(cmd: str, logs: Path) -> str:
    """The guide's command with its log directory replaced by ``logs``."""
    cmd = cmd.replace("/var/log/hft_system", str(logs))
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=False).stdout


async def _session(out: Path) -> None:
    from engine.runners.paper import run_paper
    from engine.runners.spec import load_run_spec
    from venues.binance.adapter import BinanceAdapter
    from venues.binance.config import load_config

    spec = load_run_spec(REPO / "config" / "paper" / "market_maker_binance.json", mode="paper")
    spec.strategies[0].strategy_id = "my_strategy"
    async with server.FakeBinance(data=CAPTURE, speed=30) as fb:
        cfg = load_config(
            REPO / "config" / "exchanges" / "binance.json",
            overrides={"rest_url": fb.rest_url, "ws_url": fb.ws_url, "ws_api_url": fb.ws_api_url},
            env={},
        )

        def ready(session) -> None:
            engine = session.node.engine
            strategy = engine.strategies["my_strategy"]
            strategy.set_log_level("DEBUG")  # what PUT /api/v1/strategies/my_strategy/config does
            loop = asyncio.get_running_loop()

            def oversize() -> None:  # breaks max_order_size_usd: a risk check fails
                book = strategy.book()
                if book.valid:
                    strategy.submit_limit(Side.BUY, book.best_bid, 1.0)
                else:  # not on a book being rebuilt: that order would be refused before risk
                    loop.call_later(0.2, oversize)

            def drop() -> None:
                fb.fail_next_requests(1, status=429, retry_after=1, path="/api/v3/depth")
                fb.disconnect()

            loop.call_later(1.5, fb.drop_diffs, 1)
            loop.call_later(3.0, oversize)
            loop.call_later(4.0, drop)

        await run_paper(spec, out, duration_s=9.0, adapters={"binance": BinanceAdapter(cfg)}, ready=ready)


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("component-logs") / "run"
    asyncio.run(_session(out))
    flush_logs()
    setup_logging(None)
    return out / "logs"


def test_the_guides_log_files_exist(logs: Path) -> None:
    for name in (*COMPONENTS, "errors"):
        assert (logs / f"{name}.log").exists(), name
    assert sh("tail -100 /var/log/hft_system/system.log", logs).strip()
    assert sh("tail -100 /var/log/hft_system/errors.log", logs).strip()  # the faults left warnings


def test_market_data_greps(logs: Path) -> None:
    subs = sh('grep "subscribe" /var/log/hft_system/market_data.log | tail -20', logs)
    assert "Subscribed to binance:BTC-USDT:ticker" in subs
    assert "Subscribed to binance:BTC-USDT:orderbook" in subs
    assert sh('grep "orderbook.*BTC-USDT" /var/log/hft_system/market_data.log | tail -50', logs).strip()
    gaps = sh('grep "sequence gap" /var/log/hft_system/market_data.log', logs)
    assert "Market data sequence gap venue=binance symbol=BTC-USDT" in gaps


def test_exchanges_greps(logs: Path) -> None:
    assert "WebSocket connected" in sh('grep "binance" /var/log/hft_system/exchanges.log | tail -50', logs)
    assert int(sh('grep "disconnect" /var/log/hft_system/exchanges.log | wc -l', logs)) >= 1
    cycle = sh('grep -E "(disconnect|reconnect)" /var/log/hft_system/exchanges.log | tail -50', logs)
    assert "WebSocket connection closed: binance market data" in cycle and "reconnected" in cycle
    limited = sh('grep "rate limit" /var/log/hft_system/exchanges.log | tail -20', logs)
    assert "Rate limit exceeded: binance" in limited
    assert sh('grep "throttle\\|rate limit" /var/log/hft_system/exchanges.log', logs).strip()


def test_risk_greps(logs: Path) -> None:
    failed = sh('grep "risk check failed" /var/log/hft_system/risk.log | tail -20', logs)
    assert "Risk check failed: Order size too large strategy_id=my_strategy" in failed
    assert sh('grep "risk" /var/log/hft_system/risk.log | tail -20', logs).strip()


def test_strategies_greps(logs: Path) -> None:
    assert sh('grep "strategy_id: my_strategy" /var/log/hft_system/strategies.log | tail -50', logs).strip()
    md = sh('grep "onMarketData.*my_strategy" /var/log/hft_system/strategies.log', logs).splitlines()
    assert len(md) > 10 and all("DEBUG" in x for x in md)  # one line per callback while at DEBUG
    assert sh('grep "DEBUG.*my_strategy" /var/log/hft_system/strategies.log | tail -200', logs).strip()


def test_orders_greps(logs: Path) -> None:
    submits = sh('grep "submit order" /var/log/hft_system/orders.log | tail -20', logs).splitlines()
    assert submits and all("quantity=" in x for x in submits)
    assert sh('grep "order.*quantity" /var/log/hft_system/orders.log | tail -5', logs).strip()
    # the §4.3 rate count: the two first fields are date and time
    rate = sh(
        'grep "order submit" /var/log/hft_system/orders.log | tail -1000 | awk \'{print $1" "$2}\' | uniq -c', logs
    )
    assert rate.strip() and all(re.fullmatch(r"\s*\d+ \d{4}-\d{2}-\d{2} [\d:.]+", x) for x in rate.splitlines())
    oid = re.search(r"order_id: (\S+)", submits[0]).group(1)  # type: ignore[union-attr]
    assert oid in sh(f'grep "order_id: {oid}" /var/log/hft_system/orders.log', logs)


def test_the_daemon_process_left_no_secret_in_the_logs(logs: Path) -> None:
    text = "".join((logs / f"{n}.log").read_text() for n in (*COMPONENTS, "errors"))
    assert "signature=" not in text.replace("signature=***", "")


# --- the latency lines and their awk averages (§5.1) --------------------------------------------------
def test_latency_lines_average_with_the_guides_awk(tmp_path: Path) -> None:
    telemetry = pytest.importorskip("engine.daemon.telemetry")
    rings = {stage: telemetry.LatencyRing() for stage in ("market_data", "order_submit", "risk_check")}
    for ns in (10_000, 20_000, 30_000):  # 10, 20, 30 µs
        rings["market_data"].add(ns)
        rings["order_submit"].add(ns * 10)
    root = setup_logging(tmp_path / "logs")
    try:
        lat = LatencyLog(rings)
        assert lat.log() == 2  # no risk checks: no line for them
        assert lat.log() == 0  # nothing new since
        flush_logs()
        md = sh(
            'grep "latency_us" /var/log/hft_system/market_data.log | tail -1000 | '
            'awk \'{sum+=$NF; count++} END {print "Average: " sum/count " μs"}\'',
            root,  # type: ignore[arg-type]
        )
        assert md.strip() == "Average: 20 μs"
        orders = sh(
            'grep "order.*latency" /var/log/hft_system/orders.log | tail -1000 | '
            "awk -F'latency_us: ' '{sum+=$2; count++} END {print \"Average: \" sum/count \" μs\"}'",
            root,  # type: ignore[arg-type]
        )
        assert orders.strip() == "Average: 200 μs"
        # the rate count of submissions is not disturbed by latency lines
        assert not sh('grep "order submit" /var/log/hft_system/orders.log', root).strip()  # type: ignore[arg-type]
    finally:
        setup_logging(None)
    assert np.isfinite(rings["market_data"].sum_ns)


# --- rotation ---------------------------------------------------------------------------------------
def test_logs_rotate_by_size_and_the_guides_cleanup_finds_the_old_files(tmp_path: Path) -> None:
    root = setup_logging(tmp_path / "logs", log_rotate_mb=0.01, log_backups=2)  # 10 KiB a file
    assert root is not None
    try:
        log = get_logger("system")
        for i in range(600):  # ~60 KiB of lines: several rotations, only two backups kept
            log.info("position line %04d %s", i, "x" * 80)
        flush_logs()
    finally:
        setup_logging(None)
    files = sorted(p.name for p in root.iterdir() if p.name.startswith("system.log"))
    assert files == ["system.log", "system.log.1", "system.log.2"]
    assert all((root / f).stat().st_size <= 11 * 1024 for f in files)
    last = (root / "system.log").read_text().splitlines()[-1]
    assert last.endswith("position line 0599 " + "x" * 80)
    found = sh('find /var/log/hft_system -name "*.log.*"', root)
    assert sorted(Path(x).name for x in found.split()) == ["system.log.1", "system.log.2"]


def test_rotation_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="log_rotate_mb"):
        setup_logging(tmp_path / "logs", log_rotate_mb=-1)
    setup_logging(None)
    assert logging.getLogger("hft").handlers
