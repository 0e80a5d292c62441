"""Quote at the touch, compiled: ``strategies.quote_at_touch``'s decisions as a numba function.

The compiled path (``sim.compiled``) runs it in place of ``QuoteAtTouch`` when a backtest asks for
``--engine compiled``. Each side, bid first, then ask, is decided on its own:

* an order of ours on that side is *active* when it is live and no cancel was requested for it;
* an active order whose price is not the touch is cancelled if the venue acknowledged it; an
  order still waiting for its acknowledgement is left alone (it counts as active);
* when the side has no active order left, one post-only order of ``order_size`` goes at the touch.

With ``act_on_trades`` it also acts after every public trade, on the book it was last shown.

The ABI (``engine.compiled_strategy``): ``decide`` is called after every book message (and trade, when
asked) with the top of the book, the live orders and an action buffer; ``params`` builds its
float64 parameters at setup, ``wakes`` says what wakes it, ``state`` holds its counters
(``STATE_*``). Write your own strategy the same way: a module with ``decide`` (compiled with
``DECIDE_SIG``), ``params``, ``wakes``, ``STATE_LEN`` and ``stats``, registered in
``engine.runners.compiled_twins``.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from engine.compiled_strategy import (
    DECIDE_SIG,
    O_CANCEL,
    O_ID,
    O_PRICE,
    O_SIDE,
    O_STATUS,
    ST_PENDING,
    cancel,
    submit,
)
from engine.model import Instrument
from strategies.quote_at_touch import PARAMS

# params[...]
P_QTY = 0  # fixed-point order size
P_POST_ONLY = 1
P_LEN = 2

# state[...]
STATE_WAKES = 0
STATE_CANCELS = 1
STATE_SUBMITS = 2  # submits asked for (the engine counts those its filters refused)
STATE_LEN = 3


def wakes(raw: dict[str, Any]) -> tuple[int, bool]:
    """(book wakes: 2, after every message, as ``QuoteAtTouch.book_updates = "every"``; trades?)"""
    return 2, bool(PARAMS.parse(raw)["act_on_trades"])


def params(raw: dict[str, Any], instrument: Instrument) -> np.ndarray:
    """The float64 parameters ``decide`` reads, from the strategy file's ``params`` (checked by
    ``QuoteAtTouch``'s schema)."""
    p = PARAMS.parse(raw)
    out = np.zeros(P_LEN, dtype=np.float64)
    # the order manager rounds the size the same way when the Python strategy submits it
    out[P_QTY] = instrument.round_size(float(p["order_size"]))
    out[P_POST_ONLY] = 1.0 if p["post_only"] else 0.0
    return out


@nb.njit(cache=True, nogil=True)
def _side(
    side: int,
    touch: int,
    orders: np.ndarray,
    n: int,
    params: np.ndarray,
    state: np.ndarray,
    actions: np.ndarray,
    k: int,
) -> int:
    active = False
    for i in range(n):
        if orders[i, O_SIDE] != side or orders[i, O_CANCEL] != 0:
            continue
        if orders[i, O_STATUS] == ST_PENDING or orders[i, O_PRICE] == touch:
            active = True
        else:
            k = cancel(actions, k, orders[i, O_ID])
            state[STATE_CANCELS] += 1
    if not active:
        k = submit(actions, k, side, touch, int(params[P_QTY]), params[P_POST_ONLY] != 0.0)
        state[STATE_SUBMITS] += 1
    return k


@nb.njit(DECIDE_SIG, cache=True, nogil=True)
def decide(
    wake: int,
    bid: int,
    ask: int,
    bid_size: int,
    ask_size: int,
    trade_price: int,
    trade_size: int,
    trade_side: int,
    now: int,
    orders: np.ndarray,
    n_orders: int,
    params: np.ndarray,
    state: np.ndarray,
    actions: np.ndarray,
) -> int:
    """A book message or a trade: cancel what left the touch, quote where a side has nothing active."""
    if bid == 0 or ask == 0:
        return 0
    state[STATE_WAKES] += 1
    k = _side(1, bid, orders, n_orders, params, state, actions, 0)
    return _side(-1, ask, orders, n_orders, params, state, actions, k)


def stats(state: np.ndarray) -> dict[str, Any]:
    return {
        "wakes": int(state[STATE_WAKES]),
        "cancels": int(state[STATE_CANCELS]),
        "submits_asked": int(state[STATE_SUBMITS]),
    }
