"""Paper trading end to end over loopback: the fake Binance streams the real capture, the same
strategy/risk/OMS code trades against simulated execution, and the event log is a normal run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest

from engine.runners.paper import run_paper
from engine.runners.spec import load_run_spec
from venues.binance.adapter import BinanceAdapter
from venues.binance.config import load_config

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
server = pytest.importorskip("sim.fake_binance.server")


async def _paper_session(spec, out: Path, duration_s: float):
    """A paper session against the fake Binance streaming the capture at 30x real time."""
    async with server.FakeBinance(data=CAPTURE, speed=30) as fb:
        cfg = load_config(
            REPO / "config" / "exchanges" / "binance.json",
            overrides={"rest_url": fb.rest_url, "ws_url": fb.ws_url, "ws_api_url": fb.ws_api_url},
            env={},
        )
        return await run_paper(spec, out, duration_s=duration_s, adapters={"binance": BinanceAdapter(cfg)})


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    import asyncio

    out = tmp_path_factory.mktemp("paper") / "run"
    spec = load_run_spec(REPO / "config" / "paper" / "market_maker_binance.json", mode="paper")

    return asyncio.run(_paper_session(spec, out, 8.0)), out


def test_paper_session_trades_and_writes_a_normal_event_log(paper_run):
    res, out = paper_run
    s = res.summary
    assert s["rows"] > 50  # live depth messages went through the simulated venue's matching
    # one apply per message, on live trading's fast path (paper runs live's code, frame to order)
    sync = res.node.feeds["binance"].syncs["BTC-USDT"]
    assert sync.fast_applied > 50 and sync.fast_applied > sync.applied / 2
    assert s["orders_submitted"] > 0
    con = duckdb.connect()
    market = con.execute(f"select count(*), min(bid), max(ask) from read_parquet('{out}/market.parquet')").fetchone()
    assert market[0] > 10 and 50_000 < market[1] < market[2] < 70_000  # real BTCUSDT prices from the capture
    submits = con.execute(f"select count(*) from read_parquet('{out}/orders.parquet') where event='submit'").fetchone()[
        0
    ]
    assert submits == s["orders_submitted"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "paper" and manifest["data"]["live"] is True
    # the feed's latency is measured from the venue's own timestamps: positive (local clock after venue)
    lat = con.execute(f"select median(feed_latency_ns) from read_parquet('{out}/market.parquet')").fetchone()[0]
    assert lat is not None
    assert "Subscribed to binance:BTC-USDT:orderbook" in (out / "logs" / "market_data.log").read_text()


def test_paper_event_log_feeds_the_same_reports(paper_run, capsys):
    from engine.cli import main as hft_main

    _, out = paper_run
    # a paper session may end with few or no fills; the reports must still read the log and say so
    code = hft_main(["report", "latency", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "(paper)" in text and "feed" in text and "send_to_ack" in text
    assert (out / "latency_report.html").exists()
    hft_main(["report", "post-mortem", str(out)])
    assert (out / "post_mortem.md").exists()
    assert "Post-mortem" in (out / "post_mortem.md").read_text()


def test_paper_client_ids_carry_the_session_so_a_restart_never_reuses_one(paper_run):
    """A venue wants client ids unique among its open orders and reports orders by them: a live
    process that restarts must not count from the same ids again. On a live clock every id is
    ``<strategy>-<session>-<n>``, within Binance's ``^[a-zA-Z0-9-_]{1,36}$``."""
    import re

    from engine.oms import session_tag

    res, out = paper_run
    oms = res.engine.oms
    assert re.fullmatch(r"[0-9a-z]{6}", oms.session)
    ids = [
        r[0]
        for r in duckdb.connect()
        .execute(f"select distinct client_order_id from read_parquet('{out}/orders.parquet')")
        .fetchall()
    ]
    assert ids
    for cid in ids:
        m = re.fullmatch(r"(.+)-([0-9a-z]{6})-(\d+)", cid)
        assert m is not None and m.group(2) == oms.session, cid
        assert re.fullmatch(r"[a-zA-Z0-9\-_]{1,36}", cid)
    rules = oms.profiles["binance"].client_ids
    longest = rules.make(rules.prefix("a" * 40, oms.session), 10**10 - 1)  # a long id, the ten-billionth order
    assert len(longest) == 36 and re.fullmatch(r"[a-zA-Z0-9\-_]{1,36}", longest)
    # a process started a millisecond later has another tag; the tag wraps after 36**6 ms
    assert session_tag(10**12 * 1_000_000) != session_tag((10**12 + 1) * 1_000_000)
    assert session_tag(0) == "000000" and session_tag((36**6 - 1) * 1_000_000) == "zzzzzz"


def test_paper_session_with_the_path_warmer_trades_the_same_way(tmp_path):
    """``"warm"`` in a paper config runs the path warmer beside the session: it makes passes while
    the feed is quiet and nothing of them reaches the event log or the order logs."""
    import asyncio

    out = tmp_path / "run"
    spec = load_run_spec(REPO / "config" / "paper" / "market_maker_binance.json", mode="paper")
    spec.warm = {"interval_us": 300.0, "spin": True, "probe": True}

    res = asyncio.run(_paper_session(spec, out, 5.0))
    system = (out / "logs" / "system.log").read_text()
    m = re.search(r"path warmer stopped: passes=(\d+) .* twins=market_maker_paper", system)
    assert m is not None and int(m.group(1)) > 100, system
    submitted = res.summary["orders_submitted"]
    assert submitted > 0
    con = duckdb.connect()
    rows = con.execute(f"select count(*) from read_parquet('{out}/orders.parquet') where event='submit'").fetchone()
    assert rows[0] == submitted == res.engine.oms.submitted
    ids = {r[0] for r in con.execute(f"select client_order_id from read_parquet('{out}/orders.parquet')").fetchall()}
    assert all(int(cid.rpartition("-")[2]) <= submitted for cid in ids)  # no id taken by a shadow order
    orders_log = (out / "logs" / "orders.log").read_text()
    assert orders_log.count("submit order") == submitted


def test_a_bad_warm_section_names_the_field(tmp_path):
    from engine.errors import ConfigError

    cfg = json.loads((REPO / "config" / "paper" / "market_maker_binance.json").read_text())
    cfg["exchange"] = str(REPO / "config" / "exchanges" / "binance.json")
    cfg["warm"] = {"interval_us": 0}
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"warm\.interval_us: must be > 0"):
        load_run_spec(path, mode="paper")
    cfg["warm"] = {"interval_us": 200, "spin": "yes"}
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"warm\.spin"):
        load_run_spec(path, mode="paper")
