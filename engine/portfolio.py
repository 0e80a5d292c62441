"""Positions, P&L and balances per venue: the portfolio every mode (backtest, paper, live) shares.

Accounting rules
----------------
* Quantities stay fixed-point integers (the instrument's ``size_scale``) so a position is always
  exactly the signed sum of its fills; prices and P&L are floats.
* Average-price accounting: a fill that adds to a position moves ``avg_price``; a fill that
  reduces it realizes the closed part against ``avg_price``; a fill through zero realizes the
  closed part and opens the remainder at the fill price.
* Linear instruments (spot, USD-margined perps/futures) settle in the quote asset:
  ``realized = closed * (exit - entry) * sign * contract_size``.
* Inverse instruments (``instrument.inverse``, size in contracts of ``contract_size`` USD, e.g.
  Binance COIN-M ``BTCUSD_PERP`` at 100 USD) settle in the base asset. For a long,
  ``realized_base = contracts * contract_size * (1/entry - 1/exit)``; the entry price is the
  harmonic (contract-weighted) average, which is what keeps that formula exact when a position is
  built from several fills. ``Position.realized``, ``fees`` and ``unrealized`` are then in BASE;
  the ``*_quote`` properties convert them at the mark (or the last fill price before the first
  mark) and every aggregate of the portfolio (``strategy_pnl``, ``daily_pnl``, ``position_usd``)
  is in quote.
* ``fee`` passed to ``on_fill`` is always a quote-currency value (as in ``ExecReport``; negative
  is a rebate). ``fee_asset`` only names the balance it is taken from: the base asset (Binance
  spot buys) is debited ``fee / price``; anything else is charged to the quote (or, for inverse
  contracts, the base margin asset at the fill price). Fees paid in a third asset (BNB) are
  therefore booked against quote and corrected when balances are synced from the venue.
* Balances: a spot fill moves base and quote (buy: ``base += qty``, ``quote -= notional + fee``).
  A derivative fill moves only its margin asset (quote for linear, base for inverse) by the
  realized P&L minus fees. ``reserve``/``release`` hold amounts for open orders: ``free`` is what
  is left for new orders; ``order_hold`` says what an order needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from engine.model import Instrument, Side

_NAN = float("nan")
_BUY = Side.BUY  # module constant: enum member lookups cost ~0.2 µs each on the hot path


class InstrumentSpec:
    """What accounting and risk need from an ``Instrument``, precomputed once (hot-path lookups)."""

    __slots__ = (
        "base",
        "cs",
        "instrument",
        "inverse",
        "maker_fee",
        "pdiv",
        "quote",
        "sdiv",
        "settle",
        "spot",
        "taker_fee",
        "worst_fee",
    )

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.base = instrument.base
        self.quote = instrument.quote
        self.inverse = instrument.inverse
        self.spot = instrument.kind == "spot" and not instrument.inverse
        self.settle = instrument.base if instrument.inverse else instrument.quote  # settlement / margin asset
        self.cs = float(instrument.contract_size)
        self.pdiv = 10**instrument.price_scale
        self.sdiv = 10**instrument.size_scale
        self.maker_fee = instrument.maker_fee
        self.taker_fee = instrument.taker_fee
        self.worst_fee = max(instrument.maker_fee, instrument.taker_fee, 0.0)

    def hold_fee(self, post_only: bool, limit: bool) -> float:
        """The fee rate an order's hold allows for: maker for post-only, the worse of maker and
        taker for a limit order that may take, taker for a market order."""
        if post_only:
            return self.maker_fee
        return self.worst_fee if limit else self.taker_fee

    def hold(
        self, buy: bool, price: float, qty: int, position_qty: int = 0, leverage: float = 1.0, fee_rate: float = 0.0
    ) -> tuple[str, float]:
        """(asset, amount) an order of fixed-point ``qty`` at float ``price`` needs free.

        Spot buy: quote ``notional * (1 + fee_rate)``; spot sell: base ``qty``. Derivatives: the
        margin asset (quote, or base for inverse) for the part of the order that opens or grows
        the position (``position_qty``, signed fixed-point): ``notional * (1/leverage + fee_rate)``;
        the part that reduces the position needs nothing. Negative fee rates (rebates) count as 0.
        """
        fee = fee_rate if fee_rate > 0.0 else 0.0
        if self.spot:
            size = qty / self.sdiv * self.cs
            if buy:
                return self.quote, size * price * (1.0 + fee)
            return self.base, size
        q = position_qty
        if q != 0 and (q > 0) != buy:
            # Against the position: only what goes beyond flat opens new exposure.
            aq = q if q > 0 else -q
            if qty <= aq:
                return self.settle, 0.0
            qty -= aq
        size = qty / self.sdiv * self.cs
        if self.inverse:
            amount = size / price if price > 0.0 else math.inf
            return self.settle, amount * (1.0 / leverage + fee)
        return self.settle, size * price * (1.0 / leverage + fee)


class Position:
    """One strategy's position in one instrument on one venue.

    ``qty`` is signed fixed-point size (instrument size units: base for linear, contracts for
    inverse). ``realized`` and ``fees`` are cumulative in the settlement asset (``settle_asset``:
    quote for linear and spot, base for inverse). ``mark`` is NaN until the first ``mark``.
    """

    __slots__ = (
        "_cs",
        "_pdiv",
        "_sdiv",
        "avg_price",
        "base",
        "fees",
        "instrument",
        "inverse",
        "last_price",
        "mark",
        "qty",
        "quote",
        "realized",
        "settle",
        "spec",
        "spot",
        "strategy_id",
        "symbol",
        "venue",
    )

    def __init__(self, strategy_id: str, instrument: Instrument, spec: InstrumentSpec | None = None) -> None:
        spec = spec or InstrumentSpec(instrument)
        self.strategy_id = strategy_id
        self.instrument = instrument
        self.spec = spec
        self.venue = instrument.venue
        self.symbol = instrument.symbol
        self.base = spec.base
        self.quote = spec.quote
        self.inverse = spec.inverse
        self.spot = spec.spot
        self.settle = spec.settle
        self._cs = spec.cs
        self._pdiv = spec.pdiv
        self._sdiv = spec.sdiv
        self.qty = 0
        self.avg_price = 0.0
        self.realized = 0.0
        self.fees = 0.0
        self.mark = _NAN
        self.last_price = _NAN  # last fill price: converts inverse P&L to quote before a mark exists

    @property
    def settle_asset(self) -> str:
        return self.settle

    @property
    def qty_float(self) -> float:
        return self.qty / self._sdiv

    @property
    def unrealized(self) -> float:
        """Open P&L at the mark in the settlement asset; 0 when flat or not yet marked."""
        q = self.qty
        m = self.mark
        if q == 0 or m != m or m <= 0.0:
            return 0.0
        if self.inverse:
            return q / self._sdiv * self._cs * (1.0 / self.avg_price - 1.0 / m)
        return q / self._sdiv * self._cs * (m - self.avg_price)

    @property
    def ref_price(self) -> float:
        """The price that values this position: the mark, else the last fill price, else NaN."""
        m = self.mark
        return m if m == m else self.last_price

    @property
    def notional(self) -> float:
        """``|qty| * mark`` in quote (USD for inverse: contracts * contract_size).

        Before the first mark the average entry price stands in, so risk never sees NaN.
        """
        q = self.qty
        if q == 0:
            return 0.0
        if self.inverse:
            return abs(q) / self._sdiv * self._cs
        m = self.mark
        if m != m:
            m = self.avg_price
        return abs(q) / self._sdiv * self._cs * m

    @property
    def realized_quote(self) -> float:
        return self.realized * self.ref_price if self.inverse else self.realized

    @property
    def fees_quote(self) -> float:
        return self.fees * self.ref_price if self.inverse else self.fees

    @property
    def unrealized_quote(self) -> float:
        u = self.unrealized
        return u * self.mark if self.inverse and u != 0.0 else u

    def net_quote(self) -> float:
        """Realized + unrealized - fees, in quote."""
        if self.inverse:
            px = self.ref_price
            if px != px:
                return 0.0
            return (self.realized + self.unrealized - self.fees) * px
        return self.realized + self.unrealized - self.fees

    def apply(self, signed_qty: int, price: float) -> float:
        """Book one fill; returns the P&L it realized in the settlement asset (before fees)."""
        q = self.qty
        new_q = q + signed_qty
        realized = 0.0
        if q == 0 or (q > 0) == (signed_qty > 0):
            # Opening or adding: move the average entry.
            aq = abs(q)
            af = abs(signed_qty)
            if aq == 0:
                self.avg_price = price
            elif self.inverse:
                self.avg_price = (aq + af) / (aq / self.avg_price + af / price)
            else:
                self.avg_price = (aq * self.avg_price + af * price) / (aq + af)
        else:
            closed = min(abs(q), abs(signed_qty))
            sign = 1.0 if q > 0 else -1.0
            size = closed / self._sdiv * self._cs
            if self.inverse:
                realized = sign * size * (1.0 / self.avg_price - 1.0 / price)
            else:
                realized = sign * size * (price - self.avg_price)
            self.realized += realized
            if new_q == 0:
                self.avg_price = 0.0
            elif (new_q > 0) != (q > 0):
                # Flipped through zero: the remainder opens at the fill price.
                self.avg_price = price
        self.qty = new_q
        self.last_price = price
        return realized

    def to_dict(self) -> dict[str, object]:
        """JSON-able view in the operator API's units (quote P&L, base/contract quantity)."""
        return {
            "strategy": self.strategy_id,
            "venue": self.venue,
            "symbol": self.symbol,
            "quantity": self.qty_float,
            "avg_price": self.avg_price,
            "mark_price": _json_float(self.mark),
            "notional_usd": self.notional,
            "realized_pnl": _json_float(self.realized_quote),
            "unrealized_pnl": _json_float(self.unrealized_quote),
            "fees": _json_float(self.fees_quote),
            "settle_asset": self.settle_asset,
        }

    def __repr__(self) -> str:
        return (
            f"Position({self.strategy_id} {self.venue}:{self.symbol} qty={self.qty} avg={self.avg_price} "
            f"realized={self.realized} fees={self.fees} mark={self.mark})"
        )


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


class Portfolio:
    """All strategies' positions plus free and held balances per venue and asset."""

    def __init__(self, balances: dict[str, dict[str, float]] | None = None) -> None:
        self._instruments: dict[tuple[str, str], Instrument] = {}
        self._specs: dict[int, InstrumentSpec] = {}  # by id(instrument); the spec keeps it alive
        self._positions: dict[tuple[str, str, str], Position] = {}
        self._by_instrument: dict[tuple[str, str], list[Position]] = {}
        self._by_strategy: dict[str, list[Position]] = {}
        self._by_venue: dict[str, list[Position]] = {}
        self._all: list[Position] = []
        self._free: dict[str, dict[str, float]] = {}
        self._held: dict[str, dict[str, float]] = {}
        # Net P&L at the start of the current UTC day, per strategy (None = all): (day, baseline).
        self._day_base: dict[str | None, tuple[int, float]] = {}
        for venue, assets in (balances or {}).items():
            if not isinstance(assets, dict):
                raise ValueError(f"balances[{venue!r}] must map asset -> amount, got {type(assets).__name__}")
            for asset, amount in assets.items():
                self.set_balance(venue, asset, amount)

    # -- instruments and positions -------------------------------------------------------------

    def register(self, instrument: Instrument) -> None:
        self._instruments[(instrument.venue, instrument.symbol)] = instrument
        self.spec(instrument)

    def spec(self, instrument: Instrument) -> InstrumentSpec:
        """The precomputed view of an instrument (cached per instrument object)."""
        sp = self._specs.get(id(instrument))
        if sp is None or sp.instrument is not instrument:
            sp = self._specs[id(instrument)] = InstrumentSpec(instrument)
        return sp

    def instrument(self, venue: str, symbol: str) -> Instrument:
        try:
            return self._instruments[(venue, symbol)]
        except KeyError:
            raise KeyError(f"instrument {venue}:{symbol} is not registered with the portfolio") from None

    def _new_position(self, strategy_id: str, instrument: Instrument) -> Position:
        pos = Position(strategy_id, instrument, self.spec(instrument))
        key = (instrument.venue, instrument.symbol)
        if key not in self._instruments:
            self._instruments[key] = instrument
        self._positions[(strategy_id, instrument.venue, instrument.symbol)] = pos
        self._by_instrument.setdefault(key, []).append(pos)
        self._by_strategy.setdefault(strategy_id, []).append(pos)
        self._by_venue.setdefault(instrument.venue, []).append(pos)
        self._all.append(pos)
        # A new position on an already-marked instrument starts at the current mark.
        for other in self._by_instrument[key]:
            if other is not pos and other.mark == other.mark:
                pos.mark = other.mark
                break
        return pos

    def position(self, strategy_id: str, venue: str, symbol: str) -> Position:
        """The position (created flat if absent; the instrument must be registered)."""
        pos = self._positions.get((strategy_id, venue, symbol))
        if pos is None:
            pos = self._new_position(strategy_id, self.instrument(venue, symbol))
        return pos

    def find(self, strategy_id: str, venue: str, symbol: str) -> Position | None:
        """The position if it exists, without creating one (the risk check's lookup)."""
        return self._positions.get((strategy_id, venue, symbol))

    def positions(self) -> list[tuple[str, Position]]:
        return [(p.strategy_id, p) for p in self._all]

    def strategies(self) -> list[str]:
        return list(self._by_strategy)

    # -- fills and marks -----------------------------------------------------------------------

    def on_fill(
        self,
        strategy_id: str,
        instrument: Instrument,
        side: Side,
        price: int,
        qty: int,
        fee: float,
        fee_asset: str = "",
    ) -> float:
        """Book a fill (fixed-point ``price``/``qty``, quote-valued ``fee``).

        Returns the P&L realized by this fill in quote, before fees (inverse: base P&L valued at
        the fill price).
        """
        if qty <= 0:
            raise ValueError(f"fill quantity must be positive, got {qty} for {instrument.venue}:{instrument.symbol}")
        pos = self._positions.get((strategy_id, instrument.venue, instrument.symbol))
        if pos is None:
            pos = self._new_position(strategy_id, instrument)
        px = price / pos._pdiv
        signed = qty if side is _BUY else -qty
        realized = pos.apply(signed, px)
        venue_bal = self._free.setdefault(instrument.venue, {})
        base, quote = pos.base, pos.quote
        if pos.inverse:
            fee_settle = fee / px
            pos.fees += fee_settle
            venue_bal[base] = venue_bal.get(base, 0.0) + realized - fee_settle
            return realized * px
        pos.fees += fee
        if pos.spot:
            size = qty / pos._sdiv * pos._cs
            notional = size * px
            if signed > 0:
                venue_bal[base] = venue_bal.get(base, 0.0) + size
                venue_bal[quote] = venue_bal.get(quote, 0.0) - notional
            else:
                venue_bal[base] = venue_bal.get(base, 0.0) - size
                venue_bal[quote] = venue_bal.get(quote, 0.0) + notional
            if fee_asset == base:
                venue_bal[base] -= fee / px
            else:
                venue_bal[quote] -= fee
        else:
            venue_bal[quote] = venue_bal.get(quote, 0.0) + realized - fee
        return realized

    def mark(self, venue: str, symbol: str, price: float) -> None:
        """Set the mark of every strategy's position in this instrument."""
        lst = self._by_instrument.get((venue, symbol))
        if lst is None:
            return
        for pos in lst:
            pos.mark = price

    # -- aggregates ------------------------------------------------------------------------------

    def net_qty(self, venue: str, symbol: str) -> float:
        """Net position of all strategies in instrument size units (base, or contracts if inverse)."""
        lst = self._by_instrument.get((venue, symbol))
        if not lst:
            return 0.0
        return sum(p.qty for p in lst) / lst[0]._sdiv

    def position_usd(self, strategy_id: str | None = None) -> float:
        """Gross position value ``sum |qty| * mark`` in quote (taken as USD), one strategy or all."""
        lst = self._all if strategy_id is None else self._by_strategy.get(strategy_id, ())
        total = 0.0
        for p in lst:
            q = p.qty
            if q:
                # ``Position.notional`` inlined: this runs on every order's risk check.
                if q < 0:
                    q = -q
                if p.inverse:
                    total += q / p._sdiv * p._cs
                else:
                    m = p.mark
                    total += q / p._sdiv * p._cs * (m if m == m else p.avg_price)
        return total

    def strategy_pnl(self, strategy_id: str) -> tuple[float, float, float]:
        """(realized, unrealized, fees) in quote, summed over the strategy's positions."""
        r = u = f = 0.0
        for p in self._by_strategy.get(strategy_id, ()):
            r += p.realized_quote
            u += p.unrealized_quote
            f += p.fees_quote
        return r, u, f

    def net_pnl(self, strategy_id: str | None = None) -> float:
        """Realized + unrealized - fees in quote since the portfolio started, one strategy or all."""
        lst: Iterable[Position] = self._all if strategy_id is None else self._by_strategy.get(strategy_id, ())
        total = 0.0
        for p in lst:
            if p.inverse:
                total += p.net_quote()
                continue
            # Linear ``net_quote`` inlined: this runs on every order's risk check.
            total += p.realized - p.fees
            q = p.qty
            m = p.mark
            if q and m == m and m > 0.0:
                total += q / p._sdiv * p._cs * (m - p.avg_price)
        return total

    def daily_pnl(self, strategy_id: str | None, day: int, roll: bool = True) -> float:
        """Net P&L (realized + unrealized - fees, quote) since the start of UTC day ``day``.

        The baseline is taken the first time a later day is seen (the risk engine asks on every
        order and fill); a timer can call ``start_day`` at midnight to take it exactly. Before any
        baseline exists the day's P&L is everything since the portfolio started. ``roll=False``
        reads without taking a new baseline (reports, the operator API).
        """
        net = self.net_pnl(strategy_id)
        ent = self._day_base.get(strategy_id)
        if ent is None:
            if roll:
                self._day_base[strategy_id] = (day, 0.0)
            return net
        if day > ent[0]:
            if roll:
                self._day_base[strategy_id] = (day, net)
            return 0.0
        return net - ent[1]

    def start_day(self, day: int) -> None:
        """Take every known strategy's (and the total's) daily baseline now, for UTC day ``day``."""
        for sid in [None, *self._by_strategy]:
            ent = self._day_base.get(sid)
            if ent is None or day > ent[0]:
                self._day_base[sid] = (day, self.net_pnl(sid))

    # -- balances --------------------------------------------------------------------------------

    def set_balance(self, venue: str, asset: str, amount: float) -> None:
        """Set the free amount of an asset (initial capital, or a sync from the venue)."""
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
            raise ValueError(f"balance {venue}.{asset} must be a finite number, got {amount!r}")
        self._free.setdefault(venue, {})[asset] = float(amount)

    def free(self, venue: str, asset: str) -> float:
        """What is left for new orders (balance minus holds of open orders)."""
        v = self._free.get(venue)
        return v.get(asset, 0.0) if v is not None else 0.0

    def held(self, venue: str, asset: str) -> float:
        v = self._held.get(venue)
        return v.get(asset, 0.0) if v is not None else 0.0

    def reserve(self, venue: str, asset: str, amount: float) -> None:
        """Hold ``amount`` of an asset for an open order (moves it from free to held)."""
        if amount <= 0.0:
            return
        free = self._free.setdefault(venue, {})
        held = self._held.setdefault(venue, {})
        free[asset] = free.get(asset, 0.0) - amount
        held[asset] = held.get(asset, 0.0) + amount

    def release(self, venue: str, asset: str, amount: float) -> None:
        """Give back a hold (order filled, canceled or rejected); never more than is held."""
        held = self._held.get(venue)
        if held is None or amount <= 0.0:
            return
        cur = held.get(asset, 0.0)
        amount = min(amount, cur)
        held[asset] = cur - amount
        free = self._free.setdefault(venue, {})
        free[asset] = free.get(asset, 0.0) + amount

    def balances(self) -> dict[str, dict[str, float]]:
        """Free amounts per venue and asset (a copy)."""
        return {v: dict(a) for v, a in self._free.items()}

    def balance_detail(self) -> dict[str, dict[str, dict[str, float]]]:
        """``venue -> asset -> {free, held, total}`` for the operator's balance view."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for venue in sorted(set(self._free) | set(self._held)):
            free = self._free.get(venue, {})
            held = self._held.get(venue, {})
            out[venue] = {
                a: {"free": free.get(a, 0.0), "held": held.get(a, 0.0), "total": free.get(a, 0.0) + held.get(a, 0.0)}
                for a in sorted(set(free) | set(held))
            }
        return out

    def order_hold(
        self,
        strategy_id: str,
        instrument: Instrument,
        side: Side,
        price: float,
        qty: int,
        leverage: float = 1.0,
        fee_rate: float = 0.0,
    ) -> tuple[str, float]:
        """(asset, amount) an order needs free: what the risk check tests and the OMS may hold.

        See ``InstrumentSpec.hold``; the strategy's current position decides how much of a
        derivative order opens new exposure.
        """
        pos = self._positions.get((strategy_id, instrument.venue, instrument.symbol))
        q = pos.qty if pos is not None else 0
        return self.spec(instrument).hold(side is _BUY, price, qty, q, leverage, fee_rate)

    def available_margin(self, venue: str, asset: str, leverage: float = 1.0) -> float:
        """Free ``asset`` plus open derivative P&L settled in it, minus the margin positions use.

        For spot assets this is just ``free``: spot positions are the balances themselves.
        """
        v = self._free.get(venue)
        avail = v.get(asset, 0.0) if v is not None else 0.0
        for p in self._by_venue.get(venue, ()):
            q = p.qty
            if q == 0 or p.spot or p.settle != asset:
                continue
            avail += p.unrealized
            if p.inverse:
                px = p.ref_price
                if px == px and px > 0:
                    avail -= p.notional / px / leverage
            else:
                avail -= p.notional / leverage
        return avail
