"""A realistic metrics snapshot (op ``metrics`` of docs/daemon-contract.md): every name of the
contract, a paper session on Binance BTC-USDT a few minutes in, plus what the API process adds
(the trading process's ``/proc`` figures and its own request counter)."""

from __future__ import annotations

import random
from typing import Any

from engine.daemon.telemetry import BUCKETS

STAGES = ("market_data", "risk_check", "order_submit", "tick_to_order", "venue_ack")
# (median, spread) of a lognormal in seconds, near what bench.hot_path measures per stage
_STAGE_SHAPE = {
    "market_data": (18e-6, 0.4),
    "risk_check": (3e-6, 0.3),
    "order_submit": (25e-6, 0.5),
    "tick_to_order": (60e-6, 0.6),
    "venue_ack": (4e-3, 0.3),
}


def latency_sample(stage: str, n: int = 5000, seed: int = 7) -> tuple[dict[str, Any], list[float]]:
    """A ``hft_latency_seconds`` sample of ``n`` draws, and the draws (seconds)."""
    rng = random.Random(f"{seed}-{stage}")
    median, sigma = _STAGE_SHAPE[stage]
    draws = sorted(median * rng.lognormvariate(0.0, sigma) for _ in range(n))
    buckets: list[list[Any]] = [[b, sum(1 for d in draws if d <= b)] for b in BUCKETS]
    buckets.append(["+Inf", n])

    def q(p: float) -> float:
        return round(draws[min(n - 1, int(p * n))] * 1e6, 1)

    sample = {
        "name": "hft_latency_seconds", "type": "histogram", "help": "Latency of a stage of the order path.",
        "labels": {"stage": stage}, "buckets": buckets, "sum": sum(draws), "count": n,
        "quantiles_us": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999)},
    }  # fmt: skip
    return sample, draws


def _g(name: str, value: float, help_: str = "", **labels: str) -> dict[str, Any]:
    return {"name": name, "type": "gauge", "help": help_ or name, "labels": labels, "value": value}


def _c(name: str, value: float, help_: str = "", **labels: str) -> dict[str, Any]:
    return {"name": name, "type": "counter", "help": help_ or name, "labels": labels, "value": value}


def snapshot(pid: int = 4242) -> dict[str, Any]:
    samples: list[dict[str, Any]] = [latency_sample(s)[0] for s in STAGES]
    samples += [
        _g("hft_market_data_queue_depth", 0, "Market-data messages read and not yet applied.", exchange="binance"),
        _g("hft_orderbook_memory_mb", 1.7, "Memory held by order books, MB."),
        _g("hft_order_count", 312, "Orders held in memory."),
        _c("hft_orders_total", 1520, "Orders by outcome.", status="submitted"),
        _c("hft_orders_total", 61, status="filled"),
        _c("hft_orders_total", 1440, status="cancelled"),
        _c("hft_orders_total", 4, status="rejected"),
        _c("hft_fills_total", 61, "Fills.", strategy_id="market_maker_paper"),
        _g("hft_position_quantity", 0.003, "Position.", strategy_id="market_maker_paper", symbol="BTC-USDT"),
        _g("hft_pnl_usd", 1.25, "P&L, USD.", strategy_id="market_maker_paper", kind="realized"),
        _g("hft_pnl_usd", -0.4, strategy_id="market_maker_paper", kind="unrealized"),
        _g("hft_pnl_usd", 0.85, strategy_id="market_maker_paper", kind="net"),
        _c("hft_risk_violations_total", 2, "Orders refused by a risk check.", check="max_position_usd"),
        _g("hft_exchange_connected", 1, "1 when the exchange connection is up.", exchange="binance"),
        _c("hft_sequence_gaps_total", 1, "Sequence gaps in market data.", exchange="binance"),
        _c("hft_reconnects_total", 0, "Reconnects.", exchange="binance"),
        # an incident kind naming a latency must not reach ``grep latency``'s jq as a latency line
        _c("hft_incidents_total", 1, "Incidents.", kind="sequence_gap"),
        _c("hft_incidents_total", 1, kind="high_latency"),
        _g("hft_rate_limit_weight_used", 42, "Request weight used in the venue's window.", exchange="binance"),
        _g("hft_event_loop_lag_seconds", 0.00021, "How late the trading loop wakes."),
        _g("hft_trading_enabled", 1, "1 when new orders are allowed."),
        _g("hft_book_valid", 1, "1 when the book is in sync.", exchange="binance", symbol="BTC-USDT"),
        # memory management (engine.daemon.memory) and the API supervisor (engine.daemon.service)
        _g("hft_memory_usage_ratio", 0.12, "Resident memory / limit."),
        _g("hft_memory_pressure", 0, "1 while memory pressure handling is acting."),
        _c("hft_api_restarts_total", 0, "Times the API process was restarted."),
    ]
    return {"ts": 1765000000.0, "pid": pid, "samples": samples}


def api_samples() -> list[dict[str, Any]]:
    """What the API process adds of its own."""
    return [
        _c("hft_api_requests_total", 12, "API requests served.", route="/api/v1/status", code="200"),
        _c("hft_api_requests_total", 1, route="/api/v1/orders/{order_id}", code="404"),
    ]
