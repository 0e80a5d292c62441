"""A bad day at the exchange, against paper and live sessions over loopback.

One session per mode trades the real capture through the fake Binance (``sim/fake_binance``)
while the venue misbehaves, one fault after another: gaps, disconnects, silence, snapshot
failures (5xx, hangs, 429, 418, a REST outage), and hostile frames over the real socket (an
implausible id, ids beyond int64, a zero-price level, a crossed book, a snapshot claiming 2^62,
trade prints far off the book, garbage, invalid UTF-8, a burst of ``serverShutdown``).

A ``Witness`` strategy quotes both sides of BTC-USDT and writes down every book it is shown and
everything it is told. For each fault the test asserts detection (the incident rows), recovery
(the book valid again, the witness quoting again), and that trading was not blind: resting orders
were pulled when the book went invalid, an order tried meanwhile was refused, no book was shown
and nothing filled until the book was valid again. Across the whole day, every book shown equals
the truth at its update id, replayed independently from the clean capture, and none is crossed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.eventlog_schema import INCIDENT_KINDS
from engine.model import OrderStatus, Side
from engine.runners.session import open_session
from engine.runners.spec import load_run_spec
from engine.strategy import Strategy
from venues.binance.adapter import BinanceAdapter
from venues.binance.config import Credentials, load_config

server = pytest.importorskip("sim.fake_binance.server")

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO.parent / "shared" / "data" / "real" / "binance_spot_hftbacktest"
DAYS = [CAPTURES / "btcusdt_20240808.gz", CAPTURES / "btcusdt_20240809.gz"]
KEY, SECRET = "fault-suite-key-" + "k" * 48, "fault-suite-secret-" + "s" * 45
SPEED = 4  # the capture at four times real time: a depth message every 25 ms
STALE_S = 2.0  # the feed's stale-data timeout here (Binance's config says 5 s)
TOP = 5  # levels per side compared with the truth
QUIET_BOOKS = 40  # books shown between two faults (a second of the capture at SPEED)


# --- the truth, replayed from the clean capture -----------------------------------------------
def truth_by_update_id(paths: list[Path], symbol: str = "BTCUSDT") -> dict[int, tuple[tuple, tuple]]:
    """The top ``TOP`` levels per side (Decimal strings) after each depth message of the capture,
    by its final update id, starting from the capture's REST snapshot (as the fake does). Plain
    dicts and Decimals: nothing of the engine's book is used."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    out: dict[int, tuple[tuple, tuple]] = {}
    stream = f"{symbol.lower()}@depth"

    def top() -> tuple[tuple, tuple]:
        b = tuple(sorted(bids.items(), reverse=True)[:TOP])
        a = tuple(sorted(asks.items())[:TOP])
        return b, a

    messages = []
    for path in paths:
        with gzip.open(path, "rt") as f:
            messages += [json.loads(line.partition(" ")[2]) for line in f]
    # the snapshot was taken while the stream ran: diffs received before it may reach past it
    snap = next(m for m in messages if "lastUpdateId" in m)
    bids = {Decimal(p): Decimal(q) for p, q in snap["bids"] if Decimal(q)}
    asks = {Decimal(p): Decimal(q) for p, q in snap["asks"] if Decimal(q)}
    last = snap["lastUpdateId"]
    out[last] = top()
    for msg in messages:
        if not msg.get("stream", "").startswith(stream):
            continue
        d = msg["data"]
        if d["u"] <= last:
            continue
        assert d["U"] <= last + 1, f"the capture itself has a gap at {d['U']}"
        for side, levels in ((bids, d["b"]), (asks, d["a"])):
            for p, q in levels:
                if Decimal(q):
                    side[Decimal(p)] = Decimal(q)
                else:
                    side.pop(Decimal(p), None)
        last = d["u"]
        out[last] = top()
    return out


@pytest.fixture(scope="module")
def truth() -> dict[int, tuple[tuple, tuple]]:
    for p in DAYS:
        if not p.exists():
            pytest.skip(f"real capture not found at {p}")
    return truth_by_update_id(DAYS)


# --- the strategy that watches -------------------------------------------------------------------
class Witness(Strategy):
    """Quotes one bid and one ask ``offset_bps`` outside the touch (0: at the touch), moving a quote
    that drifted more than ``requote_bps``, at most every ``min_requote_ms``. Writes down every book
    it is shown (update id, top levels), every invalid/valid notice with the orders it had open,
    and tries one order whenever it is told its book is invalid (the order manager must refuse)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        p = self.params
        self.offset = float(p.get("offset_bps", 0.0)) / 1e4
        self.requote = float(p.get("requote_bps", 0.0)) / 1e4
        self.min_gap_ns = int(float(p.get("min_requote_ms", 50)) * 1e6)
        self.size = float(p.get("size", 0.001))
        self.shown: list[tuple[int, int, tuple, tuple]] = []  # (now, update_id, bids, asks) fixed
        self.notices: list[dict] = []
        self.fills: list[tuple[int, str, float, int]] = []  # (seen at, client id, price, venue time)
        self.blind_tries: list = []
        self.last_quote = 0
        self.hold = False  # leave the quotes as they are (while a fault is being set up)

    def on_book(self, book) -> None:
        now = self.now
        self.shown.append((now, book.update_id, tuple(book.levels(1, TOP)), tuple(book.levels(-1, TOP))))
        if self.hold or now - self.last_quote < self.min_gap_ns:
            return
        self.last_quote = now
        inst = book.instrument
        want = {Side.BUY: book.best_bid * (1 - self.offset), Side.SELL: book.best_ask * (1 + self.offset)}
        mine = {o.side: o for o in self.open_orders() if not o.cancel_requested}
        for side, px in want.items():
            o = mine.get(side)
            if o is None:
                self.submit_limit(side, px, self.size, post_only=True)
            elif abs(inst.price(o.price) - px) > px * self.requote:
                self.cancel(o)

    def on_book_invalid(self, book, reason: str) -> None:
        orders = self.open_orders()
        self.notices.append(
            {
                "kind": "invalid",
                "reason": reason,
                "now": self.now,
                "open": [o.client_order_id for o in orders],
                "pulled": all(o.cancel_requested for o in orders),
                "orders": orders,
            }
        )
        self.blind_tries.append(self.submit_limit(Side.BUY, book.best_bid or 1.0, self.size, post_only=True))

    def on_book_valid(self, book) -> None:
        # what became of the orders pulled at the last invalid notice, as the book comes back
        pulled = next((n["orders"] for n in reversed(self.notices) if n["kind"] == "invalid"), [])
        self.notices.append({"kind": "valid", "now": self.now, "pulled_status": [o.status.value for o in pulled]})

    def on_fill(self, fill) -> None:
        self.fills.append((self.now, fill.client_order_id, fill.price, fill.ts_event))

    def quoting(self) -> bool:
        live = [o for o in self.open_orders() if not o.cancel_requested and o.venue_order_id]
        return {o.side for o in live} == {Side.BUY, Side.SELL}


# --- the day ----------------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    t0: int  # wall ns at the injection
    incidents: Counter  # new incident rows during the step, by kind
    notices: list[dict]  # what the witness was told during the step
    fills: int = 0  # witness fills while the fault was held (paused replay)
    extra: dict = field(default_factory=dict)


@dataclass
class Day:
    mode: str
    fb: server.FakeBinance
    session: object
    witness: Witness
    steps: list[Step] = field(default_factory=list)

    @property
    def engine(self):
        return self.session.node.engine

    @property
    def feed(self):
        return self.session.node.feeds["binance"]

    def counts(self) -> Counter:
        return Counter(self.engine.incident_counts)

    def book_valid(self) -> bool:
        feed = self.session.node.feeds.get("binance")  # made when the session starts
        if feed is None:
            return False
        return ("binance", "BTC-USDT") not in self.engine.invalid_books and feed.syncs["BTC-USDT"].book.valid

    def last_id(self) -> int:
        return self.fb.last_update_id("BTCUSDT")

    def book_id(self) -> int:
        """The last update id the session's book applied."""
        feed = self.session.node.feeds.get("binance")
        return feed.syncs["BTC-USDT"].book.update_id if feed is not None else 0


async def until(
    cond: Callable[[], bool], what: str, timeout: float = 60.0, state: Callable[[], object] | None = None
) -> None:
    """Wait on a condition, not a clock: generous, so a loaded machine only makes it slower."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            seen = f" (seen: {state()})" if state is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{seen}")
        await asyncio.sleep(0.01)


async def settled(day: Day) -> None:
    await until(lambda: day.book_valid() and day.witness.quoting(), "a valid book and the witness quoting both sides")


def depth(U: int, u: int, bids=(), asks=()) -> bytes:
    return json.dumps(
        {
            "e": "depthUpdate",
            "E": int(time.time() * 1000),
            "s": "BTCUSDT",
            "U": U,
            "u": u,
            "b": [list(x) for x in bids],
            "a": [list(x) for x in asks],
        }
    ).encode()


def trade(price: str, tid: int) -> bytes:
    ms = int(time.time() * 1000)
    return (
        f'{{"e":"trade","E":{ms},"s":"BTCUSDT","t":{tid},"p":"{price}","q":"0.50000000","T":{ms},"m":true,"M":true}}'
    ).encode()


async def inject_paused(day: Day, frames: list[tuple[str, bytes]], wait_for: Callable[[], bool], what: str) -> int:
    """With the replay held (no real message moves the chain or prints a trade), send ``frames``,
    wait for their detection, then let the replay go on. Returns the witness fills that happened
    while the replay was held (only the injected frames could have made one)."""
    day.fb.pause()
    try:
        # what the fake sent before the pause may still be in flight on a loaded machine: a fill it
        # makes is not the injected frames' doing (depth and trades share one ordered connection)
        await until(lambda: day.book_id() >= day.last_id(), "the client to catch up with the paused replay")
        # and a fill the venue made before the frames went out may still be on its way (paper: the
        # simulated venue answers after its response latency): a fill is the frames' doing only if
        # the venue made it after they were sent
        fills, sent = len(day.witness.fills), time.time_ns()
        for kind, payload in frames:
            assert day.fb.inject(kind, payload) >= 1, f"nobody subscribed to {kind}"
        await until(wait_for, what)
        await asyncio.sleep(0.2)  # a fill the frames caused would be reported by now (paper: 2 ms)
        return sum(1 for f in day.witness.fills[fills:] if f[3] >= sent)
    finally:
        day.fb.resume()


# Each fault: (name, modes, the injection). Each returns the fills seen while its frames were held
# (hostile frames) or None.
async def gap(day: Day) -> None:
    day.fb.drop_diffs(3)


async def disconnect(day: Day) -> None:
    day.fb.disconnect(streams=True, abrupt=True)


async def silence(day: Day) -> None:
    day.fb.silence(STALE_S + 1.5)


async def snapshot_5xx(day: Day) -> None:
    day.fb.fail_next_requests(2, 503, path="/api/v3/depth")
    day.fb.drop_diffs(2)


async def snapshot_hangs(day: Day) -> None:
    day.fb.hang_next_requests(1, path="/api/v3/depth")
    day.fb.drop_diffs(2)


async def snapshot_429(day: Day) -> None:
    day.fb.fail_next_requests(1, 429, retry_after=1, path="/api/v3/depth")
    day.fb.drop_diffs(2)


async def snapshot_418(day: Day) -> None:
    day.fb.fail_next_requests(1, 418, retry_after=1, path="/api/v3/depth")
    day.fb.drop_diffs(2)


async def rest_outage(day: Day) -> None:
    day.fb.outage(2.0, "refuse")
    day.fb.drop_diffs(2)


async def bad_snapshot(day: Day) -> None:
    day.fb.bad_snapshots(1, 2**62)
    day.fb.drop_diffs(2)


def _seen(day: Day, kind: str, before: Counter) -> Callable[[], bool]:
    return lambda: day.counts()[kind] > before[kind]


async def id_jump(day: Day) -> int:
    last, before = day.last_id(), day.counts()
    return await inject_paused(
        day, [("depth@100ms", depth(last + 1, last + 1 + 10**9))], _seen(day, "id_jump", before), "id_jump"
    )


async def id_beyond_int64(day: Day) -> int:
    last, before = day.last_id(), day.counts()
    return await inject_paused(
        day, [("depth@100ms", depth(last + 1, 2**64 + 5))], _seen(day, "decode_error", before), "decode_error"
    )


async def zero_price_level(day: Day) -> int:
    last, before = day.last_id(), day.counts()
    frame = depth(last + 1, last + 1, bids=[("0.00000000", "1.00000000")])
    return await inject_paused(day, [("depth@100ms", frame)], _seen(day, "bad_level", before), "bad_level")


async def crossed(day: Day) -> int:
    last, before = day.last_id(), day.counts()
    over = f"{day.fb.book('BTCUSDT').best_ask + 5.0:.8f}"
    frame = depth(last + 1, last + 1, bids=[(over, "1.00000000")])
    return await inject_paused(day, [("depth@100ms", frame)], _seen(day, "crossed_book", before), "crossed_book")


async def trade_prints(day: Day) -> int:
    before = day.counts()
    frames = [("trade", trade("0.00000001", 9_000_000_001)), ("trade", trade("99999999.00000000", 9_000_000_002))]
    frames.append(("trade", trade("99999999999999999999999.00000000", 9_000_000_003)))  # beyond int64
    return await inject_paused(
        day,
        frames,
        lambda: (day.counts() - before)["bad_trade"] >= 2 and (day.counts() - before)["decode_error"] >= 1,
        "two bad_trade and one decode_error",
    )


async def garbage(day: Day) -> int:
    before = day.counts()
    frames = [
        # JSON of the wrong shape on the depth stream: that book may have lost a message, so it is
        # invalid until the next diff shows whether the chain held
        ("depth@100ms", b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":"x","u":[],"b":5,"a":null}'),
        # not even JSON: no stream to blame (the next diff's ids say whether anything was lost)
        ("depth@100ms", b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":'),
        ("trade", b"\x00\x01 not json"),
    ]
    return await inject_paused(day, frames, _seen(day, "decode_error", before), "decode_error")


async def invalid_utf8(day: Day) -> int:
    before = day.counts()
    frame = b'{"e":"depthUpdate","E":1,"s":"BTC\xff\xfeUSDT","U":1,"u":2,"b":[],"a":[]}'
    return await inject_paused(day, [("depth@100ms", frame)], _seen(day, "disconnect", before), "the 1007 close")


async def shutdown_burst(day: Day) -> None:
    day.fb.server_shutdown(close_after=0.5, repeat=300)


async def pull_refused(day: Day) -> None:
    # the cancels that pull the quotes are refused (429), and the book stays invalid a while (its
    # snapshot hangs): the engine must send them again, not leave the quotes resting blind
    day.fb.fail_next_requests(2, 429, retry_after=1, path="/api/v3/order")
    day.fb.hang_next_requests(1, path="/api/v3/depth")
    day.fb.drop_diffs(2)


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Day], Awaitable[int | None]]
    kinds: tuple[str, ...]  # incident kinds it must raise
    invalid: bool = True  # whether the book must go invalid
    modes: tuple[str, ...] = ("paper", "live")
    pulled_before_valid: bool = False  # every pulled order is gone before the book is valid again


FAULTS = [
    Fault("gap", gap, ("sequence_gap",)),
    Fault("disconnect", disconnect, ("disconnect",)),
    Fault("stale", silence, ("stale_data",)),
    Fault("snapshot_5xx", snapshot_5xx, ("sequence_gap", "venue_error", "venue_restored")),
    Fault("snapshot_hangs", snapshot_hangs, ("sequence_gap", "venue_unreachable", "venue_restored")),
    Fault("snapshot_429", snapshot_429, ("sequence_gap", "rate_limit")),
    Fault("snapshot_418", snapshot_418, ("sequence_gap", "ip_banned")),
    Fault("rest_outage", rest_outage, ("sequence_gap", "venue_unreachable", "venue_restored")),
    Fault("bad_snapshot", bad_snapshot, ("sequence_gap", "id_jump")),
    Fault("id_jump", id_jump, ("id_jump",)),
    Fault("id_beyond_int64", id_beyond_int64, ("decode_error",)),
    Fault("zero_price_level", zero_price_level, ("bad_level",)),
    Fault("crossed", crossed, ("crossed_book",)),
    Fault("trade_prints", trade_prints, ("bad_trade", "decode_error"), invalid=False),
    Fault("garbage", garbage, ("decode_error",)),
    Fault("invalid_utf8", invalid_utf8, ("disconnect",)),
    Fault("server_shutdown_burst", shutdown_burst, ("disconnect",)),
    Fault(
        "pull_refused",
        pull_refused,
        ("sequence_gap", "rate_limit", "venue_unreachable"),
        modes=("live",),
        pulled_before_valid=True,
    ),
]
MODES = ("paper", "live")


def faults(mode: str) -> list[Fault]:
    return [f for f in FAULTS if mode in f.modes]


async def bad_day(mode: str, out: Path) -> Day:
    live = mode == "live"
    async with server.FakeBinance(data=DAYS, api_key=KEY, api_secret=SECRET, speed=SPEED) as fb:
        overrides = {
            "rest_url": fb.rest_url,
            "ws_url": fb.ws_url,
            "ws_api_url": fb.ws_api_url,
            "stale_data_timeout_s": STALE_S,
            "http_timeout_s": 2.0,
        }
        cfg = load_config(REPO / "config" / "exchanges" / "binance.json", overrides=overrides, env={})
        adapter = BinanceAdapter(cfg, Credentials(KEY, SECRET) if live else None)
        config = REPO / "config" / mode / "market_maker_binance.json"
        spec = load_run_spec(config, mode=mode)
        # live: quotes well away from the touch (they rest, they do not trade); paper: at the touch,
        # where the simulated venue fills them, so "no fill while blind" is not vacuous
        params = (
            {"offset_bps": 30, "requote_bps": 15, "min_requote_ms": 500, "size": 0.0002}
            if live
            else {"offset_bps": 0, "requote_bps": 0, "min_requote_ms": 50, "size": 0.001}
        )
        witness = Witness("witness", "binance", ["BTC-USDT"], params)
        session = await open_session(spec, mode, out, {"binance": adapter}, strategies=[witness])
        stop = asyncio.Event()
        task = asyncio.create_task(session.run(stop))
        day = Day(mode, fb, session, witness)
        try:
            await settled(day)
            for fault in faults(mode):
                name, inject, kinds, goes_invalid = fault.name, fault.inject, fault.kinds, fault.invalid
                await settled(day)
                witness.hold = True  # both quotes rest as the fault hits
                t0, before, seen, filled = time.time_ns(), day.counts(), len(witness.notices), len(witness.fills)
                fills = await inject(day)
                await until(
                    lambda kinds=kinds, before=before: all(day.counts()[k] > before[k] for k in kinds),
                    f"{name}: incidents {kinds}",
                    state=lambda before=before: dict(day.counts() - before),
                )
                if goes_invalid:
                    told = lambda seen=seen: any(n["kind"] == "invalid" for n in witness.notices[seen:])  # noqa: E731
                    await until(told, f"{name}: invalid")
                witness.hold = False
                await settled(day)
                # trade on between faults: books shown after a recovery are checked against the truth too
                shown = len(witness.shown)
                more = lambda shown=shown: len(witness.shown) >= shown + QUIET_BOOKS  # noqa: E731
                await until(more, f"{name}: books after recovery")
                step = Step(name, t0, day.counts() - before, witness.notices[seen:], fills or 0)
                step.extra["filled_since"] = len(witness.fills) - filled
                if live:
                    step.extra["venue_open"] = {o.client_order_id for o in fb.exchange.orders.values() if o.is_open}
                    step.extra["engine_open"] = {o.client_order_id for o in witness.open_orders()}
                day.steps.append(step)
            # a quiet spell at the end: the paper witness gets fills
            await until(lambda: len(witness.fills) >= 1 or live, "a fill")
        finally:
            stop.set()
            day.result = await task
    return day


_DAYS: dict[str, Day] = {}


def the_day(mode: str, tmp_path_factory, truth) -> Day:
    """Each mode's day is run once per test session, whichever test asks first."""
    if mode not in _DAYS:
        out = tmp_path_factory.mktemp(f"bad_day_{mode}") / "run"
        d = asyncio.run(bad_day(mode, out))
        d.out = out
        d.truth = truth
        _DAYS[mode] = d
    return _DAYS[mode]


@pytest.fixture(scope="module", params=MODES)
def day(request, tmp_path_factory, truth) -> Day:
    return the_day(request.param, tmp_path_factory, truth)


def windows(day: Day) -> list[tuple[int, int, str]]:
    """Every span the witness's book was invalid: (told invalid, told valid again, reason)."""
    out, start, reason = [], None, ""
    for n in day.witness.notices:
        if n["kind"] == "invalid" and start is None:
            start, reason = n["now"], n["reason"]
        elif n["kind"] == "valid" and start is not None:
            out.append((start, n["now"], reason))
            start = None
    assert start is None, "the session ended with the book invalid"
    return out


# --- per fault ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("mode", "fault"), [(m, f.name) for m in MODES for f in faults(m)])
def test_each_fault_is_detected_and_recovered_from(mode: str, fault: str, tmp_path_factory, truth) -> None:
    day = the_day(mode, tmp_path_factory, truth)
    step = next(s for s in day.steps if s.name == fault)
    spec = next(f for f in FAULTS if f.name == fault)
    kinds, goes_invalid = spec.kinds, spec.invalid
    for k in kinds:
        assert step.incidents[k] >= 1, f"{fault}: no {k} incident ({dict(step.incidents)})"
    told = [n for n in step.notices if n["kind"] == "invalid"]
    if goes_invalid:
        assert told, f"{fault}: the strategy was never told its book was invalid"
        # the witness was quoting when the fault hit: its orders were pulled as the book went invalid
        first = told[0]
        assert first["pulled"], f"{fault}: resting orders not pulled: {first}"
        # both quotes rested when the fault hit; only fills can have taken them before it was seen
        assert len(first["open"]) + step.extra["filled_since"] >= 2, f"{fault}: {first}"
        assert step.notices[-1]["kind"] == "valid"
    else:
        assert not told, f"{fault}: the book went invalid ({told[0]['reason']})"
    assert step.fills == 0, f"{fault}: a fill while the hostile frames were held"
    if spec.pulled_before_valid:  # the refused cancels were sent again while the book was invalid
        valid = next(n for n in step.notices if n["kind"] == "valid")
        assert told[0]["open"] and all(s == "canceled" for s in valid["pulled_status"]), valid
    if day.mode == "live":  # the venue's open orders are what the engine thinks they are
        assert step.extra["venue_open"] == step.extra["engine_open"]


# --- the whole day --------------------------------------------------------------------------------
def test_every_book_shown_equals_the_truth_and_none_is_crossed(day: Day) -> None:
    w = day.witness
    inst = day.feed.syncs["BTC-USDT"].book.instrument
    ps, ss = Decimal(10) ** inst.price_scale, Decimal(10) ** inst.size_scale
    assert len(w.shown) > QUIET_BOOKS * len(faults(day.mode))
    for _, uid, bids, asks in w.shown:
        assert bids and asks and bids[0][0] < asks[0][0], f"crossed or one-sided book shown at {uid}"
        want = day.truth.get(uid)
        assert want is not None, f"a book shown at update id {uid}, which the capture never reached"
        tb, ta = want
        assert bids == tuple((int(p * ps), int(q * ss)) for p, q in tb), f"bids differ from the truth at {uid}"
        assert asks == tuple((int(p * ps), int(q * ss)) for p, q in ta), f"asks differ from the truth at {uid}"


def test_no_book_no_order_and_no_fill_while_blind(day: Day) -> None:
    spans = windows(day)
    assert len(spans) >= sum(1 for f in faults(day.mode) if f.invalid)
    w = day.witness
    inside = lambda t: any(a < t < b for a, b, _ in spans)  # noqa: E731
    assert not [s for s in w.shown if inside(s[0])], "a book was shown while invalid"
    # every order tried while blind was refused by the order manager, never sent
    assert w.blind_tries and all(o.status is OrderStatus.REJECTED for o in w.blind_tries)
    assert all(o.reason.startswith("Trading paused: binance BTC-USDT order book not valid") for o in w.blind_tries)
    run = day.out
    orders = pq.read_table(run / "orders.parquet").to_pylist()
    submits = [o for o in orders if o["event"] == "submit" and o["strategy_id"] == "witness"]
    assert submits and not [o for o in submits if inside(o["ts"])], "an order went out while the book was invalid"
    fills = pq.read_table(run / "fills.parquet").to_pylist()
    # judged by when the venue made the fill: one it made while the book was still valid may reach
    # us a moment later, after the book went invalid (paper: the simulated venue's response latency)
    assert not [f for f in fills if inside(f["ts_event"])], "a fill made while the book was invalid"
    if day.mode == "paper":  # the witness does trade when the book is good
        assert fills


def test_every_pulled_order_ended_cancelled(day: Day) -> None:
    pulled = [o for n in day.witness.notices if n["kind"] == "invalid" for o in n["orders"]]
    assert pulled
    for o in pulled:
        # (an order still on its way when the book went invalid is refused by the venue: paper's
        # simulated venue does not take orders on a book it cannot see)
        assert o.status in (OrderStatus.CANCELED, OrderStatus.FILLED, OrderStatus.REJECTED), (
            f"{o.client_order_id} ended {o.status}"
        )
    if day.mode == "live":
        venue = {o.client_order_id: o for o in day.fb.exchange.orders.values()}
        assert all(venue[o.client_order_id].status in ("CANCELED", "FILLED") for o in pulled if o.venue_order_id)
        assert not [o for o in venue.values() if o.is_open], "orders left open at the venue after stop"


def test_incident_rows_use_the_documented_kinds_and_the_run_closed(day: Day) -> None:
    rows = pq.read_table(day.out / "incidents.parquet").to_pylist()
    kinds = Counter(r["kind"] for r in rows)
    assert set(kinds) <= set(INCIDENT_KINDS), set(kinds) - set(INCIDENT_KINDS)
    for f in faults(day.mode):
        assert all(kinds[k] for k in f.kinds)
    manifest = json.loads((day.out / "manifest.json").read_text())
    assert manifest["status"] == "closed" and manifest["mode"] == day.mode


def test_a_server_shutdown_burst_is_a_few_lines_and_one_reconnect(day: Day) -> None:
    log = (day.out / "logs" / "exchanges.log").read_text()
    lines = [ln for ln in log.splitlines() if "serverShutdown" in ln]
    # 300 notices per connection (market data; the WS API too, live): what came, one summary of
    # the repeats, the reconnect and the close, not 300 lines
    for conn in ("market data", "ws api") if day.mode == "live" else ("market data",):
        mine = [ln for ln in lines if f"binance {conn}:" in ln]
        assert 1 <= len(mine) <= 4, mine
        assert any("299 more like this" in ln for ln in mine), mine
    step = next(s for s in day.steps if s.name == "server_shutdown_burst")
    rows = pq.read_table(day.out / "incidents.parquet").to_pylist()
    drops = Counter(r["detail"].split(":")[0] for r in rows if r["kind"] == "disconnect" and r["ts"] >= step.t0)
    # one drop per connection told (market data; live: the user-data stream on the WS API too)
    assert drops == (Counter({"market data": 1, "user data": 1}) if day.mode == "live" else Counter({"market data": 1}))


def report(day: Day) -> str:
    """The day as a table (``python tests/test_faults.py``): per fault the incident rows, how long
    after the injection the strategy was told, how long it was blind and how many orders it had
    pulled. Wall-clock figures: they vary with the machine's load."""
    lines = [f"{day.mode}: fault | incidents | told after ms | blind ms | orders pulled", "---|---|---|---|---"]
    for s in day.steps:
        told = [n for n in s.notices if n["kind"] == "invalid"]
        valid = [n for n in s.notices if n["kind"] == "valid"]
        inc = ", ".join(f"{k} {v}" for k, v in sorted(s.incidents.items()))
        if told:
            after = f"{(told[0]['now'] - s.t0) / 1e6:.0f}"
            blind = f"{(valid[-1]['now'] - told[0]['now']) / 1e6:.0f}"
            pulled = str(sum(len(n["open"]) for n in told))
        else:
            after = blind = pulled = "-"
        lines.append(f"{s.name} | {inc} | {after} | {blind} | {pulled}")
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("paper", "live"):
            print(report(asyncio.run(bad_day(mode, Path(tmp) / mode))), end="\n\n")
