"""``venues.common.loop``: whether a loop holds a callback's socket writes until it returns is
found by trying it on a real socket pair (``check_write_batching``), not read off the loop's type,
and the adapter corks its order connections whenever the answer is "sent at once"."""

from __future__ import annotations

import asyncio
import sys

import pytest
from test_binance_support import CREDS, loop_config

from engine.book import Book
from engine.model import Instrument
from engine.venue import FeedCallbacks
from venues.binance.adapter import BinanceAdapter
from venues.common.loop import (
    batches_writes,
    check_write_batching,
    new_event_loop,
    set_write_batching,
    write_batching_known,
)

#: what each uvloop release does, as measured with this check (``uvloop_expected``)
UVLOOP_HOLDS_WRITES = {"0.19": True, "0.20": True, "0.21": True, "0.22": True, "0.23": False}


def uvloop_expected() -> bool | None:
    uvloop = pytest.importorskip("uvloop")
    return UVLOOP_HOLDS_WRITES.get(".".join(uvloop.__version__.split(".")[:2]))


def test_asyncio_sends_at_once() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert write_batching_known(loop) is None
        assert batches_writes(loop) is False  # not running: checked on the spot
        assert write_batching_known(loop) is False
    finally:
        loop.close()


def test_uvloop_is_checked_not_assumed() -> None:
    """``new_event_loop`` checks the loop it makes; the answer is what this uvloop does (up to
    0.22 it holds the writes, 0.23 sends them at once)."""
    pytest.importorskip("uvloop")
    loop = new_event_loop()
    try:
        held = write_batching_known(loop)
        assert held is not None and batches_writes(loop) is held
        expected = uvloop_expected()
        if expected is not None:
            assert held is expected
    finally:
        loop.close()


def test_a_loop_is_judged_by_what_it_does_not_by_its_name() -> None:
    """A selector loop dressed up as uvloop (the old test read the type's module) is still found
    to send at once."""
    base = asyncio.SelectorEventLoop
    Disguised = type("Loop", (base,), {"__module__": "uvloop.fake"})
    loop = Disguised()
    try:
        assert type(loop).__module__.startswith("uvloop")
        assert batches_writes(loop) is False
    finally:
        loop.close()


async def test_a_running_loop_not_checked_yet_counts_as_sending_at_once() -> None:
    loop = asyncio.get_running_loop()
    assert write_batching_known(loop) is None
    assert batches_writes(loop) is False  # the safe answer until checked: the adapter corks
    assert await check_write_batching() is False
    assert write_batching_known(loop) is False


def _adapter_corks(loop_factory, held: bool | None) -> bool:
    """Whether ``market_data`` wraps the engine's callbacks in cork/uncork on such a loop, after
    the REST client started (which runs the check) and, with ``held``, the answer forced."""

    async def main() -> bool:
        cfg = loop_config()
        adapter = BinanceAdapter(cfg, CREDS)
        await adapter.rest.start()  # what load_instruments does first
        assert write_batching_known(asyncio.get_running_loop()) is not None
        if held is not None:
            set_write_batching(asyncio.get_running_loop(), held)
        try:
            inst = Instrument("binance", "BTC-USDT", "BTCUSDT", 8, 8, 1_000_000, 1_000)
            adapter.instruments = {"BTC-USDT": inst}

            def on_trade(_t: object) -> None:
                return None

            feed = adapter.market_data(
                {"BTC-USDT": Book(inst)}, FeedCallbacks(lambda b: None, on_trade, lambda i: None)
            )
            return feed.on_trade is not on_trade
        finally:
            adapter.feed = None  # never started
            await adapter.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def test_adapter_corks_on_asyncio() -> None:
    assert _adapter_corks(asyncio.new_event_loop, None) is True


@pytest.mark.parametrize("held", [True, False], ids=["holds", "sends-at-once"])
def test_adapter_corks_on_uvloop_exactly_when_it_does_not_hold_writes(held: bool) -> None:
    """Both outcomes of the check on uvloop: a release that holds a callback's writes (0.22) is
    left to batch them itself; one that sends at once (0.23) gets the adapter's corking."""
    uvloop = pytest.importorskip("uvloop")
    assert _adapter_corks(uvloop.new_event_loop, held) is (not held)


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop")
def test_adapter_follows_this_uvloops_own_answer() -> None:
    uvloop = pytest.importorskip("uvloop")
    expected = uvloop_expected()
    corks = _adapter_corks(uvloop.new_event_loop, None)
    if expected is not None:
        assert corks is (not expected)
