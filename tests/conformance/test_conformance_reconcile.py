"""Conformance, reconciliation: every venue's account queries give the same common records
(``VenueOrder``, ``VenueBalance``, ``VenueFill``) for the same account state, in the engine's
units, and an order taken over after a restart (``engine.reconcile.hand_over`` ->
``track_adopted``) reports its later fills once, and only what is new."""

from __future__ import annotations

import asyncio
import time
import uuid

from harnesses import Sink, VenueHarness, until
from test_conformance_orders import make_order, touch, trading

from engine import events as ev
from engine.model import OrderStatus, Side, TimeInForce
from engine.venue.account import VenueBalance, VenueFill, VenueOrder


async def test_account_queries_give_the_common_records(harness: VenueHarness) -> None:
    h = harness
    since = time.time_ns() - 60 * 10**9
    adapter, client, inst, sink, _ = await trading(h)
    try:
        bid, ask = touch(h, inst)
        rest = make_order(h, Side.BUY, bid - 20 * inst.tick, h.qty(inst))
        take = make_order(h, Side.BUY, ask + 5 * inst.tick, h.qty(inst), TimeInForce.IOC)
        client.submit_order(rest)
        client.submit_order(take)
        await until(lambda: sink.of(rest.client_order_id, ev.ACCEPTED), what="resting order accepted")
        await until(lambda: sink.of(take.client_order_id, ev.FILL), what="taker filled")
        await until(
            lambda: (
                any(k in (ev.EXPIRED, ev.CANCELED) for k in sink.kinds(take.client_order_id))
                or sink.filled(take.client_order_id) == take.qty
            ),
            what="taker done",
        )
        rest_id = sink.of(rest.client_order_id, ev.ACCEPTED)[0].venue_order_id
        take_id = sink.of(take.client_order_id, ev.FILL)[0].venue_order_id
        acct = adapter.account()

        (vo,) = await acct.open_orders([h.symbol])
        assert isinstance(vo, VenueOrder)
        assert (vo.venue, vo.symbol, vo.client_order_id, vo.venue_order_id) == (
            h.venue,
            h.symbol,
            rest.client_order_id,
            rest_id,
        )
        assert (vo.side, vo.price, vo.qty, vo.filled, vo.status) == (
            Side.BUY,
            rest.price,
            rest.qty,
            0,
            OrderStatus.OPEN,
        )

        bal = await acct.balances()
        assert all(isinstance(b, VenueBalance) and b.asset == a for a, b in bal.items())
        assert inst.base in bal and inst.quote in bal
        assert bal[inst.quote].locked > 0  # what the resting bid holds

        fills = await acct.recent_fills(h.symbol, since)
        assert fills and all(isinstance(f, VenueFill) and f.venue == h.venue and f.symbol == h.symbol for f in fills)
        assert [f.ts_event for f in fills] == sorted(f.ts_event for f in fills)  # oldest first
        reported = {(r.trade_id, r.price, r.qty, r.liquidity) for r in sink.of(take.client_order_id, ev.FILL)}
        listed = {(f.trade_id, f.price, f.qty, f.liquidity) for f in fills if f.venue_order_id == take_id}
        assert listed == reported and all(f.side is Side.BUY for f in fills)
        assert await acct.recent_fills(h.symbol, time.time_ns() + 3600 * 10**9) == []

        q = await acct.query_order(h.symbol, rest.client_order_id)
        assert q is not None and (q.venue_order_id, q.status) == (rest_id, OrderStatus.OPEN)
        done = await acct.query_order(h.symbol, take.client_order_id)
        assert done is not None and done.venue_order_id == take_id and done.status.is_terminal
        assert done.filled == sink.filled(take.client_order_id)
        assert await acct.query_order(h.symbol, str(uuid.uuid4())) is None
        by_id = await acct.query_order_by_id(h.symbol, take_id)
        assert by_id is not None and by_id.client_order_id == take.client_order_id

        assert await acct.cancel(vo) is True
        assert await acct.open_orders([h.symbol]) == []
        assert await acct.cancel(vo) is True  # already gone counts as done
        gone = await acct.query_order(h.symbol, rest.client_order_id)
        assert gone is not None and gone.status is OrderStatus.CANCELED
    finally:
        await adapter.close()


async def test_an_adopted_order_reports_its_later_fills_once(harness: VenueHarness) -> None:
    """A process places an order, part of it fills, the process dies; the next one adopts the
    order (reconciliation booked the first fill from the venue's trade list) and must report the
    rest when it fills, once, and not the part already booked."""
    h = harness
    first, client, inst, sink, _ = await trading(h)
    try:
        bid, _ = touch(h, inst)
        qty = h.qty(inst)
        o = make_order(h, Side.BUY, bid - 20 * inst.tick, qty)
        client.submit_order(o)
        await until(lambda: sink.of(o.client_order_id, ev.ACCEPTED), what="accepted")
        o.venue_order_id = sink.of(o.client_order_id, ev.ACCEPTED)[0].venue_order_id
        half = qty // 2
        await h.fill(o.client_order_id, half, inst)
        await until(lambda: sink.filled(o.client_order_id) == half, what="first fill, before the crash")
    finally:
        await first.close()

    second, client2, inst, sink2, _ = await trading(h)
    try:
        hook = getattr(client2, "track_adopted", None)
        assert callable(hook), f"{h.venue}: the execution client has no track_adopted (engine.reconcile.hand_over)"
        (vo,) = await second.account().open_orders([h.symbol])
        assert vo.client_order_id == o.client_order_id and vo.filled == half
        o.filled = vo.filled
        o.fill_cost = vo.filled * o.price
        o.status = OrderStatus.PARTIALLY_FILLED
        hook(o)  # what hand_over does
        await h.fill(o.client_order_id, None, inst)  # the rest fills at the venue
        await until(lambda: sink2.of(o.client_order_id, ev.FILL), what="the adopted order's fill")
        await asyncio.sleep(0.3)  # room for a duplicate (stream and poll) before counting
        fills = sink2.of(o.client_order_id, ev.FILL)
        assert len(fills) == 1, [(f.qty, f.trade_id) for f in fills]
        assert fills[0].qty == qty - half and fills[0].price == o.price and fills[0].liquidity == "maker"
        assert sink2.filled(o.client_order_id) + o.filled == qty
    finally:
        await second.close()


async def test_a_second_adopter_of_a_fresh_order_books_all_of_its_fill(harness: VenueHarness) -> None:
    """Adopted with nothing filled: its whole fill is new."""
    h = harness
    first, client, inst, sink, _ = await trading(h)
    try:
        bid, _ = touch(h, inst)
        o = make_order(h, Side.BUY, bid - 20 * inst.tick, h.qty(inst))
        client.submit_order(o)
        await until(lambda: sink.of(o.client_order_id, ev.ACCEPTED), what="accepted")
        o.venue_order_id = sink.of(o.client_order_id, ev.ACCEPTED)[0].venue_order_id
    finally:
        await first.close()
    second, client2, inst, sink2, _ = await trading(h)
    try:
        o.status = OrderStatus.OPEN
        client2.track_adopted(o)
        await h.fill(o.client_order_id, None, inst)
        await until(lambda: sink2.filled(o.client_order_id) == o.qty, what="the whole fill")
        await asyncio.sleep(0.3)
        assert len(sink2.of(o.client_order_id, ev.FILL)) == 1
        assert isinstance(sink2, Sink)
    finally:
        await second.close()
