"""The fake's market: real Coinbase data from ``../shared/fixtures/venues/coinbase``.

The 2021 BAND-GBP capture (Coinbase Exchange's feed: one ``snapshot``, 471 ``l2update`` and the
``match`` frames in their real order) is replayed in Advanced Trade's form: the snapshot seeds the
book, each ``l2update`` becomes an ``l2_data`` update event and each ``match`` a ``market_trades``
event. Exchange's ``match.side`` is the maker's; Advanced Trade's trade ``side`` is taken as the
taker's (see ``venues/coinbase/decode.py``), so it is flipped. The product's rules come from the
capture's ``GET /products`` answer.

``BTC-USD``, for which no Coinbase capture exists, is Binance's real BTCUSDT capture re-labelled
(``load_binance_relabelled``): its REST snapshot seeds the book, the diff-depth messages that
follow it (checked to chain, ``U == previous u + 1``) become level2 updates and its trades
``market_trades`` (Binance's ``m``, buyer is maker, means the taker sold). Its rules are
Coinbase's own BTC-USD values from the docs' ``status`` channel example (tick 0.01, step 1e-8,
minimum funds 1).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

SHARED = Path(__file__).resolve().parents[3] / "shared"
FIXTURES = SHARED / "fixtures" / "venues" / "coinbase"
BINANCE_CAPTURE = SHARED / "data" / "real" / "binance_spot_hftbacktest" / "btcusdt_20240808.gz"
CAPTURE = "exchange_capture_BAND-GBP_interleaved.jsonl"
PRODUCT = "exchange_product_BAND-GBP_2021.json"


@dataclass
class Update:
    product_id: str
    time: str
    changes: list[tuple[str, str, str]]  # (bid|offer, price, new size)


@dataclass
class Print:
    product_id: str
    time: str
    trade_id: int
    price: str
    size: str
    side: str  # BUY | SELL: the taker's


@dataclass
class Market:
    products: dict[str, dict] = field(default_factory=dict)  # product id -> GET /products/{id} body
    snapshots: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = field(default_factory=dict)
    events: list[Update | Print] = field(default_factory=list)


def load_market(root: Path = FIXTURES) -> Market:
    capture = root / CAPTURE
    product = root / PRODUCT
    if not capture.exists() or not product.exists():
        raise FileNotFoundError(f"fake coinbase: fixtures not found under {root} ({CAPTURE}, {PRODUCT})")
    m = Market()
    p = json.loads(product.read_text())
    m.products[p["id"]] = p
    for line in capture.read_text().splitlines():
        f = json.loads(line)["frame"]
        kind = f.get("type")
        if kind == "snapshot":
            m.snapshots[f["product_id"]] = ([tuple(x) for x in f["bids"]], [tuple(x) for x in f["asks"]])
        elif kind == "l2update":
            side = {"buy": "bid", "sell": "offer"}
            m.events.append(Update(f["product_id"], f["time"], [(side[s], px, q) for s, px, q in f["changes"]]))
        elif kind == "match":
            taker = "BUY" if f["side"] == "sell" else "SELL"
            m.events.append(Print(f["product_id"], f["time"], int(f["trade_id"]), f["price"], f["size"], taker))
    return m


def load_binance_relabelled(path: Path = BINANCE_CAPTURE, product: str = "BTC-USD", limit: int = 3000) -> Market:
    """Up to ``limit`` events of a Binance hftbacktest capture (``<ns> <json>`` lines), as
    Coinbase's ``product``; stops at the first break of Binance's id chain."""
    if not path.exists():
        raise FileNotFoundError(f"fake coinbase: Binance capture not found at {path}")
    status = json.loads((FIXTURES / "at_status_docs.json").read_text())["events"][0]["products"][0]
    base, quote = product.split("-")
    m = Market()
    m.products[product] = {
        "id": product,
        "base_currency": base,
        "quote_currency": quote,
        "quote_increment": status["quote_increment"],
        "base_increment": status["base_increment"],
        "min_market_funds": status["min_market_funds"],
        "display_name": f"{base}/{quote}",
        "status": "online",
        "status_message": "",
        "post_only": False,
        "limit_only": False,
        "cancel_only": False,
        "trading_disabled": False,
    }
    last_id = -1
    early: list[dict] = []  # diffs received before the snapshot: the ones after it bridge it

    def depth(data: dict) -> bool:
        nonlocal last_id
        if data["u"] <= last_id:
            return True
        if data["U"] > last_id + 1:
            return False  # a hole in Binance's chain: the book would be wrong from here
        last_id = data["u"]
        changes = [("bid", p, q) for p, q in data["b"]] + [("offer", p, q) for p, q in data["a"]]
        m.events.append(Update(product, _iso_ms(data["E"]), changes))
        return True

    with gzip.open(path, "rt") as f:
        for line in f:
            _, _, body = line.partition(" ")
            if not body.startswith("{"):
                continue
            obj = json.loads(body)
            if "lastUpdateId" in obj:
                if last_id < 0:
                    last_id = obj["lastUpdateId"]
                    m.snapshots[product] = ([tuple(x) for x in obj["bids"]], [tuple(x) for x in obj["asks"]])
                    if not all(depth(x) for x in early):
                        break
                continue
            data = obj.get("data", {})
            if data.get("e") == "depthUpdate":
                if last_id < 0:
                    early.append(data)
                elif not depth(data):
                    break
            elif data.get("e") == "trade" and last_id >= 0:
                side = "SELL" if data["m"] else "BUY"
                m.events.append(Print(product, _iso_ms(data["E"]), int(data["t"]), data["p"], data["q"], side))
            if len(m.events) >= limit:
                break
    return m


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def merge(*markets: Market) -> Market:
    """Several products in one replay, their events interleaved one by one."""
    out = Market()
    for mk in markets:
        out.products.update(mk.products)
        out.snapshots.update(mk.snapshots)
    lists = [list(mk.events) for mk in markets]
    for i in range(max((len(x) for x in lists), default=0)):
        out.events += [x[i] for x in lists if i < len(x)]
    return out


def dec(s: str) -> Decimal:
    return Decimal(s)
