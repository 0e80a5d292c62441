"""Conformance, order entry: every venue's execution client against its fake over loopback.

The same cases for each venue: an order's life (accepted, a partial fill, modify or ``Order
modification not supported``, cancel), a taker fill, client ids made by the venue's own rules,
rejections in the guide's words (or the venue's, through its profile), rate limits (the venue's
429 or its own counter) as ``Rate limit exceeded`` with an incident, and reports never coming from
inside the call that caused them.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from harnesses import Sink, VenueHarness, until

from engine import events as ev
from engine.messages import INSUFFICIENT_BALANCE, ORDER_MODIFICATION_NOT_SUPPORTED, RATE_LIMIT_EXCEEDED
from engine.model import Instrument, OrderType, Side, TimeInForce
from engine.orders import Order
from engine.runners import registry
from engine.venue.profile import LOT_SIZE, NOTIONAL, POST_ONLY_WOULD_TAKE, PRICE_FILTER

_n = itertools.count(1)


def make_order(
    h: VenueHarness,
    side: Side,
    price: int,
    qty: int,
    tif: TimeInForce = TimeInForce.GTC,
    post_only: bool = False,
    cid: str = "",
) -> Order:
    ids = registry.profile(h.venue).client_ids
    cid = cid or ids.make(ids.prefix("conformance", "s1"), next(_n))
    return Order(cid, "conformance", h.venue, h.symbol, side, OrderType.LIMIT, price, qty, tif, post_only)


async def trading(h: VenueHarness) -> tuple[Any, Any, Instrument, Sink, list[Any]]:
    adapter = h.adapter()
    incidents: list[Any] = []
    adapter.set_incident_sink(incidents.append)
    try:
        inst = (await adapter.load_instruments([h.symbol]))[h.symbol]
        sink = Sink()
        client = await h.connect(adapter, sink)
        await until(lambda: adapter.status().order_entry_connected, what=f"{h.venue} order entry connected")
    except BaseException:
        await adapter.close()
        raise
    return adapter, client, inst, sink, incidents


def touch(h: VenueHarness, inst: Instrument) -> tuple[int, int]:
    bids, asks = h.fake_levels(inst, 1)
    return bids[0][0], asks[0][0]


async def test_order_life_accepted_partial_fill_modify_cancel(harness: VenueHarness) -> None:
    h = harness
    adapter, client, inst, sink, _ = await trading(h)
    try:
        profile = registry.profile(h.venue)
        assert client.supports_modify is profile.supports_modify
        bid, ask = touch(h, inst)
        qty = h.qty(inst)
        o = make_order(h, Side.BUY, bid - 20 * inst.tick, qty)
        assert profile.client_ids.valid(o.client_order_id)
        client.submit_order(o)
        assert sink.reports == []  # never from inside the call
        await until(lambda: sink.of(o.client_order_id, ev.ACCEPTED), what="accepted")
        acc = sink.of(o.client_order_id, ev.ACCEPTED)[0]
        assert acc.venue == h.venue and acc.symbol == h.symbol and acc.venue_order_id
        o.venue_order_id = acc.venue_order_id

        half = qty // 2
        await h.fill(o.client_order_id, half, inst)
        await until(lambda: sink.filled(o.client_order_id) == half, what="the partial fill")
        (fill,) = sink.of(o.client_order_id, ev.FILL)
        assert (fill.price, fill.liquidity, fill.venue_order_id) == (o.price, "maker", o.venue_order_id)
        assert fill.trade_id and fill.fee >= 0

        if client.supports_modify:
            client.modify_order(o, o.price - inst.tick, qty)
            await until(lambda: sink.of(o.client_order_id, ev.MODIFIED), what="modified")
            assert sink.of(o.client_order_id, ev.MODIFIED)[0].price == o.price - inst.tick
        else:
            client.modify_order(o, o.price - inst.tick, qty)
            await until(lambda: sink.of(o.client_order_id, ev.CANCEL_REJECTED), what="modify refused")
            assert sink.of(o.client_order_id, ev.CANCEL_REJECTED)[0].reason == ORDER_MODIFICATION_NOT_SUPPORTED

        client.cancel_order(o)
        await until(lambda: sink.of(o.client_order_id, ev.CANCELED), what="canceled")
        await asyncio.sleep(0.2)  # room for a late duplicate before counting
        kinds = sink.kinds(o.client_order_id)
        assert kinds.count(ev.ACCEPTED) == 1 and kinds.count(ev.FILL) == 1 and kinds.count(ev.CANCELED) == 1
        assert kinds[-1] == ev.CANCELED

        # a marketable IOC takes: filled as taker at no worse than its price
        t = make_order(h, Side.BUY, ask + 5 * inst.tick, qty, TimeInForce.IOC)
        client.submit_order(t)
        await until(lambda: sink.of(t.client_order_id, ev.FILL), what="taker fill")
        fills = sink.of(t.client_order_id, ev.FILL)
        assert all(f.liquidity == "taker" and ask <= f.price <= t.price for f in fills)
    finally:
        await adapter.close()


async def test_rejections_in_the_guides_words(harness: VenueHarness) -> None:
    h = harness
    adapter, client, inst, sink, _ = await trading(h)
    try:
        profile = registry.profile(h.venue)
        bid, ask = touch(h, inst)
        broke = make_order(h, Side.BUY, bid - 20 * inst.tick, h.unfundable_qty(inst))
        taker = make_order(h, Side.BUY, ask, h.qty(inst), TimeInForce.GTX, post_only=True)
        if inst.tick > 1:  # a price between two ticks
            bad = make_order(h, Side.BUY, bid - 20 * inst.tick + 1, h.qty(inst))
        elif inst.lot > 1:  # a size between two lots
            bad = make_order(h, Side.BUY, bid - 20 * inst.tick, h.qty(inst) + 1)
        else:  # below the minimum
            bad = make_order(h, Side.BUY, bid - 20 * inst.tick, max(inst.min_qty - 1, 1))
        wrong_id = make_order(h, Side.BUY, bid - 20 * inst.tick, h.qty(inst), cid="x" * 40)
        assert not profile.client_ids.valid(wrong_id.client_order_id)
        orders = (broke, taker, bad, wrong_id)
        for o in orders:
            client.submit_order(o)
        assert sink.reports == []
        await until(lambda: all(sink.of(o.client_order_id, ev.REJECTED) for o in orders), what="four rejections")
        reason = {o.client_order_id: sink.of(o.client_order_id, ev.REJECTED)[0].reason for o in orders}
        assert reason[broke.client_order_id] == INSUFFICIENT_BALANCE
        assert reason[taker.client_order_id] == profile.error(POST_ONLY_WOULD_TAKE).text
        filters = [profile.error(r).text for r in (PRICE_FILTER, LOT_SIZE, NOTIONAL)]
        assert any(reason[bad.client_order_id].startswith(t) for t in filters), reason[bad.client_order_id]
        assert reason[wrong_id.client_order_id]
        assert not any(sink.of(o.client_order_id, ev.ACCEPTED) for o in orders)
    finally:
        await adapter.close()


async def test_rate_limits_are_rate_limit_exceeded_with_an_incident(harness: VenueHarness) -> None:
    h = harness
    adapter, client, inst, sink, incidents = await trading(h)
    try:
        # REST (the account queries reconciliation makes)
        h.rate_limit_rest()
        with pytest.raises(Exception, match=RATE_LIMIT_EXCEEDED):
            await adapter.account().balances()
        assert "rate_limit" in [i.kind for i in incidents + sink.incidents]
        # an order
        before = len(incidents) + len(sink.incidents)
        bid, _ = touch(h, inst)
        o = make_order(h, Side.BUY, bid - 20 * inst.tick, h.qty(inst))
        h.rate_limit_orders(client)
        client.submit_order(o)
        await until(lambda: sink.of(o.client_order_id, ev.REJECTED), what="order refused for the rate limit")
        assert sink.of(o.client_order_id, ev.REJECTED)[0].reason == RATE_LIMIT_EXCEEDED
        await until(
            lambda: "rate_limit" in [i.kind for i in (incidents + sink.incidents)[before:]],
            what="a rate_limit incident for the order",
        )
    finally:
        await adapter.close()


async def test_order_entry_comes_back_after_a_disconnect(harness: VenueHarness) -> None:
    h = harness
    adapter, client, inst, sink, incidents = await trading(h)
    try:
        h.disconnect()
        await until(
            lambda: "disconnect" in [i.kind for i in incidents + sink.incidents], what="the private stream's drop"
        )
        await until(lambda: adapter.status().order_entry_connected, what="order entry reconnected")
        bid, _ = touch(h, inst)
        o = make_order(h, Side.BUY, bid - 20 * inst.tick, h.qty(inst))
        client.submit_order(o)
        await until(lambda: sink.of(o.client_order_id, ev.ACCEPTED), what="an order accepted after the reconnect")
        await h.fill(o.client_order_id, None, inst)
        await until(lambda: sink.filled(o.client_order_id) == o.qty, what="its fill reported")
        assert len(sink.of(o.client_order_id, ev.ACCEPTED)) == 1  # accepted once, not again after the drop
    finally:
        await adapter.close()


async def test_a_fill_while_the_private_stream_is_down_is_reported_after_the_reconnect(harness: VenueHarness) -> None:
    h = harness
    adapter, client, inst, sink, _ = await trading(h)
    try:
        bid, _ = touch(h, inst)
        o = make_order(h, Side.BUY, bid - 20 * inst.tick, h.qty(inst))
        client.submit_order(o)
        await until(lambda: sink.of(o.client_order_id, ev.ACCEPTED), what="accepted")
        o.venue_order_id = sink.of(o.client_order_id, ev.ACCEPTED)[0].venue_order_id
        h.disconnect()
        await until(lambda: not adapter.status().order_entry_connected, what="the drop noticed")
        await h.fill(o.client_order_id, None, inst)  # while nobody listens (reconnecting takes loop turns)
        await until(lambda: adapter.status().order_entry_connected, what="order entry reconnected")
        await until(
            lambda: sink.filled(o.client_order_id) == o.qty, what="the missed fill reported after the reconnect"
        )
        await asyncio.sleep(0.3)
        assert len(sink.of(o.client_order_id, ev.FILL)) == 1
    finally:
        await adapter.close()
