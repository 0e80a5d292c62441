"""The compiled loop's event-log buffers and the Parquet files they become.

The loop appends rows as integers (fixed-point prices and sizes, codes) and a few floats it computes
itself (P&L, fees, marks) into preallocated column matrices, one per table (``*_I``/``*_F``
columns below), through the ``*_row`` writers here. ``write_tables`` converts them with the same
arithmetic as ``engine.eventlog`` (``fixed / 10**scale`` for prices and sizes,
``fixed * (1 / 10**scale)`` for the book's top, as ``engine.book.Book`` does) and writes
``<table>.parquet`` with the schemas of ``engine.eventlog_schema`` and the recorder's writer
settings (zstd, statistics, a row group per 65,536 rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.compiled_strategy import STATUS_NAMES
from engine.eventlog_schema import TABLES

ROW_GROUP_ROWS = 65_536  # engine.recorder's flush_rows: a row group per full buffer

# orders rows
OI_SEQ, OI_TS, OI_EVENT, OI_H, OI_PRICE, OI_QTY, OI_FILLED, OI_STATUS, OI_REASON, OI_CODE = range(10)
OI_TS_TICK, OI_TS_DECIDED, OI_TS_SENT, OI_TS_ACKED, OI_TS_VENUE, OI_VENUE_ID = range(10, 16)
OI_COLS = 16
OF_MID = 0
OF_COLS = 1
EVENT_NAMES = (
    "submit",
    "accepted",
    "rejected",
    "cancel_request",
    "canceled",
    "cancel_rejected",
    "expired",
    "partially_filled",
    "filled",
)
EV_SUBMIT, EV_ACCEPTED, EV_REJECTED, EV_CANCEL_REQUEST, EV_CANCELED, EV_CANCEL_REJECTED = range(6)
EV_EXPIRED, EV_PARTIAL, EV_FILLED = range(6, 9)

# fills rows
FI_SEQ, FI_TS, FI_TS_EVENT, FI_H, FI_TRADE_ID, FI_VENUE_ID, FI_PRICE, FI_QTY, FI_MAKER = range(9)
FI_ORDER_PRICE, FI_TS_TICK, FI_TS_DECIDED, FI_TS_SENT, FI_TS_ACKED, FI_POS = range(9, 15)
FI_COLS = 15
FF_FEE, FF_MID_DEC, FF_MID_FILL, FF_REALIZED = range(4)
FF_COLS = 4

# positions rows
PI_SEQ, PI_TS, PI_REASON, PI_QTY = range(4)
PI_COLS = 4
PF_AVG, PF_REALIZED, PF_UNREALIZED, PF_FEES, PF_MARK = range(5)
PF_COLS = 5
POS_REASONS = ("fill", "mark", "final")
PR_FILL, PR_MARK, PR_FINAL = range(3)

# risk rows (every check passes: the compiled path runs only where no limit is set)
RI_SEQ, RI_TS, RI_H = range(3)
RI_COLS = 3

# market rows
MI_SEQ, MI_TS, MI_TS_EVENT, MI_BID, MI_ASK, MI_BID_SIZE, MI_ASK_SIZE, MI_DATA_SEQ, MI_FEED = range(9)
MI_COLS = 9

#: reason codes of order rows -> an index into ``Names.reasons``
R_NONE, R_LOT_SIZE, R_PRICE_FILTER, R_NOTIONAL, R_POST_ONLY, R_UNKNOWN_ORDER = range(6)


# --- the writers the loop calls (compiled; ``k`` is the row) ---------------------------------------
@nb.njit(cache=True, nogil=True, inline="always")
def order_row(
    oi, of, k, seq, ts, event, h, price, qty, filled, status, reason, code,
    ts_tick, ts_decided, ts_sent, ts_acked, ts_venue, venue_id, mid,
) -> None:  # fmt: skip
    oi[k, OI_SEQ] = seq
    oi[k, OI_TS] = ts
    oi[k, OI_EVENT] = event
    oi[k, OI_H] = h
    oi[k, OI_PRICE] = price
    oi[k, OI_QTY] = qty
    oi[k, OI_FILLED] = filled
    oi[k, OI_STATUS] = status
    oi[k, OI_REASON] = reason
    oi[k, OI_CODE] = code
    oi[k, OI_TS_TICK] = ts_tick
    oi[k, OI_TS_DECIDED] = ts_decided
    oi[k, OI_TS_SENT] = ts_sent
    oi[k, OI_TS_ACKED] = ts_acked
    oi[k, OI_TS_VENUE] = ts_venue
    oi[k, OI_VENUE_ID] = venue_id
    of[k, OF_MID] = mid


@nb.njit(cache=True, nogil=True, inline="always")
def fill_row(
    fi, ff, k, seq, ts, ts_event, h, trade_id, venue_id, price, qty, maker, order_price,
    ts_tick, ts_decided, ts_sent, ts_acked, position, fee, mid_decision, mid_fill, realized,
) -> None:  # fmt: skip
    fi[k, FI_SEQ] = seq
    fi[k, FI_TS] = ts
    fi[k, FI_TS_EVENT] = ts_event
    fi[k, FI_H] = h
    fi[k, FI_TRADE_ID] = trade_id
    fi[k, FI_VENUE_ID] = venue_id
    fi[k, FI_PRICE] = price
    fi[k, FI_QTY] = qty
    fi[k, FI_MAKER] = maker
    fi[k, FI_ORDER_PRICE] = order_price
    fi[k, FI_TS_TICK] = ts_tick
    fi[k, FI_TS_DECIDED] = ts_decided
    fi[k, FI_TS_SENT] = ts_sent
    fi[k, FI_TS_ACKED] = ts_acked
    fi[k, FI_POS] = position
    ff[k, FF_FEE] = fee
    ff[k, FF_MID_DEC] = mid_decision
    ff[k, FF_MID_FILL] = mid_fill
    ff[k, FF_REALIZED] = realized


@nb.njit(cache=True, nogil=True, inline="always")
def position_row(pi, pf, k, seq, ts, reason, qty, avg, realized, unrealized, fees, mark) -> None:
    pi[k, PI_SEQ] = seq
    pi[k, PI_TS] = ts
    pi[k, PI_REASON] = reason
    pi[k, PI_QTY] = qty
    pf[k, PF_AVG] = avg
    pf[k, PF_REALIZED] = realized
    pf[k, PF_UNREALIZED] = unrealized
    pf[k, PF_FEES] = fees
    pf[k, PF_MARK] = mark


@nb.njit(cache=True, nogil=True, inline="always")
def risk_row(ri, k, seq, ts, h) -> None:
    ri[k, RI_SEQ] = seq
    ri[k, RI_TS] = ts
    ri[k, RI_H] = h


@nb.njit(cache=True, nogil=True, inline="always")
def market_row(mi, k, seq, ts, ts_event, bid, bid_size, ask, ask_size, data_seq, feed) -> None:
    mi[k, MI_SEQ] = seq
    mi[k, MI_TS] = ts
    mi[k, MI_TS_EVENT] = ts_event
    mi[k, MI_BID] = bid
    mi[k, MI_ASK] = ask
    mi[k, MI_BID_SIZE] = bid_size
    mi[k, MI_ASK_SIZE] = ask_size
    mi[k, MI_DATA_SEQ] = data_seq
    mi[k, MI_FEED] = feed


@dataclass
class Buffers:
    """Every growable array the loop writes; ``grow`` doubles one by name."""

    oi: np.ndarray
    of: np.ndarray
    fi: np.ndarray
    ff: np.ndarray
    pi: np.ndarray
    pf: np.ndarray
    ri: np.ndarray
    mi: np.ndarray

    @classmethod
    def make(cls, rows: int = 16_384, market_rows: int = 4096) -> Buffers:
        """Buffers of ``rows`` rows (``market_rows`` for the market table: one per book message)."""
        return cls(
            np.zeros((rows, OI_COLS), np.int64),
            np.zeros((rows, OF_COLS), np.float64),
            np.zeros((rows, FI_COLS), np.int64),
            np.zeros((rows, FF_COLS), np.float64),
            np.zeros((rows, PI_COLS), np.int64),
            np.zeros((rows, PF_COLS), np.float64),
            np.zeros((rows, RI_COLS), np.int64),
            np.zeros((market_rows, MI_COLS), np.int64),
        )

    def grow(self, name: str) -> None:
        a = getattr(self, name)
        b = np.zeros((a.shape[0] * 2, a.shape[1]), a.dtype)
        b[: a.shape[0]] = a
        setattr(self, name, b)


@dataclass
class Names:
    """What the integer rows stand for: the run's names and the instrument's scales."""

    strategy_id: str
    venue: str
    symbol: str
    quote: str
    price_scale: int
    size_scale: int
    contract_size: float
    client_ids: list[str]  # by order handle
    sides: np.ndarray  # by order handle: +1 / -1
    post_only: np.ndarray  # by order handle
    reasons: list[tuple[str, int]]  # R_* -> (text, code)


def _s(values: list[str] | np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string())


def _const(value: str, n: int) -> pa.Array:
    return pa.array([value] * n, type=pa.string())


def _ids(v: np.ndarray) -> list[str]:
    return ["" if x == 0 else str(x) for x in v.tolist()]


def orders_table(oi: np.ndarray, of: np.ndarray, nm: Names) -> pa.Table:
    n = len(oi)
    pdiv, sdiv = 10**nm.price_scale, 10**nm.size_scale
    h = oi[:, OI_H]
    events = np.array(EVENT_NAMES, dtype=object)[oi[:, OI_EVENT]]
    status = np.array(STATUS_NAMES, dtype=object)[oi[:, OI_STATUS]]
    reasons = [nm.reasons[r][0] for r in oi[:, OI_REASON].tolist()]
    cols = [
        pa.array(oi[:, OI_SEQ]),
        pa.array(oi[:, OI_TS]),
        _s(list(events)),
        _const(nm.strategy_id, n),
        _const(nm.venue, n),
        _const(nm.symbol, n),
        _s([nm.client_ids[x] for x in h.tolist()]),
        _s(_ids(oi[:, OI_VENUE_ID])),
        _s(np.where(nm.sides[h] > 0, "buy", "sell").tolist()),
        _const("LIMIT", n),
        _const("GTC", n),
        pa.array(oi[:, OI_PRICE] / pdiv),
        pa.array(oi[:, OI_QTY] / sdiv),
        pa.array(oi[:, OI_FILLED] / sdiv),
        pa.array((oi[:, OI_QTY] - oi[:, OI_FILLED]) / sdiv),
        _s(list(status)),
        _s(reasons),
        pa.array(oi[:, OI_CODE]),
        pa.array(oi[:, OI_TS_TICK]),
        pa.array(oi[:, OI_TS_DECIDED]),
        pa.array(oi[:, OI_TS_SENT]),
        pa.array(oi[:, OI_TS_ACKED]),
        pa.array(oi[:, OI_TS_VENUE]),
        pa.array(of[:, OF_MID]),
        pa.array(nm.post_only[h].astype(bool)),
    ]
    return pa.Table.from_arrays(cols, schema=TABLES["orders"])


def fills_table(fi: np.ndarray, ff: np.ndarray, nm: Names) -> pa.Table:
    n = len(fi)
    pdiv, sdiv = 10**nm.price_scale, 10**nm.size_scale
    h = fi[:, FI_H]
    px = fi[:, FI_PRICE] / pdiv
    qty = fi[:, FI_QTY] / sdiv
    cols = [
        pa.array(fi[:, FI_SEQ]),
        pa.array(fi[:, FI_TS]),
        pa.array(fi[:, FI_TS_EVENT]),
        _const(nm.strategy_id, n),
        _const(nm.venue, n),
        _const(nm.symbol, n),
        _s([nm.client_ids[x] for x in h.tolist()]),
        _s(_ids(fi[:, FI_VENUE_ID])),
        _s([str(x) for x in fi[:, FI_TRADE_ID].tolist()]),
        _s(np.where(nm.sides[h] > 0, "buy", "sell").tolist()),
        pa.array(px),
        pa.array(qty),
        pa.array(px * qty * nm.contract_size),  # Instrument.notional, linear
        pa.array(ff[:, FF_FEE]),
        _const(nm.quote, n),
        _s(np.where(fi[:, FI_MAKER] != 0, "maker", "taker").tolist()),
        pa.array(fi[:, FI_ORDER_PRICE] / pdiv),
        pa.array(ff[:, FF_MID_DEC]),
        pa.array(ff[:, FF_MID_FILL]),
        pa.array(fi[:, FI_TS_TICK]),
        pa.array(fi[:, FI_TS_DECIDED]),
        pa.array(fi[:, FI_TS_SENT]),
        pa.array(fi[:, FI_TS_ACKED]),
        pa.array(fi[:, FI_POS] / sdiv),
        pa.array(ff[:, FF_REALIZED]),
    ]
    return pa.Table.from_arrays(cols, schema=TABLES["fills"])


def positions_table(pi: np.ndarray, pf: np.ndarray, nm: Names) -> pa.Table:
    n = len(pi)
    cols = [
        pa.array(pi[:, PI_SEQ]),
        pa.array(pi[:, PI_TS]),
        _const(nm.strategy_id, n),
        _const(nm.venue, n),
        _const(nm.symbol, n),
        pa.array(pi[:, PI_QTY] / 10**nm.size_scale),
        pa.array(pf[:, PF_AVG]),
        pa.array(pf[:, PF_REALIZED]),
        pa.array(pf[:, PF_UNREALIZED]),
        pa.array(pf[:, PF_FEES]),
        pa.array(pf[:, PF_MARK]),
        _s(list(np.array(POS_REASONS, dtype=object)[pi[:, PI_REASON]])),
    ]
    return pa.Table.from_arrays(cols, schema=TABLES["positions"])


def risk_table(ri: np.ndarray, nm: Names) -> pa.Table:
    n = len(ri)
    cols = [
        pa.array(ri[:, RI_SEQ]),
        pa.array(ri[:, RI_TS]),
        _const(nm.strategy_id, n),
        _const(nm.venue, n),
        _const(nm.symbol, n),
        _s([nm.client_ids[x] for x in ri[:, RI_H].tolist()]),
        _const("ok", n),
        pa.array(np.ones(n, dtype=bool)),
        _const("", n),
        pa.array(np.zeros(n)),
        pa.array(np.zeros(n)),
    ]
    return pa.Table.from_arrays(cols, schema=TABLES["risk"])


def market_table(mi: np.ndarray, nm: Names) -> pa.Table:
    n = len(mi)
    pmul = 1.0 / 10**nm.price_scale
    smul = 1.0 / 10**nm.size_scale
    bid, ask = mi[:, MI_BID], mi[:, MI_ASK]
    both = (bid != 0) & (ask != 0)
    mid = np.where(both, (bid + ask) * (0.5 * pmul), np.nan)  # Book.mid_price
    cols = [
        pa.array(mi[:, MI_SEQ]),
        pa.array(mi[:, MI_TS]),
        pa.array(mi[:, MI_TS_EVENT]),
        _const(nm.venue, n),
        _const(nm.symbol, n),
        pa.array(bid * pmul),
        pa.array(ask * pmul),
        pa.array(mi[:, MI_BID_SIZE] * smul),
        pa.array(mi[:, MI_ASK_SIZE] * smul),
        pa.array(mid),
        pa.array(mi[:, MI_DATA_SEQ]),
        pa.array(mi[:, MI_FEED]),
    ]
    return pa.Table.from_arrays(cols, schema=TABLES["market"])


def tables(buf: Buffers, counts: dict[str, int], nm: Names) -> dict[str, pa.Table]:
    """Every table of the event log, the ones the compiled path never writes to empty."""
    out = {
        "orders": orders_table(buf.oi[: counts["orders"]], buf.of[: counts["orders"]], nm),
        "fills": fills_table(buf.fi[: counts["fills"]], buf.ff[: counts["fills"]], nm),
        "positions": positions_table(buf.pi[: counts["positions"]], buf.pf[: counts["positions"]], nm),
        "risk": risk_table(buf.ri[: counts["risk"]], nm),
        "market": market_table(buf.mi[: counts["market"]], nm),
    }
    for name, schema in TABLES.items():
        out.setdefault(name, schema.empty_table())
    return out


def write_tables(run_dir: Path, data: dict[str, pa.Table]) -> None:
    """``<table>.parquet`` for each table, written as ``engine.recorder.Recorder`` writes a backtest's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, table in data.items():
        path = run_dir / f"{name}.parquet"
        if table.num_rows == 0:
            pq.write_table(table, path, compression="zstd")
            continue
        with pq.ParquetWriter(path, table.schema, compression="zstd", write_statistics=True) as writer:
            for start in range(0, table.num_rows, ROW_GROUP_ROWS):
                writer.write_table(table.slice(start, ROW_GROUP_ROWS))
