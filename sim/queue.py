"""Queue-position models: how much size is ahead of a resting order at its price level.

A resting order joins the back of its level: ``queue`` starts at the level's displayed size.
Two things move it forward:

* **trades at the level** - a trade of ``q`` at our price consumes ``q`` from the front; when the
  queue ahead goes below zero the rest of the trade fills us (``fill = min(-queue, leaves)``).
  A trade *through* our price (a sell below our bid) means the whole level was consumed: we fill.
* **size cancelled at the level** - the level shrinks by ``d`` in a depth update. Part of that
  shrink was the traded volume we already counted; the remainder ``c = max(d - traded, 0)`` is
  cancellations, and the model decides how much of ``c`` was *ahead* of us.

Models (``queue_model`` in a venue's config):

``risk_averse`` (0)
    Cancels never advance us; only trades do. The queue is merely clamped to the new level size
    (we cannot have more ahead of us than the level holds). The pessimistic choice.

    Worked example: we join a 10-lot bid level, queue = 10. A depth update shrinks the level to 6
    (4 cancelled): queue = min(10, 6) = 6. A sell trade of 5 at our price: queue = 1. Another
    trade of 3: queue = -2, so we fill 2 lots.

``prob`` (1, with ``power`` n)
    A cancel of ``c`` is split between front and back in proportion to ``f(front)`` and
    ``f(back)`` with ``f(x) = x**n``, where ``front`` is the queue ahead and ``back`` the size
    behind us: ``queue -= c * f(front) / (f(front) + f(back))``. ``n = 1`` spreads cancels evenly
    over the level; larger ``n`` says cancels come mostly from whichever part is larger, which
    moves a late joiner forward faster. (Same family as hftbacktest's power probability queue.)

    Worked example (n = 2): we join a 10-lot level (queue 10), then 10 more lots join behind
    us: level 20, front 10, back 10 (our own size is not in the displayed level of the data).
    The level shrinks to 14 with no trades: c = 6, share = 100 / (100 + 100) = 0.5, queue = 7.
    With n = 1, front 12 and back 4 (level 16), the same 6-lot cancel has share 12 / 16: the
    queue advances by 4.5, rounded down to 4, so queue = 8.

Queue values are fixed-point sizes; the probabilistic share is rounded down so the model never
advances an order by a fraction of a lot it cannot trade.
"""

from __future__ import annotations

import numba as nb

RISK_AVERSE = 0
PROB = 1
MODELS = {"risk_averse": RISK_AVERSE, "prob": PROB}


@nb.njit(cache=True, nogil=True)
def queue_after_level_change(model: int, power: float, queue: int, old: int, new: int, traded: int) -> int:
    """Queue ahead after the level went from ``old`` to ``new`` (``traded`` already counted)."""
    if new >= old:
        return queue if queue <= new else new
    if model == PROB:
        cancelled = (old - new) - traded
        if cancelled > 0 and queue > 0:
            front = float(queue)
            back = float(old - queue) if old > queue else 0.0
            ff = front**power
            fb = back**power
            share = ff / (ff + fb) if ff + fb > 0.0 else 1.0
            queue -= int(cancelled * share)
    if queue > new:
        queue = new
    if queue < 0:
        queue = 0
    return queue


@nb.njit(cache=True, nogil=True)
def fill_from_trade(queue: int, leaves: int, trade_qty: int) -> tuple[int, int]:
    """A trade of ``trade_qty`` at our price: returns (new queue, filled qty)."""
    queue -= trade_qty
    if queue >= 0:
        return queue, 0
    filled = -queue
    if filled > leaves:
        filled = leaves
    return 0, filled


def model_code(name: str) -> int:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown queue model {name!r}; expected one of {sorted(MODELS)}") from None
