"""The strategy API: callbacks in, orders out. The same object runs in backtest, paper and live.

A strategy never talks to a venue: it calls ``submit_limit``/``submit_market``/``cancel``/``modify``
and the engine routes them through risk and the order manager to whichever venue the mode wired.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from engine.logs import get_logger
from engine.model import OrderType, Side, TimeInForce

if TYPE_CHECKING:
    from engine.book import Book
    from engine.engine import Engine
    from engine.events import Fill, Trade
    from engine.orders import Order

# globals for the order calls: on 3.11 ``OrderType.LIMIT`` is a call through EnumType.__getattr__
_LIMIT = OrderType.LIMIT
_MARKET = OrderType.MARKET
_IOC = TimeInForce.IOC


class Strategy:
    """Base class. Override the ``on_*`` callbacks you need.

    ``subscriptions`` are ``(venue, symbol)`` pairs; ``book_updates`` is ``"top"`` (called when
    the best bid or ask price changes, the default) or ``"every"`` (after every book message);
    ``wants_trades`` asks for ``on_trade``. ``warm = True`` lets the live path warmer
    (``engine.warm``) run a twin of the strategy (same class and params, its own state) on a
    shadow engine while the market is quiet: set it only when ``on_book`` acts through this API
    alone (orders, logs), with no effect outside the engine (files, sockets, shared objects).
    """

    book_updates = "top"
    wants_trades = False
    warm = False
    #: when a book this strategy trades on stops being valid: ``cancel`` its resting orders on it
    #: (the default: nobody quotes on a market they cannot see), or ``keep`` them
    invalid_book = "cancel"

    def __init__(self, strategy_id: str, venue: str, symbols: list[str], params: dict[str, Any] | None = None) -> None:
        self.strategy_id = strategy_id
        self.venue = venue
        self.symbols = list(symbols)
        self.params = dict(params or {})
        self.subscriptions = [(venue, s) for s in self.symbols]
        self.log: logging.Logger = get_logger("strategies")
        self._engine: Engine | None = None

    # --- wiring -----------------------------------------------------------------------------
    def bind(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError(f"strategy {self.strategy_id} is not attached to an engine")
        return self._engine

    # --- callbacks ---------------------------------------------------------------------------
    def on_start(self) -> None:
        """Called once before the first market data."""

    def on_book(self, book: Book) -> None:
        """A book this strategy subscribes to changed (after a whole venue message)."""

    def on_trade(self, trade: Trade) -> None:
        """A public trade (only when ``wants_trades``)."""

    def on_book_invalid(self, book: Book, reason: str) -> None:
        """A book this strategy subscribes to stopped being valid (``reason``: ``sequence_gap``,
        ``crossed_book``, ``stale_data``, ``disconnect``, ``resync``, ...); no ``on_book`` until it
        is valid again. Resting orders on it are already being cancelled unless ``invalid_book``
        is ``keep``."""

    def on_book_valid(self, book: Book) -> None:
        """The book is valid again; ``on_book`` follows at once."""

    def on_order_update(self, order: Order) -> None:
        """One of this strategy's orders changed state."""

    def on_fill(self, fill: Fill) -> None:
        """One of this strategy's orders (partly) filled."""

    def on_timer(self, name: str, ts: int) -> None:
        """A timer set with ``set_timer`` fired."""

    def on_stop(self) -> None:
        """Called once at the end of the run (or at shutdown)."""

    # --- actions -----------------------------------------------------------------------------
    @property
    def now(self) -> int:
        return (self._engine or self.engine).clock.now()

    def book(self, symbol: str | None = None, venue: str | None = None) -> Book:
        return (self._engine or self.engine).books[(venue or self.venue, symbol or self.symbols[0])]

    def submit_limit(
        self,
        side: Side,
        price: float,
        qty: float,
        symbol: str | None = None,
        venue: str | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
    ) -> Order:
        return (self._engine or self.engine).oms.submit(
            self.strategy_id,
            venue or self.venue,
            symbol or self.symbols[0],
            side,
            _LIMIT,
            price,
            qty,
            tif,
            post_only,
        )

    def submit_market(self, side: Side, qty: float, symbol: str | None = None, venue: str | None = None) -> Order:
        return (self._engine or self.engine).oms.submit(
            self.strategy_id,
            venue or self.venue,
            symbol or self.symbols[0],
            side,
            _MARKET,
            0.0,
            qty,
            _IOC,
            False,
        )

    def cancel(self, order: Order) -> None:
        (self._engine or self.engine).oms.cancel(order)

    def cancel_all(self, symbol: str | None = None) -> None:
        for order in self.open_orders(symbol):
            if not order.cancel_requested:
                (self._engine or self.engine).oms.cancel(order)

    def modify(self, order: Order, price: float | None = None, qty: float | None = None) -> Order:
        """Amend where the venue can; elsewhere cancel and replace (returns the live order)."""
        return (self._engine or self.engine).oms.modify(order, price, qty)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return (self._engine or self.engine).oms.open_orders(self.strategy_id, symbol)

    def position(self, symbol: str | None = None, venue: str | None = None) -> float:
        """Signed position in base units."""
        return self.engine.portfolio.position(
            self.strategy_id, venue or self.venue, symbol or self.symbols[0]
        ).qty_float

    def set_timer(self, name: str, interval_ns: int, repeat: bool = True) -> None:
        self.engine.set_timer(self, name, interval_ns, repeat)

    # --- operator changes (the daemon's ``PUT /strategies/{id}/config``) ---------------------------
    def set_log_level(self, level: str) -> None:
        """This strategy's lines at ``level`` (``DEBUG``...): its own child of the ``strategies``
        logger, so one strategy can be debugged while the others stay at INFO."""
        child = logging.getLogger(f"{get_logger('strategies').name}.{self.strategy_id}")
        child.setLevel(level)
        self.log = child
        if self._engine is not None:  # DEBUG turns on its onMarketData lines (Engine.trace)
            self._engine.trace(self)

    def update_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Take new params (already checked against ``params_schema``) while running.

        A strategy usually derives attributes from its params in ``__init__`` (``self.size =
        float(p["order_size"])``); the default here builds two scratch instances, one with the
        old params and one with the new, and copies onto this one every attribute the two
        differ in: the derived values change, the running state (orders, inventory) stays.
        A strategy whose params feed state in other ways overrides this."""
        cls = type(self)
        before = cls(self.strategy_id, self.venue, self.symbols, self.params)
        after = cls(self.strategy_id, self.venue, self.symbols, params)
        for name, value in vars(after).items():
            if name in ("log", "_engine"):
                continue
            if name not in vars(before) or _differs(vars(before)[name], value):
                setattr(self, name, value)
        self.params = dict(after.params)
        return self.params


def _differs(a: Any, b: Any) -> bool:
    try:
        return bool(a != b)
    except Exception:  # arrays and other values without a plain truth value: treat as changed
        return True
