"""The compiled strategy ABI: the arrays a compiled strategy reads and the actions it writes.

A compiled strategy is one numba-jitted function, compiled with this signature
(``@nb.njit(DECIDE_SIG, cache=True)``), called after every book message of its symbol once the
whole message is applied, and, if it asks for them, after every public trade::

    decide(wake, bid, ask, bid_size, ask_size, trade_price, trade_size, trade_side, now,
           orders, n_orders, params, state, actions) -> int

``wake`` is ``WAKE_BOOK`` or ``WAKE_TRADE``. ``bid``/``ask`` (and their sizes) are the top of the
book as the strategy was last shown it, fixed-point int64 (the instrument's
``price_scale``/``size_scale``; 0 for an empty side); a trade wake comes only once a book has been
shown, and shows that book (a trade does not move it). ``trade_*`` describe the trade (side: +1
buyer aggressor, -1 seller, 0 unknown; all 0 on a book wake). ``now`` is the local time in ns.
``orders[:n_orders]`` are the strategy's live orders (not filled, cancelled, rejected or expired)
in the order they were submitted, one row each with the ``O_*`` columns below. ``params``
(float64) is what the strategy's ``params(...)`` built at setup; ``state`` (float64) is its own,
kept between calls (counters). It writes up to ``actions.shape[0]`` rows of ``A_*`` columns and
returns how many (``submit`` and ``cancel`` below write one). The engine carries them out in that
order once the function returns, exactly as the order manager would have done for the same calls
made from Python: a ``SUBMIT`` becomes a new limit order (ids, local filters, the event-log rows),
a ``CANCEL`` asks the venue to cancel the order ``A_ID`` (ignored when it is done or already being
cancelled).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types

# orders[i, ...] (the strategy's view of one live order)
O_ID = 0  # the engine's handle; what a CANCEL names
O_SIDE = 1  # +1 buy, -1 sell
O_PRICE = 2  # fixed-point limit price
O_QTY = 3
O_FILLED = 4
O_STATUS = 5  # ST_PENDING (sent, no answer yet), ST_OPEN, ST_PARTIAL
O_CANCEL = 6  # 1 once a cancel was requested
O_COLS = 7

# actions[k, ...]
A_KIND = 0  # SUBMIT or CANCEL
A_SIDE = 1
A_PRICE = 2
A_QTY = 3
A_POST_ONLY = 4
A_ID = 5  # the order to cancel
A_COLS = 6

SUBMIT = 1
CANCEL = 2

#: most actions one call may return
MAX_ACTIONS = 32

# order status codes (engine.model.OrderStatus); terminal ones never reach a strategy's view
ST_PENDING = 0
ST_OPEN = 1
ST_PARTIAL = 2
ST_FILLED = 3
ST_CANCELED = 4
ST_REJECTED = 5
ST_EXPIRED = 6
STATUS_NAMES = ("pending", "open", "partially_filled", "filled", "canceled", "rejected", "expired")

WAKE_BOOK = 0
WAKE_TRADE = 1

_I = types.int64
_A1 = types.Array(types.float64, 1, "A")
_A2 = types.Array(types.int64, 2, "A")
#: the signature every compiled strategy's ``decide`` is compiled with
DECIDE_SIG = _I(_I, _I, _I, _I, _I, _I, _I, _I, _I, _A2, _I, _A1, _A1, _A2)


@nb.njit(cache=True, nogil=True, inline="always")
def submit(actions: np.ndarray, k: int, side: int, price: int, qty: int, post_only: bool) -> int:
    """Action ``k``: a limit order of ``qty`` at ``price`` (fixed-point); returns ``k + 1``."""
    actions[k, A_KIND] = SUBMIT
    actions[k, A_SIDE] = side
    actions[k, A_PRICE] = price
    actions[k, A_QTY] = qty
    actions[k, A_POST_ONLY] = 1 if post_only else 0
    return k + 1


@nb.njit(cache=True, nogil=True, inline="always")
def cancel(actions: np.ndarray, k: int, order_id: int) -> int:
    """Action ``k``: cancel the order whose ``O_ID`` is ``order_id``; returns ``k + 1``."""
    actions[k, A_KIND] = CANCEL
    actions[k, A_ID] = order_id
    return k + 1
