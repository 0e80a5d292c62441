"""The fake's matching engine and account: orders, fills, balances and user-stream events.

Marketable orders walk the fake's current replayed book with the simulated venue's matcher
(``engine.book.Book.walk``); like the backtest venue, liquidity we take is not removed from the
replayed book (the capture already shows what the market did next). A resting LIMIT order is
matched by the replay: trades at its price consume the queue ahead of it (``sim.queue`` models),
a trade through its price or the opposite side reaching it fills what is left.

Everything here is synchronous and runs on the event loop between replayed messages, so an order
always sees one consistent book. Parameters arrive as ``dict[str, str]`` exactly as the client sent
them (REST query/body or WS API params); validation follows Binance's order and messages.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.book import Book
from sim.fake_binance import errors as E
from sim.fake_binance.errors import BinanceError
from sim.fake_binance.symbols import SCALE, SymbolSpec, fmt
from sim.queue import fill_from_trade, model_code, queue_after_level_change

_NUMBER = re.compile(E.NUMBER_RANGE)
_CLIENT_ID = re.compile(E.CLIENT_ID_RANGE)
_ID_CHARS = string.ascii_letters + string.digits
_TYPES_UNSUPPORTED = {
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
}


def parse_amount(name: str, value: str) -> int:
    """A decimal parameter -> integer at 8 decimals, with Binance's errors for bad input."""
    if value == "":
        raise E.empty_param(name)
    if not _NUMBER.match(value):
        raise E.illegal_chars(name, E.NUMBER_RANGE)
    whole, _, frac = value.partition(".")
    if len(frac) > 8:
        if frac[8:].strip("0"):
            raise E.too_much_precision(name)
        frac = frac[:8]
    return int(whole) * SCALE + int(frac.ljust(8, "0") or "0")


def parse_int(name: str, value: str) -> int:
    if value == "":
        raise E.empty_param(name)
    if not value.isdigit() or len(value) > 20:
        raise E.illegal_chars(name, E.INTEGER_RANGE)
    return int(value)


@dataclass(slots=True)
class Fill:
    price: int
    qty: int
    commission: int
    commission_asset: str
    trade_id: int
    maker: bool
    time: int


@dataclass(slots=True, eq=False)
class Order:
    symbol: str
    order_id: int
    client_order_id: str
    side: str  # BUY | SELL
    type: str  # LIMIT | LIMIT_MAKER | MARKET
    tif: str
    price: int
    qty: int  # 0 for quote-quantity market orders until matched
    quote_qty: int  # origQuoteOrderQty
    time: int
    stp: str = "NONE"
    status: str = "NEW"
    executed: int = 0
    cum_quote: int = 0
    update_time: int = 0
    working_time: int = -1
    queue: int = 0  # size ahead of us at our level (fixed point)
    traded: int = 0  # traded at our level since the last depth update of it
    locked_asset: str = ""
    locked: int = 0  # still locked for this order
    fills: list[Fill] = field(default_factory=list)

    @property
    def leaves(self) -> int:
        return self.qty - self.executed

    @property
    def is_buy(self) -> bool:
        return self.side == "BUY"

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


class Exchange:
    """Orders and balances of the fake's single account, matched against the replayed books."""

    def __init__(
        self,
        specs: dict[str, SymbolSpec],
        books: dict[str, Book],
        balances: dict[str, int],
        maker_fee: int,
        taker_fee: int,
        clock: Callable[[], int],
        emit: Callable[[list[dict]], None],
        queue_model: str = "risk_averse",
        queue_power: float = 2.0,
        seed: int = 0,
    ) -> None:
        self.specs = specs
        self.books = books
        self.balances: dict[str, list[int]] = {a: [int(v), 0] for a, v in balances.items()}
        self.maker_fee = int(maker_fee)
        self.taker_fee = int(taker_fee)
        self.clock = clock
        self.emit = emit
        self.queue_model = model_code(queue_model)
        self.queue_power = float(queue_power)
        self._rng = random.Random(seed)
        self.orders: dict[int, Order] = {}
        self._open_by_client: dict[tuple[str, str], Order] = {}
        self._resting: dict[str, list[Order]] = {}
        self.watch: dict[tuple[str, int, int], list[Order]] = {}  # (symbol, +1 bid/-1 ask, price) -> resting orders
        self.last_price: dict[str, int] = {}
        self.update_time = 0
        self._next_order_id = 1000
        self._next_trade_id = 1
        self._next_exec_id = 1
        self.trades: list[tuple[Order, Fill]] = []

    # --- helpers ------------------------------------------------------------------------------
    def _spec(self, params: dict[str, str]) -> SymbolSpec:
        symbol = params.get("symbol")
        if not symbol:
            raise E.mandatory("symbol")
        spec = self.specs.get(symbol)
        if spec is None:
            raise E.bad_symbol()
        return spec

    def _new_client_id(self) -> str:
        return "".join(self._rng.choice(_ID_CHARS) for _ in range(22))

    def _balance(self, asset: str) -> list[int]:
        b = self.balances.get(asset)
        if b is None:
            b = self.balances[asset] = [0, 0]
        return b

    def _walk(self, book: Book, buy: bool, qty: int, limit: int) -> list[tuple[int, int]]:
        """Fills (price, qty) against the opposite side, best first, not mutating the book."""
        levels = book.depth[1 if buy else 0]
        if levels == 0 or qty <= 0:
            return []
        return book.walk(buy, qty, limit, max_levels=levels)

    def _walk_quote(self, book: Book, buy: bool, quote: int, step: int) -> list[tuple[int, int]]:
        """Fills for a quote-quantity market order: spend (or receive) ``quote`` across the book."""
        fills: list[tuple[int, int]] = []
        depth = book.depth[1 if buy else 0]
        for px, size in book.levels(-1 if buy else 1, depth):
            q = min(size, quote * SCALE // px)
            q -= q % step
            if q <= 0:
                break
            fills.append((px, q))
            quote -= px * q // SCALE
        return fills

    def _reference_price(self, symbol: str) -> int:
        book = self.books[symbol]
        if book.best_bid_fixed and book.best_ask_fixed:
            return (book.best_bid_fixed + book.best_ask_fixed) // 2
        return self.last_price.get(symbol, 0)

    def _exec_report(
        self, o: Order, x: str, *, fill: Fill | None = None, client_id: str | None = None, orig_client_id: str = ""
    ) -> dict:
        now = self.clock()
        exec_id = self._next_exec_id
        self._next_exec_id += 1
        last_qty = fill.qty if fill else 0
        last_px = fill.price if fill else 0
        return {
            "e": "executionReport",
            "E": now,
            "s": o.symbol,
            "c": client_id if client_id is not None else o.client_order_id,
            "S": o.side,
            "o": o.type,
            "f": o.tif,
            "q": fmt(o.qty),
            "p": fmt(o.price),
            "P": fmt(0),
            "F": fmt(0),
            "g": -1,
            "C": orig_client_id,
            "x": x,
            "X": o.status,
            "r": "NONE",
            "i": o.order_id,
            "l": fmt(last_qty),
            "z": fmt(o.executed),
            "L": fmt(last_px),
            "n": fmt(fill.commission) if fill else "0",
            "N": fill.commission_asset if fill else None,
            "T": fill.time if fill else now,
            "t": fill.trade_id if fill else -1,
            "I": exec_id,
            "w": o.is_open and o.type != "MARKET" and o.tif == "GTC",
            "m": bool(fill and fill.maker),
            "M": fill is not None,
            "O": o.time,
            "Z": fmt(o.cum_quote),
            "Y": fmt(last_px * last_qty // SCALE),
            "Q": fmt(o.quote_qty),
            "W": o.working_time if o.working_time >= 0 else o.time,
            "V": o.stp,
        }

    def _account_position(self, assets: set[str]) -> dict:
        now = self.clock()
        return {
            "e": "outboundAccountPosition",
            "E": now,
            "u": self.update_time,
            "B": [{"a": a, "f": fmt(self._balance(a)[0]), "l": fmt(self._balance(a)[1])} for a in sorted(assets)],
        }

    # --- order entry --------------------------------------------------------------------------
    def validate(self, params: dict[str, str]) -> dict:
        """Check a new order the way Binance does; returns the parsed order fields."""
        spec = self._spec(params)
        side = params.get("side")
        if not side:
            raise E.mandatory("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        typ = params.get("type")
        if not typ:
            raise E.mandatory("type")
        if typ in _TYPES_UNSUPPORTED:
            raise E.new_order_rejected(_TYPES_UNSUPPORTED[typ])
        if typ not in ("LIMIT", "LIMIT_MAKER", "MARKET") or typ not in spec.order_types:
            raise BinanceError(-1116, "Invalid orderType.")
        tif = params.get("timeInForce")
        price = qty = quote_qty = 0
        if typ == "LIMIT":
            if not tif:
                raise E.mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(-1115, "Invalid timeInForce.")
        elif tif is not None:
            raise E.not_required("timeInForce")
        else:
            tif = "GTC"
        if typ in ("LIMIT", "LIMIT_MAKER"):
            if "quantity" not in params:
                raise E.mandatory("quantity")
            if "price" not in params:
                raise E.mandatory("price")
            if "quoteOrderQty" in params:
                raise E.not_required("quoteOrderQty")
            qty = parse_amount("quantity", params["quantity"])
            price = parse_amount("price", params["price"])
            spec.check_price(price)
            spec.check_lot(qty)
            spec.check_notional(price * qty // SCALE, market=False)
        else:
            if "price" in params:
                raise E.not_required("price")
            has_qty = bool(params.get("quantity"))
            has_quote = bool(params.get("quoteOrderQty"))
            if has_qty and has_quote:
                raise E.not_required("quoteOrderQty")
            if not (has_qty or has_quote):
                raise E.either("quantity", "quoteOrderQty")
            if has_qty:
                qty = parse_amount("quantity", params["quantity"])
                spec.check_market_lot(qty)
                ref = self._reference_price(spec.symbol)
                if ref:
                    spec.check_notional(ref * qty // SCALE, market=True)
            else:
                quote_qty = parse_amount("quoteOrderQty", params["quoteOrderQty"])
                spec.check_notional(quote_qty, market=True)
        client_id = params.get("newClientOrderId")
        if client_id is not None:
            if client_id == "":
                raise BinanceError(-1118, "New client order ID was empty.")
            if not _CLIENT_ID.match(client_id):
                raise E.illegal_chars("newClientOrderId", E.CLIENT_ID_RANGE)
        resp = params.get("newOrderRespType")
        if resp is not None and resp not in ("ACK", "RESULT", "FULL"):
            raise E.illegal_chars("newOrderRespType", "ACK, RESULT, FULL")
        stp = params.get("selfTradePreventionMode", "NONE")
        if stp != "NONE":
            raise BinanceError(-1130, "Data sent for parameter 'selfTradePreventionMode' is not valid.")
        if sum(1 for o in self._resting.get(spec.symbol, ()) if o.is_open) >= spec.max_num_orders:
            raise E.filter_failure("MAX_NUM_ORDERS")
        return {
            "spec": spec,
            "side": side,
            "type": typ,
            "tif": tif,
            "price": price,
            "qty": qty,
            "quote_qty": quote_qty,
            "client_id": client_id,
            "resp": resp or ("FULL" if typ in ("LIMIT", "MARKET") else "ACK"),
        }

    def place(self, params: dict[str, str]) -> tuple[Order, str]:
        """Accept (or reject with ``BinanceError``) and match a new order. Returns (order, newOrderRespType)."""
        v = self.validate(params)
        spec: SymbolSpec = v["spec"]
        buy = v["side"] == "BUY"
        typ = v["type"]
        book = self.books[spec.symbol]
        client_id = v["client_id"] or self._new_client_id()
        if (spec.symbol, client_id) in self._open_by_client:
            raise E.new_order_rejected(E.MSG_DUPLICATE)
        price = v["price"]
        best_opp = book.best_ask_fixed if buy else book.best_bid_fixed
        marketable = bool(best_opp) and (typ == "MARKET" or (price >= best_opp if buy else price <= best_opp))
        if typ == "LIMIT_MAKER" and marketable:
            raise E.new_order_rejected(E.MSG_WOULD_TAKE)
        # what the order can take now, before any state changes (balance checks need it)
        fills: list[tuple[int, int]] = []
        if marketable:
            if v["quote_qty"]:
                fills = self._walk_quote(book, buy, v["quote_qty"], spec.step)
            else:
                fills = self._walk(book, buy, v["qty"], price if typ != "MARKET" else 0)
        qty = v["qty"] or sum(q for _, q in fills)
        if v["tif"] == "FOK" and sum(q for _, q in fills) < qty:
            fills = []
        # funds: limit orders lock their full value; market orders need what they will spend now
        if typ == "MARKET":
            need_asset = spec.quote if buy else spec.base
            need = sum(px * q // SCALE for px, q in fills) if buy else sum(q for _, q in fills)
            if buy and v["quote_qty"]:
                need = v["quote_qty"]
            lock = 0
        else:
            need_asset = spec.quote if buy else spec.base
            need = lock = (-(-price * qty // SCALE)) if buy else qty
        if self._balance(need_asset)[0] < need:
            raise E.new_order_rejected(E.MSG_INSUFFICIENT)

        now = self.clock()
        o = Order(
            symbol=spec.symbol,
            order_id=self._next_order_id,
            client_order_id=client_id,
            side=v["side"],
            type=typ,
            tif=v["tif"],
            price=price,
            qty=qty,
            quote_qty=v["quote_qty"],
            time=now,
            update_time=now,
            working_time=now,
        )
        self._next_order_id += 1
        self.orders[o.order_id] = o
        changed: set[str] = set()
        if lock:
            bal = self._balance(need_asset)
            bal[0] -= lock
            bal[1] += lock
            o.locked_asset = need_asset
            o.locked = lock
            changed.add(need_asset)
        events = [self._exec_report(o, "NEW")]
        for px, q in fills:
            events.append(self._fill(o, px, q, maker=False, changed=changed))
        if typ == "MARKET" or o.tif in ("IOC", "FOK"):
            if o.status != "FILLED":
                o.status = "EXPIRED"
                o.update_time = self.clock()
                self._release(o, changed)
                events.append(self._exec_report(o, "EXPIRED"))
        elif o.is_open:
            self._rest(o, book)
        if changed:
            self.update_time = self.clock()
            events.append(self._account_position(changed))
        self.emit(events)
        return o, v["resp"]

    def _rest(self, o: Order, book: Book) -> None:
        side = 1 if o.is_buy else -1
        o.queue = book.size_at(side, o.price)
        o.traded = 0
        self._resting.setdefault(o.symbol, []).append(o)
        self.watch.setdefault((o.symbol, side, o.price), []).append(o)
        self._open_by_client[(o.symbol, o.client_order_id)] = o

    def _unrest(self, o: Order) -> None:
        lst = self._resting.get(o.symbol)
        if lst and o in lst:
            lst.remove(o)
        key = (o.symbol, 1 if o.is_buy else -1, o.price)
        w = self.watch.get(key)
        if w and o in w:
            w.remove(o)
            if not w:
                del self.watch[key]
        self._open_by_client.pop((o.symbol, o.client_order_id), None)

    def _release(self, o: Order, changed: set[str]) -> None:
        if o.locked:
            bal = self._balance(o.locked_asset)
            bal[0] += o.locked
            bal[1] -= o.locked
            o.locked = 0
            changed.add(o.locked_asset)

    def _fill(self, o: Order, px: int, q: int, maker: bool, changed: set[str]) -> dict:
        spec = self.specs[o.symbol]
        quote_amt = px * q // SCALE
        rate = self.maker_fee if maker else self.taker_fee
        now = self.clock()
        if o.is_buy:
            commission, commission_asset = q * rate // SCALE, spec.base
            spend = quote_amt
            if o.locked:
                # the lock was taken at the limit price; what a better price saves goes back to free
                locked_part = min(o.locked, -(-o.price * q // SCALE))
                o.locked -= locked_part
                qb = self._balance(spec.quote)
                qb[1] -= locked_part
                qb[0] += locked_part - spend
            else:
                self._balance(spec.quote)[0] -= spend
            self._balance(spec.base)[0] += q - commission
        else:
            commission, commission_asset = quote_amt * rate // SCALE, spec.quote
            if o.locked:
                part = min(o.locked, q)
                o.locked -= part
                self._balance(spec.base)[1] -= part
            else:
                self._balance(spec.base)[0] -= q
            self._balance(spec.quote)[0] += quote_amt - commission
        changed.add(spec.base)
        changed.add(spec.quote)
        o.executed += q
        o.cum_quote += quote_amt
        o.update_time = now
        f = Fill(px, q, commission, commission_asset, self._next_trade_id, maker, now)
        self._next_trade_id += 1
        o.fills.append(f)
        self.trades.append((o, f))
        self.last_price[o.symbol] = px
        if o.executed >= o.qty:
            o.status = "FILLED"
            self._release(o, changed)
            self._unrest(o)
        else:
            o.status = "PARTIALLY_FILLED"
        return self._exec_report(o, "TRADE", fill=f)

    # --- cancel / query -----------------------------------------------------------------------
    def _find(self, params: dict[str, str], spec: SymbolSpec) -> Order | None:
        oid = params.get("orderId")
        cid = params.get("origClientOrderId")
        if not oid and not cid:
            raise E.either("origClientOrderId", "orderId")
        if oid:
            o = self.orders.get(parse_int("orderId", oid))
            if o is None or o.symbol != spec.symbol or (cid and o.client_order_id != cid):
                return None
            return o
        o = self._open_by_client.get((spec.symbol, cid))
        if o is not None:
            return o
        for cand in reversed(self.orders.values()):
            if cand.symbol == spec.symbol and cand.client_order_id == cid:
                return cand
        return None

    def cancel(self, params: dict[str, str]) -> tuple[Order, str]:
        """Cancel one open order; returns (order, the cancel's client order id)."""
        spec = self._spec(params)
        o = self._find(params, spec)
        if o is None or not o.is_open:
            raise BinanceError(-2011, E.MSG_UNKNOWN_ORDER)
        restriction = params.get("cancelRestrictions")
        if restriction is not None:
            if restriction not in ("ONLY_NEW", "ONLY_PARTIALLY_FILLED"):
                raise BinanceError(-1145, "Invalid cancelRestrictions")
            if (restriction == "ONLY_NEW") != (o.status == "NEW"):
                raise BinanceError(-2011, E.MSG_CANCEL_RESTRICTED)
        cancel_id = params.get("newClientOrderId") or self._new_client_id()
        self._cancel(o, cancel_id)
        return o, cancel_id

    def _cancel(self, o: Order, cancel_id: str) -> None:
        o.status = "CANCELED"
        o.update_time = self.clock()
        self._unrest(o)
        changed: set[str] = set()
        self._release(o, changed)
        events = [self._exec_report(o, "CANCELED", client_id=cancel_id, orig_client_id=o.client_order_id)]
        if changed:
            self.update_time = self.clock()
            events.append(self._account_position(changed))
        self.emit(events)

    def cancel_all(self, params: dict[str, str]) -> list[tuple[Order, str]]:
        spec = self._spec(params)
        open_orders = [o for o in self._resting.get(spec.symbol, []) if o.is_open]
        if not open_orders:
            raise BinanceError(-2011, E.MSG_UNKNOWN_ORDER)
        out = []
        for o in open_orders:
            cid = self._new_client_id()
            self._cancel(o, cid)
            out.append((o, cid))
        return out

    def query(self, params: dict[str, str]) -> Order:
        spec = self._spec(params)
        o = self._find(params, spec)
        if o is None:
            raise BinanceError(-2013, E.MSG_NO_SUCH_ORDER)
        return o

    def open_orders(self, params: dict[str, str]) -> list[Order]:
        if params.get("symbol"):
            spec = self._spec(params)
            return [o for o in self._resting.get(spec.symbol, []) if o.is_open]
        return [o for lst in self._resting.values() for o in lst if o.is_open]

    def my_trades(self, params: dict[str, str]) -> list[dict]:
        """``GET /api/v3/myTrades``, oldest first: ``fromId`` (trades >= that id), or ``startTime``
        / ``endTime`` (at most 24 h apart), else the most recent ``limit`` (default 500, max 1000);
        ``orderId`` narrows to one order. ``fromId`` with a time bound is refused as Binance does."""
        spec = self._spec(params)
        oid = parse_int("orderId", params["orderId"]) if params.get("orderId") else None
        from_id = parse_int("fromId", params["fromId"]) if params.get("fromId") else None
        start = parse_int("startTime", params["startTime"]) if params.get("startTime") else None
        end = parse_int("endTime", params["endTime"]) if params.get("endTime") else None
        limit = min(parse_int("limit", params["limit"]), 1000) if params.get("limit") else 500
        if from_id is not None and (start is not None or end is not None):
            raise BinanceError(-1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None and end - start > 86_400_000:
            raise BinanceError(-1127, "More than 24 hours between startTime and endTime.")
        picked = [
            (o, f)
            for o, f in self.trades
            if o.symbol == spec.symbol
            and (oid is None or o.order_id == oid)
            and (from_id is None or f.trade_id >= from_id)
            and (start is None or f.time >= start)
            and (end is None or f.time <= end)
        ]
        picked = picked[-limit:] if from_id is None and start is None and end is None else picked[:limit]
        return self.trade_list(picked)

    def trade_list(self, trades: list[tuple[Order, Fill]] | None = None) -> list[dict]:
        """Trades (all of the account's when None) as ``myTrades`` lists them."""
        out = []
        for o, f in self.trades if trades is None else trades:
            out.append(
                {
                    "symbol": o.symbol,
                    "id": f.trade_id,
                    "orderId": o.order_id,
                    "orderListId": -1,
                    "price": fmt(f.price),
                    "qty": fmt(f.qty),
                    "quoteQty": fmt(f.price * f.qty // SCALE),
                    "commission": fmt(f.commission),
                    "commissionAsset": f.commission_asset,
                    "time": f.time,
                    "isBuyer": o.is_buy,
                    "isMaker": f.maker,
                    "isBestMatch": True,
                }
            )
        return out

    # --- the operator's hand (tests): what the market or a person does to a resting order -------
    def resting(self, symbol: str, client_order_id: str) -> Order:
        o = self._open_by_client.get((symbol, client_order_id))
        if o is None or not o.is_open:
            raise KeyError(f"no open order {client_order_id!r} on {symbol}")
        return o

    def fill_resting(self, symbol: str, client_order_id: str, qty: int | None = None) -> Order:
        """Fill an open order at its price as a maker (``qty`` fixed point; all it has left when
        None), as the market would: a trade, balances, user-stream events."""
        o = self.resting(symbol, client_order_id)
        q = o.leaves if qty is None else min(int(qty), o.leaves)
        if q <= 0:
            raise ValueError(f"fill quantity must be positive, got {qty}")
        self._maker_fill(o, q)
        return o

    def cancel_resting(self, symbol: str, client_order_id: str) -> Order:
        """Cancel an open order as if from another session of the account (the web UI)."""
        o = self.resting(symbol, client_order_id)
        self._cancel(o, self._new_client_id())
        return o

    # --- replay hooks (called for every replayed message that touches our orders) ------------
    def on_level(self, symbol: str, side: int, price: int, old: int, new: int) -> None:
        for o in self.watch.get((symbol, side, price), ()):
            o.queue = int(queue_after_level_change(self.queue_model, self.queue_power, o.queue, old, new, o.traded))
            o.traded = 0

    def after_depth(self, symbol: str) -> None:
        """The opposite side reached a resting order's price: the level it sat in was consumed."""
        lst = self._resting.get(symbol)
        if not lst:
            return
        book = self.books[symbol]
        bb, ba = book.best_bid_fixed, book.best_ask_fixed
        for o in list(lst):
            if (o.is_buy and ba and ba <= o.price) or (not o.is_buy and bb and bb >= o.price):
                self._maker_fill(o, o.leaves)

    def on_trade(self, symbol: str, price: int, qty: int, buyer_maker: bool) -> None:
        self.last_price[symbol] = price
        lst = self._resting.get(symbol)
        if not lst:
            return
        for o in list(lst):
            # a taker sell (buyer is maker) hits resting buys; a taker buy lifts resting sells
            if o.is_buy != buyer_maker:
                continue
            through = price < o.price if o.is_buy else price > o.price
            if through:
                self._maker_fill(o, o.leaves)
            elif price == o.price:
                o.traded += qty
                queue, filled = fill_from_trade(o.queue, o.leaves, qty)
                o.queue = int(queue)
                if filled > 0:
                    self._maker_fill(o, int(filled))

    def _maker_fill(self, o: Order, q: int) -> None:
        changed: set[str] = set()
        events = [self._fill(o, o.price, q, maker=True, changed=changed)]
        self.update_time = self.clock()
        events.append(self._account_position(changed))
        self.emit(events)

    # --- account ------------------------------------------------------------------------------
    def account_json(self, omit_zero: bool = False) -> dict:
        bps_maker = self.maker_fee * 10000 // SCALE
        bps_taker = self.taker_fee * 10000 // SCALE
        balances = [
            {"asset": a, "free": fmt(f), "locked": fmt(lk)}
            for a, (f, lk) in self.balances.items()
            if not (omit_zero and f == 0 and lk == 0)
        ]
        return {
            "makerCommission": bps_maker,
            "takerCommission": bps_taker,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": fmt(self.maker_fee),
                "taker": fmt(self.taker_fee),
                "buyer": fmt(0),
                "seller": fmt(0),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.update_time,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }


# --- response shapes (REST and WS API share them) ---------------------------------------------
def ack_json(o: Order) -> dict:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "transactTime": o.time,
    }


def result_json(o: Order) -> dict:
    d = ack_json(o)
    d.update(
        {
            "price": fmt(o.price),
            "origQty": fmt(o.qty),
            "executedQty": fmt(o.executed),
            "origQuoteOrderQty": fmt(o.quote_qty),
            "cummulativeQuoteQty": fmt(o.cum_quote),
            "status": o.status,
            "timeInForce": o.tif,
            "type": o.type,
            "side": o.side,
            "workingTime": o.working_time,
            "selfTradePreventionMode": o.stp,
        }
    )
    return d


def full_json(o: Order) -> dict:
    d = result_json(o)
    d["fills"] = [
        {
            "price": fmt(f.price),
            "qty": fmt(f.qty),
            "commission": fmt(f.commission),
            "commissionAsset": f.commission_asset,
            "tradeId": f.trade_id,
        }
        for f in o.fills
        if not f.maker
    ]
    return d


def new_order_json(o: Order, resp_type: str) -> dict:
    if resp_type == "ACK":
        return ack_json(o)
    if resp_type == "RESULT":
        return result_json(o)
    return full_json(o)


def cancel_json(o: Order, cancel_client_id: str) -> dict:
    return {
        "symbol": o.symbol,
        "origClientOrderId": o.client_order_id,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": cancel_client_id,
        "transactTime": o.update_time,
        "price": fmt(o.price),
        "origQty": fmt(o.qty),
        "executedQty": fmt(o.executed),
        "origQuoteOrderQty": fmt(o.quote_qty),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": o.tif,
        "type": o.type,
        "side": o.side,
        "selfTradePreventionMode": o.stp,
    }


def query_json(o: Order) -> dict:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "price": fmt(o.price),
        "origQty": fmt(o.qty),
        "executedQty": fmt(o.executed),
        "cummulativeQuoteQty": fmt(o.cum_quote),
        "status": o.status,
        "timeInForce": o.tif,
        "type": o.type,
        "side": o.side,
        "stopPrice": fmt(0),
        "icebergQty": fmt(0),
        "time": o.time,
        "updateTime": o.update_time,
        "isWorking": True,
        "workingTime": o.working_time,
        "origQuoteOrderQty": fmt(o.quote_qty),
        "selfTradePreventionMode": o.stp,
    }
