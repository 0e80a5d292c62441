"""The operator's operations against a running paper daemon, made as ``hft ctl`` makes them
(signed HTTP): the kill switch and a tighter risk limit refuse the very next order, a strategy
stops (its orders cancelled) and starts, its config changes validated like the config file, reconnect
and a forced snapshot, archiving old orders, the metrics snapshot, errors in the guide's words.
Plus the pieces under them: the latency rings' histograms and the daemon section's checks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import (
    CAPTURE,
    FAST_MM,
    ApiError,
    Daemon,
    fake_binance,
    metric,
    paper_config,
    start_daemon,
    wait_until,
)

from engine.daemon.config import parse_daemon
from engine.daemon.telemetry import BUCKETS, RECENT, LatencyRing
from engine.errors import ConfigError

needs_capture = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    if not CAPTURE.exists():
        pytest.skip(f"capture not found at {CAPTURE}")
    tmp = tmp_path_factory.mktemp("daemon_ops")
    with fake_binance() as fb:
        d = start_daemon(tmp, paper_config(tmp, strategy=FAST_MM), fake=fb)
        try:
            wait_until(lambda: d.call("orders", status="open")["count"] > 0, 90, "the market maker to quote", d)
            yield d
        finally:
            d.stop()


def submitted(d: Daemon) -> float:
    return metric(d.call("metrics"), "hft_orders_total", status="submitted")


def new_violation(d: Daemon, check: str, after: str) -> dict | None:
    rows = d.call("risk_violations", limit=50)["violations"]
    return next((v for v in rows if v["check"] == check and v["ts"] > after), None)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z"


def test_trading_disabled_refuses_the_next_order_at_once(daemon: Daemon) -> None:
    since = now_iso()
    assert daemon.call("config_set", trading_enabled=False) == {"trading_enabled": False}
    sent = submitted(daemon)
    try:
        v = wait_until(lambda: new_violation(daemon, "trading_enabled", since), 60, "an order refused", daemon)
        assert v["message"] == "Risk check failed: Trading disabled" and v["strategy_id"] == "mm"
        assert submitted(daemon) == sent  # not one order left after the switch
        assert daemon.call("status")["trading_enabled"] is False
        assert metric(daemon.call("metrics"), "hft_trading_enabled") == 0
    finally:
        daemon.call("config_set", trading_enabled=True)
    wait_until(lambda: submitted(daemon) > sent, 60, "orders again once trading is enabled", daemon)


def test_a_tighter_risk_limit_refuses_the_next_order(daemon: Daemon) -> None:
    since = now_iso()
    got = daemon.call("risk_limits", body={"max_order_size_usd": 1})
    assert got["limits"]["max_order_size_usd"] == 1.0
    sent = submitted(daemon)
    try:
        v = wait_until(lambda: new_violation(daemon, "max_order_size", since), 60, "an order refused", daemon)
        assert v["message"] == "Risk check failed: Order size too large" and v["limit"] == 1.0
        assert submitted(daemon) == sent
    finally:
        daemon.call("risk_limits", body={"max_order_size_usd": 5000})
    assert "Risk check failed: Order size too large" in daemon.log("risk")


def test_position_limit_usd_is_the_system_wide_limit(daemon: Daemon) -> None:
    got = daemon.call("risk_limits", body={"position_limit_usd": 150000.0})
    assert got["limits"]["max_global_position_usd"] == 150000.0
    assert daemon.call("risk_summary")["limits"]["max_global_position_usd"] == 150000.0
    with pytest.raises(ApiError) as err:
        daemon.call("risk_limits", body={"position_limit_usd": -1})
    assert (err.value.status, err.value.field) == (400, "position_limit_usd")
    assert err.value.error == "position_limit_usd: must be a number >= 0"
    with pytest.raises(ApiError) as err:
        daemon.call("risk_limits", body={"max_postion_usd": 1})
    assert err.value.status == 400 and "did you mean 'max_position_usd'" in err.value.error


def test_a_stopped_strategy_has_no_open_orders_and_starts_again(daemon: Daemon) -> None:
    got = daemon.call("strategy_stop", strategy_id="mm")
    try:
        assert got["status"] == "stopped" and "still_open" not in got
        assert daemon.call("orders", status="open", strategy_id="mm")["orders"] == []
        assert {s["strategy_id"]: s["status"] for s in daemon.call("strategies")["strategies"]} == {"mm": "stopped"}
        sent = submitted(daemon)
        time.sleep(1.0)  # market data keeps coming: a stopped strategy sends nothing
        assert submitted(daemon) == sent
    finally:
        assert daemon.call("strategy_start", strategy_id="mm")["status"] == "running"
    wait_until(lambda: daemon.call("orders", status="open", strategy_id="mm")["count"], 60, "quotes again", daemon)


def test_strategy_config_is_validated_then_applied(daemon: Daemon) -> None:
    with pytest.raises(ApiError) as err:
        daemon.call("strategy_config", strategy_id="mm", body={"parameters": {"order_size": -1}})
    assert (err.value.status, err.value.field) == (400, "parameters.order_size")
    assert err.value.error == "parameters.order_size: must be a number > 0, got -1"
    with pytest.raises(ApiError) as err:
        daemon.call("strategy_config", strategy_id="mm", body={"log_level": "LOUD", "parameters": {"order_size": 1}})
    assert err.value.field == "log_level"
    assert daemon.call("strategy", strategy_id="mm")["config"]["parameters"]["order_size"] == 0.0005  # nothing changed
    doc = daemon.call(
        "strategy_config",
        strategy_id="mm",
        body={"log_level": "debug", "parameters": {"order_size": 0.0007}, "risk_limits": {"max_position_usd": 25000}},
    )
    assert doc["config"]["log_level"] == "DEBUG"
    assert doc["config"]["parameters"]["order_size"] == 0.0007
    assert doc["config"]["risk_limits"]["max_position_usd"] == 25000.0
    assert set(doc["performance"]) >= {"net_pnl", "realized_pnl", "unrealized_pnl", "fees", "fills", "orders_submitted"}

    # the market maker amends its live quotes' price only: its next new quotes have the new size
    daemon.call("strategy_stop", strategy_id="mm")
    daemon.call("strategy_start", strategy_id="mm")

    def quoting_new_size() -> bool:
        return any(o["quantity"] == 0.0007 for o in daemon.call("orders", status="open", strategy_id="mm")["orders"])

    wait_until(quoting_new_size, 60, "quotes of the new size", daemon)
    daemon.call("strategy_config", strategy_id="mm", body={"parameters": {"order_size": 0.0005}, "log_level": "INFO"})


def test_reconnect_and_a_forced_snapshot_rebuild_the_book(daemon: Daemon) -> None:
    before = daemon.call("status")["exchanges"]["binance"]["reconnects"]
    assert daemon.call("exchange_reconnect", exchange="binance") == {"exchange": "binance", "reconnecting": True}

    def reconnected() -> bool:
        ex = daemon.call("status")["exchanges"]["binance"]
        return ex["reconnects"] > before and ex["status"] == "connected" and ex["books"]["BTC-USDT"]["valid"]

    wait_until(reconnected, 60, "the reconnect", daemon)
    assert "reconnecting (operator request)" in daemon.log("exchanges")
    got = daemon.call("snapshot", exchange="binance", symbol="BTC-USDT")
    assert got == {"exchange": "binance", "symbol": "BTC-USDT", "resync": "requested"}

    def resynced() -> bool:
        kinds = [i["kind"] for i in daemon.call("incidents")["incidents"]]
        return "resync" in kinds and daemon.call("orderbook", exchange="binance", symbol="BTC-USDT")["valid"]

    wait_until(resynced, 60, "the book rebuilt from a fresh snapshot", daemon)
    book = daemon.call("orderbook", exchange="binance", symbol="BTC-USDT", depth=5)
    assert len(book["bids"]) == 5 and book["bids"][0][0] < book["asks"][0][0]


def test_old_orders_are_archived_and_leave_memory(daemon: Daemon) -> None:
    wait_until(lambda: daemon.call("orders", status="cancelled")["count"], 60, "a cancelled order", daemon)
    before = {o["order_id"]: o for o in daemon.call("orders", limit=10000)["orders"]}
    got = daemon.call("orders_archive", older_than_hours=0)
    assert got["archived"] >= 1
    # the daemon keeps a store (DuckDB by default): archived orders are already in its orders
    # table, so no file is written and the API answers for them from the database
    assert got["path"] is None
    after = daemon.call("orders", limit=10000)["orders"]
    gone = set(before) - {o["order_id"] for o in after}
    closed = [oid for oid in gone if before[oid]["status"] in ("filled", "cancelled", "rejected", "expired")]
    assert closed and all(oid.startswith("mm-") for oid in closed)
    # open orders are never archived (the market maker keeps quoting: what was open may close and
    # be archived a moment later, so only the closed ones are checked)
    for oid in closed[:5]:
        doc = daemon.call("order", order_id=oid)
        assert doc["source"] == "database" and doc["order_id"] == oid
        assert doc["status"] == before[oid]["status"] and doc["quantity"] == before[oid]["quantity"]
        assert doc["filled_quantity"] == before[oid]["filled_quantity"]
    for o in after:
        if o["status"] == "open":  # still there, one by one
            assert daemon.call("order", order_id=o["order_id"])["order_id"] == o["order_id"]
    with pytest.raises(ApiError) as err:
        daemon.call("order", order_id="mm-never-sent-1")
    assert (err.value.status, err.value.error) == (404, "Order not found: mm-never-sent-1")
    with pytest.raises(ApiError) as err:
        daemon.call("orders_archive", older_than_hours=-1)
    assert (err.value.status, err.value.field) == (400, "older_than_hours")


def test_cancel_and_reconcile_one_order(daemon: Daemon) -> None:
    order = wait_until(lambda: daemon.call("orders", status="open")["orders"], 60, "an open order", daemon)[0]
    assert daemon.call("order_reconcile", order_id=order["order_id"])["reconcile"]["venue"] == "simulated"
    try:
        got = daemon.call("order_cancel", order_id=order["order_id"])
    except ApiError as exc:
        # the market maker requoted it (or it filled) between the read and the cancel: the refusal
        # says so in the guide's words
        assert exc.status == 409 and exc.error.startswith(f"Order {order['order_id']} is already "), exc
    else:
        if got["status"] == "open":  # an answered cancel is not open
            assert got["cancel_requested"] is False
        else:
            assert got["status"] in ("cancelled", "filled")
    with pytest.raises(ApiError) as err:
        daemon.call("order_cancel", order_id=order["order_id"])
    assert err.value.status in (409, 404)


def test_errors_are_in_the_guides_words(daemon: Daemon) -> None:
    cases = [
        (("orderbook", {"exchange": "kraken", "symbol": "BTC-USDT"}), 404, "Exchange not found: kraken"),
        (("ticker", {"exchange": "binance", "symbol": "BTCUSDT"}), 404, "Symbol not found: binance BTCUSDT"),
        (("order", {"order_id": "nope"}), 404, "Order not found: nope"),
        (("strategy", {"strategy_id": "ghost"}), 404, "Strategy not found: ghost"),
        (("component_restart", {"component": "flux"}), 404, "Component not found: flux"),
        (("orders", {"limit": 0}), 400, "limit: must be an integer 1..10000"),
        (("config_set", {"trading_enabled": "no"}), 400, "trading_enabled: must be true or false"),
    ]
    for (op, args), status, error in cases:
        with pytest.raises(ApiError) as err:
            daemon.call(op, **args)
        assert (err.value.status, err.value.error) == (status, error), op


def test_component_restarts_mean_something(daemon: Daemon) -> None:
    got = daemon.call("component_restart", component="position_manager")
    assert got["restarted"] is True and got["detail"] == ["marks", "holds"]
    assert daemon.call("component_restart", component="order_manager")["restarted"] is True


def test_the_metrics_snapshot_has_every_stage_and_the_guides_names(daemon: Daemon) -> None:
    snap = daemon.bridge_call("metrics")  # what crosses the bridge; /metrics renders it
    names = {s["name"] for s in snap["samples"]}
    for name in (
        "hft_market_data_queue_depth", "hft_orderbook_memory_mb", "hft_order_count", "hft_orders_total",
        "hft_fills_total", "hft_risk_violations_total", "hft_exchange_connected", "hft_sequence_gaps_total",
        "hft_reconnects_total", "hft_event_loop_lag_seconds", "hft_trading_enabled", "hft_book_valid",
    ):  # fmt: skip
        assert name in names, name
    hists = {s["labels"]["stage"]: s for s in snap["samples"] if s["name"] == "hft_latency_seconds"}
    assert set(hists) == {"market_data", "risk_check", "order_submit", "tick_to_order", "venue_ack"}
    for stage in ("market_data", "risk_check", "order_submit", "tick_to_order", "venue_ack"):
        h = hists[stage]
        counts = [c for _, c in h["buckets"]]
        assert h["count"] > 0, stage
        assert counts == sorted(counts) and h["buckets"][-1] == ["+Inf", h["count"]]
        q = h["quantiles_us"]
        assert 0 < q["p50"] <= q["p99"] <= q["p999"]
    assert metric(snap, "hft_exchange_connected", exchange="binance") == 1


# --- the pieces --------------------------------------------------------------------------------------
def test_the_ring_folds_exact_buckets_while_it_keeps_up() -> None:
    ring = LatencyRing()
    for ns in (3_000, 40_000, 40_000, 2_000_000, 7_000_000_000):
        ring.add(ns)
    ring.fold()
    ring.add(90_000)
    ring.fold()
    assert int(ring.count.sum()) == 6 and ring.sum_ns == 7_002_173_000
    le = dict(zip(BUCKETS, ring.count.cumsum()[:-1].tolist(), strict=True))
    assert le[0.000005] == 1 and le[0.00005] == 3 and le[0.0001] == 4 and le[0.0025] == 5 and le[5.0] == 5
    assert ring.quantiles_us()["p50"] == 90.0  # nearest rank: the upper of the middle two of six


def test_quantiles_come_from_the_latest_samples() -> None:
    ring = LatencyRing()
    for _ in range(RECENT):
        ring.add(1_000_000)  # an old slow spell...
    ring.fold()
    for i in range(RECENT + 10):  # ...then fast: folded in two batches
        ring.add(10_000 + i % 3)
        if i == 100:
            ring.fold()
    ring.fold()
    assert ring.total == 2 * RECENT + 10 and int(ring.count.sum()) == ring.total  # histogram: all of them
    assert ring.quantiles_us()["p999"] < 11  # quantiles: only the latest, all fast


def test_the_daemon_section_is_checked_like_every_config() -> None:
    with pytest.raises(ConfigError) as err:
        parse_daemon({"memory_management": {"high_pressure_threshold": 80}}, "p.json", Path("."))
    assert str(err.value) == (
        "Failed to load configuration from p.json: daemon.memory_management.high_pressure_threshold: "
        "must be a fraction of the limit in (0, 1], got 80.0"
    )
    with pytest.raises(ConfigError) as err:
        parse_daemon({"memory_management": {"actions": ["drop_everything"]}}, "p.json", Path("."))
    assert "daemon.memory_management.actions[0]: must be one of reduce_order_book_depth" in str(err.value)
    s = parse_daemon({"api": {"port": 0}, "pid_file": "/tmp/x.pid"}, "p.json", Path("."))
    assert s.present and s.api.port == 0 and str(s.pid_file) == "/tmp/x.pid" and s.memory.high_pressure_threshold == 0.8


def test_a_strategy_file_takes_the_guides_keys_checked_like_the_config(tmp_path: Path) -> None:
    from engine.runners.spec import load_strategy

    base = {"strategy_id": "x", "class": "strategies.market_maker:MarketMaker", "venue": "binance"}
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {
                **base,
                "symbols": ["BTC-USDT"],
                "parameters": {"order_size": 0.001},
                "log_level": "debug",
                "risk_limits": {"max_position_usd": 25000, "max_order_size_usd": 5000},
            }
        )
    )
    st = load_strategy(good)
    assert st.params == {"order_size": 0.001} and st.log_level == "DEBUG"
    assert st.risk_limits == {"max_position_usd": 25000.0, "max_order_size_usd": 5000.0}
    cases = {
        "risk_limits.max_position_usd: must be a number >= 0": {"risk_limits": {"max_position_usd": -1}},
        "parameters.order_sise: unknown field, did you mean 'order_size'?": {"parameters": {"order_sise": 1}},
        "log_level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'": {"log_level": "LOUD"},
    }
    for message, extra in cases.items():
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**base, "symbols": ["BTC-USDT"], **extra}))
        with pytest.raises(ConfigError) as err:
            load_strategy(bad)
        assert str(err.value).startswith(f"Failed to load configuration from {bad}: {message}")
