"""One ``VenueHarness`` per registered venue: its loopback fake, an adapter opened on the fake's URLs
and keys, and a small uniform fault API mapped to the fake's own control methods.

The conformance tests (``test_conformance_*.py``) only talk to a harness and to the venue
contract (``engine.venue``): they never name a venue. A fourth venue joins by registering its
parts (``engine.runners.registry``) and adding a harness class here to ``HARNESSES``; until it
has one, every conformance test fails for it with "venue X has no conformance harness".

What a harness must give (everything in the instrument's fixed point):

* ``start``/``stop`` the fake (``async with``), ``adapter()`` a fresh ``VenueAdapter`` on it (a new
  one per call: two are a process and its restart), ``connect(adapter, sink)`` its order entry;
* the market: ``advance(n)`` moves the replay ``n`` events, ``fake_levels`` the fake's own top
  levels, ``inject_gap`` the venue's own integrity fault (Binance: diffs dropped; Kraken: a bad
  checksum; Coinbase: a ``sequence_num`` gap), ``disconnect``;
* the account: ``fill(cid, qty)`` fills a resting order at the fake as the market would (maker),
  ``rate_limit_rest()`` the venue's rate-limit answer to the next REST request,
  ``rate_limit_orders(client)`` the venue's limit for the next order (its 429, or its own counter
  full), and order sizes: ``qty`` a normal one, ``unfundable_qty`` one the balance cannot pay.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from engine.model import Instrument

SHARED = Path(__file__).resolve().parents[3] / "shared"
BINANCE_CAPTURE = SHARED / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"

Levels = list[tuple[int, int]]


def to_fixed(value: Decimal, scale: int) -> int:
    return int(Decimal(value).scaleb(scale).to_integral_value())


def to_decimal(value: int, scale: int) -> str:
    return format(Decimal(value).scaleb(-scale), "f")


class VenueHarness:
    venue: ClassVar[str]
    symbol: ClassVar[str]
    #: the incident kind the venue's integrity fault raises
    gap_kind: ClassVar[str] = "sequence_gap"

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.fake: Any = None

    async def __aenter__(self) -> VenueHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        await self.fake.stop()

    def adapter(self) -> Any:
        raise NotImplementedError

    async def connect(self, adapter: Any, sink: Any) -> Any:
        return await adapter.connect_execution(sink, subscribe_timeout_s=5.0)

    async def advance(self, n: int) -> None:
        await self.fake.advance(n)

    def fake_levels(self, inst: Instrument, depth: int) -> tuple[Levels, Levels]:
        raise NotImplementedError

    def inject_gap(self) -> None:
        raise NotImplementedError

    def disconnect(self) -> None:
        self.fake.disconnect()

    def rate_limit_rest(self) -> None:
        raise NotImplementedError

    def rate_limit_orders(self, client: Any) -> None:
        raise NotImplementedError

    async def fill(self, cid: str, qty: int | None, inst: Instrument) -> None:
        raise NotImplementedError

    def qty(self, inst: Instrument) -> int:
        raise NotImplementedError

    def unfundable_qty(self, inst: Instrument) -> int:
        raise NotImplementedError


# --- Binance ---------------------------------------------------------------------------------------
class BinanceHarness(VenueHarness):
    venue = "binance"
    symbol = "BTC-USDT"
    KEY = "conformance-binance-key-" + "k" * 40
    SECRET = "conformance-binance-secret-" + "s" * 37

    async def start(self) -> None:
        from sim.fake_binance import FakeBinance

        self.fake = FakeBinance(
            data=BINANCE_CAPTURE,
            api_key=self.KEY,
            api_secret=self.SECRET,
            start="manual",
            max_records=6000,
            balances={"BTC": "100", "USDT": "1000000"},
        )
        await self.fake.start()
        await self.fake.advance(300)

    def adapter(self) -> Any:
        from venues.binance.adapter import BinanceAdapter
        from venues.binance.config import Credentials, parse_config

        fb = self.fake
        cfg = parse_config(
            {
                "rest_url": fb.rest_url,
                "ws_url": fb.ws_url,
                "ws_api_url": fb.ws_api_url,
                "symbols": [self.symbol],
                "reconnect": {"initial_delay_s": 0.05, "max_delay_s": 0.2, "jitter": 0.0},
                "order_timeout_s": 2.0,
                "http_timeout_s": 5.0,
            },
            "<conformance>",
            env={},
        )
        return BinanceAdapter(cfg, Credentials(self.KEY, self.SECRET))

    def fake_levels(self, inst: Instrument, depth: int) -> tuple[Levels, Levels]:
        book = self.fake.book("BTCUSDT")
        return book.levels(1, depth), book.levels(-1, depth)

    def inject_gap(self) -> None:
        self.fake.drop_diffs(1)

    def disconnect(self) -> None:
        self.fake.disconnect(streams=True, ws_api=True)

    def rate_limit_rest(self) -> None:
        self.fake.fail_next_requests(1, 429, retry_after=1)

    def rate_limit_orders(self, client: Any) -> None:
        self.fake.fail_next_requests(1, 429, retry_after=1)

    async def fill(self, cid: str, qty: int | None, inst: Instrument) -> None:
        self.fake.fill_order(cid, None if qty is None else to_decimal(qty, inst.size_scale))

    def qty(self, inst: Instrument) -> int:
        return 10**5  # 0.001 BTC

    def unfundable_qty(self, inst: Instrument) -> int:
        return 100 * 10**8  # 100 BTC: more USDT than the account holds


# --- Kraken ----------------------------------------------------------------------------------------
class KrakenHarness(VenueHarness):
    venue = "kraken"
    symbol = "BTC-USD"
    KEY = "conformance-kraken-key"
    SECRET = base64.b64encode(b"conformance-kraken-secret".ljust(64, b"k")).decode()

    async def start(self) -> None:
        from sim.fake_kraken import FakeKraken

        self.fake = FakeKraken(api_key=self.KEY, api_secret=self.SECRET, speed=0, start="manual", max_records=4000)
        await self.fake.start()
        self._n = 0

    def adapter(self) -> Any:
        from venues.kraken.adapter import KrakenAdapter
        from venues.kraken.config import Credentials, parse_config
        from venues.kraken.signing import NonceSource

        fk = self.fake
        nonce = self.tmp_path / "kraken_nonce"  # one key, one nonce high-water mark: shared by restarts
        cfg = parse_config(
            {
                "rest_url": fk.rest_url,
                "ws_url": fk.ws_url,
                "ws_auth_url": fk.ws_auth_url,
                "symbols": [self.symbol],
                "nonce_file": str(nonce),
                "order_timeout_s": 2.0,
                "reconnect": {"initial_delay_s": 0.05, "max_delay_s": 0.2},
            },
            "<conformance>",
            env={},
        )
        return KrakenAdapter(cfg, Credentials(self.KEY, self.SECRET), nonces=NonceSource(nonce))

    def fake_levels(self, inst: Instrument, depth: int) -> tuple[Levels, Levels]:
        book = self.fake.book("BTC/USD")
        ps, ss = inst.price_scale, inst.size_scale
        bids = [(to_fixed(p, ps), to_fixed(q, ss)) for p, q in book.top("bid", depth)]
        asks = [(to_fixed(p, ps), to_fixed(q, ss)) for p, q in book.top("ask", depth)]
        return bids, asks

    def inject_gap(self) -> None:
        self.fake.bad_checksum(1)

    def rate_limit_rest(self) -> None:
        self.fake.rate_limit_next(1)

    def rate_limit_orders(self, client: Any) -> None:
        # Kraken's trading limit is its per-pair counter, which the client keeps as Kraken does:
        # full means the venue would answer ``EOrder:Rate limit exceeded``
        client.counters[self.symbol].fill()

    async def fill(self, cid: str, qty: int | None, inst: Instrument) -> None:
        await self.fake.fill_order(cid, None if qty is None else to_decimal(qty, inst.size_scale))

    def qty(self, inst: Instrument) -> int:
        return 10**5  # 0.001 BTC

    def unfundable_qty(self, inst: Instrument) -> int:
        return 10**4 * 10**8  # 10,000 BTC


# --- Coinbase --------------------------------------------------------------------------------------
class CoinbaseHarness(VenueHarness):
    venue = "coinbase"
    symbol = "BAND-GBP"
    KEY, PHRASE = "conformance-coinbase-key", "conformance-passphrase"
    SECRET = base64.b64encode(b"conformance-coinbase-secret").decode()

    async def start(self) -> None:
        from sim.fake_coinbase import FakeCoinbase

        self.fake = FakeCoinbase(
            api_key=self.KEY,
            api_secret=self.SECRET,
            passphrase=self.PHRASE,
            interval_s=0.002,
            heartbeat_interval_s=0.2,
            balances={"GBP": "1000", "BAND": "50"},
        )
        await self.fake.start()
        self.fake.pause()  # the replay moves only when a test advances it

    def adapter(self) -> Any:
        from venues.coinbase.adapter import CoinbaseAdapter
        from venues.coinbase.config import Credentials, load_config

        fc = self.fake
        config = load_config(
            overrides={
                "rest_url": fc.rest_url,
                "ws_url": fc.ws_url,
                "user_ws_url": fc.ws_url,
                "symbols": [self.symbol],
                "poll_interval_s": 0.05,
            },
            env={},
        )
        config = dataclasses.replace(config, reconnect=dataclasses.replace(config.reconnect, initial_s=0.05, max_s=0.2))
        return CoinbaseAdapter(config, Credentials(self.KEY, self.SECRET, self.PHRASE))

    async def advance(self, n: int) -> None:
        """Let the timed replay run ``n`` more events, then hold it again."""
        import asyncio

        fc = self.fake
        target = min(fc.pos + n, len(fc.market.events))
        fc.resume()
        deadline = time.monotonic() + 10
        while fc.pos < target and not fc.done.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        fc.pause()

    def fake_levels(self, inst: Instrument, depth: int) -> tuple[Levels, Levels]:
        bids, asks = self.fake.book(self.symbol, depth)
        ps, ss = inst.price_scale, inst.size_scale
        fixed = [[(to_fixed(p, ps), to_fixed(q, ss)) for p, q in side] for side in (bids, asks)]
        return fixed[0], fixed[1]

    def inject_gap(self) -> None:
        self.fake.drop_updates(1)

    def rate_limit_rest(self) -> None:
        self.fake.fail_next_requests(1, 429, retry_after=0.2)

    def rate_limit_orders(self, client: Any) -> None:
        self.fake.fail_next_requests(1, 429, retry_after=0.2)

    async def fill(self, cid: str, qty: int | None, inst: Instrument) -> None:
        self.fake.fill_order(cid, None if qty is None else to_decimal(qty, inst.size_scale))

    def qty(self, inst: Instrument) -> int:
        return 2 * 10**8  # 2 BAND

    def unfundable_qty(self, inst: Instrument) -> int:
        return 500 * 10**8  # 500 BAND: more GBP than the account holds


HARNESSES: dict[str, Callable[[Path], VenueHarness]] = {
    "binance": BinanceHarness,
    "kraken": KrakenHarness,
    "coinbase": CoinbaseHarness,
}


# --- what the tests observe ------------------------------------------------------------------------
async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.005)


class Market:
    """The engine's side of a feed: counts what strategies would have been shown."""

    def __init__(self) -> None:
        self.books = 0
        self.invalid_served = 0  # on_book with an invalid book: must stay 0
        self.invalid: list[str] = []  # on_book_invalid reasons, in order
        self.valid_at_invalid = 0  # on_book_invalid while the book still said valid: must stay 0
        self.incidents: list[Any] = []
        self.trades: list[Any] = []

    def callbacks(self) -> Any:
        from engine.venue import FeedCallbacks

        return FeedCallbacks(self.on_book, self.trades.append, self.incidents.append, on_book_invalid=self.on_invalid)

    def on_book(self, book: Any) -> None:
        self.books += 1
        if not book.valid:
            self.invalid_served += 1

    def on_invalid(self, book: Any, reason: str) -> None:
        self.invalid.append(reason)
        if book.valid:
            self.valid_at_invalid += 1

    def kinds(self) -> list[str]:
        return [i.kind for i in self.incidents]


class Sink:
    """An ``ExecSink`` keeping every report and incident."""

    def __init__(self) -> None:
        self.reports: list[Any] = []
        self.incidents: list[Any] = []

    def on_exec_report(self, report: Any) -> None:
        self.reports.append(report)

    def on_incident(self, incident: Any) -> None:
        self.incidents.append(incident)

    def of(self, cid: str, kind: str | None = None) -> list[Any]:
        return [r for r in self.reports if r.client_order_id == cid and (kind is None or r.kind == kind)]

    def kinds(self, cid: str) -> list[str]:
        return [r.kind for r in self.of(cid)]

    def filled(self, cid: str) -> int:
        return sum(r.qty for r in self.of(cid, "fill"))
