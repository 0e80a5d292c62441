"""Keeping the tick-to-order path warm while the market is quiet.

On the development VM a tick that follows the previous one at once costs about 35-40 µs from
frame to order bytes; after 0.5-1 ms of other work it costs 45-50 µs, after 2 ms about 90 µs, after
5 ms 100-150 µs and after 20 ms about 200 µs (``bench.breakdown --gap-us``: the process spins in
between, so this is not an idle CPU waking up).
Every span of the path slows alike, the compiled book update and the OpenSSL signature as much
as the Python: while this core does something else its caches and branch predictors go to other
work. A live depth stream updates every 100 ms, so without help every real tick is a cold one.

``PathWarmer`` runs the same code while nothing happens: a shadow ``Engine`` (its own portfolio
copy, risk engine with the same limits, order manager, no event log) reads the real books and
drives twins of the strategies that allow it (``Strategy.warm = True``) and a probe order (a
post-only bid at the touch and its cancel) through the order manager and risk checks into each
venue's dry run (``BinanceExecutionClient.dry_run``: filters, template, timestamp, signature and
framing, thrown away). Each pass starts with the feeds' own dry runs (``feeds``: the Binance feed
applies its last depth diff again to a scratch copy of the book, ``BookSync.warm``). After each
pass the shadow forgets its orders, so every pass takes the same path. Nothing of the real engine
changes, nothing is sent, recorded or logged (``Muted``).

A pass takes the loop for a few tens of microseconds, so a frame arriving meanwhile waits for
it: passes run only after ``interval_us`` without market data, and not at all while the market
is busy (it warms the path itself). With ``spin`` the loop never sleeps (a callback every loop
turn, as a process on a dedicated core would poll); without it, passes run on a timer, which the
event loop resolves to the millisecond.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.engine import Engine
from engine.logs import Muted, get_logger
from engine.model import OrderType, Side, TimeInForce
from engine.portfolio import Portfolio
from engine.recorder import Recorder
from engine.risk import RiskEngine

_log = get_logger("system")
_perf_ns = time.perf_counter_ns


class _NoTimers:
    """The shadow's scheduler: its timers never fire (only market data drives a pass)."""

    def schedule(self, ts: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        return None


class NullVenue:
    """The shadow's venue where the real one has no dry run: takes every request, does nothing."""

    supports_modify = False

    def __init__(self, name: str) -> None:
        self.name = name

    def submit_order(self, order: Any) -> None:
        return None

    def cancel_order(self, order: Any) -> None:
        return None

    def modify_order(self, order: Any, price: int, qty: int) -> None:
        return None


class PathWarmer:
    """Runs the tick-to-order path on a shadow engine while ``engine`` sees no market data."""

    def __init__(
        self,
        engine: Engine,
        interval_us: float = 250.0,
        spin: bool = True,
        probe: bool = True,
        feeds: Sequence[Callable[[], object]] = (),
    ) -> None:
        if not interval_us > 0:
            raise ValueError(f"warm interval_us must be > 0, got {interval_us!r}")
        self.engine = engine
        self.interval_ns = int(interval_us * 1000)
        self.spin = spin
        self.probe = probe
        self.feeds = tuple(feeds)  # called first in each pass: a feed's own dry run (``BookSync.warm``)
        self.passes = 0
        self.pass_ns_total = 0
        self.pass_ns_max = 0
        self.last_start_ns = 0  # perf_counter_ns of the last pass (what a frame may have waited for)
        self.last_end_ns = 0
        self.twins: list[str] = []  # strategies whose twins run in the shadow
        self.no_twin: dict[str, str] = {}  # warm strategies whose twin could not be made, and why
        self._mute = Muted()
        self._shadow: Engine | None = None
        self._probe_sid: dict[tuple[str, str], str] = {}
        self._limits_seen: tuple[object, ...] = ()  # the real risk limits the shadow was built with
        self._fills_seen = -1  # the real engine's fill count when the shadow's balances were copied
        self._seen = -1  # the real engine's market event count at the last look
        self._quiet_since = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None

    # --- the shadow ------------------------------------------------------------------------------
    def _limits(self) -> tuple[object, ...]:
        risk = self.engine.risk
        return (risk.limits, *(risk.limits_for(sid) for sid in self.engine.strategies))

    def _limits_changed(self) -> bool:
        # by identity: the risk engine makes new limit objects on every change
        now, seen = self._limits(), self._limits_seen
        return len(now) != len(seen) or any(a is not b for a, b in zip(now, seen, strict=True))

    def _build(self) -> Engine:
        """The shadow, from the real engine as it is now (limits, balances, strategies)."""
        real = self.engine
        self.twins = []
        self.no_twin = {}
        self._probe_sid = {}
        self._limits_seen = self._limits()
        self._fills_seen = real.fill_count
        portfolio = Portfolio(real.portfolio.balances())
        risk = RiskEngine(real.risk.limits, portfolio, {sid: real.risk.limits_for(sid) for sid in real.strategies})
        shadow = Engine(
            real.clock,
            _NoTimers(),
            dict(real.instruments),
            portfolio,
            risk,
            Recorder(None),
            decision_latency_ns=real.decision_latency_ns,
            mark_interval_ns=0,
            log_orders=False,
        )
        for book in real.books.values():
            shadow.add_book(book)  # read only: strategies cannot change a book
        for name, venue in real.venues.items():
            dry = getattr(venue, "dry_run", None)
            shadow.add_venue(dry() if dry is not None else NullVenue(name), real.oms.profiles.get(name))
        for s in real.strategies.values():
            for key in s.subscriptions:
                self._probe_sid.setdefault(key, s.strategy_id)
            if not s.warm:
                continue
            try:
                twin = type(s)(s.strategy_id, s.venue, list(s.symbols), dict(s.params))
            except Exception as exc:  # a constructor of another shape: the probe warms its orders
                self.no_twin[s.strategy_id] = repr(exc)
                continue
            shadow.add_strategy(twin)
            self.twins.append(s.strategy_id)
        shadow.start()
        return shadow

    def warm_once(self) -> None:
        """One pass over every valid book (public for tests and benchmarks)."""
        t0 = _perf_ns()
        with self._mute:
            shadow = self._shadow
            if shadow is None or self._limits_changed():
                shadow = self._shadow = self._build()  # new limits change what the checks do
            elif self.engine.fill_count != self._fills_seen:
                self._fills_seen = self.engine.fill_count  # fills move balances: the balance check's input
                for venue, assets in self.engine.portfolio.balances().items():
                    for asset, amount in assets.items():
                        shadow.portfolio.set_balance(venue, asset, amount)
            for feed in self.feeds:
                feed()
            oms = shadow.oms
            for key, book in shadow.books.items():
                if not book.valid:
                    continue
                sent = oms.submitted
                shadow.on_book(book)
                if self.probe and oms.submitted == sent:
                    self._probe(shadow, key, book)
            self._forget(shadow)
            failed = self._drop_halted(shadow)
        end = _perf_ns()
        self.last_start_ns = t0
        self.last_end_ns = end
        dt = end - t0
        self.passes += 1
        self.pass_ns_total += dt
        if dt > self.pass_ns_max:
            self.pass_ns_max = dt
        for sid, reason in failed:
            _log.warning("path warmer: the twin of %s stopped (%s); its order path is still warmed", sid, reason)

    def _drop_halted(self, shadow: Engine) -> list[tuple[str, str]]:
        """Twins the shadow halted (an exception, a limit) leave it; their ids are resumed there so
        the probe order can still use them."""
        dropped = []
        risk = shadow.risk
        for sid in risk.halted():
            reason = risk.halt_reason(sid)
            risk.resume(sid)
            if shadow.remove_strategy(sid) is not None:
                self.twins.remove(sid)
                dropped.append((sid, reason))
        return dropped

    def _probe(self, shadow: Engine, key: tuple[str, str], book: Any) -> None:
        """A post-only bid at the touch, then its cancel: the order path whatever the strategies
        decided on this book."""
        sid = self._probe_sid.get(key)
        price = book.best_bid
        if sid is None or not price > 0:
            return
        inst = shadow.instruments[key]
        # the smallest order the filters take, plus two lots for the rounding down to a lot
        qty = max(inst.size(inst.min_qty), inst.min_notional / price) + 2 * inst.size(inst.lot)
        order = shadow.oms.submit(sid, key[0], key[1], Side.BUY, OrderType.LIMIT, price, qty, TimeInForce.GTC, True)
        if order.is_open:
            shadow.oms.cancel(order)

    @staticmethod
    def _forget(shadow: Engine) -> None:
        """Back to the state before the pass: no orders, an empty order-rate window, the first id.
        A twin still holds its last orders, as they were sent: open, so on the next pass it moves
        them (cancel and replace) as the real strategy moves its resting quotes."""
        shadow.oms.forget_all()
        shadow.risk.clear_order_rate()

    # --- scheduling ------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        if self._shadow is None:
            with self._mute:  # now, not in the first pass, which a frame might wait for
                self._shadow = self._build()
        for sid, why in self.no_twin.items():
            _log.warning("path warmer: no twin of %s (%s); its order path is still warmed", sid, why)
        self._quiet_since = _perf_ns()
        self._schedule()
        _log.info(
            "path warmer started: interval_us=%d spin=%s probe=%s",
            self.interval_ns // 1000,
            self.spin,
            self.probe,
        )

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._loop is not None:
            self._loop = None
            _log.info(
                "path warmer stopped: passes=%d mean_us=%.1f max_us=%.1f twins=%s",
                self.passes,
                self.pass_ns_total / self.passes / 1000 if self.passes else 0.0,
                self.pass_ns_max / 1000,
                ",".join(self.twins) or "-",
            )

    def _schedule(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self.spin:
            self._handle = loop.call_soon(self._turn)
        else:
            self._handle = loop.call_later(self.interval_ns / 1e9, self._turn)

    def _turn(self) -> None:
        eng = self.engine
        seen = eng.book_events + eng.trade_events
        now = _perf_ns()
        if seen != self._seen:
            self._seen = seen
            self._quiet_since = now
        elif now - self._quiet_since >= self.interval_ns:
            try:
                self.warm_once()
            except Exception as exc:  # the shadow must never take the real path down with it
                _log.error("path warmer stopped after an error: %r", exc)
                self._loop = None
                return
            self._quiet_since = _perf_ns()
        self._schedule()
