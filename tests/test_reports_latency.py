"""Latency report on hand-built logs: percentiles, thresholds, latency source, plots."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from reports import plots
from reports.errors import EmptyRunError
from reports.latency import latency_report
from reports.logwriter import write_event_log

T0 = 1_714_521_600_000_000_000
US = 1_000


def pct_linear(values: list[float], p: float) -> float:
    """Percentile by linear interpolation between order statistics (the definition the report uses)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * p
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def build(run_dir: Path, manifest: dict | None = None) -> Path:
    # feed latencies 1..1000 µs; venue time = receipt - latency
    market = [
        {"ts": T0 + i * 10_000_000, "ts_event": T0 + i * 10_000_000 - i * US, "venue": "sim", "symbol": "X-USD",
         "bid": 99.0, "ask": 101.0, "mid": 100.0, "feed_latency_ns": i * US}
        for i in range(1, 1001)
    ]  # fmt: skip
    # four orders: tick->decision 100/200/300/400 µs, decision->send 600 µs each, send->ack 2/1/3/4 ms
    orders, fills = [], []
    for i, (t2d, s2a) in enumerate(((100, 2000), (200, 1000), (300, 3000), (400, 4000))):
        tick = T0 + (20 + i) * 1_000_000_000
        decided, sent = tick + t2d * US, tick + (t2d + 600) * US
        acked = sent + s2a * US
        common = {"strategy_id": "s", "venue": "sim", "symbol": "X-USD", "client_order_id": f"o{i}",
                  "ts_tick": tick, "ts_decided": decided, "ts_sent": sent}  # fmt: skip
        orders.append({**common, "ts": sent, "event": "submit"})
        orders.append({**common, "ts": acked, "event": "accepted", "ts_acked": acked})
        if i == 0:
            fills.append(
                {"ts": acked + 5_000_000, "strategy_id": "s", "venue": "sim", "symbol": "X-USD", "side": "buy",
                 "price": 100.0, "qty": 1.0, "ts_acked": acked, "client_order_id": "o0"}
            )  # fmt: skip
    # an order decided on a timer (no market data): ts_tick 0 leaves it out of the tick stages
    t = T0 + 30 * 10**9
    orders.append(
        {"ts": t, "event": "submit", "strategy_id": "s", "venue": "sim", "symbol": "X-USD", "client_order_id": "o9",
         "ts_decided": t - 1000, "ts_sent": t}
    )  # fmt: skip
    m = manifest if manifest is not None else {"run_id": "lat", "mode": "backtest", "latency_source": "simulated"}
    return write_event_log(run_dir, {"market": market, "orders": orders, "fills": fills}, m)


@pytest.fixture(scope="module")
def rep(tmp_path_factory: pytest.TempPathFactory):
    run = build(tmp_path_factory.mktemp("lat") / "run")
    return latency_report(run), run


def test_percentiles_by_hand(rep) -> None:
    r, _ = rep
    s = {st.stage: st for st in r.stages}
    feed = s["feed"]
    assert feed.count == 1000
    # 1..1000: position (n - 1) p = 999 p -> P50 500.5, P90 900.1, P99 990.01, P99.9 999.001
    assert (feed.p50_us, feed.p90_us, feed.p99_us, feed.p999_us) == pytest.approx((500.5, 900.1, 990.01, 999.001))
    assert feed.max_us == pytest.approx(1000) and feed.mean_us == pytest.approx(500.5)
    t2d = s["tick_to_decision"]
    assert t2d.count == 4  # the timer order has no tick
    assert t2d.p50_us == pytest.approx(250) and t2d.p99_us == pytest.approx(397)
    assert t2d.p999_us == pytest.approx(pct_linear([100, 200, 300, 400], 0.999))
    d2s = s["decision_to_send"]
    assert d2s.count == 5 and d2s.p50_us == pytest.approx(600) and d2s.min_us == pytest.approx(1)
    s2a = s["send_to_ack"]
    assert s2a.p50_us == pytest.approx(2500) and s2a.p99_us == pytest.approx(3970) and s2a.max_us == pytest.approx(4000)
    assert s["ack_to_fill"].count == 1 and s["ack_to_fill"].p50_us == pytest.approx(5000)
    e2e = s["end_to_end"]
    assert e2e.count == 4
    assert e2e.max_us == pytest.approx(400 + 600 + 4000)
    assert e2e.p50_us == pytest.approx(
        pct_linear([100 + 600 + 2000, 200 + 600 + 1000, 300 + 600 + 3000, 400 + 600 + 4000], 0.5)
    )


def test_thresholds_flag_the_slow_stages(rep) -> None:
    r, _ = rep
    s = {st.stage: st for st in r.stages}
    assert any("market data mean 500.5 µs > 100 µs" in f for f in s["feed"].flags)
    assert not s["tick_to_decision"].flags  # mean 250 µs, P99 397 µs
    assert s["decision_to_send"].flags == []  # mean (4 x 600 + 1) / 5 µs < 500
    assert any("P99 3,970.0 µs > 1 ms" in f for f in s["send_to_ack"].flags)
    assert any("order path mean" in f for f in s["send_to_ack"].flags)
    assert s["ack_to_fill"].flags == []  # resting time: no threshold


def test_outputs(rep) -> None:
    r, run = rep
    assert r.latency_source == "simulated"
    text = r.text()
    assert "simulated latencies" in text and "P99.9" in text
    data = json.loads((run / "latency_report.json").read_text())
    assert data["latency_source"] == "simulated"
    assert data["stages"]["feed"]["p999_us"] == pytest.approx(999.001)
    assert data["thresholds_us"] == {"market_data_mean": 100.0, "order_path_mean": 500.0, "critical_p99": 1000.0}
    html = (run / "latency_report.html").read_text()
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == 2
    sizes = set()
    for b64 in imgs:
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(io.BytesIO(png), format="png")
        assert img[..., :3].std() > 0.01
        sizes.add(img.shape[:2])
    assert (plots.HEIGHT_PX + 80, plots.WIDTH_PX) in sizes  # the CDF
    assert (plots.GRID_ROW_PX * 3, plots.WIDTH_PX) in sizes  # six stage histograms, two per row
    assert "## Latency by stage" in (run / "latency_report.md").read_text()


def test_measured_and_inferred_sources(tmp_path: Path) -> None:
    live = latency_report(build(tmp_path / "live", {"mode": "live", "latency_source": "measured"}))
    assert live.latency_source == "measured" and "measured latencies" in live.text()
    paper = latency_report(build(tmp_path / "paper", {"mode": "paper"}))
    assert paper.latency_source == "measured" and "inferred from mode=paper" in paper.source_note


def test_market_data_only_reports_feed(tmp_path: Path) -> None:
    market = [{"ts": T0 + i, "ts_event": T0 + i - 2000, "venue": "v", "symbol": "X", "mid": 1.0,
               "feed_latency_ns": 2000} for i in range(10)]  # fmt: skip
    r = latency_report(write_event_log(tmp_path / "md", {"market": market}, {"mode": "backtest"}))
    s = {st.stage: st for st in r.stages}
    assert s["feed"].count == 10 and s["feed"].p50_us == pytest.approx(2)
    assert s["send_to_ack"].count == 0 and s["send_to_ack"].p50_us is None


def test_empty_log_has_no_samples(tmp_path: Path) -> None:
    run = write_event_log(tmp_path / "empty", {}, {"mode": "backtest"})
    with pytest.raises(EmptyRunError, match="no latency samples"):
        latency_report(run)
    assert (run / "latency_report.html").exists()
