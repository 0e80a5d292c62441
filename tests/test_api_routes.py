"""Every endpoint of the operator API against a running paper daemon (``hft paper CONFIG --api``)
and the fake Binance, over HTTP only: the JSON shapes the guide's ``jq`` filters read, the 404s
in the guide's words, 400s naming the field, mutations that take effect, and JSON errors for
unknown routes and methods."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import CAPTURE, STRATEGY, Daemon, start_daemon, wait_until

pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason=f"capture not found at {CAPTURE}")

V1 = "/api/v1"
STATUSES = ("pending", "open", "partially_filled", "filled", "cancelled", "rejected", "expired")


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path_factory.mktemp("api_routes"))
    try:
        wait_until(lambda: _book_valid(daemon), 120, "a valid BTC-USDT book", daemon)
        yield daemon
    finally:
        daemon.stop()


def _book_valid(d: Daemon) -> bool:
    r = d.get(f"{V1}/marketdata/orderbook/binance/BTC-USDT")
    return r.status == 200 and r.json["valid"] and bool(r.json["bids"]) and bool(r.json["asks"])


def _orders(d: Daemon, query: str = "") -> list[dict]:
    r = d.get(f"{V1}/orders{query}")
    assert r.status == 200, r.text
    return r.json["orders"]


def error_of(r, status: int) -> str:
    assert r.status == status, (r.status, r.text)
    assert r.headers["content-type"].startswith("application/json")
    return r.json["error"]


# --- reads ---------------------------------------------------------------------------------------
def test_status_has_what_the_guides_jq_filters_read(d: Daemon) -> None:
    s = d.get(f"{V1}/status").json
    assert s["mode"] == "paper" and s["status"] == "running"
    assert s["trading_enabled"] is True
    assert s["exchanges"]["binance"]["status"] == "connected"
    assert s["exchanges"]["binance"]["books"]["BTC-USDT"]["valid"] is True
    assert s["uptime_s"] > 0 and s["version"] and s["pid"] == d.proc.pid


def test_orderbook_shows_price_and_quantity_per_level_on_both_sides(d: Daemon) -> None:
    b = d.get(f"{V1}/marketdata/orderbook/binance/BTC-USDT?depth=5").json
    assert b["symbol"] == "BTC-USDT" and b["exchange"] == "binance"
    assert 1 <= len(b["bids"]) <= 5 and 1 <= len(b["asks"]) <= 5
    bids = [p for p, _ in b["bids"]]
    asks = [p for p, _ in b["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0]  # not crossed
    assert all(q > 0 for _, q in b["bids"] + b["asks"])


def test_ticker_shows_bid_ask_and_spread(d: Daemon) -> None:
    t = d.get(f"{V1}/marketdata/ticker/binance/BTC-USDT").json
    assert 10_000 < t["bid"] < t["ask"] < 200_000
    assert t["spread"] > 0 and t["mid"] == pytest.approx((t["bid"] + t["ask"]) / 2)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/marketdata/orderbook/binance/BTC-XXX", "Symbol not found: binance BTC-XXX"),
        ("/marketdata/ticker/binance/DOGE-EUR", "Symbol not found: binance DOGE-EUR"),
        ("/marketdata/orderbook/nasdaq/BTC-USDT", "Exchange not found: nasdaq"),
        ("/strategies/nobody", "Strategy not found: nobody"),
        ("/orders/no-such-order", "Order not found: no-such-order"),
    ],
)
def test_unknown_things_are_404_in_the_guides_words(d: Daemon, path: str, error: str) -> None:
    assert error_of(d.get(V1 + path), 404) == error


def test_strategies_list_and_one_strategy_with_parameters_and_performance(d: Daemon) -> None:
    rows = d.get(f"{V1}/strategies").json["strategies"]
    assert [r["strategy_id"] for r in rows] == [STRATEGY]
    assert rows[0]["status"] == "running"
    one = d.get(f"{V1}/strategies/{STRATEGY}").json
    assert one["config"]["parameters"]["half_spread_bps"] == 0.5
    assert {"net_pnl", "realized_pnl", "unrealized_pnl", "fills"} <= set(one["performance"])


def test_orders_filters_and_limits(d: Daemon) -> None:
    wait_until(lambda: len(_orders(d)) >= 3, 120, "the market maker to place orders", d)
    everything = _orders(d, "?limit=10000")
    assert {"order_id", "client_order_id", "exchange_order_id", "created_at", "error_message"} <= set(everything[0])
    assert len(_orders(d, "?limit=2")) == 2
    for o in _orders(d, "?status=open"):
        assert o["status"] == "open"
    assert all(o["strategy_id"] == STRATEGY for o in _orders(d, f"?strategy_id={STRATEGY}"))
    # the guide's unquoted & drops limit=100: the default still bounds the answer
    r = d.get(f"{V1}/orders?strategy_id={STRATEGY}")
    assert r.json["count"] == len(r.json["orders"]) <= 100
    one = everything[0]
    got = d.get(f"{V1}/orders/{one['order_id']}").json
    assert got["order_id"] == one["order_id"] and got["client_order_id"] == one["client_order_id"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?limit=0", "limit: must be an integer 1..10000"),
        ("?limit=ten", "limit: must be an integer 1..10000"),
        ("?limit=10001", "limit: must be an integer 1..10000"),
        (
            "?status=lost",
            "status: must be one of: pending, open, partially_filled, filled, cancelled, rejected, expired",
        ),
        ("?stauts=pending", "stauts: unknown query parameter (accepted: limit, status, strategy_id)"),
        ("?status=open&status=filled", "status: given more than once"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_field(d: Daemon, query: str, message: str) -> None:
    r = d.get(f"{V1}/orders{query}")
    assert error_of(r, 400) == message
    assert r.json["field"] == message.split(":")[0]


def test_positions_carry_symbol_and_strategy_for_the_guides_filters(d: Daemon) -> None:
    wait_until(lambda: d.get(f"{V1}/positions").json["positions"], 180, "a position from a paper fill", d)
    for p in d.get(f"{V1}/positions").json["positions"]:
        assert p["symbol"] == "BTC-USDT" and p["strategy"] == STRATEGY and p["strategy_id"] == STRATEGY


def test_risk_summary_violations_and_incidents_answer(d: Daemon) -> None:
    assert "trading_enabled" in json.dumps(d.get(f"{V1}/risk/summary").json)
    assert isinstance(d.get(f"{V1}/risk/violations").json["violations"], list)
    assert isinstance(d.get(f"{V1}/incidents?limit=5").json["incidents"], list)


def test_metrics_serve_grep_jq_and_prometheus(d: Daemon) -> None:
    lines = d.get(f"{V1}/metrics").text.splitlines()
    assert any("market_data_queue_depth" in line for line in lines)
    latency = [json.loads(line) for line in lines if "latency" in line]  # the guide's grep | jq
    assert latency and all({"name", "p50", "p99", "p999"} <= set(x) for x in latency)
    text = d.get("/metrics").text
    assert "# TYPE hft_latency_seconds histogram" in text and "hft_exchange_connected" in text
    assert "hft_process_open_fds" in text  # the trading process's /proc figures
    negotiated = d.get(f"{V1}/metrics", headers={"Accept": "text/plain;version=0.0.4"})
    assert negotiated.text.startswith("# HELP")


def test_openapi_describes_every_route(d: Daemon) -> None:
    doc = d.get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    for want in [
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/config/reload"),
        ("POST", "/api/v1/config/reload"),
        ("POST", "/api/v1/orders/archive"),
        ("DELETE", "/api/v1/orders/{order_id}"),
        ("PUT", "/api/v1/strategies/{strategy_id}/config"),
        ("GET", "/api/v1/metrics"),
        ("GET", "/metrics"),
    ]:
        assert want in ops
    assert doc["paths"]["/api/v1/config"]["post"]["security"] == [{"ApiKey": [], "Timestamp": [], "Signature": []}]


def test_unknown_routes_and_methods_are_json_errors(d: Daemon) -> None:
    assert error_of(d.get(f"{V1}/nothing/here"), 404).startswith("Not found: GET /api/v1/nothing/here")
    assert "allowed: GET" in error_of(d.request("DELETE", f"{V1}/status"), 405)
    assert error_of(d.request("GET", f"{V1}/orders/archive"), 405)  # archive is never an order id


# --- mutations (signed) ----------------------------------------------------------------------------
def test_trading_enabled_false_then_true(d: Daemon) -> None:
    r = d.signed("POST", f"{V1}/config", {"trading_enabled": False})
    assert r.status == 200 and r.json == {"trading_enabled": False}
    assert d.get(f"{V1}/status").json["trading_enabled"] is False  # the cache does not hide it
    assert d.signed("POST", f"{V1}/config", {"trading_enabled": True}).status == 200
    assert d.get(f"{V1}/status").json["trading_enabled"] is True


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/config", {"trading_enabled": "no"}, "trading_enabled: must be true or false"),
        ("/config", {}, "trading_enabled: required"),
        ("/config", {"trading_enabled": True, "paused": 1}, "paused: unknown field (accepted: trading_enabled)"),
        ("/orders/archive", {"older_than_hours": -1}, "older_than_hours: must be a number >= 0"),
        ("/risk/limits", {"position_limit_usd": "lots"}, "position_limit_usd: must be a number >= 0"),
        ("/risk/limits", {}, "body: must name at least one setting (see /openapi.json)"),
        ("/config", b"{not json", "body: must be a JSON object"),
        ("/config", b"[1, 2]", "body: must be a JSON object"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field_and_changes_nothing(d: Daemon, path: str, body, message: str) -> None:
    before = d.get(f"{V1}/risk/summary").json
    r = d.signed("POST", V1 + path, body)
    assert error_of(r, 400).startswith(message)
    assert d.get(f"{V1}/risk/summary").json == before


def test_a_form_encoded_body_is_read_as_json(d: Daemon) -> None:
    # what curl -d sends: Content-Type application/x-www-form-urlencoded, the JSON as is
    body = b'{"position_limit_usd": 150000.00}'
    headers = {**d.sign("POST", f"{V1}/risk/limits", body), "Content-Type": "application/x-www-form-urlencoded"}
    r = d.request("POST", f"{V1}/risk/limits", body, headers)
    assert r.status == 200, r.text
    assert r.json["limits"]["max_global_position_usd"] == 150000.0
    assert "150000" in json.dumps(d.get(f"{V1}/risk/summary").json)


def test_strategy_config_log_level_and_risk_limits(d: Daemon) -> None:
    r = d.signed("PUT", f"{V1}/strategies/{STRATEGY}/config", {"log_level": "DEBUG"})
    assert r.status == 200, r.text
    assert d.get(f"{V1}/strategies/{STRATEGY}").json["config"]["log_level"] == "DEBUG"
    limits = {"risk_limits": {"max_position_usd": 25000, "max_order_size_usd": 5000}}
    assert d.signed("PUT", f"{V1}/strategies/{STRATEGY}/config", limits).status == 200
    got = d.get(f"{V1}/strategies/{STRATEGY}").json["config"]["risk_limits"]
    assert got["max_position_usd"] == 25000 and got["max_order_size_usd"] == 5000
    bad = d.signed("PUT", f"{V1}/strategies/{STRATEGY}/config", {"log_level": "LOUD"})
    assert error_of(bad, 400).startswith("log_level: must be one of: DEBUG, INFO, WARNING, ERROR, CRITICAL")
    assert d.signed("PUT", f"{V1}/strategies/{STRATEGY}/config", {"log_level": "INFO"}).status == 200


def test_stop_cancels_the_strategys_orders_and_start_resumes(d: Daemon) -> None:
    wait_until(lambda: _orders(d, "?status=open"), 120, "an open order", d)
    r = d.signed("POST", f"{V1}/strategies/{STRATEGY}/stop")
    assert r.status == 200 and r.json["status"] == "stopped", r.text
    rows = d.get(f"{V1}/strategies").json["strategies"]
    assert rows[0]["status"] == "stopped"
    wait_until(lambda: not _orders(d, f"?status=open&strategy_id={STRATEGY}"), 60, "its orders cancelled", d)
    r = d.signed("POST", f"{V1}/strategies/{STRATEGY}/start")
    assert r.status == 200 and r.json["status"] == "running", r.text
    wait_until(lambda: _orders(d, "?status=open"), 120, "quoting again", d)


def test_cancel_and_reconcile_one_order(d: Daemon) -> None:
    def cancelled_one():
        for o in _orders(d, "?status=open"):
            r = d.signed("DELETE", f"{V1}/orders/{o['order_id']}")
            if r.status == 200:
                return r.json
            assert r.status == 409, r.text  # the strategy replaced it first; try another
        return None

    doc = wait_until(cancelled_one, 120, "an open order to cancel", d)
    oid = doc["order_id"]
    wait_until(lambda: d.get(f"{V1}/orders/{oid}").json["status"] == "cancelled", 30, "the cancel acknowledged", d)
    r = d.signed("POST", f"{V1}/orders/{oid}/reconcile")
    assert r.status in (200, 409), r.text
    if r.status == 200:
        assert r.json["order_id"] == oid and r.json["status"] == "cancelled"
    assert error_of(d.signed("DELETE", f"{V1}/orders/no-such-order"), 404) == "Order not found: no-such-order"


def test_archive_reconnect_snapshot_reload_and_restart(d: Daemon) -> None:
    r = d.signed("POST", f"{V1}/orders/archive", {"older_than_hours": 24})
    assert r.status == 200 and r.json["archived"] >= 0, r.text
    r = d.signed("POST", f"{V1}/marketdata/snapshot/binance/BTC-USDT")
    assert r.status == 200 and r.json["resync"] == "requested", r.text
    assert error_of(d.signed("POST", f"{V1}/marketdata/snapshot/binance/BTC-XXX"), 404).startswith("Symbol not found")
    wait_until(lambda: _book_valid(d), 60, "the book valid again after the snapshot", d)
    r = d.signed("POST", f"{V1}/exchanges/binance/reconnect")
    assert r.status == 200 and r.json["reconnecting"] is True, r.text
    assert error_of(d.signed("POST", f"{V1}/exchanges/nasdaq/reconnect"), 404) == "Exchange not found: nasdaq"
    wait_until(lambda: d.get(f"{V1}/status").json["exchanges"]["binance"]["reconnects"] >= 1, 60, "a reconnect", d)
    wait_until(lambda: _book_valid(d), 60, "the book valid again after the reconnect", d)
    for method in ("GET", "POST"):
        r = d.signed(method, f"{V1}/config/reload")
        assert r.status == 200 and r.json["reloaded"] is True, r.text
    r = d.signed("POST", f"{V1}/components/position_manager/restart")
    assert r.status == 200 and r.json["restarted"] is True, r.text
    assert error_of(d.signed("POST", f"{V1}/components/flux_capacitor/restart"), 404) == (
        "Component not found: flux_capacitor"
    )


def test_the_status_page_and_its_script_are_served_without_external_assets(d: Daemon) -> None:
    page = d.get("/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text
    assert d.get("/status.js").status == 200


def test_the_api_process_logs_no_secret(d: Daemon) -> None:
    d.signed("POST", f"{V1}/config", {"trading_enabled": True})
    logs = Path(d.stderr_path).read_text(errors="replace")
    assert d.secret not in logs
