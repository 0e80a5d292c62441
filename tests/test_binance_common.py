"""venues/common: backoff with jitter, the connection-attempt window, weight windows, Retry-After."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from venues.common.backoff import AttemptWindow, BackoffSettings, ExponentialBackoff, ReconnectPolicy
from venues.common.ratelimit import RequestLimiter, RetryAfterGate, WeightWindow


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_backoff_grows_caps_and_jitters() -> None:
    b = ExponentialBackoff(BackoffSettings(initial_s=0.5, max_s=8.0, factor=2.0, jitter=0.0))
    assert [b.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    b.reset()
    assert b.next_delay() == 0.5
    j = ExponentialBackoff(BackoffSettings(initial_s=1.0, max_s=1.0, jitter=0.5), random.Random(3))
    delays = [j.next_delay() for _ in range(200)]
    assert all(0.5 <= x <= 1.0 for x in delays) and len(set(delays)) > 100
    with pytest.raises(ValueError):
        BackoffSettings(jitter=2.0)


def test_attempt_window() -> None:
    c = Clock()
    w = AttemptWindow(3, 10.0, c)
    for _ in range(3):
        assert w.wait_time() == 0
        w.record()
        c.t += 1
    assert w.wait_time() == pytest.approx(7.0)  # the first attempt leaves the window at t0 + 10
    c.t += 7
    assert w.wait_time() == 0 and w.count() == 2


def test_reconnect_storm_stays_within_300_per_5_minutes() -> None:
    """A server that refuses every connection for an hour: the policy never lets more than 300
    attempts into any 300 s window (Binance's per-IP limit), even with no backoff at all."""
    c = Clock()
    s = BackoffSettings(initial_s=0.0, max_s=0.0, jitter=0.0, max_attempts_per_window=300, window_s=300.0)
    p = ReconnectPolicy(s, random.Random(1), clock=c)
    attempts: list[float] = []
    while c.t < 1000.0 + 3600:
        c.t += p.next_delay()
        while (w := p.window.wait_time()) > 0:
            c.t += w
        p.record_attempt()
        attempts.append(c.t)
    j = 0
    for i, t in enumerate(attempts):
        while attempts[j] <= t - 300.0:
            j += 1
        assert i - j + 1 <= 300
    assert len(attempts) >= 300 * 11  # it still retries as fast as allowed


def test_policy_first_attempt_immediate_then_backoff() -> None:
    c = Clock()
    p = ReconnectPolicy(BackoffSettings(initial_s=1.0, max_s=4.0, jitter=0.0), clock=c)
    assert p.next_delay() == 0.0
    assert [p.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    p.on_connected()
    p.immediate()
    assert p.next_delay() == 0.0 and p.next_delay() == 1.0


def test_weight_window_sliding_and_observe() -> None:
    """Weight leaves one interval after the end of the (1 s) bucket it was booked in: never
    earlier than an exact sliding log would let it, at most one bucket later."""
    c = Clock()
    w = WeightWindow("REQUEST_WEIGHT 1M", 100, 60.0, c)
    w.consume(60)
    c.t += 30
    w.consume(40)
    assert w.wait_time(1) == pytest.approx(31.0)  # the first 60 leave at t0 + 1 + 60
    assert w.wait_time(61) == pytest.approx(61.0)  # needs both bookings gone
    c.t += 30
    assert w.used == 100 and w.wait_time(1) == pytest.approx(1.0)  # an exact log would say 0
    c.t += 1
    assert w.used == 40 and w.wait_time(60) == 0
    w.observe(90)  # the venue saw 50 more than we sent
    assert w.used == 90 and w.wait_time(20) > 0
    w.observe(10)  # lower than ours: our own booking stands
    assert w.used == 90
    with pytest.raises(ValueError, match="exceeds"):
        w.wait_time(101)


async def test_limiter_waits_and_reports() -> None:
    c = Clock()
    slept: list[float] = []
    waits = []

    async def sleep(s: float) -> None:
        slept.append(s)
        c.t += s

    gate = RetryAfterGate(c)
    lim = RequestLimiter({"weight": [WeightWindow("W", 10, 60.0, c)]}, gate=gate, on_wait=waits.append, sleep=sleep)
    assert await lim.acquire({"weight": 10}) == 0.0
    waited = await lim.acquire({"weight": 5})
    assert waited == pytest.approx(61.0, abs=0.01) and waits[0].limit == "W"  # 60 s after its bucket
    gate.block(5.0, "HTTP 429")
    assert lim.wait_time({"weight": 1}).limit == "retry-after"
    await lim.acquire({"weight": 1})
    assert slept[-1] == pytest.approx(5.0, abs=0.01) and gate.wait_time() == 0


def test_try_acquire_books_all_or_nothing() -> None:
    """The order hot path's non-waiting booking: every window must have room, no ban may be
    active, and a refusal books nothing (so the awaited path can book it later, once)."""
    c = Clock()
    gate = RetryAfterGate(c)
    weight = WeightWindow("W", 10, 60.0, c)
    orders_10s = WeightWindow("O10", 3, 10.0, c)
    lim = RequestLimiter({"weight": [weight], "orders": [orders_10s]}, gate=gate)
    assert [lim.try_acquire(1, 1) for _ in range(4)] == [True, True, True, False]
    assert (weight.used, orders_10s.used) == (3, 3)  # the refused one booked nothing
    assert lim.try_acquire(2)  # a cancel carries no order count
    c.t += 10.0 + 10.0 / 60  # one interval after the end of the bucket the orders were booked in
    assert lim.try_acquire(1, 1) and orders_10s.used == 1
    assert not lim.try_acquire(5)  # weight 6 + 5 > 10
    gate.block(3.0, "HTTP 429")
    assert not lim.try_acquire(1) and weight.used == 6
    c.t += 3.0
    assert lim.try_acquire(1) and weight.used == 7
    assert lim.wait_time({"weight": 4}).seconds > 0 and not lim.try_acquire(4)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(1, 7)), min_size=1, max_size=300),
    st.integers(1, 20),
)
def test_weight_window_never_lets_more_than_the_limit_through(steps: list[tuple[float, int]], buckets: int) -> None:
    """Whatever the timing: what the window admitted in any interval never exceeds the limit
    (checked against the exact log of admitted requests), and its memory does not grow."""
    c = Clock()
    w = WeightWindow("W", 20, 10.0, c, buckets=buckets)
    admitted: list[tuple[float, int]] = []
    for dt, weight in steps:
        c.t += dt
        if w.fits(weight, c.t):
            w.book(weight, c.t)
            admitted.append((c.t, weight))
            inside = sum(x for t, x in admitted if t > c.t - 10.0)
            assert inside <= 20
        else:
            assert w.wait_time(weight) > 0
    assert len(w._counts) == buckets + 1


def test_weight_window_day_of_orders_in_fixed_memory() -> None:
    c = Clock()
    day = WeightWindow("ORDERS 1D", 10**7, 86400.0, c, buckets=1440)
    for _ in range(200_000):
        c.t += 0.01
        day.book(1, c.t)
    assert day.used == 200_000 and len(day._counts) == 1441
    c.t += 86400.0 + 60.0
    assert day.used == 0


def test_client_frames_parse_back_and_masks_vary() -> None:
    """``send_now``'s own frame builder: what websockets' parser (the server side) reads back is
    the payload, for every length encoding; masking keys come from os.urandom and differ."""
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    from venues.common.ws import MaskSource, client_frame

    for n in (0, 1, 125, 126, 65535, 65536, 70000):
        payload = bytes(i % 251 for i in range(n))
        for text in (True, False):
            reader = StreamReader()
            reader.feed_data(client_frame(payload, text))
            reader.feed_eof()
            parser = Frame.parse(reader.read_exact, mask=True)
            with pytest.raises(StopIteration) as done:
                next(parser)
            frame = done.value.value
            assert frame.data == payload and frame.fin
            assert frame.opcode == (Opcode.TEXT if text else Opcode.BINARY)
    masks = MaskSource(block=64)
    keys = [masks.take() for _ in range(100)]  # crosses several refills
    assert all(len(k) == 4 for k in keys) and len(set(keys)) > 90


def test_room_then_booking_is_try_acquire_split_around_the_write() -> None:
    """The order hot path checks for room before it writes and books after (``room_at`` then
    ``book_at``): together they book what ``try_acquire`` would, a refusal books nothing, and a
    check alone books nothing either."""
    c = Clock()
    weight = WeightWindow("W", 10, 60.0, c)
    orders_10s = WeightWindow("O10", 3, 10.0, c)
    lim = RequestLimiter({"weight": [weight], "orders": [orders_10s]})
    at = lim.room_at(1, 1)
    assert at == c.t and (weight.used, orders_10s.used) == (0, 0)
    for _ in range(3):
        at = lim.room_at(1, 1)
        assert at is not None
        lim.book_at(1, 1, at)
    assert (weight.used, orders_10s.used) == (3, 3)
    assert lim.room_at(1, 1) is None and lim.room_at(1) is not None  # a cancel has room still
    lim.book_at(2, 0, c.t)
    assert (weight.used, orders_10s.used) == (5, 3)
    lim.gate.block(1.0, "HTTP 429")
    assert lim.room_at(1) is None
