"""The guide's venue scripts (``list_symbols.sh``, ``get_exchange_filters.sh``,
``query_exchange_order.sh``, ``check_balances.sh``, ``test_api_key.sh``,
``test_exchange_latency.sh``, ``check_exchange_status.sh``) run through bash, as an operator runs
them, against each venue's loopback fake: the guide's pipelines verbatim (``| grep BTC-USDT``,
``| jq .filters.LOT_SIZE``), bad keys answered in the guide's words with exit 1, unknown orders
exit 1, bad arguments exit 2.

The three fakes serve from one event loop in a background thread for the whole module; an order
rests on each, placed through the venue's own REST client over loopback, for the order queries.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_binance_support import CAPTURE

from sim.fake_binance import FakeBinance
from sim.fake_coinbase import FakeCoinbase
from sim.fake_kraken import FakeKraken
from venues.binance.config import Credentials as BinanceCredentials
from venues.binance.config import load_config as binance_config
from venues.binance.rest import BinanceRest
from venues.coinbase.config import Credentials as CoinbaseCredentials
from venues.coinbase.config import load_config as coinbase_config
from venues.coinbase.rest import CoinbaseRest
from venues.kraken.config import Credentials as KrakenCredentials
from venues.kraken.config import parse_config as kraken_config
from venues.kraken.rest import KrakenRest
from venues.kraken.signing import NonceSource

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
VENUE_SCRIPTS = (
    "list_symbols.sh",
    "get_exchange_filters.sh",
    "query_exchange_order.sh",
    "check_balances.sh",
    "test_api_key.sh",
    "test_exchange_latency.sh",
)
KRAKEN_SECRET = base64.b64encode(b"k" * 64).decode()
COINBASE_SECRET = base64.b64encode(b"coinbase-secret-for-the-venue-scripts").decode()
#: the symbol each fake lists that the tests look for (the guide's is Binance's BTC-USDT)
SYMBOL = {"binance": "BTC-USDT", "kraken": "BTC-USD", "coinbase": "BTC-USD"}
#: what the guide says about a key the venue refuses, per venue and per broken part
BAD_KEY = {
    "binance": {"key": "Invalid API key", "secret": "Invalid signature"},
    "kraken": {"key": "Invalid API key", "secret": "Invalid signature"},
    "coinbase": {"key": "Invalid API key", "secret": "Invalid signature", "passphrase": "Invalid passphrase"},
}


@dataclass
class Venue:
    name: str
    env: dict[str, str]
    order_id: str = ""
    client_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Fakes:
    """The three fakes on one loop in a thread (the scripts are separate processes)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.venues: dict[str, Venue] = {}

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self) -> None:
        self.binance = FakeBinance(data=CAPTURE, api_key="bkey", api_secret="bsecret", speed=0, start="manual")
        self.kraken = FakeKraken(
            api_key="kkey", api_secret=KRAKEN_SECRET, speed=0, start="manual", rest_limit=10_000, rest_decay_per_s=100
        )
        self.coinbase = FakeCoinbase(
            api_key="ckey",
            api_secret=COINBASE_SECRET,
            passphrase="cphrase",
            products=("BAND-GBP", "BTC-USD"),
            start="subscribe",
            public_rate=(1000.0, 1000),
            private_rate=(1000.0, 1000),
            balances={"USD": "100000", "BTC": "2", "GBP": "1000"},
        )
        await asyncio.gather(self.binance.start(), self.kraken.start(), self.coinbase.start())
        self.venues["binance"] = await self._binance_order()
        self.venues["kraken"] = await self._kraken_order()
        self.venues["coinbase"] = await self._coinbase_order()

    async def _binance_order(self) -> Venue:
        env = {"BINANCE_REST_URL": self.binance.rest_url, "BINANCE_API_KEY": "bkey", "BINANCE_API_SECRET": "bsecret"}
        rest = BinanceRest(
            binance_config(REPO / "config/exchanges/binance.json", env=env), BinanceCredentials("bkey", "bsecret")
        )
        try:
            await rest.sync_time()
            o = await rest.new_order(
                {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                 "quantity": "0.00100", "price": "30000.00", "newClientOrderId": "guide-order-1"}
            )  # fmt: skip
        finally:
            await rest.close()
        return Venue("binance", env, str(o.order_id), "guide-order-1")

    async def _kraken_order(self) -> Venue:
        env = {"KRAKEN_REST_URL": self.kraken.rest_url, "KRAKEN_API_KEY": "kkey", "KRAKEN_API_SECRET": KRAKEN_SECRET}
        cfg = kraken_config({"rest_url": self.kraken.rest_url}, "kraken-test.json", env={})
        rest = KrakenRest(cfg, KrakenCredentials("kkey", KRAKEN_SECRET), nonces=NonceSource(None))
        try:
            got = await rest.private(
                "AddOrder",
                {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "volume": "0.01", "price": "30000.0",
                 "cl_ord_id": "guide-order-2"},
            )  # fmt: skip
        finally:
            await rest.close()
        return Venue("kraken", env, got["txid"][0], "guide-order-2")

    async def _coinbase_order(self) -> Venue:
        env = {
            "COINBASE_REST_URL": self.coinbase.rest_url,
            "COINBASE_API_KEY": "ckey",
            "COINBASE_API_SECRET": COINBASE_SECRET,
            "COINBASE_API_PASSPHRASE": "cphrase",
        }
        cfg = coinbase_config(REPO / "config/exchanges/coinbase.json", env=env)
        rest = CoinbaseRest(cfg, CoinbaseCredentials("ckey", COINBASE_SECRET, "cphrase"))
        cid = "5f0b5e0e-6a43-4f0e-9d8e-1a2b3c4d5e6f"
        try:
            await rest.sync_time()
            o = await rest.place_order(
                {"product_id": "BTC-USD", "side": "buy", "type": "limit", "price": "30000.00", "size": "0.01",
                 "client_oid": cid}
            )  # fmt: skip
        finally:
            await rest.close()
        return Venue("coinbase", env, o.id, cid)

    async def stop(self) -> None:
        await asyncio.gather(self.binance.stop(), self.kraken.stop(), self.coinbase.stop(), return_exceptions=True)


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    f = Fakes()
    f.thread.start()
    try:
        f.call(f.start())
        yield f
    finally:
        try:
            f.call(f.stop(), timeout=20)
        finally:
            f.loop.call_soon_threadsafe(f.loop.stop)
            f.thread.join(10)


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any real venue key or endpoint, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "KRAKEN_", "COINBASE_"))}
    env.update(extra)
    return env


def sh(command: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``command`` through bash from the repository, as the guide writes it."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPTS / script), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def together(
    *calls: Callable[[], subprocess.CompletedProcess[str]], signed_on: str = ""
) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands at once: each is mostly a Python start-up, and the test file has many.
    Signed Kraken calls go one after the other (``signed_on="kraken"``): Kraken wants each key's
    nonces in increasing order of arrival, which processes racing each other cannot promise."""
    if signed_on == "kraken":
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda call: call(), calls))


VENUES = ("binance", "kraken", "coinbase")


def test_help_and_unknown_exchange() -> None:
    env = clean_env()
    for script in VENUE_SCRIPTS:
        path = SCRIPTS / script
        assert os.access(path, os.X_OK) and "set -euo pipefail" in path.read_text(), script
    helps = together(*(lambda s=s: run(s, "--help", env=env) for s in VENUE_SCRIPTS))
    for script, p in zip(VENUE_SCRIPTS, helps, strict=True):
        assert p.returncode == 0 and "usage:" in p.stderr and script in p.stderr, script
    nasdaq = together(
        *(lambda s=s: run(s, "nasdaq", *(["BTC-USDT"] if "filters" in s else []), env=env) for s in VENUE_SCRIPTS)
    )
    for script, p in zip(VENUE_SCRIPTS, nasdaq, strict=True):
        assert p.returncode == 2, script
        assert p.stderr == "error: unknown exchange 'nasdaq' (known: binance, coinbase, kraken)\n", script


def test_missing_arguments_are_named() -> None:
    p = run("list_symbols.sh", env=clean_env())
    assert p.returncode == 2 and p.stderr == "error: name an exchange (known: binance, coinbase, kraken)\n"
    p = run("get_exchange_filters.sh", "binance", env=clean_env())
    assert p.returncode == 2 and p.stderr == "error: name a symbol, e.g. BTC-USDT, after the exchange\n"


@pytest.mark.parametrize("venue", VENUES)
def test_list_symbols_pipes_into_grep(fakes: Fakes, venue: str) -> None:
    env = clean_env(**fakes.venues[venue].env)
    sym = SYMBOL[venue]
    p, nope, full = together(
        lambda: sh(f"./scripts/list_symbols.sh {venue} | grep {sym}", env),
        lambda: sh(f"./scripts/list_symbols.sh {venue} | grep NOPE-COIN", env),
        lambda: sh(f"./scripts/list_symbols.sh {venue} --all", env),
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [sym]
    assert nope.returncode == 1
    status = {"binance": "TRADING", "kraken": "online", "coinbase": "online"}[venue]  # the venue's own word
    assert full.returncode == 0 and f"{sym}\t{status}" in full.stdout.splitlines()


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
@pytest.mark.parametrize("venue", VENUES)
def test_get_exchange_filters_pipes_into_jq(fakes: Fakes, venue: str) -> None:
    env = clean_env(**fakes.venues[venue].env)
    sym = SYMBOL[venue]
    lot, full, missing = together(
        lambda: sh(f"./scripts/get_exchange_filters.sh {venue} {sym} | jq .filters.LOT_SIZE", env),
        lambda: sh(f"./scripts/get_exchange_filters.sh {venue} {sym}", env),
        lambda: run("get_exchange_filters.sh", venue, "NOPE-COIN", env=env),
    )
    assert lot.returncode == 0, lot.stderr
    lot_size = json.loads(lot.stdout)
    assert isinstance(lot_size, dict) and lot_size["stepSize"]
    doc = json.loads(full.stdout)
    assert doc["venue"] == venue and doc["symbol"] == sym and doc["raw"]
    assert float(doc["filters"]["PRICE_FILTER"]["tickSize"]) > 0
    if venue == "binance":  # Binance's own filter objects, re-keyed by filterType
        assert doc["filters"]["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert {f["filterType"] for f in doc["raw"]["filters"]} == set(doc["filters"])
    if venue == "kraken":
        (pair,) = doc["raw"].values()
        assert doc["filters"]["LOT_SIZE"]["minQty"] == pair["ordermin"]
        assert lot_size["stepSize"] == f"{10 ** -pair['lot_decimals']:.{pair['lot_decimals']}f}"
    if venue == "coinbase":
        assert lot_size["stepSize"] == doc["raw"]["base_increment"]
        assert doc["filters"]["NOTIONAL"]["minNotional"] == doc["raw"]["min_market_funds"]
    assert missing.returncode == 1 and f"Symbol not found on {venue}: NOPE-COIN" in missing.stderr


@pytest.mark.parametrize("venue", VENUES)
def test_query_exchange_order(fakes: Fakes, venue: str) -> None:
    v = fakes.venues[venue]
    env = clean_env(**v.env)
    unknown = {
        "binance": "987654321",
        "kraken": "OAAAAA-BBBBB-CCCCCC",
        "coinbase": "11111111-2222-3333-4444-555555555555",
    }[venue]
    p, by_client, gone, gone_client = together(
        lambda: run("query_exchange_order.sh", venue, v.order_id, env=env),
        lambda: run("query_exchange_order.sh", venue, v.client_id, "--client-id", "--json", env=env),
        lambda: run("query_exchange_order.sh", venue, unknown, env=env),
        # Kraken looks for a client id among the open orders, then the closed ones
        lambda: run("query_exchange_order.sh", venue, "no-such-client-id", "--client-id", env=env),
        signed_on=venue,
    )
    assert p.returncode == 0, p.stderr
    assert f"{venue} order {v.order_id} (client order id {v.client_id})" in p.stdout
    assert "status      OPEN" in p.stdout and SYMBOL[venue] in p.stdout
    assert by_client.returncode == 0, by_client.stderr
    doc = json.loads(by_client.stdout)
    assert doc["venue_order_id"] == v.order_id and doc["status"] == "OPEN" and doc["raw"]
    assert gone.returncode == 1 and f"Order not found on {venue}: order id {unknown}" in gone.stdout
    assert gone_client.returncode == 1
    assert f"Order not found on {venue}: client order id no-such-client-id" in gone_client.stdout


@pytest.mark.parametrize("venue", VENUES)
def test_check_balances(fakes: Fakes, venue: str) -> None:
    env = clean_env(**fakes.venues[venue].env)
    if venue == "binance":
        p = run("check_balances.sh", venue, env=env)
        assert p.returncode == 0 and p.stdout.startswith("binance balances"), p.stderr
        assert [ln.split()[0] for ln in p.stdout.splitlines()[2:]] == ["BTC", "ETH", "USDT"]
    doc = json.loads(run("check_balances.sh", venue, "--json", env=env).stdout)
    quote = SYMBOL[venue].split("-")[1]
    assert doc[quote]["locked"] > 0  # the resting buy holds quote currency
    assert doc[quote]["total"] == pytest.approx(doc[quote]["free"] + doc[quote]["locked"])


@pytest.mark.parametrize("venue", VENUES)
def test_api_key_valid_and_invalid(fakes: Fakes, venue: str) -> None:
    v = fakes.venues[venue]
    p = run("test_api_key.sh", venue, env=clean_env(**v.env))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith(f"API key valid on {venue}")
    secrets_ = {k: val for k, val in v.env.items() if k.endswith(("_KEY", "_SECRET", "_PASSPHRASE"))}
    envs = []
    for part in BAD_KEY[venue]:
        env = dict(v.env)
        env[f"{venue.upper()}_API_{part.upper()}"] = (
            base64.b64encode(b"wrong" * 13).decode() if part == "secret" else "wrong"
        )
        envs.append(clean_env(**env))
    answers = together(*(lambda e=e: run("test_api_key.sh", venue, env=e) for e in envs))
    for (part, message), p in zip(BAD_KEY[venue].items(), answers, strict=True):
        assert p.returncode == 1, (part, p.stdout, p.stderr)
        assert f"API key INVALID on {venue}: {message}" in p.stdout, (part, p.stdout)
        for secret in secrets_.values():  # keys are never printed
            assert secret not in p.stdout + p.stderr
    if venue == "coinbase":  # the passphrase is named among the keys to set
        no_keys = {k: val for k, val in v.env.items() if k.endswith("_REST_URL")}
        p = run("test_api_key.sh", venue, env=clean_env(**no_keys))
        assert p.returncode == 2 and "COINBASE_API_PASSPHRASE" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("venue", VENUES)
def test_exchange_latency(fakes: Fakes, venue: str) -> None:
    v = fakes.venues[venue]
    args = ("--samples", "5", "--signed-samples", "3", "--interval", "0")
    p = run("test_exchange_latency.sh", venue, *args, env=clean_env(**v.env))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"{venue} API latency (http://127.0.0.1:")
    public = next(x for x in lines if x.strip().startswith("public "))
    signed = next(x for x in lines if x.strip().startswith("signed "))
    assert "n=5" in public and "n=3" in signed and "P50" in public and "P99" in signed
    if venue == "kraken":
        no_keys = {k: val for k, val in v.env.items() if k.endswith("_REST_URL")}
        p = run("test_exchange_latency.sh", venue, "--samples", "2", "--interval", "0", env=clean_env(**no_keys))
        assert p.returncode == 0 and "signed POST /0/private/Balance: skipped, no API key" in p.stdout


def test_unreachable_venue_exits_1() -> None:
    env = clean_env(KRAKEN_REST_URL="http://127.0.0.1:9")  # the discard port: nothing listens
    p = run("list_symbols.sh", "kraken", env=env)
    assert p.returncode == 1 and "Failed to connect to kraken" in p.stderr and "Traceback" not in p.stderr


def test_check_exchange_status_covers_every_venue(fakes: Fakes, tmp_path: Path) -> None:
    env = clean_env(**{k: val for v in fakes.venues.values() for k, val in v.env.items() if k.endswith("_REST_URL")})
    cfg = tmp_path / "production.json"
    cfg.write_text("{}")
    p = run("check_exchange_status.sh", "--url", "http://127.0.0.1:9", "--config", str(cfg), env=env)
    for venue in VENUES:
        assert f"{venue}: venue up" in p.stdout, p.stdout
    assert p.returncode == 1  # no daemon answered


def test_check_exchange_status_reads_krakens_system_status(fakes: Fakes, tmp_path: Path) -> None:
    """Kraken says maintenance (or cancel_only, post_only) in SystemStatus with an HTTP 200: the
    script must read the answer, not only the status code (guide §8.4)."""
    env = clean_env(**{k: val for v in fakes.venues.values() for k, val in v.env.items() if k.endswith("_REST_URL")})
    cfg = tmp_path / "production.json"
    cfg.write_text("{}")
    fakes.kraken.set_system_status("maintenance")
    try:
        p = run("check_exchange_status.sh", "--url", "http://127.0.0.1:9", "--config", str(cfg), env=env)
    finally:
        fakes.kraken.set_system_status("online")
    assert "kraken: venue in MAINTENANCE: system status: maintenance" in p.stdout, p.stdout
    assert "binance: venue up" in p.stdout and "coinbase: venue up" in p.stdout
    p = run("check_exchange_status.sh", "--url", "http://127.0.0.1:9", "--config", str(cfg), env=env)
    assert "kraken: venue up: system status: online" in p.stdout, p.stdout
