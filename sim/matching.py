"""The simulated venue's resting orders against market data, in compiled code.

What the venue does to our resting orders when the market moves, shared by the backtest's replay
kernel and paper trading (which feeds the live adapter's messages through the same functions):

* a **trade** at our price consumes the queue ahead of us and then fills us (``sim.queue``); a
  trade *through* our price means the whole level traded away, and we fill;
* a **level change** at our price moves the queue ahead (``queue_after_level_change``): the
  level's previous size is the venue book's before the change (backtest) or the size we saw
  last (``R_LEVEL``, paper, where the live book is updated before we hear of it);
* after a whole **message**, an opposite best price at or through our price means the level we
  sat in was consumed: we fill.

Resting orders live in an int64 array (``R_*`` columns) that these functions scan; fills are
written to ``fills`` as (slot, qty, price) rows for Python to turn into reports.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from sim.queue import fill_from_trade, queue_after_level_change

# rests[slot, ...]
R_ACTIVE = 0
R_STREAM = 1
R_SIDE = 2
R_PRICE = 3
R_LEAVES = 4
R_QUEUE = 5
R_TRADED = 6  # traded at our price since the last level change (not double-counted as cancels)
R_LEVEL = 7  # the level's size at our price as last seen
R_COLS = 8

# fills[i, ...]
F_SLOT = 0
F_QTY = 1
F_PRICE = 2
F_COLS = 3


@nb.njit(cache=True, nogil=True, inline="always")
def emit_fill(fills: np.ndarray, nf: int, slot: int, qty: int, price: int) -> int:
    fills[nf, F_SLOT] = slot
    fills[nf, F_QTY] = qty
    fills[nf, F_PRICE] = price
    return nf + 1


@nb.njit(cache=True, nogil=True)
def on_trade(rests: np.ndarray, n_rest: int, s: int, px: int, q: int, agg: int, fills: np.ndarray, nf: int) -> int:
    """A public trade of ``q`` at ``px`` on stream ``s`` (aggressor ``agg``: +1 buy, -1 sell, 0
    unknown); returns the new fill count."""
    if nf + n_rest >= fills.shape[0]:
        return nf  # no room: the caller dispatches and calls again (never happens with n_rest < cap)
    for r in range(n_rest):
        if rests[r, R_ACTIVE] == 0 or rests[r, R_STREAM] != s:
            continue
        rp = rests[r, R_PRICE]
        # a sell aggressor (or an unknown one at/below our bid) hits bids; symmetric for asks
        if rests[r, R_SIDE] > 0:
            hits = agg < 0 or (agg == 0 and px <= rp)
            through = px < rp
        else:
            hits = agg > 0 or (agg == 0 and px >= rp)
            through = px > rp
        if not hits:
            continue
        if through:  # the whole level traded away: we were in it
            nf = emit_fill(fills, nf, r, rests[r, R_LEAVES], rp)
            rests[r, R_LEAVES] = 0
            rests[r, R_ACTIVE] = 0
        elif px == rp:
            rests[r, R_TRADED] += q
            nq, fq = fill_from_trade(rests[r, R_QUEUE], rests[r, R_LEAVES], q)
            rests[r, R_QUEUE] = nq
            if fq > 0:
                nf = emit_fill(fills, nf, r, fq, rp)
                rests[r, R_LEAVES] -= fq
                if rests[r, R_LEAVES] == 0:
                    rests[r, R_ACTIVE] = 0
    return nf


@nb.njit(cache=True, nogil=True)
def on_level(
    rests: np.ndarray, n_rest: int, s: int, sd: int, px: int, old: int, new: int, qmodel: int, power: float
) -> None:
    """Level ``px`` of side ``sd`` (0 bid, 1 ask) of stream ``s`` went from ``old`` to ``new``.
    ``old < 0``: use the size each order saw last (``R_LEVEL``)."""
    for r in range(n_rest):
        if (
            rests[r, R_ACTIVE] != 0
            and rests[r, R_STREAM] == s
            and rests[r, R_PRICE] == px
            and (rests[r, R_SIDE] > 0) == (sd == 0)
        ):
            before = old if old >= 0 else rests[r, R_LEVEL]
            rests[r, R_QUEUE] = queue_after_level_change(
                qmodel, power, rests[r, R_QUEUE], before, new, rests[r, R_TRADED]
            )
            rests[r, R_TRADED] = 0
            rests[r, R_LEVEL] = new


@nb.njit(cache=True, nogil=True, inline="always")
def rests_at(rests: np.ndarray, n_rest: int, s: int, sd: int, px: int) -> bool:
    """Whether a resting order sits at level ``px`` of side ``sd`` of stream ``s`` (the replay asks
    before it looks the level's old size up: most rows change levels where nothing of ours rests)."""
    for r in range(n_rest):
        if (
            rests[r, R_ACTIVE] != 0
            and rests[r, R_PRICE] == px
            and rests[r, R_STREAM] == s
            and (rests[r, R_SIDE] > 0) == (sd == 0)
        ):
            return True
    return False


@nb.njit(cache=True, nogil=True)
def on_levels(
    rests: np.ndarray,
    n_rest: int,
    s: int,
    sd: int,
    levels: np.ndarray,
    start: int,
    stop: int,
    qmodel: int,
    power: float,
) -> None:
    """``on_level`` for ``levels[start:stop]`` ((price, new size) rows, already applied to the book),
    each order's previous size taken from ``R_LEVEL``. A price given twice counts once per row,
    as the venue's message changed it twice."""
    if n_rest == 0:
        return
    for i in range(start, stop):
        on_level(rests, n_rest, s, sd, levels[i, 0], -1, levels[i, 1], qmodel, power)


@nb.njit(cache=True, nogil=True)
def cross_resting(rests: np.ndarray, n_rest: int, s: int, bb: int, ba: int, fills: np.ndarray, nf: int) -> int:
    """After a whole message: the opposite side reached a resting order's price, so the level it
    sat in was consumed. ``bb``/``ba``: the new best bid/ask (0 for an empty side)."""
    if nf + n_rest >= fills.shape[0]:
        return nf
    for k in range(n_rest):
        if rests[k, R_ACTIVE] == 0 or rests[k, R_STREAM] != s:
            continue
        px = rests[k, R_PRICE]
        if (rests[k, R_SIDE] > 0 and ba > 0 and ba <= px) or (rests[k, R_SIDE] < 0 and bb > 0 and bb >= px):
            nf = emit_fill(fills, nf, k, rests[k, R_LEAVES], px)
            rests[k, R_LEAVES] = 0
            rests[k, R_ACTIVE] = 0
    return nf
