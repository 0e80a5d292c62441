"""Pre-trade risk: each check rejects with the guide's wording and passes just under its limit."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from engine.errors import ConfigError
from engine.logs import get_logger
from engine.model import Instrument, OrderType, Side
from engine.orders import Order
from engine.portfolio import Portfolio
from engine.risk import DAY_NS, PASSED, RiskEngine, RiskLimits

PERP = Instrument(
    "binance", "BTC-USDT", "BTCUSDT", price_scale=2, size_scale=3, tick=1, lot=1, taker_fee=0.0005, kind="perp"
)
SPOT = Instrument(
    "binance_spot",
    "BTC-USDT",
    "BTCUSDT",
    price_scale=2,
    size_scale=5,
    tick=1,
    lot=1,
    maker_fee=0.001,
    taker_fee=0.002,
    kind="spot",
)
INV = Instrument(
    "binance_coinm",
    "BTC-USD",
    "BTCUSD_PERP",
    price_scale=1,
    size_scale=0,
    tick=1,
    lot=1,
    inverse=True,
    contract_size=100.0,
    kind="perp",
)
T0 = 19_000 * DAY_NS + 3_600 * 1_000_000_000  # 01:00 UTC on day 19000
MID = 100.0
_ids = iter(range(1_000_000))


def order(
    side: Side = Side.BUY,
    price: float = MID,
    qty: float = 1.0,
    sid: str = "mm1",
    inst: Instrument = PERP,
    order_type: OrderType = OrderType.LIMIT,
    post_only: bool = False,
) -> Order:
    price_fixed = inst.price_to_fixed(round(price, inst.price_scale)) if order_type is OrderType.LIMIT else 0
    return Order(
        f"c{next(_ids)}",
        sid,
        inst.venue,
        inst.symbol,
        side,
        order_type,
        price_fixed,
        inst.size_to_fixed(round(qty, inst.size_scale)),
        post_only=post_only,
    )


def engine(balances: dict[str, dict[str, float]] | None = None, **limits: object) -> RiskEngine:
    limits.setdefault("check_balance", False)
    pf = Portfolio(balances)
    for inst in (PERP, SPOT, INV):
        pf.register(inst)
    return RiskEngine(RiskLimits(**limits), pf)  # type: ignore[arg-type]


def fill(eng: RiskEngine, side: Side, price: float, qty: float, sid: str = "mm1", fee: float = 0.0) -> None:
    eng.portfolio.on_fill(sid, PERP, side, PERP.price_to_fixed(price), PERP.size_to_fixed(qty), fee)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@pytest.fixture
def risk_log() -> Iterator[_Capture]:
    # Our own handler: setup_logging elsewhere may stop propagation to pytest's caplog.
    logger = get_logger("risk")
    handler = _Capture()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


INSTRUMENTS = {PERP.venue: PERP, SPOT.venue: SPOT, INV.venue: INV}


def assert_rejected(eng: RiskEngine, o: Order, check: str, reason: str, mid: float = MID, now: int = T0) -> None:
    d = eng.check(o, INSTRUMENTS[o.venue], mid, now)
    assert not d.passed
    assert d.check == check
    assert d.reason == "Risk check failed: " + reason


def check(eng: RiskEngine, o: Order, mid: float = MID, now: int = T0) -> bool:
    return eng.check(o, INSTRUMENTS[o.venue], mid, now).passed


# -- one test per check ----------------------------------------------------------------------


def test_trading_enabled_switch() -> None:
    eng = engine()
    eng.trading_enabled = False
    assert_rejected(eng, order(), "trading_enabled", "Trading disabled")
    eng.trading_enabled = True
    assert check(eng, order())
    eng.set_limits({"trading_enabled": False}, strategy_id="mm1")
    assert_rejected(eng, order(), "trading_enabled", "Trading disabled")
    assert check(eng, order(sid="other"))


def test_strategy_halted_until_resumed() -> None:
    eng = engine()
    eng.halt("mm1", "operator request")
    assert eng.is_halted("mm1")
    assert_rejected(eng, order(), "strategy_halted", "Strategy halted")
    # An operator halt is not lifted by a new day.
    assert_rejected(eng, order(), "strategy_halted", "Strategy halted", now=T0 + 3 * DAY_NS)
    eng.resume("mm1")
    assert not eng.is_halted("mm1")
    assert check(eng, order())


def test_max_order_size() -> None:
    eng = engine(max_order_size_usd=1_000.0)
    assert_rejected(eng, order(price=100.0, qty=10.001), "max_order_size", "Order size too large")
    assert check(eng, order(price=100.0, qty=9.999))
    assert check(eng, order(price=100.0, qty=10.0))  # at the limit is allowed
    # Market orders are valued at mid.
    assert_rejected(eng, order(qty=10.001, order_type=OrderType.MARKET), "max_order_size", "Order size too large")
    assert check(eng, order(qty=9.999, order_type=OrderType.MARKET))


def test_max_order_size_inverse_counts_contracts() -> None:
    eng = engine(max_order_size_usd=1_000.0)
    assert_rejected(eng, order(inst=INV, price=50_000.0, qty=11), "max_order_size", "Order size too large")
    assert check(eng, order(inst=INV, price=50_000.0, qty=10))


def test_price_band() -> None:
    eng = engine(price_band_pct=1.0)
    assert_rejected(eng, order(price=101.01), "price_band", "Price outside band")
    assert_rejected(eng, order(side=Side.SELL, price=98.99), "price_band", "Price outside band")
    assert check(eng, order(price=100.99))
    assert check(eng, order(side=Side.SELL, price=99.01))
    # No mid: a limit order cannot be checked against the band.
    assert_rejected(eng, order(price=100.0), "price_band", "Price outside band", mid=float("nan"))


def test_market_order_without_mid_is_rejected_even_without_band() -> None:
    eng = engine()
    assert_rejected(eng, order(order_type=OrderType.MARKET), "price_band", "Price outside band", mid=float("nan"))
    assert check(eng, order(order_type=OrderType.MARKET), mid=MID)


def test_position_limit() -> None:
    eng = engine(max_position_usd=1_000.0)
    fill(eng, Side.BUY, 100.0, 6.0)
    eng.portfolio.mark(PERP.venue, PERP.symbol, 100.0)
    assert_rejected(eng, order(qty=4.01), "position_limit", "Position limit exceeded")
    assert check(eng, order(qty=3.99))
    # Selling through zero to a short beyond the limit fails; to a short under it passes.
    assert_rejected(eng, order(side=Side.SELL, qty=16.01), "position_limit", "Position limit exceeded")
    assert check(eng, order(side=Side.SELL, qty=15.99))


def test_reducing_orders_pass_position_limits_even_when_over() -> None:
    eng = engine(max_position_usd=1_000.0, max_global_position_usd=1_000.0)
    fill(eng, Side.BUY, 100.0, 20.0)  # 2000 USD: already over both limits
    eng.portfolio.mark(PERP.venue, PERP.symbol, 100.0)
    assert check(eng, order(side=Side.SELL, qty=5.0))
    assert check(eng, order(side=Side.SELL, qty=20.0))  # to flat
    assert_rejected(eng, order(side=Side.BUY, qty=0.001), "position_limit", "Position limit exceeded")


def test_position_limit_counts_the_strategy_across_instruments() -> None:
    eng = engine(max_position_usd=1_000.0)
    eng.portfolio.on_fill("mm1", INV, Side.BUY, INV.price_to_fixed(50_000.0), 6, 0.0)  # 600 USD
    assert_rejected(eng, order(qty=4.01), "position_limit", "Position limit exceeded")
    assert check(eng, order(qty=3.99))


def test_global_position_limit() -> None:
    eng = engine(max_position_usd=10_000.0, max_global_position_usd=1_500.0)
    fill(eng, Side.BUY, 100.0, 10.0, sid="taker")
    eng.portfolio.mark(PERP.venue, PERP.symbol, 100.0)
    assert_rejected(eng, order(qty=5.01), "global_position_limit", "Global position limit exceeded")
    assert check(eng, order(qty=4.99))
    # Opposite strategies do not net: the global limit is gross.
    assert_rejected(eng, order(side=Side.SELL, qty=5.01), "global_position_limit", "Global position limit exceeded")


def test_daily_loss_halts_the_strategy() -> None:
    eng = engine(daily_loss_limit_usd=100.0)
    halts: list[str] = []
    eng.on_halt = lambda sid, reason, now: halts.append(sid)
    fill(eng, Side.BUY, 100.0, 10.0, fee=1.0)
    eng.portfolio.mark(PERP.venue, PERP.symbol, 90.2)  # -98 unrealized, -1 fee: just under the limit
    assert eng.on_fill("mm1", T0) is None
    assert check(eng, order())
    eng.portfolio.mark(PERP.venue, PERP.symbol, 90.0)  # -101
    d = eng.on_fill("mm1", T0 + 1)
    assert d is not None and not d.passed
    assert d.check == "daily_loss"
    assert d.reason == "Risk check failed: Daily loss limit reached"
    assert d.value == pytest.approx(-101.0) and d.limit == -100.0
    assert eng.is_halted("mm1")
    assert eng.halt_reason("mm1") == "Daily loss limit reached"
    assert halts == ["mm1"]
    assert_rejected(eng, order(), "strategy_halted", "Strategy halted", now=T0 + 2)
    assert eng.on_fill("mm1", T0 + 3) is None  # already halted: reported once
    assert [v["check"] for v in eng.violations()] == ["daily_loss", "strategy_halted"]


def test_daily_loss_breach_is_one_risk_check_failed_line(risk_log: _Capture) -> None:
    eng = engine(daily_loss_limit_usd=100.0)
    fill(eng, Side.BUY, 100.0, 10.0)
    eng.portfolio.mark(PERP.venue, PERP.symbol, 89.0)
    assert eng.on_fill("mm1", T0) is not None
    failed = [m for _, m in risk_log.lines if "risk check failed" in m.lower()]
    assert failed == [
        "Risk check failed: Daily loss limit reached strategy_id=mm1 value=-110 limit=-100 (risk check failed)"
    ]
    assert "Strategy halted strategy_id=mm1 reason=Daily loss limit reached" in [m for _, m in risk_log.lines]


def test_daily_loss_breach_seen_by_check_halts_too() -> None:
    eng = engine(daily_loss_limit_usd=100.0)
    halts: list[tuple[str, str, int]] = []
    eng.on_halt = lambda sid, reason, now: halts.append((sid, reason, now))
    fill(eng, Side.BUY, 100.0, 10.0)
    eng.portfolio.mark(PERP.venue, PERP.symbol, 89.0)
    assert_rejected(eng, order(side=Side.SELL), "daily_loss", "Daily loss limit reached")
    assert_rejected(eng, order(side=Side.SELL), "strategy_halted", "Strategy halted")
    assert halts == [("mm1", "Daily loss limit reached", T0)]
    eng.halt("tk", "operator request")  # operator halts are the caller's own doing: no callback
    assert len(halts) == 1


def test_new_utc_day_resets_daily_loss() -> None:
    eng = engine(daily_loss_limit_usd=100.0)
    fill(eng, Side.BUY, 100.0, 10.0)
    eng.portfolio.mark(PERP.venue, PERP.symbol, 89.0)
    assert eng.on_fill("mm1", T0) is not None
    next_day = (T0 // DAY_NS + 1) * DAY_NS
    assert_rejected(eng, order(), "strategy_halted", "Strategy halted", now=next_day - 1)
    assert check(eng, order(), now=next_day)
    assert not eng.is_halted("mm1")
    assert eng.portfolio.daily_pnl("mm1", next_day // DAY_NS) == 0.0
    # The new day's loss is counted from the new baseline.
    eng.portfolio.mark(PERP.venue, PERP.symbol, 79.1)  # -99 today
    assert eng.on_fill("mm1", next_day + 5) is None
    eng.portfolio.mark(PERP.venue, PERP.symbol, 78.9)
    assert eng.on_fill("mm1", next_day + 6) is not None


def test_order_rate_window_slides() -> None:
    eng = engine(max_orders_per_second=3)
    ms = 1_000_000
    assert check(eng, order(), now=T0)
    assert check(eng, order(), now=T0 + 100 * ms)
    assert check(eng, order(), now=T0 + 200 * ms)
    assert_rejected(eng, order(), "order_rate", "Order rate limit exceeded", now=T0 + 999 * ms)
    # Rejected orders do not count: once the first order leaves the window one more fits.
    assert check(eng, order(), now=T0 + 1_000 * ms + 1)
    assert_rejected(eng, order(), "order_rate", "Order rate limit exceeded", now=T0 + 1_050 * ms)
    assert check(eng, order(), now=T0 + 1_100 * ms + 1)
    # Another strategy has its own window.
    assert check(eng, order(sid="other"), now=T0 + 1_100 * ms + 2)


def test_balance_spot_buy_needs_quote_plus_fee() -> None:
    # 1 BTC at 100 limit: worst-case fee is taker 0.2 % => needs 100.2 USDT.
    eng = engine({"binance_spot": {"USDT": 100.2}}, check_balance=True)
    assert check(eng, order(inst=SPOT, qty=1.0))
    eng = engine({"binance_spot": {"USDT": 100.19}}, check_balance=True)
    assert_rejected(eng, order(inst=SPOT, qty=1.0), "balance", "Insufficient balance")
    # Post-only orders pay the maker fee: 100.1 is enough.
    eng = engine({"binance_spot": {"USDT": 100.1}}, check_balance=True)
    assert check(eng, order(inst=SPOT, qty=1.0, post_only=True))


def test_balance_spot_sell_needs_base_and_holds_count() -> None:
    eng = engine({"binance_spot": {"BTC": 0.5}}, check_balance=True)
    assert_rejected(eng, order(inst=SPOT, side=Side.SELL, qty=0.50001), "balance", "Insufficient balance")
    assert check(eng, order(inst=SPOT, side=Side.SELL, qty=0.5))
    eng.portfolio.reserve("binance_spot", "BTC", 0.2)  # an open sell holds part of it
    assert_rejected(eng, order(inst=SPOT, side=Side.SELL, qty=0.31), "balance", "Insufficient balance")
    assert check(eng, order(inst=SPOT, side=Side.SELL, qty=0.3))


def test_balance_derivatives_margin_and_leverage() -> None:
    # 10 BTC at 100 = 1000 USD notional + 0.05 % taker fee => 1000.5 USDT at leverage 1.
    eng = engine({"binance": {"USDT": 1_000.4}}, check_balance=True)
    assert_rejected(eng, order(qty=10.0, order_type=OrderType.MARKET), "balance", "Insufficient balance")
    assert check(eng, order(qty=9.99, order_type=OrderType.MARKET))
    eng = engine({"binance": {"USDT": 300.0}}, check_balance=True, leverage=4.0)
    assert check(eng, order(qty=10.0))  # 250 + fee
    assert_rejected(eng, order(qty=12.0), "balance", "Insufficient balance")


def test_balance_reducing_derivative_order_needs_no_margin() -> None:
    eng = engine({"binance": {"USDT": 0.0}}, check_balance=True)
    fill(eng, Side.BUY, 100.0, 5.0)
    eng.portfolio.mark(PERP.venue, PERP.symbol, 100.0)
    assert check(eng, order(side=Side.SELL, qty=5.0))
    assert_rejected(eng, order(side=Side.SELL, qty=5.001), "balance", "Insufficient balance")


def test_balance_check_can_be_disabled() -> None:
    eng = engine({}, check_balance=False)
    assert check(eng, order(inst=SPOT, qty=1.0))


# -- logging ---------------------------------------------------------------------------------


def test_failures_are_logged_in_guide_wording_and_passes_are_not(risk_log: _Capture) -> None:
    eng = engine(max_position_usd=1_000.0)
    o = order(qty=10.5)
    assert_rejected(eng, o, "position_limit", "Position limit exceeded")
    assert check(eng, order(qty=1.0))
    warnings = [m for lvl, m in risk_log.lines if lvl == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("Risk check failed: Position limit exceeded strategy_id=mm1 venue=binance ")
    assert f"symbol=BTC-USDT client_order_id={o.client_order_id} value=1050 limit=1000" in warnings[0]
    assert "risk check failed" in warnings[0].lower()
    stats = eng.log_stats()
    assert stats["checks"] == 2 and stats["passed"] == 1 and stats["failed"] == 1
    assert any(m.startswith("risk check latency checks=2 passed=1 failed=1") for _, m in risk_log.lines)


# -- limits ----------------------------------------------------------------------------------


def test_from_dict_validates_each_field() -> None:
    lim = RiskLimits.from_dict({"max_position_usd": 25_000, "max_order_size_usd": 5_000}, "config/production.json")
    assert lim.max_position_usd == 25_000.0 and lim.max_order_size_usd == 5_000.0 and lim.check_balance
    with pytest.raises(ConfigError) as e:
        RiskLimits.from_dict({"max_position_usd": -1}, "config/production.json")
    assert str(e.value) == (
        "Failed to load configuration from config/production.json: risk.max_position_usd: must be a number >= 0"
    )
    cases = [
        ({"max_position_usd": "lots"}, "risk.max_position_usd: must be a number >= 0"),
        ({"daily_loss_limit_usd": True}, "risk.daily_loss_limit_usd: must be a number >= 0"),
        ({"price_band_pct": float("inf")}, "risk.price_band_pct: must be a number >= 0"),
        ({"leverage": 0}, "risk.leverage: must be a number > 0"),
        ({"trading_enabled": "yes"}, "risk.trading_enabled: must be true or false"),
        ({"max_positon_usd": 1}, "risk.max_positon_usd: unknown field"),
        ([1, 2], "risk: must be an object"),
    ]
    for data, reason in cases:
        with pytest.raises(ConfigError) as e:
            RiskLimits.from_dict(data, "cfg.json")
        assert e.value.path == "cfg.json"
        assert e.value.reason.startswith(reason)
    # null disables a check; fields not given come from the base.
    base = RiskLimits(max_order_size_usd=10.0, daily_loss_limit_usd=5.0)
    lim = RiskLimits.from_dict({"daily_loss_limit_usd": None}, "cfg.json", base=base)
    assert lim.daily_loss_limit_usd == 0.0 and lim.max_order_size_usd == 10.0


def test_set_limits_validates_and_changes_nothing_on_error() -> None:
    eng = engine(max_position_usd=1_000.0)
    with pytest.raises(ConfigError, match=r"risk\.max_order_size_usd: must be a number >= 0"):
        eng.set_limits({"max_position_usd": 5.0, "max_order_size_usd": -3})
    assert eng.limits.max_position_usd == 1_000.0
    # The guide's name for the position limit is accepted.
    lim = eng.set_limits({"position_limit_usd": 150_000.0})
    assert lim.max_position_usd == 150_000.0
    assert eng.limits.max_position_usd == 150_000.0


def test_strategy_overrides_follow_global_for_other_fields() -> None:
    eng = engine(max_position_usd=1_000.0, max_order_size_usd=500.0)
    lim = eng.set_limits({"max_position_usd": 100.0}, strategy_id="mm1")
    assert lim.max_position_usd == 100.0 and lim.max_order_size_usd == 500.0
    assert_rejected(eng, order(qty=1.01), "position_limit", "Position limit exceeded")
    assert check(eng, order(qty=1.01, sid="other"))
    eng.set_limits({"max_order_size_usd": 50.0})
    assert eng.limits_for("mm1").max_order_size_usd == 50.0
    assert eng.limits_for("mm1").max_position_usd == 100.0
    assert_rejected(eng, order(qty=0.51), "max_order_size", "Order size too large")


def test_strategy_limits_given_at_construction() -> None:
    pf = Portfolio()
    pf.register(PERP)
    eng = RiskEngine(
        RiskLimits(check_balance=False),
        pf,
        strategy_limits={
            "mm1": {"max_order_size_usd": 100},  # partial: other fields follow the global limits
            "tk": RiskLimits(max_order_size_usd=200.0, check_balance=False),  # full: every field fixed
        },
    )
    assert not eng.check(order(qty=1.01), PERP, MID, T0).passed
    assert eng.check(order(qty=1.01, sid="tk"), PERP, MID, T0).passed
    assert eng.check(order(qty=1.01, sid="free"), PERP, MID, T0) is PASSED
    eng.set_limits({"max_position_usd": 50.0})
    assert eng.limits_for("mm1").max_position_usd == 50.0
    assert eng.limits_for("tk").max_position_usd == 0.0
    with pytest.raises(ConfigError, match=r"strategy_limits\.bad: risk\.leverage: must be a number > 0"):
        RiskEngine(RiskLimits(), pf, strategy_limits={"bad": {"leverage": -2}})


# -- summary ---------------------------------------------------------------------------------


def test_summary_shape_is_json_and_reports_usage() -> None:
    eng = engine(max_position_usd=1_000.0, daily_loss_limit_usd=50.0, max_orders_per_second=10)
    fill(eng, Side.BUY, 100.0, 2.0, fee=0.5)
    eng.portfolio.mark(PERP.venue, PERP.symbol, 99.0)
    assert check(eng, order(qty=1.0), now=T0)
    assert not check(eng, order(qty=9.0), now=T0 + 1)
    eng.halt("tk", "operator request")
    s = eng.summary(now_ns=T0 + 2)
    json.dumps(s)
    assert s["trading_enabled"] is True
    assert s["limits"]["max_position_usd"] == 1_000.0
    assert s["usage"]["global_position_usd"] == pytest.approx(198.0)
    mm = s["strategies"]["mm1"]
    assert mm["position_usd"] == pytest.approx(198.0)
    assert mm["daily_pnl"] == pytest.approx(-2.0 - 0.5)
    assert mm["orders_last_second"] == 1
    assert mm["halted"] is False
    assert s["strategies"]["tk"]["halted"] is True
    assert s["strategies"]["tk"]["halt_reason"] == "operator request"
    assert s["checks"] == {
        "total": 2,
        "passed": 1,
        "failed": 1,
        "by_check": {**dict.fromkeys(s["checks"]["by_check"], 0), "position_limit": 1},
    }
    assert set(s["latency_us"]) == {"mean", "max"}
    # Reading the summary for a later day does not move the daily baseline.
    assert eng.summary(now_ns=T0 + DAY_NS)["strategies"]["mm1"]["daily_pnl"] == 0.0
    assert eng.summary(now_ns=T0 + 3)["strategies"]["mm1"]["daily_pnl"] == pytest.approx(-2.5)
    v = eng.violations()
    assert len(v) == 1 and v[0]["check"] == "position_limit"
    assert v[0]["value"] == pytest.approx(11 * 100.0)  # the position after the fill, valued at the order price
