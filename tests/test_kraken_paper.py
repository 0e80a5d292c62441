"""A paper session on Kraken through the node, against the fake Kraken over loopback: the adapter's
feed keeps the book from the fake's WebSocket v2 (checksums and all), the same strategy, risk and
order manager code trades on the simulated venue, and the event log feeds the usual reports."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pytest

from engine.runners.paper import run_paper
from engine.runners.spec import load_run_spec
from sim.fake_kraken import FakeKraken
from venues.kraken.adapter import KrakenAdapter
from venues.kraken.config import load_config

REPO = Path(__file__).resolve().parents[1]


async def _paper_session(spec, out: Path, duration_s: float):
    async with FakeKraken(speed=30) as fk:
        cfg = load_config(
            REPO / "config" / "exchanges" / "kraken.json",
            overrides={"rest_url": fk.rest_url, "ws_url": fk.ws_url, "ws_auth_url": fk.ws_auth_url},
            env={},
        )
        return await run_paper(spec, out, duration_s=duration_s, adapters={"kraken": KrakenAdapter(cfg)})


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kraken_paper") / "run"
    spec = load_run_spec(REPO / "config" / "paper" / "market_maker_kraken.json", mode="paper")
    return asyncio.run(_paper_session(spec, out, 8.0)), out


def test_kraken_paper_session_trades_and_writes_a_normal_event_log(paper_run):
    res, out = paper_run
    s = res.summary
    assert s["rows"] > 20
    sync = res.node.feeds["kraken"].syncs["BTC-USD"]
    assert sync.applied > 20 and sync.gaps == 0
    assert s["orders_submitted"] > 0
    con = duckdb.connect()
    market = con.execute(f"select count(*), min(bid), max(ask) from read_parquet('{out}/market.parquet')").fetchone()
    assert market[0] > 10 and 50_000 < market[1] < market[2] < 70_000  # the re-labelled real BTC prices
    submits = con.execute(f"select count(*) from read_parquet('{out}/orders.parquet') where event='submit'").fetchone()
    assert submits[0] == s["orders_submitted"]
    assert "Subscribed to kraken:BTC-USD:orderbook" in (out / "logs" / "market_data.log").read_text()
    # client ids within Kraken's rules (a UUID or 18 characters)
    ids = [
        r[0]
        for r in con.execute(f"select distinct client_order_id from read_parquet('{out}/orders.parquet')").fetchall()
    ]
    rules = res.engine.oms.profiles["kraken"].client_ids
    assert ids and all(rules.valid(c) for c in ids)


def test_kraken_paper_event_log_feeds_the_same_reports(paper_run, capsys):
    from engine.cli import main as hft_main

    _, out = paper_run
    assert hft_main(["report", "latency", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(paper)" in text and "feed" in text
    hft_main(["report", "post-mortem", str(out)])
    assert "Post-mortem" in (out / "post_mortem.md").read_text()
