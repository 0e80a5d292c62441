"""The depth path's compiled kernels, made ready before the feed connects.

The fast path of an in-sync depth message (``BookSync.on_frame`` -> ``depth_apply.apply_depth``)
and the book's own kernels are numba functions, compiled (or loaded from numba's on-disk cache)
on their first call. Left to the first real message, that call holds the trading loop: about
2.5 s on a 2-core machine on the first start after an install, while frames queue up and the
API cannot answer. ``warm_depth_path`` runs one scratch book through a snapshot and two diffs
in the wire's own format first, so the first real message finds the code ready. Nothing of it is
logged, recorded or shown: its book, sync and decoder are its own.
"""

from __future__ import annotations

import logging
import time

from engine.book import Book
from engine.model import Instrument
from venues.binance.book_sync import BookSync
from venues.binance.decode import DepthDiff, MarketFrameDecoder, decode_snapshot
from venues.binance.symbols import SymbolMap

_DATA = b'","data":'
_QUIET = logging.getLogger("hft.warmup")
_QUIET.disabled = True  # the scratch book's sync lines ("orderbook synced ...") are not real


def _levels(inst: Instrument, ticks: tuple[int, ...], qty: str) -> str:
    return ",".join(f'["{k * inst.tick:.8f}","{qty}"]' for k in ticks)


def _diff(inst: Instrument, first: int, last: int, bid_qty: str) -> bytes:
    stream = inst.venue_symbol.lower()
    data = (
        f'{{"e":"depthUpdate","E":1,"s":"{inst.venue_symbol}","U":{first},"u":{last},'
        f'"b":[{_levels(inst, (1000, 999), bid_qty)}],"a":[{_levels(inst, (1001, 1002), "1.00000000")}]}}'
    )
    return f'{{"stream":"{stream}@depth@100ms","data":{data}}}'.encode()


def warm_depth_path(inst: Instrument) -> float:
    """Run the depth path once on a scratch book of ``inst``; returns the seconds it took.
    Raises ``RuntimeError`` when the fast path did not take the in-sync diff (a format drift
    between this synthetic message and the decoder: the kernels were not all made ready)."""
    t0 = time.perf_counter()
    book = Book(inst)
    requests: list[int] = []
    sync = BookSync(book, requests.append, lambda _b: None, lambda _i: None, logger=_QUIET)
    decoder = MarketFrameDecoder(SymbolMap([inst.symbol]), logger=_QUIET)
    first = decoder.decode(_diff(inst, 11, 11, "1.00000000"), 1)
    if not isinstance(first, DepthDiff):
        raise RuntimeError(f"warm-up: the synthetic depth diff for {inst.symbol} did not decode")
    sync.on_diff(first)  # buffered; asks for a snapshot
    levels = f'"bids":[{_levels(inst, (1000, 999), "2.00000000")}],"asks":[{_levels(inst, (1001,), "2.00000000")}]'
    sync.on_snapshot(decode_snapshot(f'{{"lastUpdateId":10,{levels}}}'.encode(), 1), requests[-1])
    frame = _diff(inst, 12, 12, "3.00000000")
    lo = frame.find(_DATA) + len(_DATA)
    if not (book.valid and sync.on_frame(frame, lo, len(frame) - 1, 2)):
        raise RuntimeError(f"warm-up: the fast depth path did not take the synthetic diff for {inst.symbol}")
    return time.perf_counter() - t0
