"""The market-data feed over real sockets: a loopback server replays the recorded NKNUSDT
combined stream (and serves the recorded REST snapshot); the feed must sync, match Binance's own
bookTicker, answer pings, reconnect after serverShutdown and disconnects, and report stale data."""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp import WSMsgType, web
from test_binance_support import FIXTURES, capture_log, fixture, http_server, loop_config, wait_until, ws_route

from engine.book import Book
from engine.events import Incident
from venues.binance.decode import BookTop
from venues.binance.feed import BinanceMarketData
from venues.binance.filters import SymbolFilters, to_instrument
from venues.binance.numbers import parse_fixed
from venues.binance.rest import BinanceRest
from venues.common.loop import run, uvloop_available

NKN = to_instrument(SymbolFilters("NKN-USDT", "NKNUSDT", "NKN", "USDT", tick=10_000, step=100_000_000))
FRAMES = [
    json.dumps(json.loads(line)["frame"])
    for line in (FIXTURES / "ws_capture_NKNUSDT_interleaved.jsonl").read_text().splitlines()
]
STREAMS = "nknusdt@depth@100ms/nknusdt@trade/nknusdt@bookTicker"


class Venue:
    """Loopback market-data server; ``script(ws, n)`` plays connection number ``n``."""

    def __init__(self, script, autoping: bool = True) -> None:
        self.script = script
        self.autoping = autoping
        self.connections = 0
        self.paths: list[str] = []
        self.depth_requests = 0

    def routes(self) -> list[web.RouteDef]:
        async def handler(ws: web.WebSocketResponse, request: web.Request) -> None:
            self.connections += 1
            self.paths.append(request.path_qs)
            await self.script(ws, self.connections)

        async def depth(request: web.Request) -> web.Response:
            self.depth_requests += 1
            return web.Response(body=fixture("depth_snapshot_NKNUSDT.json"), content_type="application/json")

        return [ws_route("/stream", handler, autoping=self.autoping), web.get("/api/v3/depth", depth)]


class Client:
    def __init__(self) -> None:
        self.tops: dict[int, tuple] = {}
        self.tickers: dict[int, tuple] = {}
        self.served_invalid = 0
        self.incidents: list[Incident] = []
        self.trades = 0

    def on_book(self, b: Book) -> None:
        if not b.valid or b.is_crossed():
            self.served_invalid += 1
        self.tops[b.update_id] = (b.best_bid_fixed, b.best_bid_size_fixed, b.best_ask_fixed, b.best_ask_size_fixed)

    def on_top(self, t: BookTop) -> None:
        self.tickers[t.update_id] = (t.bid, t.bid_qty, t.ask, t.ask_qty)

    def kinds(self) -> list[str]:
        return [i.kind for i in self.incidents]


async def run_feed(venue: Venue, body, tops: bool = True, **cfg_over) -> tuple[BinanceMarketData, Client]:
    async with http_server(venue.routes()) as url:
        cfg = loop_config(rest_url=url, ws_url=url.replace("http", "ws"), symbols=["NKN-USDT"], **cfg_over)
        client = Client()
        async with BinanceRest(cfg) as rest:
            feed = BinanceMarketData(
                cfg,
                rest,
                {"NKN-USDT": NKN},
                client.on_book,
                lambda t: None,
                client.incidents.append,
                client.on_top if tops else None,
            )
            feed.start()
            try:
                await body(feed, client)
            finally:
                await feed.stop()
    return feed, client


async def hold(ws: web.WebSocketResponse) -> None:
    """Keep the connection open until the client closes it."""
    async for _ in ws:
        pass


async def replay_all(ws: web.WebSocketResponse, n: int) -> None:
    for f in FRAMES:
        await ws.send_str(f)
    await hold(ws)


async def test_feed_syncs_and_equals_book_ticker() -> None:
    venue = Venue(replay_all)

    async def body(feed: BinanceMarketData, client: Client) -> None:
        await wait_until(lambda: feed.syncs["NKN-USDT"].applied == 149, what="149 diffs applied")

    with capture_log("market_data") as md, capture_log("exchanges") as ex:
        feed, client = await run_feed(venue, body)
    assert venue.paths == [f"/stream?streams={STREAMS}"]
    for channel in ("orderbook", "trades", "ticker"):
        assert md.grep(f"Subscribed to binance:NKN-USDT:{channel}")
    assert md.grep("subscribe")  # the guide greps lower-case "subscribe"
    assert any(re.search("orderbook.*NKN-USDT", m) for m in md.messages)  # and "orderbook.*<symbol>"
    assert ex.grep("WebSocket connected")
    shared = set(client.tops) & set(client.tickers)
    assert len(shared) == 19 and all(client.tops[u] == client.tickers[u] for u in shared)
    assert client.served_invalid == 0 and feed.decoder.malformed == 0
    assert venue.depth_requests == 1


async def test_book_tickers_kept_raw_until_read() -> None:
    """With no bookTicker consumer the feed keeps only the latest frame and decodes it on demand.
    Compact frames, as Binance sends them: the depth diffs take the fast path (BookSync.on_frame)."""
    compact = [json.dumps(json.loads(f), separators=(",", ":")) for f in FRAMES]
    tickers = [f for f in compact if "@bookTicker" in f[:40]]

    async def replay_compact(ws: web.WebSocketResponse, n: int) -> None:
        for f in compact:
            await ws.send_str(f)
        await hold(ws)

    venue = Venue(replay_compact)

    async def body(feed: BinanceMarketData, client: Client) -> None:
        await wait_until(lambda: feed.top_frames == len(tickers), what="every bookTicker seen")
        await wait_until(lambda: feed.syncs["NKN-USDT"].applied == 149, what="149 diffs applied")

    feed, client = await run_feed(venue, body, tops=False)
    last = json.loads(tickers[-1])["data"]
    top = feed.top("NKN-USDT")
    assert top is not None and top.update_id == last["u"] and not client.tickers
    assert (top.bid, top.ask) == (parse_fixed(last["b"]), parse_fixed(last["a"]))
    assert feed.top("BTC-USDT") is None and feed.decoder.malformed == 0
    want = {d["u"]: tuple(parse_fixed(d[k]) for k in "bBaA") for d in (json.loads(f)["data"] for f in tickers)}
    shared = set(client.tops) & set(want)
    assert len(shared) == 19 and all(client.tops[u] == want[u] for u in shared)
    assert client.served_invalid == 0 and feed.syncs["NKN-USDT"].gaps == 0


async def test_server_ping_is_answered() -> None:
    pongs: list[bytes] = []

    async def script(ws: web.WebSocketResponse, n: int) -> None:
        await ws.ping(b"binance-ping-1")
        async for msg in ws:
            if msg.type == WSMsgType.PONG:
                pongs.append(msg.data)
                break

    venue = Venue(script, autoping=False)  # the server's pong handling off, so the test sees the pong

    async def body(feed: BinanceMarketData, client: Client) -> None:
        await wait_until(lambda: bool(pongs), what="pong")

    await run_feed(venue, body)
    assert pongs == [b"binance-ping-1"]


async def test_server_shutdown_and_disconnect_reconnect() -> None:
    async def script(ws: web.WebSocketResponse, n: int) -> None:
        for f in FRAMES[:40]:
            await ws.send_str(f)
        if n == 1:
            await ws.send_bytes(fixture("server_shutdown.json"))
            await hold(ws)  # Binance closes a bit later; the client must not wait for it
        elif n == 2:
            await ws.close()  # abrupt end of the session
        else:
            for f in FRAMES[40:]:
                await ws.send_str(f)
            await hold(ws)

    venue = Venue(script)

    async def body(feed: BinanceMarketData, client: Client) -> None:
        await wait_until(
            lambda: (
                venue.connections >= 3
                and feed.syncs["NKN-USDT"].state == "synced"
                and feed.books["NKN-USDT"].update_id == 499870179
            ),
            timeout=10,
            what="third session synced",
        )

    feed, client = await run_feed(venue, body)
    assert feed.server_shutdowns == 1
    assert client.kinds().count("disconnect") == 2 and client.kinds().count("reconnect") == 2
    assert client.served_invalid == 0
    assert venue.depth_requests >= 3  # one snapshot per session


async def test_stale_data_reported_then_recovers() -> None:
    async def script(ws: web.WebSocketResponse, n: int) -> None:
        depth = [f for f in FRAMES if "@depth" in f]
        for f in depth[:60]:
            await ws.send_str(f)
        await asyncio.sleep(1.5)  # silence, connection still up (well past the 0.3 s limit, for a loaded CI)
        for f in depth[60:]:
            await ws.send_str(f)
        await hold(ws)

    venue = Venue(script)

    async def body(feed: BinanceMarketData, client: Client) -> None:
        await wait_until(lambda: "stale_data" in client.kinds(), timeout=5, what="stale incident")
        assert not feed.books["NKN-USDT"].valid
        await wait_until(
            lambda: feed.books["NKN-USDT"].update_id == 499870179 and feed.books["NKN-USDT"].valid,
            what="data flowing again",
        )
        seen.extend(client.kinds())

    seen: list[str] = []

    with capture_log("market_data") as md:
        _, client = await run_feed(venue, body, stale_data_timeout_s=0.3)
    assert seen.count("stale_data") == 1
    assert md.grep("Stale market data venue=binance symbol=NKN-USDT") and md.grep("Market data resumed")
    assert venue.connections == 1 and client.served_invalid == 0


async def test_silent_connection_is_replaced() -> None:
    async def script(ws: web.WebSocketResponse, n: int) -> None:
        for f in FRAMES[:10]:
            await ws.send_str(f)
        await hold(ws)

    venue = Venue(script)

    async def body(feed: BinanceMarketData, client: Client) -> None:
        await wait_until(lambda: venue.connections >= 2, timeout=5, what="reconnect after silence")

    with capture_log("exchanges") as ex:
        await run_feed(venue, body, stale_data_timeout_s=0.2, silence_reconnect_s=0.6)
    assert ex.grep("no data for") and ex.grep("WebSocket connection closed")


async def test_connection_rolled_over_before_the_venue_cuts_it() -> None:
    """Binance ends every connection at 24 h; the feed replaces it first (here after 1 s)."""

    async def script(ws: web.WebSocketResponse, n: int) -> None:
        for f in FRAMES:
            await ws.send_str(f)
            await asyncio.sleep(0.005)
        await hold(ws)

    venue = Venue(script)

    async def body(feed: BinanceMarketData, client: Client) -> None:
        await wait_until(lambda: venue.connections >= 2, timeout=5, what="rollover")

    with capture_log("exchanges") as ex:
        await run_feed(venue, body, websocket={"max_connection_age_s": 1.0})
    assert ex.grep("rolling over")


def test_feed_runs_on_uvloop() -> None:
    """The live path runs on uvloop: the same replay must sync there too."""
    assert uvloop_available()
    seen: dict[str, object] = {}

    async def main() -> None:
        seen["loop"] = type(asyncio.get_running_loop()).__module__
        venue = Venue(replay_all)

        async def body(feed: BinanceMarketData, client: Client) -> None:
            await wait_until(lambda: feed.syncs["NKN-USDT"].applied == 149, what="synced on uvloop")
            seen["valid"] = feed.books["NKN-USDT"].valid

        await run_feed(venue, body)

    run(main())
    assert str(seen["loop"]).startswith("uvloop") and seen["valid"] is True
