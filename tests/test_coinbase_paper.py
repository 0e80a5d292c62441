"""A paper session on Coinbase through the node: the fake streams the real BAND-GBP capture over
Advanced Trade's protocol, the same strategy/risk/OMS code trades against simulated execution,
and the event log feeds the usual reports."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import duckdb
import pytest

from engine.runners.paper import run_paper
from engine.runners.spec import load_run_spec
from sim.fake_coinbase import FakeCoinbase
from venues.coinbase.adapter import CoinbaseAdapter
from venues.coinbase.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "paper" / "market_maker_coinbase.json"


async def _session(spec, out: Path, duration_s: float):
    async with FakeCoinbase(interval_s=0.01, heartbeat_interval_s=0.5) as fc:
        cfg = load_config(
            REPO / "config" / "exchanges" / "coinbase.json",
            overrides={"rest_url": fc.rest_url, "ws_url": fc.ws_url},
            env={},
        )
        return await run_paper(spec, out, duration_s=duration_s, adapters={"coinbase": CoinbaseAdapter(cfg)})


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_coinbase") / "run"
    spec = load_run_spec(CONFIG, mode="paper")
    return asyncio.run(_session(spec, out, 6.0)), out


def test_paper_session_on_coinbase_writes_a_normal_event_log(paper_run) -> None:
    res, out = paper_run
    s = res.summary
    assert s["rows"] > 50
    sync = res.node.feeds["coinbase"].syncs["BAND-GBP"]
    assert sync.applied > 50 and sync.gaps == 0
    assert s["orders_submitted"] > 0
    con = duckdb.connect()
    market = con.execute(f"select count(*), min(bid), max(ask) from read_parquet('{out}/market.parquet')").fetchone()
    assert market[0] > 10 and 14 < market[1] < market[2] < 16  # real BAND-GBP prices from the capture
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "paper"
    assert "Subscribed to coinbase:BAND-GBP:level2" in (out / "logs" / "market_data.log").read_text()
    ids = [
        r[0]
        for r in con.execute(f"select distinct client_order_id from read_parquet('{out}/orders.parquet')").fetchall()
    ]
    assert ids and all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", c) for c in ids
    )


def test_paper_event_log_feeds_the_reports(paper_run, capsys) -> None:
    from engine.cli import main as hft_main

    _, out = paper_run
    assert hft_main(["report", "latency", str(out)]) == 0
    assert "(paper)" in capsys.readouterr().out
    hft_main(["report", "post-mortem", str(out)])
    assert "Post-mortem" in (out / "post_mortem.md").read_text()
