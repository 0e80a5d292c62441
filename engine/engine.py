"""The engine: one object graph of books, strategies, risk, order manager, portfolio and recorder.

Backtest, paper and live differ only in what they hand this class: the clock, the scheduler
(``Timeline`` in simulation, an asyncio-backed one live), the venues and who calls
``on_book``/``on_trade``/``on_exec_report``. Everything below that line is the same code.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from engine.book import Book
from engine.eventlog import INCIDENT_MESSAGES, EventLog
from engine.events import ExecReport, Fill, Incident, Trade
from engine.logs import get_logger
from engine.messages import STRATEGY_INITIALIZATION_FAILED
from engine.model import Instrument
from engine.oms import OrderManager
from engine.orders import Order
from engine.portfolio import Portfolio
from engine.recorder import Recorder
from engine.risk import RiskEngine
from engine.strategy import Strategy
from engine.venue import ExecutionClient, VenueProfile

_strat_log = get_logger("strategies")
_sys_log = get_logger("system")
#: cancels sent for an order pulled off an invalid book before the engine gives up (and says so)
PULL_ATTEMPTS = 5

__all__ = ["INCIDENT_MESSAGES", "Clock", "Engine", "Scheduler"]


class Scheduler(Protocol):
    def schedule(self, ts: int, fn: Callable[[Any], None], arg: Any = None) -> None: ...


class Clock(Protocol):
    def now(self) -> int: ...


class Engine:
    def __init__(
        self,
        clock: Clock,
        scheduler: Scheduler,
        instruments: dict[tuple[str, str], Instrument],
        portfolio: Portfolio,
        risk: RiskEngine,
        recorder: Recorder,
        decision_latency_ns: int = 0,
        mark_interval_ns: int = 1_000_000_000,
        log_orders: bool = True,
    ) -> None:
        self.clock = clock
        self.scheduler = scheduler
        self.instruments = instruments
        self.portfolio = portfolio
        self.risk = risk
        self.recorder = recorder
        self.decision_latency_ns = decision_latency_ns
        self.mark_interval_ns = mark_interval_ns
        self.log_orders = log_orders
        self.books: dict[tuple[str, str], Book] = {}
        self.strategies: dict[str, Strategy] = {}
        #: strategies stopped by the operator (``stop_strategy``): no market data, no timers
        self.stopped: set[str] = set()
        self.last_trades: dict[tuple[str, str], Trade] = {}
        #: > 1: one market row in this many goes to the event log (memory pressure, daemon only)
        self.market_sample_every = 0
        self._book_subs: dict[tuple[str, str], list[Strategy]] = {}
        self._trade_subs: dict[tuple[str, str], list[Strategy]] = {}
        #: strategies logging at DEBUG: an ``onMarketData`` line per market-data callback. Kept
        #: when a level changes (``trace``), so the callbacks of the others test one empty set.
        self.traced: set[str] = set()
        self.log = EventLog(recorder, instruments, self.books)
        self.oms = OrderManager(
            clock,
            instruments,
            self.books,
            portfolio,
            risk,
            self.log,
            self,
            decision_latency_ns=decision_latency_ns,
            log_orders=log_orders,
        )
        self.venues: dict[str, ExecutionClient] = self.oms.venues
        self.running = False
        #: books that stopped being valid and have not been shown since: (venue, symbol) -> reason
        self.invalid_books: dict[tuple[str, str], str] = self.oms.blind  # the OMS refuses new orders on them
        #: orders pulled off an invalid book whose cancel is not answered yet -> cancels sent
        self._pulls: dict[str, int] = {}
        self.book_events = 0
        self.trade_events = 0
        self.equity_peak = 0.0
        self.max_drawdown = 0.0
        for inst in instruments.values():
            portfolio.register(inst)
        risk.on_halt = self._on_risk_halt

    # --- wiring ------------------------------------------------------------------------------
    def add_venue(self, venue: ExecutionClient, profile: VenueProfile | None = None) -> None:
        """Orders for ``venue.name`` go to ``venue``; ``profile`` (the venue's id rules and
        words) defaults to a generic one."""
        self.oms.add_venue(venue, profile)

    def add_book(self, book: Book) -> None:
        self.books[(book.venue, book.symbol)] = book

    def add_strategy(self, strategy: Strategy) -> None:
        if strategy.strategy_id in self.strategies:
            raise ValueError(f"duplicate strategy id {strategy.strategy_id!r}")
        strategy.bind(self)
        self.strategies[strategy.strategy_id] = strategy
        self.trace(strategy)
        for key in strategy.subscriptions:
            if key not in self.instruments:
                raise KeyError(f"strategy {strategy.strategy_id} subscribes to unknown instrument {key[0]}:{key[1]}")
            self._book_subs.setdefault(key, []).append(strategy)
            if strategy.wants_trades:
                self._trade_subs.setdefault(key, []).append(strategy)

    def remove_strategy(self, strategy_id: str) -> Strategy | None:
        """Take a strategy out (no more callbacks); its orders stay with the order manager."""
        strategy = self.strategies.pop(strategy_id, None)
        if strategy is not None:
            for subs in (*self._book_subs.values(), *self._trade_subs.values()):
                if strategy in subs:
                    subs.remove(strategy)
        return strategy

    def stop_strategy(self, strategy_id: str) -> list[Order]:
        """The operator stops a strategy: no more market data, trades or timers reach it, its
        ``on_stop`` runs and its open orders are cancelled (returned). Order updates and fills
        still reach it: its own bookkeeping must follow what the venue does."""
        strategy = self.strategies[strategy_id]
        if strategy_id in self.stopped:
            return []
        self.stopped.add(strategy_id)
        for subs in (*self._book_subs.values(), *self._trade_subs.values()):
            if strategy in subs:
                subs.remove(strategy)
        if self.running:
            self._call(strategy, strategy.on_stop)
        orders = self.oms.open_orders(strategy_id)
        for order in orders:
            self.oms.cancel(order)
        _strat_log.info("strategy_id: %s stopped by operator; %d open orders cancelled", strategy_id, len(orders))
        return orders

    def start_strategy(self, strategy_id: str) -> None:
        """Start a strategy the operator stopped: subscribed again, ``on_start``, then market data."""
        strategy = self.strategies[strategy_id]
        if strategy_id not in self.stopped:
            return
        self.stopped.discard(strategy_id)
        for key in strategy.subscriptions:
            self._book_subs.setdefault(key, []).append(strategy)
            if strategy.wants_trades:
                self._trade_subs.setdefault(key, []).append(strategy)
        if self.running:
            self._call(strategy, strategy.on_start)
        _strat_log.info("strategy_id: %s started by operator", strategy_id)

    def trace(self, strategy: Strategy) -> None:
        """Follow a change of ``strategy``'s log level: at DEBUG each market-data callback it gets
        is logged (``onMarketData strategy_id: <id> ...`` in strategies.log, the guide's §9.1)."""
        if strategy.log.isEnabledFor(logging.DEBUG):
            self.traced.add(strategy.strategy_id)
        else:
            self.traced.discard(strategy.strategy_id)

    @staticmethod
    def _trace(s: Strategy, kind: str, venue: str, symbol: str, a: object, b: object) -> None:
        s.log.debug("onMarketData strategy_id: %s %s %s:%s %.10g %.10g", s.strategy_id, kind, venue, symbol, a, b)

    def wants_book(self, key: tuple[str, str]) -> int:
        """0 nobody listens, 1 top-of-book changes, 2 every message (replay kernel wake flags)."""
        subs = self._book_subs.get(key, ())
        if not subs:
            return 0
        return 2 if any(s.book_updates == "every" for s in subs) else 1

    def wants_trades(self, key: tuple[str, str]) -> bool:
        return bool(self._trade_subs.get(key))

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.running = True
        _sys_log.info("engine started: %d strategies, venues %s", len(self.strategies), sorted(self.venues))
        for s in self.strategies.values():
            _strat_log.info(
                "strategy_id: %s starting %s on %s %s", s.strategy_id, type(s).__name__, s.venue, ",".join(s.symbols)
            )
            self._call(s, s.on_start)
        if self.mark_interval_ns > 0:
            self.scheduler.schedule(self.clock.now() + self.mark_interval_ns, self._mark_timer)

    def stop(self) -> None:
        if not self.running:
            return
        now = self.clock.now()
        for s in self.strategies.values():
            self._call(s, s.on_stop)
        self.record_positions(now, "final")
        self.running = False
        _sys_log.info("engine stopped")

    # --- inputs ------------------------------------------------------------------------------
    def on_book(self, book: Book, feed_latency_ns: int = 0) -> None:
        """``book`` changed by a whole venue message and is valid."""
        self.book_events += 1
        key = (book.venue, book.symbol)
        mid = book.mid_price()
        self.portfolio.mark(book.venue, book.symbol, mid)
        log = self.log
        # The update's row is numbered now and built after the strategies have run: a quote sent
        # on this update does not wait for it. Strategies cannot change the book, and nothing
        # else adds a market row meanwhile, so the log is the same byte for byte.
        seq = log.next_seq()
        subs = self._book_subs.get(key)
        if self.invalid_books and key in self.invalid_books:
            self._book_valid_again(book, key, subs)
        if subs:
            self.oms.ts_tick = book.ts_recv
            halted = self.risk._halted
            traced = self.traced
            for s in subs:
                # ``_call``, inlined: every depth update of a live feed comes through here
                if halted and s.strategy_id in halted:
                    continue
                if traced and s.strategy_id in traced:
                    self._trace(s, "orderbook", book.venue, book.symbol, book.best_bid, book.best_ask)
                try:
                    s.on_book(book)
                except Exception as exc:
                    self._strategy_failed(s, "on_book", exc)
        if seq and not (self.market_sample_every and self.book_events % self.market_sample_every):
            log.market(book, mid, feed_latency_ns, seq)

    def on_book_invalid(self, book: Book, reason: str) -> None:
        """``book`` stopped being valid (a gap, a crossed book, stale data, a disconnect, a resync):
        strategies must not trade on it. Each strategy on it is told (``on_book_invalid``) and, by
        its ``invalid_book`` policy, its resting orders on that book are cancelled (``cancel``, the
        default) or left (``keep``). The next ``on_book`` of the book makes it valid again."""
        key = (book.venue, book.symbol)
        if key in self.invalid_books:
            return
        self.invalid_books[key] = reason
        subs = self._book_subs.get(key, ())
        pulled = 0
        for s in subs:
            if s.invalid_book == "cancel":
                for order in self.oms.open_orders(s.strategy_id, book.symbol):
                    if order.venue == book.venue and not order.cancel_requested:
                        self._pulls[order.client_order_id] = 1
                        self.oms.cancel(order)
                        pulled += 1
            self._call(s, s.on_book_invalid, book, reason)
        _sys_log.warning(
            "Trading paused venue=%s symbol=%s: book invalid (%s); %d resting orders cancelled",
            book.venue,
            book.symbol,
            reason,
            pulled,
        )

    def _book_valid_again(self, book: Book, key: tuple[str, str], subs: list[Strategy] | None) -> None:
        reason = self.invalid_books.pop(key)
        _sys_log.info("Trading resumed venue=%s symbol=%s: book valid again after %s", book.venue, book.symbol, reason)
        for s in subs or ():
            self._call(s, s.on_book_valid, book)

    def on_trade(self, trade: Trade) -> None:
        self.trade_events += 1
        key = (trade.venue, trade.symbol)
        self.last_trades[key] = trade  # the ticker's last trade price
        subs = self._trade_subs.get(key)
        if subs:
            self.oms.ts_tick = trade.ts_recv
            halted = self.risk._halted
            traced = self.traced
            for s in subs:
                # ``_call``, inlined as in ``on_book``: a strategy acting on trades is called for each
                if halted and s.strategy_id in halted:
                    continue
                if traced and s.strategy_id in traced:
                    self._trace(s, "trade", trade.venue, trade.symbol, trade.price, trade.size)
                try:
                    s.on_trade(trade)
                except Exception as exc:
                    self._strategy_failed(s, "on_trade", exc)

    def on_exec_report(self, report: ExecReport) -> None:
        self.oms.ts_tick = 0
        self.oms.on_exec_report(report)

    def on_incident(self, inc: Incident) -> None:
        self.incident(inc.ts, inc.venue, inc.symbol, inc.kind, inc.detail, inc.value)

    def incident(self, ts: int, venue: str, symbol: str, kind: str, detail: str = "", value: float = 0.0) -> None:
        self.log.incident(ts, venue, symbol, kind, detail, value)

    # --- timers ------------------------------------------------------------------------------
    def set_timer(self, strategy: Strategy, name: str, interval_ns: int, repeat: bool = True) -> None:
        if interval_ns <= 0:
            raise ValueError("timer interval must be > 0 ns")
        self.scheduler.schedule(self.clock.now() + interval_ns, self._fire_timer, (strategy, name, interval_ns, repeat))

    def _fire_timer(self, arg: tuple[Strategy, str, int, bool]) -> None:
        strategy, name, interval_ns, repeat = arg
        if not self.running:
            return
        if self.stopped and strategy.strategy_id in self.stopped:
            return  # a stopped strategy's timers end; ``on_start`` sets them again
        now = self.clock.now()
        self.log.timer(now, strategy.strategy_id, name)
        self.oms.ts_tick = now
        self._call(strategy, strategy.on_timer, name, now)
        if repeat:
            self.scheduler.schedule(now + interval_ns, self._fire_timer, arg)

    def _mark_timer(self, _arg: Any = None) -> None:
        if not self.running:
            return
        now = self.clock.now()
        self.record_positions(now, "mark")
        self.scheduler.schedule(now + self.mark_interval_ns, self._mark_timer)

    # --- strategy plumbing -------------------------------------------------------------------
    def _call(self, strategy: Strategy, fn: Callable[..., None], *args: Any) -> None:
        if self.risk.is_halted(strategy.strategy_id) and fn.__name__ not in ("on_order_update", "on_fill", "on_stop"):
            return
        try:
            fn(*args)
        except Exception as exc:  # a buggy strategy must not take the engine (or its peers) down
            self._strategy_failed(strategy, fn.__name__, exc)

    def _strategy_failed(self, strategy: Strategy, where: str, exc: Exception) -> None:
        now = self.clock.now()
        _strat_log.error(
            "%s strategy_id: %s in %s: %r\n%s",
            STRATEGY_INITIALIZATION_FAILED + ":" if where == "on_start" else "Strategy error",
            strategy.strategy_id,
            where,
            exc,
            traceback.format_exc(),
        )
        self.halt_strategy(strategy.strategy_id, f"strategy error in {where}: {exc!r}", now)

    def halt_strategy(self, strategy_id: str, reason: str, now: int) -> None:
        if self.risk.is_halted(strategy_id):
            return
        self.risk.halt(strategy_id, reason)
        self._on_risk_halt(strategy_id, reason, now)

    def _on_risk_halt(self, strategy_id: str, reason: str, now: int) -> None:
        """A halt (ours or the risk engine's own, e.g. daily loss): record it and pull the quotes."""
        self.incident(now, "", "", "strategy_halted", f"strategy_id={strategy_id} {reason}")
        for order in self.oms.open_orders(strategy_id):
            self.oms.cancel(order)

    def dispatch_order_update(self, order: Order) -> None:
        if self._pulls and order.client_order_id in self._pulls:
            self._pull_answered(order)
        s = self.strategies.get(order.strategy_id)
        if s is not None:
            self._call(s, s.on_order_update, order)

    def _pull_answered(self, order: Order) -> None:
        """An order pulled because its book went invalid got an answer. A refused cancel (a rate
        limit, a timeout, an outage) is sent again while the book is still invalid: the order must
        not rest at the venue while nobody can see the market. The venue's client waits out a
        Retry-After by itself; ``PULL_ATTEMPTS`` bounds the rest."""
        cid = order.client_order_id
        if order.status.is_terminal or (order.venue, order.symbol) not in self.invalid_books:
            del self._pulls[cid]
            return
        if order.cancel_requested:
            return
        tries = self._pulls[cid]
        if tries >= PULL_ATTEMPTS:
            del self._pulls[cid]
            _sys_log.error(
                "Order %s still open at %s after %d cancels while its book is invalid", cid, order.venue, tries
            )
            return
        self._pulls[cid] = tries + 1
        self.oms.cancel(order)

    def dispatch_fill(self, fill: Fill) -> None:
        s = self.strategies.get(fill.strategy_id)
        if s is not None:
            self._call(s, s.on_fill, fill)

    # --- recording ---------------------------------------------------------------------------
    @property
    def fill_count(self) -> int:
        return self.oms.fills

    @property
    def incident_counts(self) -> dict[str, int]:
        return self.log.incident_counts

    def record_positions(self, now: int, reason: str) -> None:
        equity = 0.0
        log = self.log
        for strategy_id, pos in self.portfolio.positions():
            equity += pos.realized_quote + pos.unrealized_quote - pos.fees_quote
            inst = self.instruments.get((pos.venue, pos.symbol))
            if inst is not None:
                log.position(strategy_id, inst, pos, now, reason)
        # drawdown of net P&L sampled at every mark (mark_interval_ns) and at the end
        if equity > self.equity_peak:
            self.equity_peak = equity
        if self.equity_peak - equity > self.max_drawdown:
            self.max_drawdown = self.equity_peak - equity
