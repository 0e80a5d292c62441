"""The fake's matching and account: Coinbase Exchange's order rules on the replayed book.

* Books: price -> size per side, Decimal, as the replay sets them.
* Orders (``POST /orders``): ``limit`` (``time_in_force`` GTC | IOC | FOK, ``post_only``) and
  ``market`` (``size``). A marketable order fills at once against the book's levels (walking
  them, without changing the public book: the replay is the market); the rest of a GTC limit
  rests and fills, whole, when the replayed book trades through its price. A post-only order that
  would take is rejected (``status: rejected``, ``reject_reason: post only``).
* Rules: size a multiple of ``base_increment``, price of ``quote_increment``, notional >=
  ``min_market_funds``; failures answer 400 with Coinbase's texts.
* Balances: a buy holds price x size of the quote currency, a sell the size of the base; not
  enough available -> 400 ``Insufficient funds``. Fees: maker/taker rates on the quote amount.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

ZERO = Decimal(0)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def iso(ts: float | None = None) -> str:
    t = time.time() if ts is None else ts
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fmt(d: Decimal) -> str:
    return f"{d:.8f}"


@dataclass
class Order:
    id: str
    product_id: str
    side: str  # buy | sell
    type: str
    price: Decimal
    size: Decimal
    client_oid: str
    tif: str
    post_only: bool
    created_at: str
    status: str = "open"  # pending | open | done | rejected
    filled: Decimal = ZERO
    executed_value: Decimal = ZERO
    fees: Decimal = ZERO
    done_reason: str = ""
    reject_reason: str = ""
    hold: Decimal = ZERO

    def json(self) -> dict:
        return {
            "id": self.id,
            "price": fmt(self.price),
            "size": fmt(self.size),
            "product_id": self.product_id,
            "profile_id": "fake-profile",
            "side": self.side,
            "type": self.type,
            "time_in_force": self.tif,
            "post_only": self.post_only,
            "client_oid": self.client_oid,
            "created_at": self.created_at,
            "fill_fees": f"{self.fees:.16f}",
            "filled_size": fmt(self.filled),
            "executed_value": f"{self.executed_value:.16f}",
            "status": self.status,
            "settled": self.status in ("done", "rejected"),
            **({"done_reason": self.done_reason, "done_at": iso()} if self.status == "done" else {}),
            **({"reject_reason": self.reject_reason} if self.reject_reason else {}),
        }


@dataclass
class FillRow:
    trade_id: int
    order: Order
    price: Decimal
    size: Decimal
    liquidity: str
    fee: Decimal
    created_at: str

    def json(self) -> dict:
        return {
            "trade_id": self.trade_id,
            "product_id": self.order.product_id,
            "order_id": self.order.id,
            "price": fmt(self.price),
            "size": fmt(self.size),
            "side": self.order.side,
            "liquidity": self.liquidity,
            "fee": f"{self.fee:.16f}",
            "created_at": self.created_at,
            "settled": True,
        }


@dataclass
class Exchange:
    products: dict[str, dict]
    balances: dict[str, Decimal]
    maker_fee: Decimal = Decimal("0.004")
    taker_fee: Decimal = Decimal("0.006")
    bids: dict[str, dict[Decimal, Decimal]] = field(default_factory=dict)
    asks: dict[str, dict[Decimal, Decimal]] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    by_client: dict[str, str] = field(default_factory=dict)
    fills: list[FillRow] = field(default_factory=list)
    holds: dict[str, Decimal] = field(default_factory=dict)
    _trade_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    #: the ``user`` channel's messages (``received``, ``open``, ``match``, ``done``) as they happen
    on_event: Callable[[dict], None] | None = None

    def _event(self, kind: str, o: Order, **extra: object) -> None:
        if self.on_event is None:
            return
        msg: dict[str, object] = {
            "type": kind,
            "time": iso(),
            "product_id": o.product_id,
            "sequence": 0,  # authenticated messages do not move the feed's sequence (CB-EX docs)
            "order_id": o.id,
            "side": o.side,
            "profile_id": "fake-profile",
            "user_id": "fake-user",
        }
        msg.update(extra)
        self.on_event(msg)

    # --- the public book ------------------------------------------------------------------------
    def set_book(self, product: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.bids[product] = {Decimal(p): Decimal(q) for p, q in bids if Decimal(q) > 0}
        self.asks[product] = {Decimal(p): Decimal(q) for p, q in asks if Decimal(q) > 0}

    def apply(self, product: str, side: str, price: str, size: str) -> None:
        book = self.bids[product] if side == "bid" else self.asks[product]
        p, q = Decimal(price), Decimal(size)
        if q == 0:
            book.pop(p, None)
        else:
            book[p] = q

    def best(self, product: str) -> tuple[Decimal | None, Decimal | None]:
        b, a = self.bids.get(product, {}), self.asks.get(product, {})
        return (max(b) if b else None, min(a) if a else None)

    def levels(self, product: str, side: str) -> list[tuple[Decimal, Decimal]]:
        if side == "bid":
            return sorted(self.bids.get(product, {}).items(), reverse=True)
        return sorted(self.asks.get(product, {}).items())

    # --- orders ---------------------------------------------------------------------------------
    def place(self, body: dict) -> Order:
        pid = body.get("product_id")
        if pid not in self.products:
            raise ApiError(404, "product not found" if pid else "product_id is required")
        prod = self.products[pid]
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise ApiError(400, "side must be buy or sell")
        otype = body.get("type", "limit")
        if otype not in ("limit", "market"):
            raise ApiError(400, f"Invalid order type {otype}")
        cid = str(body.get("client_oid", "") or "")
        if cid:
            try:
                uuid.UUID(cid)
            except ValueError:
                raise ApiError(400, "Invalid client_oid") from None
            if cid in self.by_client:
                raise ApiError(400, "duplicate client_oid")
        try:
            size = Decimal(str(body.get("size", "0")))
            price = Decimal(str(body.get("price", "0"))) if otype == "limit" else ZERO
        except ArithmeticError:
            raise ApiError(400, "size and price must be decimal strings") from None
        step, tick = Decimal(prod["base_increment"]), Decimal(prod["quote_increment"])
        if size <= 0 or size % step:
            raise ApiError(400, f"size is too accurate. Smallest unit is {step:.8f}")
        if otype == "limit" and (price <= 0 or price % tick):
            raise ApiError(400, f"price is too accurate. Smallest unit is {tick:.8f}")
        bb, ba = self.best(pid)
        ref = price if otype == "limit" else (ba if side == "buy" else bb) or ZERO
        funds = Decimal(prod.get("min_market_funds") or "0")
        if funds and size * ref < funds:
            raise ApiError(400, f"size is too small. Minimum funds is {funds:.8f}")
        tif = str(body.get("time_in_force", "GTC")) if otype == "limit" else "IOC"
        if tif not in ("GTC", "IOC", "FOK"):
            raise ApiError(400, f"Invalid time_in_force {tif}")
        base, quote = prod["base_currency"], prod["quote_currency"]
        hold_asset = quote if side == "buy" else base
        hold = size * ref * (1 + self.taker_fee) if side == "buy" else size
        if self.available(hold_asset) < hold:
            raise ApiError(400, "Insufficient funds")
        o = Order(
            str(uuid.uuid4()), pid, side, otype, price, size, cid, tif, bool(body.get("post_only")), iso(), "pending"
        )
        self.orders[o.id] = o
        if cid:
            self.by_client[cid] = o.id
        self._event(
            "received",
            o,
            order_type=otype,
            size=fmt(size),
            **({"price": fmt(price)} if otype == "limit" else {}),
            **({"client_oid": cid} if cid else {}),
        )
        marketable = otype == "market" or (
            (side == "buy" and ba is not None and price >= ba) or (side == "sell" and bb is not None and price <= bb)
        )
        if marketable and o.post_only:
            o.status, o.reject_reason = "rejected", "post only"
            self._done(o, "canceled")
            return o
        if marketable:
            self._take(o)
        if o.filled == o.size:
            self._done(o, "filled")
        elif tif in ("IOC", "FOK") or otype == "market":
            self._done(o, "canceled")
        else:
            o.status = "open"
            self._event("open", o, price=fmt(price), remaining_size=fmt(o.size - o.filled))
            o.hold = (o.size - o.filled) * (price if side == "buy" else 1)
            self.holds[hold_asset] = self.holds.get(hold_asset, ZERO) + o.hold
        return o

    def _take(self, o: Order) -> None:
        opp = self.levels(o.product_id, "offer" if o.side == "buy" else "bid")
        want = o.size
        if o.tif == "FOK":
            room = sum(q for p, q in opp if o.type == "market" or (p <= o.price if o.side == "buy" else p >= o.price))
            if room < want:
                return
        for p, q in opp:
            if o.type == "limit" and (p > o.price if o.side == "buy" else p < o.price):
                break
            take = min(q, want - o.filled)
            self._fill(o, p, take, "T")
            if o.filled == want:
                break

    def _fill(self, o: Order, price: Decimal, size: Decimal, liquidity: str) -> None:
        prod = self.products[o.product_id]
        base, quote = prod["base_currency"], prod["quote_currency"]
        value = price * size
        fee = value * (self.taker_fee if liquidity == "T" else self.maker_fee)
        o.filled += size
        o.executed_value += value
        o.fees += fee
        sign = 1 if o.side == "buy" else -1
        self.balances[base] = self.balances.get(base, ZERO) + sign * size
        self.balances[quote] = self.balances.get(quote, ZERO) - sign * value - fee
        row = FillRow(next(self._trade_ids), o, price, size, liquidity, fee, iso())
        self.fills.append(row)
        maker = liquidity == "M"
        self._event(
            "match",
            o,
            trade_id=row.trade_id,
            maker_order_id=o.id if maker else str(uuid.uuid4()),
            taker_order_id=str(uuid.uuid4()) if maker else o.id,
            # the maker's side, as on the public feed
            side=o.side if maker else ("sell" if o.side == "buy" else "buy"),
            size=fmt(size),
            price=fmt(price),
            **({"maker_fee_rate": str(self.maker_fee)} if maker else {"taker_fee_rate": str(self.taker_fee)}),
        )

    def _done(self, o: Order, reason: str) -> None:
        if o.status != "rejected":
            o.status, o.done_reason = "done", reason
        self._event("done", o, reason=reason, price=fmt(o.price), remaining_size=fmt(o.size - o.filled))

    def available(self, asset: str) -> Decimal:
        return self.balances.get(asset, ZERO) - self.holds.get(asset, ZERO)

    def _release(self, o: Order) -> None:
        prod = self.products[o.product_id]
        asset = prod["quote_currency"] if o.side == "buy" else prod["base_currency"]
        self.holds[asset] = self.holds.get(asset, ZERO) - o.hold
        o.hold = ZERO

    def find(self, ref: str) -> Order:
        oid = self.by_client.get(ref[7:], "") if ref.startswith("client:") else ref
        o = self.orders.get(oid)
        if o is None:
            raise ApiError(404, "NotFound")
        return o

    def cancel(self, ref: str) -> str:
        o = self.find(ref)
        if o.status != "open":
            raise ApiError(404, "order not found")
        self._release(o)
        self._done(o, "canceled")
        return o.id

    def open_orders(self, product: str = "") -> list[Order]:
        return [o for o in self.orders.values() if o.status == "open" and (not product or o.product_id == product)]

    def cross_resting(self, product: str) -> list[Order]:
        """Resting orders the book now trades through fill whole at their price (maker)."""
        bb, ba = self.best(product)
        done = []
        for o in self.open_orders(product):
            if (o.side == "buy" and ba is not None and ba < o.price) or (
                o.side == "sell" and bb is not None and bb > o.price
            ):
                self.fill_resting(o)
                done.append(o)
        return done

    def fill_resting(self, o: Order, size: Decimal | None = None) -> None:
        """Fill a resting order at its price as maker: all that is left, or ``size`` of it (the
        order stays open with its hold reduced by what filled)."""
        left = o.size - o.filled
        if size is None or size >= left:
            self._release(o)
            self._fill(o, o.price, left, "M")
            self._done(o, "filled")
            return
        prod = self.products[o.product_id]
        asset = prod["quote_currency"] if o.side == "buy" else prod["base_currency"]
        freed = size * o.price if o.side == "buy" else size
        o.hold -= freed
        self.holds[asset] = self.holds.get(asset, ZERO) - freed
        self._fill(o, o.price, size, "M")

    def accounts(self) -> list[dict]:
        out = []
        for i, (asset, bal) in enumerate(sorted(self.balances.items())):
            hold = self.holds.get(asset, ZERO)
            out.append(
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_OID, asset)),
                    "currency": asset,
                    "balance": f"{bal:.16f}",
                    "available": f"{bal - hold:.16f}",
                    "hold": f"{hold:.16f}",
                    "profile_id": "fake-profile",
                    "trading_enabled": True,
                    "_i": i,
                }
            )
        for a in out:
            a.pop("_i")
        return out
