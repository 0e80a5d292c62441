"""Post-mortem on hand-built event logs whose answers are worked out by hand below."""

from __future__ import annotations

import base64
import collections
import io
import json
import math
import random
import re
from pathlib import Path

import matplotlib.image as mpimg
import pyarrow.parquet as pq
import pytest

from reports import plots
from reports.logwriter import table_from_rows, write_event_log
from reports.postmortem import post_mortem

T0 = 1_714_521_600_000_000_000  # 2024-05-01T00:00:00Z
S = 1_000_000_000


def ts(seconds: float) -> int:
    return T0 + round(seconds * S)


# --- the hand-built run ---------------------------------------------------------------------------
# Market mids (bid = mid - 1, ask = mid + 1) at these seconds.
MIDS = [
    (0, 100), (1.0, 100), (1.05, 100.5), (2.0, 101), (4.5, 102), (11, 101), (20, 104.5), (20.5, 104),
    (21, 104), (30, 107), (35, 105), (40, 102), (41, 101), (50, 101), (55, 100), (120, 102),
]  # fmt: skip
# (second, side, qty, price, fee, liquidity, mid at decision, mid at fill, realized by the fill)
FILLS = [
    (1, "buy", 1, 99, 0.1, "maker", 100, 100, 0),
    (5, "sell", 1, 103, 0.1, "maker", 102, 102, 4),
    (20, "sell", 2, 104, 0.4, "taker", 104.5, 104.5, 0),
    (30, "buy", 1, 106, 0.1, "maker", 107, 107, -2),
    (40, "buy", 1, 101, 0.1, "maker", 102, 102, 3),
    (50, "buy", 1, 100, 0.1, "maker", 101, 101, 0),
]
# Average-cost ledger after each fill and at marks: (second, position, realized, unrealized, fees, reason)
LEDGER = [
    (1, 1, 0, 1, 0.1, "fill"),
    (5, 0, 4, 0, 0.2, "fill"),
    (20, -2, 4, -1, 0.6, "fill"),
    (25, -2, 4, 0, 0.6, "mark"),
    (30, -1, 2, -3, 0.7, "fill"),
    (35, -1, 2, -1, 0.7, "mark"),
    (40, 0, 5, 0, 0.8, "fill"),
    (50, 1, 5, 1, 0.9, "fill"),
    (120, 1, 5, 2, 0.9, "final"),
]
# Mid at fill time + 100 ms, 1 s, 10 s, 60 s (read off MIDS by hand: the last mid at or before).
MIDS_AFTER = [
    (100.5, 101, 101, 100),  # fill at 1 s: 1.1 s -> 100.5 (1.05 s), 2 s -> 101, 11 s -> 101, 61 s -> 100
    (102, 102, 101, 100),  # fill at 5 s
    (104.5, 104, 107, 100),  # fill at 20 s: 20.1 s -> 104.5, 21 s -> 104, 30 s -> 107, 80 s -> 100
    (107, 107, 102, 100),  # fill at 30 s
    (102, 101, 101, 100),  # fill at 40 s
    (101, 101, 100, 100),  # fill at 50 s: 110 s -> 100 (55 s); the 120 s row is after it
]
STRATEGY = "mm"


def build_run(run_dir: Path, fee_scale: float = 1.0, ledger: list | None = None, extra: dict | None = None) -> Path:
    market = [
        {"ts": ts(t), "ts_event": ts(t) - 50_000, "venue": "sim", "symbol": "BTC-USDT", "bid": m - 1, "ask": m + 1,
         "mid": m, "feed_latency_ns": 50_000}
        for t, m in MIDS
    ]  # fmt: skip
    orders, fills = [], []
    pos = 0
    for i, (t, side, qty, price, fee, liq, mid_dec, mid_fill, realized) in enumerate(FILLS, start=1):
        coid = f"mm-{i}"
        base = {"strategy_id": STRATEGY, "venue": "sim", "symbol": "BTC-USDT", "client_order_id": coid, "side": side,
                "order_type": "LIMIT", "price": price, "qty": qty}  # fmt: skip
        orders.append({**base, "ts": ts(t - 0.5), "event": "submit", "status": "pending"})
        orders.append({**base, "ts": ts(t - 0.4), "event": "accepted", "status": "open"})
        orders.append({**base, "ts": ts(t), "event": "filled", "status": "filled", "filled_qty": qty})
        pos += qty if side == "buy" else -qty
        fills.append(
            {"ts": ts(t), "strategy_id": STRATEGY, "venue": "sim", "symbol": "BTC-USDT", "client_order_id": coid,
             "side": side, "price": price, "qty": qty, "notional": price * qty, "fee": fee * fee_scale,
             "liquidity": liq, "mid_at_decision": mid_dec, "mid_at_fill": mid_fill, "position_after": pos,
             "realized_pnl": realized}
        )  # fmt: skip
    for i, reason in ((7, "canceled"), (8, "canceled")):
        base = {"strategy_id": STRATEGY, "venue": "sim", "symbol": "BTC-USDT", "client_order_id": f"mm-{i}",
                "side": "buy", "price": 90.0, "qty": 1.0}  # fmt: skip
        orders += [
            {**base, "ts": ts(60 + i), "event": "submit"},
            {**base, "ts": ts(60.1 + i), "event": "accepted"},
            {**base, "ts": ts(61 + i), "event": "cancel_request"},
            {**base, "ts": ts(61.1 + i), "event": reason},
        ]
    orders += [
        {"ts": ts(70), "event": "submit", "strategy_id": STRATEGY, "venue": "sim", "symbol": "BTC-USDT",
         "client_order_id": "mm-9"},
        {"ts": ts(70.001), "event": "rejected", "strategy_id": STRATEGY, "venue": "sim", "symbol": "BTC-USDT",
         "client_order_id": "mm-9", "reason": "Post-only order would cross", "code": -2010},
    ]  # fmt: skip
    rows = ledger if ledger is not None else LEDGER
    positions = [
        {"ts": ts(t), "strategy_id": STRATEGY, "venue": "sim", "symbol": "BTC-USDT", "position": p, "realized_pnl": r,
         "unrealized_pnl": u, "fees": f * fee_scale, "reason": reason}
        for t, p, r, u, f, reason in rows
    ]  # fmt: skip
    tables = {"market": market, "orders": orders, "fills": fills, "positions": positions}
    for name, more in (extra or {}).items():
        tables[name] = tables.get(name, []) + more
    manifest = {"run_id": run_dir.name, "mode": "backtest", "latency_source": "simulated", "strategies": [STRATEGY],
                "data": {"from_ns": ts(0), "to_ns": ts(120)}}  # fmt: skip
    return write_event_log(run_dir, tables, manifest)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    run = build_run(tmp_path_factory.mktemp("pm") / "run1")
    return post_mortem(run), run


def test_round_trips_by_hand(report) -> None:
    pm, _ = report
    rt = pm.round_trips
    # FIFO: buy 1@99 / sell 1@103 (long, 4 s); sell 2@104 opens a short closed by buy 1@106 (10 s) and
    # buy 1@101 (20 s); buy 1@100 stays open. Fees pro rata: the 0.4 fee of the 2-lot sell splits 0.2 / 0.2.
    nets = [1 * (103 - 99) - (0.1 + 0.1), 1 * (104 - 106) - (0.2 + 0.1), 1 * (104 - 101) - (0.2 + 0.1)]
    assert rt.count == 3
    assert rt.wins == 2 and rt.losses == 1
    assert rt.win_rate == pytest.approx(2 / 3)
    assert rt.avg_win == pytest.approx((nets[0] + nets[2]) / 2)
    assert rt.avg_loss == pytest.approx(nets[1])
    assert rt.profit_factor == pytest.approx((nets[0] + nets[2]) / -nets[1])
    assert rt.net == pytest.approx(sum(nets))
    assert rt.hold_max_s == pytest.approx(20)
    assert rt.hold_p50_s == pytest.approx(10)
    assert rt.hold_mean_s == pytest.approx((4 + 10 + 20) / 3)
    assert rt.open_qty == [{"strategy_id": "mm", "venue": "sim", "symbol": "BTC-USDT", "open_qty": 1.0}]
    loss = pm.largest_losses
    assert len(loss) == 1
    assert loss[0]["direction"] == "short"
    assert loss[0]["open_ts"] == ts(20) and loss[0]["close_ts"] == ts(30)
    assert loss[0]["net"] == pytest.approx(nets[1])


def test_pnl_and_drawdown_by_hand(report) -> None:
    pm, _ = report
    p = pm.pnl
    assert (p.realized, p.unrealized, p.fees) == pytest.approx((5, 2, 0.9))
    assert p.net == pytest.approx(6.1)
    # net after each ledger row: 0.9, 3.8, 2.4, 3.4, -1.7, 0.3, 4.2, 5.1, 6.1 -> deepest fall 3.8 -> -1.7
    assert p.max_drawdown == pytest.approx(-5.5)
    assert p.max_drawdown_ts == ts(30)
    assert p.peak_ts == ts(5)
    curve = pm.series["curve"]
    assert curve["net"][-1] == pytest.approx(6.1)
    assert min(curve["drawdown"]) == pytest.approx(-5.5)
    assert pm.series["inventory"]["sim:BTC-USDT"]["position"][-1] == pytest.approx(1)


def test_execution_quality_by_hand(report) -> None:
    pm, _ = report
    ex = pm.execution
    assert ex.orders_submitted == 9 and ex.orders_filled == 6
    assert ex.fill_ratio == pytest.approx(6 / 9)
    assert ex.orders_canceled == 2 and ex.cancel_to_fill == pytest.approx(2 / 6)
    assert ex.maker_fills == 5 and ex.taker_fills == 1
    notional = [q * px for _, _, q, px, *_ in FILLS]
    assert ex.maker_share == pytest.approx((sum(notional) - 208) / sum(notional))
    # slippage: side * (price - mid at decision) * qty = -1, -1, +1, -1, -1, -1 over sum(mid * qty) = 721
    assert ex.slippage_quote == pytest.approx(-4)
    assert ex.slippage_bps == pytest.approx(-4 / 721 * 1e4)
    assert ex.slippage_by_liquidity["taker"] == pytest.approx(1 / 209 * 1e4)
    assert ex.rejections == [
        {
            "reason": "Post-only order would cross",
            "code": -2010,
            "count": 1,
            "first_ts": ts(70.001),
            "last_ts": ts(70.001),
        }
    ]
    gross = 7  # realized 5 + unrealized 2
    assert pm.pnl.fees / pm.pnl.gross == pytest.approx(0.9 / gross)


def test_markouts_by_hand(report) -> None:
    pm, _ = report
    sides = [1 if f[1] == "buy" else -1 for f in FILLS]
    qtys = [f[2] for f in FILLS]
    prices = [f[3] for f in FILLS]
    mids_at_fill = [f[7] for f in FILLS]
    notional = sum(q * p for q, p in zip(qtys, prices, strict=True))
    expected_quote = [1.5 + 1 - 1 + 1 + 1 + 1, 2 + 1 + 0 + 1 + 0 + 1, 2 + 2 - 6 - 4 + 0 + 0, 1 + 3 + 8 - 6 - 1 + 0]
    expected_move = [0.5 + 0 + 0 + 0 + 0 + 0, 1 + 0 + 1 + 0 - 1 + 0, 1 + 1 - 5 - 5 - 1 - 1, 0 + 2 + 9 - 7 - 2 - 1]
    for h, m in enumerate(pm.execution.markouts):
        quote = sum(s * (after[h] - p) * q for s, after, p, q in zip(sides, MIDS_AFTER, prices, qtys, strict=True))
        move = sum(
            s * (after[h] - m0) * q for s, after, m0, q in zip(sides, MIDS_AFTER, mids_at_fill, qtys, strict=True)
        )
        assert quote == pytest.approx(expected_quote[h])  # the table above agrees with the hand sums
        assert move == pytest.approx(expected_move[h])
        assert m.fills == 6
        assert m.quote == pytest.approx(expected_quote[h])
        assert m.bps == pytest.approx(expected_quote[h] / notional * 1e4)
        assert m.mid_move_bps == pytest.approx(expected_move[h] / notional * 1e4)
    assert [m.horizon for m in pm.execution.markouts] == ["+100ms", "+1s", "+10s", "+60s"]


def test_diagnosis_names_adverse_selection(report) -> None:
    pm, _ = report
    flagged = {f.cause for f in pm.flagged}
    assert "Adverse selection" in flagged  # markout at +10 s is -6 / 717 quote per notional
    assert "Fees too high" not in flagged  # 0.9 of 7 gross
    assert "Bug in strategy logic: position drift" not in flagged
    finding = next(f for f in pm.findings if f.cause == "Adverse selection")
    assert f"{-6 / 717 * 1e4:+.2f} bps" in finding.figure
    assert "< 0 bps" in finding.threshold


def _images(html: str) -> dict[str, bytes]:
    found = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', html)
    return {alt: base64.b64decode(data) for alt, data in found}


def test_html_markdown_json_and_real_pngs(report) -> None:
    pm, run = report
    html = (run / "post_mortem.html").read_text()
    for anchor in ("summary", "pnl", "round-trips", "execution", "breakdowns", "diagnosis"):
        assert f'id="{anchor}"' in html
    imgs = _images(html)
    expected = {"P&amp;L over time", "Drawdown", "Inventory over time", "P&amp;L histogram", "Holding time histogram",
                "Markouts", "By hour"}  # fmt: skip
    assert expected <= set(imgs)
    for png in imgs.values():
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(io.BytesIO(png), format="png")
        assert img.shape[:2] == (plots.HEIGHT_PX, plots.WIDTH_PX)
        assert img[..., :3].std() > 0.01  # something was drawn, not a blank canvas
    md = (run / "post_mortem.md").read_text()
    assert "## Diagnosis" in md and "FLAGGED: Adverse selection" in md
    for link in re.findall(r"\]\((post_mortem_files/[^)]+\.png)\)", md):
        assert (run / link).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((run / "post_mortem.json").read_text())
    assert data["round_trips"]["count"] == 3
    assert data["pnl"]["net"] == pytest.approx(6.1)
    assert pm.written == [run / "post_mortem.html", run / "post_mortem.md", run / "post_mortem.json"]
    assert "win rate 66.7%" in pm.headline()


def test_breakdowns(report) -> None:
    pm, _ = report
    assert set(pm.breakdowns) == {"symbol", "venue", "hour"}
    (sym,) = pm.breakdowns["symbol"]
    assert sym["k"] == "BTC-USDT" and sym["fills"] == 6 and sym["round_trips"] == 3
    assert sym["net"] == pytest.approx(6.1)
    (hour,) = pm.breakdowns["hour"]  # everything happened in hour 0 UTC
    assert hour["k"] == 0 and hour["fees"] == pytest.approx(0.9)


def test_strategy_filter_and_breakdown_by_strategy(tmp_path: Path) -> None:
    other = {
        "fills": [{"ts": ts(3), "strategy_id": "other", "venue": "sim", "symbol": "BTC-USDT", "side": "buy",
                   "price": 100.0, "qty": 5.0, "notional": 500.0, "fee": 1.0, "liquidity": "taker",
                   "position_after": 5.0, "client_order_id": "o-1"}],
        "orders": [{"ts": ts(2.9), "strategy_id": "other", "venue": "sim", "symbol": "BTC-USDT", "event": "submit",
                    "client_order_id": "o-1"}],
        "positions": [{"ts": ts(3), "strategy_id": "other", "venue": "sim", "symbol": "BTC-USDT", "position": 5.0,
                       "fees": 1.0}],
    }  # fmt: skip
    run = build_run(tmp_path / "two", extra=other)
    only = post_mortem(run, strategy="mm", out_dir=tmp_path / "mm")
    assert only.execution.fills == 6 and only.execution.orders_submitted == 9
    assert only.pnl.fees == pytest.approx(0.9)
    both = post_mortem(run, out_dir=tmp_path / "all")
    assert both.execution.fills == 7
    assert both.pnl.fees == pytest.approx(1.9)
    assert {r["k"]: r["fills"] for r in both.breakdowns["strategy"]} == {"mm": 6, "other": 1}
    assert (tmp_path / "mm" / "post_mortem.html").exists() and not (run / "post_mortem.html").exists()


def test_fees_too_high_is_flagged(tmp_path: Path) -> None:
    pm = post_mortem(build_run(tmp_path / "fees", fee_scale=6.0))  # fees 5.4 of gross 7
    fees = next(f for f in pm.findings if f.cause == "Fees too high")
    assert fees.flagged
    assert "77%" in fees.figure


def test_position_drift_is_flagged(tmp_path: Path) -> None:
    bad = [list(r) for r in LEDGER]
    bad[6][1] = 0.5  # the row after the fill at 40 s says 0.5 where the fills add up to 0
    pm = post_mortem(build_run(tmp_path / "drift", ledger=[tuple(r) for r in bad]))
    drift = next(f for f in pm.findings if f.cause == "Bug in strategy logic: position drift")
    assert drift.flagged
    assert pm.drift["ledger"]["drifted"] == 1
    assert pm.drift["ledger"]["first_ts"] == ts(40)
    assert pm.drift["ledger"]["max_drift"] == pytest.approx(0.5)


def test_rejection_burst_is_flagged(tmp_path: Path) -> None:
    burst = [
        {"ts": ts(80 + 0.2 * i), "event": "rejected", "strategy_id": STRATEGY, "venue": "sim", "symbol": "BTC-USDT",
         "client_order_id": f"b-{i}", "reason": "Rate limit exceeded", "code": -1015}
        for i in range(6)
    ]  # fmt: skip
    pm = post_mortem(build_run(tmp_path / "burst", extra={"orders": burst}))
    assert pm.execution.bursts[0]["count"] == 6
    assert pm.execution.bursts[0]["top_reason"] == "Rate limit exceeded"
    finding = next(f for f in pm.findings if f.cause == "Bug in strategy logic: orders rejected in bursts")
    assert finding.flagged and "6 rejections in 1.000 s" in finding.figure


def test_strategy_halted_incident_is_flagged(tmp_path: Path) -> None:
    inc = [{"ts": ts(45), "kind": "strategy_halted", "detail": "strategy_id=mm strategy error in on_book: boom"}]
    pm = post_mortem(build_run(tmp_path / "halt", extra={"incidents": inc}), strategy="mm")
    finding = next(f for f in pm.findings if f.cause == "Bug in strategy logic: strategy error")
    assert finding.flagged and "boom" in finding.figure


def test_rolled_parts_give_the_same_report(tmp_path: Path, report) -> None:
    run = build_run(tmp_path / "parts")
    fills = pq.read_table(run / "fills.parquet")
    (run / "fills.parquet").unlink()
    pq.write_table(fills.slice(0, 2), run / "fills-1.parquet")
    pq.write_table(fills.slice(2), run / "fills-2.parquet")
    pm = post_mortem(run)
    ref, _ = report
    assert pm.round_trips.count == ref.round_trips.count
    assert pm.execution.markouts == ref.execution.markouts


def test_ledger_from_fills_when_no_positions_rows(tmp_path: Path) -> None:
    pm = post_mortem(build_run(tmp_path / "nopos", ledger=[]))
    # realized from the fills (5), fees 0.9; at the last fill: cash -95 + 1 x mid 101 = 6 -> unrealized 1
    assert pm.pnl.source.startswith("fills")
    assert (pm.pnl.realized, pm.pnl.unrealized, pm.pnl.fees) == pytest.approx((5, 1, 0.9))


def _fifo_reference(fills: list[dict]) -> list[float]:
    """Plain FIFO over fills in seq order: the net P&L of every matched lot."""
    books: dict[tuple, collections.deque] = collections.defaultdict(collections.deque)
    nets = []
    for f in sorted(fills, key=lambda r: r["seq"]):
        side = 1 if f["side"] == "buy" else -1
        q = f["qty"]
        lots = books[(f["strategy_id"], f["venue"], f["symbol"])]
        while q > 1e-12 and lots and lots[0][0] != side:
            lot = lots[0]
            m = min(q, lot[1])
            buy, sell = (lot[2], f["price"]) if lot[0] == 1 else (f["price"], lot[2])
            nets.append(m * (sell - buy) - lot[3] * m / lot[4] - f["fee"] * m / f["qty"])
            lot[1] -= m
            q -= m
            if lot[1] <= 1e-12:
                lots.popleft()
        if q > 1e-12:
            lots.append([side, q, f["price"], f["fee"], f["qty"]])
    return nets


def test_fifo_matches_a_plain_reference_on_random_fills(tmp_path: Path) -> None:
    rng = random.Random(11)
    fills, positions = [], []
    pos: dict[str, float] = collections.defaultdict(float)
    for i in range(3000):
        sym = rng.choice(["A-USD", "B-USD", "C-USD"])
        sid = rng.choice(["s1", "s2"])
        side = rng.choice(["buy", "sell"])
        qty = rng.choice([0.001, 0.002, 0.005, 0.01, 0.03])
        pos[sid + sym] += qty if side == "buy" else -qty
        t = ts(i * 0.01)
        fills.append({"ts": t, "strategy_id": sid, "venue": rng.choice(["v1", "v2"]) if sym == "A-USD" else "v1",
                      "symbol": sym, "side": side, "qty": qty, "price": round(rng.uniform(90, 110), 2),
                      "fee": round(rng.uniform(0, 0.01), 5), "liquidity": "maker", "position_after": 0.0})  # fmt: skip
    for i, f in enumerate(fills, start=1):
        f["seq"] = i
    rng.shuffle(fills)  # rows out of seq order in the file: the report must not depend on file order
    tables = {"fills": fills, "market": [], "orders": [], "positions": positions}
    run = write_event_log(tmp_path / "rand", tables, in_seq_order=False)
    pm = post_mortem(run)
    ref = _fifo_reference(pq.read_table(run / "fills.parquet").to_pylist())
    assert pm.round_trips.count == len(ref)
    assert pm.round_trips.wins == sum(1 for x in ref if x > 1e-12)
    assert pm.round_trips.net == pytest.approx(sum(ref), abs=1e-9)
    assert sorted(r["net"] for r in pm.largest_losses) == pytest.approx(sorted(ref)[:10])


@pytest.mark.parametrize("n_keys", [5, 20])
def test_curve_matches_a_plain_reference_with_shuffled_files(tmp_path: Path, n_keys: int) -> None:
    """Total net P&L and drawdown over many keys, from files whose rows are not in seq order."""
    rng = random.Random(n_keys)
    positions, fills = [], []
    for i in range(4000):
        sym = f"S{rng.randrange(n_keys)}-USD"
        t = ts(i * 0.5 + rng.random() * 0.4)
        positions.append({"ts": t, "seq": 2 * i + 2, "strategy_id": "s", "venue": "v", "symbol": sym,
                          "realized_pnl": rng.uniform(-50, 50), "unrealized_pnl": rng.uniform(-20, 20),
                          "fees": rng.uniform(0, 5), "position": 0.0})  # fmt: skip
        if i % 4 == 0:
            fills.append({"ts": t, "seq": 2 * i + 1, "strategy_id": "s", "venue": "v", "symbol": sym, "side": "buy",
                          "price": 1.0, "qty": 0.0, "position_after": 0.0})  # fmt: skip
    latest: dict[str, float] = {}
    peak, deepest, total = -math.inf, 0.0, 0.0
    for r in sorted(positions, key=lambda r: (r["ts"], r["seq"])):
        latest[r["symbol"]] = r["realized_pnl"] + r["unrealized_pnl"] - r["fees"]
        total = sum(latest.values())
        peak = max(peak, total)
        deepest = min(deepest, total - peak)
    rng.shuffle(positions)
    rng.shuffle(fills)
    tables = {"positions": positions, "fills": fills, "market": [], "orders": []}
    run = write_event_log(tmp_path / "many", tables, in_seq_order=False)
    pm = post_mortem(run)
    assert pm.pnl.net == pytest.approx(total)
    assert pm.pnl.max_drawdown == pytest.approx(deepest)
    assert pm.series["curve"]["net"][-1] == pytest.approx(total)


def test_table_from_rows_rejects_unknown_columns() -> None:
    with pytest.raises(ValueError, match="unknown column"):
        table_from_rows("fills", [{"price": 1.0, "nonsense": 2}])
