"""The compiled backtest loop: rows, scheduled events, the venue, the order manager and the event
log in one ``@njit`` function, for sweeps.

It does what ``sim.replay``, ``sim.kernel`` (``DUAL`` mode) and the Python engine do for one
strategy on one instrument, in the same order, so the event log comes out the same:

* two cursors over the rows, the venue's at venue time (``ts_recv - feed``), ours at ``ts_recv``;
  the venue's row first at equal times, and neither reaches the next scheduled event, which goes
  first at equal times (``engine.timeline``: ``(ts, seq)`` order, ``seq`` counting every
  ``schedule``);
* the venue's rows move the book it matches on and our resting orders' queues (``sim.matching``),
  and a row that fills stops the rows for the fills to be reported
  (``sim.venue.dispatch_kernel_fills``); a whole book message at our cursor wakes the strategy
  (``engine.engine.Engine.on_book``: mark, number the market row, decide, act);
* scheduled events are orders and cancels reaching the venue (``SimulatedVenue._arrive``,
  ``_cancel_arrive``: filters, post-only rejection, taker fills, joining the queue), answers
  reaching us (``OrderManager.on_exec_report``: state, fills into the position) and the mark timer.

One book is kept, not two: with a constant feed latency the venue applies the same rows in the
same order as we do, only earlier, so the book we would hold after a message is the one the
venue held after it, whose top the venue notes in a ring (``ring[row & mask]``, ``row`` counted
from the first row of the data) for when our cursor reaches that message. The ring holds more
rows than ever arrive within one feed latency.

The rows come a window at a time (``C_BASE``, ``C_MORE``): when the venue's cursor reaches the end
of a window and more rows follow, the loop returns ``NEED_DATA``; Python drops the rows before our
cursor, appends the next batch and calls again.

Latencies are constant (order, response, feed > 0). The loop stops and returns a code whenever
Python must act: rows to read (``NEED_DATA``), an array to grow (``NEED_ROOM``, ``VBOOK_FULL``) or
a situation the compiled path does not model (``UNSUPPORTED``, the reason in ``state[S_WHY]``);
Python reads, grows or raises, and calls it again: every bit of its state is in the arrays it is
given.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import types

from engine.book import FULL, clear_book, level_size, set_level, top_of_book, walk_book
from engine.compiled_strategy import (
    A_ID,
    A_KIND,
    A_POST_ONLY,
    A_PRICE,
    A_QTY,
    A_SIDE,
    CANCEL,
    DECIDE_SIG,
    O_CANCEL,
    O_FILLED,
    O_ID,
    O_PRICE,
    O_QTY,
    O_SIDE,
    O_STATUS,
    ST_CANCELED,
    ST_EXPIRED,
    ST_FILLED,
    ST_OPEN,
    ST_PARTIAL,
    ST_PENDING,
    ST_REJECTED,
    SUBMIT,
    WAKE_BOOK,
    WAKE_TRADE,
)
from sim import kernel as K
from sim.compiled import eventbuf as E
from sim.matching import (
    F_PRICE,
    F_QTY,
    F_SLOT,
    R_ACTIVE,
    R_LEAVES,
    R_LEVEL,
    R_PRICE,
    R_QUEUE,
    R_SIDE,
    R_STREAM,
    R_TRADED,
    cross_resting,
    on_level,
    on_trade,
    rests_at,
)

NEVER = np.iinfo(np.int64).max

# return codes
DONE = 0
NEED_ROOM = 1  # a buffer lacks the room ``_room`` asks for: Python grows it
VBOOK_FULL = 2  # the venue book's overflow is full
UNSUPPORTED = 3
NEED_DATA = 4  # the venue's cursor reached the end of the rows given and more follow

# why UNSUPPORTED (state[S_WHY])
W_CROSSED = 1
W_STATE = 2  # an order report the state machine refuses (the Python engine logs an incident)

# cfg[...] (int64 settings)
C_ORDER_LAT = 0
C_RESP_LAT = 1
C_MARK_NS = 2
C_DRAIN_NS = 3
C_FEED_NS = 4  # the market rows' feed_latency_ns
C_DECISION_NS = 5
C_TICK = 6
C_LOT = 7
C_MIN_QTY = 8
C_MAX_PRICE = 9
C_MIN_PRICE = 10
C_POST_ONLY_REJECTS = 11
C_PDIV = 12
C_SDIV = 13
C_LOG = 14  # 0: no event log (no run directory), rows are neither numbered nor kept
C_WAKE_BOOK = 15
C_QMODEL = 16
C_WAKE_TRADE = 17
C_FIRST_SNAP = 18  # the first snapshot row (absolute): our book is valid from there on
C_BASE = 19  # the absolute number of ``rows``' first row (the rows come a window at a time)
C_MORE = 20  # 1 while more rows follow the window
C_LAST_TS = 21  # the last ts_recv of the rows read so far: the drain runs to it + C_DRAIN_NS
C_LEN = 22

# cfgf[...] (float64 settings)
CF_MAKER = 0
CF_TAKER = 1
CF_MIN_NOTIONAL = 2
CF_CS = 3
CF_POWER = 4
CF_LEN = 5

# state[...] (int64)
S_LI = 0  # our cursor: an index into ``lrows``
S_VI = 1
S_CLOCK = 2
S_SEQ = 3  # event-log row counter
S_TLSEQ = 4  # timeline schedule counter
S_HEAP = 5
S_NORD = 6  # orders ever made (handles)
S_NEXT_ID = 7
S_VENUE_ID = 8
S_TRADE_ID = 9
S_NOPEN = 10
S_STARTED = 11
S_PHASE = 12  # 0 rows, 1 draining, 2 done
S_NREST = 13
S_NFREE = 14
S_SUBMITTED = 15
S_REJECTED = 16
S_FILLED_ORDERS = 17
S_FILLS = 18
S_CANCELED = 19
S_BOOK_WAKES = 20
S_POS_QTY = 21
S_POS_EXISTS = 22
S_SHOWN_BID = 23
S_SHOWN_ASK = 24
S_SHOWN_VALID = 25
S_TS_TICK = 26
S_WHY = 27
S_WHY_ROW = 28
S_N_ORDERS_LOG = 29
S_N_FILLS_LOG = 30
S_N_POS_LOG = 31
S_N_RISK_LOG = 32
S_N_MARKET_LOG = 33
S_UNTIL = 34  # end of the drain
S_LOCAL_REJECTS = 35
S_VENUE_RECEIVED = 36
S_V_IN_SNAP = 37
S_V_VALID = 38
S_LAST_BID = 39  # the top our cursor saw last (a strategy woken on top changes only)
S_LAST_ASK = 40
S_SHOWN_BID_SIZE = 41
S_SHOWN_ASK_SIZE = 42
S_TRADE_WAKES = 43
S_LEN = 44

# statef[...] (float64)
SF_AVG = 0
SF_REALIZED = 1
SF_FEES = 2
SF_MARK = 3
SF_PEAK = 4
SF_MAX_DD = 5
SF_LEN = 6

# orders[h, ...]: every order ever made
OR_SIDE = 0
OR_PRICE = 1
OR_QTY = 2
OR_FILLED = 3
OR_STATUS = 4
OR_CANCEL = 5
OR_TS_TICK = 6
OR_TS_DECIDED = 7
OR_TS_SENT = 8
OR_TS_ACKED = 9
OR_VENUE_ID = 10
OR_REASON = 11
OR_POST_ONLY = 12
OR_SLOT = 13  # resting slot at the venue, -1 when none
OR_ID = 14  # n of the client id ``<prefix>-<n>``
OR_COLS = 15

# heap[k, ...]: scheduled events
H_TS = 0
H_SEQ = 1
H_TYPE = 2
H_ORDER = 3
H_V = 4  # venue time of the event (arrival, or the venue's answer)
H_KIND = 5  # report kind
H_PRICE = 6
H_QTY = 7
H_MAKER = 8
H_TRADE_ID = 9
H_VENUE_ID = 10
H_REASON = 11
H_COLS = 12

# event types
T_MARK = 1
T_ARRIVE = 2
T_CANCEL_ARRIVE = 3
T_REPORT = 4

# report kinds
RK_ACCEPTED = 1
RK_REJECTED = 2
RK_EXPIRED = 3
RK_CANCELED = 4
RK_CANCEL_REJECTED = 5
RK_FILL = 6

#: rows of room every buffer must have before a step (a step adds at most this many)
ROOM = 64


# --- the timeline: a binary heap on (ts, seq) -----------------------------------------------------
@nb.njit(cache=True, nogil=True, inline="always")
def _less(heap: np.ndarray, a: int, b: int) -> bool:
    return heap[a, H_TS] < heap[b, H_TS] or (heap[a, H_TS] == heap[b, H_TS] and heap[a, H_SEQ] < heap[b, H_SEQ])


@nb.njit(cache=True, nogil=True)
def _swap(heap: np.ndarray, heapf: np.ndarray, a: int, b: int) -> None:
    for c in range(H_COLS):
        t = heap[a, c]
        heap[a, c] = heap[b, c]
        heap[b, c] = t
    f = heapf[a]
    heapf[a] = heapf[b]
    heapf[b] = f


@nb.njit(cache=True, nogil=True)
def _push(heap: np.ndarray, heapf: np.ndarray, state: np.ndarray, ts: int, typ: int, h: int, v: int) -> int:
    """Schedule an event; returns its row for the caller to fill the payload before ``_sift_up``."""
    k = state[S_HEAP]
    state[S_HEAP] = k + 1
    state[S_TLSEQ] += 1
    for c in range(H_COLS):
        heap[k, c] = 0
    heap[k, H_TS] = ts
    heap[k, H_SEQ] = state[S_TLSEQ]
    heap[k, H_TYPE] = typ
    heap[k, H_ORDER] = h
    heap[k, H_V] = v
    heapf[k] = 0.0
    return k


@nb.njit(cache=True, nogil=True)
def _sift_up(heap: np.ndarray, heapf: np.ndarray, k: int) -> None:
    while k > 0:
        p = (k - 1) // 2
        if _less(heap, k, p):
            _swap(heap, heapf, k, p)
            k = p
        else:
            break


@nb.njit(cache=True, nogil=True)
def _pop_to_end(heap: np.ndarray, heapf: np.ndarray, state: np.ndarray) -> int:
    """Move the earliest event to the row just past the heap and return that row."""
    n = state[S_HEAP] - 1
    _swap(heap, heapf, 0, n)
    state[S_HEAP] = n
    k = 0
    while True:
        a = 2 * k + 1
        if a >= n:
            break
        b = a + 1
        m = b if b < n and _less(heap, b, a) else a
        if _less(heap, m, k):
            _swap(heap, heapf, m, k)
            k = m
        else:
            break
    return n


# --- the venue's resting slots (sim.venue.RestingOrders) --------------------------------------------
@nb.njit(cache=True, nogil=True)
def _rest_add(rests, slot_h, free, state, h, stream, side, price, queue, leaves) -> int:
    nf = state[S_NFREE]
    if nf > 0:
        slot = free[nf - 1]
        state[S_NFREE] = nf - 1
    else:
        slot = state[S_NREST]
        state[S_NREST] = slot + 1
    rests[slot, R_ACTIVE] = 1
    rests[slot, R_STREAM] = stream
    rests[slot, R_SIDE] = side
    rests[slot, R_PRICE] = price
    rests[slot, R_LEAVES] = leaves
    rests[slot, R_QUEUE] = queue
    rests[slot, R_LEVEL] = queue
    rests[slot, R_TRADED] = 0
    slot_h[slot] = h
    return slot


@nb.njit(cache=True, nogil=True)
def _rest_remove(rests, slot_h, free, state, slot) -> None:
    rests[slot, R_ACTIVE] = 0
    slot_h[slot] = -1
    nf = state[S_NFREE]
    free[nf] = slot
    nf += 1
    n = state[S_NREST]
    while n > 0 and slot_h[n - 1] < 0:
        n -= 1
        for j in range(nf):  # list.remove(n): the first (only) occurrence, the rest keep their order
            if free[j] == n:
                for k in range(j, nf - 1):
                    free[k] = free[k + 1]
                nf -= 1
                break
    state[S_NREST] = n
    state[S_NFREE] = nf


# --- event-log rows ------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True, inline="always")
def _seq(state: np.ndarray, cfg: np.ndarray) -> int:
    if cfg[C_LOG] == 0:
        return 0
    state[S_SEQ] += 1
    return state[S_SEQ]


@nb.njit(cache=True, nogil=True, inline="always")
def _mid(state: np.ndarray, cfg: np.ndarray) -> float:
    bb = state[S_SHOWN_BID]
    ba = state[S_SHOWN_ASK]
    if state[S_SHOWN_VALID] == 0 or bb == 0 or ba == 0:
        return math.nan
    return (bb + ba) * (0.5 * (1.0 / cfg[C_PDIV]))


@nb.njit(cache=True, nogil=True)
def _order_row(oi, of, orders, state, cfg, seq, event, h, now, reason, code, ts_venue) -> None:
    if cfg[C_LOG] == 0:
        return
    if seq == 0:
        seq = _seq(state, cfg)
    k = state[S_N_ORDERS_LOG]
    state[S_N_ORDERS_LOG] = k + 1
    E.order_row(
        oi, of, k, seq, now, event, h, orders[h, OR_PRICE], orders[h, OR_QTY], orders[h, OR_FILLED],
        orders[h, OR_STATUS], reason if reason != 0 else orders[h, OR_REASON], code,
        orders[h, OR_TS_TICK], orders[h, OR_TS_DECIDED], orders[h, OR_TS_SENT], orders[h, OR_TS_ACKED],
        ts_venue, orders[h, OR_VENUE_ID], _mid(state, cfg),
    )  # fmt: skip


@nb.njit(cache=True, nogil=True)
def _unrealized(state, statef, cfg, cfgf) -> float:
    q = state[S_POS_QTY]
    m = statef[SF_MARK]
    if q == 0 or m != m or m <= 0.0:
        return 0.0
    return q / cfg[C_SDIV] * cfgf[CF_CS] * (m - statef[SF_AVG])


@nb.njit(cache=True, nogil=True)
def _position_row(pi, pf, state, statef, cfg, cfgf, now, reason) -> None:
    if cfg[C_LOG] == 0:
        return
    k = state[S_N_POS_LOG]
    state[S_N_POS_LOG] = k + 1
    E.position_row(
        pi, pf, k, _seq(state, cfg), now, reason, state[S_POS_QTY], statef[SF_AVG], statef[SF_REALIZED],
        _unrealized(state, statef, cfg, cfgf), statef[SF_FEES], statef[SF_MARK],
    )  # fmt: skip


@nb.njit(cache=True, nogil=True)
def _record_positions(pi, pf, state, statef, cfg, cfgf, now, reason) -> None:
    """``Engine.record_positions``: a row per position, and the drawdown of net P&L."""
    equity = 0.0
    if state[S_POS_EXISTS] != 0:
        equity += statef[SF_REALIZED] + _unrealized(state, statef, cfg, cfgf) - statef[SF_FEES]
        _position_row(pi, pf, state, statef, cfg, cfgf, now, reason)
    if equity > statef[SF_PEAK]:
        statef[SF_PEAK] = equity
    if statef[SF_PEAK] - equity > statef[SF_MAX_DD]:
        statef[SF_MAX_DD] = statef[SF_PEAK] - equity


# --- the order manager ---------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def _close(open_h: np.ndarray, state: np.ndarray, h: int) -> None:
    n = state[S_NOPEN]
    for j in range(n):
        if open_h[j] == h:
            for k in range(j, n - 1):
                open_h[k] = open_h[k + 1]
            state[S_NOPEN] = n - 1
            return


@nb.njit(cache=True, nogil=True)
def _local_failure(cfg, cfgf, price, qty) -> int:
    """``OrderManager._validate``: the filters checked before an order leaves."""
    if qty <= 0 or qty < cfg[C_MIN_QTY]:
        return E.R_LOT_SIZE
    if price <= 0 or (cfg[C_MAX_PRICE] != 0 and price > cfg[C_MAX_PRICE]) or price < cfg[C_MIN_PRICE]:
        return E.R_PRICE_FILTER
    notional = price / cfg[C_PDIV] * (qty / cfg[C_SDIV]) * cfgf[CF_CS]
    if cfgf[CF_MIN_NOTIONAL] != 0.0 and notional < cfgf[CF_MIN_NOTIONAL]:
        return E.R_NOTIONAL
    return E.R_NONE


@nb.njit(cache=True, nogil=True)
def _venue_failure(cfg, cfgf, price, qty) -> int:
    """``SimulatedVenue._filter_failure`` (limit orders)."""
    if price <= 0 or price % cfg[C_TICK] != 0 or (cfg[C_MAX_PRICE] != 0 and price > cfg[C_MAX_PRICE]):
        return E.R_PRICE_FILTER
    if qty <= 0 or qty % cfg[C_LOT] != 0 or qty < cfg[C_MIN_QTY]:
        return E.R_LOT_SIZE
    notional = price / cfg[C_PDIV] * (qty / cfg[C_SDIV]) * cfgf[CF_CS]
    if cfgf[CF_MIN_NOTIONAL] != 0.0 and notional < cfgf[CF_MIN_NOTIONAL]:
        return E.R_NOTIONAL
    return E.R_NONE


@nb.njit(cache=True, nogil=True)
def _submit(orders, ordf, open_h, heap, heapf, oi, of, ri, state, cfg, cfgf, reason_codes, side, price, qty, post_only):
    now = state[S_CLOCK]
    h = state[S_NORD]
    state[S_NORD] = h + 1
    state[S_NEXT_ID] += 1
    for c in range(OR_COLS):
        orders[h, c] = 0
    orders[h, OR_SIDE] = side
    orders[h, OR_PRICE] = price
    orders[h, OR_QTY] = qty
    orders[h, OR_STATUS] = ST_PENDING
    orders[h, OR_POST_ONLY] = post_only
    orders[h, OR_SLOT] = -1
    orders[h, OR_ID] = state[S_NEXT_ID]
    orders[h, OR_TS_TICK] = state[S_TS_TICK] if state[S_TS_TICK] != 0 else now
    orders[h, OR_TS_DECIDED] = now
    ordf[h] = _mid(state, cfg)
    why = _local_failure(cfg, cfgf, price, qty)
    if why != E.R_NONE:
        orders[h, OR_STATUS] = ST_REJECTED
        orders[h, OR_REASON] = why
        state[S_REJECTED] += 1
        state[S_LOCAL_REJECTS] += 1
        _order_row(oi, of, orders, state, cfg, 0, E.EV_REJECTED, h, now, why, reason_codes[why], 0)
        return
    orders[h, OR_TS_SENT] = now + cfg[C_DECISION_NS]
    open_h[state[S_NOPEN]] = h
    state[S_NOPEN] += 1
    state[S_SUBMITTED] += 1
    risk_seq = _seq(state, cfg)
    submit_seq = _seq(state, cfg)
    a = orders[h, OR_TS_SENT] + cfg[C_ORDER_LAT]
    _sift_up(heap, heapf, _push(heap, heapf, state, a, T_ARRIVE, h, a))
    if cfg[C_LOG] != 0:
        k = state[S_N_RISK_LOG]
        state[S_N_RISK_LOG] = k + 1
        E.risk_row(ri, k, risk_seq, now, h)
    _order_row(oi, of, orders, state, cfg, submit_seq, E.EV_SUBMIT, h, now, 0, 0, 0)


@nb.njit(cache=True, nogil=True)
def _cancel(orders, heap, heapf, oi, of, state, cfg, h) -> None:
    if orders[h, OR_STATUS] >= ST_FILLED or orders[h, OR_CANCEL] != 0:
        return
    now = state[S_CLOCK]
    orders[h, OR_CANCEL] = 1
    seq = _seq(state, cfg)
    a = now + cfg[C_ORDER_LAT]
    _sift_up(heap, heapf, _push(heap, heapf, state, a, T_CANCEL_ARRIVE, h, a))
    _order_row(oi, of, orders, state, cfg, seq, E.EV_CANCEL_REQUEST, h, now, 0, 0, 0)


@nb.njit(cache=True, nogil=True)
def _transition(orders, open_h, oi, of, state, cfg, h, new, event, reason, code, v) -> bool:
    old = orders[h, OR_STATUS]
    if new == ST_OPEN and ST_PARTIAL <= old <= ST_FILLED:
        return True  # a late ack after fills: the fills already said more
    ok = old == ST_PENDING or (old < ST_FILLED and new != ST_OPEN and new != ST_REJECTED)
    if not ok:
        return False
    orders[h, OR_STATUS] = new
    now = state[S_CLOCK]
    if new >= ST_FILLED:
        if new == ST_REJECTED:
            state[S_REJECTED] += 1
        elif new == ST_CANCELED:
            state[S_CANCELED] += 1
        _close(open_h, state, h)
    _order_row(oi, of, orders, state, cfg, 0, event, h, now, reason, code, v)
    return True


@nb.njit(cache=True, nogil=True)
def _on_fill(orders, ordf, open_h, oi, of, fi, ff, pi, pf, state, statef, cfg, cfgf, h, ev, fee) -> bool:
    """``OrderManager._on_fill`` with ``Portfolio.on_fill`` for a linear instrument."""
    now = state[S_CLOCK]
    price = ev[H_PRICE]
    qty = ev[H_QTY]
    if orders[h, OR_TS_ACKED] == 0:
        orders[h, OR_TS_ACKED] = now
    if orders[h, OR_FILLED] == 0 and qty > 0:
        state[S_FILLED_ORDERS] += 1
    orders[h, OR_FILLED] += qty
    # Position.apply, in the same float operations
    px = price / cfg[C_PDIV]
    signed = qty if orders[h, OR_SIDE] > 0 else -qty
    if state[S_POS_EXISTS] == 0:
        state[S_POS_EXISTS] = 1
        statef[SF_AVG] = 0.0
        statef[SF_MARK] = math.nan
    q = state[S_POS_QTY]
    new_q = q + signed
    realized = 0.0
    if q == 0 or (q > 0) == (signed > 0):
        aq = abs(q)
        af = abs(signed)
        if aq == 0:
            statef[SF_AVG] = px
        else:
            statef[SF_AVG] = (aq * statef[SF_AVG] + af * px) / (aq + af)
    else:
        closed = min(abs(q), abs(signed))
        sign = 1.0 if q > 0 else -1.0
        size = closed / cfg[C_SDIV] * cfgf[CF_CS]
        realized = sign * size * (px - statef[SF_AVG])
        statef[SF_REALIZED] += realized
        if new_q == 0:
            statef[SF_AVG] = 0.0
        elif (new_q > 0) != (q > 0):
            statef[SF_AVG] = px
    state[S_POS_QTY] = new_q
    statef[SF_FEES] += fee
    filled = orders[h, OR_FILLED] >= orders[h, OR_QTY]
    if orders[h, OR_STATUS] >= ST_FILLED:
        return False  # a fill for a closed order: the Python engine logs an incident
    orders[h, OR_STATUS] = ST_FILLED if filled else ST_PARTIAL
    if filled:
        _close(open_h, state, h)
    state[S_FILLS] += 1
    if cfg[C_LOG] != 0:
        k = state[S_N_FILLS_LOG]
        state[S_N_FILLS_LOG] = k + 1
        vid = orders[h, OR_VENUE_ID]
        E.fill_row(
            fi, ff, k, _seq(state, cfg), now, ev[H_V], h, ev[H_TRADE_ID], vid if vid != 0 else ev[H_VENUE_ID],
            price, qty, ev[H_MAKER], orders[h, OR_PRICE], orders[h, OR_TS_TICK], orders[h, OR_TS_DECIDED],
            orders[h, OR_TS_SENT], orders[h, OR_TS_ACKED], new_q, fee, ordf[h], _mid(state, cfg), realized,
        )  # fmt: skip
    event = E.EV_FILLED if filled else E.EV_PARTIAL
    _order_row(oi, of, orders, state, cfg, 0, event, h, now, 0, 0, ev[H_V])
    _position_row(pi, pf, state, statef, cfg, cfgf, now, E.PR_FILL)
    return True


# --- the venue -----------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True)
def _respond(heap, heapf, state, cfg, h, v, kind, reason) -> int:
    k = _push(heap, heapf, state, v + cfg[C_RESP_LAT], T_REPORT, h, v)
    heap[k, H_KIND] = kind
    heap[k, H_REASON] = reason
    return k


@nb.njit(cache=True, nogil=True)
def _fill_report(orders, heap, heapf, state, cfg, cfgf, h, v, price, qty, maker) -> None:
    rate = cfgf[CF_MAKER] if maker else cfgf[CF_TAKER]
    fee = price / cfg[C_PDIV] * (qty / cfg[C_SDIV]) * cfgf[CF_CS] * rate
    state[S_TRADE_ID] += 1
    k = _respond(heap, heapf, state, cfg, h, v, RK_FILL, 0)
    heap[k, H_PRICE] = price
    heap[k, H_QTY] = qty
    heap[k, H_MAKER] = 1 if maker else 0
    heap[k, H_TRADE_ID] = state[S_TRADE_ID]
    heap[k, H_VENUE_ID] = orders[h, OR_VENUE_ID]
    heapf[k] = fee
    _sift_up(heap, heapf, k)


@nb.njit(cache=True, nogil=True)
def _arrive(orders, heap, heapf, vbooks, rests, slot_h, free, state, cfg, cfgf, top, walk, h, v) -> None:
    vlad, vkeys, vsizes, vcnt, _, vmeta = vbooks
    state[S_VENUE_RECEIVED] += 1
    price = orders[h, OR_PRICE]
    qty = orders[h, OR_QTY]
    why = _venue_failure(cfg, cfgf, price, qty)
    if why != E.R_NONE:
        _sift_up(heap, heapf, _respond(heap, heapf, state, cfg, h, v, RK_REJECTED, why))
        return
    buy = orders[h, OR_SIDE] > 0
    top_of_book(vlad, vkeys, vsizes, vcnt, vmeta, 0, top)
    best_opp = top[2] if buy else top[0]
    marketable = best_opp != 0 and ((buy and price >= best_opp) or (not buy and price <= best_opp))
    state[S_VENUE_ID] += 1
    vid = state[S_VENUE_ID]
    if marketable and orders[h, OR_POST_ONLY] != 0:
        kind = RK_REJECTED if cfg[C_POST_ONLY_REJECTS] != 0 else RK_EXPIRED
        _sift_up(heap, heapf, _respond(heap, heapf, state, cfg, h, v, kind, E.R_POST_ONLY))
        return
    k = _respond(heap, heapf, state, cfg, h, v, RK_ACCEPTED, 0)
    heap[k, H_VENUE_ID] = vid
    _sift_up(heap, heapf, k)
    leaves = qty
    if marketable:
        m = walk_book(vlad, vkeys, vsizes, vcnt, vmeta, 0, buy, leaves, price, walk)
        for j in range(m):
            _fill_report(orders, heap, heapf, state, cfg, cfgf, h, v, walk[j, 0], walk[j, 1], False)
            leaves -= walk[j, 1]
    if leaves <= 0:
        return
    sd = 0 if buy else 1
    queue = level_size(vlad, vkeys, vsizes, vcnt, vmeta, 0, sd, price)
    orders[h, OR_SLOT] = _rest_add(rests, slot_h, free, state, h, 0, orders[h, OR_SIDE], price, queue, leaves)


@nb.njit(cache=True, nogil=True)
def _cancel_arrive(orders, heap, heapf, rests, slot_h, free, state, cfg, h, v) -> None:
    slot = orders[h, OR_SLOT]
    if slot < 0:
        _sift_up(heap, heapf, _respond(heap, heapf, state, cfg, h, v, RK_CANCEL_REJECTED, E.R_UNKNOWN_ORDER))
        return
    orders[h, OR_SLOT] = -1
    _rest_remove(rests, slot_h, free, state, slot)
    _sift_up(heap, heapf, _respond(heap, heapf, state, cfg, h, v, RK_CANCELED, 0))


@nb.njit(cache=True, nogil=True)
def _kernel_fills(orders, heap, heapf, rests, slot_h, free, fills, nf, state, cfg, cfgf, v) -> None:
    """``dispatch_kernel_fills``: report every fill, then free the slots of orders that are done."""
    for k in range(nf):
        slot = fills[k, F_SLOT]
        h = slot_h[slot]
        if h >= 0:
            _fill_report(orders, heap, heapf, state, cfg, cfgf, h, v, fills[k, F_PRICE], fills[k, F_QTY], True)
    for k in range(nf):
        slot = fills[k, F_SLOT]
        h = slot_h[slot]
        if h >= 0 and rests[slot, R_ACTIVE] == 0:
            orders[h, OR_SLOT] = -1
            _rest_remove(rests, slot_h, free, state, slot)


# --- the main loop ---------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True, inline="always")
def _room(state, orders, heap, rests, oi, fi, pi, ri, mi) -> bool:
    return (
        orders.shape[0] - state[S_NORD] >= ROOM
        and heap.shape[0] - state[S_HEAP] >= rests.shape[0] + 4 * ROOM + 1
        and rests.shape[0] - state[S_NREST] >= ROOM
        and oi.shape[0] - state[S_N_ORDERS_LOG] >= 4 * ROOM
        and fi.shape[0] - state[S_N_FILLS_LOG] >= ROOM
        and pi.shape[0] - state[S_N_POS_LOG] >= ROOM
        and ri.shape[0] - state[S_N_RISK_LOG] >= ROOM
        and mi.shape[0] - state[S_N_MARKET_LOG] >= ROOM
    )


@nb.njit(cache=True, nogil=True)
def _event(
    orders, ordf, open_h, heap, heapf, vbooks, rests, slot_h, free, oi, of, fi, ff, pi, pf,
    state, statef, cfg, cfgf, reason_codes, top, walk,
) -> int:  # fmt: skip
    """Handle the earliest scheduled event (``ReplayDriver.run_timeline_until``, one step)."""
    k = _pop_to_end(heap, heapf, state)
    t = heap[k, H_TS]
    if t > state[S_CLOCK]:
        state[S_CLOCK] = t
    typ = heap[k, H_TYPE]
    h = heap[k, H_ORDER]
    v = heap[k, H_V]
    if typ == T_MARK:  # Engine._mark_timer (the engine runs until the drain has ended)
        now = state[S_CLOCK]
        _record_positions(pi, pf, state, statef, cfg, cfgf, now, E.PR_MARK)
        _sift_up(heap, heapf, _push(heap, heapf, state, now + cfg[C_MARK_NS], T_MARK, -1, 0))
        return DONE
    if typ == T_ARRIVE:
        _arrive(orders, heap, heapf, vbooks, rests, slot_h, free, state, cfg, cfgf, top, walk, h, v)
        return DONE
    if typ == T_CANCEL_ARRIVE:
        _cancel_arrive(orders, heap, heapf, rests, slot_h, free, state, cfg, h, v)
        return DONE
    # a report reaches the order manager
    state[S_TS_TICK] = 0
    kind = heap[k, H_KIND]
    reason = heap[k, H_REASON]
    code = reason_codes[reason]
    ok = True
    if kind == RK_FILL:
        ev = heap[k]
        ok = _on_fill(orders, ordf, open_h, oi, of, fi, ff, pi, pf, state, statef, cfg, cfgf, h, ev, heapf[k])
    elif kind == RK_ACCEPTED:
        if heap[k, H_VENUE_ID] != 0:
            orders[h, OR_VENUE_ID] = heap[k, H_VENUE_ID]
        if orders[h, OR_TS_ACKED] == 0:
            orders[h, OR_TS_ACKED] = state[S_CLOCK]
        ok = _transition(orders, open_h, oi, of, state, cfg, h, ST_OPEN, E.EV_ACCEPTED, reason, code, v)
    elif kind == RK_REJECTED:
        orders[h, OR_REASON] = reason
        ok = _transition(orders, open_h, oi, of, state, cfg, h, ST_REJECTED, E.EV_REJECTED, reason, code, v)
    elif kind == RK_CANCELED:
        ok = _transition(orders, open_h, oi, of, state, cfg, h, ST_CANCELED, E.EV_CANCELED, reason, code, v)
    elif kind == RK_EXPIRED:
        ok = _transition(orders, open_h, oi, of, state, cfg, h, ST_EXPIRED, E.EV_EXPIRED, reason, code, v)
    elif kind == RK_CANCEL_REJECTED:
        orders[h, OR_CANCEL] = 0
        _order_row(oi, of, orders, state, cfg, 0, E.EV_CANCEL_REJECTED, h, state[S_CLOCK], reason, code, v)
    if not ok:
        state[S_WHY] = W_STATE
        state[S_WHY_ROW] = h
        return UNSUPPORTED
    return DONE


@nb.njit(cache=True, nogil=True, inline="always")
def _decide(
    decide, wake, trade_px, trade_qty, trade_side, t, orders, ordf, open_h, heap, heapf,
    oi, of, ri, state, cfg, cfgf, reason_codes, sparams, sstate, view, actions,
) -> None:  # fmt: skip
    """Show the strategy its live orders and the book, then carry out what it asks, in order."""
    n_open = state[S_NOPEN]
    for j in range(n_open):
        h = open_h[j]
        view[j, O_ID] = h
        view[j, O_SIDE] = orders[h, OR_SIDE]
        view[j, O_PRICE] = orders[h, OR_PRICE]
        view[j, O_QTY] = orders[h, OR_QTY]
        view[j, O_FILLED] = orders[h, OR_FILLED]
        view[j, O_STATUS] = orders[h, OR_STATUS]
        view[j, O_CANCEL] = orders[h, OR_CANCEL]
    na = decide(
        wake, state[S_SHOWN_BID], state[S_SHOWN_ASK], state[S_SHOWN_BID_SIZE], state[S_SHOWN_ASK_SIZE],
        trade_px, trade_qty, trade_side, t, view, n_open, sparams, sstate, actions,
    )  # fmt: skip
    if na > actions.shape[0]:
        na = actions.shape[0]
    for a in range(na):
        if actions[a, A_KIND] == SUBMIT:
            _submit(
                orders, ordf, open_h, heap, heapf, oi, of, ri, state, cfg, cfgf, reason_codes,
                actions[a, A_SIDE], actions[a, A_PRICE], actions[a, A_QTY], actions[a, A_POST_ONLY],
            )  # fmt: skip
        elif actions[a, A_KIND] == CANCEL:
            _cancel(orders, heap, heapf, oi, of, state, cfg, actions[a, A_ID])


def _run(
    decide,
    rows, lrows, vbooks, rests, slot_h, free, fills, ring,
    orders, ordf, open_h, heap, heapf, oi, of, fi, ff, pi, pf, ri, mi,
    state, statef, cfg, cfgf, reason_codes, sparams, sstate, view, actions,
) -> int:  # fmt: skip
    """Run until the data and the drain are done (``DONE``) or Python must act (see the module
    docstring). ``rows``: (ts_recv, kind, side, price, size, batch_end, ts_event, sequence) of one
    stream, whose book rows all have a price > 0 and a size >= 0 (``runner`` checks); ``lrows``:
    the rows that can wake the strategy, the last row of each book message and, if it wants
    them, each trade (``runner.wake_rows``)."""
    ts, kind, side, price, size, batch_end, ts_event, sequence = rows
    vlad, vkeys, vsizes, vcnt, vdead, vmeta = vbooks
    n = ts.shape[0]
    feed = cfg[C_FEED_NS]
    qmodel = cfg[C_QMODEL]
    power = cfgf[CF_POWER]
    rmask = ring.shape[0] - 1
    wake_book = cfg[C_WAKE_BOOK]
    first_snap = cfg[C_FIRST_SNAP]
    base = cfg[C_BASE]
    more = cfg[C_MORE] != 0
    nl = lrows.shape[0]
    top = np.zeros(4, dtype=np.int64)
    walk = np.zeros((256, 2), dtype=np.int64)
    if state[S_STARTED] == 0:
        state[S_STARTED] = 1
        if n == 0:
            state[S_PHASE] = 2
            return DONE
        if ts[0] > state[S_CLOCK]:
            state[S_CLOCK] = ts[0]
        if cfg[C_MARK_NS] > 0:  # Engine.start
            _sift_up(heap, heapf, _push(heap, heapf, state, state[S_CLOCK] + cfg[C_MARK_NS], T_MARK, -1, 0))
    while state[S_PHASE] < 2:
        if not _room(state, orders, heap, rests, oi, fi, pi, ri, mi):
            return NEED_ROOM
        t_next = heap[0, H_TS] if state[S_HEAP] > 0 else NEVER
        if state[S_PHASE] == 1:  # ReplayDriver.drain, then Engine.stop
            if t_next <= state[S_UNTIL]:
                code = _event(
                    orders, ordf, open_h, heap, heapf, vbooks, rests, slot_h, free, oi, of, fi, ff, pi, pf,
                    state, statef, cfg, cfgf, reason_codes, top, walk,
                )  # fmt: skip
                if code != DONE:
                    return code
                continue
            if state[S_CLOCK] < state[S_UNTIL]:
                state[S_CLOCK] = state[S_UNTIL]
            _record_positions(pi, pf, state, statef, cfg, cfgf, state[S_CLOCK], E.PR_FINAL)
            state[S_PHASE] = 2
            break
        # --- rows until the next scheduled event (sim.kernel.run_rows, DUAL, one stream) ---------
        # The venue's book is the only one kept: with a constant feed latency the venue applies
        # the same rows in the same order, ``feed`` earlier, so after each message it notes the
        # top of the book in ``ring`` for the moment we receive that message.
        lj = state[S_LI]
        li = 0
        vi = state[S_VI]
        nrest = state[S_NREST]
        # 1 fills, 2 book wake, 3 scheduled event, 4 end of data, 5 trade wake, 6 book full, 7 crossed,
        # 8 end of the window
        stop = 0
        # the cursors' flags live in locals here: the compiler keeps them in registers
        v_in_snap = state[S_V_IN_SNAP]
        v_valid = state[S_V_VALID]
        last_bid = state[S_LAST_BID]
        last_ask = state[S_LAST_ASK]
        nf = 0
        fill_ts = 0
        wake_row = -1
        while True:
            if vi >= n and more:  # the next venue row is in the next window: nothing can go first
                stop = 8
                break
            tl = ts[lrows[lj]] if lj < nl else NEVER
            tv = ts[vi] - feed if vi < n else NEVER
            if tv <= tl:
                if tv == NEVER:
                    stop = 4
                    break
                if tv >= t_next:
                    stop = 3
                    break
                k = kind[vi]
                if k == K.K_TRADE:
                    if nrest > 0:
                        nf = on_trade(rests, nrest, 0, price[vi], size[vi], side[vi], fills, 0)
                    vi += 1
                    if nf > 0:
                        stop = 1
                        fill_ts = tv
                        break
                    continue
                if k != K.K_SNAPSHOT and k != K.K_DELTA:
                    vi += 1
                    continue
                if k == K.K_SNAPSHOT and v_in_snap == 0:
                    clear_book(vlad, vcnt, vdead, vmeta, 0)
                    v_in_snap = 1
                    v_valid = 1
                px = price[vi]
                q = size[vi]
                sd = 0 if side[vi] > 0 else 1
                if nrest > 0 and rests_at(rests, nrest, 0, sd, px):
                    old = level_size(vlad, vkeys, vsizes, vcnt, vmeta, 0, sd, px)
                    on_level(rests, nrest, 0, sd, px, old, q, qmodel, power)
                if set_level(vlad, vkeys, vsizes, vcnt, vdead, vmeta, 0, sd, px, q) == FULL:
                    stop = 6  # row not applied: Python grows the books, we come back to it
                    break
                if batch_end[vi]:
                    v_in_snap = 0
                    top_of_book(vlad, vkeys, vsizes, vcnt, vmeta, 0, top)
                    r = (base + vi) & rmask
                    ring[r, 0] = top[0]
                    ring[r, 1] = top[1]
                    ring[r, 2] = top[2]
                    ring[r, 3] = top[3]
                    if nrest > 0 and v_valid != 0:
                        bb = top[0]
                        ba = top[2]
                        if bb == 0 or ba == 0 or bb < ba:
                            nf = cross_resting(rests, nrest, 0, bb, ba, fills, 0)
                vi += 1
                if nf > 0:
                    stop = 1
                    fill_ts = tv
                    break
                continue
            if tl >= t_next:
                stop = 3
                break
            li = lrows[lj]  # the next row that can wake us; rows between change nothing we show
            lj += 1
            if kind[li] == K.K_TRADE:
                wake_row = li
                stop = 5
                break
            r = (base + li) & rmask
            bb = ring[r, 0]
            ba = ring[r, 2]
            if bb != 0 and ba != 0 and bb >= ba:
                stop = 7
                break
            if base + li >= first_snap:  # the book is valid from the first snapshot on
                if wake_book == 2 or (wake_book == 1 and (bb != last_bid or ba != last_ask)):
                    wake_row = li
                last_bid = bb
                last_ask = ba
            if wake_row >= 0:
                stop = 2
                break
        state[S_LI] = lj
        state[S_VI] = vi
        state[S_V_IN_SNAP] = v_in_snap
        state[S_V_VALID] = v_valid
        state[S_LAST_BID] = last_bid
        state[S_LAST_ASK] = last_ask
        if stop == 6:
            return VBOOK_FULL
        if stop == 7:
            state[S_WHY] = W_CROSSED
            state[S_WHY_ROW] = base + li
            return UNSUPPORTED
        if stop == 8:
            return NEED_DATA
        if stop == 4:
            state[S_PHASE] = 1
            state[S_UNTIL] = cfg[C_LAST_TS] + cfg[C_DRAIN_NS]
            continue
        if stop == 3:
            code = _event(
                orders, ordf, open_h, heap, heapf, vbooks, rests, slot_h, free, oi, of, fi, ff, pi, pf,
                state, statef, cfg, cfgf, reason_codes, top, walk,
            )  # fmt: skip
            if code != DONE:
                return code
            continue
        if stop == 1:
            if fill_ts > state[S_CLOCK]:
                state[S_CLOCK] = fill_ts
            _kernel_fills(orders, heap, heapf, rests, slot_h, free, fills, nf, state, cfg, cfgf, fill_ts)
            continue
        row = wake_row
        t = ts[row]
        if t > state[S_CLOCK]:
            state[S_CLOCK] = t
        if stop == 5:  # Engine.on_trade: the strategy sees the book it was last shown
            state[S_TRADE_WAKES] += 1
            state[S_TS_TICK] = t
            if state[S_SHOWN_VALID] != 0:
                _decide(
                    decide, WAKE_TRADE, price[row], size[row], side[row], t, orders, ordf, open_h, heap, heapf,
                    oi, of, ri, state, cfg, cfgf, reason_codes, sparams, sstate, view, actions,
                )  # fmt: skip
            continue
        # --- a book message wakes the strategy (Engine.on_book) -------------------------------------
        r = (base + row) & rmask
        state[S_SHOWN_BID] = ring[r, 0]
        state[S_SHOWN_BID_SIZE] = ring[r, 1]
        state[S_SHOWN_ASK] = ring[r, 2]
        state[S_SHOWN_ASK_SIZE] = ring[r, 3]
        state[S_SHOWN_VALID] = 1
        state[S_BOOK_WAKES] += 1
        if state[S_POS_EXISTS] != 0:
            statef[SF_MARK] = _mid(state, cfg)  # Portfolio.mark
        mseq = _seq(state, cfg)
        state[S_TS_TICK] = t
        _decide(
            decide, WAKE_BOOK, 0, 0, 0, t, orders, ordf, open_h, heap, heapf,
            oi, of, ri, state, cfg, cfgf, reason_codes, sparams, sstate, view, actions,
        )  # fmt: skip
        if cfg[C_LOG] != 0:
            k = state[S_N_MARKET_LOG]
            state[S_N_MARKET_LOG] = k + 1
            E.market_row(
                mi, k, mseq, t, ts_event[row], ring[r, 0], ring[r, 1], ring[r, 2], ring[r, 3], sequence[row], feed
            )
    return DONE


def _arr(dt: types.Type, nd: int) -> types.Array:
    return types.Array(dt, nd, "C")


_i64, _f64 = types.int64, types.float64
_ROW_TYPES = (_i64, types.int8, types.int8, _i64, _i64, types.boolean, _i64, _i64)  # runner.ROW_COLUMNS
_ROWS = types.Tuple([_arr(t, 1) for t in _ROW_TYPES])
_BOOKS = types.Tuple([_arr(_i64, 3), _arr(_i64, 3), _arr(_i64, 3), _arr(_i64, 2), _arr(_i64, 2), _arr(_i64, 2)])
_I1, _I2, _F1, _F2 = _arr(_i64, 1), _arr(_i64, 2), _arr(_f64, 1), _arr(_f64, 2)
#: ``run``'s one signature: the strategy is an argument of a function type, so one compiled loop
#: (cached on disk) serves every compiled strategy
RUN_SIG = _i64(
    types.FunctionType(DECIDE_SIG),
    _ROWS, _I1, _BOOKS, _I2, _I1, _I1, _I2, _I2,
    _I2, _F1, _I1, _I2, _F1, _I2, _F2, _I2, _F2, _I2, _F2, _I2, _I2,
    _I1, _F1, _I1, _F1, _I1, _F1, _F1, _I2, _I2,
)  # fmt: skip
run = nb.njit(RUN_SIG, cache=True, nogil=True)(_run)
