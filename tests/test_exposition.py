"""The metrics an operator reads: Prometheus text for the scrape, JSON lines for the guide's
``curl .../api/v1/metrics | grep ...`` and ``| grep latency | jq -r ...`` (5.1), and the trading
process's ``/proc`` figures."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from metrics_fixture import STAGES, api_samples, latency_sample, snapshot
from prometheus_client.parser import text_string_to_metric_families

from engine.daemon import exposition, procstats
from engine.daemon.telemetry import BUCKETS

GUIDE_JQ = '. | "\\(.name): P50=\\(.p50)us P99=\\(.p99)us P999=\\(.p999)us"'
CONTRACT_NAMES = {
    "hft_latency_seconds", "hft_market_data_queue_depth", "hft_orderbook_memory_mb", "hft_order_count",
    "hft_orders", "hft_fills", "hft_position_quantity", "hft_pnl_usd", "hft_risk_violations",
    "hft_exchange_connected", "hft_sequence_gaps", "hft_reconnects", "hft_incidents",
    "hft_rate_limit_weight_used", "hft_event_loop_lag_seconds", "hft_trading_enabled", "hft_book_valid",
    "hft_process_resident_memory_bytes", "hft_process_open_fds", "hft_process_cpu_seconds", "hft_api_requests",
}  # fmt: skip


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    return exposition.snapshot_samples(snapshot(), procstats.read(os.getpid()).samples(), api_samples())


def grep(text: str, word: str) -> list[str]:
    """``grep WORD``: the lines holding it, case-sensitive as grep is by default."""
    return [line for line in text.splitlines() if word in line]


# --- Prometheus text ---------------------------------------------------------------------------
def test_prometheus_text_has_every_contract_metric_with_its_type(samples):
    families = {f.name: f for f in text_string_to_metric_families(exposition.prometheus_text(samples).decode())}
    assert set(families) >= CONTRACT_NAMES
    assert families["hft_latency_seconds"].type == "histogram"
    assert families["hft_orders"].type == "counter"
    assert families["hft_market_data_queue_depth"].type == "gauge"
    orders = {s.labels["status"]: s.value for s in families["hft_orders"].samples if s.name == "hft_orders_total"}
    assert orders == {"submitted": 1520, "filled": 61, "cancelled": 1440, "rejected": 4}


def test_histograms_are_in_seconds_with_the_snapshots_buckets(samples):
    text = exposition.prometheus_text(samples).decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "hft_latency_seconds")
    source, draws = latency_sample("tick_to_order")
    got = {
        float(s.labels["le"]): s.value
        for s in family.samples
        if s.name == "hft_latency_seconds_bucket" and s.labels["stage"] == "tick_to_order"
    }
    want = {(math.inf if b == "+Inf" else b): c for b, c in source["buckets"]}
    assert got == want
    assert sorted(got)[:-1] == list(BUCKETS)
    tick = {s.name: s.value for s in family.samples if s.labels["stage"] == "tick_to_order" and "le" not in s.labels}
    count, total = tick["hft_latency_seconds_count"], tick["hft_latency_seconds_sum"]
    assert count == len(draws)
    assert total == pytest.approx(sum(draws))
    assert {s.labels["stage"] for s in family.samples} == set(STAGES)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_lints_only_the_guides_own_names(samples):
    """Prometheus naming conventions throughout, but for the two names the guide greps for
    (``order_count``, ``orderbook_memory_mb``, 5.3), which the contract keeps as the guide spells them."""
    res = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition.prometheus_text(samples), capture_output=True, timeout=60
    )
    findings = sorted(line.split()[0] for line in (res.stdout + res.stderr).decode().splitlines() if line.strip())
    assert findings == ["hft_order_count", "hft_orderbook_memory_mb"], (res.stdout + res.stderr).decode()


# --- JSON lines ----------------------------------------------------------------------------------
def test_every_json_line_is_one_json_object(samples):
    text = exposition.json_lines(samples)
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == len(samples)
    assert all(isinstance(json.loads(line), dict) for line in lines)


@pytest.mark.parametrize(
    ("word", "names"),
    [
        ("queue_depth", {"market_data_queue_depth"}),
        ("market_data_queue_depth", {"market_data_queue_depth"}),
        ("orderbook_memory_mb", {"orderbook_memory_mb"}),
        ("order_count", {"order_count"}),
    ],
)
def test_the_guides_greps_find_their_metric(samples, word, names):
    found = grep(exposition.json_lines(samples), word)
    assert {json.loads(line)["name"] for line in found} == names


def test_grep_latency_finds_one_line_per_stage_and_nothing_else(samples):
    lines = grep(exposition.json_lines(samples), "latency")
    objs = [json.loads(line) for line in lines]
    assert [o["name"] for o in objs] == [f"{s}_latency" for s in STAGES]
    for o in objs:
        assert set(o) == {"name", "p50", "p99", "p999", "unit", "count"}
        assert o["unit"] == "us" and o["count"] == 5000
        assert 0 < o["p50"] <= o["p99"] <= o["p999"]
    tick = next(o for o in objs if o["name"] == "tick_to_order_latency")
    assert tick["p50"] == latency_sample("tick_to_order")[0]["quantiles_us"]["p50"]


def test_a_label_naming_latency_reads_back_but_escapes_grep(samples):
    text = exposition.json_lines(samples)
    incidents = [json.loads(line) for line in grep(text, "incidents_total")]
    assert {"kind": "high_latency"} in [o["labels"] for o in incidents]
    assert not any("incidents" in line for line in grep(text, "latency"))


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed (Debian package jq)")
def test_the_guides_latency_pipeline_runs_with_jq(samples):
    """``curl -s .../api/v1/metrics | grep latency | jq -r '...'`` exactly as section 5.1 types it."""
    res = subprocess.run(
        ["bash", "-c", f"grep latency | jq -r '{GUIDE_JQ}'"],
        input=exposition.json_lines(samples), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert len(out) == len(STAGES)
    q = latency_sample("tick_to_order")[0]["quantiles_us"]
    # jq prints 237.0 as 237
    assert f"tick_to_order_latency: P50={q['p50']:g}us P99={q['p99']:g}us P999={q['p999']:g}us" in out
    assert all(line.endswith("us") and "null" not in line for line in out)


def test_quantiles_missing_from_the_snapshot_come_from_the_buckets():
    sample, draws = latency_sample("market_data", n=20000)
    del sample["quantiles_us"]
    line = json.loads(grep(exposition.json_lines([sample]), "latency")[0])
    # interpolation within a bucket: within that bucket's width of the true quantile
    for key, q in exposition.QUANTILES:
        true = draws[int(q * len(draws))]
        hi = next(b for b in BUCKETS if b >= true)
        lo = max([0.0, *(b for b in BUCKETS if b < true)])
        assert lo * 1e6 - 0.1 <= line[key] <= hi * 1e6 + 0.1


def test_bucket_quantile_matches_prometheus_interpolation():
    buckets = [(0.0005, 90.0), (0.001, 95.0), (0.0025, 100.0), (math.inf, 100.0)]
    # the figures promtool computes for the same buckets in config/prometheus/tests
    assert exposition.bucket_quantile(buckets, 0.99) == pytest.approx(0.0022)
    assert exposition.bucket_quantile(buckets, 0.5) == pytest.approx(0.0005 * 50 / 90)
    assert exposition.bucket_quantile([(0.001, 0.0), (math.inf, 0.0)], 0.5) is None
    assert exposition.bucket_quantile([(0.001, 1.0), (math.inf, 10.0)], 0.99) == 0.001


def test_an_empty_histogram_prints_null_quantiles_and_still_parses():
    sample = {
        "name": "hft_latency_seconds", "type": "histogram", "help": "h", "labels": {"stage": "venue_ack"},
        "buckets": [[b, 0] for b in BUCKETS] + [["+Inf", 0]], "sum": 0.0, "count": 0,
    }  # fmt: skip
    line = json.loads(exposition.json_lines([sample]))
    assert line == {"name": "venue_ack_latency", "p50": None, "p99": None, "p999": None, "unit": "us", "count": 0}


def test_a_sample_breaking_the_contract_is_left_out_and_the_rest_served():
    good = {"name": "hft_order_count", "type": "gauge", "help": "n", "labels": {}, "value": 3}
    bad = [
        {"name": "hft bad name", "type": "gauge", "value": 1},
        {"name": "hft_x", "type": "summary", "value": 1},
        {"name": "hft_y", "type": "gauge", "value": "12"},
        {"name": "hft_z", "type": "histogram", "buckets": [[0.001, 1]], "sum": 0, "count": 1},
        {"name": "hft_w", "type": "histogram", "buckets": [[0.001, 5], [0.0005, 6], ["+Inf", 6]]},
        {"name": "hft_v", "type": "gauge", "labels": {"le": "1"}, "value": 1},
        "not an object",
    ]
    text = exposition.prometheus_text([*bad, good]).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert names == {"hft_order_count"}
    assert [json.loads(line)["name"] for line in exposition.json_lines([*bad, good]).splitlines()] == ["order_count"]


@pytest.mark.parametrize(
    ("sample", "field"),
    [
        ({"name": "x y", "type": "gauge", "value": 1}, "name"),
        ({"name": "hft_x", "type": "summary", "value": 1}, "type"),
        ({"name": "hft_x", "type": "gauge", "value": None}, "value"),
        ({"name": "hft_x", "type": "gauge", "labels": ["a"], "value": 1}, "labels"),
        ({"name": "hft_x", "type": "histogram", "buckets": [[0.1, 1]]}, "buckets"),
    ],
)
def test_a_bad_sample_is_named_by_its_field(sample, field):
    with pytest.raises(exposition.SampleError, match=field):
        exposition.check_sample(sample)


def test_non_finite_values_become_null_for_jq():
    nan = {"name": "hft_event_loop_lag_seconds", "type": "gauge", "help": "h", "labels": {}, "value": float("nan")}
    assert json.loads(exposition.json_lines([nan]))["value"] is None
    assert "NaN" in exposition.prometheus_text([nan]).decode()


# --- Accept negotiation ---------------------------------------------------------------------------
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "prometheus"),
    [
        (None, False),
        ("", False),
        ("*/*", False),  # curl
        (BROWSER_ACCEPT, False),
        ("application/json", False),
        (PROMETHEUS_ACCEPT, True),
        ("text/plain", True),
        ("text/plain; version=0.0.4", True),
        ("application/openmetrics-text; version=1.0.0", True),
        ("text/plain;q=0", False),
        ("TEXT/PLAIN", True),
    ],
)
def test_accept_negotiation(accept, prometheus):
    assert exposition.wants_prometheus_text(accept) is prometheus
    body, ctype = exposition.render(snapshot()["samples"], accept)
    if prometheus:
        assert ctype.startswith("text/plain") and body.startswith(b"# HELP")
    else:
        assert ctype.startswith("application/x-ndjson") and json.loads(body.splitlines()[0])["name"]


# --- /proc -------------------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    files = [open(os.devnull) for _ in range(40)]
    block = bytearray(64 * 1024 * 1024)  # touched, so resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(3)]
    for t in threads:
        t.start()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.2:
        pass
    print("ready", flush=True)
    sys.stdin.readline()
    stop.set()
    """
)


def test_procstats_reads_a_running_process():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        st = procstats.read(child.pid)
        status = Path(f"/proc/{child.pid}/status").read_text()
        vmrss = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024
        assert st.pid == child.pid
        assert st.resident_memory_bytes >= 64 * 1024 * 1024
        assert st.resident_memory_bytes == pytest.approx(vmrss, rel=0.05)
        assert st.open_fds >= 43  # stdin, stdout, stderr and the 40 files
        assert st.threads == 4
        assert st.cpu_seconds >= 0.2
        assert st.max_fds is None or st.max_fds >= st.open_fds
        assert st.memory_limit_bytes is not None and st.memory_limit_bytes > st.resident_memory_bytes
    finally:
        if child.stdin is not None:
            child.stdin.write("\n")
            child.stdin.flush()
        child.wait(timeout=30)


def test_procstats_of_a_gone_process_says_so():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    with pytest.raises(procstats.ProcStatsError, match=f"process {child.pid} is not running"):
        procstats.read(child.pid)


def test_the_memory_limit_is_the_cgroups_when_lower_than_the_host(tmp_path):
    """A systemd unit's ``MemoryMax`` (cgroup v2 ``memory.max``) is what the process may use."""
    me = Path(f"/proc/{os.getpid()}")
    proc = tmp_path / "proc"
    base = proc / "77"
    (base / "fd").mkdir(parents=True)
    for i in range(5):
        (base / "fd" / str(i)).touch()
    for name in ("stat", "statm", "limits"):
        (base / name).write_text((me / name).read_text())
    (base / "cgroup").write_text("0::/system.slice/hft_system.service\n")
    (proc / "meminfo").write_text("MemTotal:       16000000 kB\nMemFree:         1000 kB\n")
    cg = tmp_path / "cgroup" / "system.slice" / "hft_system.service"
    cg.mkdir(parents=True)
    (cg / "memory.max").write_text("4294967296\n")
    st = procstats.read(77, proc=proc, cgroup_root=tmp_path / "cgroup")
    assert st.open_fds == 5
    assert st.memory_limit_bytes == 4294967296
    (cg / "memory.max").write_text("max\n")
    assert procstats.read(77, proc=proc, cgroup_root=tmp_path / "cgroup").memory_limit_bytes == 16000000 * 1024


def test_procstats_samples_are_the_contracts_process_metrics():
    names = {s["name"] for s in procstats.read(os.getpid()).samples()}
    assert {"hft_process_resident_memory_bytes", "hft_process_open_fds", "hft_process_cpu_seconds_total"} <= names
    text = exposition.prometheus_text(procstats.read(os.getpid()).samples()).decode()
    fds = next(f for f in text_string_to_metric_families(text) if f.name == "hft_process_open_fds")
    assert fds.samples[0].value >= 3
